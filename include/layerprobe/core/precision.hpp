// The --precision option: the frozen encoder's ops autocast to bf16 or fp16 on
// CUDA; probes, their optimiser and decoding stay float32.
#pragma once

#include <torch/types.h>

#include <string>

namespace layerprobe {

// Error (exit code 2) for a name other than fp32, bf16 and fp16, and for bf16/fp16
// on a CPU device (CPU runs fp32).
void check_precision(const std::string& precision, const torch::Device& device);

// Autocast to `precision` while alive (nothing for fp32).
class PrecisionScope {
 public:
  PrecisionScope(const std::string& precision, const torch::Device& device);
  ~PrecisionScope();
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  bool active_ = false;
};

}  // namespace layerprobe
