// Models on disk in the Hugging Face layout: a directory with config.json and
// weights (model.safetensors, else pytorch_model.bin in either torch.save
// format), HF key names with or without the "albert." prefix.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "layerprobe/model/config.hpp"
#include "layerprobe/model/encoder.hpp"
#include "layerprobe/io/torch_pickle.hpp"

namespace layerprobe {

struct LoadedModel {
  AlbertConfig config;
  AlbertForQuestionAnswering model{nullptr};  // CPU, eval mode
  bool has_qa_head = false;  // false: qa_outputs freshly initialised (for fine-tuning)
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
  std::vector<std::string> unused;  // file keys the encoder does not use (MLM/SOP heads, buffers)
};

// Copies HF-named tensors into `model` (converting F16/BF16 to the model's
// dtype). Error naming the key for a missing tensor or a shape mismatch;
// a missing QA head or pooler is freshly initialised instead.
StateDictReport load_state_dict(AlbertForQuestionAnswering& model, const TensorMap& tensors,
                                const std::string& source);

// The model's parameters under HF keys ("albert.…", "qa_outputs.…").
TensorMap model_state_dict(const AlbertForQuestionAnswering& model);

// `weights_file` (optional) is used as given if it exists, else relative to
// `model_dir`.
LoadedModel load_checkpoint(const std::filesystem::path& model_dir,
                            const std::optional<std::filesystem::path>& weights_file = std::nullopt);

// Writes config.json + model.safetensors (HF keys, F32) into `dir`, each
// atomically; copies spiece.model from `tokenizer_source_dir` when it has one.
void save_checkpoint(const AlbertForQuestionAnswering& model, const AlbertConfig& config,
                     const std::filesystem::path& dir,
                     const std::optional<std::filesystem::path>& tokenizer_source_dir = std::nullopt);

}  // namespace layerprobe
