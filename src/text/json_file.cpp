#include "text/json_file.hpp"

#include <algorithm>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

std::string text_position(const std::string& text, size_t offset) {
  offset = std::min(offset, text.size());
  size_t line = 1, column = 1;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

std::string json_syntax_error(const std::filesystem::path& file, const std::string& text,
                              const nlohmann::json::parse_error& e) {
  // nlohmann's message: "[json.exception.parse_error.101] parse error at line 1, column 2: syntax error ...".
  std::string what = e.what();
  if (auto colon = what.find(": "); colon != std::string::npos && what.find("parse error") < colon)
    what = what.substr(colon + 2);
  // e.byte is 1-based: the byte the parser stopped at.
  const size_t offset = e.byte > 0 ? e.byte - 1 : 0;
  return file.string() + ": not valid JSON at " + text_position(text, offset) + ": " + what;
}

nlohmann::json read_json_file(const std::filesystem::path& path) {
  const std::string text = read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(json_syntax_error(path, text, e));
  }
}

}  // namespace layerprobe
