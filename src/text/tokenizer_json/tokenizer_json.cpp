#include "text/tokenizer_json/tokenizer_json.hpp"

#include <utf8proc.h>

#include <algorithm>
#include <unordered_map>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"
#include "text/slow_tokenizer.hpp"
#include "text/tokenizer_json/components.hpp"
#include "text/tokenizer_json/reader.hpp"

namespace layerprobe {

namespace tj = tokenizer_json;
using nlohmann::json;

namespace {

// The regex crate's \w: alphabetic (letters, letter numbers), marks, decimal digits, connector punctuation.
bool is_word_char(char32_t c) {
  if (c == 0x200C || c == 0x200D) return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

// A stretch of the text: an added token already (id >= 0), or text still to tokenise.
struct Segment {
  std::u32string text;
  int64_t added_id = -1;
  bool at_start = false;
};

// One matcher of added tokens (the library's split_trie or split_normalized_trie).
struct AddedMatcher {
  std::vector<std::u32string> patterns;  // as matched (normalised content for normalized tokens)
  std::vector<size_t> tokens;            // index into the added tokens
};

}  // namespace

struct TokenizerJson::Impl {
  std::vector<std::pair<int64_t, AddedToken>> added;
  std::unordered_map<std::string, int64_t> added_ids;
  std::unordered_map<int64_t, std::string> added_by_id;
  AddedMatcher raw_tokens, normalized_tokens;
  std::unique_ptr<tj::Normalizer> normalizer;
  std::unique_ptr<tj::PreTokenizer> pre_tokenizer;
  std::unique_ptr<tj::Model> model;
  tj::Template templates;
  std::unique_ptr<tj::Decoder> decoder;
  std::string file;

  explicit Impl(const std::filesystem::path& path) : file(path.string()) {
    auto parsed = tj::read_tokenizer_json(path);
    const json& config = parsed.config;
    const tj::Where root{file, ""};
    const json* model_config = tj::member(config, "model", root);
    if (!model_config) throw Error(file + ": key 'model' is missing: a tokenizer.json has a model (BPE, WordPiece, Unigram)");
    model = tj::make_model(*model_config, std::move(parsed.tables), root.at("model"));
    static const json none;
    auto part = [&](const char* key) -> const json& {
      const json* value = tj::member(config, key, root);
      return value ? *value : none;
    };
    normalizer = tj::make_normalizer(part("normalizer"), root.at("normalizer"));
    pre_tokenizer = tj::make_pre_tokenizer(part("pre_tokenizer"), root.at("pre_tokenizer"));
    templates = tj::make_template(part("post_processor"), root.at("post_processor"));
    decoder = tj::make_decoder(part("decoder"), root.at("decoder"));
    read_added_tokens(part("added_tokens"), root.at("added_tokens"));
  }

  void read_added_tokens(const json& list, const tj::Where& where) {
    if (list.is_null()) return;
    if (!list.is_array()) throw Error(where() + " must be a list of added tokens");
    for (size_t i = 0; i < list.size(); ++i) {
      const json& entry = list[i];
      const tj::Where at = where.at(i);
      if (!entry.is_object()) throw Error(at() + " must be an object with \"id\" and \"content\"");
      const json* id = tj::member(entry, "id", at);
      if (!id || !id->is_number_unsigned()) throw Error(at.at("id")() + " must be a token id");
      AddedToken token;
      token.content = tj::string_member(entry, "content", at);
      token.special = tj::bool_member(entry, "special", at, false);
      token.single_word = tj::bool_member(entry, "single_word", at, false);
      token.lstrip = tj::bool_member(entry, "lstrip", at, false);
      token.rstrip = tj::bool_member(entry, "rstrip", at, false);
      token.normalized = tj::bool_member(entry, "normalized", at, !token.special);
      if (token.content.empty()) continue;
      add(id->get<int64_t>(), token);
    }
  }

  void add(int64_t id, const AddedToken& token) {
    added.emplace_back(id, token);
    added_ids[token.content] = id;
    added_by_id[id] = token.content;
    const size_t index = added.size() - 1;
    if (token.normalized && normalizer) {
      std::string normalized = token.content;
      normalizer->normalize(normalized);
      normalized_tokens.patterns.push_back(utf8_to_u32(normalized));
      normalized_tokens.tokens.push_back(index);
    } else if (token.normalized) {
      normalized_tokens.patterns.push_back(utf8_to_u32(token.content));
      normalized_tokens.tokens.push_back(index);
    } else {
      raw_tokens.patterns.push_back(utf8_to_u32(token.content));
      raw_tokens.tokens.push_back(index);
    }
  }

