// Reading a tokenizer.json file (private to src/text/).
#pragma once

#include <filesystem>

#include "text/tokenizer_json/components.hpp"

namespace layerprobe::tokenizer_json {

struct ParsedTokenizerJson {
  json config;         // the file without model.vocab and model.merges
  ModelTables tables;  // those two
};

// Error naming the file and the line and column of a syntax error, or what is malformed.
ParsedTokenizerJson read_tokenizer_json(const std::filesystem::path& path);

}  // namespace layerprobe::tokenizer_json
