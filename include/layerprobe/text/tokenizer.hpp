// The tokenizer interface: what SQuAD featurisation, decoding and the tools need of
// a model family's tokenizer, with transformers 2.5.1's semantics (a slow
// PreTrainedTokenizer as from_pretrained builds it). One implementation per
// vocabulary kind — SentencePiece (ALBERT), WordPiece (BERT, DistilBERT),
// byte-level BPE (RoBERTa) — each in its own file under src/text/;
// load_tokenizer (text/tokenizer_registry.hpp) picks one for a file or model directory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace layerprobe {

// What from_pretrained hands a tokenizer's constructor (HF's init_kwargs):
// tokenizer_config.json, special_tokens_map.json, or run_squad's --do_lower_case.
struct TokenizerSettings {
  // Set when init_kwargs hold do_lower_case. Then tokenize() first lower-cases
  // every character outside the special tokens, one character at a time
  // (2.5.1's lowercase_text, so a final capital sigma becomes U+03C3), and the
  // family's own lower-casing follows the value. Unset: only the family's
  // constructor default applies (ALBERT and BERT lower-case, RoBERTa does not).
  std::optional<bool> do_lower_case;
  bool remove_space = true;   // ALBERT's preprocess_text
  bool keep_accents = false;  // ALBERT's preprocess_text
  // special_tokens_map.json / tokenizer_config.json overrides: "cls_token" -> "[CLS]", ...
  std::map<std::string, std::string> special_tokens;
};

// The special tokens a tokenizer declares (HF's SPECIAL_TOKENS_ATTRIBUTES
// without the additional ones). An empty string = not declared.
struct SpecialTokens {
  std::string bos, eos, unk, sep, pad, cls, mask;

  // HF's all_special_tokens: the distinct declared tokens. Literal
  // occurrences in text become single tokens.
  std::vector<std::string> all() const;
  // Replaces the entries named in `overrides` ("cls_token", ...); Error for an unknown key.
  void apply(const std::map<std::string, std::string>& overrides, const std::string& source);
};

// How one window of a question/context pair is laid out:
// before_query question between context after_context (HF's
// build_inputs_with_special_tokens), with token type 0 up to the context and
// context_token_type from it on (create_token_type_ids_from_sequences).
// BERT/ALBERT: [CLS] q [SEP] c [SEP], context type 1; RoBERTa: <s> q </s></s> c </s>, all 0.
struct PairLayout {
  std::vector<int64_t> before_query, between, after_context;
  int64_t context_token_type = 1;

  // Special tokens before the first context token (HF's sequence_added_tokens).
  int tokens_before_context() const { return static_cast<int>(before_query.size() + between.size()); }
  // Special tokens in a whole window (HF's sequence_pair_added_tokens).
  int added_tokens() const { return tokens_before_context() + static_cast<int>(after_context.size()); }
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // HF tokenize(): with settings().do_lower_case set, lower-case outside the
  // special tokens; split out the special tokens (kept whole; the text pieces
  // between them are right-stripped); run the family's _tokenize on each
  // piece. Whitespace-only text gives no tokens. Thread-safe.
  std::vector<std::string> tokenize(const std::string& text) const;
  std::vector<int64_t> convert_tokens_to_ids(const std::vector<std::string>& tokens) const;
  // Error naming the id when one lies outside the vocabulary.
  std::vector<std::string> convert_ids_to_tokens(const std::vector<int64_t>& ids) const;
  // convert_tokens_to_ids(tokenize(text)): no special tokens added.
  std::vector<int64_t> encode(const std::string& text) const;

  const SpecialTokens& special_tokens() const { return specials_; }
  const TokenizerSettings& settings() const { return settings_; }
  int64_t cls_id() const { return token_to_id(specials_.cls); }
  int64_t sep_id() const { return token_to_id(specials_.sep); }
  int64_t pad_id() const { return token_to_id(specials_.pad); }
  int64_t unk_id() const { return token_to_id(specials_.unk); }

  // "sentencepiece", "wordpiece" or "bpe".
  virtual std::string kind() const = 0;
  // HF _convert_token_to_id: unknown tokens map to the unknown token's id.
  virtual int64_t token_to_id(const std::string& token) const = 0;
  // HF _convert_id_to_token; Error for an id outside [0, vocab_size()).
  virtual std::string id_to_token(int64_t id) const = 0;
  // HF convert_tokens_to_string (what decoding shows of a span of tokens).
  virtual std::string convert_tokens_to_string(const std::vector<std::string>& tokens) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual PairLayout pair_layout() const = 0;
  // Whether tokenize() lower-cases the text: the do_lower_case HF's
  // get_final_text should use when projecting an answer back onto the context.
  virtual bool lowercases() const = 0;
  // The files this tokenizer was read from (vocabulary, merges, model), so a
  // saved model directory can carry them.
  virtual std::vector<std::filesystem::path> files() const = 0;

 protected:
  // `source` (the vocabulary file) names where an unknown special-token key came from.
  Tokenizer(SpecialTokens specials, TokenizerSettings settings, const std::string& source);
  // HF _tokenize: text without special tokens -> tokens, appended to `out`.
  // Must be thread-safe.
  virtual void tokenize_text(const std::u32string& text, std::vector<std::string>& out) const = 0;

 private:
  SpecialTokens specials_;
  TokenizerSettings settings_;
  std::vector<std::u32string> special_texts_;  // specials_.all(), as code points
};

// 2.5.1's lowercase_text: every character outside the special tokens through
// Python's str.lower() on its own; special tokens are matched first at each
// position, in the order given.
std::u32string lowercase_outside_specials(const std::u32string& text, const std::vector<std::u32string>& specials);

// 2.5.1's split_on_tokens without the final _tokenize: the text cut at every
// special token (kept as its own segment), other segments right-stripped,
// empty ones dropped. Whitespace-only text gives no segments.
std::vector<std::u32string> split_on_special_tokens(const std::u32string& text,
                                                    const std::vector<std::u32string>& specials);

}  // namespace layerprobe
