#include "layerprobe/probe/probes.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

LayerProbes::LayerProbes(int64_t layers, int64_t hidden, const ProbeOptions& options, uint64_t seed)
    : options_(options) {
  auto generator = torch::make_generator<torch::CPUGeneratorImpl>(seed);
  weight_ = torch::empty({layers, 2, hidden}, torch::kFloat32);
  weight_.normal_(0.0, options.init_std, generator);
  bias_ = torch::zeros({layers, 2}, torch::kFloat32);
  set_optimizer_state(torch::zeros_like(weight_), torch::zeros_like(weight_), torch::zeros_like(bias_),
                      torch::zeros_like(bias_));
}

LayerProbes::LayerProbes(torch::Tensor weight, torch::Tensor bias, const ProbeOptions& options)
    : options_(options), weight_(weight.to(torch::kFloat32).contiguous()), bias_(bias.to(torch::kFloat32).contiguous()) {
  if (weight_.dim() != 3 || weight_.size(1) != 2 || bias_.dim() != 2 || bias_.size(0) != weight_.size(0) ||
      bias_.size(1) != 2)
    throw Error("probe tensors have the wrong shapes: weight " + c10::str(weight_.sizes()) + ", bias " +
                c10::str(bias_.sizes()) + " (expected [L,2,H] and [L,2])");
  set_optimizer_state(torch::zeros_like(weight_), torch::zeros_like(weight_), torch::zeros_like(bias_),
                      torch::zeros_like(bias_));
}

void LayerProbes::set_optimizer_state(torch::Tensor exp_avg_w, torch::Tensor exp_avg_sq_w, torch::Tensor exp_avg_b,
                                      torch::Tensor exp_avg_sq_b) {
  auto check = [](const torch::Tensor& t, const torch::Tensor& like, const char* name) {
    if (t.sizes() != like.sizes())
      throw Error(std::string("probe optimiser state '") + name + "' has shape " + c10::str(t.sizes()) +
                  ", expected " + c10::str(like.sizes()));
  };
  check(exp_avg_w, weight_, "exp_avg_weight");
  check(exp_avg_sq_w, weight_, "exp_avg_sq_weight");
  check(exp_avg_b, bias_, "exp_avg_bias");
  check(exp_avg_sq_b, bias_, "exp_avg_sq_bias");
  auto like = [&](const torch::Tensor& t) { return t.to(weight_.device(), torch::kFloat32).contiguous(); };
  exp_avg_w_ = like(exp_avg_w);
  exp_avg_sq_w_ = like(exp_avg_sq_w);
  exp_avg_b_ = like(exp_avg_b);
  exp_avg_sq_b_ = like(exp_avg_sq_b);
}

void LayerProbes::to(torch::Device device) {
  for (auto* t : {&weight_, &bias_, &exp_avg_w_, &exp_avg_sq_w_, &exp_avg_b_, &exp_avg_sq_b_}) *t = t->to(device);
}

namespace {
// hidden [L,B,T,H], weight [L,2,H], bias [L,2] -> [L,B,T,2]
torch::Tensor probe_logits(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& bias) {
  auto L = hidden.size(0), B = hidden.size(1), T = hidden.size(2), H = hidden.size(3);
  auto flat = hidden.reshape({L, B * T, H});
  auto logits = torch::baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2));
  return logits.view({L, B, T, 2});
}
}  // namespace

torch::Tensor LayerProbes::score(const torch::Tensor& hidden) const {
  return probe_logits(hidden.to(torch::kFloat32), weight_, bias_);
}

