#include "text/byte_level_bpe.hpp"

#include <spdlog/spdlog.h>
#include <utf8proc.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <mutex>
#include <shared_mutex>
#include <string_view>
#include <unordered_map>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"
#include "text/json_file.hpp"

namespace layerprobe {

namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------------------
// Pre-tokenisation: GPT-2's regex as a hand-written matcher.

enum class CharClass { space, letter, number, other };

// The Unicode White_Space property: the `regex` module's \s. Unlike Python's
// str.isspace() it leaves out U+001C..U+001F.
bool is_white_space(char32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

// \s, \p{L} (categories L*), \p{N} (categories N*) or none of them.
CharClass classify(char32_t c) {
  if (is_white_space(c)) return CharClass::space;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return CharClass::letter;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return CharClass::number;
    default:
      return CharClass::other;
  }
}

// 's|'t|'re|'ve|'m|'ll|'d at `i` (case-sensitive): the match's end, or 0.
size_t contraction_end(const std::u32string& text, size_t i) {
  if (text[i] != U'\'' || i + 1 >= text.size()) return 0;
  char32_t next = text[i + 1];
  if (next == U's' || next == U't' || next == U'm' || next == U'd') return i + 2;
  if (i + 2 >= text.size()) return 0;
  char32_t last = text[i + 2];
  bool two_letters = (next == U'r' && last == U'e') || (next == U'v' && last == U'e') || (next == U'l' && last == U'l');
  return two_letters ? i + 3 : 0;
}

// End of the run of characters of class `cls` starting at `i`.
size_t run_end(const std::u32string& text, size_t i, CharClass cls) {
  while (i < text.size() && classify(text[i]) == cls) ++i;
  return i;
}

// End of the regex's match at `i` (< text.size()); every position matches.
size_t match_end(const std::u32string& text, size_t i) {
  if (size_t end = contraction_end(text, i)) return end;
  // ` ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+`: the optional space is U+0020 only.
  size_t start = text[i] == U' ' && i + 1 < text.size() ? i + 1 : i;
  CharClass cls = classify(text[start]);
  if (cls != CharClass::space) return run_end(text, start, cls);
  // `\s+(?!\S)` backs off one character when non-space follows the run;
  // a lone space before non-space falls through to `\s+`.
  size_t end = run_end(text, i, CharClass::space);
  return end < text.size() && end - i > 1 ? end - 1 : end;
}

// ---------------------------------------------------------------------------
// Byte symbols.

// bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the
// others for U+0100 on, in byte order.
const std::array<char32_t, 256>& byte_chars() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> chars{};
    char32_t next = 256;
    for (char32_t b = 0; b < 256; ++b) {
      bool printable = (b >= U'!' && b <= U'~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      chars[b] = printable ? b : next++;
    }
    return chars;
  }();
  return table;
}

constexpr char32_t kByteCharsEnd = 256 + 68;  // byte_to_char() uses code points below this

int byte_of_char(char32_t c) {
  static const std::array<int, kByteCharsEnd> table = [] {
    std::array<int, kByteCharsEnd> bytes;
    bytes.fill(-1);
    for (int b = 0; b < 256; ++b) bytes[byte_chars()[b]] = b;
    return bytes;
  }();
  return c < kByteCharsEnd ? table[c] : -1;
}

// "U+00E9"
std::string code_point_name(char32_t c) {
  char name[16];
  std::snprintf(name, sizeof name, "U+%04X", static_cast<unsigned>(c));
  return name;
}

// What a UTF-8 lead byte needs: `need` continuation bytes (0: not a lead
// byte), the first in [low, high], the others in [0x80, 0xBF].
struct LeadByte {
  size_t need;
  unsigned char low, high;
};

LeadByte lead_byte(unsigned char b) {
  if (b >= 0xC2 && b <= 0xDF) return {1, 0x80, 0xBF};
  if (b == 0xE0) return {2, 0xA0, 0xBF};
  if (b == 0xED) return {2, 0x80, 0x9F};  // no surrogates
  if (b >= 0xE1 && b <= 0xEF) return {2, 0x80, 0xBF};
  if (b == 0xF0) return {3, 0x90, 0xBF};
  if (b == 0xF4) return {3, 0x80, 0x8F};  // nothing above U+10FFFF
  if (b >= 0xF1 && b <= 0xF3) return {3, 0x80, 0xBF};
  return {0, 0, 0};
}

