#include "layerprobe/squad/features.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"
#include "layerprobe/text/tokenizer.hpp"

namespace layerprobe {

namespace {

constexpr int kFirstUniqueId = 1000000000;

// The sub-tokenised context, shared by all questions on one paragraph.
struct ContextTokens {
  std::vector<std::string> tokens;  // HF's all_doc_tokens
  std::vector<int64_t> ids;
  std::vector<std::string> id_pieces;  // ids back to pieces (unknown pieces read "<unk>")
  std::vector<int> tok_to_orig;
  std::vector<int> orig_to_tok;
};

// Context words and their tokens, memoised per worker thread: a word always
// tokenises the same way, and most words recur across paragraphs.
class WordTokenizer {
 public:
  explicit WordTokenizer(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}

  ContextTokens tokenize_context(const std::vector<std::string>& words) {
    ContextTokens context;
    for (size_t i = 0; i < words.size(); ++i) {
      context.orig_to_tok.push_back(static_cast<int>(context.tokens.size()));
      const Word& word = lookup(words[i]);
      context.tok_to_orig.insert(context.tok_to_orig.end(), word.pieces.size(), static_cast<int>(i));
      context.tokens.insert(context.tokens.end(), word.pieces.begin(), word.pieces.end());
      context.ids.insert(context.ids.end(), word.ids.begin(), word.ids.end());
      context.id_pieces.insert(context.id_pieces.end(), word.id_pieces.begin(), word.id_pieces.end());
    }
    return context;
  }

 private:
  struct Word {
    std::vector<std::string> pieces;
    std::vector<int64_t> ids;
    std::vector<std::string> id_pieces;
  };

  const Word& lookup(const std::string& text) {
    auto it = cache_.find(text);
    if (it != cache_.end()) return it->second;
    Word word;
    word.pieces = tokenizer_.tokenize(text);
    word.ids = tokenizer_.convert_tokens_to_ids(word.pieces);
    word.id_pieces = tokenizer_.convert_ids_to_tokens(word.ids);
    return cache_.emplace(text, std::move(word)).first->second;
  }

  const Tokenizer& tokenizer_;
  std::unordered_map<std::string, Word> cache_;
};

struct Window {
  int start = 0;
  int length = 0;
};

// HF's encode_plus(..., truncation_strategy="only_second", stride=...) loop:
// window k starts at k * doc_stride and holds what fits; it stops once a
// window reaches the end of the context.
std::vector<Window> context_windows(int n_tokens, int room, int doc_stride) {
  std::vector<Window> windows;
  for (long start = 0; start < n_tokens; start += doc_stride) {
    int begin = static_cast<int>(start);
    windows.push_back({begin, std::min(n_tokens - begin, room)});
    if (n_tokens - begin <= room) break;
  }
  return windows;
}

// _new_check_is_max_context: the window where `position` has the most
// context on its shorter side (ties: the earlier window, then the longer).
// Window starts ascend and their ends never decrease, so the windows holding
// `position` are one run, found by binary search: linear in the context
// length overall instead of quadratic.
bool is_max_context(const std::vector<Window>& windows, size_t window_index, int position) {
  auto last_token = [](const Window& w) { return w.start + w.length - 1; };
  auto first = std::lower_bound(windows.begin(), windows.end(), position,
                                [&](const Window& w, int p) { return last_token(w) < p; });
  double best_score = -1.0;
  size_t best_index = windows.size();
  for (auto it = first; it != windows.end() && it->start <= position; ++it) {
    double score = std::min(position - it->start, last_token(*it) - position) + 0.01 * it->length;
    if (best_index == windows.size() || score > best_score) {
      best_score = score;
      best_index = static_cast<size_t>(it - windows.begin());
    }
  }
  return best_index == window_index;
}

// _improve_answer_span: the first (start, end) inside the given span whose
// tokens, joined by spaces, equal the tokenised answer text.
std::pair<int, int> improve_answer_span(const std::vector<std::string>& doc_tokens, int start, int end,
                                        const std::string& answer_tokens) {
  for (int new_start = start; new_start <= end; ++new_start) {
    // The join of [new_start, new_end] is a prefix of the join up to `end`.
    std::string joined;
    std::vector<size_t> prefix_length;
    for (int i = new_start; i <= end; ++i) {
      if (i > new_start) joined += ' ';
      joined += doc_tokens[static_cast<size_t>(i)];
      prefix_length.push_back(joined.size());
    }
    for (int new_end = end; new_end >= new_start; --new_end) {
      size_t length = prefix_length[static_cast<size_t>(new_end - new_start)];
      if (length == answer_tokens.size() && joined.compare(0, length, answer_tokens) == 0) return {new_start, new_end};
    }
  }
  return {start, end};
}

int python_at(const std::vector<int>& values, int index) {
  return values.at(static_cast<size_t>(index < 0 ? index + static_cast<int>(values.size()) : index));
}

class ExampleConverter {
 public:
  ExampleConverter(const Tokenizer& tokenizer, const FeatureOptions& options)
      : tokenizer_(tokenizer), options_(options), layout_(tokenizer.pair_layout()), cls_(tokenizer.cls_id()),
        sep_(tokenizer.sep_id()), pad_(tokenizer.pad_id()),
        before_query_tokens_(tokenizer.convert_ids_to_tokens(layout_.before_query)),
        between_tokens_(tokenizer.convert_ids_to_tokens(layout_.between)),
        after_context_tokens_(tokenizer.convert_ids_to_tokens(layout_.after_context)) {}

