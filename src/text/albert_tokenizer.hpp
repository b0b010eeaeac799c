// AlbertTokenizer: HF's preprocess_text + SentencePiece, identical to
// transformers 2.5.1's AlbertTokenizer (private to src/text/; everything else
// sees the Tokenizer interface).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "text/slow_tokenizer.hpp"

namespace layerprobe {

// SentencePiece pieces -> text as HF's AlbertTokenizer.convert_tokens_to_string:
// concatenate, turn U+2581 into spaces, strip surrounding whitespace.
std::string join_pieces(const std::vector<std::string>& pieces);

// HF's AlbertTokenizer.preprocess_text: collapse whitespace (remove_space),
// `` and '' -> ", NFKD without combining marks unless keep_accents, Python
// str.lower() when do_lower_case (default true). Needs no model, so other code
// can see what SentencePiece will get.
std::string albert_preprocess(const std::string& text, const TokenizerSettings& settings);

class AlbertTokenizer : public SlowTokenizer {
 public:
  explicit AlbertTokenizer(const std::filesystem::path& spiece_model, TokenizerSettings settings = {});
  ~AlbertTokenizer() override;

  std::string preprocess(const std::string& text) const;

  std::string kind() const override { return "sentencepiece"; }
  std::string convert_tokens_to_string(const std::vector<std::string>& tokens) const override;
  int64_t vocab_size() const override;
  PairLayout pair_layout() const override;
  std::pair<std::vector<int64_t>, std::vector<int64_t>> single_layout() const override {
    return {{cls_id()}, {sep_id()}};
  }
  bool lowercases() const override { return settings().do_lower_case.value_or(true); }
  std::vector<std::filesystem::path> files() const override { return {model_path_}; }

 protected:
  // preprocess + SentencePiece (no sampling) + the digit-comma rule.
  void tokenize_text(const std::u32string& text, std::vector<std::string>& out) const override;
  int64_t vocab_token_to_id(const std::string& token) const override;
  std::string vocab_id_to_token(int64_t id) const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::filesystem::path model_path_;
};

}  // namespace layerprobe
