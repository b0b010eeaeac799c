// Start/end logits -> answers per question, exactly as transformers 2.5.1's
// compute_predictions_logits does for SQuAD 2.0 (version_2_with_negative).
// Shared by probe_predict and run_squad.
#pragma once

#include <string>
#include <vector>

#include "layerprobe/squad/features.hpp"
#include "layerprobe/squad/prediction.hpp"
#include "layerprobe/squad/squad.hpp"

namespace layerprobe {

class Tokenizer;

struct DecodeOptions {
  int n_best_size = 20;
  int max_answer_length = 30;
  double null_score_diff_threshold = 0.0;
  // get_final_text's: run_squad's --do_lower_case; probe_predict uses Tokenizer::lowercases().
  bool do_lower_case = true;
};

// Scores of one feature's tokens. At least feature.length() entries; extra
// trailing entries (padding positions, as HF's run_squad scores the padded
// window) compete for the n-best index slots and are then discarded, as in HF.
struct FeatureLogits {
  std::vector<float> start, end;
};

// One prediction per example, in example order. `logits[i]` belongs to
// `features[i]`; features are grouped by example_index in their given order.
// A span's text is the tokenizer's convert_tokens_to_string of its tokens,
// projected onto the context by get_final_text. Error naming the feature when
// sizes or indices are inconsistent.
std::vector<QuestionPrediction> decode_predictions(const std::vector<SquadExample>& examples,
                                                   const std::vector<SquadFeature>& features,
                                                   const std::vector<FeatureLogits>& logits, const Tokenizer& tokenizer,
                                                   const DecodeOptions& options);

// HF's get_final_text: projects the detokenised prediction `pred_text` back
// onto `orig_text` (the whitespace words it spans, joined by spaces) through
// BERT's BasicTokenizer; falls back to `orig_text` when the alignment fails.
std::string get_final_text(const std::string& pred_text, const std::string& orig_text, bool do_lower_case);

}  // namespace layerprobe