// Length of the well-formed UTF-8 sequence at `pos`, or of the maximal
// prefix of one there (at least 1 byte) when `valid` comes back false.
size_t utf8_sequence(std::string_view bytes, size_t pos, bool& valid) {
  const auto lead = static_cast<unsigned char>(bytes[pos]);
  const LeadByte expected = lead_byte(lead);
  valid = lead < 0x80;
  if (valid || expected.need == 0) return 1;
  for (size_t len = 1; len <= expected.need; ++len) {
    if (pos + len >= bytes.size()) return len;
    const auto next = static_cast<unsigned char>(bytes[pos + len]);
    if (next < (len == 1 ? expected.low : 0x80) || next > (len == 1 ? expected.high : 0xBF)) return len;
  }
  valid = true;
  return expected.need + 1;
}

std::string decode_replace(std::string_view bytes) {
  std::string text;
  text.reserve(bytes.size());
  for (size_t pos = 0; pos < bytes.size();) {
    bool valid = false;
    size_t len = utf8_sequence(bytes, pos, valid);
    if (valid)
      text.append(bytes, pos, len);
    else
      text += "\xEF\xBF\xBD";
    pos += len;
  }
  return text;
}

// ---------------------------------------------------------------------------
// vocab.json.

struct Vocabulary {
  std::unordered_map<std::string, int64_t> ids;
  std::vector<std::string> tokens;  // by id
};

// Reads {"token": id, ...} straight into a hash map: a JSON DOM would cost
// most of the load time. A repeated token keeps its last id, as json.load.
class VocabReader : public nlohmann::json_sax<nlohmann::json> {
 public:
  std::unordered_map<std::string, int64_t> ids;
  std::string problem;  // why parsing stopped

  bool start_object(std::size_t) override { return ++depth_ == 1 || fail("a token's id is an object"); }
  bool end_object() override {
    --depth_;
    return true;
  }
  bool key(string_t& token) override {
    token_ = std::move(token);
    return true;
  }
  bool number_integer(number_integer_t id) override { return add(id); }
  bool number_unsigned(number_unsigned_t id) override {
    return add(static_cast<int64_t>(std::min<number_unsigned_t>(id, INT64_MAX)));
  }
  bool number_float(number_float_t, const string_t& text) override { return fail(value_problem(text)); }
  bool string(string_t& text) override { return fail(value_problem("\"" + text + "\"")); }
  bool boolean(bool value) override { return fail(value_problem(value ? "true" : "false")); }
  bool null() override { return fail(value_problem("null")); }
  bool binary(binary_t&) override { return fail(value_problem("binary")); }
  bool start_array(std::size_t) override { return fail(value_problem("an array")); }
  bool end_array() override { return true; }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) override {
    std::string what = e.what();
    if (auto colon = what.find(": "); colon != std::string::npos && what.find("parse error") < colon)
      what = what.substr(colon + 2);
    return fail("not valid JSON at " + text_position(*text_, std::max<size_t>(position, 1)) + ": " + what);
  }
  const std::string* text_ = nullptr;  // the file's content, for error positions

 private:
  bool fail(const std::string& why) {
    problem = why;
    return false;
  }
  std::string value_problem(const std::string& value) const {
    return depth_ == 0 ? "the top level is " + value + ", not an object"
                       : "token '" + token_ + "' has id " + value + ", not an integer";
  }
  bool add(int64_t id) {
    if (depth_ == 0) return fail("the top level is a number, not an object");
    ids[token_] = id;
    return true;
  }

  int depth_ = 0;
  std::string token_;
};

// HF's encoder and decoder. The ids must number the tokens from 0, each once.
Vocabulary read_vocab(const fs::path& path) {
  const std::string hint = "; a vocab.json maps each token to its id: {\"<s>\": 0, \"<pad>\": 1, ...}";
  VocabReader reader;
  const std::string text = read_file(path);
  reader.text_ = &text;
  if (!nlohmann::json::sax_parse(text, &reader))
    throw Error("'" + path.string() + "': " + reader.problem + hint);
  Vocabulary vocab;
  const int64_t size = static_cast<int64_t>(reader.ids.size());
  vocab.tokens.resize(reader.ids.size());
  std::vector<bool> taken(reader.ids.size(), false);
  for (const auto& entry : reader.ids) {
    const int64_t id = entry.second;
    if (id < 0 || id >= size || taken[static_cast<size_t>(id)])
      throw Error("'" + path.string() + "': token '" + entry.first + "' has id " + std::to_string(id) +
                  "; the ids must be 0.." + std::to_string(size - 1) + ", each once" + hint);
    taken[static_cast<size_t>(id)] = true;
    vocab.tokens[static_cast<size_t>(id)] = entry.first;
  }
  vocab.ids = std::move(reader.ids);
  return vocab;
}

// ---------------------------------------------------------------------------
// merges.txt and bpe().

using Symbol = int32_t;  // index into MergeTable::symbols_

struct Merge {
  int32_t rank;
  Symbol result;
};

