// JSON files of tokenizers (tokenizer_config.json, special_tokens_map.json)
// read with errors that name the file and the line and column where the
// syntax breaks. Private to src/text/. (The streaming readers of vocab.json
// and tokenizer.json report positions with core/json.hpp's text_position.)
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>

#include "layerprobe/core/json.hpp"  // text_position

namespace layerprobe {

// The parsed file; Error naming the file (and the line and column of a syntax
// error). A key given twice keeps the last value, as Python's json.load does.
nlohmann::json read_json_file(const std::filesystem::path& path);

}  // namespace layerprobe
