#include "model/onednn.hpp"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <unordered_map>

#include "layerprobe/core/common.hpp"

#ifdef LAYERPROBE_WITH_ONEDNN
#include <ATen/record_function.h>
#include <oneapi/dnnl/dnnl.hpp>

// Each kernel is one op to ATen's RecordFunction observers (the bench's --profile).
#define LAYERPROBE_RECORD(name) RECORD_FUNCTION(name, std::vector<c10::IValue>())
#endif

namespace layerprobe {

// --- dynamic u8 quantisation of an activation ---------------------------------------

namespace {

// Elements per task of the quantisation's passes (~256 KiB of float32).
constexpr int64_t kQuantGrain = 1 << 16;

// GCC 12 flags its own _mm512_undefined_* inside the AVX-512 min/max intrinsics as maybe uninitialised.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

__attribute__((target("avx512f,avx512bw"))) void range_avx512(const float* x, int64_t n, float& lo, float& hi) {
  __m512 low = _mm512_setzero_ps(), high = _mm512_setzero_ps();  // the range holds 0
  __m512 bad = _mm512_setzero_ps();                               // x - x: 0, or NaN for a NaN or an Inf
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    low = _mm512_min_ps(low, v);
    high = _mm512_max_ps(high, v);
    bad = _mm512_add_ps(bad, _mm512_sub_ps(v, v));
  }
  if (i < n) {
    const __m512 v = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << (n - i)) - 1), x + i);
    low = _mm512_min_ps(low, v);
    high = _mm512_max_ps(high, v);
    bad = _mm512_add_ps(bad, _mm512_sub_ps(v, v));
  }
  lo = _mm512_reduce_min_ps(low);
  hi = _mm512_reduce_max_ps(high);
  if (std::isnan(_mm512_reduce_add_ps(bad))) lo = hi = NAN;
}

__attribute__((target("avx512f,avx512bw"))) void convert_avx512(const float* x, uint8_t* q, int64_t n,
                                                                 float inverse_scale, float zero_point) {
  const __m512 inverse = _mm512_set1_ps(inverse_scale), zero = _mm512_set1_ps(zero_point);
  const __m512i floor = _mm512_setzero_si512(), ceiling = _mm512_set1_epi32(255);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    // Round to nearest even (the MXCSR default), then clamp to [0, 255] and narrow.
    __m512i r = _mm512_cvtps_epi32(_mm512_fmadd_ps(_mm512_loadu_ps(x + i), inverse, zero));
    r = _mm512_min_epi32(_mm512_max_epi32(r, floor), ceiling);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(r));
  }
  if (i < n) {
    const auto mask = static_cast<__mmask16>((1u << (n - i)) - 1);
    __m512i r = _mm512_cvtps_epi32(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, x + i), inverse, zero));
    r = _mm512_min_epi32(_mm512_max_epi32(r, floor), ceiling);
    _mm512_mask_cvtepi32_storeu_epi8(q + i, mask, r);
  }
}

#pragma GCC diagnostic pop

void range_scalar(const float* x, int64_t n, float& lo, float& hi) {
  lo = hi = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) {
      lo = hi = NAN;
      return;
    }
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
}

void convert_scalar(const float* x, uint8_t* q, int64_t n, float inverse_scale, float zero_point) {
  for (int64_t i = 0; i < n; ++i)
    q[i] = static_cast<uint8_t>(std::clamp(std::nearbyint(x[i] * inverse_scale + zero_point), 0.f, 255.f));
}

bool has_avx512bw() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  return has;
}

}  // namespace

