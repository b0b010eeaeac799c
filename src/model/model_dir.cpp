#include "layerprobe/model/model_dir.hpp"

#include <cstdlib>

#include "layerprobe/core/common.hpp"
#include "layerprobe/model/config.hpp"
#include "layerprobe/model/family.hpp"

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

std::string download_hint(const fs::path& dir) {
  return "Download the model with `tools/download_models.sh " + hub_name(dir) + "`";
}

}  // namespace

fs::path resolve_model_dir(const std::string& name_or_path, const std::string& option_name) {
  // A local model directory first; a local directory without config.json (say
  // the experiment directory named after the model) gives way to a downloaded model.
  if (fs::is_regular_file(fs::path(name_or_path) / "config.json")) return name_or_path;
  const char* env = std::getenv("LAYERPROBE_MODELS_DIR");
  const fs::path models_dir = env && *env ? fs::path(env) : fs::path("models");
  const fs::path downloaded = models_dir / name_or_path;
  if (fs::is_directory(downloaded)) return downloaded;
  if (fs::is_directory(name_or_path)) return name_or_path;
  throw Error(option_name + " '" + name_or_path + "': no such directory, and no downloaded hub model at '" +
              downloaded.string() + "'. Download it with `tools/download_models.sh " + name_or_path +
              "` (or set LAYERPROBE_MODELS_DIR), or pass a local Hugging Face model directory");
}

OpenedModel open_model_dir(const fs::path& dir, const std::string& option_name, const fs::path& vocab,
                           TokenizerRequest request) {
  const fs::path config = dir / "config.json";
  if (!fs::is_regular_file(config))
    throw Error("model not found: '" + config.string() + "' does not exist. " + download_hint(dir) + ", or pass " +
                option_name + " DIR (a Hugging Face model directory with config.json, weights and tokenizer files)");
  if (!vocab.empty() && !fs::exists(vocab))
    throw Error("tokenizer not found: --vocab '" + vocab.string() + "' does not exist");
  OpenedModel opened;
  opened.dir = dir;
  opened.vocab = vocab;
  opened.config = load_config(config);
  opened.family = &model_family(opened.config.model_type);
  if (vocab.empty() && tokenizer_kind_in(dir, opened.family->tokenizer).empty())
    throw Error("model '" + dir.string() + "' has no " + opened.family->tokenizer + " tokenizer files (the " +
                opened.family->model_type + " family's). " + download_hint(dir) + ", or pass --vocab FILE");
  request.kind = opened.family->tokenizer;
  opened.tokenizer = load_tokenizer(vocab.empty() ? dir : vocab, request);
  opened.weights_file = weights_file_in(dir).value_or(fs::path{});
  return opened;
}

LoadedModel load_checkpoint(const OpenedModel& model, const LoadOptions& options) {
  return load_checkpoint(model.config, model.weights_file.empty() ? find_weights_file(model.dir) : model.weights_file,
                         options);
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
