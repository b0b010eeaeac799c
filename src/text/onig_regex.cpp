#include "text/onig_regex.hpp"

#include <oniguruma.h>

#include <mutex>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

namespace {

void initialize_oniguruma() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
}

size_t utf8_length_at(std::string_view text, size_t pos) {
  if (pos >= text.size()) return 1;
  const auto lead = static_cast<unsigned char>(text[pos]);
  size_t length = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
  return std::min(length, text.size() - pos);
}

struct RegionDeleter {
  void operator()(OnigRegion* region) const { onig_region_free(region, 1); }
};

}  // namespace

OnigRegex::OnigRegex(const std::string& pattern) : pattern_(pattern) {
  initialize_oniguruma();
  OnigErrorInfo info;
  regex_t* regex = nullptr;
  const auto* begin = reinterpret_cast<const OnigUChar*>(pattern.data());
  const int status = onig_new(&regex, begin, begin + pattern.size(), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8,
                              ONIG_SYNTAX_DEFAULT, &info);
  if (status != ONIG_NORMAL) {
    OnigUChar message[ONIG_MAX_ERROR_MESSAGE_LEN];
    onig_error_code_to_str(message, status, &info);
    throw Error("regular expression '" + pattern + "' does not compile: " + reinterpret_cast<char*>(message));
  }
  regex_ = regex;
}

OnigRegex::~OnigRegex() {
  if (regex_) onig_free(static_cast<regex_t*>(regex_));
}

std::vector<std::pair<size_t, size_t>> OnigRegex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  std::unique_ptr<OnigRegion, RegionDeleter> region(onig_region_new());
  const auto* begin = reinterpret_cast<const OnigUChar*>(text.data());
  const auto* end = begin + text.size();
  size_t last_end = 0;
  bool matched_before = false;
  size_t last_match_end = 0;
  while (last_end <= text.size()) {
    onig_region_clear(region.get());
    const auto found = onig_search(static_cast<regex_t*>(regex_), begin, end, begin + last_end, end, region.get(),
                                   ONIG_OPTION_NONE);
    if (found < 0) {
      if (found == ONIG_MISMATCH) break;
      OnigUChar message[ONIG_MAX_ERROR_MESSAGE_LEN];
      onig_error_code_to_str(message, static_cast<int>(found));
      throw Error("regular expression '" + pattern_ + "' failed on a text: " + reinterpret_cast<char*>(message));
    }
    const auto start = static_cast<size_t>(region->beg[0]), stop = static_cast<size_t>(region->end[0]);
    if (start == stop && matched_before && last_match_end == stop) {
      last_end += utf8_length_at(text, last_end);
      continue;
    }
    last_end = stop;
    last_match_end = stop;
    matched_before = true;
    matches.emplace_back(start, stop);
  }
  return matches;
}

std::string regex_escape(const std::string& text) {
  static const std::string meta = "\\.+*?()|[]{}^$#&-~";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (meta.find(c) != std::string::npos) out += '\\';
    out += c;
  }
  return out;
}

}  // namespace layerprobe
