// The --precision option: the frozen encoder's ops autocast to bf16 or fp16 on
// CUDA, or run in bf16 on a CPU with native bf16 (AVX512_BF16 or AMX: the
// encoder layers' oneDNN fast path computes in bf16, LayerNorm and softmax
// accumulate in fp32), or in int8 on a CPU with 8-bit dot products (AVX512_VNNI
// or AMX-INT8: the encoder layers' linears as oneDNN u8 x s8 inner products,
// attention, softmax and LayerNorm in fp32; the families whose layers go through
// that path only, ModelFamily::int8_encoder); probes, their optimiser and
// decoding stay float32.
#pragma once

#include <torch/types.h>

#include <optional>
#include <string>

namespace layerprobe {

// Error (exit code 2) for a name other than fp32, bf16, fp16 and int8, for fp16
// on a CPU, for bf16 on a CPU without native bf16 (it would run several times
// slower than fp32 through emulation), and for int8 on a GPU or on a CPU without
// 8-bit dot products (AVX512_VNNI or AMX-INT8).
void check_precision(const std::string& precision, const torch::Device& device);

// The --precision option's help, one text for every tool.
inline constexpr const char* kEncoderPrecisionHelp =
    "Encoder precision: fp32 (exact parity), bf16 (CUDA autocast, or a CPU with native bf16: AVX512_BF16 or "
    "AMX), fp16 (CUDA) or int8 (a CPU with AVX512_VNNI or AMX-INT8: the encoder's linears in 8-bit, dynamic "
    "per-tensor activation scales; albert, bert, distilbert, roberta, electra, xlm-roberta); probes, their "
    "optimiser and decoding stay fp32";

// Whether this CPU has native bf16 arithmetic (AVX512_BF16 or AMX-BF16, from /proc/cpuinfo).
bool cpu_has_native_bf16();
// Whether this CPU has 8-bit dot products oneDNN's int8 kernels use (AVX512_VNNI or AMX-INT8).
bool cpu_has_int8_dot();
// Both read /proc/cpuinfo's flags less those LAYERPROBE_HIDE_CPU_FLAGS lists (comma or space
// separated, e.g. "avx512_vnni,amx_int8"): a test simulates a CPU that lacks them.

// The dtype the encoder layers' CPU fast path computes in on this thread:
// bf16 inside a PrecisionScope("bf16", cpu), int8 (torch::kChar: u8 x s8 products,
// float32 between them) inside a PrecisionScope("int8", cpu), else float32.
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
// autocast, or on a CPU bf16 or int8 compute in the encoder layers' fast path.
class PrecisionScope {
 public:
  PrecisionScope(const std::string& precision, const torch::Device& device);
  ~PrecisionScope();
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  std::optional<Autocast> cuda_;  // CUDA autocast
  bool cpu_ = false;              // CPU bf16 or int8 compute on
};

}  // namespace layerprobe
