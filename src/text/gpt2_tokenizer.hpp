// Gpt2Tokenizer: GPT-2's byte-level BPE (vocab.json + merges.txt) as
// transformers 4.57.5's slow GPT2Tokenizer: <|endoftext|> as bos, eos and
// unknown token, no padding token, text kept as it is (no stripping around
// added tokens, trailing whitespace becomes its own token), add_prefix_space
// and add_bos_token from tokenizer_config.json (private to src/text/).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "text/byte_level_bpe.hpp"
#include "text/slow_tokenizer.hpp"

namespace layerprobe {

class Gpt2Tokenizer : public SlowTokenizer {
 public:
  Gpt2Tokenizer(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt,
                TokenizerSettings settings = {});

  std::string kind() const override { return "gpt2"; }
  std::string convert_tokens_to_string(const std::vector<std::string>& tokens) const override {
    return ByteLevelBpe::decode(tokens);
  }
  int64_t vocab_size() const override { return bpe_.size(); }
  // HF's build_inputs_with_special_tokens: question then context, with
  // <|endoftext|> before each when add_bos_token; context token type 1
  // (create_token_type_ids_from_sequences). A decoder family may lay its
  // windows out otherwise.
  PairLayout pair_layout() const override;
  std::pair<std::vector<int64_t>, std::vector<int64_t>> single_layout() const override;
  bool lowercases() const override { return false; }
  std::vector<std::filesystem::path> files() const override { return {vocab_path_, merges_path_}; }

 protected:
  std::u32string prepare_for_tokenization(std::u32string text) const override;
  void tokenize_text(const std::u32string& text, std::vector<std::string>& out) const override {
    bpe_.tokenize(text, out);
  }
  // encoder.get(token, encoder[unk_token]).
  int64_t vocab_token_to_id(const std::string& token) const override;
  std::string vocab_id_to_token(int64_t id) const override { return bpe_.token(id); }
  bool prelowercases() const override { return false; }

 private:
  ByteLevelBpe bpe_;
  std::filesystem::path vocab_path_, merges_path_;
};

}  // namespace layerprobe
