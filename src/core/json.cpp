#include "layerprobe/core/json.hpp"

#include <set>
#include <vector>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

using nlohmann::json;

std::string text_position(const std::string& text, size_t byte) {
  const size_t end = std::min(text.size(), byte > 0 ? byte - 1 : 0);
  size_t line = 1, column = 1;
  for (size_t i = 0; i < end; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {  // not a UTF-8 continuation byte
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

json parse_json(const std::string& text, const std::string& source, bool reject_duplicate_keys) {
  // Each open object's keys so far, and where it lies (for the message).
  std::vector<std::set<std::string>> keys;
  std::vector<std::string> paths;
  std::string last_key;
  auto callback = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        paths.push_back(paths.empty() ? "the top-level object" : "the object under '" + last_key + "'");
        keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        keys.pop_back();
        paths.pop_back();
        break;
      case json::parse_event_t::key:
        last_key = parsed.get<std::string>();
        if (reject_duplicate_keys && !keys.empty() && !keys.back().insert(last_key).second)
          throw Error(source + ": key '" + last_key + "' appears twice in " + paths.back() +
                      "; readers would silently keep only one of the values: remove the other");
        break;
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(text, callback);
  } catch (const json::parse_error& e) {
    // nlohmann's message repeats its own position; keep the reason after "parse error at ...: ".
    std::string reason = e.what();
    if (auto colon = reason.find(": ", reason.find("parse error")); colon != std::string::npos)
      reason = reason.substr(colon + 2);
    throw Error(source + ": not valid JSON at " + text_position(text, e.byte) + ": " + reason);
  } catch (const json::exception& e) {  // a number too large for a double (1e999)
    throw Error(source + ": not valid JSON: " + e.what());
  }
}

}  // namespace layerprobe
