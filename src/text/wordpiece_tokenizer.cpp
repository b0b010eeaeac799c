#include "text/wordpiece_tokenizer.hpp"

#include <utf8proc.h>

#include <algorithm>
#include <string_view>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"
#include "layerprobe/text/basic_tokenizer.hpp"

namespace layerprobe {

namespace {

constexpr size_t kMaxInputCharsPerWord = 100;  // HF's WordpieceTokenizer default
constexpr const char* kContinuation = "##";

// BertTokenizer's special tokens (no bos/eos).
SpecialTokens bert_special_tokens() {
  SpecialTokens specials;
  specials.unk = "[UNK]";
  specials.sep = "[SEP]";
  specials.pad = "[PAD]";
  specials.cls = "[CLS]";
  specials.mask = "[MASK]";
  return specials;
}

bool valid_utf8(std::string_view text) {
  auto bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  for (size_t pos = 0; pos < text.size();) {
    utf8proc_int32_t c;
    auto n = utf8proc_iterate(bytes + pos, static_cast<utf8proc_ssize_t>(text.size() - pos), &c);
    if (n <= 0) return false;
    pos += static_cast<size_t>(n);
  }
  return true;
}

// Python's readlines() in text mode (universal newlines: "\n", "\r\n" and "\r"
// end a line) with each line's "\n" removed, as HF's load_vocab.
std::vector<std::string> read_lines(const std::filesystem::path& path) {
  std::string text = read_file(path);
  std::vector<std::string> lines;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = std::min(text.find_first_of("\r\n", pos), text.size());
    lines.emplace_back(text, pos, end - pos);
    if (!valid_utf8(lines.back()))
      throw Error(path.string() + " line " + std::to_string(lines.size()) +
                  " is not valid UTF-8: save the vocabulary as UTF-8");
    pos = end + (text.compare(end, 2, "\r\n") == 0 ? 2 : 1);
  }
  return lines;
}

std::vector<std::string> read_vocab_lines(const std::filesystem::path& path) {
  const std::string fix = ": pass the vocab.txt of a BERT or DistilBERT model (one WordPiece token per line)";
  if (!std::filesystem::is_regular_file(path))
    throw Error("BERT vocabulary '" + path.string() + "' does not exist or is not a file" + fix);
  auto lines = read_lines(path);
  if (lines.empty()) throw Error("BERT vocabulary '" + path.string() + "' is empty" + fix);
  return lines;
}

// Python's str.replace(from, ""): non-overlapping, left to right.
std::string erase_all(const std::string& text, const std::string& from) {
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::string::npos; pos = hit + from.size())
    out.append(text, pos, hit - pos);
  return out.append(text, pos, std::string::npos);
}

// Python's str.strip() with no argument.
std::string strip(const std::string& text) {
  auto chars = utf8_to_u32(text);
  size_t begin = 0, end = chars.size();
  while (begin < end && python_isspace(chars[begin])) ++begin;
  while (end > begin && python_isspace(chars[end - 1])) --end;
  return u32_to_utf8(std::u32string_view(chars).substr(begin, end - begin));
}

// Byte offset of every code point of valid UTF-8 `text`, then its size.
std::vector<size_t> code_point_offsets(const std::string& text) {
  std::vector<size_t> offsets;
  for (size_t i = 0; i < text.size(); ++i)
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) offsets.push_back(i);
  offsets.push_back(text.size());
  return offsets;
}

}  // namespace

WordPieceTokenizer::WordPieceTokenizer(const std::filesystem::path& vocab_txt, TokenizerSettings settings)
    : SlowTokenizer(bert_special_tokens(), std::move(settings), vocab_txt.string(), HfGeneration::v2_5_1),
      vocab_path_(vocab_txt),
      lines_(read_vocab_lines(vocab_txt)) {
  ids_.reserve(lines_.size());
  for (size_t id = 0; id < lines_.size(); ++id) ids_[lines_[id]] = static_cast<int64_t>(id);
  require_special_tokens();
  for (const auto& token : special_tokens().all()) never_split_.push_back(utf8_to_u32(token));
}

void WordPieceTokenizer::require_special_tokens() const {
  const SpecialTokens& specials = special_tokens();
  const std::pair<const char*, const std::string*> required[] = {
      {"unk_token", &specials.unk}, {"sep_token", &specials.sep}, {"pad_token", &specials.pad},
      {"cls_token", &specials.cls}};
  for (const auto& entry : required)
    if (!ids_.count(*entry.second))
      throw Error("BERT vocabulary '" + vocab_path_.string() + "' lacks the " + entry.first + " '" +
                  *entry.second + "': use the vocab.txt the model was trained with, or name its " + entry.first +
                  " in the model's special_tokens_map.json");
}

void WordPieceTokenizer::tokenize_text(const std::u32string& text, std::vector<std::string>& out) const {
  for (const auto& word : bert_basic_tokenize(text, lowercases(), never_split_)) split_word(word, out);
}

void WordPieceTokenizer::split_word(const std::u32string& word, std::vector<std::string>& out) const {
  if (word.size() > kMaxInputCharsPerWord) {
    out.push_back(special_tokens().unk);
    return;
  }
  const std::string utf8 = u32_to_utf8(word);
  const std::vector<size_t> offsets = code_point_offsets(utf8);
  const size_t first_piece = out.size(), chars = offsets.size() - 1;
  std::string piece;
  for (size_t start = 0, end; start < chars; start = end) {
    // The longest prefix of word[start:] in the vocabulary.
    for (end = chars; end > start; --end) {
      piece.assign(start > 0 ? kContinuation : "");
      piece.append(utf8, offsets[start], offsets[end] - offsets[start]);
      if (ids_.count(piece)) break;
    }
    if (end == start) {  // nothing matches: the whole word is unknown
      out.resize(first_piece);
      out.push_back(special_tokens().unk);
      return;
    }
    out.push_back(piece);
  }
}

int64_t WordPieceTokenizer::vocab_token_to_id(const std::string& token) const {
  auto it = ids_.find(token);
  return it != ids_.end() ? it->second : ids_.at(special_tokens().unk);
}

std::string WordPieceTokenizer::vocab_id_to_token(int64_t id) const {
  if (id < 0 || id >= static_cast<int64_t>(lines_.size()))
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(lines_.size()) +
                " lines of '" + vocab_path_.string() + "' (ids 0 to " + std::to_string(lines_.size() - 1) + ")");
  const std::string& token = lines_[static_cast<size_t>(id)];
  return ids_.at(token) == id ? token : special_tokens().unk;
}

std::string WordPieceTokenizer::convert_tokens_to_string(const std::vector<std::string>& tokens) const {
  std::string joined;
  for (size_t i = 0; i < tokens.size(); ++i) joined.append(i > 0 ? " " : "").append(tokens[i]);
  return strip(erase_all(joined, std::string(" ") + kContinuation));
}

}  // namespace layerprobe