QuantizedActivation quantize_u8(const torch::Tensor& x) {
  TORCH_CHECK(x.scalar_type() == torch::kFloat && x.is_contiguous(), "quantize_u8: a contiguous float32 tensor");
  const float* data = x.data_ptr<float>();
  const int64_t n = x.numel();
  const bool avx512 = has_avx512bw();
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n / kQuantGrain));
  std::vector<float> lows(chunks, 0.f), highs(chunks, 0.f);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t first = n * c / chunks, count = n * (c + 1) / chunks - first;
      (avx512 ? range_avx512 : range_scalar)(data + first, count, lows[c], highs[c]);
    }
  });
  float lo = 0.f, hi = 0.f;
  for (int64_t c = 0; c < chunks; ++c) {
    if (std::isnan(lows[c]) || std::isnan(highs[c]))
      throw Error("--precision int8: a layer's input holds NaN or Inf (its weights are too large?); use fp32 to see where");
    lo = std::min(lo, lows[c]);
    hi = std::max(hi, highs[c]);
  }
  QuantizedActivation q;
  q.scale = hi > lo ? (hi - lo) / 255.f : 1.f;
  q.zero_point = static_cast<int32_t>(std::clamp(std::nearbyint(-lo / q.scale), 0.f, 255.f));
  q.data = torch::empty(x.sizes(), x.options().dtype(torch::kUInt8));
  uint8_t* out = q.data.data_ptr<uint8_t>();
  const float inverse = 1.f / q.scale, zero = static_cast<float>(q.zero_point);
  at::parallel_for(0, n, kQuantGrain, [&](int64_t begin, int64_t end) {
    (avx512 ? convert_avx512 : convert_scalar)(data + begin, out + begin, end - begin, inverse, zero);
  });
  return q;
}

#ifdef LAYERPROBE_WITH_ONEDNN

namespace {

using dnnl::memory;
using Dims = memory::dims;
using Args = std::unordered_map<int, memory>;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

void run(const dnnl::primitive& primitive, const Args& args) {
  dnnl::stream stream(cpu_engine());
  primitive.execute(stream, args);
  stream.wait();
}

memory::data_type onednn_type(torch::ScalarType type) {
  if (type == torch::kFloat) return memory::data_type::f32;
  if (type == torch::kBFloat16) return memory::data_type::bf16;
  throw Error(std::string("oneDNN: unsupported dtype ") + c10::toString(type));
}

memory::desc plain(Dims dims, torch::ScalarType type) {
  const auto tag = dims.size() == 1 ? memory::format_tag::a : dims.size() == 2 ? memory::format_tag::ab
                                                                                : memory::format_tag::abcd;
  return memory::desc(std::move(dims), onednn_type(type), tag);
}

memory wrap(const memory::desc& desc, const torch::Tensor& tensor, int64_t element_offset = 0) {
  auto* base = static_cast<char*>(tensor.data_ptr()) + element_offset * static_cast<int64_t>(tensor.element_size());
  return memory(desc, cpu_engine(), base);
}

dnnl::algorithm onednn_algorithm(FusedActivation activation) {
  switch (activation) {
    case FusedActivation::GeluErf:
      return dnnl::algorithm::eltwise_gelu_erf;
    case FusedActivation::GeluTanh:
      return dnnl::algorithm::eltwise_gelu_tanh;
    case FusedActivation::Relu:
      return dnnl::algorithm::eltwise_relu;
    case FusedActivation::Swish:
      return dnnl::algorithm::eltwise_swish;
    case FusedActivation::Mish:
      return dnnl::algorithm::eltwise_mish;
    case FusedActivation::None:
      break;
  }
  throw Error("oneDNN: no eltwise algorithm for this activation");
}

// The inner product x [rows, in] -> [rows, out] with the weight's layout left to oneDNN and the
// activation, then the residual add, as post-ops. `type` kChar: int8, u8 x s8 -> float32 with the
// bias in float32 and per-output-channel scales given at run time (DNNL_ARG_ATTR_OUTPUT_SCALES):
// oneDNN 2.x computes scale * (accumulator + bias), then the post-ops.
dnnl::inner_product_forward::primitive_desc inner_product(int64_t rows, int64_t in, int64_t out,
                                                         torch::ScalarType type, FusedActivation activation,
                                                         bool residual) {
  const bool int8 = type == torch::kChar;
  const auto element = int8 ? memory::data_type::s8 : onednn_type(type);
  const memory::desc weights({out, in}, element, memory::format_tag::any);
  dnnl::primitive_attr attributes;
  if (int8) attributes.set_output_scales(1 << 1, {DNNL_RUNTIME_F32_VAL});
  dnnl::post_ops post;
  if (activation != FusedActivation::None) {
    const float alpha = activation == FusedActivation::Swish ? 1.f : 0.f;  // swish's beta, relu's negative slope
    post.append_eltwise(1.f, onednn_algorithm(activation), alpha, 0.f);
  }
  // The residual as a sum into the destination, which holds it: a binary add would send the product to
  // oneDNN's slower gemm kernel with another weight layout (oneDNN 2.6's brgemm lacks that post-op).
  if (residual) post.append_sum(1.f);
  attributes.set_post_ops(post);
  const memory::desc source = int8 ? memory::desc({rows, in}, memory::data_type::u8, memory::format_tag::ab)
                                   : plain({rows, in}, type);
  const torch::ScalarType value = int8 ? torch::kFloat : type;
  const dnnl::inner_product_forward::desc desc(dnnl::prop_kind::forward_inference, source, weights,
                                               plain({out}, value), plain({rows, out}, value));
  return dnnl::inner_product_forward::primitive_desc(desc, attributes, cpu_engine());
}

std::atomic<int64_t> g_repacks{0};

// The rows a packed weight's layout is chosen for; oneDNN's brgemm kernels pick the same layout
// for any row count, and a product whose kernel wants another gets the weight reordered.
constexpr int64_t kPackingRows = 256;

// A head-major view [B, heads, rows, cols] of a row-major buffer: element (b, h, r, c) at
// b * batch_stride + h * head_stride + r * row_stride + c, or + c * row_stride + r when `transpose`.
memory::desc head_view(Dims dims, torch::ScalarType type, int64_t batch_stride, int64_t head_stride,
                       int64_t row_stride, bool transpose) {
  Dims strides = transpose ? Dims{batch_stride, head_stride, 1, row_stride}
                           : Dims{batch_stride, head_stride, row_stride, 1};
  return memory::desc(std::move(dims), onednn_type(type), strides);
}

}  // namespace

