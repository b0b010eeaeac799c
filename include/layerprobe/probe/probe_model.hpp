// Every layer's probe of one architecture behind one interface (probe_variant.hpp's
// ProbeArch), trained and scored alike by probe_train, probe_predict and the bench:
// - linear: LayerProbes, the study's probe, unchanged (w . h + b per head).
// - rank:R: the linear probe factorised as W = U D (D [R,H], U [2,R]); its step is the linear
//   probe's fused step on W followed by the chain rule (dU = dW D^T, dD = U^T dW), so it costs
//   what the linear probe costs. The two heads make W a 2 x H map, so rank:R for R >= 2
//   expresses exactly the linear probe (a test pins that) and rank:1 makes the start and end
//   heads share one direction of the hidden state.
// - mlp:W: one hidden ReLU layer of W units (w2 . relu(W1 h + b1) + b2 per head), the products
//   as batched matrix multiplications (oneDNN on the CPU).
// - tuned_lens: the tuned lens (Belrose et al. 2023) for QA: per layer an affine translator
//   h -> h + A h + b (A = 0, b = 0 at first: the head lens), then the model's own QA head
//   (QaModel::head_logits_at); trained to minimise KL(final layer's start/end distribution ||
//   the lens's) over each window's tokens. It reads the model: attach_model() before use. No
//   dropout; its "targets" are the model's own last-layer distributions, not the answers.
// All share the linear probe's dropout on the input (the same keep decisions), masked
// cross-entropy, AdamW without bias correction and clipping at max_grad_norm (per layer and
// head for linear, whose heads share nothing; per layer for rank and mlp, whose heads share D
// or the hidden layer).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "layerprobe/model/qa_model.hpp"
#include "layerprobe/probe/probe_variant.hpp"
#include "layerprobe/probe/probes.hpp"

namespace layerprobe {

class ProbeModel {
 public:
  virtual ~ProbeModel() = default;
  virtual ProbeArch arch() const = 0;
  virtual int64_t layers() const = 0;
  virtual int64_t input_size() const = 0;
  // hidden [L,B,T,input] (float32 or bf16) -> scores [L,B,T,2] (start, end), no dropout.
  virtual torch::Tensor score(const torch::Tensor& hidden) const = 0;
  // LayerProbes::train_step's contract, for this architecture.
  virtual ProbeStepResult train_step(const torch::Tensor& hidden, const torch::Tensor& attention_mask,
                                     const torch::Tensor& start_positions, const torch::Tensor& end_positions,
                                     uint64_t dropout_seed, const ProbeBatchShard& shard = {}) = 0;
  // Parameters and AdamW moments under their saved names ("weight", "optimizer.exp_avg.weight", ...).
  virtual std::map<std::string, torch::Tensor> tensors() const = 0;
  virtual void to(torch::Device device) = 0;
  // Per layer, the nuclear norm (sum of singular values) of the linear map from the input to the
  // two heads' scores: Pimentel et al.'s complexity of a linear probe. Empty for mlp.
  virtual std::vector<double> nuclear_norms() const = 0;
  // The LayerProbes of a linear model (nullptr for the others).
  virtual const LayerProbes* linear() const { return nullptr; }
  // The model whose head a tuned lens reads (its parameters are frozen); ignored by the probes.
  virtual void attach_model(QaModel* /*model*/) {}
};

// Fresh probes: linear as LayerProbes(layers, input, options, seed); rank:R with D ~ N(0, init_std)
// and U ~ N(0, 1/sqrt(R)) (so W = U D starts at the linear probe's scale); mlp:W with
// W1 ~ N(0, 1/sqrt(input)), w2 ~ N(0, init_std), zero biases; the tuned lens with A = 0, b = 0.
// One generator seeded by `seed`.
std::unique_ptr<ProbeModel> make_probe_model(const ProbeArch& arch, int64_t layers, int64_t input,
                                             const ProbeOptions& options, uint64_t seed);

// Probes from saved tensors (the names tensors() gives; the optimiser moments are required);
// Error naming `source` and the tensor on a missing tensor or a shape that does not fit.
std::unique_ptr<ProbeModel> probe_model_from_tensors(const ProbeArch& arch,
                                                     const std::map<std::string, torch::Tensor>& tensors,
                                                     const ProbeOptions& options, const std::string& source);

// Wraps existing linear probes (sharing their tensors).
std::unique_ptr<ProbeModel> linear_probe_model(const LayerProbes& probes);

// Conditional probing's input (Hewitt et al. 2021): layers [L,B,T,H] and the embeddings
// layer0 [1,B,T,H] -> [L,B,T,2H], row (l, b, t) = [layers[l,b,t] ; layer0[0,b,t]].
torch::Tensor conditional_input(const torch::Tensor& layers, const torch::Tensor& layer0);

// A batched product a [N,M,K] x b [N,K,P] -> [N,M,P] of float32 tensors of any strides (a transpose
// is a view): oneDNN's matmul on the CPU (LibTorch 1.13 runs CPU bmm as one BLAS call per batch),
// torch::bmm elsewhere.
torch::Tensor probe_bmm(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace layerprobe
