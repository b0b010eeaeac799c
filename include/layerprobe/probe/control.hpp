// The control encoder (Hewitt & Liang 2019's question: what does a probe learn
// on an encoder that knows nothing?): a randomly initialised copy of a probed
// model's architecture, HF-initialised from a seed and never saved. probe_train
// records the seed and the encoder's weight fingerprint in the probes'
// metadata; probe_predict rebuilds the encoder from them and refuses one that
// differs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/model/model_dir.hpp"

namespace layerprobe {

// How the control encoder is made, as recorded in the probes' training options.
constexpr const char* kControlInit =
    "HF _init_weights over the model directory's config.json: Linear/Embedding weights normal(0, "
    "initializer_range), biases 0, LayerNorm 1/0; torch::manual_seed(control_seed) first";

// config.json of `model_dir` with every weight freshly initialised after
// torch::manual_seed(seed); eval mode, CPU. The same seed, config and LibTorch
// give the same weights.
LoadedModel control_model(const std::filesystem::path& model_dir, uint64_t seed);
// The same over a config read already (an opened model's).
LoadedModel control_model(const ModelConfig& config, uint64_t seed);

// "fnv1a64:<hex>" over every parameter's HF name and float32 bytes, in
// named_parameters() order.
std::string weights_fingerprint(QaModel& model);

// The encoder a kind of probes reads: the model directory's weights for
// pretrained and fine_tuned; for control, control_model(model_dir,
// training_options["control_seed"]), checked against the recorded
// "control_weights" fingerprint when there is one (Error naming `source`).
LoadedModel load_probed_model(const std::string& kind, const OpenedModel& model,
                              const nlohmann::json& training_options, const std::string& source,
                              const LoadOptions& load = {});

}  // namespace layerprobe