namespace {

uint64_t mix64(uint64_t x) {  // splitmix64's finaliser
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Hidden states [L,B,T,H] seen as L*B*T rows of H units; sizes with fewer
// dimensions have the missing leading ones set to 1.
struct DropoutShape {
  int64_t layers = 1, batch = 1, positions = 1, units = 1;
};

DropoutShape dropout_shape(at::IntArrayRef sizes) {
  DropoutShape shape;
  const auto dims = static_cast<int64_t>(sizes.size());
  if (dims >= 1) shape.units = sizes[dims - 1];
  if (dims >= 2) shape.positions = sizes[dims - 2];
  if (dims >= 3) shape.batch = sizes[dims - 3];
  for (int64_t d = 0; d + 3 < dims; ++d) shape.layers *= sizes[d];
  return shape;
}

// Calls keep(i, kept) for every element i (row-major) of a tensor of `shape`.
// The decision for (l, b, t, h) hashes (seed, l, row_offset + b, t, h) alone;
// each 64-bit draw decides two units (its low and high halves against a
// 32-bit threshold).
template <typename Keep>
void for_each_dropout_decision(const DropoutShape& shape, double p, uint64_t seed, int64_t row_offset, Keep keep) {
  const auto threshold = static_cast<uint64_t>(std::llround(p * 4294967296.0));
  const uint64_t key = mix64(seed + 0x9e3779b97f4a7c15ULL);
  const int64_t T = shape.positions, B = shape.batch, H = shape.units;
  const int64_t rows = shape.layers * B * T;
  at::parallel_for(0, rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, H)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const auto t = static_cast<uint64_t>(r % T), b = static_cast<uint64_t>(row_offset + (r / T) % B),
                 l = static_cast<uint64_t>(r / (T * B));
      const uint64_t row_key = mix64(mix64(mix64(key + l) + b * 0xd1b54a32d192ed03ULL) + t * 0x8cb92ba72f3d8dd7ULL);
      for (int64_t h = 0; h < H; h += 2) {
        const uint64_t draw = mix64(row_key + static_cast<uint64_t>(h / 2 + 1) * 0x9e3779b97f4a7c15ULL);
        keep(r * H + h, (draw & 0xffffffffULL) >= threshold);
        if (h + 1 < H) keep(r * H + h + 1, (draw >> 32) >= threshold);
      }
    }
  });
}

// mix64 and the keep decisions of for_each_dropout_decision as int64 tensor ops (wrapping arithmetic;
// logical shifts masked out of arithmetic ones).
torch::Tensor shift_right(const torch::Tensor& x, int bits) {
  return x.__rshift__(bits).bitwise_and(static_cast<int64_t>(~0ULL >> bits));
}

torch::Tensor mix64_tensor(torch::Tensor x) {
  x = x.bitwise_xor(shift_right(x, 30)).mul(static_cast<int64_t>(0xbf58476d1ce4e5b9ULL));
  x = x.bitwise_xor(shift_right(x, 27)).mul(static_cast<int64_t>(0x94d049bb133111ebULL));
  return x.bitwise_xor(shift_right(x, 31));
}

torch::Tensor apply_dropout(const torch::Tensor& hidden, double p, uint64_t seed, int64_t row_offset) {
  if (p <= 0) return hidden;
  // On a GPU the same mask with tensor ops: sharded and single-process runs, CPU and GPU, drop alike.
  if (hidden.is_cuda())
    return hidden * dropout_keep_mask_on(hidden.device(), hidden.sizes(), p, seed, row_offset) / (1.0 - p);
  auto input = hidden.contiguous();
  auto output = torch::empty_like(input);
  const float* in = input.data_ptr<float>();
  float* out = output.data_ptr<float>();
  const auto scale = static_cast<float>(1.0 / (1.0 - p));
  for_each_dropout_decision(dropout_shape(input.sizes()), p, seed, row_offset,
                            [&](int64_t i, bool kept) { out[i] = kept ? in[i] * scale : 0.0f; });
  return output;
}

torch::Tensor masked_log_softmax(const torch::Tensor& logits, const torch::Tensor& attention_mask) {
  auto padding = attention_mask.eq(0);
  return torch::log_softmax(logits.masked_fill(padding, -std::numeric_limits<float>::infinity()), -1);
}

// Index [..., B, 1] of each row's target position, broadcast over leading dims.
torch::Tensor target_index(const torch::Tensor& log_probs, const torch::Tensor& targets) {
  std::vector<int64_t> index_shape(log_probs.dim(), 1);
  index_shape[log_probs.dim() - 2] = targets.size(0);
  auto sizes = log_probs.sizes().vec();
  sizes.back() = 1;
  return targets.view(index_shape).expand(sizes);
}