  std::vector<SquadFeature> convert(const SquadExample& example, int example_index, const ContextTokens& context) const {
    std::vector<SquadFeature> features;
    if (context.tokens.empty()) return features;  // HF's window loop never runs
    auto query = tokenizer_.encode(example.question_text);
    const WindowOptions& window = options_.window;
    if (static_cast<int>(query.size()) > window.max_query_length) query.resize(window.max_query_length);
    if (query.empty())
      throw Error("question '" + example.qas_id + "' has no tokens (text: '" + example.question_text +
                  "'); HF cannot featurise it either: fix or remove the question");
    int room = window.max_seq_length - static_cast<int>(query.size()) - layout_.added_tokens();
    if (room <= 0)
      throw Error("question '" + example.qas_id + "': " + std::to_string(query.size()) +
                  " question tokens leave no room for context in max_seq_length " +
                  std::to_string(window.max_seq_length) + "; raise it or lower max_query_length");
    Target target = answer_target(example, context);
    auto query_tokens = tokenizer_.convert_ids_to_tokens(query);
    auto windows = context_windows(static_cast<int>(context.tokens.size()), room, window.doc_stride);
    for (size_t w = 0; w < windows.size(); ++w) {
      features.push_back(window_feature(example, example_index, context, query, query_tokens, windows, w));
      set_positions(features.back(), example, target, windows[w], static_cast<int>(query.size()));
    }
    return features;
  }

 private:
  struct Target {
    int start = 0;
    int end = 0;
  };

  Target answer_target(const SquadExample& example, const ContextTokens& context) const {
    if (!options_.is_training || example.is_impossible) return {};
    Target target;
    target.start = python_at(context.orig_to_tok, example.start_position);
    if (example.end_position < static_cast<int>(example.doc_tokens().size()) - 1)
      target.end = python_at(context.orig_to_tok, example.end_position + 1) - 1;
    else
      target.end = static_cast<int>(context.tokens.size()) - 1;
    auto answer = join_words(tokenizer_.tokenize(example.answer_text));
    std::tie(target.start, target.end) = improve_answer_span(context.tokens, target.start, target.end, answer);
    return target;
  }

  // Ids with their tokens, outside the context (token_to_orig_map -1, never max context).
  static void append_outside(SquadFeature& f, std::vector<std::string>& tokens, const std::vector<int64_t>& ids,
                             const std::vector<std::string>& id_tokens, int64_t token_type) {
    f.input_ids.insert(f.input_ids.end(), ids.begin(), ids.end());
    tokens.insert(tokens.end(), id_tokens.begin(), id_tokens.end());
    f.token_type_ids.insert(f.token_type_ids.end(), ids.size(), token_type);
    f.token_to_orig_map.insert(f.token_to_orig_map.end(), ids.size(), -1);
    f.token_is_max_context.insert(f.token_is_max_context.end(), ids.size(), 0);
  }

