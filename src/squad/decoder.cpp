#include "layerprobe/squad/decoder.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_set>

#include "layerprobe/text/basic_tokenizer.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"
#include "layerprobe/text/tokenizer.hpp"

namespace layerprobe {

namespace {

// Text without its ASCII spaces, and for each kept character its index in `text`.
struct SpacelessText {
  std::u32string chars;
  std::vector<long> to_original;
};

SpacelessText strip_spaces(const std::u32string& text) {
  SpacelessText out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == U' ') continue;
    out.chars.push_back(text[i]);
    out.to_original.push_back(static_cast<long>(i));
  }
  return out;
}

}  // namespace

std::string get_final_text(const std::string& pred_text, const std::string& orig_text, bool do_lower_case) {
  const std::u32string orig = utf8_to_u32(orig_text);
  const std::u32string pred = utf8_to_u32(pred_text);
  const std::u32string tok_text = join_words(bert_basic_tokenize(orig, do_lower_case));

  size_t found = tok_text.find(pred);
  if (found == std::u32string::npos) return orig_text;
  const long start_position = static_cast<long>(found);
  const long end_position = start_position + static_cast<long>(pred.size()) - 1;

  const SpacelessText orig_ns = strip_spaces(orig);
  const SpacelessText tok_ns = strip_spaces(tok_text);
  // Equal lengths without spaces are taken to mean a one-to-one character alignment.
  if (orig_ns.chars.size() != tok_ns.chars.size()) return orig_text;

  std::vector<long> tok_s_to_ns(tok_text.size(), -1);
  for (size_t i = 0; i < tok_ns.to_original.size(); ++i) tok_s_to_ns[static_cast<size_t>(tok_ns.to_original[i])] = static_cast<long>(i);

  auto project = [&](long tok_position) -> long {
    if (tok_position < 0 || tok_position >= static_cast<long>(tok_s_to_ns.size())) return -1;
    long ns = tok_s_to_ns[static_cast<size_t>(tok_position)];
    if (ns < 0 || ns >= static_cast<long>(orig_ns.to_original.size())) return -1;
    return orig_ns.to_original[static_cast<size_t>(ns)];
  };
  const long orig_start = project(start_position);
  if (orig_start < 0) return orig_text;
  const long orig_end = project(end_position);
  if (orig_end < 0) return orig_text;
  return u32_to_utf8(std::u32string_view(orig).substr(static_cast<size_t>(orig_start),
                                                      static_cast<size_t>(orig_end - orig_start + 1)));
}

