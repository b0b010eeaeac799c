// WordPieceTokenizer: BERT's (and DistilBERT's) vocab.txt tokenizer, identical
// to transformers 2.5.1's BertTokenizer — BasicTokenizer, then greedy
// longest-match-first WordPiece with "##" continuations (private to src/text/;
// everything else sees the Tokenizer interface).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

#include "text/slow_tokenizer.hpp"

namespace layerprobe {

class WordPieceTokenizer : public SlowTokenizer {
 public:
  // Reads vocab.txt as HF's load_vocab: one token per line (Python's universal
  // newlines, only the line break removed), line n = id n. Error naming the
  // file for a missing, unreadable, empty or non-UTF-8 file, or one that lacks
  // the unknown, separator, classifier or padding token.
  explicit WordPieceTokenizer(const std::filesystem::path& vocab_txt, TokenizerSettings settings = {});

  std::string kind() const override { return "wordpiece"; }
  // " ".join(tokens).replace(" ##", "").strip()
  std::string convert_tokens_to_string(const std::vector<std::string>& tokens) const override;
  // HF's len(vocab): the distinct tokens, fewer than the lines when one repeats.
  int64_t vocab_size() const override { return static_cast<int64_t>(ids_.size()); }
  PairLayout pair_layout() const override { return {{cls_id()}, {sep_id()}, {sep_id()}, 1}; }
  std::pair<std::vector<int64_t>, std::vector<int64_t>> single_layout() const override {
    return {{cls_id()}, {sep_id()}};
  }
  bool lowercases() const override { return settings().do_lower_case.value_or(true); }
  std::vector<std::filesystem::path> files() const override { return {vocab_path_}; }

 protected:
  // BasicTokenizer (lower-casing and accent stripping as lowercases() says,
  // never_split = the special tokens), then WordPiece on each word.
  void tokenize_text(const std::u32string& text, std::vector<std::string>& out) const override;
  int64_t vocab_token_to_id(const std::string& token) const override;
  // The token of line `id`; HF's unknown token for a line whose token a later
  // line repeats (its id is shadowed). Error outside the file's lines.
  std::string vocab_id_to_token(int64_t id) const override;
  // Whenever it lower-cases, the text is first lower-cased one character at a
  // time, as from_pretrained's init_kwargs make 2.5.1 do for every uncased hub
  // model (and 4.57.5 always does): a word-final capital sigma becomes U+03C3.
  bool prelowercases() const override { return lowercases(); }

 private:
  // HF's WordpieceTokenizer.tokenize on one word: its pieces, or the unknown
  // token when it is too long or some part of it matches nothing.
  void split_word(const std::u32string& word, std::vector<std::string>& out) const;
  void require_special_tokens() const;

  std::filesystem::path vocab_path_;
  std::vector<std::string> lines_;                 // line n = token of id n
  std::unordered_map<std::string, int64_t> ids_;   // token -> id, a later line winning
  std::vector<std::u32string> never_split_;        // the special tokens, for BasicTokenizer
};

}  // namespace layerprobe
