#include "layerprobe/model/model_dir.hpp"

#include <cstdlib>

#include "layerprobe/core/common.hpp"

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

fs::path tokenizer_file(const fs::path& model_dir, const fs::path& vocab) {
  return vocab.empty() ? model_dir / "spiece.model" : vocab;
}

void require_model_dir(const fs::path& dir, const std::string& option_name, const fs::path& vocab) {
  for (const auto& file : {dir / "config.json", tokenizer_file(dir, vocab)}) {
    if (!fs::is_regular_file(file))
      throw Error("model not found: '" + file.string() + "' does not exist. Download the model with " +
                  "`tools/download_models.sh " + hub_name(dir) + "`, or pass " + option_name +
                  " DIR (a Hugging Face model directory with config.json, weights and spiece.model;" +
                  " --vocab FILE names a spiece.model kept elsewhere)");
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