namespace {

struct Candidate {
  size_t feature;  // index into the example's features
  int start_index;
  int end_index;
  double start_logit;
  double end_logit;
  bool null = false;  // the window's no-answer span (at its null_index)
  double score() const { return start_logit + end_logit; }
};

// HF's _get_best_indexes: the n highest logits, ties in index order.
std::vector<int> best_indexes(const std::vector<float>& logits, int n) {
  auto key = [&](int i) {
    float v = logits[static_cast<size_t>(i)];
    return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v;
  };
  std::vector<int> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  auto k = std::min(order.size(), static_cast<size_t>(std::max(n, 0)));
  std::partial_sort(order.begin(), order.begin() + static_cast<long>(k), order.end(), [&](int a, int b) {
    float ka = key(a), kb = key(b);
    return ka > kb || (ka == kb && a < b);
  });
  order.resize(k);
  return order;
}

void validate(const std::vector<SquadExample>& examples, const std::vector<SquadFeature>& features,
              const std::vector<FeatureLogits>& logits) {
  if (logits.size() != features.size())
    throw Error("decoder: " + std::to_string(logits.size()) + " logit rows for " + std::to_string(features.size()) +
                " features; every feature needs its start and end logits");
  for (size_t i = 0; i < features.size(); ++i) {
    const auto& f = features[i];
    const std::string where = "decoder: feature " + std::to_string(i) + " (unique_id " + std::to_string(f.unique_id) + ")";
    if (f.example_index < 0 || static_cast<size_t>(f.example_index) >= examples.size())
      throw Error(where + " has example_index " + std::to_string(f.example_index) + " outside the " +
                  std::to_string(examples.size()) + " examples");
    const size_t n = f.tokens.size();
    if (n == 0 || n != f.length() || f.token_to_orig_map.size() != n || f.token_is_max_context.size() != n)
      throw Error(where + " has inconsistent sizes (tokens " + std::to_string(n) + ", input_ids " +
                  std::to_string(f.length()) + ", token_to_orig_map " + std::to_string(f.token_to_orig_map.size()) +
                  ", token_is_max_context " + std::to_string(f.token_is_max_context.size()) + ")");
    if (logits[i].start.size() < n || logits[i].end.size() < n)
      throw Error(where + " has " + std::to_string(logits[i].start.size()) + " start and " +
                  std::to_string(logits[i].end.size()) + " end logits for " + std::to_string(n) + " tokens");
    if (f.null_index < 0 || static_cast<size_t>(f.null_index) >= n)
      throw Error(where + " has null_index " + std::to_string(f.null_index) + " outside its " + std::to_string(n) +
                  " tokens");
    const size_t words = examples[static_cast<size_t>(f.example_index)].doc_tokens().size();
    for (int word : f.token_to_orig_map)
      if (word >= static_cast<int>(words))
        throw Error(where + " maps a token to context word " + std::to_string(word) + " but question '" +
                    examples[static_cast<size_t>(f.example_index)].qas_id + "' has " + std::to_string(words) +
                    " words");
  }
}

class ExampleDecoder {
 public:
  ExampleDecoder(const SquadExample& example, std::vector<const SquadFeature*> features,
                 std::vector<const FeatureLogits*> logits, const Tokenizer& tokenizer, const DecodeOptions& options)
      : example_(example), features_(std::move(features)), logits_(std::move(logits)), tokenizer_(tokenizer),
        options_(options) {}

  QuestionPrediction decode() {
    std::vector<Candidate> candidates = collect_candidates();
    std::stable_sort(candidates.begin(), candidates.end(),
                     [](const Candidate& a, const Candidate& b) { return a.score() > b.score(); });
    QuestionPrediction prediction;
    prediction.qas_id = example_.qas_id;
    prediction.nbest = build_nbest(candidates);
    fill_probabilities(prediction.nbest);
    auto best_it = std::find_if(prediction.nbest.begin(), prediction.nbest.end(),
                                [](const NbestEntry& e) { return !e.text.empty(); });
    if (best_it == prediction.nbest.end())
      throw Error("decoder: question '" + example_.qas_id + "' has only empty answer candidates (empty context words?)");
    const NbestEntry& best = *best_it;
    prediction.null_odds = score_null_ - best.start_logit - best.end_logit;
    prediction.text = prediction.null_odds > options_.null_score_diff_threshold ? "" : best.text;
    return prediction;
  }

 private:
  // Every valid span of every window, then the null span of the window whose
  // null score (at its null_index: [CLS], or the last token) is smallest.
  std::vector<Candidate> collect_candidates() {
    std::vector<Candidate> candidates;
    for (size_t fi = 0; fi < features_.size(); ++fi) {
      const SquadFeature& f = *features_[fi];
      const FeatureLogits& r = *logits_[fi];
      const auto null = static_cast<size_t>(f.null_index);
      double feature_null = static_cast<double>(r.start[null]) + static_cast<double>(r.end[null]);
      if (feature_null < score_null_) {
        score_null_ = feature_null;
        null_feature_ = fi;
        null_start_logit_ = r.start[null];
        null_end_logit_ = r.end[null];
      }
      const auto starts = best_indexes(r.start, options_.n_best_size);
      const auto ends = best_indexes(r.end, options_.n_best_size);
      for (int s : starts)
        for (int e : ends)
          if (is_valid_span(f, s, e)) candidates.push_back({fi, s, e, r.start[static_cast<size_t>(s)], r.end[static_cast<size_t>(e)]});
    }
    const int null = features_.empty() ? 0 : features_[null_feature_]->null_index;  // no windows: HF's 0
    candidates.push_back({null_feature_, null, null, null_start_logit_, null_end_logit_, true});
    return candidates;
  }

