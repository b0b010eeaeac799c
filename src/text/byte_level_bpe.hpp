// What the byte-level BPE kinds share (RoBERTa's "bpe" of transformers 2.5.1,
// GPT-2's "gpt2" of 4.57.5): vocab.json, merges.txt, GPT-2's bpe() over the
// bytes of one pre-token (with its cache), GPT-2's pre-tokenisation regex and
// the byte decoder. Private to src/text/.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace layerprobe {

// GPT-2's pre-tokenisation regex, run by hand over code points:
// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// with \s the Unicode White_Space property (as the `regex` module has it).
// Returns re.findall's matches, which together cover the whole text.
std::vector<std::u32string> gpt2_pretokenize(const std::u32string& text);
// The end of the match that starts at `i` (< text.size()).
size_t gpt2_match_end(const std::u32string& text, size_t i);

// bytes_to_unicode(): the character that stands for each byte.
char32_t byte_to_char(unsigned char byte);
// The byte a symbol character stands for (HF's byte_decoder), or -1.
int char_to_byte(char32_t c);
// Python's bytes.decode("utf-8", errors="replace"): each maximal ill-formed
// subsequence becomes one U+FFFD.
std::string decode_utf8_replace(std::string_view bytes);

class ByteLevelBpe {
 public:
  // Error naming the file for an unreadable or malformed vocab.json (with the
  // JSON error's line and column) or merges.txt (with the line number), and
  // for a merges.txt that holds no merge. A merges.txt whose first line is no
  // '#version' line loses that line all the same (HF skips the first line),
  // with a warning.
  ByteLevelBpe(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt);
  ~ByteLevelBpe();

  // HF's bpe() of one pre-token's UTF-8 bytes, appended to `out` (cached; thread-safe).
  void bpe(const std::string& bytes, std::vector<std::string>& out) const;
  // Each pre-token of `text` (GPT-2's regex) through bpe().
  void tokenize(const std::u32string& text, std::vector<std::string>& out) const;
  // The token's id, or -1 when vocab.json lacks it.
  int64_t find(const std::string& token) const;
  // The token of `id`; Error naming the range outside it.
  const std::string& token(int64_t id) const;
  int64_t size() const;
  // The tokens' symbols mapped back to bytes, decoded as UTF-8 with
  // errors="replace". Error for a character that is no byte's symbol.
  static std::string decode(const std::vector<std::string>& tokens);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace layerprobe
