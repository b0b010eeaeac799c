// TokenizerJson: a tokenizer.json (the Hugging Face tokenizers library's
// format) as the Rust library encodes with it: added tokens split out first
// (their lstrip/rstrip/single_word flags; the normalized ones matched in the
// normalised text), the normalizer, the pre-tokenizer and the model on the
// rest; the post-processor's templates give the special tokens around a text
// and a question/context pair; the decoder gives answer text. The special
// tokens (cls, sep, pad, ...) come from tokenizer_config.json /
// special_tokens_map.json, else from the post-processor (cls = the special
// token before the text, sep = the one after it) and the model's unk_token.
// Private to src/text/.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "layerprobe/text/tokenizer.hpp"

namespace layerprobe {

class TokenizerJson : public Tokenizer {
 public:
  // Error naming the file and the component for anything malformed or unsupported.
  TokenizerJson(const std::filesystem::path& file, TokenizerSettings settings = {});
  ~TokenizerJson() override;

  std::vector<std::string> tokenize(const std::string& text) const override;
  std::string kind() const override { return "tokenizer.json"; }
  // Added tokens first, then the model's vocabulary; unknown tokens take the
  // unknown token's id (Error naming the token when there is none).
  int64_t token_to_id(const std::string& token) const override;
  std::string id_to_token(int64_t id) const override;
  // The decoder's chain, joined (" ".join(tokens) without a decoder).
  std::string convert_tokens_to_string(const std::vector<std::string>& tokens) const override;
  // The ids a model's embedding needs: the model's vocabulary and the added tokens.
  int64_t vocab_size() const override;
  // From the post-processor's pair template. Transformers' legacy squad.py
  // counts the single template's special tokens before the context (a fast
  // tokenizer's class name is never one it doubles the separator for).
  PairLayout pair_layout() const override;
  std::pair<std::vector<int64_t>, std::vector<int64_t>> single_layout() const override;
  bool lowercases() const override;
  std::vector<std::filesystem::path> files() const override { return {file_}; }
  // The added tokens with their flags, as the file declares them.
  const std::vector<std::pair<int64_t, AddedToken>>& added_tokens() const;
  // "BPE with 32000 tokens and 61249 merges, 3 added tokens".
  std::string describe() const;

 private:
  struct Impl;
  TokenizerJson(std::unique_ptr<Impl> impl, const std::filesystem::path& file, TokenizerSettings settings);
  static SpecialTokens default_special_tokens(const Impl& impl);

  std::unique_ptr<Impl> impl_;
  std::filesystem::path file_;
};

}  // namespace layerprobe