bool onednn_available() { return true; }
int64_t packed_linear_repacks() { return g_repacks; }

PackedLinear::PackedLinear(const torch::Tensor& weight_in, const torch::Tensor& bias, torch::ScalarType dtype)
    : int8_(dtype == torch::kChar), in_(weight_in.size(1)), out_(weight_in.size(0)) {
  torch::Tensor weight;
  if (int8_) {
    // Symmetric s8 per output channel: w ~ scale[o] * q[o][i], q in [-127, 127].
    const torch::Tensor w = weight_in.to(torch::kFloat);
    weight_scales_ = w.abs().amax(1) / 127.f;
    weight_scales_.masked_fill_(weight_scales_ == 0, 1.f);  // an all-zero row: any scale
    weight = torch::round(w / weight_scales_.unsqueeze(1)).clamp_(-127, 127).to(torch::kChar).contiguous();
    weight_sums_ = weight.sum(1, false, torch::kFloat);
    bias_ = bias.to(torch::kFloat).contiguous();
  } else {
    weight = weight_in.to(dtype).contiguous();
    bias_ = bias.to(dtype).contiguous();
  }
  const auto layout = inner_product(kPackingRows, in_, out_, dtype, FusedActivation::None, false).weights_desc();
  packed_ = torch::empty({static_cast<int64_t>(layout.get_size())}, torch::kUInt8);
  const memory::desc plain_weight =
      int8_ ? memory::desc({out_, in_}, memory::data_type::s8, memory::format_tag::ab) : plain({out_, in_}, dtype);
  const memory source = wrap(plain_weight, weight), target = wrap(layout, packed_);
  run(dnnl::reorder(source, target), {{DNNL_ARG_FROM, source}, {DNNL_ARG_TO, target}});
  layout_ = std::make_shared<memory::desc>(layout);
}

// oneDNN 2.6's brgemm inner product blocks the rows by a divisor of their count: for 8 or 16 times a
// prime (a batch of 8 windows of prime length) it falls to blocks of 8 or 16 rows and runs at half speed
// or less (2 threads, [1304 x 4096] x [4096 x 4096]: fp32 154 GFLOP/s, bf16 300, where the other row
// counts from 1000 to 2600 average 328 and, to 2000, 610). The rows run as a multiple of 32, then the
// tail of < 32 (no repack: its kernel reads the same packed layout).
constexpr int64_t kRowGranule = 32;

