// The tokenizer interface: what SQuAD featurisation, decoding and the tools need of
// a model family's tokenizer. Two kinds of implementation sit behind it:
// - slow tokenizers (text/slow_tokenizer.hpp under src/): a vocabulary kind inside
//   transformers' PreTrainedTokenizer shell, of transformers 2.5.1 for the study's
//   families (SentencePiece for ALBERT, WordPiece for BERT/DistilBERT/ELECTRA,
//   byte-level BPE for RoBERTa) or of 4.57.5 for XLM-RoBERTa, DeBERTa-v2/v3 and GPT-2;
// - the `tokenizers` library's tokenizer.json (added tokens, normalizer,
//   pre-tokenizer, model, post-processor, decoder).
// Each kind lives in its own file under src/text/; load_tokenizer
// (text/tokenizer_registry.hpp) picks one for a file or model directory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace layerprobe {

// HF's AddedToken: a token matched whole in the text before the model runs,
// with how it treats what is around it.
struct AddedToken {
  std::string content;
  bool single_word = false;  // only where no word character touches it
  bool lstrip = false;       // eats the whitespace on its left
  bool rstrip = false;       // eats the whitespace on its right
  bool normalized = false;   // matched in the normalised text (tokenizer.json); lower-cased with the text (slow)
  bool special = true;
};

// What from_pretrained hands a tokenizer's constructor (HF's init_kwargs):
// tokenizer_config.json, special_tokens_map.json, or run_squad's --do_lower_case.
struct TokenizerSettings {
  // Set when init_kwargs hold do_lower_case. Then tokenize() first lower-cases
  // every character outside the special tokens, one character at a time
  // (2.5.1's lowercase_text, so a final capital sigma becomes U+03C3), and the
  // family's own lower-casing follows the value. Unset: the family's
  // constructor default applies (ALBERT and BERT lower-case, the others do not).
  std::optional<bool> do_lower_case;
  bool remove_space = true;       // ALBERT's preprocess_text
  bool keep_accents = false;      // ALBERT's preprocess_text
  bool split_by_punct = false;    // DebertaV2Tokenizer: SentencePiece on each punctuation-split word
  bool add_prefix_space = false;  // GPT2Tokenizer: a space before the text
  bool add_bos_token = false;     // GPT2Tokenizer: bos before each sequence of a model input
  // special_tokens_map.json / tokenizer_config.json overrides: "cls_token" -> "[CLS]", ...
  std::map<std::string, std::string> special_tokens;
  // Added tokens with their flags and ids (4.x files: tokenizer_config.json's
  // added_tokens_decoder, token objects of special_tokens_map.json; id -1 = the
  // vocabulary's). Only the transformers 4.x kinds read them.
  std::vector<std::pair<int64_t, AddedToken>> added_tokens;
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
// build_inputs_with_special_tokens), with token type 0 up to the context
// (between_token_type for the tokens between) and context_token_type from it on
// (create_token_type_ids_from_sequences, or the tokenizer.json pair template).
// BERT/ALBERT: [CLS] q [SEP] c [SEP], context type 1; RoBERTa: <s> q </s></s> c </s>, all 0.
struct PairLayout {
  std::vector<int64_t> before_query, between, after_context;
  int64_t context_token_type = 1;
  int64_t between_token_type = 0;
  // Where transformers' legacy squad.py (squad_convert_examples_to_features)
  // believes the context starts after the question: its sequence_added_tokens,
  // the special tokens of a *single* sequence, plus one only for tokenizer
  // classes it knows to double the separator. -1 = tokens_before_context().
  // It differs for XLM-RoBERTa under 4.57.5 (2, not 3) and for pair templates
  // with more specials before the context than a single sequence has.
  int legacy_context_offset = -1;

  // Special tokens before the first context token (HF's sequence_added_tokens).
  int tokens_before_context() const { return static_cast<int>(before_query.size() + between.size()); }
  // Special tokens in a whole window (HF's sequence_pair_added_tokens).
  int added_tokens() const { return tokens_before_context() + static_cast<int>(after_context.size()); }
  // The position offset legacy squad.py uses (see legacy_context_offset).
  int legacy_tokens_before_context() const {
    return legacy_context_offset < 0 ? tokens_before_context() : legacy_context_offset;
  }
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // HF tokenize(): text -> tokens, without the special tokens a model input
  // adds around it (literal special tokens in the text stay whole). Thread-safe.
  virtual std::vector<std::string> tokenize(const std::string& text) const = 0;
  std::vector<int64_t> convert_tokens_to_ids(const std::vector<std::string>& tokens) const;
  // Error naming the id when one lies outside the vocabulary.
  std::vector<std::string> convert_ids_to_tokens(const std::vector<int64_t>& ids) const;
  // convert_tokens_to_ids(tokenize(text)): no special tokens added.
  std::vector<int64_t> encode(const std::string& text) const;
  // The ids of `text` as one model input with its special tokens (HF's
  // encode(text), add_special_tokens=True): the single-sequence layout.
  std::vector<int64_t> encode_with_special_tokens(const std::string& text) const;

  const SpecialTokens& special_tokens() const { return specials_; }
  const TokenizerSettings& settings() const { return settings_; }
  // The special tokens' ids; -1 for one the tokenizer does not declare.
  int64_t cls_id() const { return special_id(specials_.cls); }
  int64_t sep_id() const { return special_id(specials_.sep); }
  int64_t unk_id() const { return special_id(specials_.unk); }
  // The id batches are padded with: the pad token's; for tokenizers that declare
  // none (GPT-2, Llama), the unknown token's, else the end-of-sequence token's, else 0.
  int64_t pad_id() const;

  // The registry's kind name: "sentencepiece", "wordpiece", "bpe", "xlm-roberta",
  // "deberta-v2", "gpt2" or "tokenizer.json".
  virtual std::string kind() const = 0;
  // HF _convert_token_to_id (with the added tokens): unknown tokens map to the
  // unknown token's id (Error when the tokenizer has none).
  virtual int64_t token_to_id(const std::string& token) const = 0;
  // HF _convert_id_to_token; Error for an id outside the vocabulary.
  virtual std::string id_to_token(int64_t id) const = 0;
  // HF convert_tokens_to_string (what decoding shows of a span of tokens).
  virtual std::string convert_tokens_to_string(const std::vector<std::string>& tokens) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual PairLayout pair_layout() const = 0;
  // The single-sequence layout: ids before and after one text (HF's
  // build_inputs_with_special_tokens(ids)). Default: none.
  virtual std::pair<std::vector<int64_t>, std::vector<int64_t>> single_layout() const { return {}; }
  // Whether tokenize() lower-cases the text: the do_lower_case HF's
  // get_final_text should use when projecting an answer back onto the context.
  virtual bool lowercases() const = 0;
  // The files this tokenizer was read from (vocabulary, merges, model), so a
  // saved model directory can carry them.
  virtual std::vector<std::filesystem::path> files() const = 0;

 protected:
  // `source` (the vocabulary file) names where an unknown special-token key came from.
  Tokenizer(SpecialTokens specials, TokenizerSettings settings, const std::string& source);

 private:
  int64_t special_id(const std::string& token) const { return token.empty() ? -1 : token_to_id(token); }

  SpecialTokens specials_;
  TokenizerSettings settings_;
};

}  // namespace layerprobe
