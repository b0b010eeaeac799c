#include "text/json_file.hpp"

#include "layerprobe/core/common.hpp"

namespace layerprobe {

nlohmann::json read_json_file(const std::filesystem::path& path) {
  return parse_json(read_file(path), path.string(), /*reject_duplicate_keys=*/false);
}

}  // namespace layerprobe