void PackedLinear::run_rows(const torch::Tensor& x, int64_t first, int64_t rows, FusedActivation activation,
                            bool residual, const torch::Tensor& output, const torch::Tensor& bias,
                            const torch::Tensor& scales) const {
  const auto desc = inner_product(rows, in_, out_, int8_ ? torch::kChar : x.scalar_type(), activation, residual);
  const auto& layout = *std::static_pointer_cast<memory::desc>(layout_);
  const memory packed = wrap(layout, packed_);
  memory weights = packed;
  if (desc.weights_desc() != layout) {  // a kernel that wants another layout (never seen with oneDNN 2.6)
    ++g_repacks;
    weights = memory(desc.weights_desc(), cpu_engine());
    run(dnnl::reorder(packed, weights), {{DNNL_ARG_FROM, packed}, {DNNL_ARG_TO, weights}});
  }
  Args args{{DNNL_ARG_SRC, wrap(desc.src_desc(), x, first * in_)},
            {DNNL_ARG_WEIGHTS, weights},
            {DNNL_ARG_BIAS, wrap(desc.bias_desc(), bias)},
            {DNNL_ARG_DST, wrap(desc.dst_desc(), output, first * out_)}};
  if (int8_) args.emplace(DNNL_ARG_ATTR_OUTPUT_SCALES, wrap(plain({out_}, torch::kFloat), scales));
  run(dnnl::inner_product_forward(desc), args);
}

torch::Tensor PackedLinear::forward(const torch::Tensor& x_in, FusedActivation activation,
                                    const torch::Tensor& residual) const {
  const torch::Tensor x = x_in.contiguous();
  QuantizedActivation q;
  if (int8_) {
    LAYERPROBE_RECORD("int8::quantize_u8");  // its own op to the bench's --profile, beside the product's
    q = quantize_u8(x);
  }
  LAYERPROBE_RECORD(activation == FusedActivation::None ? "onednn::inner_product" : "onednn::inner_product+activation");
  const int64_t rows = x.size(0), whole = rows / kRowGranule * kRowGranule;
  // The sum post-op adds the product into the destination: it starts as a (contiguous) copy of the residual.
  auto output = residual.defined() ? residual.to(x.options(), false, true, torch::MemoryFormat::Contiguous)
                                   : torch::empty({rows, out_}, x.options());
  torch::Tensor source = x, bias = bias_, scales;
  if (int8_) {
    // x ~ s (q - z) and W ~ diag(w) Q, so x W^T + b = s w[o] (q Q^T + b / (s w[o]) - z sum_i Q[o][i]):
    // the zero point's share of the product folds into the bias the kernel adds before scaling.
    source = q.data;
    scales = weight_scales_ * q.scale;
    bias = bias_ / scales - static_cast<float>(q.zero_point) * weight_sums_;
  }
  if (whole > 0) run_rows(source, 0, whole, activation, residual.defined(), output, bias, scales);
  if (whole < rows) run_rows(source, whole, rows - whole, activation, residual.defined(), output, bias, scales);
  return output;
}

