// The encoder's CPU fast-path kernels (src/model/onednn.hpp) against LibTorch's reference ops:
// fused linears (every activation, with and without the residual), the attention block and
// LayerNorm, in float32 (to float rounding) and bf16 (to bf16 rounding).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/precision.hpp"
#include "model/layers.hpp"
#include "model/onednn.hpp"

namespace layerprobe {
namespace {

// Largest |a - b| over the largest |b|.
double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  const auto reference = b.to(torch::kDouble);
  return (a.to(torch::kDouble) - reference).abs().max().item<double>() /
         std::max(1e-12, reference.abs().max().item<double>());
}

const std::pair<FusedActivation, Activation> kFusions[] = {{FusedActivation::GeluErf, Activation::Gelu},
                                                           {FusedActivation::GeluTanh, Activation::GeluNew},
                                                           {FusedActivation::Relu, Activation::Relu},
                                                           {FusedActivation::Swish, Activation::Swish},
                                                           {FusedActivation::Mish, Activation::Mish}};

TEST(OneDnnKernels, PackedLinearEqualsLinearThenActivationThenResidual) {
  torch::InferenceMode inference;
  torch::manual_seed(3);
  const auto weight = torch::randn({40, 24}) * 0.3, bias = torch::randn({40});
  const PackedLinear packed(weight, bias, torch::kFloat);
  const int64_t repacks = packed_linear_repacks();
  // Rows run as a multiple of 32 and a tail: 1 (tail only), 64 (no tail), 37 and 300 (both).
  for (int64_t rows : {1, 37, 64, 300}) {
    const auto x = torch::randn({rows, 24}), residual = torch::randn({rows, 40});
    const auto product = torch::linear(x, weight, bias);
    EXPECT_LT(relative_error(packed.forward(x), product), 1e-6) << rows << " rows";
    EXPECT_TRUE(torch::allclose(packed.forward(x, FusedActivation::None, residual), product + residual, 1e-5, 1e-5))
        << "every row, the tail's included: " << rows << " rows";
    EXPECT_LT(relative_error(packed.forward(x, FusedActivation::None, residual), product + residual), 1e-6);
    for (const auto& [fused_activation, activation] : kFusions) {
      const auto expected = apply_activation(product, activation);
      EXPECT_LT(relative_error(packed.forward(x, fused_activation), expected), 1e-5)
          << rows << " rows, activation " << static_cast<int>(activation);
      EXPECT_LT(relative_error(packed.forward(x, fused_activation, residual), expected + residual), 1e-5);
    }
  }
  // Every fusion runs on the weight as packed: no product reorders it (which costs a pass over the
  // whole weight per call, and meant a slower kernel, for oneDNN 2.6's binary-add residual).
  EXPECT_EQ(packed_linear_repacks(), repacks);
}

TEST(OneDnnKernels, PackedLinearInBf16StaysWithinBf16Rounding) {
  if (!cpu_has_native_bf16()) GTEST_SKIP() << "this CPU has no native bf16 (avx512_bf16 / amx_bf16)";
  torch::InferenceMode inference;
  torch::manual_seed(4);
  const auto weight = torch::randn({64, 96}) * 0.1, bias = torch::randn({64});
  const auto x = torch::randn({50, 96}), residual = torch::randn({50, 64});
  const PackedLinear packed(weight, bias, torch::kBFloat16);
  const auto got = packed.forward(x.to(torch::kBFloat16), FusedActivation::GeluErf, residual.to(torch::kBFloat16));
  EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
  const auto expected = torch::gelu(torch::linear(x, weight, bias)) + residual;
  EXPECT_LT(relative_error(got, expected), 2e-2);
}

// softmax(q k^T / sqrt(d) + mask) v, head by head, in double.
torch::Tensor reference_attention(const torch::Tensor& qkv, const torch::Tensor& mask, int64_t batch, int64_t length,
                                  int64_t heads) {
  const int64_t width = qkv.size(1) / 3, d = width / heads;
  auto split = qkv.to(torch::kDouble).view({batch, length, 3, heads, d}).permute({2, 0, 3, 1, 4});
  auto scores = torch::matmul(split[0], split[1].transpose(-1, -2)) / std::sqrt(static_cast<double>(d));
  auto probs = torch::softmax(scores + mask.to(torch::kDouble), -1);
  return torch::matmul(probs, split[2]).permute({0, 2, 1, 3}).reshape({batch * length, width});
}

// The int8 activation quantisation: every element within half a step of its value, the range's ends
// on the grid's ends, exact zero exact, across the vectorised body, its tail and the threads' chunks.
TEST(OneDnnKernels, QuantizeU8RoundsEachValueToTheNearestStepOfTheTensorsRange) {
  torch::InferenceMode inference;
  torch::manual_seed(5);
  for (int64_t n : {1, 15, 16, 17, 1000, 300001}) {
    const auto x = torch::randn({n}) * 3 + 0.5;
    const QuantizedActivation q = quantize_u8(x);
    const auto back = (q.data.to(torch::kFloat) - q.zero_point) * q.scale;
    const double lo = std::min(0.0, x.min().item<double>()), hi = std::max(0.0, x.max().item<double>());
    EXPECT_NEAR(q.scale, (hi - lo) / 255, 1e-6 * (hi - lo)) << n;
    EXPECT_LE((back - x).abs().max().item<double>(), q.scale * 0.5 * (1 + 1e-4)) << n;
    // Each element is the nearest step (ties either way).
    const auto exact = x / q.scale + q.zero_point;
    EXPECT_LE((q.data.to(torch::kFloat) - exact).abs().max().item<double>(), 0.5 + 1e-3) << n;
  }
  // All non-negative: zero point 0; all zero: any scale, zero stays zero.
  const QuantizedActivation positive = quantize_u8(torch::rand({100}) + 1);
  EXPECT_EQ(positive.zero_point, 0);
  EXPECT_EQ(positive.data.max().item<int>(), 255);
  const QuantizedActivation zeros = quantize_u8(torch::zeros({40}));
  EXPECT_TRUE(((zeros.data.to(torch::kInt) - zeros.zero_point) == 0).all().item<bool>());
  // A NaN or an Inf anywhere is an error, not a silent garbage scale.
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    auto x = torch::randn({70000});
    x[69999] = bad;
    EXPECT_THROW(quantize_u8(x), Error) << bad;
  }
}

