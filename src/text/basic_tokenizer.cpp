#include "layerprobe/text/basic_tokenizer.hpp"

#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>

#include "layerprobe/core/python_str.hpp"

namespace layerprobe {

namespace {

utf8proc_category_t category(char32_t c) { return utf8proc_category(static_cast<utf8proc_int32_t>(c)); }

bool is_bert_whitespace(char32_t c) {
  return c == U' ' || c == U'\t' || c == U'\n' || c == U'\r' || category(c) == UTF8PROC_CATEGORY_ZS;
}

bool is_bert_control(char32_t c) {
  if (c == U'\t' || c == U'\n' || c == U'\r') return false;
  switch (category(c)) {
    case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS: case UTF8PROC_CATEGORY_CO:
      return true;
    default:
      return false;
  }
}

bool is_cjk_ideograph(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
         (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) ||
         (cp >= 0x2B820 && cp <= 0x2CEAF) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// _clean_text followed by _tokenize_chinese_chars.
std::u32string clean_text(const std::u32string& text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (c == 0 || c == 0xFFFD || is_bert_control(c)) continue;
    if (is_bert_whitespace(c)) {
      out.push_back(U' ');
    } else if (is_cjk_ideograph(c)) {
      out.push_back(U' ');
      out.push_back(c);
      out.push_back(U' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// unicodedata.normalize("NFD", text) without the nonspacing marks (Mn).
std::u32string strip_accents(const std::u32string& text) {
  bool ascii = true;
  for (char32_t c : text) ascii = ascii && c < 0x80;
  if (ascii) return text;  // NFD leaves ASCII alone and it has no marks
  std::string utf8 = u32_to_utf8(text);
  utf8proc_uint8_t* decomposed = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(utf8.data()),
                                    static_cast<utf8proc_ssize_t>(utf8.size()), &decomposed,
                                    static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE));
  std::u32string nfd = n >= 0 ? utf8_to_u32(std::string_view(reinterpret_cast<char*>(decomposed), static_cast<size_t>(n)))
                              : text;
  std::free(decomposed);
  std::u32string out;
  out.reserve(nfd.size());
  for (char32_t c : nfd)
    if (category(c) != UTF8PROC_CATEGORY_MN) out.push_back(c);
  return out;
}

void split_on_punctuation(const std::u32string& word, std::vector<std::u32string>& out) {
  bool start_new_word = true;
  for (char32_t c : word) {
    if (is_bert_punctuation(c)) {
      out.emplace_back(1, c);
      start_new_word = true;
    } else {
      if (start_new_word) out.emplace_back();
      start_new_word = false;
      out.back().push_back(c);
    }
  }
}

}  // namespace

bool is_bert_punctuation(char32_t c) {
  // All non-alphanumeric ASCII counts, even "^", "$" and "`", which Unicode
  // does not class as punctuation.
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126))
    return true;
  switch (category(c)) {
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE: case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
      return true;
    default:
      return false;
  }
}

std::vector<std::u32string> bert_basic_tokenize(const std::u32string& text, bool do_lower_case,
                                                const std::vector<std::u32string>& never_split) {
  std::vector<std::u32string> split_tokens;
  for (auto& token : python_split(clean_text(text))) {
    bool keep = std::find(never_split.begin(), never_split.end(), token) != never_split.end();
    if (do_lower_case && !keep) token = strip_accents(python_lower(token));
    split_on_punctuation(token, split_tokens);
  }
  // HF re-splits " ".join(split_tokens), which drops the empty words a token
  // made only of accents leaves behind.
  return python_split(join_words(split_tokens));
}

}  // namespace layerprobe
