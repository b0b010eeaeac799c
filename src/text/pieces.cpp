#include "text/albert_tokenizer.hpp"

namespace layerprobe {

std::string join_pieces(const std::vector<std::string>& pieces) {
  static const std::string kSpaceMark = "\xE2\x96\x81";  // U+2581
  std::string joined;
  for (const auto& piece : pieces) joined += piece;
  std::string text;
  text.reserve(joined.size());
  for (size_t i = 0; i < joined.size();) {
    if (joined.compare(i, kSpaceMark.size(), kSpaceMark) == 0) {
      text += ' ';
      i += kSpaceMark.size();
    } else {
      text += joined[i++];
    }
  }
  // Python's str.strip() with no argument strips Unicode whitespace; the
  // pieces only ever carry ASCII whitespace at the ends, from U+2581.
  size_t begin = text.find_first_not_of(" \t\n\r\f\v");
  if (begin == std::string::npos) return "";
  size_t end = text.find_last_not_of(" \t\n\r\f\v");
  return text.substr(begin, end - begin + 1);
}

}  // namespace layerprobe