  // AddedVocabulary::find_matches on one stretch of text.
  void split_added(const Segment& segment, const AddedMatcher& matcher, std::vector<Segment>& out) const {
    const std::u32string& text = segment.text;
    size_t start_offset = 0;
    auto push_text = [&](size_t from, size_t to) {
      if (to > from) out.push_back({text.substr(from, to - from), -1, segment.at_start && from == 0});
    };
    for (const auto& match : find_added_tokens(text, matcher.patterns)) {
      size_t start = match.start, stop = match.end;
      const auto& [id, token] = added[matcher.tokens[match.token]];
      if (token.single_word) {
        const bool start_space = start == 0 || !is_word_char(text[start - 1]);
        const bool stop_space = stop == text.size() || !is_word_char(text[stop]);
        if (!start_space || !stop_space) continue;
      }
      if (token.lstrip) {
        size_t new_start = start;
        while (new_start > 0 && tj::is_rust_whitespace(text[new_start - 1])) --new_start;
        start = std::max(new_start, start_offset);
      }
      if (token.rstrip)
        while (stop < text.size() && tj::is_rust_whitespace(text[stop])) ++stop;
      push_text(start_offset, start);
      out.push_back({text.substr(start, stop - start), id, false});
      start_offset = stop;
    }
    push_text(start_offset, text.size());
  }

