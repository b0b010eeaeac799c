// The components of a tokenizer.json (the tokenizers library's format), each
// built from its JSON object with the library's defaults: normalizers,
// pre-tokenizers, the model, post-processors and decoders. Text is UTF-8
// throughout, as in the Rust library. Anything the reader does not implement
// is an Error naming the component type and the file. Private to src/text/.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace layerprobe {
class OnigRegex;
}

namespace layerprobe::tokenizer_json {

using nlohmann::json;

// Where a component sits, for messages: "<file>: normalizer.normalizers[1]".
struct Where {
  std::string file, path;
  Where at(const std::string& key) const { return {file, path.empty() ? key : path + "." + key}; }
  Where at(size_t index) const { return {file, path + "[" + std::to_string(index) + "]"}; }
  std::string operator()() const { return file + ": " + path; }
};

// A key of `object` of the JSON type `is` checks ("" = absent or null is allowed when `fallback`).
const json* member(const json& object, const char* key, const Where& where);
std::string string_member(const json& object, const char* key, const Where& where, const std::string* fallback = nullptr);
bool bool_member(const json& object, const char* key, const Where& where, bool fallback);

// ---------------------------------------------------------------------------
// Normalizers: text -> text.

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& text) const = 0;
  // Whether it lower-cases (what get_final_text's do_lower_case should be).
  virtual bool lowercases() const { return false; }
};
std::unique_ptr<Normalizer> make_normalizer(const json& config, const Where& where);

// ---------------------------------------------------------------------------
// Pre-tokenizers: pieces of text -> finer pieces.

struct Piece {
  std::string text;
  bool at_start = false;  // begins where the whole text begins (Metaspace's prepend_scheme "first")
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
};
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& config, const Where& where);

// ---------------------------------------------------------------------------
// Models: one piece -> tokens.

struct Token {
  int64_t id;
  std::string value;
};

// model.vocab and model.merges, streamed out of the file without a JSON tree
// (they are most of it: Llama-3's has 128k tokens and 280k merges).
struct ModelTables {
  std::vector<std::pair<std::string, int64_t>> vocab;        // BPE, WordPiece: token -> id, in file order
  std::vector<std::pair<std::string, double>> scored_vocab;  // Unigram: [piece, score], id = position
  bool vocab_is_list = false;
  bool has_vocab = false;
  std::vector<std::pair<std::string, std::string>> merges;  // "a b" or ["a", "b"]
  bool has_merges = false;
  std::vector<std::string> merge_errors;    // malformed merges, by rank (first few)
  std::vector<std::string> skipped_merges;  // "A B" strings that are not two tokens (first few)
  size_t skipped_merge_count = 0;           // (kept as empty pairs, holding their ranks)
};

class Model {
 public:
  virtual ~Model() = default;
  // Thread-safe.
  virtual void tokenize(const std::string& piece, std::vector<Token>& out) const = 0;
  virtual int64_t token_to_id(const std::string& token) const = 0;  // -1 when unknown
  virtual const std::string* id_to_token(int64_t id) const = 0;     // nullptr when unknown
  virtual int64_t vocab_size() const = 0;
  virtual std::string unk_token() const { return ""; }
  // A short description for messages ("BPE with 32000 tokens and 61249 merges").
  virtual std::string describe() const = 0;
};
std::unique_ptr<Model> make_model(const json& config, ModelTables tables, const Where& where);

// ---------------------------------------------------------------------------
// Post-processors: the special tokens around one sequence or a pair.

// One item of a template: a special token's ids, or the sequence A (0) / B (1).
struct TemplateItem {
  bool is_sequence = false;
  int sequence = 0;
  std::vector<int64_t> ids;
  std::vector<std::string> tokens;
  int64_t type_id = 0;
};

struct Template {
  std::vector<TemplateItem> single, pair;
  std::string cls, sep;  // the tokens a BERT/RoBERTa-style processor names (for the special tokens)
  bool adds_tokens() const;
};
// Resolves a post_processor (and a Sequence of them); `token_id` gives ids of named tokens.
Template make_template(const json& config, const Where& where);

// ---------------------------------------------------------------------------
// Decoders: tokens -> text (convert_tokens_to_string).

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual std::vector<std::string> decode_chain(std::vector<std::string> tokens) const = 0;
};
std::unique_ptr<Decoder> make_decoder(const json& config, const Where& where);

// ---------------------------------------------------------------------------
// Characters, patterns and splits as the Rust library has them.

bool is_rust_whitespace(char32_t c);   // char::is_whitespace: Unicode White_Space
bool is_rust_other(char32_t c);        // unicode_categories' is_other: C*
bool is_rust_numeric(char32_t c);      // char::is_numeric: N*
bool is_rust_punctuation(char32_t c);  // ASCII punctuation or P*
// NFC/NFD/NFKC/NFKD through utf8proc (UTF8PROC_COMPOSE/DECOMPOSE/COMPAT options).
std::string unicode_normalize(const std::string& text, int utf8proc_options);
// char::to_lowercase on each character (no word-final sigma: Σ -> σ always).
std::string lowercase_each(const std::string& text);
// `text` with invalid UTF-8 replaced by U+FFFD (Rust strings are valid UTF-8).
std::string valid_utf8(const std::string& text);

// A piece of text and whether a pattern matched it; a text's spans cover it.
struct Span {
  size_t start, end;
  bool is_match;
};

// A Split / Replace pattern: {"String": "..."} (literal) or {"Regex": "..."} (Oniguruma).
class SplitPattern {
 public:
  SplitPattern(const json& pattern, const Where& where);
  SplitPattern(SplitPattern&&) noexcept;
  ~SplitPattern();
  // Pattern::find_matches: the spans of `text` (one unmatched (0, 0) span for empty text).
  std::vector<Span> find(const std::string& text) const;
  // NormalizedString::replace: every match replaced by `content`.
  std::string replace(const std::string& text, const std::string& content) const;

 private:
  std::string literal_;
  std::unique_ptr<layerprobe::OnigRegex> regex_;
};
SplitPattern pattern_member(const json& config, const Where& where);
// The spans of a character predicate: each matching character alone, the runs between whole.
std::vector<Span> char_spans(const std::string& text, bool (*matches)(char32_t));
// SplitDelimiterBehavior.
enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };
SplitBehavior parse_split_behavior(const std::string& name, const Where& where);
// NormalizedString::split: the pieces the behaviour keeps.
std::vector<std::pair<size_t, size_t>> split_spans(const std::vector<Span>& spans, SplitBehavior behavior);

}  // namespace layerprobe::tokenizer_json
