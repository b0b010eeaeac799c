// Non-finite values (NaN, +-Inf) in tensors read from files or computed from
// them: found where they enter, named by tensor and file, never carried on
// into probes, answers or scores that look like results.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>

namespace layerprobe {

// Error (status 1) naming `name`, `source` and the first non-finite value's
// index when a floating-point `tensor` holds NaN or Inf; integer tensors pass.
void check_finite(const torch::Tensor& tensor, const std::string& name, const std::string& source);

// check_finite on every tensor of `tensors`.
void check_all_finite(const std::map<std::string, torch::Tensor>& tensors, const std::string& source);

}  // namespace layerprobe