double int8_product_gflops(int64_t rows, int64_t in, int64_t out, double seconds) {
  torch::InferenceMode inference;
  const PackedLinear linear(torch::randn({out, in}), torch::zeros({out}), torch::kChar);
  const auto desc = inner_product(rows, in, out, torch::kChar, FusedActivation::None, false);
  const torch::Tensor x = torch::randint(0, 256, {rows, in}, torch::kUInt8), y = torch::empty({rows, out});
  const torch::Tensor bias = torch::zeros({out}), scales = torch::full({out}, 1e-3f);
  const dnnl::inner_product_forward product(desc);
  const auto& layout = *std::static_pointer_cast<memory::desc>(linear.layout_);
  const Args args{{DNNL_ARG_SRC, wrap(desc.src_desc(), x)},
                  {DNNL_ARG_WEIGHTS, wrap(layout, linear.packed_)},
                  {DNNL_ARG_BIAS, wrap(desc.bias_desc(), bias)},
                  {DNNL_ARG_DST, wrap(desc.dst_desc(), y)},
                  {DNNL_ARG_ATTR_OUTPUT_SCALES, wrap(plain({out}, torch::kFloat), scales)}};
  run(product, args);
  int64_t runs = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  do {
    run(product, args);
    ++runs;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (elapsed < seconds);
  return 2.0 * static_cast<double>(rows * in * out) * static_cast<double>(runs) / elapsed / 1e9;
}

torch::Tensor onednn_attention(const torch::Tensor& qkv_in, const torch::Tensor& additive_mask, int64_t batch,
                               int64_t length, int64_t heads) {
  LAYERPROBE_RECORD("onednn::attention");
  const torch::Tensor qkv = qkv_in.contiguous();
  const auto type = qkv.scalar_type();
  const int64_t width3 = qkv.size(1), width = width3 / 3, head_size = width / heads, token_stride = length * width3;
  const auto query = head_view({batch, heads, length, head_size}, type, token_stride, head_size, width3, false);
  const auto key_t = head_view({batch, heads, head_size, length}, type, token_stride, head_size, width3, true);
  const auto context_desc = head_view({batch, heads, length, head_size}, type, length * width, head_size, width, false);
  const auto scores_desc = plain({batch, heads, length, length}, type);
  const torch::Tensor mask = additive_mask.to(torch::kFloat).contiguous();
  const auto mask_desc = plain({batch, 1, mask.size(2), length}, torch::kFloat);

  dnnl::primitive_attr scaled;
  scaled.set_output_scales(0, {static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_size)))});
  dnnl::post_ops add_mask;
  add_mask.append_binary(dnnl::algorithm::binary_add, mask_desc);
  scaled.set_post_ops(add_mask);
  auto scores = torch::empty({batch, heads, length, length}, qkv.options());
  auto context = torch::empty({batch * length, width}, qkv.options());
  const memory scores_memory = wrap(scores_desc, scores);
  using dnnl::matmul;
  run(matmul(matmul::primitive_desc(matmul::desc(query, key_t, scores_desc), scaled, cpu_engine())),
      {{DNNL_ARG_SRC, wrap(query, qkv)},
       {DNNL_ARG_WEIGHTS, wrap(key_t, qkv, width)},
       {DNNL_ARG_DST, scores_memory},
       {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, wrap(mask_desc, mask)}});
  const dnnl::softmax_forward::desc softmax(dnnl::prop_kind::forward_inference, scores_desc, 3);
  run(dnnl::softmax_forward(dnnl::softmax_forward::primitive_desc(softmax, cpu_engine())),
      {{DNNL_ARG_SRC, scores_memory}, {DNNL_ARG_DST, scores_memory}});
  run(matmul(matmul::primitive_desc(matmul::desc(scores_desc, query, context_desc), cpu_engine())),
      {{DNNL_ARG_SRC, scores_memory},
       {DNNL_ARG_WEIGHTS, wrap(query, qkv, 2 * width)},
       {DNNL_ARG_DST, wrap(context_desc, context)}});
  return context;
}

namespace {

// The matmul x [rows, in] x B [in, out] -> [rows, out], B the weight [out, in] read transposed
// (or, `in_out`, [in, out] as stored), with the bias, activation, multiply and residual fused.
dnnl::matmul::primitive_desc dense_product(int64_t rows, int64_t in, int64_t out, torch::ScalarType type, bool in_out,
                                           torch::ScalarType bias_type, bool bias, FusedActivation activation,
                                           bool multiply, bool residual) {
  const memory::desc weights({in, out}, onednn_type(type), in_out ? Dims{out, 1} : Dims{1, in});
  dnnl::post_ops post;
  if (activation != FusedActivation::None) {
    const float alpha = activation == FusedActivation::Swish ? 1.f : 0.f;
    post.append_eltwise(1.f, onednn_algorithm(activation), alpha, 0.f);
  }
  if (multiply) post.append_binary(dnnl::algorithm::binary_mul, plain({rows, out}, type));
  if (residual) post.append_sum(1.f);  // into a destination that starts as the residual, as PackedLinear
  dnnl::primitive_attr attributes;
  attributes.set_post_ops(post);
  using dnnl::matmul;
  const matmul::desc desc = bias ? matmul::desc(plain({rows, in}, type), weights, plain({1, out}, bias_type),
                                                plain({rows, out}, type))
                                 : matmul::desc(plain({rows, in}, type), weights, plain({rows, out}, type));
  return matmul::primitive_desc(desc, attributes, cpu_engine());
}

}  // namespace

