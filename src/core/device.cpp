#include "layerprobe/core/device.hpp"

#include <torch/cuda.h>

#include "layerprobe/core/common.hpp"
#include "layerprobe/dist/dist.hpp"

namespace layerprobe {

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::Device(torch::kCPU);
  if (name == "gpu" || name == "cuda") {
    if (!torch::cuda::is_available())
      throw Error("--device " + name +
                      ": no CUDA device is available (this LibTorch build has no CUDA support or no GPU is "
                      "visible); use --device cpu",
                  2);
    // In a data-parallel run, LOCAL_RANK picks the GPU (as torchrun's scripts do).
    const int index = dist::enabled() ? dist::local_rank() : 0;
    if (index >= static_cast<int>(torch::cuda::device_count()))
      throw Error("LOCAL_RANK " + std::to_string(index) + " has no GPU: " + std::to_string(torch::cuda::device_count()) +
                      " are visible; start at most that many ranks per node",
                  2);
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw Error("--device '" + name + "' is not one of: cpu, gpu", 2);
}

}  // namespace layerprobe
