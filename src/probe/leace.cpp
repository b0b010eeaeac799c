#include "layerprobe/probe/leace.hpp"

#include <limits>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

ConceptStatistics::ConceptStatistics(int64_t dim, int64_t concepts)
    : sum_x_(torch::zeros({dim}, torch::kDouble)), sum_z_(torch::zeros({concepts}, torch::kDouble)),
      sum_xx_(torch::zeros({dim, dim}, torch::kDouble)), sum_xz_(torch::zeros({dim, concepts}, torch::kDouble)) {}

void ConceptStatistics::add(const torch::Tensor& x_in, const torch::Tensor& z_in) {
  torch::InferenceMode inference;
  if (x_in.dim() != 2 || z_in.dim() != 2 || x_in.size(0) != z_in.size(0) || x_in.size(1) != sum_x_.size(0) ||
      z_in.size(1) != sum_z_.size(0))
    throw Error("concept statistics: expected x [N," + std::to_string(sum_x_.size(0)) + "] and z [N," +
                std::to_string(sum_z_.size(0)) + "], got " + c10::str(x_in.sizes()) + " and " + c10::str(z_in.sizes()));
  if (x_in.size(0) == 0) return;
  auto x = x_in.to(torch::kCPU, torch::kFloat);
  const auto z = z_in.to(torch::kCPU, torch::kFloat);
  if (!shift_.defined()) shift_ = x.mean(0);
  x = x - shift_;
  // Products of one batch in float32 (the shift keeps them small), summed over batches in float64.
  sum_x_ += x.sum(0).to(torch::kDouble);
  sum_z_ += z.sum(0).to(torch::kDouble);
  sum_xx_ += torch::mm(x.t(), x).to(torch::kDouble);
  sum_xz_ += torch::mm(x.t(), z).to(torch::kDouble);
  count_ += x.size(0);
}

torch::Tensor ConceptStatistics::mean_x() const {
  if (count_ == 0) throw Error("concept statistics: no samples");
  return sum_x_ / static_cast<double>(count_) + shift_.to(torch::kDouble);
}

torch::Tensor ConceptStatistics::covariance_x() const {
  if (count_ == 0) throw Error("concept statistics: no samples");
  const auto n = static_cast<double>(count_);
  const auto m = sum_x_ / n;  // of the shifted x
  return sum_xx_ / n - torch::outer(m, m);
}

torch::Tensor ConceptStatistics::cross_covariance() const {
  if (count_ == 0) throw Error("concept statistics: no samples");
  const auto n = static_cast<double>(count_);
  return sum_xz_ / n - torch::outer(sum_x_ / n, sum_z_ / n);
}

torch::Tensor ConceptEraser::apply(const torch::Tensor& x) const {
  const auto type = x.scalar_type();
  const auto flat = x.reshape({-1, x.size(-1)}).to(torch::kFloat);
  const auto moved = torch::mm(torch::mm(flat - mean, b.t()), a.t());
  return (flat - moved).to(type).view(x.sizes());
}

ConceptEraser ConceptEraser::to(torch::Device device) const { return {mean.to(device), a.to(device), b.to(device)}; }

namespace {

// W = (Sigma^1/2)+ and W+ = Sigma^1/2 from Sigma's eigendecomposition.
std::pair<torch::Tensor, torch::Tensor> whitening(const torch::Tensor& sigma) {
  const auto [values, vectors] = torch::linalg::eigh((sigma + sigma.t()) / 2, "L");
  const double tolerance = std::max(values.max().item<double>(), 0.0) * static_cast<double>(sigma.size(0)) *
                           std::numeric_limits<double>::epsilon();
  const auto kept = values.gt(tolerance);
  const auto root = torch::where(kept, values.clamp_min(0).sqrt(), torch::zeros_like(values));
  const auto inverse_root = torch::where(kept, 1.0 / root.clamp_min(1e-300), torch::zeros_like(values));
  return {torch::mm(vectors * inverse_root, vectors.t()), torch::mm(vectors * root, vectors.t())};
}

ConceptEraser eraser_from_basis(const ConceptStatistics& statistics, const torch::Tensor& w, const torch::Tensor& w_plus,
                                const torch::Tensor& basis) {
  return {statistics.mean_x().to(torch::kFloat), torch::mm(w_plus, basis).to(torch::kFloat),
          torch::mm(basis.t(), w).to(torch::kFloat)};
}

}  // namespace

ConceptEraser fit_leace(const ConceptStatistics& statistics) {
  torch::InferenceMode inference;
  const auto [w, w_plus] = whitening(statistics.covariance_x());
  const auto m = torch::mm(w, statistics.cross_covariance());  // [dim, concepts]
  // An orthonormal basis of m's columns: its left singular vectors of non-zero singular value.
  const auto svd = torch::linalg::svd(m, false, c10::nullopt);
  const auto& u = std::get<0>(svd);
  const auto& s = std::get<1>(svd);
  const double tolerance = (s.numel() ? s.max().item<double>() : 0.0) * static_cast<double>(m.size(0)) *
                           std::numeric_limits<double>::epsilon();
  const int64_t rank = s.gt(tolerance).sum().item<int64_t>();
  return eraser_from_basis(statistics, w, w_plus, u.slice(1, 0, rank));
}

ConceptEraser fit_random_eraser(const ConceptStatistics& statistics, int64_t rank, uint64_t seed) {
  torch::InferenceMode inference;
  const auto [w, w_plus] = whitening(statistics.covariance_x());
  auto generator = torch::make_generator<torch::CPUGeneratorImpl>(seed);
  auto gaussian = torch::empty({w.size(0), rank}, torch::kDouble);
  gaussian.normal_(0.0, 1.0, generator);
  const auto basis = std::get<0>(torch::linalg::qr(gaussian, "reduced"));
  return eraser_from_basis(statistics, w, w_plus, basis);
}

}  // namespace layerprobe
