// Models on disk in the Hugging Face layout, for every family: a directory
// with config.json and weights (model.safetensors, else pytorch_model.bin in
// either torch.save format; or either sharded, with save_pretrained's
// model.safetensors.index.json / pytorch_model.bin.index.json), HF key names
// under the family's base prefix ("bert.", "transformer."), another head's
// prefix (a *ForCausalLM's "model."), or none (a base model).
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

// The first of model.safetensors, model.safetensors.index.json, pytorch_model.bin and
// pytorch_model.bin.index.json (from_pretrained's order); Error naming the
// directory (and how to fetch the model) when there is none.
std::filesystem::path find_weights_file(const std::filesystem::path& model_dir);

// The same file, or nothing when the directory holds none of them.
std::optional<std::filesystem::path> weights_file_in(const std::filesystem::path& model_dir);

// Any supported weights file: .safetensors by extension (memory-mapped: the tensors point into
// the file), an index of shards (*.index.json: every shard it names, in the same directory), else
// torch.save (zip or legacy) by content. Error naming the file, shard or key at fault.
TensorMap read_weights(const std::filesystem::path& path);

struct StateDictReport {
  bool has_qa_head = false;
  bool has_pooler = false;
  std::vector<std::string> unused;  // file keys the model does not use (MLM/SOP heads, buffers)
};

// Copies HF-named tensors into `model` (converting F32/F16/BF16 to each
// parameter's dtype; TF-style LayerNorm gamma/beta renamed as from_pretrained
// does). Error naming the key for a missing tensor or a shape mismatch; a
// missing QA head or pooler is freshly initialised instead. With `adopt`
// (tensors nothing else holds, such as read_weights' over a mapped file), a
// CPU parameter of the tensor's dtype takes the tensor itself instead of a copy,
// and a mapped tensor copied into another dtype gives its pages back.
StateDictReport load_state_dict(QaModel& model, const TensorMap& tensors, const std::string& source,
                                bool adopt = false);

// The model's parameters under HF keys ("albert.…", "qa_outputs.…"), on the CPU in `dtype`.
TensorMap model_state_dict(const QaModel& model, torch::Dtype dtype = torch::kFloat32);

struct LoadOptions {
  // The dtype a family that can compute in it (the decoders) keeps its weights in: float32, or
  // the half dtype its --precision runs in (weights_dtype_for), so a bf16 checkpoint probed in
  // bf16 is never widened (and a float32 one is halved). Other families keep float32 and
  // convert as they compute.
  torch::Dtype weights_dtype = torch::kFloat32;
  // The --precision the model will run at: "int8" with a family that has no int8 layers is refused
  // (check_precision_for_family) before any weight is read.
  std::string precision = "fp32";
};

// The weights dtype of a frozen encoder run at `precision` on `device` (core/precision.hpp):
// bf16 for "bf16", fp16 for "fp16" on CUDA, else float32.
torch::Dtype weights_dtype_for(const std::string& precision, const torch::Device& device);

// `weights_file` (optional) is used as given if it exists, else relative to `model_dir`.
LoadedModel load_checkpoint(const std::filesystem::path& model_dir,
                            const std::optional<std::filesystem::path>& weights_file = std::nullopt,
                            const LoadOptions& options = {});

struct SaveOptions {
  torch::Dtype dtype = torch::kFloat32;  // F32, or BF16/F16 as half-precision hub checkpoints are stored
  // Above this many bytes of weights, save_pretrained's shards: model-0000k-of-0000n.safetensors
  // and model.safetensors.index.json (0: one file).
  int64_t max_shard_bytes = 0;
  // false: the weights leave out the family's QA head (head_prefixes), as a pretrained hub
  // checkpoint has them.
  bool qa_head = true;
};

// `config` (read already, e.g. by open_model_dir) with the weights of
// `weights_path`; errors name config.source and the weights file.
LoadedModel load_checkpoint(const ModelConfig& config, const std::filesystem::path& weights_path,
                            const LoadOptions& options = {});

// Writes config.json (architectures: the family's QA class) and
// model.safetensors (HF keys), or its shards and their index, into `dir`, each
// file atomically; the weights file of the other form, if any, is removed.
void save_checkpoint(const QaModel& model, const std::filesystem::path& dir, const SaveOptions& options = {});

}  // namespace layerprobe
