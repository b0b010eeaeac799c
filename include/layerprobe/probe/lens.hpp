// The head lens: the logit lens (nostalgebraist 2020) for extractive QA. A
// fine-tuned model's own QA head (its final norm, where the family has one,
// then the head) applied to every layer's hidden state, with no training, and
// decoded as run_squad decodes the model's own logits. At the last layer it is
// run_squad --do_eval exactly: the same features, batches, padding and decoding
// (a test compares predictions.json).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "layerprobe/model/qa_model.hpp"
#include "layerprobe/squad/decoder.hpp"
#include "layerprobe/squad/evaluate.hpp"
#include "layerprobe/squad/features.hpp"

namespace layerprobe {

struct HeadLensOptions {
  std::filesystem::path model_dir;       // a fine-tuned model (its QA head)
  std::filesystem::path experiment_dir;  // predictions go to <experiment_dir>/head_lens_preds/
  std::filesystem::path dev_file;        // default $SQUAD_DIR/dev-v2.0.json
  std::string device = "cpu";
  // run_squad's evaluation settings and defaults.
  WindowOptions window;
  int batch_size = 8;  // --per_gpu_eval_batch_size
  int n_best_size = 20;
  int max_answer_length = 30;
  double null_score_diff_threshold = 0.0;
  std::string precision = "fp32";
};

// The directory the head lens writes into an experiment.
std::filesystem::path head_lens_preds_dir(const std::filesystem::path& experiment_dir);

// [layer - 1][feature]: the head's logits at layers 1..L of every feature, each row padded to
// options.pad_to as run_squad scores it (sequential batches of options.batch_size).
std::vector<std::vector<FeatureLogits>> head_lens_logits(QaModel& model, const std::vector<SquadFeature>& features,
                                                         const LogitsOptions& options, const torch::Device& device);

// Writes <experiment>/head_lens_preds/pred_layer_<l>.{csv,json}, null_odds_layer_<l>.json
// (l = 1..L) and preds_meta.json (kind head_lens), the formats of probes' predictions;
// probe_evaluate scores it with the experiment. Error when the model has no QA head.
void predict_head_lens(const HeadLensOptions& options);

}  // namespace layerprobe
