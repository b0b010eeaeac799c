// ByteLevelBpeTokenizer: RoBERTa's byte-level BPE (vocab.json + merges.txt),
// identical to transformers 2.5.1's slow RobertaTokenizer (private to
// src/text/; everything else sees the Tokenizer interface).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "text/byte_level_bpe.hpp"
#include "text/slow_tokenizer.hpp"

namespace layerprobe {

class ByteLevelBpeTokenizer : public SlowTokenizer {
 public:
  // Error naming the file for an unreadable or malformed vocab.json (with the
  // JSON error's position) or merges.txt (with the line number), and for
  // special tokens the vocabulary lacks.
  ByteLevelBpeTokenizer(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt,
                        TokenizerSettings settings = {});

  std::string kind() const override { return "bpe"; }
  // HF: the tokens' symbols mapped back to bytes, decoded as UTF-8 with
  // errors="replace". Error for a character that is no byte's symbol.
  std::string convert_tokens_to_string(const std::vector<std::string>& tokens) const override {
    return ByteLevelBpe::decode(tokens);
  }
  int64_t vocab_size() const override { return bpe_.size(); }
  // <s> question </s></s> context </s>, token type 0 throughout.
  PairLayout pair_layout() const override { return {{cls_id()}, {sep_id(), sep_id()}, {sep_id()}, 0}; }
  std::pair<std::vector<int64_t>, std::vector<int64_t>> single_layout() const override {
    return {{cls_id()}, {sep_id()}};
  }
  bool lowercases() const override { return settings().do_lower_case.value_or(false); }
  std::vector<std::filesystem::path> files() const override { return {vocab_path_, merges_path_}; }

 protected:
  // GPT2Tokenizer._tokenize without add_prefix_space: each regex match's
  // UTF-8 bytes as byte symbols, merged by bpe().
  void tokenize_text(const std::u32string& text, std::vector<std::string>& out) const override {
    bpe_.tokenize(text, out);
  }
  int64_t vocab_token_to_id(const std::string& token) const override;
  std::string vocab_id_to_token(int64_t id) const override { return bpe_.token(id); }

 private:
  ByteLevelBpe bpe_;
  std::filesystem::path vocab_path_, merges_path_;
};

}  // namespace layerprobe
