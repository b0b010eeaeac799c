// AlbertTokenizer: HF preprocessing + SentencePiece, identical to
// transformers 2.5.1's AlbertTokenizer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace layerprobe {

struct TokenizerOptions {
  bool do_lower_case = true;
  bool remove_space = true;
  bool keep_accents = false;
};

// SentencePiece pieces -> text as HF's AlbertTokenizer.convert_tokens_to_string:
// concatenate, turn U+2581 into spaces, strip surrounding whitespace.
std::string join_pieces(const std::vector<std::string>& pieces);

// HF's AlbertTokenizer.preprocess_text: collapse whitespace, `` and '' -> ",
// NFKD without combining marks unless keep_accents, Python str.lower() unless
// cased. Needs no model, so other code can see what SentencePiece will get.
std::string albert_preprocess(const std::string& text, const TokenizerOptions& options);

class AlbertTokenizer {
 public:
  // The special tokens HF's AlbertTokenizer declares; literal occurrences in
  // text become single tokens (transformers 2.5.1 tokenize()).
  static const std::vector<std::string>& special_tokens();

  explicit AlbertTokenizer(const std::filesystem::path& spiece_model, TokenizerOptions options = {});
  ~AlbertTokenizer();
  AlbertTokenizer(AlbertTokenizer&&) noexcept;
  AlbertTokenizer& operator=(AlbertTokenizer&&) noexcept;

  std::string preprocess(const std::string& text) const;
  // HF tokenize(): split off special tokens, then preprocess + SentencePiece
  // (no sampling) + the digit-comma rule on each remaining piece of text.
  // Thread-safe (SentencePiece encoding is const).
  std::vector<std::string> tokenize(const std::string& text) const;
  std::vector<int64_t> convert_tokens_to_ids(const std::vector<std::string>& pieces) const;
  // Error for an id outside the vocabulary.
  std::vector<std::string> convert_ids_to_tokens(const std::vector<int64_t>& ids) const;
  std::string convert_tokens_to_string(const std::vector<std::string>& pieces) const;
  // convert_tokens_to_ids(tokenize(text)), without special tokens added.
  std::vector<int64_t> encode(const std::string& text) const;

  int64_t cls_id() const;
  int64_t sep_id() const;
  int64_t pad_id() const;
  int64_t unk_id() const;
  int vocab_size() const;
  const TokenizerOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace layerprobe
