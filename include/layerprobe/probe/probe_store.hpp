// probes.safetensors: every layer's probe heads, their optimiser state and
// what produced them, in one file a Python user can open with `safetensors`.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "layerprobe/probe/codelength.hpp"
#include "layerprobe/probe/probe_model.hpp"
#include "layerprobe/probe/probe_variant.hpp"
#include "layerprobe/probe/probes.hpp"

namespace layerprobe {

struct ProbeMetadata {
  std::string kind;             // "pretrained", "fine_tuned" or "control"
  std::string model_path;       // model directory the probes were trained on
  nlohmann::json model_config;  // its config.json
  nlohmann::json training_options;
  int epoch = 0;
  int64_t features_seen = 0;
  std::vector<double> mean_loss;  // per layer, over the last epoch
  std::optional<Codelength> codelength;  // epoch 1's online code (written with epoch 1)
};

struct StoredProbes {
  LayerProbes probes;
  ProbeMetadata metadata;
};

// Tensors "weight" [L,2,H] and "bias" [L,2] (head 0 = start, 1 = end), the
// AdamW moments under "optimizer.*", and the metadata as strings (JSON for
// structured values). Written atomically.
void save_probes(const std::filesystem::path& path, const LayerProbes& probes, const ProbeMetadata& metadata);

// Error naming the file when it is not a layerprobe probes file of linear probes.
StoredProbes load_probes(const std::filesystem::path& path, const ProbeOptions& options = {});

// Probes of any architecture with their variant (from the training options).
struct StoredProbeModel {
  std::unique_ptr<ProbeModel> probes;
  ProbeMetadata metadata;
  ProbeVariant variant;
};

// Linear probes as save_probes writes them; rank:R and mlp:W probes with their own tensors
// (ProbeModel::tensors()), format "layerprobe-probes-2" and metadata "probe" = the spec.
void save_probe_model(const std::filesystem::path& path, const ProbeModel& probes, const ProbeMetadata& metadata);
// Either format; Error naming the file and what is wrong.
StoredProbeModel load_probe_model(const std::filesystem::path& path, const ProbeOptions& options = {});

}  // namespace layerprobe
