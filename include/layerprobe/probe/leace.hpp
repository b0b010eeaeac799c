// LEACE, LEAst-squares Concept Erasure (Belrose et al. 2023): the affine map
// that makes a representation X linearly uninformative about a concept Z
// (Cov(r(X), Z) = 0, so no linear predictor of Z does better than a constant
// under any convex loss) while moving X as little as possible:
//   r(x) = x - W+ P W (x - mean),  W = (Sigma_XX^1/2)+,  P = the orthogonal
//   projection onto the columns of W Sigma_XZ,
// computed in closed form from means and covariances. Written here as
// r(x) = x - A B (x - mean) with A = W+ U, B = U^T W for an orthonormal basis U
// of those columns: r moves x only within span(A), rank(A) <= the concept's dimension.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace layerprobe {

// Running first and second moments of (X, Z) pairs, in float64, for one eraser.
class ConceptStatistics {
 public:
  ConceptStatistics(int64_t dim, int64_t concepts);
  // x [N, dim] (any float dtype), z [N, concepts]: one row per sample.
  void add(const torch::Tensor& x, const torch::Tensor& z);
  int64_t count() const { return count_; }
  torch::Tensor mean_x() const;        // [dim]
  torch::Tensor covariance_x() const;  // [dim, dim], population
  torch::Tensor cross_covariance() const;  // [dim, concepts]

 private:
  int64_t count_ = 0;
  torch::Tensor shift_;  // the first batch's mean: sums are of x - shift (less cancellation)
  torch::Tensor sum_x_, sum_z_, sum_xx_, sum_xz_;
};

struct ConceptEraser {
  torch::Tensor mean;  // [dim]
  torch::Tensor a;     // [dim, rank]
  torch::Tensor b;     // [rank, dim]
  int64_t rank() const { return a.size(1); }
  // x [..., dim] -> x - (x - mean) b^T a^T, in x's dtype.
  torch::Tensor apply(const torch::Tensor& x) const;
  ConceptEraser to(torch::Device device) const;
};

// The LEACE eraser of the statistics' concept. Eigenvalues of Sigma_XX below
// max * dim * eps (float64) count as zero (pseudo-inverses).
ConceptEraser fit_leace(const ConceptStatistics& statistics);

// The control: the same form with U replaced by `rank` orthonormal directions drawn at random
// (Gaussian, seeded) in the whitened space: it erases a random subspace of the same dimension
// from the same data, in the same geometry.
ConceptEraser fit_random_eraser(const ConceptStatistics& statistics, int64_t rank, uint64_t seed);

}  // namespace layerprobe
