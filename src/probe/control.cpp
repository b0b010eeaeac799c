#include "layerprobe/probe/control.hpp"

#include <fmt/format.h>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/hash.hpp"

namespace layerprobe {

namespace fs = std::filesystem;

LoadedModel control_model(const fs::path& model_dir, uint64_t seed) {
  const fs::path config_path = model_dir / "config.json";
  if (!fs::exists(config_path)) throw Error("model directory '" + model_dir.string() + "' has no config.json");
  return control_model(load_config(config_path), seed);
}

LoadedModel control_model(const ModelConfig& config, uint64_t seed) {
  LoadedModel loaded;
  loaded.config = config;
  torch::manual_seed(seed);
  loaded.model = create_model(loaded.config);
  loaded.model->eval();
  return loaded;
}

std::string weights_fingerprint(QaModel& model) {
  torch::NoGradGuard no_grad;
  Fnv1a64 hash;
  for (const auto& item : model.named_parameters()) {
    hash.add_bytes(item.key().data(), item.key().size());
    auto values = item.value().to(torch::kCPU, torch::kFloat32).contiguous();
    hash.add_bytes(values.data_ptr(), static_cast<size_t>(values.numel()) * sizeof(float));
  }
  return fmt::format("fnv1a64:{:016x}", hash.value());
}

namespace {

uint64_t recorded_control_seed(const nlohmann::json& training_options, const std::string& source) {
  auto it = training_options.find("control_seed");
  const bool usable = it != training_options.end() &&
                      (it->is_number_unsigned() || (it->is_number_integer() && it->get<int64_t>() >= 0));
  if (!usable)
    throw Error("'" + source + "' holds control probes but its training options lack an integer 'control_seed'");
  return it->get<uint64_t>();
}

}  // namespace

LoadedModel load_probed_model(const std::string& kind, const OpenedModel& model,
                              const nlohmann::json& training_options, const std::string& source,
                              const LoadOptions& load) {
  if (kind != "control") return load_checkpoint(model, load);
  const fs::path& model_dir = model.dir;
  const uint64_t seed = recorded_control_seed(training_options, source);
  LoadedModel loaded = control_model(model.config, seed);
  auto recorded = training_options.find("control_weights");
  if (recorded != training_options.end() && recorded->is_string()) {
    const std::string rebuilt = weights_fingerprint(*loaded.model);
    if (rebuilt != recorded->get<std::string>())
      throw Error("the control encoder rebuilt from '" + model_dir.string() + "' with control_seed " +
                  std::to_string(seed) + " has weights " + rebuilt + " but the probes in '" + source +
                  "' were trained on " + recorded->get<std::string>() +
                  " (another config.json, or another LibTorch); pass the model directory they were trained on "
                  "with --pretrained-model, or train the control probes again");
  }
  return loaded;
}

}  // namespace layerprobe
