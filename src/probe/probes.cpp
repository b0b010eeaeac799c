#include "layerprobe/probe/probes.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
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

// The loops below are compiled for AVX-512 and AVX2 too, and the best the CPU runs is picked at load
// time (GCC's function multiversioning): the dropout hash's 64-bit multiplies only vectorise there.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define LAYERPROBE_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LAYERPROBE_VECTOR_CLONES
#endif

constexpr uint64_t kDrawStep = 0x9e3779b97f4a7c15ULL;

// keep[2p] and keep[2p + 1] for p < pairs: the low and high halves of draw p against `threshold`.
LAYERPROBE_VECTOR_CLONES
void keep_decisions(uint64_t row_key, uint64_t threshold, uint8_t* __restrict keep, int64_t pairs) {
  for (int64_t p = 0; p < pairs; ++p) {
    const uint64_t draw = mix64(row_key + static_cast<uint64_t>(p + 1) * kDrawStep);
    keep[2 * p] = (draw & 0xffffffffULL) >= threshold;
    keep[2 * p + 1] = (draw >> 32) >= threshold;
  }
}

// out = in * kept * scale: a row's dropped-out values (out = in without `kept`).
LAYERPROBE_VECTOR_CLONES
void drop_row(const float* __restrict in, const uint8_t* __restrict kept, float scale, float* __restrict out,
              int64_t n) {
  if (!kept) return std::copy(in, in + n, out), void();
  for (int64_t h = 0; h < n; ++h) out[h] = in[h] * (static_cast<float>(kept[h]) * scale);
}

// The same from bf16 values (their raw bits), widened exactly to float.
LAYERPROBE_VECTOR_CLONES
void drop_row(const uint16_t* __restrict in, const uint8_t* __restrict kept, float scale, float* __restrict out,
              int64_t n) {
  for (int64_t h = 0; h < n; ++h) {
    const uint32_t bits = static_cast<uint32_t>(in[h]) << 16;
    std::memcpy(out + h, &bits, sizeof(float));
  }
  if (kept)
    for (int64_t h = 0; h < n; ++h) out[h] *= static_cast<float>(kept[h]) * scale;
}

// sum a[h] * b[h] in 16 interleaved partial sums (which the compiler keeps in vector registers).
LAYERPROBE_VECTOR_CLONES
float dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  float partial[16] = {};
  int64_t h = 0;
  for (; h + 16 <= n; h += 16)
    for (int j = 0; j < 16; ++j) partial[j] += a[h + j] * b[h + j];
  float sum = 0;
  for (; h < n; ++h) sum += a[h] * b[h];
  for (float p : partial) sum += p;
  return sum;
}

// first += g_first * values, second += g_second * values.
LAYERPROBE_VECTOR_CLONES
void accumulate(float* __restrict first, float* __restrict second, float g_first, float g_second,
                const float* __restrict values, int64_t n) {
  for (int64_t h = 0; h < n; ++h) {
    first[h] += g_first * values[h];
    second[h] += g_second * values[h];
  }
}

// The keep decisions of one row (layer l, batch row b, position t) of H units: the decision for
// (l, b, t, h) hashes (seed, l, row_offset + b, t, h) alone; each 64-bit draw decides two units
// (its low and high halves against a 32-bit threshold).
class DropoutRows {
 public:
  DropoutRows(const DropoutShape& shape, double p, uint64_t seed, int64_t row_offset)
      : shape_(shape), threshold_(static_cast<uint64_t>(std::llround(p * 4294967296.0))),
        key_(mix64(seed + kDrawStep)), row_offset_(row_offset) {}
  int64_t rows() const { return shape_.layers * shape_.batch * shape_.positions; }
  // keep[h] = 1 where unit h of row r (row-major over [L,B,T]) is kept, else 0.
  void row(int64_t r, uint8_t* keep) const {
    const int64_t T = shape_.positions, B = shape_.batch, H = shape_.units;
    const auto t = static_cast<uint64_t>(r % T), b = static_cast<uint64_t>(row_offset_ + (r / T) % B),
               l = static_cast<uint64_t>(r / (T * B));
    const uint64_t row_key = mix64(mix64(mix64(key_ + l) + b * 0xd1b54a32d192ed03ULL) + t * 0x8cb92ba72f3d8dd7ULL);
    keep_decisions(row_key, threshold_, keep, H / 2);
    if (H % 2 == 1) keep[H - 1] = (mix64(row_key + static_cast<uint64_t>(H / 2 + 1) * kDrawStep) & 0xffffffffULL) >= threshold_;
  }
  // Rows per parallel task: about 16k units.
  int64_t grain() const { return std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, shape_.units)); }

 private:
  DropoutShape shape_;
  uint64_t threshold_, key_;
  int64_t row_offset_;
};

