// XlmRobertaTokenizer: XLM-RoBERTa's SentencePiece model (sentencepiece.bpe.model)
// with fairseq's ids, as transformers 4.57.5's slow XLMRobertaTokenizer: <s>=0,
// <pad>=1, </s>=2, <unk>=3, SentencePiece id k>0 -> k+1 (id 0, the model's own
// <unk>, -> 3), <mask> = the model's size + 1 (private to src/text/).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "text/slow_tokenizer.hpp"

namespace layerprobe {

class SentencePieceModel;

class XlmRobertaTokenizer : public SlowTokenizer {
 public:
  explicit XlmRobertaTokenizer(const std::filesystem::path& model_path, TokenizerSettings settings = {});
  ~XlmRobertaTokenizer() override;

  std::string kind() const override { return "xlm-roberta"; }
  // "".join(tokens).replace("▁", " ").strip()
  std::string convert_tokens_to_string(const std::vector<std::string>& tokens) const override;
  // The SentencePiece model's pieces + 2 (the fairseq offset and <mask>).
  int64_t vocab_size() const override;
  // <s> q </s></s> c </s>, token type 0 throughout. 4.57.5's squad.py counts the
  // second </s> only for the classes it names (roberta, camembert, bart, mpnet),
  // not XLMRobertaTokenizer: its legacy context offset is 2.
  PairLayout pair_layout() const override;
  std::pair<std::vector<int64_t>, std::vector<int64_t>> single_layout() const override {
    return {{cls_id()}, {sep_id()}};
  }
  // XLMRobertaTokenizer has no do_lower_case.
  bool lowercases() const override { return false; }
  std::vector<std::filesystem::path> files() const override { return {model_path_}; }

 protected:
  // sp_model.encode(text, out_type=str): the pieces as SentencePiece gives them.
  void tokenize_text(const std::u32string& text, std::vector<std::string>& out) const override;
  int64_t vocab_token_to_id(const std::string& token) const override;
  std::string vocab_id_to_token(int64_t id) const override;
  bool prelowercases() const override { return false; }

 private:
  std::unique_ptr<SentencePieceModel> model_;
  std::filesystem::path model_path_;
};

}  // namespace layerprobe