// int8: the kernel computes exactly act(dequantised x . dequantised W^T + b) + residual, to float
// rounding, for every activation, row counts with and without a tail; and stays near the fp32 product.
TEST(OneDnnKernels, PackedLinearInInt8IsTheProductOfTheDequantisedOperands) {
  if (!cpu_has_int8_dot()) GTEST_SKIP() << "this CPU has no 8-bit dot products (AVX512_VNNI or AMX-INT8)";
  torch::InferenceMode inference;
  torch::manual_seed(4);
  const auto weight = torch::randn({40, 96}) * 0.3, bias = torch::randn({40});
  weight[7].zero_();  // an all-zero output channel
  const PackedLinear packed(weight, bias, torch::kChar);
  const auto scales = weight.abs().amax(1).clamp_min(1e-30) / 127;
  const auto weight_q = torch::round(weight / scales.unsqueeze(1)).clamp(-127, 127) * scales.unsqueeze(1);
  const int64_t repacks = packed_linear_repacks();
  for (int64_t rows : {1, 37, 64, 300}) {
    const auto x = torch::randn({rows, 96}) + 0.3, residual = torch::randn({rows, 40});
    const QuantizedActivation q = quantize_u8(x);
    const auto x_q = (q.data.to(torch::kFloat) - q.zero_point) * q.scale;
    const auto product = torch::linear(x_q.to(torch::kDouble), weight_q.to(torch::kDouble), bias.to(torch::kDouble));
    EXPECT_LT(relative_error(packed.forward(x), product), 1e-5) << rows << " rows";
    EXPECT_LT(relative_error(packed.forward(x, FusedActivation::None, residual), product + residual), 1e-5) << rows;
    for (const auto& [fused, activation] : kFusions) {
      const auto expected = apply_activation(product.to(torch::kFloat), activation) + residual;
      EXPECT_LT(relative_error(packed.forward(x, fused, residual), expected), 1e-5) << rows << " rows";
    }
    // Against the fp32 product: the quantisation's own error (1/255 of x's range, 1/254 of each row's weights).
    EXPECT_LT(relative_error(packed.forward(x), torch::linear(x, weight, bias)), 0.03) << rows << " rows";
    EXPECT_EQ(packed.forward(x).scalar_type(), torch::kFloat);
  }
  EXPECT_EQ(packed_linear_repacks(), repacks);
}

TEST(OneDnnKernels, AttentionEqualsTheReferenceWithPaddingMasked) {
  torch::InferenceMode inference;
  torch::manual_seed(5);
  const int64_t batch = 3, length = 11, heads = 4, width = 32;  // d = 8: a scale that is not a power of two
  const auto qkv = torch::randn({batch * length, 3 * width});
  for (double masked : {-10000.0, -std::numeric_limits<double>::infinity()}) {
    auto attention_mask = torch::ones({batch, length}, torch::kInt64);
    attention_mask.index_put_({1, torch::indexing::Slice(7, length)}, 0);
    attention_mask.index_put_({2, torch::indexing::Slice(2, length)}, 0);
    const auto additive = additive_attention_mask(attention_mask, torch::kFloat, masked);
    const auto got = onednn_attention(qkv, additive, batch, length, heads);
    EXPECT_EQ(got.sizes(), (std::vector<int64_t>{batch * length, width}));
    EXPECT_LT(relative_error(got, reference_attention(qkv, additive, batch, length, heads)), 1e-6) << masked;
  }
  if (!cpu_has_native_bf16()) return;
  const auto additive = additive_attention_mask(torch::ones({batch, length}, torch::kInt64), torch::kFloat, -10000.0);
  const auto got = onednn_attention(qkv.to(torch::kBFloat16), additive, batch, length, heads);
  EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
  EXPECT_LT(relative_error(got, reference_attention(qkv, additive, batch, length, heads)), 3e-2);
}

TEST(OneDnnKernels, LayerNormIsLibTorchsInFloat32AndCloseInBf16) {
  torch::InferenceMode inference;
  torch::manual_seed(6);
  const auto x = torch::randn({20, 48}) * 3 + 1, weight = torch::randn({48}), bias = torch::randn({48});
  const auto expected = torch::layer_norm(x, {48}, weight, bias, 1e-12);
  EXPECT_TRUE(torch::equal(layer_norm(x, weight, bias, 1e-12), expected));
  if (!cpu_has_native_bf16()) return;
  const auto got = layer_norm(x.to(torch::kBFloat16), weight, bias, 1e-12);
  EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
  EXPECT_LT(relative_error(got, expected), 2e-2);
}

}  // namespace
}  // namespace layerprobe
