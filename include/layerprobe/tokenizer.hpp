// AlbertTokenizer: HF preprocessing + SentencePiece, identical to
// transformers 2.5.1's AlbertTokenizer.
#pragma once

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

class AlbertTokenizer {
 public:
  explicit AlbertTokenizer(const std::filesystem::path& spiece_model, TokenizerOptions options = {});
  ~AlbertTokenizer();
  AlbertTokenizer(AlbertTokenizer&&) noexcept;
  AlbertTokenizer& operator=(AlbertTokenizer&&) noexcept;

  std::string preprocess(const std::string& text) const;
  std::vector<std::string> tokenize(const std::string& text) const;
  std::vector<int64_t> convert_tokens_to_ids(const std::vector<std::string>& pieces) const;
  std::vector<std::string> convert_ids_to_tokens(const std::vector<int64_t>& ids) const;
  std::string convert_tokens_to_string(const std::vector<std::string>& pieces) const;

  int64_t cls_id() const;
  int64_t sep_id() const;
  int64_t pad_id() const;
  int64_t unk_id() const;
  int vocab_size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace layerprobe
