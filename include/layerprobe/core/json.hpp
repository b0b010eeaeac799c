// Reading JSON files layerprobe is given (config.json, trainer_state.json,
// preds_meta.json): a syntax error names the file, line and column; a key
// given twice in one object is an error rather than silently the last one.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace layerprobe {

// Parses `text`; Error naming `source` with the line and column of a syntax
// error (NaN and Infinity literals included: they are not JSON), or naming a
// key that appears twice in one object when `reject_duplicate_keys`.
nlohmann::json parse_json(const std::string& text, const std::string& source, bool reject_duplicate_keys = true);

// "line L, column C" of the 1-based byte position `byte` in `text` (as
// nlohmann's parse_error::byte counts); columns count UTF-8 code points from 1.
std::string text_position(const std::string& text, size_t byte);

}  // namespace layerprobe
