// run_squad's evaluation: the model's start/end logits for every feature,
// decoded with the shared decoder and scored with the official metric, as
// transformers 2.5.1's evaluate() and squad_evaluate() do.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "layerprobe/squad/decoder.hpp"
#include "layerprobe/model/qa_model.hpp"
#include "layerprobe/squad/features.hpp"

namespace layerprobe {

struct LogitsOptions {
  int64_t batch_size = 8;
  // Rows padded to this length and all of it returned: HF 2.5.1 scores the
  // window padded to max_seq_length, and padding positions compete for the
  // n-best slots. 0 = each feature's own length.
  int64_t pad_to = 384;
  int64_t pad_id = 0;             // the tokenizer's pad_id()
  std::string precision = "fp32";  // the encoder's (core/precision.hpp)
};

// One FeatureLogits per feature, in order (the model in eval mode on `device`).
std::vector<FeatureLogits> compute_feature_logits(QaModel& model,
                                                  const std::vector<SquadFeature>& features,
                                                  const LogitsOptions& options, const torch::Device& device);

// squad_evaluate(examples, predictions) of transformers 2.5.1: the official
// metric with every no-answer probability 0.0, which adds best_exact,
// best_exact_thresh, best_f1 and best_f1_thresh to the keys.
// Unlabeled questions are an Error unless skip_unlabeled.
nlohmann::ordered_json squad_evaluate(const std::filesystem::path& dataset_file,
                                      const std::vector<QuestionPrediction>& predictions, bool skip_unlabeled = false);

// Python's repr() of a flat dict of numbers: {'exact': 52.1, 'total': 6078}.
std::string python_dict_repr(const nlohmann::ordered_json& flat_object);

}  // namespace layerprobe
