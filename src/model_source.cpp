#include "layerprobe/model_source.hpp"

#include <cstdlib>

#include "layerprobe/common.hpp"

namespace layerprobe {

namespace fs = std::filesystem;

namespace {
// models/<hub name> -> <hub name>, for the download hint.
std::string hub_name(const fs::path& dir) {
  auto text = dir.lexically_normal().generic_string();
  if (!text.empty() && text.back() == '/') text.pop_back();
  auto pos = text.find("models/");
  return pos == std::string::npos ? "<hub-model-name>" : text.substr(pos + 7);
}
}  // namespace

void require_model_dir(const fs::path& dir, const std::string& option_name) {
  for (const char* file : {"config.json", "spiece.model"}) {
    if (!fs::is_regular_file(dir / file))
      throw Error("model not found: '" + (dir / file).string() + "' does not exist. Download the model with " +
                  "`tools/download_models.sh " + hub_name(dir) + "`, or pass " + option_name +
                  " DIR (a Hugging Face model directory with config.json, weights and spiece.model)");
  }
}

void require_squad_file(const fs::path& path, const std::string& option_name) {
  if (!fs::is_regular_file(path))
    throw Error("SQuAD file not found: '" + path.string() + "'. Download SQuAD 2.0 with `tools/download_squad.sh`" +
                " (or set SQUAD_DIR), or pass " + option_name + " FILE");
}

fs::path squad_dir() {
  const char* env = std::getenv("SQUAD_DIR");
  return env && *env ? fs::path(env) : fs::path("data/squad");
}

}  // namespace layerprobe
