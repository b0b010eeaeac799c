// DebertaV2Tokenizer: DeBERTa-v2/v3's SentencePiece model (spm.model) with the
// model's own ids, as transformers 4.57.5's slow DebertaV2Tokenizer: optional
// lower-casing (do_lower_case, default false) and punctuation split
// (split_by_punct, default false) before SentencePiece; unknown pieces keep
// their text and take the model's unknown id (private to src/text/).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "text/slow_tokenizer.hpp"

namespace layerprobe {

class SentencePieceModel;

class DebertaV2Tokenizer : public SlowTokenizer {
 public:
  explicit DebertaV2Tokenizer(const std::filesystem::path& model_path, TokenizerSettings settings = {});
  ~DebertaV2Tokenizer() override;

  std::string kind() const override { return "deberta-v2"; }
  // SPMTokenizer.decode: runs of pieces through SentencePiece's decoder, the
  // special tokens as they are (a space before a run of them), stripped.
  std::string convert_tokens_to_string(const std::vector<std::string>& tokens) const override;
  int64_t vocab_size() const override;
  // [CLS] q [SEP] c [SEP], context type 1.
  PairLayout pair_layout() const override { return {{cls_id()}, {sep_id()}, {sep_id()}, 1}; }
  std::pair<std::vector<int64_t>, std::vector<int64_t>> single_layout() const override {
    return {{cls_id()}, {sep_id()}};
  }
  bool lowercases() const override { return settings().do_lower_case.value_or(false); }
  std::vector<std::filesystem::path> files() const override { return {model_path_}; }

 protected:
  void tokenize_text(const std::u32string& text, std::vector<std::string>& out) const override;
  int64_t vocab_token_to_id(const std::string& token) const override;
  std::string vocab_id_to_token(int64_t id) const override;
  // 4.57.5 lower-cases outside the added tokens whenever do_lower_case is true.
  bool prelowercases() const override { return lowercases(); }

 private:
  std::unique_ptr<SentencePieceModel> model_;
  std::filesystem::path model_path_;
};

}  // namespace layerprobe
