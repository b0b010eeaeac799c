#include "layerprobe/squad/metrics.hpp"

#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <unordered_map>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"

namespace layerprobe {

namespace fs = std::filesystem;

namespace {

// string.punctuation
bool is_ascii_punctuation(char32_t c) {
  return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
}

// A word character of Python's `re` on str patterns: str.isalnum() or "_"
// (already removed here as punctuation).
bool is_regex_word_char(char32_t c) {
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

// re.sub(r"\b(a|an|the)\b", " ", text): the pattern can only match a whole
// run of word characters, so each run equal to an article becomes a space.
std::u32string remove_articles(const std::u32string& text) {
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (!is_regex_word_char(text[i])) {
      out.push_back(text[i++]);
      continue;
    }
    size_t start = i;
    while (i < text.size() && is_regex_word_char(text[i])) ++i;
    std::u32string_view word(text.data() + start, i - start);
    if (word == U"a" || word == U"an" || word == U"the") out.push_back(U' ');
    else out.append(word);
  }
  return out;
}

std::vector<std::string> get_tokens(const std::string& text) {
  if (text.empty()) return {};
  return python_split(normalize_answer(text));
}

}  // namespace

std::string normalize_answer(const std::string& text) {
  std::u32string lowered = python_lower(utf8_to_u32(text));
  std::u32string no_punct;
  no_punct.reserve(lowered.size());
  for (char32_t c : lowered)
    if (!is_ascii_punctuation(c)) no_punct.push_back(c);
  return u32_to_utf8(join_words(python_split(remove_articles(no_punct))));
}

int compute_exact(const std::string& gold, const std::string& prediction) {
  return normalize_answer(gold) == normalize_answer(prediction) ? 1 : 0;
}

double compute_f1(const std::string& gold, const std::string& prediction) {
  const auto gold_toks = get_tokens(gold);
  const auto pred_toks = get_tokens(prediction);
  // A no-answer on either side scores 1 only when both are no-answers.
  if (gold_toks.empty() || pred_toks.empty()) return gold_toks == pred_toks ? 1 : 0;
  std::unordered_map<std::string, int> gold_counts;
  for (const auto& t : gold_toks) ++gold_counts[t];
  int num_same = 0;
  for (const auto& t : pred_toks) {
    auto it = gold_counts.find(t);
    if (it != gold_counts.end() && it->second > 0) {
      --it->second;
      ++num_same;
    }
  }
  if (num_same == 0) return 0;
  double precision = 1.0 * num_same / static_cast<double>(pred_toks.size());
  double recall = 1.0 * num_same / static_cast<double>(gold_toks.size());
  return (2 * precision * recall) / (precision + recall);
}

GoldDataset parse_gold_dataset(const std::string& json_text, const std::string& source) {
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    throw Error("'" + source + "' is not valid JSON: " + e.what());
  }
  auto require_array = [&](const nlohmann::json& parent, const char* key, const std::string& where) -> const nlohmann::json& {
    if (!parent.is_object() || !parent.contains(key) || !parent[key].is_array())
      throw Error("'" + source + "': " + where + " has no '" + key + "' list; is this a SQuAD 2.0 file?");
    return parent[key];
  };
  GoldDataset gold;
  std::unordered_map<std::string, size_t> position;
  const auto& data = require_array(root, "data", "the top level");
  for (size_t a = 0; a < data.size(); ++a) {
    const auto& paragraphs = require_array(data[a], "paragraphs", "article " + std::to_string(a));
    for (size_t p = 0; p < paragraphs.size(); ++p) {
      const auto& qas = require_array(paragraphs[p], "qas", "article " + std::to_string(a) + " paragraph " + std::to_string(p));
      for (const auto& qa : qas) {
        if (!qa.is_object() || !qa.contains("id") || !qa["id"].is_string())
          throw Error("'" + source + "': a question in article " + std::to_string(a) + " paragraph " +
                      std::to_string(p) + " has no string 'id'");
        GoldQuestion question;
        question.id = qa["id"].get<std::string>();
        static const nlohmann::json kNoAnswers = nlohmann::json::array();
        const auto& answers = qa.contains("answers") ? require_array(qa, "answers", "question '" + question.id + "'")
                                                     : kNoAnswers;
        for (const auto& answer : answers) {
          if (!answer.is_object() || !answer.contains("text") || !answer["text"].is_string())
            throw Error("'" + source + "': an answer of question '" + question.id + "' has no string 'text'");
          question.answers.push_back(answer["text"].get<std::string>());
        }
        question.has_answer = !answers.empty();
        // The official script scores "answers": [] as a no-answer question; it
        // cannot score a question without "answers", nor one marked answerable
        // (is_impossible false) that has none.
        const auto impossible = qa.find("is_impossible");
        const bool marked_answerable = impossible != qa.end() && impossible->is_boolean() && !impossible->get<bool>();
        question.labeled = qa.contains("answers") && (question.has_answer || !marked_answerable);
        auto [it, inserted] = position.emplace(question.id, gold.questions.size());
        if (inserted) gold.questions.push_back(std::move(question));
        else gold.questions[it->second] = std::move(question);
      }
    }
  }
  return gold;
}

