// Models on disk in the Hugging Face layout, for every family: a directory
// with config.json and weights (model.safetensors, else pytorch_model.bin in
// either torch.save format), HF key names with or without the family's base
// prefix ("bert.", "albert.", ...).
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "layerprobe/io/torch_pickle.hpp"
#include "layerprobe/model/config.hpp"
#include "layerprobe/model/qa_model.hpp"

namespace layerprobe {

struct LoadedModel {
  ModelConfig config;
  std::shared_ptr<QaModel> model;  // CPU, eval mode
  bool has_qa_head = false;        // false: qa_outputs freshly initialised (for fine-tuning)
  std::filesystem::path weights_path;
};

// model.safetensors if present, else pytorch_model.bin; Error naming the
// directory (and how to fetch the model) when there is neither.
std::filesystem::path find_weights_file(const std::filesystem::path& model_dir);

// Any supported weights file: .safetensors by extension, else torch.save
// (zip or legacy) by content.
TensorMap read_weights(const std::filesystem::path& path);

struct StateDictReport {
  bool has_qa_head = false;
  bool has_pooler = false;
  std::vector<std::string> unused;  // file keys the model does not use (MLM/SOP heads, buffers)
};

// Copies HF-named tensors into `model` (converting F16/BF16 to the model's
// dtype; TF-style LayerNorm gamma/beta renamed as from_pretrained does).
// Error naming the key for a missing tensor or a shape mismatch; a missing
// QA head or pooler is freshly initialised instead.
StateDictReport load_state_dict(QaModel& model, const TensorMap& tensors, const std::string& source);

// The model's parameters under HF keys ("albert.…", "qa_outputs.…"), F32 on the CPU.
TensorMap model_state_dict(const QaModel& model);

// `weights_file` (optional) is used as given if it exists, else relative to `model_dir`.
LoadedModel load_checkpoint(const std::filesystem::path& model_dir,
                            const std::optional<std::filesystem::path>& weights_file = std::nullopt);

// `config` (read already, e.g. by open_model_dir) with the weights of
// `weights_path`; errors name config.source and the weights file.
LoadedModel load_checkpoint(const ModelConfig& config, const std::filesystem::path& weights_path);

// Writes config.json (architectures: the family's QA class) and
// model.safetensors (HF keys, F32) into `dir`, each atomically.
void save_checkpoint(const QaModel& model, const std::filesystem::path& dir);

}  // namespace layerprobe
