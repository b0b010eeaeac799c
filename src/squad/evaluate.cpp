#include "layerprobe/squad/evaluate.hpp"

#include <torch/torch.h>

#include "layerprobe/squad/encode_loop.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/squad/metrics.hpp"
#include "layerprobe/core/python_str.hpp"

namespace layerprobe {

namespace {

std::vector<float> row_values(const torch::Tensor& matrix, int64_t row) {
  const float* data = matrix.data_ptr<float>() + row * matrix.size(1);
  return std::vector<float>(data, data + matrix.size(1));
}

}  // namespace

std::vector<FeatureLogits> compute_feature_logits(QaModel& model, const std::vector<SquadFeature>& features,
                                                  const LogitsOptions& options, const torch::Device& device) {
  if (options.batch_size < 1) throw Error("--per_gpu_eval_batch_size must be at least 1", 2);
  model.eval();
  std::vector<FeatureLogits> logits;
  logits.reserve(features.size());
  EncodeLoopOptions loop;
  loop.label = "evaluating";
  loop.padding = BatchOptions{options.pad_to, options.pad_id};
  loop.device = device;
  loop.resume_hint = "Nothing was written; rerun the same command.";
  auto batches = sequential_batches(features.size(), static_cast<size_t>(options.batch_size));
  for_each_batch(features, batches, loop, [&](const LoopBatch& batch) {
    auto output = encode_frozen(model, batch.inputs, options.precision, false);
    auto start = output.start_logits.to(torch::kCPU).contiguous();
    auto end = output.end_logits.to(torch::kCPU).contiguous();
    if (!torch::isfinite(start).all().item<bool>() || !torch::isfinite(end).all().item<bool>())
      throw Error("the model's start/end logits of batch " + std::to_string(batch.number + 1) +
                  " are NaN or Inf (its weights are too large, or --precision overflows); nothing was written");
    for (int64_t r = 0; r < static_cast<int64_t>(batch.rows.size()); ++r)
      logits.push_back(FeatureLogits{row_values(start, r), row_values(end, r)});
    return std::string();
  });
  return logits;
}

nlohmann::ordered_json squad_evaluate(const std::filesystem::path& dataset_file,
                                      const std::vector<QuestionPrediction>& predictions, bool skip_unlabeled) {
  const GoldDataset gold = load_gold_dataset(dataset_file);
  PredictionMap answers;
  NaProbMap no_answer_probs;
  for (const QuestionPrediction& prediction : predictions) {
    answers.set(prediction.qas_id, prediction.text);
    no_answer_probs.set(prediction.qas_id, 0.0);
  }
  EvalOptions options;
  options.na_probs = &no_answer_probs;
  // HF skips questions without a prediction (only possible for an empty context).
  options.allow_missing = true;
  options.skip_unlabeled = skip_unlabeled;
  const auto evaluation = evaluate_squad(gold, answers, options);
  if (evaluation.skipped_unlabeled)
    spdlog::warn("{} unlabeled questions left out of the scores", evaluation.skipped_unlabeled);
  return evaluation.to_json();
}

std::string python_dict_repr(const nlohmann::ordered_json& flat_object) {
  std::string out = "{";
  for (const auto& [key, value] : flat_object.items()) {
    if (out.size() > 1) out += ", ";
    out += "'" + key + "': ";
    if (value.is_number_float()) out += python_float_repr(value.get<double>());
    else out += value.dump();
  }
  return out + "}";
}

}  // namespace layerprobe
