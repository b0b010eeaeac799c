// The --device option: "cpu" or "gpu" (CUDA).
#pragma once

#include <torch/types.h>

#include <string>

namespace layerprobe {

// "cpu" -> CPU; "gpu" (or "cuda") -> the first CUDA device when LibTorch sees
// one, else Error with exit code 2. Other names: Error, exit code 2.
torch::Device parse_device(const std::string& name);

}  // namespace layerprobe
