// The safetensors format: an 8-byte little-endian header length, a JSON
// header mapping tensor names to dtype, shape and byte range, then the data.
// The reader checks every length and offset before using it.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>

namespace layerprobe {

struct SafetensorsFile {
  std::map<std::string, torch::Tensor> tensors;  // CPU, contiguous, dtype as stored
  std::map<std::string, std::string> metadata;   // the header's __metadata__
};

// Parses a whole file's bytes. `source` names the file in errors. Throws
// Error on any inconsistency; never reads outside `bytes`.
SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& source);

// The file memory-mapped (io/mapped_file.hpp): its tensors point into the mapping, which lives
// as long as any of them, so reading a multi-gigabyte checkpoint copies nothing.
SafetensorsFile read_safetensors(const std::filesystem::path& path);

// The file content for `tensors` (any device; written as stored dtype).
std::string serialize_safetensors(const std::map<std::string, torch::Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

// Writes through a temporary file and a rename.
void write_safetensors(const std::filesystem::path& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// "F32" <-> torch::kFloat32 etc.; Error for names or dtypes the format lacks.
torch::Dtype safetensors_dtype(const std::string& name, const std::string& source);
std::string safetensors_dtype_name(torch::Dtype dtype);

}  // namespace layerprobe