torch::Tensor onednn_dense(const torch::Tensor& x_in, const torch::Tensor& weight_in, bool in_out,
                           const torch::Tensor& bias_in, FusedActivation activation, const torch::Tensor& multiply_in,
                           const torch::Tensor& residual) {
  LAYERPROBE_RECORD(activation == FusedActivation::None ? "onednn::dense" : "onednn::dense+activation");
  const torch::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
  const auto type = x.scalar_type();
  if (weight.scalar_type() != type) throw Error("onednn_dense: input and weight dtypes differ");
  const int64_t rows = x.size(0), in = x.size(1), out = in_out ? weight.size(1) : weight.size(0);
  const torch::Tensor bias = bias_in.defined() ? bias_in.contiguous() : bias_in;
  const torch::Tensor multiply = multiply_in.defined() ? multiply_in.to(type).contiguous() : multiply_in;
  auto output = residual.defined() ? residual.to(x.options(), false, true, torch::MemoryFormat::Contiguous)
                                   : torch::empty({rows, out}, x.options());
  // Rows as a multiple of 32, then the tail (see PackedLinear: oneDNN's blocking of odd row counts).
  const int64_t whole = rows / kRowGranule * kRowGranule;
  auto run_rows = [&](int64_t first, int64_t count) {
    const auto desc = dense_product(count, in, out, type, in_out, bias.defined() ? bias.scalar_type() : type,
                                    bias.defined(), activation, multiply.defined(), residual.defined());
    Args args{{DNNL_ARG_SRC, wrap(desc.src_desc(), x, first * in)},
              {DNNL_ARG_WEIGHTS, wrap(desc.weights_desc(), weight)},
              {DNNL_ARG_DST, wrap(desc.dst_desc(), output, first * out)}};
    if (bias.defined()) args.emplace(DNNL_ARG_BIAS, wrap(desc.bias_desc(), bias));
    if (multiply.defined())
      args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(activation == FusedActivation::None ? 0 : 1) | DNNL_ARG_SRC_1,
                   wrap(plain({count, out}, type), multiply, first * out));
    run(dnnl::matmul(desc), args);
  };
  if (whole > 0) run_rows(0, whole);
  if (whole < rows) run_rows(whole, rows - whole);
  return output;
}

torch::Tensor onednn_grouped_attention(const HeadColumns& q, const HeadColumns& k, const HeadColumns& v,
                                       const torch::Tensor& mask_in, int64_t batch, int64_t length, int64_t heads,
                                       int64_t kv_heads, int64_t head_dim, double scale) {
  LAYERPROBE_RECORD("onednn::attention");
  const auto type = q.data.scalar_type();
  const int64_t group = heads / kv_heads, width = heads * head_dim;
  const int64_t qs = q.data.size(1), ks = k.data.size(1), vs = v.data.size(1);
  const int64_t T = length, D = head_dim;
  // Query heads r, r + group, ... (one per key/value head) as one batched product per r.
  const auto query = head_view({batch, kv_heads, T, D}, type, T * qs, group * D, qs, false);
  const auto key_t = head_view({batch, kv_heads, D, T}, type, T * ks, D, ks, true);
  const auto value = head_view({batch, kv_heads, T, D}, type, T * vs, D, vs, false);
  const auto context_desc = head_view({batch, kv_heads, T, D}, type, T * width, group * D, width, false);
  const auto scores_desc = plain({batch, kv_heads, T, T}, type);
  const torch::Tensor mask = mask_in.to(torch::kFloat).contiguous();
  const auto mask_desc = plain({batch, 1, T, T}, torch::kFloat);
  dnnl::primitive_attr scaled;
  scaled.set_output_scales(0, {static_cast<float>(scale)});
  dnnl::post_ops add_mask;
  add_mask.append_binary(dnnl::algorithm::binary_add, mask_desc);
  scaled.set_post_ops(add_mask);
  using dnnl::matmul;
  const matmul scores_product(matmul::primitive_desc(matmul::desc(query, key_t, scores_desc), scaled, cpu_engine()));
  const dnnl::softmax_forward softmax(dnnl::softmax_forward::primitive_desc(
      dnnl::softmax_forward::desc(dnnl::prop_kind::forward_inference, scores_desc, 3), cpu_engine()));
  const matmul context_product(matmul::primitive_desc(matmul::desc(scores_desc, value, context_desc), cpu_engine()));
  auto scores = torch::empty({batch, kv_heads, T, T}, q.data.options());
  auto context = torch::empty({batch * T, width}, q.data.options());
  const memory scores_memory = wrap(scores_desc, scores);
  for (int64_t r = 0; r < group; ++r) {
    run(scores_product, {{DNNL_ARG_SRC, wrap(query, q.data, q.column + r * D)},
                         {DNNL_ARG_WEIGHTS, wrap(key_t, k.data, k.column)},
                         {DNNL_ARG_DST, scores_memory},
                         {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, wrap(mask_desc, mask)}});
    run(softmax, {{DNNL_ARG_SRC, scores_memory}, {DNNL_ARG_DST, scores_memory}});
    run(context_product, {{DNNL_ARG_SRC, scores_memory},
                          {DNNL_ARG_WEIGHTS, wrap(value, v.data, v.column)},
                          {DNNL_ARG_DST, wrap(context_desc, context, r * D)}});
  }
  return context;
}

