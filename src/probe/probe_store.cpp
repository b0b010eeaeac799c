#include "layerprobe/probe/probe_store.hpp"

#include "layerprobe/core/common.hpp"
#include "layerprobe/io/safetensors.hpp"

#include <cmath>

namespace layerprobe {

namespace {
constexpr const char* kFormat = "layerprobe-probes-1";
// rank:R and mlp:W probes: other tensors, named in metadata "probe".
constexpr const char* kFormatArchitectures = "layerprobe-probes-2";

const std::string& required(const std::map<std::string, std::string>& metadata, const std::string& key,
                            const std::filesystem::path& path) {
  auto it = metadata.find(key);
  if (it == metadata.end())
    throw Error("probes file '" + path.string() + "' lacks metadata key '" + key + "'");
  return it->second;
}

nlohmann::json parse_json_value(const std::string& text, const std::string& key, const std::filesystem::path& path) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error("probes file '" + path.string() + "': metadata '" + key + "' is not valid JSON: " + e.what());
  }
}

const torch::Tensor& required_tensor(const SafetensorsFile& file, const std::string& key,
                                     const std::filesystem::path& path) {
  auto it = file.tensors.find(key);
  if (it == file.tensors.end()) throw Error("probes file '" + path.string() + "' lacks tensor '" + key + "'");
  return it->second;
}
}  // namespace

namespace {

std::map<std::string, std::string> metadata_strings(const ProbeMetadata& metadata, int64_t layers, int64_t hidden) {
  std::map<std::string, std::string> meta = {
      {"format", kFormat},
      {"kind", metadata.kind},
      {"model_path", metadata.model_path},
      {"model_config", metadata.model_config.dump()},
      {"layers", std::to_string(layers)},
      {"hidden_size", std::to_string(hidden)},
      {"heads", "start,end"},
      {"training_options", metadata.training_options.dump()},
      {"epoch", std::to_string(metadata.epoch)},
      {"features_seen", std::to_string(metadata.features_seen)},
      {"mean_loss", nlohmann::json(metadata.mean_loss).dump()},
  };
  if (metadata.codelength) meta["codelength"] = metadata.codelength->to_json().dump();
  return meta;
}

ProbeMetadata parse_metadata(const std::map<std::string, std::string>& meta, const std::filesystem::path& path) {
  ProbeMetadata metadata;
  metadata.kind = required(meta, "kind", path);
  metadata.model_path = required(meta, "model_path", path);
  metadata.model_config = parse_json_value(required(meta, "model_config", path), "model_config", path);
  metadata.training_options = parse_json_value(required(meta, "training_options", path), "training_options", path);
  auto number = [&](const std::string& key) {
    auto value = parse_json_value(required(meta, key, path), key, path);
    if (!value.is_number_integer()) throw Error("probes file '" + path.string() + "': metadata '" + key + "' is not an integer");
    return value.get<int64_t>();
  };
  metadata.epoch = static_cast<int>(number("epoch"));
  metadata.features_seen = number("features_seen");
  auto losses = parse_json_value(required(meta, "mean_loss", path), "mean_loss", path);
  if (!losses.is_array()) throw Error("probes file '" + path.string() + "': metadata 'mean_loss' is not a list");
  for (const auto& loss : losses) metadata.mean_loss.push_back(loss.is_number() ? loss.get<double>() : NAN);
  if (auto it = meta.find("codelength"); it != meta.end())
    metadata.codelength = Codelength::from_json(parse_json_value(it->second, "codelength", path), path.string());
  return metadata;
}

void check_layers(const std::map<std::string, std::string>& meta, int64_t layers, const std::filesystem::path& path) {
  auto value = parse_json_value(required(meta, "layers", path), "layers", path);
  if (!value.is_number_integer() || value.get<int64_t>() != layers)
    throw Error("probes file '" + path.string() + "': metadata says " + meta.at("layers") + " layers but weight has " +
                std::to_string(layers));
}

}  // namespace

