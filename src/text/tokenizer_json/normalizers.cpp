// tokenizer.json normalizers, as the Rust library's normalizers/*.rs.
#include <utf8proc.h>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"
#include "text/onig_regex.hpp"
#include "text/tokenizer_json/components.hpp"

namespace layerprobe::tokenizer_json {

namespace {

template <typename Keep>
std::string filter_chars(const std::string& text, Keep keep) {
  std::u32string out;
  for (char32_t c : utf8_to_u32(text))
    if (keep(c)) out.push_back(c);
  return u32_to_utf8(out);
}

class NormUnicodeForm : public Normalizer {
 public:
  explicit NormUnicodeForm(int options) : options_(options) {}
  void normalize(std::string& text) const override { text = unicode_normalize(text, options_); }

 private:
  int options_;
};

class NormLowercase : public Normalizer {
 public:
  void normalize(std::string& text) const override { text = lowercase_each(text); }
  bool lowercases() const override { return true; }
};

// General_Category=Mark (Mn, Mc, Me): unicode-normalization's is_combining_mark.
class NormStripAccents : public Normalizer {
 public:
  void normalize(std::string& text) const override {
    text = filter_chars(text, [](char32_t c) {
      auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
      return cat != UTF8PROC_CATEGORY_MN && cat != UTF8PROC_CATEGORY_MC && cat != UTF8PROC_CATEGORY_ME;
    });
  }
};

bool is_bert_normalizer_chinese(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

class NormBert : public Normalizer {
 public:
  NormBert(const json& config, const Where& where)
      : clean_text_(bool_member(config, "clean_text", where, true)),
        chinese_(bool_member(config, "handle_chinese_chars", where, true)),
        lowercase_(bool_member(config, "lowercase", where, true)) {
    const json* strip = member(config, "strip_accents", where);
    if (strip && !strip->is_null()) {
      if (!strip->is_boolean()) throw Error(where.at("strip_accents")() + " must be true, false or null");
      strip_accents_ = strip->get<bool>();
    } else {
      strip_accents_ = lowercase_;
    }
  }

  void normalize(std::string& text) const override {
    if (clean_text_) {
      std::u32string out;
      for (char32_t c : utf8_to_u32(text)) {
        const bool control = c != U'\t' && c != U'\n' && c != U'\r' && is_rust_other(c);
        if (c == 0 || c == 0xFFFD || control) continue;
        const bool space = c == U'\t' || c == U'\n' || c == U'\r' || is_rust_whitespace(c);
        out.push_back(space ? U' ' : c);
      }
      text = u32_to_utf8(out);
    }
    if (chinese_) {
      std::u32string out;
      for (char32_t c : utf8_to_u32(text)) {
        if (is_bert_normalizer_chinese(c)) {
          out.push_back(U' ');
          out.push_back(c);
          out.push_back(U' ');
        } else {
          out.push_back(c);
        }
      }
      text = u32_to_utf8(out);
    }
    if (strip_accents_)
      text = filter_chars(unicode_normalize(text, UTF8PROC_DECOMPOSE),
                          [](char32_t c) { return utf8proc_category(static_cast<utf8proc_int32_t>(c)) != UTF8PROC_CATEGORY_MN; });
    if (lowercase_) text = lowercase_each(text);
  }
  bool lowercases() const override { return lowercase_; }

 private:
  bool clean_text_, chinese_, lowercase_, strip_accents_ = false;
};

class NormReplace : public Normalizer {
 public:
  NormReplace(const json& config, const Where& where)
      : pattern_(pattern_member(config, where)), content_(string_member(config, "content", where)) {}
  void normalize(std::string& text) const override { text = pattern_.replace(text, content_); }

 private:
  SplitPattern pattern_;
  std::string content_;
};

class NormPrepend : public Normalizer {
 public:
  NormPrepend(const json& config, const Where& where) : prepend_(string_member(config, "prepend", where)) {}
  void normalize(std::string& text) const override {
    if (!text.empty()) text = prepend_ + text;
  }

 private:
  std::string prepend_;
};

class NormStrip : public Normalizer {
 public:
  NormStrip(const json& config, const Where& where)
      : left_(bool_member(config, "strip_left", where, true)), right_(bool_member(config, "strip_right", where, true)) {}
  void normalize(std::string& text) const override {
    auto chars = utf8_to_u32(text);
    size_t begin = 0, end = chars.size();
    if (left_)
      while (begin < end && is_rust_whitespace(chars[begin])) ++begin;
    if (right_)
      while (end > begin && is_rust_whitespace(chars[end - 1])) --end;
    text = u32_to_utf8(std::u32string_view(chars).substr(begin, end - begin));
  }

 private:
  bool left_, right_;
};

// SentencePiece's nmt normalisation without the NFKC (the Nmt normalizer).
class NormNmt : public Normalizer {
 public:
  void normalize(std::string& text) const override {
    std::u32string out;
    for (char32_t c : utf8_to_u32(text)) {
      if ((c >= 0x1 && c <= 0x8) || c == 0xB || (c >= 0xE && c <= 0x1F) || c == 0x7F || c == 0x8F || c == 0x9F)
        continue;
      const bool space = c == 0x9 || c == 0xA || c == 0xC || c == 0xD || c == 0x1680 || (c >= 0x200B && c <= 0x200F) ||
                         c == 0x2028 || c == 0x2029 || c == 0x2581 || c == 0xFEFF || c == 0xFFFD;
      out.push_back(space ? U' ' : c);
    }
    text = u32_to_utf8(out);
  }
};

class NormSequence : public Normalizer {
 public:
  NormSequence(const json& config, const Where& where) {
    const json* list = member(config, "normalizers", where);
    if (!list || !list->is_array()) throw Error(where.at("normalizers")() + " must be a list of normalizers");
    for (size_t i = 0; i < list->size(); ++i)
      if (auto normalizer = make_normalizer((*list)[i], where.at("normalizers").at(i))) parts_.push_back(std::move(normalizer));
  }
  void normalize(std::string& text) const override {
    for (const auto& part : parts_) part->normalize(text);
  }
  bool lowercases() const override {
    for (const auto& part : parts_)
      if (part->lowercases()) return true;
    return false;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& config, const Where& where) {
  if (config.is_null()) return nullptr;
  if (!config.is_object()) throw Error(where() + " must be an object with a \"type\"");
  const std::string type = string_member(config, "type", where);
  if (type == "NFC") return std::make_unique<NormUnicodeForm>(UTF8PROC_COMPOSE);
  if (type == "NFD") return std::make_unique<NormUnicodeForm>(UTF8PROC_DECOMPOSE);
  if (type == "NFKC") return std::make_unique<NormUnicodeForm>(UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
  if (type == "NFKD") return std::make_unique<NormUnicodeForm>(UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  if (type == "Lowercase") return std::make_unique<NormLowercase>();
  if (type == "StripAccents") return std::make_unique<NormStripAccents>();
  if (type == "BertNormalizer") return std::make_unique<NormBert>(config, where);
  if (type == "Replace") return std::make_unique<NormReplace>(config, where);
  if (type == "Prepend") return std::make_unique<NormPrepend>(config, where);
  if (type == "Strip") return std::make_unique<NormStrip>(config, where);
  if (type == "Nmt") return std::make_unique<NormNmt>();
  if (type == "Sequence") return std::make_unique<NormSequence>(config, where);
  throw Error(where() + ": normalizer type '" + type +
              "' is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, BertNormalizer, "
              "Replace, Prepend, Strip, Nmt, Sequence)");
}

}  // namespace layerprobe::tokenizer_json
