// State dicts written by torch.save, read without Python: a small pickle
// machine that understands only what torch.save emits for a dict of tensors
// (no code runs, globals are just names), plus the two container formats:
// the zip archive of PyTorch >= 1.6 and the legacy stream of pickles.
// Every length, offset and count is checked against the input before use.
#pragma once

#include <torch/types.h>

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

namespace layerprobe {

using TensorMap = std::map<std::string, torch::Tensor>;

// The zip format (archive/data.pkl + archive/data/<storage key>).
TensorMap parse_torch_zip(std::string_view bytes, const std::string& source);

// The legacy format: magic number, protocol version, sys_info, the state-dict
// pickle, the storage key list, then each storage as an int64 element count
// and raw little-endian data.
TensorMap parse_torch_legacy(std::string_view bytes, const std::string& source);

// Either format, told apart by the first bytes.
TensorMap parse_torch_checkpoint(std::string_view bytes, const std::string& source);
TensorMap read_torch_checkpoint(const std::filesystem::path& path);

}  // namespace layerprobe
