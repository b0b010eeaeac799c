#include "layerprobe/probe/probe_store.hpp"

#include <cmath>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/finite.hpp"
#include "layerprobe/io/safetensors.hpp"

namespace layerprobe {

namespace {
constexpr const char* kFormat = "layerprobe-probes-1";

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

// The tensors of one probe set: weight [L,2,H] and bias [L,2] of floating type, each optimiser moment
// the shape of its parameter, all finite. Errors name the file and the tensor.
void check_probe_tensors(const SafetensorsFile& file, const std::filesystem::path& path) {
  const auto& weight = required_tensor(file, "weight", path);
  const auto& bias = required_tensor(file, "bias", path);
  auto wrong = [&](const std::string& name, const torch::Tensor& tensor, const std::string& expected) {
    throw Error("probes file '" + path.string() + "': tensor '" + name + "' has shape " + c10::str(tensor.sizes()) +
                ", expected " + expected + "; the file is damaged or not written by probe_train");
  };
  // The metadata's layers and width, when it records them, are what the weight must hold.
  auto recorded = [&](const char* key) -> int64_t {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end() || it->second.empty() || it->second.size() > 9 ||
        it->second.find_first_not_of("0123456789") != std::string::npos)
      return -1;
    return std::stoll(it->second);
  };
  const int64_t layers = recorded("layers"), width = recorded("hidden_size");
  if (weight.dim() != 3 || weight.size(1) != 2 || weight.size(0) < 1 || weight.size(2) < 1)
    wrong("weight", weight, "[layers, 2, hidden]");
  if ((layers > 0 && weight.size(0) != layers) || (width > 0 && weight.size(2) != width))
    wrong("weight", weight, c10::str(at::IntArrayRef({layers > 0 ? layers : weight.size(0), 2, width > 0 ? width : weight.size(2)})) +
                                " (its metadata: " + std::to_string(layers) + " layers of width " + std::to_string(width) + ")");
  const std::vector<int64_t> bias_shape{weight.size(0), 2};
  if (bias.sizes() != at::IntArrayRef(bias_shape)) wrong("bias", bias, c10::str(at::IntArrayRef(bias_shape)));
  for (const auto& [moment, parameter] : {std::pair<std::string, const torch::Tensor*>{"optimizer.exp_avg.weight", &weight},
                                          {"optimizer.exp_avg_sq.weight", &weight},
                                          {"optimizer.exp_avg.bias", &bias},
                                          {"optimizer.exp_avg_sq.bias", &bias}}) {
    const auto& tensor = required_tensor(file, moment, path);
    if (tensor.sizes() != parameter->sizes()) wrong(moment, tensor, c10::str(parameter->sizes()));
  }
  for (const auto& [name, tensor] : file.tensors) {
    if (!torch::isFloatingType(tensor.scalar_type()))
      throw Error("probes file '" + path.string() + "': tensor '" + name + "' has non-floating dtype " +
                  c10::toString(tensor.scalar_type()));
    check_finite(tensor, name, "probes file '" + path.string() + "'");
  }
}
}  // namespace

void save_probes(const std::filesystem::path& path, const LayerProbes& probes, const ProbeMetadata& metadata) {
  // Probes from a diverged run are never saved: a rerun would resume from them.
  for (size_t layer = 0; layer < metadata.mean_loss.size(); ++layer)
    if (!std::isfinite(metadata.mean_loss[layer]))
      throw Error("not saving '" + path.string() + "': the mean loss of layer " + std::to_string(layer + 1) + " is " +
                  std::to_string(metadata.mean_loss[layer]) + " (the training diverged)");
  for (const auto* tensor : {&probes.weight(), &probes.bias()})
    check_finite(*tensor, tensor == &probes.weight() ? "weight" : "bias", "not saving '" + path.string() + "'");
  std::map<std::string, torch::Tensor> tensors = {
      {"weight", probes.weight()},
      {"bias", probes.bias()},
      {"optimizer.exp_avg.weight", probes.exp_avg_weight()},
      {"optimizer.exp_avg_sq.weight", probes.exp_avg_sq_weight()},
      {"optimizer.exp_avg.bias", probes.exp_avg_bias()},
      {"optimizer.exp_avg_sq.bias", probes.exp_avg_sq_bias()},
  };
  std::map<std::string, std::string> meta = {
      {"format", kFormat},
      {"kind", metadata.kind},
      {"model_path", metadata.model_path},
      {"model_config", metadata.model_config.dump()},
      {"layers", std::to_string(probes.layers())},
      {"hidden_size", std::to_string(probes.hidden_size())},
      {"heads", "start,end"},
      {"training_options", metadata.training_options.dump()},
      {"epoch", std::to_string(metadata.epoch)},
      {"features_seen", std::to_string(metadata.features_seen)},
      {"mean_loss", nlohmann::json(metadata.mean_loss).dump()},
  };
  if (metadata.codelength) meta["codelength"] = metadata.codelength->to_json().dump();
  write_safetensors(path, tensors, meta);
}

StoredProbes load_probes(const std::filesystem::path& path, const ProbeOptions& options) {
  auto file = read_safetensors(path);
  if (auto it = file.metadata.find("format"); it == file.metadata.end() || it->second != kFormat)
    throw Error("'" + path.string() + "' is not a layerprobe probes file (metadata 'format' is not '" + kFormat +
                "')");
  check_probe_tensors(file, path);
  LayerProbes probes(required_tensor(file, "weight", path), required_tensor(file, "bias", path), options);
  probes.set_optimizer_state(required_tensor(file, "optimizer.exp_avg.weight", path),
                             required_tensor(file, "optimizer.exp_avg_sq.weight", path),
                             required_tensor(file, "optimizer.exp_avg.bias", path),
                             required_tensor(file, "optimizer.exp_avg_sq.bias", path));
  ProbeMetadata metadata;
  const auto& meta = file.metadata;
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
  // A loss that is not a finite number (null: NaN or Inf when saved) comes from a diverged run.
  for (const auto& loss : losses) {
    if (!loss.is_number() || !std::isfinite(loss.get<double>()))
      throw Error("probes file '" + path.string() + "': the mean loss of layer " +
                  std::to_string(metadata.mean_loss.size() + 1) + " is " + loss.dump() +
                  ", not a finite number: the training that wrote it diverged; delete it and train again");
    metadata.mean_loss.push_back(loss.get<double>());
  }
  if (auto it = meta.find("codelength"); it != meta.end())
    metadata.codelength = Codelength::from_json(parse_json_value(it->second, "codelength", path), path.string());
  if (number("layers") != probes.layers())
    throw Error("probes file '" + path.string() + "': metadata says " + meta.at("layers") + " layers but weight has " +
                std::to_string(probes.layers()));
  return {std::move(probes), std::move(metadata)};
}

}  // namespace layerprobe
