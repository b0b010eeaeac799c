#include <torch/torch.h>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/io/safetensors.hpp"
#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/squad/encode_loop.hpp"
#include "test_support.hpp"

#include <cstdlib>
#include <iostream>
#include <optional>

using namespace layerprobe;

namespace {

// bf16 keeps 8 significant bits. Measured on the four tiny 2.5.1 goldens (this machine, AVX512_BF16, the
// oneDNN layer path: products accumulate and the residual is added in fp32): hidden states within
// 0.013-0.017 of the layer's largest value and 0.0053-0.0056 of its mean magnitude on average;
// start/end logits within 0.0036-0.0042 (0.0008 on average). The bounds leave about 2x. The decoders'
// goldens (GPT-2, Llama, Qwen2) measured 0.008-0.011, 0.0035-0.0063 and 0.0024-0.0034.
constexpr double kBf16HiddenBound = 0.035;
constexpr double kBf16MeanHiddenBound = 0.012;
constexpr double kBf16LogitBound = 0.009;

int usage_error_code(const std::string& precision, const torch::Device& device) {
  try {
    check_precision(precision, device);
  } catch (const Error& e) {
    return e.exit_code();
  }
  return 0;
}

// check_precision's message, or "" when it accepts.
std::string refusal(const std::string& precision, const torch::Device& device) {
  try {
    check_precision(precision, device);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// LAYERPROBE_HIDE_CPU_FLAGS set to `flags` while alive (the CPU then seems to lack them), restored after.
class HiddenCpuFlags {
 public:
  explicit HiddenCpuFlags(const std::string& flags) {
    if (const char* old = std::getenv("LAYERPROBE_HIDE_CPU_FLAGS")) saved_ = old;
    setenv("LAYERPROBE_HIDE_CPU_FLAGS", flags.c_str(), 1);
  }
  ~HiddenCpuFlags() {
    if (saved_) setenv("LAYERPROBE_HIDE_CPU_FLAGS", saved_->c_str(), 1);
    else unsetenv("LAYERPROBE_HIDE_CPU_FLAGS");
  }

 private:
  std::optional<std::string> saved_;
};

// int8 rounds each product's input to 1/255 of its range and each weight to 1/254 of its row's. Measured on
// the six covered tiny goldens (this machine, avx512_core_vnni kernels, per-tensor u8 activations): hidden
// states' worst layer within 0.00060-0.00106 of the layer's largest value and 0.00063-0.00096 of its mean
// magnitude (the error grows with depth: layer 4 of 4 is the worst in every family); start/end logits
// within 0.00030-0.00049 (0.00007-0.00011 on average). The bounds leave about 2x over the worst family.
constexpr double kInt8HiddenBound = 0.0025;
constexpr double kInt8MeanHiddenBound = 0.002;
constexpr double kInt8LogitBound = 0.001;
// The fp32 path matches the references to 1e-5 (the parity standard): a worst layer above this ran in int8.
constexpr double kInt8RoundingFloor = 1e-4;

}  // namespace

TEST(Precision, Fp32IsAcceptedEverywhereAndChangesNothing) {
  EXPECT_EQ(usage_error_code("fp32", torch::kCPU), 0);
  PrecisionScope scope("fp32", torch::kCPU);
  auto product = torch::mm(torch::ones({2, 3}), torch::ones({3, 2}));
  EXPECT_EQ(product.scalar_type(), torch::kFloat);
}

TEST(Precision, Fp16OnTheCpuIsAUsageErrorAndBf16NeedsNativeSupport) {
  EXPECT_EQ(usage_error_code("fp16", torch::kCPU), 2);
  EXPECT_THROW(PrecisionScope("fp16", torch::kCPU), Error);
  // bf16 runs on a CPU with AVX512_BF16 or AMX; elsewhere it is refused, never emulated.
  EXPECT_EQ(usage_error_code("bf16", torch::kCPU), cpu_has_native_bf16() ? 0 : 2);
  if (!cpu_has_native_bf16()) return;
  {
    PrecisionScope scope("bf16", torch::kCPU);
    EXPECT_EQ(cpu_compute_dtype(), torch::kBFloat16);
  }
  EXPECT_EQ(cpu_compute_dtype(), torch::kFloat);
}

// The bf16 CPU encoder against transformers' fp32 outputs on every family's golden inputs.
class CpuBf16 : public ::testing::TestWithParam<const char*> {};

TEST_P(CpuBf16, StaysCloseToTheFp32References) {
  if (!cpu_has_native_bf16()) GTEST_SKIP() << "this CPU has no native bf16 (AVX512_BF16 or AMX): the path is refused";
  const std::string model = GetParam();
  REQUIRE_SHARED("golden/" + model + "/reference_outputs.safetensors");
  const auto dir = test_support::shared_path("golden/" + model);
  LoadedModel loaded = load_checkpoint(dir);
  const auto ref = read_safetensors(dir / "reference_outputs.safetensors").tensors;
  EncoderBatch batch{ref.at("input_ids"), ref.count("token_type_ids") ? ref.at("token_type_ids") : torch::Tensor(),
                     ref.at("attention_mask")};
  const EncoderOutput out = encode_frozen(*loaded.model, batch, "bf16", true);
  const torch::Tensor& hidden = ref.at("hidden_states");
  ASSERT_EQ(static_cast<int64_t>(out.hidden_states.size()), hidden.size(0));
  double worst = 0, worst_mean = 0;
  const auto mask = batch.attention_mask.to(torch::kBool).unsqueeze(-1);
  for (int64_t i = 1; i < hidden.size(0); ++i) {
    // Relative to the layer's scale, over real (unpadded) tokens: the largest difference over the
    // largest value, and the mean difference over the mean magnitude.
    const auto diff = (out.hidden_states[i] - hidden[i]).abs().masked_select(mask.expand_as(hidden[i]));
    const auto magnitude = hidden[i].abs().masked_select(mask.expand_as(hidden[i]));
    worst = std::max(worst, diff.max().item<double>() / magnitude.max().item<double>());
    worst_mean = std::max(worst_mean, diff.mean().item<double>() / magnitude.mean().item<double>());
  }
  auto logit_diff = [&](const torch::Tensor& got, const char* key) {
    return (got - ref.at(key)).abs().masked_select(mask.squeeze(-1));
  };
  const auto start = logit_diff(out.start_logits, "start_logits"), end = logit_diff(out.end_logits, "end_logits");
  const double logits = std::max(start.max().item<double>(), end.max().item<double>());
  std::cout << model << " bf16 vs transformers fp32: hidden states max |diff| / max |h| " << worst
            << ", mean |diff| / mean |h| " << worst_mean << " (worst layer); start/end logits max |diff| " << logits
            << ", mean |diff| " << (start.mean().item<double>() + end.mean().item<double>()) / 2 << "\n";
  EXPECT_LE(worst, kBf16HiddenBound);
  EXPECT_LE(worst_mean, kBf16MeanHiddenBound);
  EXPECT_GT(worst, 1e-4) << "no bf16 rounding at all: the layers did not run in bf16";
  EXPECT_LE(logits, kBf16LogitBound);
  EXPECT_EQ(out.hidden_states.back().scalar_type(), torch::kFloat);
}

INSTANTIATE_TEST_SUITE_P(Families, CpuBf16,
                         ::testing::Values("albert-tiny", "bert-tiny", "distilbert-tiny", "roberta-tiny", "electra-tiny",
                                           "xlm-roberta-tiny", "modernbert-tiny", "gpt2-tiny", "llama-tiny", "qwen2-tiny"));

TEST(Precision, Int8NeedsVnniOrAmxAndACpuAndIsRefusedElsewhere) {
  // On this CPU as it is: accepted where it has 8-bit dot products.
  EXPECT_EQ(usage_error_code("int8", torch::kCPU), cpu_has_int8_dot() ? 0 : 2);
  // A GPU: int8 is a CPU path.
  EXPECT_EQ(usage_error_code("int8", torch::Device(torch::kCUDA)), 2);
  EXPECT_NE(refusal("int8", torch::Device(torch::kCUDA)).find("CPU path"), std::string::npos);
  {
    // A CPU without VNNI or AMX-INT8 (simulated): refused, the message naming what is missing.
    HiddenCpuFlags hidden("avx512_vnni,amx_int8");
    EXPECT_FALSE(cpu_has_int8_dot());
    EXPECT_EQ(usage_error_code("int8", torch::kCPU), 2);
    EXPECT_NE(refusal("int8", torch::kCPU).find("AVX512_VNNI or AMX-INT8"), std::string::npos);
    EXPECT_THROW(PrecisionScope("int8", torch::kCPU), Error);
    EXPECT_EQ(usage_error_code("fp32", torch::kCPU), 0);  // the default runs everywhere
  }
  {
    // Hiding only one of the two leaves the other.
    HiddenCpuFlags hidden("amx_int8");
    EXPECT_EQ(cpu_has_int8_dot(), refusal("int8", torch::kCPU).empty());
  }
  // bf16's refusal, simulated the same way.
  {
    HiddenCpuFlags hidden("avx512_bf16 amx_bf16");
    EXPECT_FALSE(cpu_has_native_bf16());
    EXPECT_EQ(usage_error_code("bf16", torch::kCPU), 2);
  }
  // Training autocast has no int8.
  if (cpu_has_int8_dot()) EXPECT_THROW(Autocast("int8", torch::kCPU), Error);
  if (!cpu_has_int8_dot()) return;
  {
    PrecisionScope scope("int8", torch::kCPU);
    EXPECT_EQ(cpu_compute_dtype(), torch::kChar);
  }
  EXPECT_EQ(cpu_compute_dtype(), torch::kFloat);
}

// The int8 CPU encoder against transformers' fp32 outputs on every covered family's golden inputs.
class CpuInt8 : public ::testing::TestWithParam<const char*> {};

TEST_P(CpuInt8, StaysCloseToTheFp32References) {
  if (!cpu_has_int8_dot()) GTEST_SKIP() << "this CPU has no 8-bit dot products (AVX512_VNNI or AMX-INT8): int8 is refused";
  const std::string model = GetParam();
  REQUIRE_SHARED("golden/" + model + "/reference_outputs.safetensors");
  const auto dir = test_support::shared_path("golden/" + model);
  LoadOptions load;
  load.precision = "int8";
  LoadedModel loaded = load_checkpoint(dir, std::nullopt, load);
  const auto ref = read_safetensors(dir / "reference_outputs.safetensors").tensors;
  EncoderBatch batch{ref.at("input_ids"), ref.count("token_type_ids") ? ref.at("token_type_ids") : torch::Tensor(),
                     ref.at("attention_mask")};
  const EncoderOutput out = encode_frozen(*loaded.model, batch, "int8", true);
  const EncoderOutput fp32 = encode_frozen(*loaded.model, batch, "fp32", true);
  const torch::Tensor& hidden = ref.at("hidden_states");
  ASSERT_EQ(static_cast<int64_t>(out.hidden_states.size()), hidden.size(0));
  double worst = 0, worst_mean = 0;
  int64_t worst_layer = 0;
  const auto mask = batch.attention_mask.to(torch::kBool).unsqueeze(-1);
  std::cout << model << " int8 per layer (max |diff| / max |h|, mean |diff| / mean |h|):";
  for (int64_t i = 1; i < hidden.size(0); ++i) {
    const auto diff = (out.hidden_states[i] - hidden[i]).abs().masked_select(mask.expand_as(hidden[i]));
    const auto magnitude = hidden[i].abs().masked_select(mask.expand_as(hidden[i]));
    const double layer_max = diff.max().item<double>() / magnitude.max().item<double>();
    const double layer_mean = diff.mean().item<double>() / magnitude.mean().item<double>();
    std::cout << " " << i << ": " << layer_max << " " << layer_mean << ";";
    if (layer_mean > worst_mean) worst_layer = i;
    worst = std::max(worst, layer_max);
    worst_mean = std::max(worst_mean, layer_mean);
  }
  auto logit_diff = [&](const torch::Tensor& got, const char* key) {
    return (got - ref.at(key)).abs().masked_select(mask.squeeze(-1));
  };
  const auto start = logit_diff(out.start_logits, "start_logits"), end = logit_diff(out.end_logits, "end_logits");
  const double logits = std::max(start.max().item<double>(), end.max().item<double>());
  std::cout << "\n" << model << " int8 vs transformers fp32: hidden states max |diff| / max |h| " << worst
            << ", mean |diff| / mean |h| " << worst_mean << " (worst layer " << worst_layer
            << "); start/end logits max |diff| " << logits << ", mean |diff| "
            << (start.mean().item<double>() + end.mean().item<double>()) / 2 << "\n";
  EXPECT_LE(worst, kInt8HiddenBound);
  EXPECT_LE(worst_mean, kInt8MeanHiddenBound);
  EXPECT_LE(logits, kInt8LogitBound);
  // It did run in int8: its rounding shows (fp32 matches the reference to 1e-5), and it leaves float32.
  const double fp32_logits = (fp32.start_logits - ref.at("start_logits")).abs().masked_select(mask.squeeze(-1)).max().item<double>();
  EXPECT_LT(fp32_logits, 1e-5);
  EXPECT_GT(worst, kInt8RoundingFloor) << "no int8 rounding at all: the layers did not run in int8";
  EXPECT_EQ(out.hidden_states.back().scalar_type(), torch::kFloat);
}

INSTANTIATE_TEST_SUITE_P(Families, CpuInt8,
                         ::testing::Values("albert-tiny", "bert-tiny", "distilbert-tiny", "roberta-tiny", "electra-tiny",
                                           "xlm-roberta-tiny"));

// The families without int8 layers refuse it by name, at load and at the forward pass, never running fp32 unsaid.
class Int8Refused : public ::testing::TestWithParam<const char*> {};

TEST_P(Int8Refused, ByTheFamiliesWithoutInt8Layers) {
  if (!cpu_has_int8_dot()) GTEST_SKIP() << "this CPU has no 8-bit dot products: int8 is refused before any family";
  const std::string model = GetParam();
  REQUIRE_SHARED("golden/" + model + "/reference_outputs.safetensors");
  const auto dir = test_support::shared_path("golden/" + model);
  LoadOptions load;
  load.precision = "int8";
  try {
    load_checkpoint(dir, std::nullopt, load);
    ADD_FAILURE() << model << " loaded for int8";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), 2);
    EXPECT_NE(std::string(e.what()).find("does not cover the"), std::string::npos) << e.what();
  }
  LoadedModel loaded = load_checkpoint(dir);
  const auto ref = read_safetensors(dir / "reference_outputs.safetensors").tensors;
  EncoderBatch batch{ref.at("input_ids"), ref.count("token_type_ids") ? ref.at("token_type_ids") : torch::Tensor(),
                     ref.at("attention_mask")};
  try {
    encode_frozen(*loaded.model, batch, "int8", true);
    ADD_FAILURE() << model << " ran an int8 forward pass";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(loaded.config.model_type + " family"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cpu_compute_dtype(), torch::kFloat);  // the scope ended with the error
}

INSTANTIATE_TEST_SUITE_P(Families, Int8Refused,
                         ::testing::Values("deberta-v3-tiny", "modernbert-tiny", "gpt2-tiny", "llama-tiny", "qwen2-tiny"));

TEST(Precision, UnknownNamesAreUsageErrors) {
  EXPECT_EQ(usage_error_code("fp8", torch::kCPU), 2);
  EXPECT_EQ(usage_error_code("int4", torch::kCPU), 2);
  EXPECT_EQ(usage_error_code("", torch::kCPU), 2);
}

TEST(Precision, CpuTrainingAutocastRunsProductsInBf16WithFp32GradientsAndStopsAtTheScopeEnd) {
  if (!cpu_has_native_bf16()) {
    EXPECT_THROW(Autocast("bf16", torch::kCPU), Error);
    GTEST_SKIP() << "this CPU has no native bf16 (AVX512_BF16 or AMX): training autocast is refused";
  }
  auto weight = torch::randn({8, 4}, torch::requires_grad()), input = torch::randn({3, 4});
  {
    Autocast autocast("bf16", torch::kCPU);
    const auto out = torch::linear(input, weight);
    EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
    out.to(torch::kFloat).sum().backward();
  }
  EXPECT_EQ(weight.grad().scalar_type(), torch::kFloat);
  // d(sum W x)/dW[o][i] = sum_b x[b][i]. In bf16 each x is rounded (unit roundoff u = 2^-8) and the product's
  // result may be rounded again: |grad - exact| <= 2u * sum_b |x[b][i]| (fp32 accumulation adds far less).
  // The bound is per element, so a column whose sum nearly cancels is judged by its terms, not its sum.
  const auto exact = input.sum(0).expand({8, 4}), bound = (2.0 / 256.0) * input.abs().sum(0).expand({8, 4});
  EXPECT_TRUE(((weight.grad() - exact).abs() <= bound).all().item<bool>())
      << "grad " << weight.grad() << "\nexact " << exact << "\nbound " << bound;
  EXPECT_EQ(torch::linear(input, weight).scalar_type(), torch::kFloat);
  {
    Autocast fp32("fp32", torch::kCPU);
    EXPECT_EQ(torch::linear(input, weight).scalar_type(), torch::kFloat);
  }
}

TEST(Precision, CudaAutocastRunsTheEncoderOpsInBf16AndStopsAtTheScopeEnd) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto a = torch::ones({4, 4}, torch::kCUDA), b = torch::ones({4, 4}, torch::kCUDA);
  {
    PrecisionScope scope("bf16", torch::kCUDA);
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
  }
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
}
