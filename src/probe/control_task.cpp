#include "layerprobe/probe/control_task.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

#include "layerprobe/core/common.hpp"
#include "layerprobe/squad/decoder.hpp"
#include "layerprobe/squad/metrics.hpp"
#include "layerprobe/text/tokenizer.hpp"

namespace layerprobe {

uint64_t control_splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

double control_score(uint64_t seed, int64_t token_id) {
  const uint64_t draw = control_splitmix64(control_splitmix64(seed) ^ (2 * static_cast<uint64_t>(token_id)));
  return static_cast<double>(draw >> 11) * 0x1.0p-53;
}

int control_extra_tokens(uint64_t seed, int64_t token_id) {
  const uint64_t draw = control_splitmix64(control_splitmix64(seed) ^ (2 * static_cast<uint64_t>(token_id) + 1));
  return static_cast<int>(draw % (kControlMaxExtra + 1));
}

ControlAnswer control_answer(const std::vector<int64_t>& context_ids, uint64_t seed, double threshold,
                             const std::vector<bool>& can_start) {
  ControlAnswer answer;
  answer.best_score = -1.0;  // no token can start an answer: unanswerable
  if (context_ids.empty()) return answer;
  size_t best = 0;
  double best_score = -1.0;
  for (size_t i = 0; i < context_ids.size(); ++i) {
    const auto id = static_cast<size_t>(context_ids[i]);
    if (!can_start.empty() && (id >= can_start.size() || !can_start[id])) continue;
    const double score = control_score(seed, context_ids[i]);
    if (score > best_score) best = i, best_score = score;
  }
  answer.best_score = best_score;
  answer.answerable = best_score >= threshold;
  if (!answer.answerable) return answer;
  answer.start = static_cast<int>(best);
  const int last = static_cast<int>(context_ids.size()) - 1;
  answer.end = std::min(last, answer.start + control_extra_tokens(seed, context_ids[best]));
  return answer;
}

std::vector<bool> control_start_tokens(const Tokenizer& tokenizer) {
  std::vector<bool> can_start(static_cast<size_t>(std::max<int64_t>(tokenizer.vocab_size(), 0)), false);
  for (size_t id = 0; id < can_start.size(); ++id) {
    try {
      const std::string token = tokenizer.id_to_token(static_cast<int64_t>(id));
      can_start[id] = !normalize_answer(tokenizer.convert_tokens_to_string({token})).empty();
    } catch (const Error&) {
      // an id the vocabulary leaves unnamed never starts an answer
    }
  }
  return can_start;
}

double control_threshold(std::vector<double> best_scores, double unanswerable_share) {
  const auto n = static_cast<int64_t>(best_scores.size());
  const auto k = static_cast<int64_t>(std::llround(unanswerable_share * static_cast<double>(n)));
  if (k <= 0) return 0.0;
  if (k >= n) return 1.0;  // every score is below 1
  std::sort(best_scores.begin(), best_scores.end());
  return (best_scores[static_cast<size_t>(k - 1)] + best_scores[static_cast<size_t>(k)]) / 2;
}

nlohmann::json ControlTaskSpec::to_json() const {
  return {{"seed", seed},
          {"threshold", threshold},
          {"unanswerable_share", unanswerable_share},
          {"definition", "splitmix64 token scores, span of up to " + std::to_string(kControlMaxExtra + 1) +
                             " sub-tokens from the first best-scoring context token whose text is not empty under SQuAD's "
                             "normalisation (docs/methods.md)"}};
}

ControlTaskSpec ControlTaskSpec::from_json(const nlohmann::json& json, const std::string& source) {
  auto fail = [&](const std::string& what) -> ControlTaskSpec {
    throw Error("'" + source + "': the control task's settings " + what + " (training option 'control_task': " +
                json.dump() + "); train the control-task probes again");
  };
  if (!json.is_object()) return fail("are not an object");
  ControlTaskSpec spec;
  auto seed = json.find("seed"), threshold = json.find("threshold"), share = json.find("unanswerable_share");
  if (seed == json.end() || !seed->is_number_unsigned()) return fail("lack an unsigned integer 'seed'");
  if (threshold == json.end() || !threshold->is_number()) return fail("lack a number 'threshold'");
  spec.seed = seed->get<uint64_t>();
  spec.threshold = threshold->get<double>();
  if (!std::isfinite(spec.threshold) || spec.threshold < 0 || spec.threshold > 1)
    return fail("have a threshold outside [0, 1]");
  if (share != json.end() && share->is_number()) spec.unanswerable_share = share->get<double>();
  // Probes trained under the first definition (a start token whose text normalises to "", such as
  // "a", could make a control answer the metric scores like "no answer") name other answers.
  auto definition = json.find("definition");
  if (definition == json.end() || !definition->is_string() ||
      *definition != ControlTaskSpec{}.to_json().at("definition"))
    return fail("were made under another definition of the control task");
  return spec;
}

std::vector<std::vector<int64_t>> context_ids_by_example(const std::vector<SquadFeature>& features, size_t examples) {
  std::vector<std::vector<int64_t>> ids(examples);
  for (const auto& f : features) {
    if (f.example_index < 0 || static_cast<size_t>(f.example_index) >= examples)
      throw Error("feature " + std::to_string(f.unique_id) + " names example " + std::to_string(f.example_index) +
                  " of " + std::to_string(examples));
    if (f.context_start < 0 || f.paragraph_len < 0 ||
        static_cast<size_t>(f.context_start) + static_cast<size_t>(f.paragraph_len) > f.input_ids.size())
      throw Error("feature " + std::to_string(f.unique_id) + " has no context window within its tokens");
    auto& context = ids[static_cast<size_t>(f.example_index)];
    const size_t end = static_cast<size_t>(f.window_start) + static_cast<size_t>(f.paragraph_len);
    if (context.size() < end) context.resize(end, -1);
    for (int i = 0; i < f.paragraph_len; ++i)
      context[static_cast<size_t>(f.window_start + i)] = f.input_ids[static_cast<size_t>(f.context_start + i)];
  }
  for (size_t e = 0; e < ids.size(); ++e)
    if (std::find(ids[e].begin(), ids[e].end(), -1) != ids[e].end())
      throw Error("the windows of example " + std::to_string(e) + " do not cover its context");
  return ids;
}

ControlTaskSpec fit_control_task(const std::vector<SquadExample>& examples, const std::vector<SquadFeature>& features,
                                 uint64_t seed, const std::vector<bool>& can_start) {
  const auto ids = context_ids_by_example(features, examples.size());
  std::vector<double> best;
  size_t impossible = 0;
  for (size_t e = 0; e < examples.size(); ++e) {
    if (ids[e].empty()) continue;
    best.push_back(control_answer(ids[e], seed, 0.0, can_start).best_score);
    impossible += examples[e].is_impossible ? 1 : 0;
  }
  ControlTaskSpec spec;
  spec.seed = seed;
  spec.unanswerable_share = best.empty() ? 0.0 : static_cast<double>(impossible) / static_cast<double>(best.size());
  spec.threshold = control_threshold(best, spec.unanswerable_share);
  return spec;
}

namespace {

std::vector<ControlAnswer> control_answers(const std::vector<SquadFeature>& features, size_t examples,
                                           const ControlTaskSpec& spec, const std::vector<bool>& can_start) {
  std::vector<ControlAnswer> answers;
  for (const auto& ids : context_ids_by_example(features, examples))
    answers.push_back(control_answer(ids, spec.seed, spec.threshold, can_start));
  return answers;
}

// The answer's token positions in a window that holds all of it.
std::optional<std::pair<int, int>> control_positions_in(const SquadFeature& f, const ControlAnswer& answer) {
  if (!answer.answerable || answer.start < f.window_start || answer.end > f.window_start + f.paragraph_len - 1)
    return std::nullopt;
  return std::pair<int, int>{answer.start - f.window_start + f.context_start,
                             answer.end - f.window_start + f.context_start};
}

// Code points before byte `at` of UTF-8 text.
int code_points_before(const std::string& text, size_t at) {
  int count = 0;
  for (size_t i = 0; i < at && i < text.size(); ++i) count += (static_cast<unsigned char>(text[i]) & 0xC0) != 0x80;
  return count;
}

}  // namespace

std::vector<std::pair<int, int>> control_task_targets(const std::vector<SquadFeature>& features, size_t examples,
                                                      const ControlTaskSpec& spec, const std::vector<bool>& can_start) {
  const auto answers = control_answers(features, examples, spec, can_start);
  std::vector<std::pair<int, int>> targets;
  targets.reserve(features.size());
  for (const auto& f : features)
    targets.push_back(control_positions_in(f, answers[static_cast<size_t>(f.example_index)]).value_or(std::pair<int, int>{f.null_index, f.null_index}));
  return targets;
}

std::string control_task_gold(const std::vector<SquadExample>& examples, const std::vector<SquadFeature>& features,
                              const Tokenizer& tokenizer, const ControlTaskSpec& spec, size_t* answerable) {
  const auto answers = control_answers(features, examples.size(), spec, control_start_tokens(tokenizer));
  // Scores that name each question's control span (10 + 10) in every window holding it, and
  // the classifier token (10 + 10) for an unanswerable one: decoding turns them into its text.
  std::vector<FeatureLogits> logits(features.size());
  for (size_t i = 0; i < features.size(); ++i) {
    const auto& f = features[i];
    const auto& answer = answers[static_cast<size_t>(f.example_index)];
    logits[i].start.assign(f.length(), 0.0f);
    logits[i].end.assign(f.length(), 0.0f);
    if (!answer.answerable) {
      logits[i].start[0] = logits[i].end[0] = 10.0f;
    } else if (auto span = control_positions_in(f, answer)) {
      logits[i].start[static_cast<size_t>(span->first)] = 10.0f;
      logits[i].end[static_cast<size_t>(span->second)] = 10.0f;
    }
  }
  DecodeOptions decode;
  decode.do_lower_case = tokenizer.lowercases();
  decode.max_answer_length = kControlMaxExtra + 1;
  const auto predictions = decode_predictions(examples, features, logits, tokenizer, decode);
  nlohmann::ordered_json data = nlohmann::ordered_json::array();
  size_t with_answer = 0;
  for (size_t e = 0; e < examples.size(); ++e) {
    const auto& example = examples[e];
    const std::string& text = predictions.at(e).text;
    nlohmann::ordered_json question = {{"id", example.qas_id}, {"question", example.question_text}};
    if (text.empty()) {
      question["answers"] = nlohmann::ordered_json::array();
      question["is_impossible"] = true;
    } else {
      const size_t at = example.context_text().find(text);
      question["answers"] = nlohmann::ordered_json::array(
          {{{"text", text}, {"answer_start", at == std::string::npos ? -1 : code_points_before(example.context_text(), at)}}});
      question["is_impossible"] = false;
      ++with_answer;
    }
    if (e == 0 || examples[e - 1].title != example.title) data.push_back({{"title", example.title}, {"paragraphs", nlohmann::ordered_json::array()}});
    auto& paragraphs = data.back()["paragraphs"];
    if (paragraphs.empty() || examples[e - 1].context != example.context)
      paragraphs.push_back({{"context", example.context_text()}, {"qas", nlohmann::ordered_json::array()}});
    paragraphs.back()["qas"].push_back(std::move(question));
  }
  if (answerable) *answerable = with_answer;
  nlohmann::ordered_json file = {{"version", "v2.0"}, {"data", std::move(data)}};
  return file.dump() + "\n";
}

}  // namespace layerprobe
