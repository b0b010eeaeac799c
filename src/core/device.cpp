#include "layerprobe/core/device.hpp"

#include <torch/cuda.h>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::Device(torch::kCPU);
  if (name == "gpu" || name == "cuda") {
    if (!torch::cuda::is_available())
      throw Error("--device " + name +
                      ": no CUDA device is available (this LibTorch build has no CUDA support or no GPU is "
                      "visible); use --device cpu",
                  2);
    return torch::Device(torch::kCUDA, 0);
  }
  throw Error("--device '" + name + "' is not one of: cpu, gpu", 2);
}

}  // namespace layerprobe