  // Rust's encode of one sequence: the ids and the token strings.
  void encode(const std::string& input, std::vector<tj::Token>& tokens) const {
    const std::u32string text = utf8_to_u32(input);
    std::vector<Segment> raw;
    split_added({text, -1, true}, raw_tokens, raw);
    std::vector<Segment> segments;
    for (auto& segment : raw) {
      if (segment.added_id >= 0) {
        segments.push_back(std::move(segment));
        continue;
      }
      if (normalizer) {
        std::string normalized = u32_to_utf8(segment.text);
        normalizer->normalize(normalized);
        segment.text = utf8_to_u32(normalized);
      }
      split_added(segment, normalized_tokens, segments);
    }
    for (const auto& segment : segments) {
      if (segment.added_id >= 0) {
        tokens.push_back({segment.added_id, added_by_id.at(segment.added_id)});
        continue;
      }
      std::vector<tj::Piece> pieces{{u32_to_utf8(segment.text), segment.at_start}};
      if (pre_tokenizer) pre_tokenizer->pre_tokenize(pieces);
      for (const auto& piece : pieces) model->tokenize(piece.text, tokens);
    }
  }
};

SpecialTokens TokenizerJson::default_special_tokens(const Impl& impl) {
  SpecialTokens specials;
  specials.unk = impl.model->unk_token();
  const auto& single = impl.templates.single;
  auto a = std::find_if(single.begin(), single.end(), [](const tj::TemplateItem& item) { return item.is_sequence; });
  if (!impl.templates.cls.empty()) {
    specials.cls = impl.templates.cls;
    specials.sep = impl.templates.sep;
  } else if (a != single.end()) {
    if (a != single.begin() && !(a - 1)->tokens.empty()) specials.cls = (a - 1)->tokens.front();
    if (a + 1 != single.end() && !(a + 1)->is_sequence && !(a + 1)->tokens.empty()) specials.sep = (a + 1)->tokens.front();
  }
  return specials;
}

TokenizerJson::TokenizerJson(const std::filesystem::path& file, TokenizerSettings settings)
    : TokenizerJson(std::make_unique<Impl>(file), file, std::move(settings)) {}

TokenizerJson::TokenizerJson(std::unique_ptr<Impl> impl, const std::filesystem::path& file, TokenizerSettings settings)
    : Tokenizer(default_special_tokens(*impl), std::move(settings), file.string()), impl_(std::move(impl)), file_(file) {}

TokenizerJson::~TokenizerJson() = default;

std::vector<std::string> TokenizerJson::tokenize(const std::string& text) const {
  std::vector<tj::Token> tokens;
  impl_->encode(text, tokens);
  std::vector<std::string> values;
  values.reserve(tokens.size());
  for (auto& token : tokens) values.push_back(std::move(token.value));
  return values;
}

int64_t TokenizerJson::token_to_id(const std::string& token) const {
  auto added = impl_->added_ids.find(token);
  if (added != impl_->added_ids.end()) return added->second;
  const int64_t id = impl_->model->token_to_id(token);
  if (id >= 0) return id;
  const std::string& unk = special_tokens().unk;
  if (!unk.empty() && unk != token) {
    auto added_unk = impl_->added_ids.find(unk);
    if (added_unk != impl_->added_ids.end()) return added_unk->second;
    const int64_t unk_id = impl_->model->token_to_id(unk);
    if (unk_id >= 0) return unk_id;
  }
  throw Error("token '" + token + "' is not in the vocabulary of '" + file_.string() +
              "', and it has no unknown token to take its place");
}

std::string TokenizerJson::id_to_token(int64_t id) const {
  auto added = impl_->added_by_id.find(id);
  if (added != impl_->added_by_id.end()) return added->second;
  if (const std::string* token = impl_->model->id_to_token(id)) return *token;
  throw Error("token id " + std::to_string(id) + " is outside the vocabulary of '" + file_.string() + "' (" +
              describe() + ")");
}

std::string TokenizerJson::convert_tokens_to_string(const std::vector<std::string>& tokens) const {
  std::string text;
  if (!impl_->decoder) {
    for (size_t i = 0; i < tokens.size(); ++i) text.append(i > 0 ? " " : "").append(tokens[i]);
    return text;
  }
  for (const auto& part : impl_->decoder->decode_chain(tokens)) text += part;
  return text;
}

int64_t TokenizerJson::vocab_size() const {
  int64_t size = impl_->model->vocab_size();
  for (const auto& [id, token] : impl_->added) size = std::max(size, id + 1);
  return size;
}

PairLayout TokenizerJson::pair_layout() const {
  const auto& pair = impl_->templates.pair;
  auto position = [&](int sequence) {
    return std::find_if(pair.begin(), pair.end(),
                        [&](const tj::TemplateItem& item) { return item.is_sequence && item.sequence == sequence; });
  };
  const auto a = position(0), b = position(1);
  const std::string where = file_.string() + ": post_processor's pair template";
  if (a == pair.end() || b == pair.end() || b < a)
    throw Error(where + " must hold $A then $B (the question, then the context)");
  PairLayout layout;
  auto collect = [&](auto from, auto to, std::vector<int64_t>& ids, int64_t required_type, bool any_type,
                     int64_t* seen_type) {
    for (auto it = from; it != to; ++it) {
      if (it->is_sequence) throw Error(where + " repeats a sequence");
      if (!any_type && it->type_id != required_type)
        throw Error(where + ": special token '" + (it->tokens.empty() ? std::string() : it->tokens.front()) +
                    "' has type id " + std::to_string(it->type_id) +
                    " where layerprobe's window layout needs " + std::to_string(required_type));
      if (seen_type) *seen_type = it->type_id;
      ids.insert(ids.end(), it->ids.begin(), it->ids.end());
    }
  };
  if (a->type_id != 0) throw Error(where + ": $A (the question) has type id " + std::to_string(a->type_id) + ", not 0");
  collect(pair.begin(), a, layout.before_query, 0, false, nullptr);
  int64_t between_type = 0;
  collect(a + 1, b, layout.between, 0, true, &between_type);
  layout.context_token_type = b->type_id;
  collect(b + 1, pair.end(), layout.after_context, b->type_id, false, nullptr);
  // One type id for all of them.
  for (auto it = a + 1; it != b; ++it)
    if (it->type_id != between_type) throw Error(where + ": the special tokens between $A and $B have different type ids");
  layout.between_token_type = between_type;
  auto [before, after] = single_layout();
  layout.legacy_context_offset = static_cast<int>(before.size() + after.size());
  return layout;
}

std::pair<std::vector<int64_t>, std::vector<int64_t>> TokenizerJson::single_layout() const {
  std::pair<std::vector<int64_t>, std::vector<int64_t>> layout;
  bool after = false;
  for (const auto& item : impl_->templates.single) {
    if (item.is_sequence) {
      after = true;
      continue;
    }
    auto& ids = after ? layout.second : layout.first;
    ids.insert(ids.end(), item.ids.begin(), item.ids.end());
  }
  return layout;
}

bool TokenizerJson::lowercases() const { return impl_->normalizer && impl_->normalizer->lowercases(); }

const std::vector<std::pair<int64_t, AddedToken>>& TokenizerJson::added_tokens() const { return impl_->added; }

std::string TokenizerJson::describe() const {
  return impl_->model->describe() + ", " + std::to_string(impl_->added.size()) + " added tokens";
}

}  // namespace layerprobe