struct LossAndGradient {
  torch::Tensor loss;      // [...]
  torch::Tensor gradient;  // d(loss) / d(logits), [..., B, T]
};

// The sum over B of -log softmax[target] and its gradient, softmax - onehot
// (zero at padding, where the softmax is zero), both divided by `rows` (B, or
// the global batch's rows when B is one shard of it).
LossAndGradient masked_cross_entropy_with_gradient(const torch::Tensor& logits, const torch::Tensor& attention_mask,
                                                   const torch::Tensor& targets, int64_t rows) {
  auto log_probs = masked_log_softmax(logits, attention_mask);
  auto index = target_index(log_probs, targets);
  auto loss = -log_probs.gather(-1, index).squeeze(-1).sum(-1).div_(static_cast<double>(rows));
  auto gradient = log_probs.exp().scatter_add_(-1, index, torch::full(index.sizes(), -1.0f, log_probs.options()));
  return {loss, gradient.div_(static_cast<double>(rows))};
}

struct StepGradients {
  torch::Tensor grad_w;  // [L,2,H]
  torch::Tensor grad_b;  // [L,2]
  torch::Tensor loss;    // [L]
};

// This batch's share of the global batch's mean loss and gradient.
StepGradients local_gradients(const torch::Tensor& hidden, const torch::Tensor& attention_mask,
                              const torch::Tensor& start_positions, const torch::Tensor& end_positions,
                              const torch::Tensor& weight, const torch::Tensor& bias, double dropout,
                              uint64_t dropout_seed, int64_t row_offset, int64_t global_rows) {
  const int64_t L = weight.size(0), B = hidden.size(1), H = weight.size(2);
  if (B == 0) return {torch::zeros_like(weight), torch::zeros_like(bias), torch::zeros({L}, weight.options())};
  const int64_t T = hidden.size(2);
  auto dropped = apply_dropout(hidden.to(torch::kFloat32), dropout, dropout_seed, row_offset).reshape({L, B * T, H});
  auto logits = probe_logits(dropped.view({L, B, T, H}), weight, bias);  // [L,B,T,2]
  auto start = masked_cross_entropy_with_gradient(logits.select(-1, 0), attention_mask, start_positions, global_rows);
  auto end = masked_cross_entropy_with_gradient(logits.select(-1, 1), attention_mask, end_positions, global_rows);
  // loss = (start + end) / 2 per layer; layers and heads are independent.
  auto grad_logits = torch::stack({start.gradient, end.gradient}, -1).mul_(0.5).view({L, B * T, 2});
  return {torch::bmm(grad_logits.transpose(1, 2), dropped), grad_logits.sum(1), (start.loss + end.loss) / 2};
}

// Sums a step's gradients and losses over the ranks, in one collective.
void reduce_over_ranks(StepGradients& step, const std::function<void(torch::Tensor&)>& all_reduce_sum) {
  auto flat = torch::cat({step.grad_w.reshape({-1}), step.grad_b.reshape({-1}), step.loss.reshape({-1})});
  all_reduce_sum(flat);
  const int64_t w = step.grad_w.numel(), b = step.grad_b.numel();
  step.grad_w = flat.slice(0, 0, w).view(step.grad_w.sizes());
  step.grad_b = flat.slice(0, w, w + b).view(step.grad_b.sizes());
  step.loss = flat.slice(0, w + b).clone();
}

}  // namespace

torch::Tensor dropout_keep_mask(at::IntArrayRef sizes, double p, uint64_t seed, int64_t row_offset) {
  auto mask = torch::empty(sizes, torch::kBool);
  bool* data = mask.data_ptr<bool>();
  for_each_dropout_decision(dropout_shape(sizes), p, seed, row_offset, [&](int64_t i, bool kept) { data[i] = kept; });
  return mask;
}