// mix64 and the keep decisions of DropoutRows as int64 tensor ops (wrapping arithmetic;
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
  return hidden * dropout_keep_mask_on(hidden.device(), hidden.sizes(), p, seed, row_offset) / (1.0 - p);
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

// One head's masked softmax cross-entropy over a row's T positions (target in [0, T)): returns -log softmax[target]
// and writes d(loss)/d(logit) = softmax - one-hot (zero where masked), times `scale`, to gradient[2t].
// logits and gradient interleave the two heads ([T,2]); both point at this head's first entry.
float head_loss_and_gradient(const float* logits, const int64_t* mask, int64_t T, int64_t target, float scale,
                             float* gradient) {
  float top = -std::numeric_limits<float>::infinity();
  for (int64_t t = 0; t < T; ++t)
    if (mask[t] != 0) top = std::max(top, logits[2 * t]);
  float sum = 0;
  for (int64_t t = 0; t < T; ++t)
    if (mask[t] != 0) sum += std::exp(logits[2 * t] - top);
  const float log_normaliser = top + std::log(sum);
  for (int64_t t = 0; t < T; ++t)
    gradient[2 * t] = (mask[t] != 0 ? std::exp(logits[2 * t] - log_normaliser) : 0.0f) * scale;
  gradient[2 * target] -= scale;
  return mask[target] != 0 ? log_normaliser - logits[2 * target] : std::numeric_limits<float>::infinity();
}

// local_gradients on the CPU, one (layer, batch row) block of T positions at a time, without
// materialising the dropped-out copy: the block's keep decisions and logits, both heads' losses
// and logit gradients, then its share of the weight gradient, which reads the block again from
// cache rather than memory. hidden [L,B,T,H] float32 or bf16 (read as is; other dtypes are converted).
StepGradients cpu_local_gradients(const torch::Tensor& hidden_in, const torch::Tensor& attention_mask,
                                  const torch::Tensor& start_positions, const torch::Tensor& end_positions,
                                  const torch::Tensor& weight, const torch::Tensor& bias, double dropout,
                                  uint64_t dropout_seed, int64_t row_offset, int64_t global_rows) {
  const bool bf16 = hidden_in.scalar_type() == torch::kBFloat16;
  const torch::Tensor hidden = (bf16 ? hidden_in : hidden_in.to(torch::kFloat32)).contiguous();
  const int64_t L = hidden.size(0), B = hidden.size(1), T = hidden.size(2), H = hidden.size(3);
  const auto mask = attention_mask.to(torch::kInt64).contiguous();
  const auto starts = start_positions.to(torch::kInt64).contiguous(), ends = end_positions.to(torch::kInt64).contiguous();
  for (const auto& targets : {starts, ends})
    if (targets.numel() != B || (targets.numel() > 0 && (targets.min().item<int64_t>() < 0 || targets.max().item<int64_t>() >= T)))
      throw Error("probe targets must be " + std::to_string(B) + " positions in [0, " + std::to_string(T) + ")");
  const DropoutRows drop(dropout_shape(hidden.sizes()), dropout, dropout_seed, row_offset);
  const bool dropping = dropout > 0;
  const auto keep_scale = static_cast<float>(dropping ? 1.0 / (1.0 - dropout) : 1.0);
  const auto gradient_scale = static_cast<float>(0.5 / static_cast<double>(global_rows));  // mean of the two heads
  auto block_grad_w = torch::zeros({L, B, 2, H}, torch::kFloat32);
  auto block_grad_b = torch::zeros({L, B, 2}, torch::kFloat32);
  auto block_loss = torch::zeros({L, B}, torch::kFloat32);
  at::parallel_for(0, L * B, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> keep(static_cast<size_t>(dropping ? T * H : 0));
    std::vector<float> values(static_cast<size_t>(H)), logits(static_cast<size_t>(2 * T)),
        gradient(static_cast<size_t>(2 * T));
    for (int64_t block = begin; block < end; ++block) {
      const int64_t l = block / B, b = block % B, first_row = block * T;
      const float* w = weight.data_ptr<float>() + l * 2 * H;
      const float* w_bias = bias.data_ptr<float>() + l * 2;
      auto dropped_row = [&](int64_t t) {  // the position's dropped-out values, into `values`
        const int64_t offset = (first_row + t) * H;
        const uint8_t* kept = dropping ? keep.data() + t * H : nullptr;
        if (bf16)
          drop_row(reinterpret_cast<const uint16_t*>(hidden.data_ptr<at::BFloat16>()) + offset, kept, keep_scale,
                   values.data(), H);
        else
          drop_row(hidden.data_ptr<float>() + offset, kept, keep_scale, values.data(), H);
      };
      for (int64_t t = 0; t < T; ++t) {
        if (dropping) drop.row(first_row + t, keep.data() + t * H);
        dropped_row(t);
        logits[2 * t] = dot(values.data(), w, H) + w_bias[0];
        logits[2 * t + 1] = dot(values.data(), w + H, H) + w_bias[1];
      }
      const int64_t* row_mask = mask.data_ptr<int64_t>() + b * T;
      const float start_loss = head_loss_and_gradient(logits.data(), row_mask, T, starts.data_ptr<int64_t>()[b],
                                                      gradient_scale, gradient.data());
      const float end_loss = head_loss_and_gradient(logits.data() + 1, row_mask, T, ends.data_ptr<int64_t>()[b],
                                                    gradient_scale, gradient.data() + 1);
      block_loss.data_ptr<float>()[block] = (start_loss + end_loss) * gradient_scale;
      float* gw = block_grad_w.data_ptr<float>() + block * 2 * H;
      float* gb = block_grad_b.data_ptr<float>() + block * 2;
      for (int64_t t = 0; t < T; ++t) {
        const float g_start = gradient[2 * t], g_end = gradient[2 * t + 1];
        gb[0] += g_start;
        gb[1] += g_end;
        if (g_start == 0.0f && g_end == 0.0f) continue;  // padding
        dropped_row(t);
        accumulate(gw, gw + H, g_start, g_end, values.data(), H);
      }
    }
  });
  return {block_grad_w.sum(1), block_grad_b.sum(1), block_loss.sum(1)};
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
  auto* data = reinterpret_cast<uint8_t*>(mask.data_ptr<bool>());  // the decisions are 0 or 1
  const DropoutShape shape = dropout_shape(sizes);
  const DropoutRows drop(shape, p, seed, row_offset);
  at::parallel_for(0, drop.rows(), drop.grain(), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) drop.row(r, data + r * shape.units);
  });
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