  SquadFeature window_feature(const SquadExample& example, int example_index, const ContextTokens& context,
                              const std::vector<int64_t>& query, const std::vector<std::string>& query_tokens,
                              const std::vector<Window>& windows, size_t w) const {
    const Window& window = windows[w];
    SquadFeature f;
    f.example_index = example_index;
    f.paragraph_len = window.length;
    f.is_impossible = example.is_impossible;
    std::vector<std::string> tokens;
    append_outside(f, tokens, layout_.before_query, before_query_tokens_, 0);
    append_outside(f, tokens, query, query_tokens, 0);
    append_outside(f, tokens, layout_.between, between_tokens_, layout_.between_token_type);
    for (int i = 0; i < window.length; ++i) {
      size_t t = static_cast<size_t>(window.start + i);
      f.input_ids.push_back(context.ids[t]);
      tokens.push_back(context.id_pieces[t]);
      f.token_type_ids.push_back(layout_.context_token_type);
      f.token_to_orig_map.push_back(context.tok_to_orig[t]);
      f.token_is_max_context.push_back(is_max_context(windows, w, window.start + i) ? 1 : 0);
    }
    append_outside(f, tokens, layout_.after_context, after_context_tokens_, layout_.context_token_type);
    shift_to_legacy_offsets(f);
    // HF reads the tokens of the ids before the first pad id, which a
    // literal pad token in the text also is.
    tokens.resize(static_cast<size_t>(std::find(f.input_ids.begin(), f.input_ids.end(), pad_) - f.input_ids.begin()));
    f.tokens = std::move(tokens);
    set_p_mask(f);
    return f;
  }

  // HF's p_mask: 1 where the token type is 0 and on every separator id; 0
  // on the first classifier id (index 0 in every layout that has one).
  void set_p_mask(SquadFeature& f) const {
    f.p_mask.resize(f.input_ids.size());
    for (size_t i = 0; i < f.input_ids.size(); ++i)
      f.p_mask[i] = (f.token_type_ids[i] == 0 || f.input_ids[i] == sep_) ? 1 : 0;
    auto cls = std::find(f.input_ids.begin(), f.input_ids.end(), cls_);
    if (cls != f.input_ids.end()) f.p_mask[static_cast<size_t>(cls - f.input_ids.begin())] = 0;
  }

  // Where the context starts for the token -> word map, max-context flags and labels.
  int context_offset() const {
    return options_.window.hf_legacy_offsets ? layout_.legacy_tokens_before_context() : layout_.tokens_before_context();
  }

  // With hf_legacy_offsets, the map and the max-context flags move from the
  // context tokens to where legacy squad.py puts them (the ids stay).
  void shift_to_legacy_offsets(SquadFeature& f) const {
    const int shift = context_offset() - layout_.tokens_before_context();
    if (shift == 0) return;
    const int n = static_cast<int>(f.token_to_orig_map.size());
    std::vector<int> map(f.token_to_orig_map.size(), -1);
    std::vector<uint8_t> max_context(f.token_is_max_context.size(), 0);
    for (int i = 0; i < n; ++i) {
      if (f.token_to_orig_map[static_cast<size_t>(i)] < 0) continue;
      const int to = i + shift;
      if (to < 0 || to >= n) continue;
      map[static_cast<size_t>(to)] = f.token_to_orig_map[static_cast<size_t>(i)];
      max_context[static_cast<size_t>(to)] = f.token_is_max_context[static_cast<size_t>(i)];
    }
    f.token_to_orig_map.swap(map);
    f.token_is_max_context.swap(max_context);
  }

  void set_positions(SquadFeature& f, const SquadExample& example, const Target& target, const Window& window,
                     int query_length) const {
    if (!options_.is_training || example.is_impossible) return;
    int doc_end = window.start + window.length - 1;
    if (target.start >= window.start && target.end <= doc_end) {
      int offset = query_length + context_offset() - window.start;
      f.start_position = target.start + offset;
      f.end_position = target.end + offset;
    } else {  // the answer is not in this window: target the classifier token
      f.start_position = 0;
      f.end_position = 0;
      f.is_impossible = true;
    }
  }

