// What the tokenizer.json components share: reading their JSON, the Rust
// library's character classes, patterns and split behaviours.
#include <utf8proc.h>

#include <cstdlib>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"
#include "text/onig_regex.hpp"
#include "text/tokenizer_json/components.hpp"

namespace layerprobe::tokenizer_json {

const json* member(const json& object, const char* key, const Where&) {
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

std::string string_member(const json& object, const char* key, const Where& where, const std::string* fallback) {
  const json* value = member(object, key, where);
  if ((!value || value->is_null()) && fallback) return *fallback;
  if (!value || !value->is_string()) throw Error(where.at(key)() + " must be a string");
  return value->get<std::string>();
}

bool bool_member(const json& object, const char* key, const Where& where, bool fallback) {
  const json* value = member(object, key, where);
  if (!value || value->is_null()) return fallback;
  if (!value->is_boolean()) throw Error(where.at(key)() + " must be true or false");
  return value->get<bool>();
}

bool is_rust_whitespace(char32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_rust_other(char32_t c) {
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_CS:
      return true;
    default:
      return false;
  }
}

bool is_rust_numeric(char32_t c) {
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

bool is_rust_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS: case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF: case UTF8PROC_CATEGORY_PO:
      return true;
    default:
      return false;
  }
}

std::string unicode_normalize(const std::string& text, int utf8proc_options) {
  if (text.empty()) return text;
  utf8proc_uint8_t* mapped = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                          static_cast<utf8proc_ssize_t>(text.size()), &mapped,
                                          static_cast<utf8proc_option_t>(UTF8PROC_STABLE | utf8proc_options));
  if (n < 0) throw Error(std::string("Unicode normalisation failed: ") + utf8proc_errmsg(n));
  std::string out(reinterpret_cast<char*>(mapped), static_cast<size_t>(n));
  std::free(mapped);
  return out;
}

std::string lowercase_each(const std::string& text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : utf8_to_u32(text)) out += python_lower(std::u32string_view(&c, 1));
  return u32_to_utf8(out);
}

std::string valid_utf8(const std::string& text) {
  auto bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  for (size_t pos = 0; pos < text.size();) {
    utf8proc_int32_t c;
    auto n = utf8proc_iterate(bytes + pos, static_cast<utf8proc_ssize_t>(text.size() - pos), &c);
    if (n <= 0) return u32_to_utf8(utf8_to_u32(text));
    pos += static_cast<size_t>(n);
  }
  return text;
}

SplitPattern::SplitPattern(const json& pattern, const Where& where) {
  if (!pattern.is_object() || pattern.size() != 1 || !pattern.begin().value().is_string())
    throw Error(where() + " must be {\"String\": \"...\"} or {\"Regex\": \"...\"}");
  const std::string kind = pattern.begin().key(), text = pattern.begin().value().get<std::string>();
  if (kind == "String" && !text.empty()) {
    literal_ = text;
  } else if (kind == "String" || kind == "Regex") {
    try {
      regex_ = std::make_unique<OnigRegex>(kind == "String" ? regex_escape(text) : text);
    } catch (const Error& e) {
      throw Error(where() + ": " + e.what());
    }
  } else {
    throw Error(where() + ": pattern kind '" + kind + "' is not String or Regex");
  }
}

SplitPattern::SplitPattern(SplitPattern&&) noexcept = default;
SplitPattern::~SplitPattern() = default;

std::vector<Span> SplitPattern::find(const std::string& text) const {
  if (text.empty()) return {{0, 0, false}};
  std::vector<Span> spans;
  size_t previous = 0;
  auto add_match = [&](size_t start, size_t end) {
    if (previous != start) spans.push_back({previous, start, false});
    spans.push_back({start, end, true});
    previous = end;
  };
  if (regex_) {
    for (const auto& [start, end] : regex_->find_all(text)) add_match(start, end);
  } else {
    for (size_t hit; (hit = text.find(literal_, previous)) != std::string::npos;) add_match(hit, hit + literal_.size());
  }
  if (previous != text.size()) spans.push_back({previous, text.size(), false});
  return spans;
}

std::string SplitPattern::replace(const std::string& text, const std::string& content) const {
  std::string out;
  out.reserve(text.size());
  for (const auto& span : find(text)) {
    if (span.is_match)
      out += content;
    else
      out.append(text, span.start, span.end - span.start);
  }
  return out;
}

SplitPattern pattern_member(const json& config, const Where& where) {
  const json* pattern = member(config, "pattern", where);
  if (!pattern) throw Error(where.at("pattern")() + " is missing");
  return SplitPattern(*pattern, where.at("pattern"));
}

std::vector<Span> char_spans(const std::string& text, bool (*matches)(char32_t)) {
  if (text.empty()) return {{0, 0, false}};
  std::vector<Span> spans;
  size_t last = 0;
  auto bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  for (size_t pos = 0; pos < text.size();) {
    utf8proc_int32_t c = 0;
    auto n = utf8proc_iterate(bytes + pos, static_cast<utf8proc_ssize_t>(text.size() - pos), &c);
    const size_t length = n > 0 ? static_cast<size_t>(n) : 1;
    if (n > 0 && matches(static_cast<char32_t>(c))) {
      if (last < pos) spans.push_back({last, pos, false});
      spans.push_back({pos, pos + length, true});
      last = pos + length;
    }
    pos += length;
  }
  if (last < text.size()) spans.push_back({last, text.size(), false});
  return spans;
}

SplitBehavior parse_split_behavior(const std::string& name, const Where& where) {
  if (name == "Removed") return SplitBehavior::removed;
  if (name == "Isolated") return SplitBehavior::isolated;
  if (name == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (name == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (name == "Contiguous") return SplitBehavior::contiguous;
  throw Error(where() + ": split behavior '" + name +
              "' is unknown (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)");
}

std::vector<std::pair<size_t, size_t>> split_spans(const std::vector<Span>& spans, SplitBehavior behavior) {
  struct Kept {
    size_t start, end;
    bool remove;
  };
  std::vector<Kept> kept;
  switch (behavior) {
    case SplitBehavior::isolated:
      for (const auto& s : spans) kept.push_back({s.start, s.end, false});
      break;
    case SplitBehavior::removed:
      for (const auto& s : spans) kept.push_back({s.start, s.end, s.is_match});
      break;
    case SplitBehavior::contiguous: {
      bool previous_match = false;
      for (const auto& s : spans) {
        if (s.is_match == previous_match && !kept.empty())
          kept.back().end = s.end;
        else
          kept.push_back({s.start, s.end, false});
        previous_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::merged_with_previous: {
      bool previous_match = false;
      for (const auto& s : spans) {
        if (s.is_match && !previous_match && !kept.empty())
          kept.back().end = s.end;
        else
          kept.push_back({s.start, s.end, false});
        previous_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::merged_with_next: {
      bool previous_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !kept.empty())
          kept.back().start = it->start;
        else
          kept.push_back({it->start, it->end, false});
        previous_match = it->is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    }
  }
  std::vector<std::pair<size_t, size_t>> out;
  for (const auto& k : kept)
    if (!k.remove) out.emplace_back(k.start, k.end);
  return out;
}

}  // namespace layerprobe::tokenizer_json