  bool is_valid_span(const SquadFeature& f, int s, int e) const {
    const int n = static_cast<int>(f.tokens.size());
    if (s >= n || e >= n) return false;  // padding position
    if (f.token_to_orig_map[static_cast<size_t>(s)] < 0 || f.token_to_orig_map[static_cast<size_t>(e)] < 0) return false;
    if (!f.token_is_max_context[static_cast<size_t>(s)]) return false;
    return e >= s && e - s + 1 <= options_.max_answer_length;
  }

  std::vector<NbestEntry> build_nbest(const std::vector<Candidate>& candidates) const {
    std::vector<NbestEntry> nbest;
    std::unordered_set<std::string> seen;
    for (const Candidate& c : candidates) {
      if (nbest.size() >= static_cast<size_t>(options_.n_best_size)) break;
      std::string text = c.null ? "" : span_text(c);
      if (!seen.insert(text).second && !c.null) continue;
      nbest.push_back({std::move(text), 0.0, c.start_logit, c.end_logit});
    }
    if (!seen.count("")) nbest.push_back({"", 0.0, null_start_logit_, null_end_logit_});
    // HF's guard for the rare case of the null prediction alone.
    if (nbest.size() == 1) nbest.insert(nbest.begin(), NbestEntry{"empty", 0.0, 0.0, 0.0});
    return nbest;
  }

  // Detokenised pieces, aligned back onto the original context words.
  std::string span_text(const Candidate& c) const {
    const SquadFeature& f = *features_[c.feature];
    std::vector<std::string> pieces(f.tokens.begin() + c.start_index, f.tokens.begin() + c.end_index + 1);
    const std::string tok_text = join_words(python_split(tokenizer_.convert_tokens_to_string(pieces)));
    const auto first_word = static_cast<size_t>(f.token_to_orig_map[static_cast<size_t>(c.start_index)]);
    const auto last_word = static_cast<size_t>(f.token_to_orig_map[static_cast<size_t>(c.end_index)]);
    std::vector<std::string> words;
    for (size_t w = first_word; w <= last_word; ++w) words.push_back(example_.doc_tokens()[w]);
    return get_final_text(tok_text, join_words(words), options_.do_lower_case);
  }

  static void fill_probabilities(std::vector<NbestEntry>& nbest) {
    double max_score = nbest.front().start_logit + nbest.front().end_logit;
    for (const auto& e : nbest) max_score = std::max(max_score, e.start_logit + e.end_logit);
    double total = 0.0;
    for (auto& e : nbest) {
      e.probability = std::exp(e.start_logit + e.end_logit - max_score);
      total += e.probability;
    }
    for (auto& e : nbest) e.probability /= total;
  }

  const SquadExample& example_;
  std::vector<const SquadFeature*> features_;
  std::vector<const FeatureLogits*> logits_;
  const Tokenizer& tokenizer_;
  const DecodeOptions& options_;
  double score_null_ = 1000000.0;  // HF's "large and positive" start value
  size_t null_feature_ = 0;
  double null_start_logit_ = 0.0;
  double null_end_logit_ = 0.0;
};

}  // namespace

std::vector<QuestionPrediction> decode_predictions(const std::vector<SquadExample>& examples,
                                                   const std::vector<SquadFeature>& features,
                                                   const std::vector<FeatureLogits>& logits, const Tokenizer& tokenizer,
                                                   const DecodeOptions& options) {
  if (options.n_best_size < 1 || options.max_answer_length < 1)
    throw Error("decoder: n_best_size and max_answer_length must be positive", 2);
  validate(examples, features, logits);
  std::vector<std::vector<size_t>> by_example(examples.size());
  for (size_t i = 0; i < features.size(); ++i) by_example[static_cast<size_t>(features[i].example_index)].push_back(i);

  std::vector<QuestionPrediction> predictions;
  predictions.reserve(examples.size());
  for (size_t ex = 0; ex < examples.size(); ++ex) {
    std::vector<const SquadFeature*> fs;
    std::vector<const FeatureLogits*> ls;
    for (size_t i : by_example[ex]) {
      fs.push_back(&features[i]);
      ls.push_back(&logits[i]);
    }
    predictions.push_back(ExampleDecoder(examples[ex], std::move(fs), std::move(ls), tokenizer, options).decode());
  }
  return predictions;
}

}  // namespace layerprobe
