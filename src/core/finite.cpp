#include "layerprobe/core/finite.hpp"

#include <torch/torch.h>

#include <cmath>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

void check_finite(const torch::Tensor& tensor, const std::string& name, const std::string& source) {
  if (!tensor.defined() || !torch::isFloatingType(tensor.scalar_type()) || tensor.numel() == 0) return;
  const torch::Tensor finite = torch::isfinite(tensor);
  if (finite.all().item<bool>()) return;
  const auto bad = finite.logical_not();
  const int64_t count = bad.sum().item<int64_t>();
  // The first bad element's position, as [i, j, ...].
  const auto flat = bad.reshape({-1}).nonzero().select(1, 0)[0].item<int64_t>();
  std::string index;
  int64_t rest = flat;
  for (int64_t d = tensor.dim() - 1; d >= 0; --d) {
    const int64_t size = tensor.size(d);
    index = std::to_string(rest % size) + (index.empty() ? "" : ", ") + index;
    rest /= size;
  }
  const double value = tensor.reshape({-1})[flat].item<double>();
  const std::string shown = std::isnan(value) ? "nan" : value > 0 ? "inf" : "-inf";
  throw Error(source + ": tensor '" + name + "' holds " + std::to_string(count) + " non-finite value" +
              (count == 1 ? "" : "s") + " of " + std::to_string(tensor.numel()) + " (the first: " + shown + " at [" +
              index + "]); the file is damaged, or the run that wrote it diverged: use another copy or train it again");
}

void check_all_finite(const std::map<std::string, torch::Tensor>& tensors, const std::string& source) {
  for (const auto& [name, tensor] : tensors) check_finite(tensor, name, source);
}

}  // namespace layerprobe
