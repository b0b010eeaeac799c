// ByteLevelBpeTokenizer: RoBERTa's byte-level BPE (vocab.json + merges.txt),
// identical to transformers 2.5.1's slow RobertaTokenizer / GPT2Tokenizer
// (private to src/text/; everything else sees the Tokenizer interface).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "layerprobe/text/tokenizer.hpp"

namespace layerprobe {

// GPT-2's pre-tokenisation regex, run by hand over code points:
// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// with \s the Unicode White_Space property (as the `regex` module has it).
// Returns re.findall's matches, which together cover the whole text.
std::vector<std::u32string> gpt2_pretokenize(const std::u32string& text);

class ByteLevelBpeTokenizer : public Tokenizer {
 public:
  // Error naming the file for an unreadable or malformed vocab.json (with the
  // JSON error's position) or merges.txt (with the line number), and for
  // special tokens the vocabulary lacks.
  ByteLevelBpeTokenizer(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt,
                        TokenizerSettings settings = {});
  ~ByteLevelBpeTokenizer() override;

  std::string kind() const override { return "bpe"; }
  int64_t token_to_id(const std::string& token) const override;
  std::string id_to_token(int64_t id) const override;
  // HF: the tokens' symbols mapped back to bytes, decoded as UTF-8 with
  // errors="replace". Error for a character that is no byte's symbol.
  std::string convert_tokens_to_string(const std::vector<std::string>& tokens) const override;
  int64_t vocab_size() const override;
  // <s> question </s></s> context </s>, token type 0 throughout.
  PairLayout pair_layout() const override;
  bool lowercases() const override { return settings().do_lower_case.value_or(false); }
  std::vector<std::filesystem::path> files() const override { return {vocab_path_, merges_path_}; }

 protected:
  // GPT2Tokenizer._tokenize without add_prefix_space: each regex match's
  // UTF-8 bytes as byte symbols, merged by bpe().
  void tokenize_text(const std::u32string& text, std::vector<std::string>& out) const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::filesystem::path vocab_path_, merges_path_;
};

}  // namespace layerprobe