GoldDataset load_gold_dataset(const fs::path& path) { return parse_gold_dataset(read_file(path), path.string()); }

namespace {

struct RawScore {
  const GoldQuestion* question;
  const std::string* prediction;
  double na_prob;
  double exact;
  double f1;
};

std::string missing_message(size_t count, size_t total, const std::string& first, const std::string& what) {
  return std::to_string(count) + " of " + std::to_string(total) + " questions have no " + what + " (first: '" + first + "')";
}

std::vector<RawScore> raw_scores(const GoldDataset& gold, const PredictionMap& predictions, const EvalOptions& options,
                                 size_t& missing) {
  static const std::string kEmpty;
  std::vector<RawScore> scores;
  scores.reserve(gold.questions.size());
  std::vector<std::string> no_prediction, no_na_prob;
  for (const auto& q : gold.questions) {
    const std::string* prediction = predictions.find(q.id);
    const double* na_prob = options.na_probs ? options.na_probs->find(q.id) : nullptr;
    if (!prediction) no_prediction.push_back(q.id);
    else if (options.na_probs && !na_prob) no_na_prob.push_back(q.id);
    std::vector<std::string> golds;
    for (const auto& a : q.answers)
      if (!normalize_answer(a).empty()) golds.push_back(a);
    if (golds.empty()) golds.push_back("");  // unanswerable: only "" is right
    double exact = 0, f1 = 0;
    for (const auto& g : golds) {
      exact = std::max(exact, static_cast<double>(compute_exact(g, prediction ? *prediction : kEmpty)));
      f1 = std::max(f1, compute_f1(g, prediction ? *prediction : kEmpty));
    }
    // A question scored without a prediction (allow_missing) has na-prob 0 unless given.
    scores.push_back({&q, prediction ? prediction : &kEmpty, na_prob ? *na_prob : 0.0, exact, f1});
  }
  if (!no_prediction.empty() && !options.allow_missing)
    throw Error(missing_message(no_prediction.size(), gold.questions.size(), no_prediction.front(), "prediction") +
                "; pass --allow-missing to score them as empty answers");
  if (!no_na_prob.empty())
    throw Error(missing_message(no_na_prob.size(), gold.questions.size(), no_na_prob.front(), "no-answer probability"));
  missing = no_prediction.size();
  return scores;
}

// apply_no_ans_threshold: a question whose na-prob exceeds thresh is answered "".
QuestionScore thresholded(const RawScore& r, double thresh) {
  const bool predicted_no_answer = r.na_prob > thresh;
  const double no_answer_score = r.question->has_answer ? 0.0 : 1.0;
  return {predicted_no_answer ? no_answer_score : r.exact, predicted_no_answer ? no_answer_score : r.f1,
          r.question->has_answer};
}

// make_eval_dict over the questions `select` accepts, scores after the threshold.
template <typename Select>
std::optional<ScoreSummary> summarise(const std::vector<RawScore>& scores, double thresh, Select select) {
  ScoreSummary s;
  for (const auto& r : scores) {
    if (!select(r)) continue;
    const QuestionScore q = thresholded(r, thresh);
    s.exact += q.exact;
    s.f1 += q.f1;
    ++s.total;
  }
  if (s.total == 0) return std::nullopt;
  s.exact = 100.0 * s.exact / static_cast<double>(s.total);
  s.f1 = 100.0 * s.f1 / static_cast<double>(s.total);
  return s;
}

// find_best_thresh: sweep the na-prob threshold upwards from "everything is
// no-answer"; returns (best score in %, threshold).
std::pair<double, double> best_threshold(const std::vector<RawScore>& sorted_by_na_prob, size_t num_no_ans,
                                         double RawScore::*score, size_t num_scored) {
  double current = static_cast<double>(num_no_ans);
  double best = current;
  double best_thresh = 0.0;
  for (const auto& r : sorted_by_na_prob) {
    double diff = r.question->has_answer ? r.*score : (r.prediction->empty() ? 0.0 : -1.0);
    current += diff;
    if (current > best) {
      best = current;
      best_thresh = r.na_prob;
    }
  }
  return {100.0 * best / static_cast<double>(num_scored), best_thresh};
}

BestThresholds find_all_best_thresh(const std::vector<RawScore>& scores, const NaProbMap& na_probs) {
  // The script sorts the na-prob file's ids by value (stable, so ties keep
  // the file's order) and skips ids that were not scored.
  std::unordered_map<std::string, const RawScore*> by_id;
  for (const auto& r : scores) by_id.emplace(r.question->id, &r);
  std::vector<RawScore> ordered;
  ordered.reserve(scores.size());
  for (const auto& [id, prob] : na_probs.items)
    if (auto it = by_id.find(id); it != by_id.end()) {
      ordered.push_back(*it->second);
      by_id.erase(it);
    }
  // Questions scored without a prediction or na-prob (allow_missing) come last.
  for (const auto& r : scores)
    if (by_id.count(r.question->id)) ordered.push_back(r);
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const RawScore& a, const RawScore& b) { return a.na_prob < b.na_prob; });
  size_t num_no_ans = 0;
  for (const auto& r : scores) num_no_ans += r.question->has_answer ? 0 : 1;
  BestThresholds best;
  std::tie(best.best_exact, best.best_exact_thresh) = best_threshold(ordered, num_no_ans, &RawScore::exact, scores.size());
  std::tie(best.best_f1, best.best_f1_thresh) = best_threshold(ordered, num_no_ans, &RawScore::f1, scores.size());
  return best;
}

}  // namespace

