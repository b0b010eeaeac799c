// tokenizer.json pre-tokenizers, as the Rust library's pre_tokenizers/*.rs.
#include <utf8proc.h>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"
#include "text/byte_level_bpe.hpp"
#include "text/onig_regex.hpp"
#include "text/tokenizer_json/components.hpp"

namespace layerprobe::tokenizer_json {

namespace {

// PreTokenizedString::split: each piece cut into the ranges `ranges_of` keeps;
// empty pieces vanish; only a piece's first range can begin the text.
template <typename RangesOf>
void split_pieces(std::vector<Piece>& pieces, RangesOf ranges_of) {
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (auto& piece : pieces)
    for (const auto& [start, end] : ranges_of(piece))
      if (end > start) out.push_back({piece.text.substr(start, end - start), piece.at_start && start == 0});
  pieces.swap(out);
}

// GPT-2's pattern, which the ByteLevel pre-tokenizer compiles with Oniguruma.
const OnigRegex& gpt2_regex() {
  static const OnigRegex regex(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
  return regex;
}

std::vector<Span> regex_spans(const OnigRegex& regex, const std::string& text) {
  if (text.empty()) return {{0, 0, false}};
  std::vector<Span> spans;
  size_t previous = 0;
  for (const auto& [start, end] : regex.find_all(text)) {
    if (previous != start) spans.push_back({previous, start, false});
    spans.push_back({start, end, true});
    previous = end;
  }
  if (previous != text.size()) spans.push_back({previous, text.size(), false});
  return spans;
}

std::vector<Span> inverted(std::vector<Span> spans) {
  for (auto& span : spans) span.is_match = !span.is_match;
  return spans;
}

// Each byte of the UTF-8 text as its byte-level character.
std::string to_byte_chars(const std::string& text) {
  std::u32string out;
  out.reserve(text.size());
  for (unsigned char byte : text) out.push_back(byte_to_char(byte));
  return u32_to_utf8(out);
}

class PreByteLevel : public PreTokenizer {
 public:
  PreByteLevel(const json& config, const Where& where)
      : add_prefix_space_(bool_member(config, "add_prefix_space", where, true)),
        use_regex_(bool_member(config, "use_regex", where, true)) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, [&](Piece& piece) {
      if (add_prefix_space_ && piece.text.compare(0, 1, " ") != 0) piece.text.insert(0, " ");
      if (!use_regex_) return std::vector<std::pair<size_t, size_t>>{{0, piece.text.size()}};
      return split_spans(regex_spans(gpt2_regex(), piece.text), SplitBehavior::isolated);
    });
    for (auto& piece : pieces) piece.text = to_byte_chars(piece.text);
  }

 private:
  bool add_prefix_space_, use_regex_;
};

class PreSplit : public PreTokenizer {
 public:
  PreSplit(const json& config, const Where& where)
      : pattern_(pattern_member(config, where)),
        behavior_(parse_split_behavior(string_member(config, "behavior", where), where.at("behavior"))),
        invert_(bool_member(config, "invert", where, false)) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, [&](const Piece& piece) {
      auto spans = pattern_.find(piece.text);
      return split_spans(invert_ ? inverted(std::move(spans)) : spans, behavior_);
    });
  }

 private:
  SplitPattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class PreWhitespace : public PreTokenizer {
 public:
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    static const OnigRegex words(R"(\w+|[^\w\s]+)");
    split_pieces(pieces, [&](const Piece& piece) {
      return split_spans(inverted(regex_spans(words, piece.text)), SplitBehavior::removed);
    });
  }
};

class PreWhitespaceSplit : public PreTokenizer {
 public:
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, [](const Piece& piece) {
      return split_spans(char_spans(piece.text, is_rust_whitespace), SplitBehavior::removed);
    });
  }
};

class PreBert : public PreTokenizer {
 public:
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, [](const Piece& piece) {
      return split_spans(char_spans(piece.text, is_rust_whitespace), SplitBehavior::removed);
    });
    split_pieces(pieces, [](const Piece& piece) {
      return split_spans(char_spans(piece.text, is_rust_punctuation), SplitBehavior::isolated);
    });
  }
};

class PreMetaspace : public PreTokenizer {
 public:
  enum class Scheme { always, first, never };

  PreMetaspace(const json& config, const Where& where) {
    const std::string replacement = string_member(config, "replacement", where);
    if (utf8_to_u32(replacement).size() != 1) throw Error(where.at("replacement")() + " must be one character");
    replacement_ = replacement;
    replacement_char_ = utf8_to_u32(replacement)[0];
    scheme_ = parse_scheme(config, where);
    split_ = bool_member(config, "split", where, true);
  }

