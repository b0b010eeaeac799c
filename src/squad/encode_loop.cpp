#include "layerprobe/squad/encode_loop.hpp"

#include <torch/torch.h>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/core/progress.hpp"

namespace layerprobe {

EncoderOutput encode_frozen(QaModel& model, const EncoderBatch& batch, const std::string& precision,
                            bool collect_hidden_states) {
  torch::InferenceMode inference;
  auto output = [&] {
    PrecisionScope autocast(precision, batch.input_ids.device());
    return model.forward(batch, collect_hidden_states);
  }();
  // Autocast may leave them bf16/fp16.
  for (auto& hidden : output.hidden_states) hidden = hidden.to(torch::kFloat);
  output.start_logits = output.start_logits.to(torch::kFloat);
  output.end_logits = output.end_logits.to(torch::kFloat);
  return output;
}

torch::Tensor probed_hidden_states(QaModel& model, const EncoderBatch& batch, const std::string& precision) {
  auto output = encode_frozen(model, batch, precision, true);
  std::vector<torch::Tensor> layers(output.hidden_states.begin() + 1, output.hidden_states.end());
  return torch::stack(layers);
}

void for_each_batch(const std::vector<SquadFeature>& features, const std::vector<std::vector<size_t>>& batches,
                    const EncodeLoopOptions& options, const std::function<std::string(const LoopBatch&)>& step) {
  int64_t total = 0;
  for (const auto& batch : batches) total += static_cast<int64_t>(batch.size());
  ProgressMeter progress(options.label, total * options.units_per_feature);
  for (size_t b = 0; b < batches.size(); ++b) {
    throw_if_stop_requested(options.resume_hint);
    LoopBatch batch{b, batches[b], {}, {}};
    for (size_t index : batches[b]) {
      if (index >= features.size()) throw Error("batch index " + std::to_string(index) + " is past the features");
      batch.rows.push_back(&features[index]);
    }
    batch.inputs = make_batch(batch.rows, options.padding).to(options.device);
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
