#include "layerprobe/core/finite.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

namespace {

// Elements checked at a time: isfinite's bool result and LibTorch's intermediates stay a few MB instead
// of growing with the tensor (whole, a 1B model's 262M-element bf16 embedding took ~1.3 GB to check).
constexpr int64_t kFiniteCheckSlice = int64_t{1} << 20;

bool all_finite(const torch::Tensor& tensor) {
  const torch::Tensor flat = tensor.reshape({-1});
  const int64_t n = flat.numel();
  for (int64_t start = 0; start < n; start += kFiniteCheckSlice)
    if (!torch::isfinite(flat.slice(0, start, std::min(n, start + kFiniteCheckSlice))).all().item<bool>()) return false;
  return true;
}

}  // namespace

void check_finite(const torch::Tensor& tensor, const std::string& name, const std::string& source) {
  if (!tensor.defined() || !torch::isFloatingType(tensor.scalar_type()) || tensor.numel() == 0) return;
  if (all_finite(tensor)) return;
  // A damaged tensor: the whole-tensor report below (its memory no longer matters).
  const auto bad = torch::isfinite(tensor).logical_not();
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
