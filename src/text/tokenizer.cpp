#include "layerprobe/text/tokenizer.hpp"

#include <algorithm>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"

namespace layerprobe {

namespace {

// Python's str.rstrip() with no argument.
std::u32string rstrip(std::u32string text) {
  while (!text.empty() && python_isspace(text.back())) text.pop_back();
  return text;
}

// Python's text.split(separator).
std::vector<std::u32string> split_on(const std::u32string& text, const std::u32string& separator) {
  std::vector<std::u32string> parts;
  size_t pos = 0;
  for (size_t hit; (hit = text.find(separator, pos)) != std::u32string::npos; pos = hit + separator.size())
    parts.push_back(text.substr(pos, hit - pos));
  parts.push_back(text.substr(pos));
  return parts;
}

// 2.5.1's split_on_token: the text around each occurrence of `token`,
// right-stripped, with `token` itself in between.
void split_on_token(const std::u32string& token, const std::u32string& text, std::vector<std::u32string>& result) {
  auto parts = split_on(text, token);
  for (size_t i = 0; i < parts.size(); ++i) {
    auto part = rstrip(parts[i]);
    if (i == 0 && part.empty()) {
      result.push_back(token);
    } else if (i + 1 == parts.size()) {
      if (!part.empty()) result.push_back(part);
    } else {
      if (!part.empty()) result.push_back(part);
      result.push_back(token);
    }
  }
}

bool contains(const std::vector<std::u32string>& list, const std::u32string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

}  // namespace

std::vector<std::string> SpecialTokens::all() const {
  std::vector<std::string> tokens;
  for (const std::string* token : {&bos, &eos, &unk, &sep, &pad, &cls, &mask})
    if (!token->empty() && std::find(tokens.begin(), tokens.end(), *token) == tokens.end()) tokens.push_back(*token);
  return tokens;
}

void SpecialTokens::apply(const std::map<std::string, std::string>& overrides, const std::string& source) {
  const std::pair<const char*, std::string*> slots[] = {{"bos_token", &bos}, {"eos_token", &eos},
                                                        {"unk_token", &unk}, {"sep_token", &sep},
                                                        {"pad_token", &pad}, {"cls_token", &cls},
                                                        {"mask_token", &mask}};
  for (const auto& entry : overrides) {
    const std::string& key = entry.first;
    auto slot = std::find_if(std::begin(slots), std::end(slots), [&](const auto& s) { return key == s.first; });
    if (slot == std::end(slots))
      throw Error(source + ": unknown special token '" + key +
                  "' (known: bos_token, eos_token, unk_token, sep_token, pad_token, cls_token, mask_token)");
    *slot->second = entry.second;
  }
}

std::u32string lowercase_outside_specials(const std::u32string& text, const std::vector<std::u32string>& specials) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    auto special = std::find_if(specials.begin(), specials.end(), [&](const std::u32string& s) {
      return !s.empty() && text.compare(i, s.size(), s) == 0;
    });
    if (special != specials.end()) {
      out += *special;
      i += special->size();
    } else {
      out += python_lower(std::u32string_view(&text[i], 1));
      ++i;
    }
  }
  return out;
}

std::vector<std::u32string> split_on_special_tokens(const std::u32string& text,
                                                    const std::vector<std::u32string>& specials) {
  if (std::all_of(text.begin(), text.end(), python_isspace)) return {};
  std::vector<std::u32string> segments{text};
  for (const auto& token : specials) {
    std::vector<std::u32string> next;
    for (const auto& segment : segments) {
      if (contains(specials, segment))
        next.push_back(segment);
      else
        split_on_token(token, segment, next);
    }
    segments.swap(next);
  }
  return segments;
}

Tokenizer::Tokenizer(SpecialTokens specials, TokenizerSettings settings, const std::string& source)
    : specials_(std::move(specials)), settings_(std::move(settings)) {
  specials_.apply(settings_.special_tokens, source);
  for (const auto& token : specials_.all()) special_texts_.push_back(utf8_to_u32(token));
}

std::vector<std::string> Tokenizer::tokenize(const std::string& text) const {
  std::u32string chars = utf8_to_u32(text);
  if (settings_.do_lower_case.value_or(false)) chars = lowercase_outside_specials(chars, special_texts_);
  std::vector<std::string> tokens;
  for (const auto& segment : split_on_special_tokens(chars, special_texts_)) {
    if (contains(special_texts_, segment))
      tokens.push_back(u32_to_utf8(segment));
    else
      tokenize_text(segment, tokens);
  }
  return tokens;
}

std::vector<int64_t> Tokenizer::convert_tokens_to_ids(const std::vector<std::string>& tokens) const {
  std::vector<int64_t> ids;
  ids.reserve(tokens.size());
  for (const auto& token : tokens) ids.push_back(token_to_id(token));
  return ids;
}

std::vector<std::string> Tokenizer::convert_ids_to_tokens(const std::vector<int64_t>& ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int64_t id : ids) tokens.push_back(id_to_token(id));
  return tokens;
}

std::vector<int64_t> Tokenizer::encode(const std::string& text) const { return convert_tokens_to_ids(tokenize(text)); }

}  // namespace layerprobe
