#include "layerprobe/squad/encode_loop.hpp"

#include <fmt/format.h>
#include <torch/torch.h>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/core/progress.hpp"

namespace layerprobe {

namespace {

// The frozen encoder's forward in `precision`; its outputs may be bf16/fp16 under autocast.
EncoderOutput forward_in_precision(QaModel& model, const EncoderBatch& batch, const std::string& precision,
                                   bool collect_hidden_states) {
  PrecisionScope autocast(precision, batch.input_ids.device());
  return model.forward(batch, collect_hidden_states);
}

}  // namespace

EncoderOutput encode_frozen(QaModel& model, const EncoderBatch& batch, const std::string& precision,
                            bool collect_hidden_states) {
  torch::InferenceMode inference;
  auto output = forward_in_precision(model, batch, precision, collect_hidden_states);
  for (auto& hidden : output.hidden_states) hidden = hidden.to(torch::kFloat);
  output.start_logits = output.start_logits.to(torch::kFloat);
  output.end_logits = output.end_logits.to(torch::kFloat);
  return output;
}

torch::Tensor probed_hidden_states(QaModel& model, const EncoderBatch& batch, const std::string& precision) {
  torch::InferenceMode inference;
  const auto states = forward_in_precision(model, batch, precision, true).hidden_states;
  // Every layer's output (not the embeddings) copied once into one tensor: float32, or bf16 as a CPU
  // bf16 encoder leaves them (the probes widen them exactly to float32 as they read them).
  auto sizes = states.back().sizes().vec();
  sizes.insert(sizes.begin(), static_cast<int64_t>(states.size()) - 1);
  const bool cpu_bf16 = states.back().is_cpu() && states.back().scalar_type() == torch::kBFloat16;
  auto stacked = torch::empty(sizes, states.back().options().dtype(cpu_bf16 ? torch::kBFloat16 : torch::kFloat));
  for (size_t layer = 1; layer < states.size(); ++layer) stacked[static_cast<int64_t>(layer) - 1].copy_(states[layer]);
  return stacked;
}

int64_t hidden_state_bytes_per_token(const ModelConfig& config) {
  return (2 * config.num_hidden_layers + 1) * config.hidden_size * static_cast<int64_t>(sizeof(float));
}

void for_each_batch(const std::vector<SquadFeature>& features, const std::vector<std::vector<size_t>>& batches,
                    const EncodeLoopOptions& options, const std::function<std::string(const LoopBatch&)>& step) {
  int64_t total = 0;
  for (const auto& batch : batches) total += static_cast<int64_t>(batch.size());
  ProgressMeter progress(options.label, total * options.units_per_feature);
  const bool check_memory = options.bytes_per_token > 0 && options.device.is_cpu();
  const double available = check_memory ? static_cast<double>(available_memory_bytes()) : 0.0;
  for (size_t b = 0; b < batches.size(); ++b) {
    throw_if_stop_requested(options.resume_hint);
    LoopBatch batch{b, batches[b], {}, {}};
    for (size_t index : batches[b]) {
      if (index >= features.size()) throw Error("batch index " + std::to_string(index) + " is past the features");
      batch.rows.push_back(&features[index]);
    }
    batch.inputs = make_batch(batch.rows, options.padding).to(options.device);
    const double needed = static_cast<double>(batch.inputs.input_ids.numel()) * static_cast<double>(options.bytes_per_token);
    if (available > 0 && needed > available)
      throw Error(fmt::format("a batch of {} features of {} tokens holds about {:.1f} GiB of hidden states, more than "
                              "the {:.1f} GiB of memory available: lower --batch-size",
                              batch.rows.size(), batch.inputs.input_ids.size(1), needed / (1 << 30), available / (1 << 30)),
                  2);
    const std::string detail = step(batch);
    progress.advance(static_cast<int64_t>(batch.rows.size()) * options.units_per_feature, detail);
  }
  progress.finish();
}

std::vector<std::vector<size_t>> sequential_batches(size_t features, size_t batch_size) {
  if (batch_size == 0) throw Error("batch size must be at least 1", 2);
  std::vector<std::vector<size_t>> batches;
  for (size_t begin = 0; begin < features; begin += batch_size) {
    batches.emplace_back();
    for (size_t i = begin; i < std::min(features, begin + batch_size); ++i) batches.back().push_back(i);
  }
  return batches;
}

}  // namespace layerprobe
