#include "layerprobe/core/precision.hpp"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

namespace {

// LibTorch 2.4 replaced the CUDA-only autocast calls with per-device ones.
void set_cuda_autocast(bool enabled, at::ScalarType dtype) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  if (enabled) at::autocast::set_autocast_dtype(at::kCUDA, dtype);
  at::autocast::set_autocast_enabled(at::kCUDA, enabled);
#else
  if (enabled) at::autocast::set_autocast_gpu_dtype(dtype);
  at::autocast::set_enabled(enabled);
#endif
}

}  // namespace

void check_precision(const std::string& precision, const torch::Device& device) {
  if (precision == "fp32") return;
  if (precision != "bf16" && precision != "fp16")
    throw Error("--precision '" + precision + "' is not one of: fp32, bf16, fp16", 2);
  if (!device.is_cuda()) throw Error("--precision " + precision + " needs a GPU (CPU runs fp32)", 2);
}

PrecisionScope::PrecisionScope(const std::string& precision, const torch::Device& device) {
  check_precision(precision, device);
  if (precision == "fp32") return;
  set_cuda_autocast(true, precision == "bf16" ? at::kBFloat16 : at::kHalf);
  active_ = true;
}

PrecisionScope::~PrecisionScope() {
  if (!active_) return;
  set_cuda_autocast(false, at::kFloat);
  at::autocast::clear_cache();
}

}  // namespace layerprobe
