#include "layerprobe/model/checkpoint.hpp"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <map>
#include <set>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/core/finite.hpp"
#include "layerprobe/io/mapped_file.hpp"
#include "layerprobe/io/safetensors.hpp"
#include "model/layers.hpp"
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

// The prefix under which `tensors` hold the base model: the QA class's ("bert.", "transformer."),
// another head's (ModelFamily::checkpoint_prefixes: a *ForCausalLM's "model."), or none (a
// base-model checkpoint such as BertModel.save_pretrained's): the one that finds most of the
// model's base parameters, the QA class's on a tie.
std::string base_model_prefix_in(const QaModel& model, const TensorMap& tensors) {
  const ModelFamily& family = model.family();
  const std::string base = family.base_prefix + ".";
  std::vector<std::string> candidates{base};
  for (const auto& prefix : family.checkpoint_prefixes) candidates.push_back(prefix + ".");
  candidates.push_back("");
  std::string best = base;
  int64_t best_found = -1;
  for (const auto& candidate : candidates) {
    int64_t found = 0;
    for (const auto& item : model.named_parameters())
      if (starts_with(item.key(), base)) found += tensors.count(candidate + item.key().substr(base.size()));
    if (found > best_found) {
      best = candidate;
      best_found = found;
    }
  }
  return best;
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

std::optional<fs::path> weights_file_in(const fs::path& model_dir) {
  // from_pretrained's order: safetensors before torch.save, a whole file before an index of shards.
  for (const char* name : {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                           "pytorch_model.bin.index.json"})
    if (fs::exists(model_dir / name)) return model_dir / name;
  return std::nullopt;
}

fs::path find_weights_file(const fs::path& model_dir) {
  if (!fs::is_directory(model_dir))
    throw Error("model directory '" + model_dir.string() + "' does not exist" + fetch_hint(model_dir));
  if (auto found = weights_file_in(model_dir)) return *found;
  throw Error("model directory '" + model_dir.string() +
              "' has none of model.safetensors, model.safetensors.index.json, pytorch_model.bin, "
              "pytorch_model.bin.index.json" + fetch_hint(model_dir));
}

namespace {

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

TensorMap read_weights_file(const fs::path& path) {
  if (path.extension() == ".safetensors") return read_safetensors(path).tensors;
  const auto mapped = MappedFile::open(path);  // parsed in place, not read into a second copy
  return parse_torch_checkpoint(mapped->bytes(), path.string());
}

// An index's weight_map (key -> shard file name), every shard read once; Error naming the index
// and the shard or key at fault.
TensorMap read_sharded_weights(const fs::path& index_path) {
  const std::string source = index_path.string();
  const nlohmann::json index = nlohmann::json::parse(read_file(index_path), nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object()) throw Error(source + ": not a JSON object");
  const auto map = index.find("weight_map");
  if (map == index.end() || !map->is_object())
    throw Error(source + ": no \"weight_map\" object (key -> shard file), as save_pretrained writes");
  std::map<std::string, std::vector<std::string>> shards;
  for (auto it = map->begin(); it != map->end(); ++it) {
    const std::string name = it.value().is_string() ? it.value().get<std::string>() : "";
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
      throw Error(source + ": weight_map entry '" + it.key() + "' names " + it.value().dump() +
                  ", not a shard file in the same directory");
    shards[name].push_back(it.key());
  }
  if (shards.empty()) throw Error(source + ": weight_map is empty");
  TensorMap tensors;
  for (const auto& [name, keys] : shards) {
    const fs::path shard = index_path.parent_path() / name;
    if (!fs::exists(shard)) throw Error(source + " lists shard '" + name + "', which is missing from '" +
                                        index_path.parent_path().string() + "' (download incomplete?)");
    TensorMap part = read_weights_file(shard);
    for (const auto& key : keys)
      if (!part.count(key)) throw Error(source + " places '" + key + "' in '" + shard.string() + "', which lacks it");
    for (auto& [key, tensor] : part)
      if (!tensors.emplace(key, std::move(tensor)).second)
        throw Error("'" + key + "' is in more than one shard of " + source);
  }
  return tensors;
}

}  // namespace

TensorMap read_weights(const fs::path& path) {
  if (ends_with(path.filename().string(), ".index.json")) return read_sharded_weights(path);
  return read_weights_file(path);
}

StateDictReport load_state_dict(QaModel& model, const TensorMap& file_tensors, const std::string& source,
                                bool adopt) {
  const ModelFamily& family = model.family();
  const std::string base_prefix = family.base_prefix + ".";
  const std::string pooler_prefix = model.pooler_prefix();
  TensorMap tensors;
  for (const auto& [key, tensor] : file_tensors) tensors[normalise_key(key)] = tensor;
  const std::string file_prefix = base_model_prefix_in(model, tensors);

  StateDictReport report;
  std::set<std::string> used;
  std::vector<std::pair<std::string, torch::Tensor>> assignments;
  std::map<std::string, std::vector<std::string>> head_found, head_missing;
  int pooler_found = 0;
  for (const auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    std::string file_key = name;
    if (starts_with(name, base_prefix)) file_key = file_prefix + name.substr(base_prefix.size());
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
  for (const auto& [name, tensor] : assignments) {
    torch::Tensor& parameter = parameters[name];
    if (adopt && tensor.scalar_type() == parameter.scalar_type() && parameter.device().is_cpu() &&
        tensor.is_contiguous())
      parameter.set_data(tensor);  // no copy: a mapped file's pages load as the model touches them
    else if (adopt)
      parameter.copy_(tensor), release_mapped_pages(tensor);  // a widened copy: the file's pages may go
    else
      parameter.copy_(tensor);
  }
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

TensorMap model_state_dict(const QaModel& model, torch::Dtype dtype) {
  TensorMap tensors;
  for (const auto& item : model.named_parameters()) tensors[item.key()] = item.value().detach().to(torch::kCPU, dtype);
  return tensors;
}

torch::Dtype weights_dtype_for(const std::string& precision, const torch::Device& device) {
  if (precision == "bf16") return torch::kBFloat16;
  if (precision == "fp16" && device.is_cuda()) return torch::kHalf;
  return torch::kFloat32;
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

LoadedModel load_checkpoint(const fs::path& model_dir, const std::optional<fs::path>& weights_file,
                            const LoadOptions& options) {
  const fs::path config_path = model_dir / "config.json";
  if (!fs::exists(config_path))
    throw Error("model directory '" + model_dir.string() + "' has no config.json" + fetch_hint(model_dir));
  const ModelConfig config = load_config(config_path);
  fs::path weights_path;
  if (weights_file) {
    weights_path = *weights_file;
    if (!fs::exists(weights_path) && weights_file->is_relative()) weights_path = model_dir / *weights_file;
    if (!fs::exists(weights_path))
      throw Error("weights file '" + weights_file->string() + "' not found (also looked in '" + model_dir.string() +
                  "')");
  } else {
    weights_path = find_weights_file(model_dir);
  }
  return load_checkpoint(config, weights_path, options);
}

LoadedModel load_checkpoint(const ModelConfig& config, const fs::path& weights_path, const LoadOptions& options) {
  const ModelFamily& family = model_family(config.model_type);
  check_precision_for_family(options.precision, family);
  LoadedModel loaded;
  loaded.config = config;
  loaded.weights_path = weights_path;
  // Weights first: a config.json claiming a huge model must not allocate it.
  const TensorMap tensors = read_weights(loaded.weights_path);
  check_config_fits_weights(loaded.config, tensors, config.source, loaded.weights_path);
  {
    // Memory for what is not used in place: weights the file holds in the model's dtype are adopted
    // (a mapped safetensors file's pages, read as touched); the rest are allocated and copied.
    const ModelFamily& family = model_family(loaded.config.model_type);
    const torch::Dtype model_dtype = family.creates_in_weights_dtype ? options.weights_dtype : torch::kFloat32;
    double adopted = 0;
    for (const auto& item : tensors)
      if (item.second.scalar_type() == model_dtype && item.second.is_contiguous())
        adopted += static_cast<double>(item.second.numel());
    check_model_fits_memory(loaded.config, std::max(0.0, family.parameters(loaded.config) - adopted), model_dtype);
    // Every weight is loaded next: families that can skip HF's initialisation and allocate in the
    // chosen dtype do (a 1B model is neither drawn at random nor held in float32 first).
    ModelCreation creation(options.weights_dtype, /*initialise=*/false);
    loaded.model = model_family(loaded.config.model_type).create(loaded.config);
  }
  loaded.has_qa_head =
      load_state_dict(*loaded.model, tensors, loaded.weights_path.string(), /*adopt=*/true).has_qa_head;
  loaded.model->eval();
  spdlog::debug("loaded {} ({} layers, hidden {})", loaded.weights_path.string(), loaded.config.num_hidden_layers,
                loaded.config.hidden_size);
  return loaded;
}

namespace {

// save_pretrained's sharding: tensors in key order, a new shard whenever the next tensor would
// take the current one past `max_bytes`; returns the shards' file names.
std::map<std::string, TensorMap> shard_tensors(const TensorMap& tensors, int64_t max_bytes) {
  std::vector<TensorMap> shards(1);
  int64_t bytes = 0;
  for (const auto& [key, tensor] : tensors) {
    const int64_t size = static_cast<int64_t>(tensor.numel()) * static_cast<int64_t>(tensor.element_size());
    if (bytes > 0 && bytes + size > max_bytes) {
      shards.emplace_back();
      bytes = 0;
    }
    shards.back()[key] = tensor;
    bytes += size;
  }
  std::map<std::string, TensorMap> named;
  for (size_t i = 0; i < shards.size(); ++i)
    named[fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, shards.size())] = std::move(shards[i]);
  return named;
}

}  // namespace

void save_checkpoint(const QaModel& model, const fs::path& dir, const SaveOptions& options) {
  ModelConfig saved = model.config();
  saved.object["architectures"] = {model.family().architecture};
  TensorMap tensors = model_state_dict(model, options.dtype);
  if (!options.qa_head)
    for (auto it = tensors.begin(); it != tensors.end();)
      it = in_head(model.family(), it->first) ? tensors.erase(it) : std::next(it);
  int64_t total = 0;
  for (const auto& entry : tensors) total += entry.second.numel() * static_cast<int64_t>(entry.second.element_size());
  fs::create_directories(dir);
  // transformers' safetensors loader requires format=pt.
  const std::map<std::string, std::string> metadata{{"format", "pt"}};
  if (options.max_shard_bytes <= 0 || total <= options.max_shard_bytes) {
    write_safetensors(dir / "model.safetensors", tensors, metadata);
    fs::remove(dir / "model.safetensors.index.json");
  } else {
    nlohmann::json weight_map = nlohmann::json::object();
    for (const auto& [name, shard] : shard_tensors(tensors, options.max_shard_bytes)) {
      write_safetensors(dir / name, shard, metadata);
      for (const auto& entry : shard) weight_map[entry.first] = name;
    }
    const nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_file_atomically(dir / "model.safetensors.index.json", index.dump(2) + "\n");
    fs::remove(dir / "model.safetensors");  // it would be found before the index
  }
  save_config(saved, dir / "config.json");
}

}  // namespace layerprobe
