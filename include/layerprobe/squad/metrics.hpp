// The official SQuAD 2.0 evaluation (evaluate-v2.0.py), number for number.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "layerprobe/squad/predictions_io.hpp"

namespace layerprobe {

// normalize_answer: lowercase, drop ASCII punctuation, drop the words
// a/an/the, collapse whitespace.
std::string normalize_answer(const std::string& text);
int compute_exact(const std::string& gold, const std::string& prediction);
double compute_f1(const std::string& gold, const std::string& prediction);

// One question of the dataset, as the official script reads it.
struct GoldQuestion {
  std::string id;
  std::vector<std::string> answers;  // every `answers[].text`, as written
  bool has_answer = false;           // bool(qa['answers'])
  // False for a question without an "answers" list, or with an empty one while
  // marked is_impossible false: the SQuAD 2.0 test split, a leaderboard file,
  // a user's own questions. ("answers": [] alone is a no-answer question, as
  // the official script scores it.)
  bool labeled = true;
};

// Questions in file order; a repeated id keeps its first position and its
// last answers, as the script's dicts do.
struct GoldDataset {
  std::vector<GoldQuestion> questions;
};

GoldDataset load_gold_dataset(const std::filesystem::path& path);
GoldDataset parse_gold_dataset(const std::string& json_text, const std::string& source);

struct EvalOptions {
  const NaProbMap* na_probs = nullptr;  // adds best_* when given
  double na_prob_thresh = 1.0;
  // Score questions without a prediction as "" instead of failing.
  bool allow_missing = false;
  // Leave unlabeled questions out of the scores instead of failing.
  bool skip_unlabeled = false;
};

struct ScoreSummary {
  double exact = 0.0;
  double f1 = 0.0;
  long total = 0;
};

struct BestThresholds {
  double best_exact = 0.0;
  double best_exact_thresh = 0.0;
  double best_f1 = 0.0;
  double best_f1_thresh = 0.0;
};

// One scored question (after the na-prob threshold), as the summaries count it.
struct QuestionScore {
  double exact = 0.0;  // 0 or 1
  double f1 = 0.0;     // 0..1
  bool has_answer = false;
};

struct SquadEvaluation {
  ScoreSummary overall;
  std::optional<ScoreSummary> has_ans;  // absent when no question has an answer
  std::optional<ScoreSummary> no_ans;   // absent when every question has one
  std::optional<BestThresholds> best;   // present when na-probs were given
  size_t missing = 0;                   // questions scored as "" (allow_missing)
  size_t skipped_unlabeled = 0;         // unlabeled questions left out (skip_unlabeled)
  // Every scored question in the dataset's order: what a bootstrap over
  // questions resamples (overall.f1 == 100 x the mean of their f1).
  std::vector<QuestionScore> questions;

  // The script's OrderedDict: exact, f1, total, HasAns_*, NoAns_*, best_*.
  nlohmann::ordered_json to_json() const;
};

// Error (with the count and the first id) when predictions or na-probs are
// missing for dataset questions, unless allow_missing; and when questions are
// unlabeled, unless skip_unlabeled.
SquadEvaluation evaluate_squad(const GoldDataset& gold, const PredictionMap& predictions,
                               const EvalOptions& options = {});

// The JSON text the official script writes: json.dumps(..., indent=indent),
// or json.dump's single line when indent < 0. Values print as Python does.
std::string format_python_json(const nlohmann::ordered_json& flat_object, int indent = -1);

}  // namespace layerprobe
