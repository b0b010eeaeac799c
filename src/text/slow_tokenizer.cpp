#include "text/slow_tokenizer.hpp"

#include <algorithm>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"

namespace layerprobe {

namespace {

// Python's str.rstrip() / str.lstrip() with no argument.
std::u32string rstrip(std::u32string text) {
  while (!text.empty() && python_isspace(text.back())) text.pop_back();
  return text;
}

std::u32string lstrip(const std::u32string& text) {
  size_t begin = 0;
  while (begin < text.size() && python_isspace(text[begin])) ++begin;
  return text.substr(begin);
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

std::vector<TokenMatch> find_added_tokens(const std::u32string& text, const std::vector<std::u32string>& tokens) {
  std::vector<TokenMatch> matches;
  if (tokens.empty()) return matches;
  for (size_t i = 0; i < text.size();) {
    size_t best = tokens.size(), best_length = 0;
    for (size_t t = 0; t < tokens.size(); ++t) {
      const auto& token = tokens[t];
      if (token.size() > best_length && text.compare(i, token.size(), token) == 0) {
        best = t;
        best_length = token.size();
      }
    }
    if (best == tokens.size()) {
      ++i;
      continue;
    }
    matches.push_back({i, i + best_length, best});
    i += best_length;
  }
  return matches;
}

SlowTokenizer::SlowTokenizer(SpecialTokens specials, TokenizerSettings settings, const std::string& source,
                             HfGeneration generation, const std::vector<AddedToken>& flags)
    : Tokenizer(std::move(specials), std::move(settings), source), generation_(generation) {
  auto find = [&](const std::string& content) {
    return std::find_if(added_.begin(), added_.end(), [&](const AddedToken& t) { return t.content == content; });
  };
  for (const auto& token : special_tokens().all()) {
    auto given = std::find_if(flags.begin(), flags.end(), [&](const AddedToken& t) { return t.content == token; });
    AddedToken added = given != flags.end() ? *given : AddedToken{token};
    added.special = true;
    added_.push_back(added);
  }
  if (generation_ == HfGeneration::v4_57_5) {
    for (const auto& [id, token] : this->settings().added_tokens) {
      if (token.content.empty()) continue;
      auto known = find(token.content);
      if (known == added_.end())
        added_.push_back(token);
      else
        *known = token;
      if (id >= 0) {
        added_ids_[token.content] = id;
        added_by_id_[id] = token.content;
      }
    }
  }
  for (const auto& token : added_) {
    added_texts_.push_back(utf8_to_u32(token.content));
    if (token.special || (generation_ == HfGeneration::v4_57_5 && token.normalized))
      lowercase_keep_.push_back(added_texts_.back());
  }
}

int64_t SlowTokenizer::token_to_id(const std::string& token) const {
  auto it = added_ids_.find(token);
  return it != added_ids_.end() ? it->second : vocab_token_to_id(token);
}

std::string SlowTokenizer::id_to_token(int64_t id) const {
  auto it = added_by_id_.find(id);
  return it != added_by_id_.end() ? it->second : vocab_id_to_token(id);
}

std::vector<std::string> SlowTokenizer::tokenize(const std::string& text) const {
  std::u32string chars = prepare_for_tokenization(utf8_to_u32(text));
  if (prelowercases()) chars = lowercase_outside_specials(chars, lowercase_keep_);
  return generation_ == HfGeneration::v2_5_1 ? tokenize_v2(std::move(chars)) : tokenize_v4(std::move(chars));
}

std::vector<std::string> SlowTokenizer::tokenize_v2(std::u32string text) const {
  std::vector<std::string> tokens;
  for (const auto& segment : split_on_special_tokens(text, added_texts_)) {
    if (contains(added_texts_, segment))
      tokens.push_back(u32_to_utf8(segment));
    else
      tokenize_text(segment, tokens);
  }
  return tokens;
}

std::vector<std::string> SlowTokenizer::tokenize_v4(std::u32string text) const {
  // Trie.split: text segments and added tokens, no empty segment.
  std::vector<std::u32string> segments;
  size_t done = 0;
  for (const auto& match : find_added_tokens(text, added_texts_)) {
    if (match.start > done) segments.push_back(text.substr(done, match.start - done));
    segments.push_back(added_texts_[match.token]);
    done = match.end;
  }
  if (done < text.size()) segments.push_back(text.substr(done));
  // The AddedToken flags, in HF's order; `left` and `right` are read before either side changes.
  auto added_index = [&](const std::u32string& segment) {
    return static_cast<size_t>(std::find(added_texts_.begin(), added_texts_.end(), segment) - added_texts_.begin());
  };
  for (size_t i = 0; i < segments.size(); ++i) {
    const size_t a = added_index(segments[i]);
    if (a == added_texts_.size()) continue;
    const AddedToken& flags = added_[a];
    const std::u32string token = segments[i];
    const std::u32string left = i > 0 ? segments[i - 1] : std::u32string();
    const std::u32string right = i + 1 < segments.size() ? segments[i + 1] : std::u32string();
    if (flags.rstrip && !right.empty()) segments[i + 1] = lstrip(right);
    if (flags.lstrip && !left.empty()) segments[i - 1] = rstrip(left);
    if (flags.single_word && !left.empty() && left.back() != U' ') {
      segments[i - 1] += token;
      segments[i].clear();
    } else if (flags.single_word && !right.empty() && right.front() != U' ') {
      segments[i + 1] = token + segments[i + 1];
      segments[i].clear();
    }
  }
  std::vector<std::string> tokens;
  for (const auto& segment : segments) {
    if (segment.empty()) continue;
    if (added_index(segment) < added_texts_.size())
      tokens.push_back(u32_to_utf8(segment));
    else
      tokenize_text(segment, tokens);
  }
  return tokens;
}

}  // namespace layerprobe
