// The --precision option: the frozen encoder's ops autocast to bf16 or fp16 on
// CUDA, or run in bf16 on a CPU with native bf16 (AVX512_BF16 or AMX: the
// encoder layers' oneDNN fast path computes in bf16, LayerNorm and softmax
// accumulate in fp32); probes, their optimiser and decoding stay float32.
#pragma once

#include <torch/types.h>

#include <optional>
#include <string>

namespace layerprobe {

// Error (exit code 2) for a name other than fp32, bf16 and fp16, for fp16 on a
// CPU, and for bf16 on a CPU without native bf16 (it would run several times
// slower than fp32 through emulation).
void check_precision(const std::string& precision, const torch::Device& device);

// The --precision option's help, one text for every tool.
inline constexpr const char* kEncoderPrecisionHelp =
    "Encoder precision: fp32 (exact parity), bf16 (CUDA autocast, or a CPU with native bf16: AVX512_BF16 or "
    "AMX) or fp16 (CUDA); probes, their optimiser and decoding stay fp32";

// Whether this CPU has native bf16 arithmetic (AVX512_BF16 or AMX-BF16, from /proc/cpuinfo).
bool cpu_has_native_bf16();

// The dtype the encoder layers' CPU fast path computes in on this thread:
// bf16 inside a PrecisionScope("bf16", cpu), else float32.
torch::ScalarType cpu_compute_dtype();

// LibTorch autocast to `precision` while alive, for a forward pass with
// autograd on (run_squad's training): CUDA autocast to bf16 or fp16, or
// LibTorch's CPU autocast to bf16 (linears and matmuls in bf16 through oneDNN;
// the ops between them run in the dtype they are given, as LibTorch 1.13's CPU
// autocast leaves them; the caller widens the logits for the loss). Checked as
// --precision is; nothing for fp32.
class Autocast {
 public:
  Autocast(const std::string& precision, const torch::Device& device);
  ~Autocast();
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  bool cuda_ = false;
  bool cpu_ = false;
};

// The frozen encoder's `precision` while alive (nothing for fp32): CUDA
// autocast, or on a CPU bf16 compute in the encoder layers' fast path.
class PrecisionScope {
 public:
  PrecisionScope(const std::string& precision, const torch::Device& device);
  ~PrecisionScope();
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  std::optional<Autocast> cuda_;  // CUDA autocast
  bool cpu_ = false;              // CPU bf16 compute on
};

}  // namespace layerprobe
