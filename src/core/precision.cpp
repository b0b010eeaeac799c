#include "layerprobe/core/precision.hpp"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

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

void set_cpu_autocast(bool enabled, at::ScalarType dtype) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  if (enabled) at::autocast::set_autocast_dtype(at::kCPU, dtype);
  at::autocast::set_autocast_enabled(at::kCPU, enabled);
#else
  if (enabled) at::autocast::set_autocast_cpu_dtype(dtype);
  at::autocast::set_cpu_enabled(enabled);
#endif
}

thread_local torch::ScalarType t_cpu_compute_dtype = torch::kFloat;

bool cpuinfo_flag(const std::string& flags, const std::string& flag) {
  return (" " + flags + " ").find(" " + flag + " ") != std::string::npos;
}

const std::string& cpuinfo_flags() {
  static const std::string flags = [] {
    std::ifstream cpuinfo("/proc/cpuinfo");
    for (std::string line; std::getline(cpuinfo, line);)
      if (line.rfind("flags", 0) == 0) return line.substr(line.find(':') + 1);
    return std::string();
  }();
  return flags;
}

// Whether /proc/cpuinfo lists `flag` and LAYERPROBE_HIDE_CPU_FLAGS does not.
bool cpu_flag(const std::string& flag) {
  if (const char* hidden = std::getenv("LAYERPROBE_HIDE_CPU_FLAGS")) {
    std::string list(hidden);
    for (char& c : list)
      if (c == ',') c = ' ';
    if (cpuinfo_flag(list, flag)) return false;
  }
  return cpuinfo_flag(cpuinfo_flags(), flag);
}

}  // namespace

bool cpu_has_native_bf16() { return cpu_flag("avx512_bf16") || cpu_flag("amx_bf16"); }

bool cpu_has_int8_dot() { return cpu_flag("avx512_vnni") || cpu_flag("amx_int8"); }

torch::ScalarType cpu_compute_dtype() { return t_cpu_compute_dtype; }

void check_precision(const std::string& precision, const torch::Device& device) {
  if (precision == "fp32") return;
  if (precision != "bf16" && precision != "fp16" && precision != "int8")
    throw Error("--precision '" + precision + "' is not one of: fp32, bf16, fp16, int8", 2);
  if (precision == "int8") {
    if (!device.is_cpu()) throw Error("--precision int8 is a CPU path (on a GPU use bf16 or fp16)", 2);
    if (!cpu_has_int8_dot())
      throw Error("--precision int8 needs a CPU with 8-bit dot products (AVX512_VNNI or AMX-INT8; this CPU's "
                  "/proc/cpuinfo lists neither, and without them int8 is no faster than fp32): use fp32",
                  2);
    return;
  }
  if (device.is_cuda()) return;
  if (precision == "fp16") throw Error("--precision fp16 needs a GPU (on a CPU use bf16 or fp32)", 2);
  if (!cpu_has_native_bf16())
    throw Error("--precision bf16 needs a GPU or a CPU with native bf16 (AVX512_BF16 or AMX; this CPU's "
                "/proc/cpuinfo lists neither, and emulated bf16 is slower than fp32): use fp32",
                2);
}

PrecisionScope::PrecisionScope(const std::string& precision, const torch::Device& device) {
  check_precision(precision, device);
  if (precision == "fp32") return;
  if (device.is_cuda()) {
    cuda_.emplace(precision, device);
    return;
  }
  t_cpu_compute_dtype = precision == "int8" ? torch::kChar : torch::kBFloat16;
  cpu_ = true;
}

PrecisionScope::~PrecisionScope() {
  if (cpu_) t_cpu_compute_dtype = torch::kFloat;
}

Autocast::Autocast(const std::string& precision, const torch::Device& device) {
  check_precision(precision, device);
  if (precision == "fp32") return;
  if (precision == "int8") throw Error("--precision int8 is for the frozen encoder's inference, not training", 2);
  const at::ScalarType dtype = precision == "bf16" ? at::kBFloat16 : at::kHalf;
  if (device.is_cuda()) {
    set_cuda_autocast(true, dtype);
    cuda_ = true;
  } else {
    set_cpu_autocast(true, dtype);
    cpu_ = true;
  }
}

Autocast::~Autocast() {
  if (cuda_) set_cuda_autocast(false, at::kFloat);
  if (cpu_) set_cpu_autocast(false, at::kBFloat16);
  if (cuda_ || cpu_) at::autocast::clear_cache();
}

}  // namespace layerprobe
