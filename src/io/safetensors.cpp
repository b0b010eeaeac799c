#include "layerprobe/io/safetensors.hpp"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "layerprobe/core/common.hpp"
#include "layerprobe/io/mapped_file.hpp"

namespace layerprobe {

using nlohmann::json;

namespace {

// The reference implementation's limit: larger headers are rejected before parsing.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DtypeName {
  const char* name;
  torch::Dtype dtype;
};
constexpr DtypeName kDtypes[] = {
    {"F64", torch::kFloat64}, {"F32", torch::kFloat32}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16},
    {"I64", torch::kInt64},   {"I32", torch::kInt32},   {"I16", torch::kInt16},   {"I8", torch::kInt8},
    {"U8", torch::kUInt8},    {"BOOL", torch::kBool},
};

struct Entry {
  std::string name;
  torch::Dtype dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

uint64_t read_le64(std::string_view bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  return value;
}

// Product of dims times element size, or Error on overflow.
uint64_t checked_byte_count(const std::vector<int64_t>& shape, size_t element_size, const std::string& where) {
  uint64_t count = element_size;
  for (int64_t dim : shape) {
    if (dim != 0 && count > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(dim))
      throw Error(where + ": shape is too large (byte count overflows)");
    count *= static_cast<uint64_t>(dim);
  }
  return count;
}

Entry parse_entry(const std::string& name, const json& info, const std::string& source) {
  const std::string where = source + ": tensor '" + name + "'";
  if (!info.is_object()) throw Error(where + ": header entry is not an object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!info.contains(key)) throw Error(where + ": header entry lacks '" + key + "'");
  if (!info["dtype"].is_string()) throw Error(where + ": 'dtype' is not a string");
  Entry entry;
  entry.name = name;
  entry.dtype = safetensors_dtype(info["dtype"].get<std::string>(), where);
  const json& shape = info["shape"];
  if (!shape.is_array()) throw Error(where + ": 'shape' is not an array");
  for (const json& dim : shape) {
    if (!dim.is_number_unsigned() || dim.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw Error(where + ": shape " + shape.dump() + " has a dimension that is not a non-negative integer");
    entry.shape.push_back(dim.get<int64_t>());
  }
  const json& offsets = info["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    throw Error(where + ": 'data_offsets' must be two non-negative integers, found " + offsets.dump());
  entry.begin = offsets[0].get<uint64_t>();
  entry.end = offsets[1].get<uint64_t>();
  if (entry.end < entry.begin) throw Error(where + ": data_offsets " + offsets.dump() + " end before they begin");
  uint64_t expected = checked_byte_count(entry.shape, torch::elementSize(entry.dtype), where);
  if (entry.end - entry.begin != expected)
    throw Error(where + ": byte count mismatch: dtype " + info["dtype"].get<std::string>() + " x shape " +
                shape.dump() + " needs " + std::to_string(expected) + " bytes but data_offsets " + offsets.dump() +
                " span " + std::to_string(entry.end - entry.begin));
  return entry;
}

// The format forbids holes and overlaps: sorted by offset, the ranges must
// tile the data area exactly.
void check_layout(std::vector<Entry>& entries, uint64_t data_size, const std::string& source) {
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t expected_begin = 0;
  for (const Entry& entry : entries) {
    if (entry.end > data_size)
      throw Error(source + ": tensor '" + entry.name + "' data_offsets [" + std::to_string(entry.begin) + ", " +
                  std::to_string(entry.end) + "] run past the end of the data area (" + std::to_string(data_size) +
                  " bytes; file truncated?)");
    if (entry.begin < expected_begin)
      throw Error(source + ": tensor '" + entry.name + "' data_offsets overlap the previous tensor's (begin " +
                  std::to_string(entry.begin) + " < " + std::to_string(expected_begin) + ")");
    if (entry.begin > expected_begin)
      throw Error(source + ": gap in the data area before tensor '" + entry.name + "' (offsets not contiguous)");
    expected_begin = entry.end;
  }
  if (expected_begin != data_size)
    throw Error(source + ": " + std::to_string(data_size - expected_begin) +
                " trailing bytes after the last tensor (file and header disagree)");
}

std::map<std::string, std::string> parse_metadata(const json& value, const std::string& source) {
  if (!value.is_object()) throw Error(source + ": __metadata__ is not an object");
  std::map<std::string, std::string> metadata;
  for (auto it = value.begin(); it != value.end(); ++it) {
    if (!it.value().is_string()) throw Error(source + ": __metadata__ value for '" + it.key() + "' is not a string");
    metadata[it.key()] = it.value().get<std::string>();
  }
  return metadata;
}

}  // namespace

torch::Dtype safetensors_dtype(const std::string& name, const std::string& source) {
  for (const auto& entry : kDtypes)
    if (name == entry.name) return entry.dtype;
  throw Error(source + ": unsupported dtype '" + name + "' (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");
}

std::string safetensors_dtype_name(torch::Dtype dtype) {
  for (const auto& entry : kDtypes)
    if (dtype == entry.dtype) return entry.name;
  throw Error(std::string("safetensors has no dtype for ") + c10::toString(dtype));
}

namespace {

// The header's entries and metadata, checked against the file's size; `data_offset` is where the data area begins.
struct ParsedHeader {
  std::vector<Entry> entries;
  std::map<std::string, std::string> metadata;
  size_t data_offset = 0;
};

ParsedHeader parse_header(std::string_view bytes, const std::string& source) {
  if (bytes.size() < 8)
    throw Error(source + ": truncated safetensors file (" + std::to_string(bytes.size()) +
                " bytes; the 8-byte header length is missing)");
  const uint64_t header_size = read_le64(bytes);
  if (header_size > bytes.size() - 8)
    throw Error(source + ": header length " + std::to_string(header_size) + " runs past the end of the file (" +
                std::to_string(bytes.size()) + " bytes; truncated or not a safetensors file)");
  if (header_size > kMaxHeaderBytes)
    throw Error(source + ": header length " + std::to_string(header_size) + " exceeds the 100 MB limit");
  json header = json::parse(bytes.substr(8, header_size), nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) throw Error(source + ": header is not valid JSON");
  if (!header.is_object()) throw Error(source + ": header is not a JSON object");

  ParsedHeader parsed;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__")
      parsed.metadata = parse_metadata(it.value(), source);
    else
      parsed.entries.push_back(parse_entry(it.key(), it.value(), source));
  }
  parsed.data_offset = 8 + header_size;
  check_layout(parsed.entries, bytes.size() - parsed.data_offset, source);
  return parsed;
}

}  // namespace

SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& source) {
  ParsedHeader parsed = parse_header(bytes, source);
  SafetensorsFile file;
  file.metadata = std::move(parsed.metadata);
  const std::string_view data = bytes.substr(parsed.data_offset);
  for (const Entry& entry : parsed.entries) {
    torch::Tensor tensor = torch::empty(entry.shape, torch::TensorOptions().dtype(entry.dtype));
    if (entry.end > entry.begin) std::memcpy(tensor.data_ptr(), data.data() + entry.begin, entry.end - entry.begin);
    file.tensors.emplace(entry.name, std::move(tensor));
  }
  return file;
}

SafetensorsFile read_safetensors(const std::filesystem::path& path) {
  const auto mapped = MappedFile::open(path);
  ParsedHeader parsed = parse_header(mapped->bytes(), path.string());
  SafetensorsFile file;
  file.metadata = std::move(parsed.metadata);
  for (const Entry& entry : parsed.entries)
    file.tensors.emplace(entry.name, tensor_over(mapped, parsed.data_offset + entry.begin, entry.shape, entry.dtype));
  return file;
}

std::string serialize_safetensors(const std::map<std::string, torch::Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> contiguous;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    torch::Tensor cpu = tensor.detach().to(torch::kCPU).contiguous();
    uint64_t size = cpu.numel() * cpu.element_size();
    std::vector<int64_t> shape(cpu.sizes().begin(), cpu.sizes().end());
    header[name] = {{"dtype", safetensors_dtype_name(cpu.scalar_type())}, {"shape", shape},
                    {"data_offsets", {offset, offset + size}}};
    offset += size;
    contiguous.push_back(std::move(cpu));
  }
  std::string header_text = header.dump();
  // Like the reference writer: pad with spaces so the data starts 8-byte aligned.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t header_size = header_text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header_size >> (8 * i)) & 0xff);
  out.reserve(8 + header_text.size() + offset);
  out += header_text;
  for (const torch::Tensor& tensor : contiguous)
    out.append(static_cast<const char*>(tensor.data_ptr()), tensor.numel() * tensor.element_size());
  return out;
}

void write_safetensors(const std::filesystem::path& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_file_atomically(path, serialize_safetensors(tensors, metadata));
}

}  // namespace layerprobe