void save_probes(const std::filesystem::path& path, const LayerProbes& probes, const ProbeMetadata& metadata) {
  std::map<std::string, torch::Tensor> tensors = {
      {"weight", probes.weight()},
      {"bias", probes.bias()},
      {"optimizer.exp_avg.weight", probes.exp_avg_weight()},
      {"optimizer.exp_avg_sq.weight", probes.exp_avg_sq_weight()},
      {"optimizer.exp_avg.bias", probes.exp_avg_bias()},
      {"optimizer.exp_avg_sq.bias", probes.exp_avg_sq_bias()},
  };
  write_safetensors(path, tensors, metadata_strings(metadata, probes.layers(), probes.hidden_size()));
}

void save_probe_model(const std::filesystem::path& path, const ProbeModel& probes, const ProbeMetadata& metadata) {
  if (const LayerProbes* linear = probes.linear()) return save_probes(path, *linear, metadata);
  auto meta = metadata_strings(metadata, probes.layers(), probes.input_size());
  meta["format"] = kFormatArchitectures;
  meta["probe"] = probes.arch().spec();
  write_safetensors(path, probes.tensors(), meta);
}

StoredProbes load_probes(const std::filesystem::path& path, const ProbeOptions& options) {
  auto file = read_safetensors(path);
  if (auto it = file.metadata.find("format"); it == file.metadata.end() || it->second != kFormat) {
    if (it != file.metadata.end() && it->second == kFormatArchitectures)
      throw Error("'" + path.string() + "' holds " + file.metadata["probe"] +
                  " probes, not linear ones (read it with load_probe_model)");
    throw Error("'" + path.string() + "' is not a layerprobe probes file (metadata 'format' is not '" + kFormat +
                "')");
  }
  LayerProbes probes(required_tensor(file, "weight", path), required_tensor(file, "bias", path), options);
  probes.set_optimizer_state(required_tensor(file, "optimizer.exp_avg.weight", path),
                             required_tensor(file, "optimizer.exp_avg_sq.weight", path),
                             required_tensor(file, "optimizer.exp_avg.bias", path),
                             required_tensor(file, "optimizer.exp_avg_sq.bias", path));
  ProbeMetadata metadata = parse_metadata(file.metadata, path);
  check_layers(file.metadata, probes.layers(), path);
  return {std::move(probes), std::move(metadata)};
}

StoredProbeModel load_probe_model(const std::filesystem::path& path, const ProbeOptions& options) {
  auto file = read_safetensors(path);
  auto format = file.metadata.find("format");
  if (format == file.metadata.end() || (format->second != kFormat && format->second != kFormatArchitectures))
    throw Error("'" + path.string() + "' is not a layerprobe probes file (metadata 'format' is neither '" + kFormat +
                "' nor '" + kFormatArchitectures + "')");
  ProbeArch arch;
  if (format->second == kFormatArchitectures) {
    try {
      arch = ProbeArch::parse(required(file.metadata, "probe", path));
    } catch (const Error& e) {
      throw Error("probes file '" + path.string() + "': metadata 'probe': " + e.what());
    }
    if (arch.kind == ProbeArch::Kind::linear)
      throw Error("probes file '" + path.string() + "': linear probes must have format '" + kFormat + "'");
  }
  StoredProbeModel stored;
  stored.probes = probe_model_from_tensors(arch, file.tensors, options, path.string());
  stored.metadata = parse_metadata(file.metadata, path);
  check_layers(file.metadata, stored.probes->layers(), path);
  stored.variant = ProbeVariant::from_training_options(stored.metadata.training_options, path.string());
  if (stored.variant.arch != arch)
    throw Error("probes file '" + path.string() + "' holds " + arch.spec() + " probes but its training options say " +
                stored.variant.arch.spec());
  return stored;
}

}  // namespace layerprobe