  const Tokenizer& tokenizer_;
  const FeatureOptions& options_;
  PairLayout layout_;
  int64_t cls_, sep_, pad_;
  std::vector<std::string> before_query_tokens_, between_tokens_, after_context_tokens_;
};

template <typename T>
void release(std::vector<T>& values) {
  std::vector<T>().swap(values);  // clear() and `= {}` keep the capacity
}

void drop_decoding_fields(SquadFeature& feature) {
  release(feature.tokens);
  release(feature.token_to_orig_map);
  release(feature.token_is_max_context);
  release(feature.p_mask);
  feature.input_ids.shrink_to_fit();
  feature.token_type_ids.shrink_to_fit();
}

// Runs of consecutive examples with the same context (one paragraph's
// questions), so each context is tokenised once.
std::vector<std::pair<size_t, size_t>> context_groups(const std::vector<SquadExample>& examples) {
  std::vector<std::pair<size_t, size_t>> groups;
  for (size_t i = 0; i < examples.size(); ++i) {
    if (groups.empty() || examples[groups.back().first].context_text() != examples[i].context_text())
      groups.emplace_back(i, i);
    groups.back().second = i + 1;
  }
  return groups;
}

}  // namespace

std::vector<SquadFeature> convert_examples_to_features(const std::vector<SquadExample>& examples,
                                                       const Tokenizer& tokenizer,
                                                       const FeatureOptions& options) {
  options.window.validate(tokenizer.pair_layout().added_tokens());
  ExampleConverter converter(tokenizer, options);
  auto groups = context_groups(examples);
  std::vector<std::vector<SquadFeature>> per_example(examples.size());
  std::atomic<size_t> next_group{0};
  std::mutex error_mutex;
  size_t error_group = groups.size();
  std::exception_ptr error;

  auto work = [&] {
    WordTokenizer words(tokenizer);
    // A stop request (Ctrl-C, SIGTERM) ends every worker at its next paragraph.
    for (size_t g; !stop_requested() && (g = next_group++) < groups.size();) {
      try {
        auto [begin, end] = groups[g];
        auto context = words.tokenize_context(examples[begin].doc_tokens());
        for (size_t e = begin; e < end; ++e) {
          per_example[e] = converter.convert(examples[e], static_cast<int>(e), context);
          if (!options.decoding_fields)
            for (auto& feature : per_example[e]) drop_decoding_fields(feature);
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (g < error_group) {  // report the earliest failure, whatever the thread timing
          error_group = g;
          error = std::current_exception();
        }
      }
    }
  };
  size_t threads = options.threads > 0 ? static_cast<size_t>(options.threads)
                                       : std::max(1u, std::thread::hardware_concurrency());
  threads = std::max<size_t>(1, std::min(threads, groups.size()));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& thread : pool) thread.join();
  if (error) std::rethrow_exception(error);
  throw_if_stop_requested("Nothing was written; rerun the same command.");

  std::vector<SquadFeature> features;
  for (auto& list : per_example)
    for (auto& feature : list) {
      feature.unique_id = kFirstUniqueId + static_cast<int>(features.size());
      features.push_back(std::move(feature));
    }
  return features;
}

void WindowOptions::validate(int layout_tokens) const {
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw Error("invalid window options: " + what, 2);
  };
  require(max_seq_length > layout_tokens, "max_seq_length must exceed " + std::to_string(layout_tokens) +
                                              " (the special tokens of a question/context window)");
  require(doc_stride > 0, "doc_stride must be positive");
  require(max_query_length > 0, "max_query_length must be positive");
}

nlohmann::json WindowOptions::to_json() const {
  nlohmann::json json = {
      {"max_seq_length", max_seq_length}, {"doc_stride", doc_stride}, {"max_query_length", max_query_length}};
  if (hf_legacy_offsets) json["hf_legacy_offsets"] = true;
  return json;
}

WindowOptions WindowOptions::from_json(const nlohmann::json& json) {
  WindowOptions window;
  window.max_seq_length = json.value("max_seq_length", window.max_seq_length);
  window.doc_stride = json.value("doc_stride", window.doc_stride);
  window.max_query_length = json.value("max_query_length", window.max_query_length);
  window.hf_legacy_offsets = json.value("hf_legacy_offsets", window.hf_legacy_offsets);
  return window;
}

namespace {
template <typename T>
void append_list(std::string& out, const std::vector<T>& values) {
  out += '[';
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(values[i]);
  }
  out += ']';
}
}  // namespace

std::string feature_to_json_line(const SquadFeature& feature, const std::string& qas_id) {
  std::string out = "{\"qas_id\": " + nlohmann::json(qas_id).dump(-1, ' ', true) + ", \"input_ids\": ";
  append_list(out, feature.input_ids);
  out += ", \"token_type_ids\": ";
  append_list(out, feature.token_type_ids);
  out += ", \"start_position\": " + std::to_string(feature.start_position);
  out += ", \"end_position\": " + std::to_string(feature.end_position);
  out += std::string(", \"is_impossible\": ") + (feature.is_impossible ? "true" : "false");
  out += ", \"token_to_orig_map\": {";
  bool first = true;
  for (size_t i = 0; i < feature.token_to_orig_map.size(); ++i) {
    if (feature.token_to_orig_map[i] < 0) continue;
    out += (first ? "\"" : ", \"") + std::to_string(i) + "\": " + std::to_string(feature.token_to_orig_map[i]);
    first = false;
  }
  return out + "}}";
}

}  // namespace layerprobe
