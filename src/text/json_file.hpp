// JSON files of tokenizers (tokenizer.json, tokenizer_config.json,
// special_tokens_map.json, vocab.json) read with errors that name the file and
// the line and column where the syntax breaks. Private to src/text/.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace layerprobe {

// "line L, column C" of the byte at `offset` (0-based) of `text`; columns count code points from 1.
std::string text_position(const std::string& text, size_t offset);

// "<file>: not valid JSON at line L, column C: <what the parser expected>" for
// nlohmann's parse_error `e` on `text`.
std::string json_syntax_error(const std::filesystem::path& file, const std::string& text,
                              const nlohmann::json::parse_error& e);

// The parsed file; Error naming the file (and the line and column of a syntax error).
nlohmann::json read_json_file(const std::filesystem::path& path);

}  // namespace layerprobe
