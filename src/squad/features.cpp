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
#include "layerprobe/text/albert_tokenizer.hpp"

namespace layerprobe {

namespace {

// [CLS] query [SEP] ... [SEP]: tokens before the context, and in all.
constexpr int kTokensBeforeContext = 2;
constexpr int kAddedTokens = 3;
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
  explicit WordTokenizer(const AlbertTokenizer& tokenizer) : tokenizer_(tokenizer) {}

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

  const AlbertTokenizer& tokenizer_;
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
  ExampleConverter(const AlbertTokenizer& tokenizer, const FeatureOptions& options)
      : tokenizer_(tokenizer), options_(options), cls_(tokenizer.cls_id()), sep_(tokenizer.sep_id()),
        pad_(tokenizer.pad_id()) {
    auto pieces = tokenizer.convert_ids_to_tokens({cls_, sep_});
    cls_piece_ = pieces[0];
    sep_piece_ = pieces[1];
  }

  std::vector<SquadFeature> convert(const SquadExample& example, int example_index, const ContextTokens& context) const {
    std::vector<SquadFeature> features;
    if (context.tokens.empty()) return features;  // HF's window loop never runs
    auto query = tokenizer_.encode(example.question_text);
    if (static_cast<int>(query.size()) > options_.max_query_length) query.resize(options_.max_query_length);
    if (query.empty())
      throw Error("question '" + example.qas_id + "' has no tokens (text: '" + example.question_text +
                  "'); HF cannot featurise it either: fix or remove the question");
    int room = options_.max_seq_length - static_cast<int>(query.size()) - kAddedTokens;
    if (room <= 0)
      throw Error("question '" + example.qas_id + "': " + std::to_string(query.size()) +
                  " question tokens leave no room for context in max_seq_length " +
                  std::to_string(options_.max_seq_length) + "; raise it or lower max_query_length");
    Target target = answer_target(example, context);
    auto query_pieces = tokenizer_.convert_ids_to_tokens(query);
    auto windows = context_windows(static_cast<int>(context.tokens.size()), room, options_.doc_stride);
    for (size_t w = 0; w < windows.size(); ++w) {
      features.push_back(window_feature(example, example_index, context, query, query_pieces, windows, w));
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

  SquadFeature window_feature(const SquadExample& example, int example_index, const ContextTokens& context,
                              const std::vector<int64_t>& query, const std::vector<std::string>& query_pieces,
                              const std::vector<Window>& windows, size_t w) const {
    const Window& window = windows[w];
    SquadFeature f;
    f.example_index = example_index;
    f.paragraph_len = window.length;
    f.is_impossible = example.is_impossible;
    int offset = static_cast<int>(query.size()) + kTokensBeforeContext;
    std::vector<std::string> pieces;
    f.input_ids.push_back(cls_);
    pieces.push_back(cls_piece_);
    f.input_ids.insert(f.input_ids.end(), query.begin(), query.end());
    pieces.insert(pieces.end(), query_pieces.begin(), query_pieces.end());
    f.input_ids.push_back(sep_);
    pieces.push_back(sep_piece_);
    f.token_type_ids.assign(static_cast<size_t>(offset), 0);
    f.token_to_orig_map.assign(static_cast<size_t>(offset), -1);
    f.token_is_max_context.assign(static_cast<size_t>(offset), 0);
    for (int i = 0; i < window.length; ++i) {
      size_t t = static_cast<size_t>(window.start + i);
      f.input_ids.push_back(context.ids[t]);
      pieces.push_back(context.id_pieces[t]);
      f.token_type_ids.push_back(1);
      f.token_to_orig_map.push_back(context.tok_to_orig[t]);
      f.token_is_max_context.push_back(is_max_context(windows, w, window.start + i) ? 1 : 0);
    }
    f.input_ids.push_back(sep_);
    pieces.push_back(sep_piece_);
    f.token_type_ids.push_back(1);
    f.token_to_orig_map.push_back(-1);
    f.token_is_max_context.push_back(0);
    // HF reads the tokens of the ids before the first <pad> id, which a
    // literal "<pad>" in the text also is.
    auto first_pad = std::find(f.input_ids.begin(), f.input_ids.end(), pad_) - f.input_ids.begin();
    pieces.resize(static_cast<size_t>(first_pad));
    f.tokens = std::move(pieces);
    set_p_mask(f);
    return f;
  }

  // 1 outside the context and on every [SEP] id; 0 on the [CLS] (index 0).
  void set_p_mask(SquadFeature& f) const {
    f.p_mask.resize(f.input_ids.size());
    for (size_t i = 0; i < f.input_ids.size(); ++i)
      f.p_mask[i] = (f.token_type_ids[i] == 0 || f.input_ids[i] == sep_) ? 1 : 0;
    f.p_mask[0] = 0;
  }

  void set_positions(SquadFeature& f, const SquadExample& example, const Target& target, const Window& window,
                     int query_length) const {
    if (!options_.is_training || example.is_impossible) return;
    int doc_end = window.start + window.length - 1;
    if (target.start >= window.start && target.end <= doc_end) {
      int offset = query_length + kTokensBeforeContext - window.start;
      f.start_position = target.start + offset;
      f.end_position = target.end + offset;
    } else {  // the answer is not in this window: target [CLS]
      f.start_position = 0;
      f.end_position = 0;
      f.is_impossible = true;
    }
  }

  const AlbertTokenizer& tokenizer_;
  const FeatureOptions& options_;
  int64_t cls_, sep_, pad_;
  std::string cls_piece_, sep_piece_;
};

void validate(const FeatureOptions& options) {
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw Error("invalid feature options: " + what, 2);
  };
  require(options.max_seq_length > kAddedTokens, "max_seq_length must exceed 3 (it holds [CLS] and two [SEP])");
  require(options.doc_stride > 0, "doc_stride must be positive");
  require(options.max_query_length > 0, "max_query_length must be positive");
}

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
                                                       const AlbertTokenizer& tokenizer,
                                                       const FeatureOptions& options) {
  validate(options);
  ExampleConverter converter(tokenizer, options);
  auto groups = context_groups(examples);
  std::vector<std::vector<SquadFeature>> per_example(examples.size());
  std::atomic<size_t> next_group{0};
  std::mutex error_mutex;
  size_t error_group = groups.size();
  std::exception_ptr error;

  auto work = [&] {
    WordTokenizer words(tokenizer);
    for (size_t g; (g = next_group++) < groups.size();) {
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

  std::vector<SquadFeature> features;
  for (auto& list : per_example)
    for (auto& feature : list) {
      feature.unique_id = kFirstUniqueId + static_cast<int>(features.size());
      features.push_back(std::move(feature));
    }
  return features;
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
