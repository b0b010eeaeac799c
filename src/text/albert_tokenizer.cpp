#include "text/albert_tokenizer.hpp"

#include <utf8proc.h>

#include <algorithm>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"
#include "layerprobe/text/sentencepiece.hpp"

namespace layerprobe {

namespace {

const std::string kSpaceMark = "\xE2\x96\x81";  // U+2581, SentencePiece's word-start mark

// Python's str.replace(from, to): non-overlapping, left to right.
void replace_all(std::u32string& text, const std::u32string& from, const std::u32string& to) {
  std::u32string out;
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::u32string::npos; pos = hit + from.size())
    out.append(text, pos, hit - pos).append(to);
  out.append(text, pos, std::u32string::npos);
  text.swap(out);
}

// unicodedata.normalize("NFKD") then dropping every character whose
// canonical combining class is non-zero (unicodedata.combining). The
// canonical reordering NFKD would do only moves characters that are dropped.
std::u32string nfkd_without_combining(const std::u32string& text) {
  std::u32string out;
  out.reserve(text.size());
  utf8proc_int32_t buffer[32];
  auto options = static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  for (char32_t c : text) {
    int boundclass = 0;
    auto n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(c), buffer, 32, options, &boundclass);
    if (n < 0 || n > 32) {  // not a valid code point: keep it as it is
      out.push_back(c);
      continue;
    }
    for (utf8proc_ssize_t i = 0; i < n; ++i)
      if (utf8proc_get_property(buffer[i])->combining_class == 0) out.push_back(static_cast<char32_t>(buffer[i]));
  }
  return out;
}

std::u32string preprocess_u32(std::u32string text, const TokenizerSettings& settings) {
  if (settings.remove_space) text = join_words(python_split(text));
  replace_all(text, U"``", U"\"");
  replace_all(text, U"''", U"\"");
  if (!settings.keep_accents) text = nfkd_without_combining(text);
  if (settings.do_lower_case.value_or(true)) text = python_lower(text);
  return text;
}

bool starts_with_space_mark(const std::string& piece) { return piece.compare(0, kSpaceMark.size(), kSpaceMark) == 0; }

std::string without_space_marks(const std::string& text) {
  std::string out;
  for (size_t pos = 0;;) {
    size_t hit = text.find(kSpaceMark, pos);
    out.append(text, pos, hit == std::string::npos ? std::string::npos : hit - pos);
    if (hit == std::string::npos) return out;
    pos = hit + kSpaceMark.size();
  }
}

// HF's test: len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit().
// SentencePiece pieces are NFKC-normalised, so digits that str.isdigit()
// accepts outside category Nd (superscripts, circled digits) never reach here.
bool ends_with_digit_comma(const std::string& piece) {
  if (piece.size() < 2 || piece.back() != ',') return false;
  auto chars = utf8_to_u32(piece);
  return chars.size() > 1 && utf8proc_category(static_cast<utf8proc_int32_t>(chars[chars.size() - 2])) ==
                                 UTF8PROC_CATEGORY_ND;
}

// ALBERT's special tokens (bos = cls, eos = sep).
SpecialTokens albert_special_tokens() {
  SpecialTokens specials;
  specials.bos = specials.cls = "[CLS]";
  specials.eos = specials.sep = "[SEP]";
  specials.unk = "<unk>";
  specials.pad = "<pad>";
  specials.mask = "[MASK]";
  return specials;
}

}  // namespace

std::string albert_preprocess(const std::string& text, const TokenizerSettings& settings) {
  return u32_to_utf8(preprocess_u32(utf8_to_u32(text), settings));
}

struct AlbertTokenizer::Impl {
  explicit Impl(const std::filesystem::path& model_path) : model(model_path) {}

  // AlbertTokenizer._tokenize on text without special tokens.
  void sentencepiece_tokenize(const std::u32string& text, const TokenizerSettings& settings,
                              std::vector<std::string>& out) const {
    for (auto& piece : model.encode(u32_to_utf8(preprocess_u32(text, settings)))) {
      if (!ends_with_digit_comma(piece)) {
        out.push_back(std::move(piece));
        continue;
      }
      // Re-encode the number without its comma so "1,000," keeps "1,000"
      // whole, then give the comma its own piece.
      auto number = model.encode(without_space_marks(piece.substr(0, piece.size() - 1)));
      if (!starts_with_space_mark(piece) && !number.empty() && starts_with_space_mark(number.front())) {
        if (number.front() == kSpaceMark)
          number.erase(number.begin());
        else
          number.front().erase(0, kSpaceMark.size());
      }
      out.insert(out.end(), number.begin(), number.end());
      out.emplace_back(",");
    }
  }

  SentencePieceModel model;
};

AlbertTokenizer::AlbertTokenizer(const std::filesystem::path& spiece_model, TokenizerSettings settings)
    : SlowTokenizer(albert_special_tokens(), std::move(settings), spiece_model.string(), HfGeneration::v2_5_1),
      impl_(std::make_unique<Impl>(spiece_model)),
      model_path_(spiece_model) {}
AlbertTokenizer::~AlbertTokenizer() = default;

std::string AlbertTokenizer::preprocess(const std::string& text) const { return albert_preprocess(text, settings()); }

void AlbertTokenizer::tokenize_text(const std::u32string& text, std::vector<std::string>& out) const {
  impl_->sentencepiece_tokenize(text, settings(), out);
}

int64_t AlbertTokenizer::vocab_token_to_id(const std::string& token) const { return impl_->model.piece_to_id(token); }

std::string AlbertTokenizer::vocab_id_to_token(int64_t id) const {
  if (id < 0 || id >= vocab_size())
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(vocab_size()) +
                " pieces");
  return impl_->model.id_to_piece(static_cast<int>(id));
}

std::string AlbertTokenizer::convert_tokens_to_string(const std::vector<std::string>& tokens) const {
  return join_pieces(tokens);
}

int64_t AlbertTokenizer::vocab_size() const { return impl_->model.size(); }

PairLayout AlbertTokenizer::pair_layout() const { return {{cls_id()}, {sep_id()}, {sep_id()}, 1}; }

}  // namespace layerprobe