torch::Tensor dropout_keep_mask_on(torch::Device device, at::IntArrayRef sizes, double p, uint64_t seed,
                                   int64_t row_offset) {
  const DropoutShape shape = dropout_shape(sizes);
  const auto options = torch::TensorOptions().dtype(torch::kInt64).device(device);
  const auto key = static_cast<int64_t>(mix64(seed + 0x9e3779b97f4a7c15ULL));
  auto l = torch::arange(shape.layers, options).view({-1, 1, 1});
  auto b = torch::arange(row_offset, row_offset + shape.batch, options).view({1, -1, 1});
  auto t = torch::arange(shape.positions, options).view({1, 1, -1});
  auto row_key = mix64_tensor(mix64_tensor(mix64_tensor(l + key) + b.mul(static_cast<int64_t>(0xd1b54a32d192ed03ULL))) +
                              t.mul(static_cast<int64_t>(0x8cb92ba72f3d8dd7ULL)));  // [L,B,T]
  const int64_t pairs = (shape.units + 1) / 2;
  auto pair = torch::arange(1, pairs + 1, options).mul(static_cast<int64_t>(0x9e3779b97f4a7c15ULL));
  auto draw = mix64_tensor(row_key.unsqueeze(-1) + pair);  // [L,B,T,pairs]
  const auto threshold = static_cast<int64_t>(std::llround(p * 4294967296.0));
  auto low = draw.bitwise_and(static_cast<int64_t>(0xffffffffULL)).ge(threshold);
  auto high = shift_right(draw, 32).ge(threshold);
  auto keep = torch::stack({low, high}, -1).view({shape.layers, shape.batch, shape.positions, 2 * pairs});
  return keep.slice(-1, 0, shape.units).reshape(sizes);
}

torch::Tensor masked_cross_entropy(const torch::Tensor& logits, const torch::Tensor& attention_mask,
                                   const torch::Tensor& targets) {
  auto log_probs = masked_log_softmax(logits, attention_mask);
  return -log_probs.gather(-1, target_index(log_probs, targets)).squeeze(-1).mean(-1);
}

ProbeStepResult LayerProbes::train_step(const torch::Tensor& hidden, const torch::Tensor& attention_mask,
                                        const torch::Tensor& start_positions, const torch::Tensor& end_positions,
                                        uint64_t dropout_seed, const ProbeBatchShard& shard) {
  torch::InferenceMode inference;
  const int64_t global_rows = shard.global_rows > 0 ? shard.global_rows : hidden.size(1);
  auto step = local_gradients(hidden, attention_mask, start_positions, end_positions, weight_, bias_,
                              options_.dropout, dropout_seed, shard.row_offset, global_rows);
  if (shard.all_reduce_sum) reduce_over_ranks(step, shard.all_reduce_sum);
  // clip_grad_norm_ per (layer, head) over that head's weight and bias.
  auto norm = (step.grad_w.pow(2).sum(-1) + step.grad_b.pow(2)).sqrt();  // [L,2]
  auto coef = (options_.max_grad_norm / (norm + 1e-6)).clamp_max(1.0);
  apply_adamw(step.grad_w * coef.unsqueeze(-1), step.grad_b * coef);
  return {step.loss};
}

void LayerProbes::apply_adamw(const torch::Tensor& grad_w, const torch::Tensor& grad_b) {
  // transformers' AdamW with correct_bias=False, as the original study used.
  auto update = [&](torch::Tensor& param, torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq, const torch::Tensor& grad) {
    exp_avg.mul_(options_.beta1).add_(grad, 1.0 - options_.beta1);
    exp_avg_sq.mul_(options_.beta2).addcmul_(grad, grad, 1.0 - options_.beta2);
    auto denom = exp_avg_sq.sqrt().add_(options_.eps);
    param.addcdiv_(exp_avg, denom, -options_.learning_rate);
    if (options_.weight_decay > 0) param.add_(param, -options_.learning_rate * options_.weight_decay);
  };
  update(weight_, exp_avg_w_, exp_avg_sq_w_, grad_w);
  update(bias_, exp_avg_b_, exp_avg_sq_b_, grad_b);
}

}  // namespace layerprobe