torch::Tensor layer_norm(const torch::Tensor& x_in, const torch::Tensor& weight, const torch::Tensor& bias,
                         double eps) {
  if (x_in.scalar_type() == torch::kFloat)
    return torch::layer_norm(x_in, {x_in.size(-1)}, weight, bias, eps);  // LibTorch's, exactly as the reference
  LAYERPROBE_RECORD("onednn::layer_norm");
  const torch::Tensor x = x_in.contiguous();
  const auto data = plain({x.size(0), x.size(1)}, x.scalar_type());
  const auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
  const dnnl::layer_normalization_forward::desc desc(dnnl::prop_kind::forward_inference, data, static_cast<float>(eps),
                                                     flags);
  const dnnl::layer_normalization_forward::primitive_desc primitive(desc, cpu_engine());
  auto output = torch::empty_like(x);
  const auto scale = weight.to(torch::kFloat).contiguous(), shift = bias.to(torch::kFloat).contiguous();
  run(dnnl::layer_normalization_forward(primitive), {{DNNL_ARG_SRC, wrap(data, x)},
                                                     {DNNL_ARG_DST, wrap(data, output)},
                                                     {DNNL_ARG_SCALE, wrap(primitive.weights_desc(), scale)},
                                                     {DNNL_ARG_SHIFT, wrap(primitive.weights_desc(), shift)}});
  return output;
}

namespace {

memory::desc strided_desc(const StridedMatrix& m) {
  TORCH_CHECK(m.dims.size() == m.strides.size(), "onednn_matmul: dims and strides differ in rank");
  return memory::desc(Dims(m.dims.begin(), m.dims.end()), onednn_type(m.tensor.scalar_type()),
                      Dims(m.strides.begin(), m.strides.end()));
}

}  // namespace

void onednn_matmul(const StridedMatrix& a, const StridedMatrix& b, const StridedMatrix& out, float scale) {
  LAYERPROBE_RECORD("onednn::matmul");
  const auto a_desc = strided_desc(a), b_desc = strided_desc(b), out_desc = strided_desc(out);
  dnnl::primitive_attr attributes;
  if (scale != 1.f) attributes.set_output_scales(0, {scale});
  using dnnl::matmul;
  run(matmul(matmul::primitive_desc(matmul::desc(a_desc, b_desc, out_desc), attributes, cpu_engine())),
      {{DNNL_ARG_SRC, wrap(a_desc, a.tensor, a.offset)},
       {DNNL_ARG_WEIGHTS, wrap(b_desc, b.tensor, b.offset)},
       {DNNL_ARG_DST, wrap(out_desc, out.tensor, out.offset)}});
}

void onednn_softmax(const torch::Tensor& x, const torch::Tensor& out) {
  LAYERPROBE_RECORD("onednn::softmax");
  TORCH_CHECK(x.is_contiguous() && out.is_contiguous() && x.sizes() == out.sizes(), "onednn_softmax: shapes");
  const Dims dims{x.numel() / x.size(-1), x.size(-1)};
  const auto source = plain(dims, x.scalar_type()), target = plain(dims, out.scalar_type());
  const dnnl::softmax_v2_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::softmax_accurate,
                                            source, target, 1);
  run(dnnl::softmax_v2_forward(dnnl::softmax_v2_forward::primitive_desc(desc, cpu_engine())),
      {{DNNL_ARG_SRC, wrap(source, x)}, {DNNL_ARG_DST, wrap(target, out)}});
}

#else  // LibTorch's ops, where this build has no oneDNN headers

namespace {

torch::Tensor apply_fused(const torch::Tensor& x, FusedActivation activation) {
  switch (activation) {
    case FusedActivation::GeluErf:
      return torch::gelu(x);
    case FusedActivation::GeluTanh:
      return torch::gelu(x, "tanh");
    case FusedActivation::Relu:
      return torch::relu(x);
    case FusedActivation::Swish:
      return torch::silu(x);
    case FusedActivation::Mish:
      return torch::mish(x);
    case FusedActivation::None:
      break;
  }
  return x;
}

}  // namespace