// HF's bpe_ranks over interned symbols: every merge's two parts and result,
// and the 256 byte symbols, each get one Symbol for their text.
class MergeTable {
 public:
  explicit MergeTable(size_t merges) {
    ranks_.reserve(merges);
    symbol_ids_.reserve(2 * merges + 256);
    for (int b = 0; b < 256; ++b) byte_symbols_[b] = intern(u32_to_utf8(std::u32string(1, byte_chars()[b])));
  }

  // A later duplicate takes the later rank, as dict(zip(merges, ranks)) does.
  void add(const std::string& first, const std::string& second, int32_t rank) {
    Symbol a = intern(first), b = intern(second);
    ranks_[key(a, b)] = Merge{rank, intern(first + second)};
  }

  // HF's bpe(): merge the lowest-ranked adjacent pair everywhere, left to
  // right, until no adjacent pair has a rank. Appends the pieces to `out`.
  void bpe(std::string_view bytes, std::vector<std::string>& out) const {
    std::vector<Symbol> word;
    word.reserve(bytes.size());
    for (char byte : bytes) word.push_back(byte_symbols_[static_cast<unsigned char>(byte)]);
    while (word.size() > 1) {
      const size_t best = lowest_pair(word);
      if (best == kNone) break;
      merge_pair(word, best);
    }
    for (Symbol symbol : word) out.push_back(symbols_[static_cast<size_t>(symbol)]);
  }

  // Frees what only loading needs.
  void finish_loading() { symbol_ids_ = {}; }
  size_t merges() const { return ranks_.size(); }

 private:
  static constexpr size_t kNone = static_cast<size_t>(-1);

  static uint64_t key(Symbol a, Symbol b) { return static_cast<uint64_t>(a) << 32 | static_cast<uint32_t>(b); }

  Symbol intern(const std::string& text) {
    auto inserted = symbol_ids_.emplace(text, static_cast<Symbol>(symbols_.size()));
    if (inserted.second) symbols_.push_back(text);
    return inserted.first->second;
  }

  const Merge* merge_of(Symbol a, Symbol b) const {
    auto it = ranks_.find(key(a, b));
    return it == ranks_.end() ? nullptr : &it->second;
  }

  // Position of the first pair of the lowest rank (ranks are unique per pair), or kNone.
  size_t lowest_pair(const std::vector<Symbol>& word) const {
    size_t best = kNone;
    int32_t best_rank = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      const Merge* merge = merge_of(word[i], word[i + 1]);
      if (merge && (best == kNone || merge->rank < best_rank)) {
        best = i;
        best_rank = merge->rank;
      }
    }
    return best;
  }

  // Every non-overlapping occurrence of the pair at `at`, left to right,
  // becomes the pair's merge.
  void merge_pair(std::vector<Symbol>& word, size_t at) const {
    const Symbol first = word[at], second = word[at + 1];
    const Symbol result = merge_of(first, second)->result;
    std::vector<Symbol> merged;
    merged.reserve(word.size());
    for (size_t i = 0; i < word.size(); ++i) {
      bool pair = word[i] == first && i + 1 < word.size() && word[i + 1] == second;
      merged.push_back(pair ? result : word[i]);
      i += pair;
    }
    word.swap(merged);
  }

  std::vector<std::string> symbols_;
  std::unordered_map<std::string, Symbol> symbol_ids_;
  std::array<Symbol, 256> byte_symbols_{};
  std::unordered_map<uint64_t, Merge> ranks_;
};

// Python's text-mode reading: "\r\n" and "\r" become "\n".
std::string universal_newlines(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\r') {
      out += text[i];
      continue;
    }
    out += '\n';
    if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
  }
  return out;
}

// One line of merges.txt (line `number` of the file): a pair of symbols
// ranked by its position, or a blank line (HF's empty tuple, which matches no pair).
void add_merge_line(MergeTable& table, std::string_view line, int64_t number, const fs::path& path) {
  const auto parts = python_split(line);
  if (parts.empty()) return;
  if (parts.size() != 2)
    throw Error("'" + path.string() + "' line " + std::to_string(number) + ": expected two symbols, got '" +
                std::string(line) + "'; a merges.txt has a '#version' line, then one 'A B' merge per line");
  table.add(parts[0], parts[1], static_cast<int32_t>(number - 2));
}

