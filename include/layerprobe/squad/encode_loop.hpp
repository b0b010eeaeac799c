// The one batched encode loop: features -> padded EncoderBatch on a device ->
// the frozen encoder, with progress (rate, ETA) and a stop check before every
// batch. Probe training, probe prediction, run_squad's evaluation and the bench
// all go through it, so padding, precision and interruption behave alike.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "layerprobe/model/qa_model.hpp"
#include "layerprobe/squad/batch.hpp"
#include "layerprobe/squad/features.hpp"

namespace layerprobe {

// One eval-mode forward pass without autograd, the encoder's ops at
// `precision` (core/precision.hpp); hidden states and logits come back float32.
EncoderOutput encode_frozen(QaModel& model, const EncoderBatch& batch, const std::string& precision,
                            bool collect_hidden_states);

// Hidden states 1..L of encode_frozen stacked [L,B,T,H] (index 0, the
// embedding output, is not probed): float32, or bf16 from a CPU bf16 encoder
// (LayerProbes reads either; bf16 widens to float32 exactly).
torch::Tensor probed_hidden_states(QaModel& model, const EncoderBatch& batch, const std::string& precision = "fp32");

struct EncodeLoopOptions {
  std::string label = "encode";  // progress label
  BatchOptions padding;          // pad_to, pad_id (the tokenizer's)
  torch::Device device = torch::kCPU;
  // How the user resumes after an interruption (shown with the stop).
  std::string resume_hint = "Rerun the same command.";
  // Progress units per feature (e.g. the number of models each batch feeds).
  int64_t units_per_feature = 1;
  // Bytes a batch holds per token (the hidden states kept of every layer); a CPU batch needing more
  // than the available memory is a usage Error (lower --batch-size) before it is encoded. 0: unchecked.
  int64_t bytes_per_token = 0;
};

// bytes_per_token for the hidden states of every layer of `config`'s encoder, kept as a list and once stacked.
int64_t hidden_state_bytes_per_token(const ModelConfig& config);

// What one step of the loop gets: the feature indices of the batch (into the
// features passed), the features themselves, and the batch on the device.
struct LoopBatch {
  size_t number = 0;  // position in `batches`
  const std::vector<size_t>& indices;
  std::vector<const SquadFeature*> rows;
  EncoderBatch inputs;
};

// Runs `step` on every batch in order; the string it returns is shown with the
// progress. Throws layerprobe::Error (exit 130) at the first batch after
// Ctrl-C/SIGTERM, so work finished before stays finished.
void for_each_batch(const std::vector<SquadFeature>& features, const std::vector<std::vector<size_t>>& batches,
                    const EncodeLoopOptions& options, const std::function<std::string(const LoopBatch&)>& step);

// Consecutive batches of at most batch_size features in feature order.
std::vector<std::vector<size_t>> sequential_batches(size_t features, size_t batch_size);

}  // namespace layerprobe