  static Scheme parse_scheme(const json& config, const Where& where) {
    const json* scheme = member(config, "prepend_scheme", where);
    const json* legacy = member(config, "add_prefix_space", where);
    if (legacy && legacy->is_boolean() && !legacy->get<bool>()) return Scheme::never;
    if (!scheme || scheme->is_null()) return Scheme::always;
    const std::string name = scheme->is_string() ? scheme->get<std::string>() : "";
    if (name == "always") return Scheme::always;
    if (name == "first") return Scheme::first;
    if (name == "never") return Scheme::never;
    throw Error(where.at("prepend_scheme")() + " must be \"always\", \"first\" or \"never\"");
  }

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, [&](Piece& piece) {
      std::string replaced;
      for (char c : piece.text) {
        if (c == ' ')
          replaced += replacement_;
        else
          replaced += c;
      }
      const bool starts = replaced.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (scheme_ == Scheme::always || (scheme_ == Scheme::first && piece.at_start)))
        replaced.insert(0, replacement_);
      piece.text = std::move(replaced);
      if (!split_) return std::vector<std::pair<size_t, size_t>>{{0, piece.text.size()}};
      return split_spans(literal_spans(piece.text), SplitBehavior::merged_with_next);
    });
  }

 private:
  std::vector<Span> literal_spans(const std::string& text) const {
    if (text.empty()) return {{0, 0, false}};
    std::vector<Span> spans;
    size_t last = 0;
    for (size_t hit = 0; (hit = text.find(replacement_, hit)) != std::string::npos; hit += replacement_.size()) {
      if (last < hit) spans.push_back({last, hit, false});
      spans.push_back({hit, hit + replacement_.size(), true});
      last = hit + replacement_.size();
    }
    if (last < text.size()) spans.push_back({last, text.size(), false});
    return spans;
  }

  std::string replacement_;
  char32_t replacement_char_ = U'\u2581';
  Scheme scheme_ = Scheme::always;
  bool split_ = true;
};

class PreDigits : public PreTokenizer {
 public:
  PreDigits(const json& config, const Where& where)
      : individual_(bool_member(config, "individual_digits", where, false)) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, [&](const Piece& piece) {
      return split_spans(char_spans(piece.text, is_rust_numeric),
                         individual_ ? SplitBehavior::isolated : SplitBehavior::contiguous);
    });
  }

 private:
  bool individual_;
};

class PrePunctuation : public PreTokenizer {
 public:
  PrePunctuation(const json& config, const Where& where) {
    const std::string isolated = "Isolated";
    behavior_ = parse_split_behavior(string_member(config, "behavior", where, &isolated), where.at("behavior"));
  }
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, [&](const Piece& piece) {
      return split_spans(char_spans(piece.text, is_rust_punctuation), behavior_);
    });
  }

 private:
  SplitBehavior behavior_ = SplitBehavior::isolated;
};

class PreCharDelimiter : public PreTokenizer {
 public:
  PreCharDelimiter(const json& config, const Where& where) {
    const std::string delimiter = string_member(config, "delimiter", where);
    if (utf8_to_u32(delimiter).size() != 1) throw Error(where.at("delimiter")() + " must be one character");
    delimiter_ = delimiter;
  }
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, [&](const Piece& piece) {
      std::vector<std::pair<size_t, size_t>> ranges;
      size_t last = 0;
      for (size_t hit = 0; (hit = piece.text.find(delimiter_, hit)) != std::string::npos; hit += delimiter_.size()) {
        ranges.emplace_back(last, hit);
        last = hit + delimiter_.size();
      }
      ranges.emplace_back(last, piece.text.size());
      return ranges;
    });
  }

 private:
  std::string delimiter_;
};

class PreSequence : public PreTokenizer {
 public:
  PreSequence(const json& config, const Where& where) {
    const json* list = member(config, "pretokenizers", where);
    if (!list || !list->is_array()) throw Error(where.at("pretokenizers")() + " must be a list of pre-tokenizers");
    for (size_t i = 0; i < list->size(); ++i)
      if (auto part = make_pre_tokenizer((*list)[i], where.at("pretokenizers").at(i))) parts_.push_back(std::move(part));
  }
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (const auto& part : parts_) part->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& config, const Where& where) {
  if (config.is_null()) return nullptr;
  if (!config.is_object()) throw Error(where() + " must be an object with a \"type\"");
  const std::string type = string_member(config, "type", where);
  if (type == "ByteLevel") return std::make_unique<PreByteLevel>(config, where);
  if (type == "Split") return std::make_unique<PreSplit>(config, where);
  if (type == "Whitespace") return std::make_unique<PreWhitespace>();
  if (type == "WhitespaceSplit") return std::make_unique<PreWhitespaceSplit>();
  if (type == "BertPreTokenizer") return std::make_unique<PreBert>();
  if (type == "Metaspace") return std::make_unique<PreMetaspace>(config, where);
  if (type == "Digits") return std::make_unique<PreDigits>(config, where);
  if (type == "Punctuation") return std::make_unique<PrePunctuation>(config, where);
  if (type == "CharDelimiterSplit") return std::make_unique<PreCharDelimiter>(config, where);
  if (type == "Sequence") return std::make_unique<PreSequence>(config, where);
  throw Error(where() + ": pre-tokenizer type '" + type +
              "' is not supported (supported: ByteLevel, Split, Whitespace, WhitespaceSplit, BertPreTokenizer, "
              "Metaspace, Digits, Punctuation, CharDelimiterSplit, Sequence)");
}

}  // namespace layerprobe::tokenizer_json
