// What decoding produces for one question (the answer, its null odds and its
// n-best list): the data type the decoder writes and predictions_io saves,
// without the decoding itself, so the metric and the file formats do not
// depend on the decoder.
#pragma once

#include <string>
#include <vector>

namespace layerprobe {

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

}  // namespace layerprobe