namespace {

// The labeled questions; Error counting the unlabeled ones unless they may be skipped.
GoldDataset labeled_questions(const GoldDataset& gold, bool skip_unlabeled, size_t& skipped) {
  GoldDataset labeled;
  std::string first;
  for (const auto& q : gold.questions) {
    if (q.labeled) labeled.questions.push_back(q);
    else if (skipped++ == 0) first = q.id;
  }
  if (skipped > 0 && !skip_unlabeled)
    throw Error(std::to_string(skipped) + " of " + std::to_string(gold.questions.size()) +
                " questions are unlabeled (no answers and not marked is_impossible; first: '" + first +
                "'): scoring needs gold answers. Score against a labeled file, or pass --skip-unlabeled "
                "(run_squad: --skip_unlabeled) to score the " + std::to_string(labeled.questions.size()) +
                " labeled ones");
  if (labeled.questions.empty() && skipped > 0)
    throw Error("all " + std::to_string(skipped) + " questions are unlabeled: there is nothing to score");
  return labeled;
}

}  // namespace

SquadEvaluation evaluate_squad(const GoldDataset& all, const PredictionMap& predictions, const EvalOptions& options) {
  if (all.questions.empty()) throw Error("the dataset has no questions to evaluate");
  SquadEvaluation eval;
  const GoldDataset gold = labeled_questions(all, options.skip_unlabeled, eval.skipped_unlabeled);
  const auto scores = raw_scores(gold, predictions, options, eval.missing);
  const double thresh = options.na_prob_thresh;
  eval.overall = *summarise(scores, thresh, [](const RawScore&) { return true; });
  eval.has_ans = summarise(scores, thresh, [](const RawScore& r) { return r.question->has_answer; });
  eval.no_ans = summarise(scores, thresh, [](const RawScore& r) { return !r.question->has_answer; });
  if (options.na_probs) eval.best = find_all_best_thresh(scores, *options.na_probs);
  eval.questions.reserve(scores.size());
  for (const auto& r : scores) eval.questions.push_back(thresholded(r, thresh));
  return eval;
}

nlohmann::ordered_json SquadEvaluation::to_json() const {
  nlohmann::ordered_json out;
  auto add = [&](const std::string& prefix, const ScoreSummary& s) {
    out[prefix + "exact"] = s.exact;
    out[prefix + "f1"] = s.f1;
    out[prefix + "total"] = s.total;
  };
  add("", overall);
  if (has_ans) add("HasAns_", *has_ans);
  if (no_ans) add("NoAns_", *no_ans);
  if (best) {
    out["best_exact"] = best->best_exact;
    out["best_exact_thresh"] = best->best_exact_thresh;
    out["best_f1"] = best->best_f1;
    out["best_f1_thresh"] = best->best_f1_thresh;
  }
  return out;
}

namespace {

std::string python_json_value(const nlohmann::ordered_json& value) {
  if (value.is_number_float()) {
    double v = value.get<double>();
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v < 0 ? "-Infinity" : "Infinity";
    return python_float_repr(v);
  }
  return value.dump(-1, ' ', true);
}

}  // namespace

std::string format_python_json(const nlohmann::ordered_json& flat_object, int indent) {
  if (flat_object.empty()) return "{}";
  const std::string pad = indent >= 0 ? std::string(static_cast<size_t>(indent), ' ') : "";
  const std::string separator = indent >= 0 ? ",\n" + pad : ", ";
  std::string out = indent >= 0 ? "{\n" + pad : "{";
  bool first = true;
  for (const auto& [key, value] : flat_object.items()) {
    if (!first) out += separator;
    first = false;
    out += nlohmann::ordered_json(key).dump(-1, ' ', true) + ": " + python_json_value(value);
  }
  return out + (indent >= 0 ? "\n}" : "}");
}

}  // namespace layerprobe
