#include <torch/torch.h>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/precision.hpp"
#include "test_support.hpp"

using namespace layerprobe;

namespace {

int usage_error_code(const std::string& precision, const torch::Device& device) {
  try {
    check_precision(precision, device);
  } catch (const Error& e) {
    return e.exit_code();
  }
  return 0;
}

}  // namespace

TEST(Precision, Fp32IsAcceptedEverywhereAndChangesNothing) {
  EXPECT_EQ(usage_error_code("fp32", torch::kCPU), 0);
  PrecisionScope scope("fp32", torch::kCPU);
  auto product = torch::mm(torch::ones({2, 3}), torch::ones({3, 2}));
  EXPECT_EQ(product.scalar_type(), torch::kFloat);
}

TEST(Precision, HalfPrecisionOnTheCpuIsAUsageError) {
  EXPECT_EQ(usage_error_code("bf16", torch::kCPU), 2);
  EXPECT_EQ(usage_error_code("fp16", torch::kCPU), 2);
  EXPECT_THROW(PrecisionScope("bf16", torch::kCPU), Error);
}

TEST(Precision, UnknownNamesAreUsageErrors) {
  EXPECT_EQ(usage_error_code("fp8", torch::kCPU), 2);
  EXPECT_EQ(usage_error_code("", torch::kCPU), 2);
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
