#include "layerprobe/text/tokenizer.hpp"

#include <algorithm>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

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

Tokenizer::Tokenizer(SpecialTokens specials, TokenizerSettings settings, const std::string& source)
    : specials_(std::move(specials)), settings_(std::move(settings)) {
  specials_.apply(settings_.special_tokens, source);
}

int64_t Tokenizer::pad_id() const {
  for (const std::string* token : {&specials_.pad, &specials_.unk, &specials_.eos})
    if (!token->empty()) return token_to_id(*token);
  return 0;
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

std::vector<int64_t> Tokenizer::encode_with_special_tokens(const std::string& text) const {
  auto [before, after] = single_layout();
  auto ids = encode(text);
  before.insert(before.end(), ids.begin(), ids.end());
  before.insert(before.end(), after.begin(), after.end());
  return before;
}

}  // namespace layerprobe
