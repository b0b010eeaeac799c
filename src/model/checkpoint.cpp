#include "layerprobe/model/checkpoint.hpp"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <map>
#include <set>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/finite.hpp"
#include "layerprobe/io/safetensors.hpp"
#include "layerprobe/model/family.hpp"

namespace layerprobe {

namespace fs = std::filesystem;

namespace {

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

std::string fetch_hint(const fs::path& model_dir) {
  return " (a published model can be fetched with: tools/download_models.sh " + model_dir.filename().string() + ")";
}

// HF 2.5.1's from_pretrained renames TF-style LayerNorm names the same way.
std::string normalise_key(std::string key) {
  auto replace_suffix = [&key](const std::string& from, const std::string& to) {
    if (key.size() >= from.size() && key.compare(key.size() - from.size(), from.size(), from) == 0)
      key = key.substr(0, key.size() - from.size()) + to;
  };
  replace_suffix(".gamma", ".weight");
  replace_suffix(".beta", ".bias");
  return key;
}

std::string shape_string(torch::IntArrayRef sizes) { return c10::str(sizes); }

bool in_head(const ModelFamily& family, const std::string& name) {
  for (const auto& prefix : family.head_prefixes)
    if (starts_with(name, prefix)) return true;
  return false;
}

// The module a parameter belongs to: "qa_outputs.weight" -> "qa_outputs".
std::string module_of(const std::string& name) { return name.substr(0, name.rfind('.')); }

// Error unless each module of the QA head is in the checkpoint whole or not at all.
void check_head_modules(const std::map<std::string, std::vector<std::string>>& found,
                        const std::map<std::string, std::vector<std::string>>& missing, const std::string& source) {
  for (const auto& [module, names] : missing) {
    if (!found.count(module)) continue;
    if (names.size() == 1 && found.at(module).size() == 1)
      throw Error(source + ": '" + module + "' has only one of weight and bias");
    throw Error(source + ": '" + module + "' lacks " + names.front() + " but has " + found.at(module).front());
  }
}

// A key with each numeric component replaced by '#': "encoder.layer.#.output.dense.weight".
std::string numbered_pattern(const std::string& key) {
  std::string pattern;
  size_t start = 0;
  while (start <= key.size()) {
    const size_t end = std::min(key.find('.', start), key.size());
    const std::string part = key.substr(start, end - start);
    const bool number = !part.empty() && part.find_first_not_of("0123456789") == std::string::npos;
    pattern += (start ? "." : "") + (number ? std::string("#") : part);
    start = end + 1;
  }
  return pattern;
}

// Unused tensors that are another index of a tensor the model uses: weights of layers (or groups)
// that config.json does not have. Probing them would silently probe a shallower model.
void refuse_extra_layers(const std::set<std::string>& used, const std::vector<std::string>& unused,
                         const std::string& source) {
  std::set<std::string> used_patterns;
  for (const auto& key : used) used_patterns.insert(numbered_pattern(key));
  std::vector<std::string> extra;
  for (const auto& key : unused)
    if (numbered_pattern(key) != key && used_patterns.count(numbered_pattern(key))) extra.push_back(key);
  if (extra.empty()) return;
  throw Error(source + ": " + std::to_string(extra.size()) + " tensors belong to layers the model's config.json does not " +
              "have (first '" + extra.front() + "'); its layer count (num_hidden_layers, or ALBERT's "
              "num_hidden_groups) is smaller than the checkpoint's: fix config.json");
}

}  // namespace

fs::path find_weights_file(const fs::path& model_dir) {
  if (!fs::is_directory(model_dir))
    throw Error("model directory '" + model_dir.string() + "' does not exist" + fetch_hint(model_dir));
  for (const char* name : {"model.safetensors", "pytorch_model.bin"})
    if (fs::exists(model_dir / name)) return model_dir / name;
  throw Error("model directory '" + model_dir.string() +
              "' has neither model.safetensors nor pytorch_model.bin" + fetch_hint(model_dir));
}

TensorMap read_weights(const fs::path& path) {
  if (path.extension() == ".safetensors") return read_safetensors(path).tensors;
  return read_torch_checkpoint(path);
}

StateDictReport load_state_dict(QaModel& model, const TensorMap& file_tensors, const std::string& source) {
  const ModelFamily& family = model.family();
  const std::string base_prefix = family.base_prefix + ".";
  const std::string pooler_prefix = model.pooler_prefix();
  TensorMap tensors;
  for (const auto& [key, tensor] : file_tensors) tensors[normalise_key(key)] = tensor;
  // Base-model checkpoints (BertModel.save_pretrained) have bare keys; the task heads' have "<prefix>.".
  bool prefixed = false;
  for (const auto& entry : tensors) prefixed = prefixed || starts_with(entry.first, base_prefix);

  StateDictReport report;
  std::set<std::string> used;
  std::vector<std::pair<std::string, torch::Tensor>> assignments;
  std::map<std::string, std::vector<std::string>> head_found, head_missing;
  int pooler_found = 0;
  for (const auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    std::string file_key = name;
    if (!prefixed && starts_with(name, base_prefix)) file_key = name.substr(base_prefix.size());
    const bool head = in_head(family, name);
    const bool pooler = !pooler_prefix.empty() && starts_with(name, pooler_prefix);
    auto it = tensors.find(file_key);
    if (it == tensors.end()) {
      if (head) head_missing[module_of(name)].push_back(name);
      if (head || pooler) continue;  // initialised fresh below
      throw Error(source + ": missing tensor '" + file_key + "' (expected shape " + shape_string(item.value().sizes()) +
                  ")");
    }
    const torch::Tensor& found = it->second;
    if (found.sizes() != item.value().sizes())
      throw Error(source + ": tensor '" + file_key + "' has shape " + shape_string(found.sizes()) + ", expected " +
                  shape_string(item.value().sizes()) + " (config.json and weights disagree)");
    if (!torch::isFloatingType(found.scalar_type()))
      throw Error(source + ": tensor '" + file_key + "' has non-floating dtype " + c10::toString(found.scalar_type()));
    check_finite(found, file_key, source);
    if (head) head_found[module_of(name)].push_back(name);
    pooler_found += pooler;
    used.insert(file_key);
    assignments.emplace_back(name, found);
  }
  // Each module is there whole or not at all (a weight without its bias is a broken file).
  check_head_modules(head_found, head_missing, source);
  if (!pooler_prefix.empty() && pooler_found % 2 == 1) throw Error(source + ": the pooler has only one of weight and bias");
  report.has_qa_head = head_missing.empty();
  report.has_pooler = !pooler_prefix.empty() && pooler_found > 0;

  torch::NoGradGuard no_grad;
  if (!report.has_qa_head) {
    // HF's from_pretrained: the head's modules the file lacks are fresh, those it has are loaded.
    spdlog::info("{}: no {} in the checkpoint; the QA head is freshly initialised", source, family.head_output);
    model.init_qa_head();
  }
  auto parameters = model.named_parameters();
  for (const auto& [name, tensor] : assignments) parameters[name].copy_(tensor);
  if (!report.has_pooler) {
    spdlog::debug("{}: no pooler in the checkpoint; freshly initialised (the QA head does not use it)", source);
    model.init_pooler();
  }
  for (const auto& entry : tensors)
    if (!used.count(entry.first)) report.unused.push_back(entry.first);
  refuse_extra_layers(used, report.unused, source);
  if (!report.unused.empty()) {
    spdlog::debug("{}: {} tensors not used by the encoder:", source, report.unused.size());
    for (const std::string& key : report.unused) spdlog::debug("  {}", key);
  }
  return report;
}

TensorMap model_state_dict(const QaModel& model) {
  TensorMap tensors;
  for (const auto& item : model.named_parameters())
    tensors[item.key()] = item.value().detach().to(torch::kCPU, torch::kFloat32);
  return tensors;
}

namespace {

void check_config_fits_weights(const ModelConfig& config, const TensorMap& tensors, const fs::path& config_path,
                               const fs::path& weights_path) {
  double stored = 0;
  for (const auto& item : tensors) stored += static_cast<double>(item.second.numel());
  const double described = model_family(config.model_type).parameters(config);
  // The pooler and QA head may be missing from the file; anything beyond that is a mismatch.
  const double slack = 2.0 * config.hidden_size * config.hidden_size + 1e6;
  if (described > stored + slack)
    throw Error("'" + config_path.string() + "' describes a model of " + fmt::format("{:.0f}", described) +
                " parameters but '" + weights_path.string() + "' holds " + fmt::format("{:.0f}", stored) +
                "; the config does not belong to these weights");
}

}  // namespace

LoadedModel load_checkpoint(const fs::path& model_dir, const std::optional<fs::path>& weights_file) {
  const fs::path config_path = model_dir / "config.json";
  if (!fs::exists(config_path))
    throw Error("model directory '" + model_dir.string() + "' has no config.json" + fetch_hint(model_dir));
  LoadedModel loaded;
  loaded.config = load_config(config_path);
  if (weights_file) {
    loaded.weights_path = *weights_file;
    if (!fs::exists(loaded.weights_path) && weights_file->is_relative()) loaded.weights_path = model_dir / *weights_file;
    if (!fs::exists(loaded.weights_path))
      throw Error("weights file '" + weights_file->string() + "' not found (also looked in '" + model_dir.string() +
                  "')");
  } else {
    loaded.weights_path = find_weights_file(model_dir);
  }
  // Weights first: a config.json claiming a huge model must not allocate it.
  const TensorMap tensors = read_weights(loaded.weights_path);
  check_config_fits_weights(loaded.config, tensors, config_path, loaded.weights_path);
  loaded.model = create_model(loaded.config);
  loaded.has_qa_head = load_state_dict(*loaded.model, tensors, loaded.weights_path.string()).has_qa_head;
  loaded.model->eval();
  spdlog::debug("loaded {} ({} layers, hidden {})", loaded.weights_path.string(), loaded.config.num_hidden_layers,
                loaded.config.hidden_size);
  return loaded;
}

void save_checkpoint(const QaModel& model, const fs::path& dir) {
  ModelConfig saved = model.config();
  saved.object["architectures"] = {model.family().architecture};
  // transformers' safetensors loader requires format=pt.
  write_safetensors(dir / "model.safetensors", model_state_dict(model), {{"format", "pt"}});
  save_config(saved, dir / "config.json");
}

}  // namespace layerprobe