LinearProbeGradients linear_probe_gradients(const torch::Tensor& hidden, const torch::Tensor& attention_mask,
                                            const torch::Tensor& start_positions, const torch::Tensor& end_positions,
                                            const torch::Tensor& weight, const torch::Tensor& bias, double dropout,
                                            uint64_t dropout_seed, const ProbeBatchShard& shard) {
  torch::InferenceMode inference;
  const int64_t global_rows = shard.global_rows > 0 ? shard.global_rows : hidden.size(1);
  const bool on_cpu = hidden.device().is_cpu() && hidden.size(1) > 0;
  auto step = (on_cpu ? cpu_local_gradients : local_gradients)(hidden, attention_mask, start_positions,
                                                               end_positions, weight, bias, dropout, dropout_seed,
                                                               shard.row_offset, global_rows);
  if (shard.all_reduce_sum) reduce_over_ranks(step, shard.all_reduce_sum);
  return {step.grad_w, step.grad_b, step.loss};
}

ProbeLossGradient probe_loss_gradient(const torch::Tensor& logits, const torch::Tensor& attention_mask,
                                      const torch::Tensor& start_positions, const torch::Tensor& end_positions,
                                      int64_t global_rows) {
  auto start = masked_cross_entropy_with_gradient(logits.select(-1, 0), attention_mask, start_positions, global_rows);
  auto end = masked_cross_entropy_with_gradient(logits.select(-1, 1), attention_mask, end_positions, global_rows);
  return {(start.loss + end.loss) / 2, torch::stack({start.gradient, end.gradient}, -1).mul_(0.5)};
}

torch::Tensor dropped_out(const torch::Tensor& hidden, double p, uint64_t seed, int64_t row_offset) {
  const auto values = hidden.to(torch::kFloat32);
  if (p <= 0 || values.numel() == 0) return values;
  const auto keep = values.is_cpu() ? dropout_keep_mask(values.sizes(), p, seed, row_offset)
                                    : dropout_keep_mask_on(values.device(), values.sizes(), p, seed, row_offset);
  return values * keep / (1.0 - p);
}

void sum_over_ranks(const std::vector<torch::Tensor*>& tensors,
                    const std::function<void(torch::Tensor&)>& all_reduce_sum) {
  if (!all_reduce_sum || tensors.empty()) return;
  std::vector<torch::Tensor> flat;
  for (const auto* t : tensors) flat.push_back(t->reshape({-1}));
  auto joined = torch::cat(flat);
  all_reduce_sum(joined);
  int64_t at = 0;
  for (auto* t : tensors) {
    const int64_t n = t->numel();
    *t = joined.slice(0, at, at + n).view(t->sizes()).clone();
    at += n;
  }
}

ProbeStepResult LayerProbes::train_step(const torch::Tensor& hidden, const torch::Tensor& attention_mask,
                                        const torch::Tensor& start_positions, const torch::Tensor& end_positions,
                                        uint64_t dropout_seed, const ProbeBatchShard& shard) {
  torch::InferenceMode inference;
  auto step = linear_probe_gradients(hidden, attention_mask, start_positions, end_positions, weight_, bias_,
                                     options_.dropout, dropout_seed, shard);
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