// HF: merges_handle.read().split("\n")[1:-1], each line split(). The first
// line (#version) and whatever follows the last newline are no merges.
MergeTable read_merges(const fs::path& path) {
  const std::string text = universal_newlines(read_file(path));
  const std::string fix = "; a merges.txt has a '#version' line, then one 'A B' merge per line: use the merges.txt "
                          "that came with the model's vocab.json";
  if (text.compare(0, 8, "#version") != 0)
    spdlog::warn("'{}' does not start with a '#version' line: its first line ('{}') is skipped as the header, as "
                 "transformers does, so that merge is lost",
                 path.string(), text.substr(0, std::min(text.find('\n'), size_t{80})));
  MergeTable table(static_cast<size_t>(std::count(text.begin(), text.end(), '\n')));
  size_t line_start = text.find('\n');  // the newline before the line
  for (int64_t number = 2; line_start != std::string::npos; ++number) {
    const size_t line_end = text.find('\n', line_start + 1);
    if (line_end == std::string::npos) break;
    add_merge_line(table, std::string_view(text).substr(line_start + 1, line_end - line_start - 1), number, path);
    line_start = line_end;
  }
  if (table.merges() == 0)
    throw Error("'" + path.string() + "' holds no merges (" + std::to_string(text.size()) +
                " bytes): every word would fall apart into single bytes" + fix);
  table.finish_loading();
  return table;
}

}  // namespace

std::vector<std::u32string> gpt2_pretokenize(const std::u32string& text) {
  std::vector<std::u32string> matches;
  for (size_t i = 0; i < text.size();) {
    const size_t end = match_end(text, i);
    matches.push_back(text.substr(i, end - i));
    i = end;
  }
  return matches;
}

size_t gpt2_match_end(const std::u32string& text, size_t i) { return match_end(text, i); }

char32_t byte_to_char(unsigned char byte) { return byte_chars()[byte]; }

int char_to_byte(char32_t c) { return byte_of_char(c); }

std::string decode_utf8_replace(std::string_view bytes) { return decode_replace(bytes); }

// bpe() of each pre-token seen, as GPT2Tokenizer's self.cache: SQuAD
// featurisation tokenises the same context words over and over. Readers share
// the lock; a full cache stops growing (its entries stay valid).
class BpeCache {
 public:
  void bpe(const MergeTable& merges, const std::string& token, std::vector<std::string>& out) const {
    {
      std::shared_lock<std::shared_mutex> read(mutex_);
      auto hit = pieces_.find(token);
      if (hit != pieces_.end()) {
        out.insert(out.end(), hit->second.begin(), hit->second.end());
        return;
      }
    }
    std::vector<std::string> pieces;
    merges.bpe(token, pieces);
    out.insert(out.end(), pieces.begin(), pieces.end());
    std::unique_lock<std::shared_mutex> write(mutex_);
    if (pieces_.size() < kMaxEntries) pieces_.emplace(token, std::move(pieces));
  }

 private:
  static constexpr size_t kMaxEntries = 1 << 20;
  mutable std::shared_mutex mutex_;
  mutable std::unordered_map<std::string, std::vector<std::string>> pieces_;
};

struct ByteLevelBpe::Impl {
  Impl(const fs::path& vocab_json, const fs::path& merges_txt)
      : vocab(read_vocab(vocab_json)), merges(read_merges(merges_txt)) {}

  Vocabulary vocab;
  MergeTable merges;
  BpeCache cache;
};

ByteLevelBpe::ByteLevelBpe(const fs::path& vocab_json, const fs::path& merges_txt)
    : impl_(std::make_unique<Impl>(vocab_json, merges_txt)) {}

ByteLevelBpe::~ByteLevelBpe() = default;

void ByteLevelBpe::bpe(const std::string& bytes, std::vector<std::string>& out) const {
  impl_->cache.bpe(impl_->merges, bytes, out);
}

void ByteLevelBpe::tokenize(const std::u32string& text, std::vector<std::string>& out) const {
  for (size_t i = 0; i < text.size();) {
    const size_t end = match_end(text, i);
    bpe(u32_to_utf8(std::u32string_view(text).substr(i, end - i)), out);
    i = end;
  }
}

int64_t ByteLevelBpe::find(const std::string& token) const {
  auto it = impl_->vocab.ids.find(token);
  return it == impl_->vocab.ids.end() ? -1 : it->second;
}

const std::string& ByteLevelBpe::token(int64_t id) const {
  if (id < 0 || id >= size())
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(size()) +
                " tokens (ids 0.." + std::to_string(size() - 1) + ")");
  return impl_->vocab.tokens[static_cast<size_t>(id)];
}

int64_t ByteLevelBpe::size() const { return static_cast<int64_t>(impl_->vocab.tokens.size()); }

std::string ByteLevelBpe::decode(const std::vector<std::string>& tokens) {
  std::string bytes;
  for (const auto& token : tokens)
    for (char32_t c : utf8_to_u32(token)) {
      int byte = byte_of_char(c);
      if (byte < 0)
        throw Error("token '" + token + "' is not byte-level BPE: " + code_point_name(c) + " stands for no byte");
      bytes += static_cast<char>(byte);
    }
  return decode_replace(bytes);
}

}  // namespace layerprobe
