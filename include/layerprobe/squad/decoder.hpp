// Start/end logits -> answers per question, exactly as transformers 2.5.1's
// compute_predictions_logits does for SQuAD 2.0 (version_2_with_negative).
// Shared by probe_predict and run_squad.
#pragma once

#include <string>
#include <vector>

#include "layerprobe/squad/features.hpp"
#include "layerprobe/squad/squad.hpp"

namespace layerprobe {

struct DecodeOptions {
  int n_best_size = 20;
  int max_answer_length = 30;
  double null_score_diff_threshold = 0.0;
  bool do_lower_case = true;
};

// Scores of one feature's tokens. At least feature.length() entries; extra
// trailing entries (padding positions, as HF's run_squad scores the padded
// window) compete for the n-best index slots and are then discarded, as in HF.
struct FeatureLogits {
  std::vector<float> start, end;
};

// One entry of HF's nbest_predictions.json.
struct NbestEntry {
  std::string text;
  double probability = 0.0;
  double start_logit = 0.0;
  double end_logit = 0.0;
};

struct QuestionPrediction {
  std::string qas_id;
  std::string text;  // final answer; "" = no answer
  // score_null - best non-null start_logit - end_logit (HF's null_odds.json).
  double null_odds = 0.0;
  std::vector<NbestEntry> nbest;
};

// One prediction per example, in example order. `logits[i]` belongs to
// `features[i]`; features are grouped by example_index in their given order.
// Error naming the feature when sizes or indices are inconsistent.
std::vector<QuestionPrediction> decode_predictions(const std::vector<SquadExample>& examples,
                                                   const std::vector<SquadFeature>& features,
                                                   const std::vector<FeatureLogits>& logits,
                                                   const DecodeOptions& options);

// HF's get_final_text: projects the detokenised prediction `pred_text` back
// onto `orig_text` (the whitespace words it spans, joined by spaces) through
// BERT's BasicTokenizer; falls back to `orig_text` when the alignment fails.
std::string get_final_text(const std::string& pred_text, const std::string& orig_text, bool do_lower_case);

}  // namespace layerprobe