bool onednn_available() { return false; }
int64_t packed_linear_repacks() { return 0; }

double int8_product_gflops(int64_t, int64_t, int64_t, double) {
  throw Error("--precision int8 needs a build with oneDNN (Debian: libdnnl-dev)", 2);
}

PackedLinear::PackedLinear(const torch::Tensor& weight, const torch::Tensor& bias, torch::ScalarType dtype)
    : packed_(weight.to(dtype).contiguous()), bias_(bias.to(dtype).contiguous()), in_(weight.size(1)),
      out_(weight.size(0)) {
  if (dtype == torch::kChar) throw Error("--precision int8 needs a build with oneDNN (Debian: libdnnl-dev)", 2);
  if (at::hasMKLDNN()) packed_ = packed_.to_mkldnn();
}

torch::Tensor PackedLinear::forward(const torch::Tensor& x, FusedActivation activation,
                                    const torch::Tensor& residual) const {
  torch::Tensor y = packed_.is_mkldnn() ? torch::mkldnn_linear(x.contiguous().to_mkldnn(), packed_, bias_).to_dense()
                                        : torch::linear(x, packed_, bias_);
  y = apply_fused(y, activation);
  return residual.defined() ? y.add_(residual) : y;
}

torch::Tensor onednn_attention(const torch::Tensor& qkv_flat, const torch::Tensor& additive_mask, int64_t batch,
                               int64_t length, int64_t heads) {
  const int64_t width = qkv_flat.size(1) / 3, head_size = width / heads;
  auto qkv = qkv_flat.view({batch, length, 3, heads, head_size}).permute({2, 0, 3, 1, 4});
  auto scores = torch::matmul(qkv[0], qkv[1].transpose(-1, -2)) / std::sqrt(static_cast<double>(head_size));
  auto probs = torch::softmax(scores + additive_mask.to(scores.scalar_type()), -1);
  return torch::matmul(probs, qkv[2]).permute({0, 2, 1, 3}).reshape({batch * length, width});
}

torch::Tensor onednn_dense(const torch::Tensor& x, const torch::Tensor& weight, bool in_out, const torch::Tensor& bias,
                           FusedActivation activation, const torch::Tensor& multiply, const torch::Tensor& residual) {
  torch::Tensor y = torch::linear(x, in_out ? weight.t() : weight, bias.defined() ? bias.to(x.scalar_type()) : bias);
  y = apply_fused(y, activation);
  if (multiply.defined()) y = y * multiply;
  return residual.defined() ? y.add_(residual) : y;
}

torch::Tensor onednn_grouped_attention(const HeadColumns& q, const HeadColumns& k, const HeadColumns& v,
                                       const torch::Tensor& mask, int64_t batch, int64_t length, int64_t heads,
                                       int64_t kv_heads, int64_t head_dim, double scale) {
  auto heads_of = [&](const HeadColumns& x, int64_t count) {
    return x.data.narrow(1, x.column, count * head_dim).reshape({batch, length, count, head_dim}).permute({0, 2, 1, 3});
  };
  const int64_t group = heads / kv_heads;
  auto keys = heads_of(k, kv_heads).repeat_interleave(group, 1), values = heads_of(v, kv_heads).repeat_interleave(group, 1);
  auto scores = torch::matmul(heads_of(q, heads), keys.transpose(-1, -2)) * scale + mask.to(q.data.scalar_type());
  return torch::matmul(torch::softmax(scores, -1), values).permute({0, 2, 1, 3}).reshape({batch * length, heads * head_dim});
}

torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, double eps) {
  return torch::layer_norm(x, {x.size(-1)}, weight.to(x.scalar_type()), bias.to(x.scalar_type()), eps);
}

namespace {

torch::Tensor strided_view(const StridedMatrix& m) {
  return m.tensor.as_strided(m.dims, m.strides, m.tensor.storage_offset() + m.offset);
}

}  // namespace

void onednn_matmul(const StridedMatrix& a, const StridedMatrix& b, const StridedMatrix& out, float scale) {
  auto product = torch::matmul(strided_view(a).to(torch::kFloat), strided_view(b).to(torch::kFloat));
  strided_view(out).copy_(scale != 1.f ? product * scale : product);
}

void onednn_softmax(const torch::Tensor& x, const torch::Tensor& out) { out.copy_(torch::softmax(x, -1)); }

#endif

}  // namespace layerprobe
