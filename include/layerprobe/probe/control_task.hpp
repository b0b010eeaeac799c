// A control task for span prediction (Hewitt & Liang 2019): answers that depend only on
// word (token) identity, so a probe can solve it only by memorising token types. The
// probe's selectivity is its F1 on SQuAD minus its F1 on this task. Definition
// (docs/methods.md), for a seed S and the sub-tokens c_0 .. c_{n-1} of a question's context:
//   key  = splitmix64(S)
//   u(v) = (splitmix64(key XOR 2v) >> 11) / 2^53           a fixed score in [0, 1) per token id v
//   k(v) = splitmix64(key XOR (2v + 1)) mod 4                extra tokens after a start of id v
//   i*   = the first i with the largest u(c_i) among the tokens that can start an answer: those
//          whose own text (Tokenizer::convert_tokens_to_string of the one token) is not empty
//          under SQuAD's answer normalisation (a lone "a", "the", "##s"... or "," cannot: an
//          answer "a" would score like "no answer", as the official metric normalises it to "")
//   the question is unanswerable when u(c_{i*}) < tau; else its answer is the span
//   [i*, min(i* + k(c_{i*}), n - 1)] of context sub-tokens
// where splitmix64(x) is Steele et al.'s finaliser of x + 0x9e3779b97f4a7c15, and tau is
// set on the training questions so that their share of unanswerable control answers is
// the SQuAD share (control_threshold). As for SQuAD, a window that does not hold the whole
// answer is labelled with the classifier token (0, 0). For scoring, a question's control
// answer text is what decoding gives for its span (control_task_gold), so a probe that names
// the span scores EM 1.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "layerprobe/squad/features.hpp"
#include "layerprobe/squad/squad.hpp"

namespace layerprobe {

class Tokenizer;

// The longest control answer, in sub-tokens (k(v) is in [0, kControlMaxExtra]).
constexpr int kControlMaxExtra = 3;

uint64_t control_splitmix64(uint64_t x);
double control_score(uint64_t seed, int64_t token_id);  // u(v)
int control_extra_tokens(uint64_t seed, int64_t token_id);  // k(v)

// A question's control answer over its context's sub-tokens.
struct ControlAnswer {
  double best_score = 0.0;  // u(c_{i*})
  bool answerable = false;
  int start = 0, end = 0;  // context sub-token indices (when answerable)
};
// can_start[v]: whether token id v can start an answer (control_start_tokens); empty: every token.
ControlAnswer control_answer(const std::vector<int64_t>& context_ids, uint64_t seed, double threshold,
                             const std::vector<bool>& can_start = {});

// Which token ids of the tokenizer's vocabulary can start a control answer (see the definition).
std::vector<bool> control_start_tokens(const Tokenizer& tokenizer);

// tau such that round(share x n) of the n best scores lie below it: the midpoint between the
// k-th and (k+1)-th smallest (0 when k = 0, 1 when k = n; ties can move the achieved share).
double control_threshold(std::vector<double> best_scores, double unanswerable_share);

// What a control task's probes record in their training options ("control_task": {...}).
struct ControlTaskSpec {
  uint64_t seed = 1;
  double threshold = 0.0;
  double unanswerable_share = 0.0;  // the SQuAD share on the training questions tau was set for
  nlohmann::json to_json() const;
  // Error naming `source` when the JSON is not one to_json wrote.
  static ControlTaskSpec from_json(const nlohmann::json& json, const std::string& source);
};

// The context sub-token ids of every example with features, rebuilt from its windows
// (features grouped by example_index, as convert_examples_to_features makes them):
// [example_index] -> ids; empty for an example without features.
std::vector<std::vector<int64_t>> context_ids_by_example(const std::vector<SquadFeature>& features, size_t examples);

// The spec for training features: tau from the best scores of the examples with features,
// for the share of those that are impossible.
ControlTaskSpec fit_control_task(const std::vector<SquadExample>& examples, const std::vector<SquadFeature>& features,
                                 uint64_t seed, const std::vector<bool>& can_start);

// Each feature's control targets (start, end) as token positions in its window: the
// answer's positions when the window holds the whole answer, else the window's no-answer
// position (null_index, null_index).
std::vector<std::pair<int, int>> control_task_targets(const std::vector<SquadFeature>& features, size_t examples,
                                                      const ControlTaskSpec& spec, const std::vector<bool>& can_start);

// The control answers of evaluation examples (features made with decoding fields) as a
// SQuAD 2.0 file's JSON text: the same articles, paragraphs, questions and ids, each
// question's answers replaced by its control answer, the text decoding gives for the span
// (decode_predictions on scores that name it), or none (is_impossible) when unanswerable.
// `answerable` (optional) receives how many questions have one.
std::string control_task_gold(const std::vector<SquadExample>& examples, const std::vector<SquadFeature>& features,
                              const Tokenizer& tokenizer, const ControlTaskSpec& spec, size_t* answerable = nullptr);

}  // namespace layerprobe
