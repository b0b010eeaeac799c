// transformers' PreTrainedTokenizer shell, which every slow (Python) tokenizer
// runs around its vocabulary kind's _tokenize: lower-casing outside the special
// tokens, splitting the special (added) tokens out of the text, and the added
// tokens' ids. Two generations, as the parity references use them:
// - 2.5.1 (the study's ALBERT, BERT, DistilBERT, RoBERTa): lowercase_text when
//   init_kwargs hold do_lower_case, split_on_tokens (each special token in
//   turn; the text around it right-stripped; whitespace-only text gives nothing);
// - 4.57.5 (XLM-RoBERTa, DeBERTa-v2, GPT-2): the same lower-casing when the
//   tokenizer's do_lower_case is true, a longest-match split on every added
//   token, whose lstrip/rstrip/single_word flags decide what happens to the
//   text beside it, and nothing else stripped.
// Private to src/text/.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "layerprobe/text/tokenizer.hpp"

namespace layerprobe {

enum class HfGeneration { v2_5_1, v4_57_5 };

class SlowTokenizer : public Tokenizer {
 public:
  std::vector<std::string> tokenize(const std::string& text) const final;
  // Added tokens first (4.57.5's _added_tokens_encoder), then the vocabulary.
  int64_t token_to_id(const std::string& token) const final;
  std::string id_to_token(int64_t id) const final;
  // The tokens split out of the text whole, with their flags.
  const std::vector<AddedToken>& added_tokens() const { return added_; }

 protected:
  // `flags` are the kind's own AddedToken defaults (XLM-R's <mask> lstrip);
  // settings.added_tokens override them by content and add tokens (4.57.5 only).
  SlowTokenizer(SpecialTokens specials, TokenizerSettings settings, const std::string& source,
                HfGeneration generation, const std::vector<AddedToken>& flags = {});

  // HF _tokenize: text without special tokens -> tokens, appended to `out`. Thread-safe.
  virtual void tokenize_text(const std::u32string& text, std::vector<std::string>& out) const = 0;
  // HF _convert_token_to_id / _convert_id_to_token of the vocabulary itself.
  virtual int64_t vocab_token_to_id(const std::string& token) const = 0;
  virtual std::string vocab_id_to_token(int64_t id) const = 0;
  // HF prepare_for_tokenization: what the text becomes first (GPT-2's add_prefix_space).
  virtual std::u32string prepare_for_tokenization(std::u32string text) const { return text; }
  // Whether tokenize() lower-cases the text outside the added tokens one
  // character at a time before anything else (2.5.1's lowercase_text, 4.57.5's
  // do_lower_case regex). Default: do_lower_case was given and is true.
  virtual bool prelowercases() const { return settings().do_lower_case.value_or(false); }

 private:
  std::vector<std::string> tokenize_v2(std::u32string text) const;
  std::vector<std::string> tokenize_v4(std::u32string text) const;

  HfGeneration generation_;
  std::vector<AddedToken> added_;
  std::vector<std::u32string> added_texts_;      // added_ contents, as code points
  std::vector<std::u32string> lowercase_keep_;   // kept as they are by the lower-casing
  std::unordered_map<std::string, int64_t> added_ids_;
  std::unordered_map<int64_t, std::string> added_by_id_;
};

// 2.5.1's lowercase_text: every character outside the given tokens through
// Python's str.lower() on its own; the tokens are matched first at each
// position, in the order given.
std::u32string lowercase_outside_specials(const std::u32string& text, const std::vector<std::u32string>& specials);

// 2.5.1's split_on_tokens without the final _tokenize: the text cut at every
// special token (kept as its own segment), other segments right-stripped,
// empty ones dropped. Whitespace-only text gives no segments.
std::vector<std::u32string> split_on_special_tokens(const std::u32string& text,
                                                    const std::vector<std::u32string>& specials);

// The leftmost-longest occurrences of `tokens` in `text` (HF's Trie.split,
// the tokenizers library's added-token matcher): (start, end, token index).
struct TokenMatch {
  size_t start, end, token;
};
std::vector<TokenMatch> find_added_tokens(const std::u32string& text, const std::vector<std::u32string>& tokens);

}  // namespace layerprobe
