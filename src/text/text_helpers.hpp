// Small string helpers the tokenizer kinds share (private to src/text/).
#pragma once

#include <string>

#include "layerprobe/core/python_str.hpp"

namespace layerprobe {

// U+2581, SentencePiece's word-start mark, in UTF-8.
inline const std::string& space_mark() {
  static const std::string mark = "\xE2\x96\x81";
  return mark;
}

// Python's str.strip() with no argument (Unicode whitespace) on UTF-8 text.
inline std::string python_strip(const std::string& text) {
  auto chars = utf8_to_u32(text);
  size_t begin = 0, end = chars.size();
  while (begin < end && python_isspace(chars[begin])) ++begin;
  while (end > begin && python_isspace(chars[end - 1])) --end;
  return u32_to_utf8(std::u32string_view(chars).substr(begin, end - begin));
}

// Python's str.replace(from, to) on UTF-8 text: non-overlapping, left to right.
inline std::string replace_all(const std::string& text, const std::string& from, const std::string& to) {
  if (from.empty()) return text;
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::string::npos; pos = hit + from.size())
    out.append(text, pos, hit - pos).append(to);
  return out.append(text, pos, std::string::npos);
}

}  // namespace layerprobe
