// LayerProbes: one softmax-regression probe (a start head and an end head)
// per encoder layer, all held in one set of tensors and trained in one fused
// step per batch on the frozen encoder's hidden states.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace layerprobe {

struct ProbeOptions {
  double learning_rate = 5e-5;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;  // per layer and head
  double dropout = 0.1;
  double init_std = 0.02;
};

// Per-layer mean of (CE(start) + CE(end)) / 2 for one batch, [L].
struct ProbeStepResult {
  torch::Tensor loss;
};

// Where a train_step's rows sit when the batch is one rank's shard of a
// data-parallel global batch. The default is a whole batch in one process.
struct ProbeBatchShard {
  int64_t row_offset = 0;   // global index of this shard's first row (dropout follows global rows)
  int64_t global_rows = 0;  // rows of the global batch; 0: this batch is all of it
  // Sums a float tensor over the ranks in place (dist::all_reduce_sum); empty: one process.
  std::function<void(torch::Tensor&)> all_reduce_sum;
};

class LayerProbes {
 public:
  // Fresh probes for `layers` layers of width `hidden`: w ~ N(0, init_std), b = 0.
  LayerProbes(int64_t layers, int64_t hidden, const ProbeOptions& options, uint64_t seed);
  // Probes from saved tensors (weight [L,2,H], bias [L,2]; optimiser moments optional).
  LayerProbes(torch::Tensor weight, torch::Tensor bias, const ProbeOptions& options);

  // Scores every position with every layer's heads:
  // hidden [L,B,T,H] -> logits [L,B,T,2] (start, end). No dropout.
  torch::Tensor score(const torch::Tensor& hidden) const;

  // One fused training step over a batch: dropout, masked softmax
  // cross-entropy per head, gradient clipping per layer and head, and
  // AdamW without bias correction (as the original study's optimiser).
  // hidden [L,B,T,H] (float32, or bf16: widened exactly), attention_mask [B,T], start/end [B] (int64).
  // The dropout masks are dropout_keep_mask(dropout_seed, shard.row_offset):
  // a function of (seed, layer, global row, position, unit), so a step
  // repeats exactly, whatever the padding, the device or the sharding.
  // Gradients are written out by hand: no autograd graph, and hidden may be an
  // inference tensor. With a shard, the gradient and the loss are the means
  // over the global batch (summed over ranks by shard.all_reduce_sum), and
  // every rank makes the same update; a rank may hold no rows (B = 0).
  ProbeStepResult train_step(const torch::Tensor& hidden, const torch::Tensor& attention_mask,
                             const torch::Tensor& start_positions, const torch::Tensor& end_positions,
                             uint64_t dropout_seed, const ProbeBatchShard& shard = {});

  int64_t layers() const { return weight_.size(0); }
  int64_t hidden_size() const { return weight_.size(2); }
  const torch::Tensor& weight() const { return weight_; }
  const torch::Tensor& bias() const { return bias_; }
  const torch::Tensor& exp_avg_weight() const { return exp_avg_w_; }
  const torch::Tensor& exp_avg_sq_weight() const { return exp_avg_sq_w_; }
  const torch::Tensor& exp_avg_bias() const { return exp_avg_b_; }
  const torch::Tensor& exp_avg_sq_bias() const { return exp_avg_sq_b_; }
  void set_optimizer_state(torch::Tensor exp_avg_w, torch::Tensor exp_avg_sq_w, torch::Tensor exp_avg_b,
                           torch::Tensor exp_avg_sq_b);
  void to(torch::Device device);

 private:
  void apply_adamw(const torch::Tensor& grad_w, const torch::Tensor& grad_b);

  ProbeOptions options_;
  torch::Tensor weight_;  // [L,2,H]
  torch::Tensor bias_;    // [L,2]
  torch::Tensor exp_avg_w_, exp_avg_sq_w_, exp_avg_b_, exp_avg_sq_b_;
};

// Dropout's keep decisions on the CPU for hidden states of `sizes` [L,B,T,H]
// (missing leading dimensions count as 1) as a pure function of (seed, layer,
// row_offset + b, t, h): drawn in parallel by a counter-based hash, the same
// on every run, for any thread count, padding T or sharding of the rows.
// Keeps with probability 1 - p (to 2^-32). Returns a bool tensor of `sizes`.
torch::Tensor dropout_keep_mask(at::IntArrayRef sizes, double p, uint64_t seed, int64_t row_offset = 0);
// The same mask computed with tensor ops on `device` (how a GPU draws it, without a copy from the CPU).
torch::Tensor dropout_keep_mask_on(torch::Device device, at::IntArrayRef sizes, double p, uint64_t seed,
                                   int64_t row_offset = 0);

// The part of LayerProbes::train_step before clipping and the update, for any linear scores
// w . dropout(h) + b (weight [L,2,H], bias [L,2]): the global batch's mean loss [L] and its
// gradients, summed over the ranks with a shard. The factorised probes (probe_model.hpp) reuse it
// through the chain rule.
struct LinearProbeGradients {
  torch::Tensor grad_w, grad_b, loss;
};
LinearProbeGradients linear_probe_gradients(const torch::Tensor& hidden, const torch::Tensor& attention_mask,
                                            const torch::Tensor& start_positions, const torch::Tensor& end_positions,
                                            const torch::Tensor& weight, const torch::Tensor& bias, double dropout,
                                            uint64_t dropout_seed, const ProbeBatchShard& shard = {});

// The probes' loss of scores [L,B,T,2]: per layer the sum over this batch's rows of
// (CE(start) + CE(end)) / 2 over the unmasked positions, divided by `global_rows`, and its
// gradient with respect to the scores (zero at padding).
struct ProbeLossGradient {
  torch::Tensor loss;      // [L]
  torch::Tensor gradient;  // [L,B,T,2]
};
ProbeLossGradient probe_loss_gradient(const torch::Tensor& logits, const torch::Tensor& attention_mask,
                                      const torch::Tensor& start_positions, const torch::Tensor& end_positions,
                                      int64_t global_rows);

// hidden [L,B,T,H] as float32 after dropout with the keep decisions of dropout_keep_mask(seed,
// row_offset), scaled by 1 / (1 - p): the copy the linear step never makes.
torch::Tensor dropped_out(const torch::Tensor& hidden, double p, uint64_t seed, int64_t row_offset = 0);

// Replaces each tensor by its sum over the ranks, in one collective (nothing without all_reduce_sum).
void sum_over_ranks(const std::vector<torch::Tensor*>& tensors,
                    const std::function<void(torch::Tensor&)>& all_reduce_sum);

// Cross-entropy over the unmasked positions only, so results do not depend on
// how a batch is padded. logits [..., B, T], mask [B, T], targets [B] -> [...].
torch::Tensor masked_cross_entropy(const torch::Tensor& logits, const torch::Tensor& attention_mask,
                                   const torch::Tensor& targets);

}  // namespace layerprobe
