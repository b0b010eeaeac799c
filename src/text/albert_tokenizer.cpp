#include "layerprobe/text/albert_tokenizer.hpp"

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

std::u32string preprocess_u32(std::u32string text, const TokenizerOptions& options) {
  if (options.remove_space) text = join_words(python_split(text));
  replace_all(text, U"``", U"\"");
  replace_all(text, U"''", U"\"");
  if (!options.keep_accents) text = nfkd_without_combining(text);
  if (options.do_lower_case) text = python_lower(text);
  return text;
}

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

// transformers 2.5.1 tokenize()'s split_on_token: the text around each
// occurrence of `token`, right-stripped, with `token` itself in between.
std::vector<std::u32string> split_on_token(const std::u32string& token, const std::u32string& text) {
  std::vector<std::u32string> result;
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
  return result;
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

std::vector<std::u32string> to_u32(const std::vector<std::string>& texts) {
  std::vector<std::u32string> out;
  for (const auto& text : texts) out.push_back(utf8_to_u32(text));
  return out;
}

}  // namespace

std::string albert_preprocess(const std::string& text, const TokenizerOptions& options) {
  return u32_to_utf8(preprocess_u32(utf8_to_u32(text), options));
}

const std::vector<std::string>& AlbertTokenizer::special_tokens() {
  // bos/cls, eos/sep, unk, pad, mask; none overlaps another, so the order in
  // which HF splits on them (a Python set) cannot change the result.
  static const std::vector<std::string> tokens{"[CLS]", "[SEP]", "<unk>", "<pad>", "[MASK]"};
  return tokens;
}

struct AlbertTokenizer::Impl {
  Impl(const std::filesystem::path& model_path, TokenizerOptions opts)
      : model(model_path), options(opts), special(to_u32(special_tokens())) {}

  bool is_special(const std::u32string& text) const {
    return std::find(special.begin(), special.end(), text) != special.end();
  }

  // AlbertTokenizer._tokenize on text without special tokens.
  void sentencepiece_tokenize(const std::u32string& text, std::vector<std::string>& out) const {
    for (auto& piece : model.encode(u32_to_utf8(preprocess_u32(text, options)))) {
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
  TokenizerOptions options;
  std::vector<std::u32string> special;
};

AlbertTokenizer::AlbertTokenizer(const std::filesystem::path& spiece_model, TokenizerOptions options)
    : impl_(std::make_unique<Impl>(spiece_model, options)) {}
AlbertTokenizer::~AlbertTokenizer() = default;
AlbertTokenizer::AlbertTokenizer(AlbertTokenizer&&) noexcept = default;
AlbertTokenizer& AlbertTokenizer::operator=(AlbertTokenizer&&) noexcept = default;

std::string AlbertTokenizer::preprocess(const std::string& text) const { return albert_preprocess(text, impl_->options); }

std::vector<std::string> AlbertTokenizer::tokenize(const std::string& text) const {
  auto chars = utf8_to_u32(text);
  if (std::all_of(chars.begin(), chars.end(), python_isspace)) return {};
  // split_on_tokens: cut the text at every special token, one token after the other.
  std::vector<std::u32string> segments{chars};
  for (const auto& token : impl_->special) {
    std::vector<std::u32string> next;
    for (const auto& segment : segments) {
      if (impl_->is_special(segment)) {
        next.push_back(segment);
      } else {
        auto parts = split_on_token(token, segment);
        next.insert(next.end(), parts.begin(), parts.end());
      }
    }
    segments.swap(next);
  }
  std::vector<std::string> pieces;
  for (const auto& segment : segments) {
    if (impl_->is_special(segment))
      pieces.push_back(u32_to_utf8(segment));
    else
      impl_->sentencepiece_tokenize(segment, pieces);
  }
  return pieces;
}

std::vector<int64_t> AlbertTokenizer::convert_tokens_to_ids(const std::vector<std::string>& pieces) const {
  std::vector<int64_t> ids;
  ids.reserve(pieces.size());
  for (const auto& piece : pieces) ids.push_back(impl_->model.piece_to_id(piece));
  return ids;
}

std::vector<std::string> AlbertTokenizer::convert_ids_to_tokens(const std::vector<int64_t>& ids) const {
  std::vector<std::string> pieces;
  pieces.reserve(ids.size());
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size())
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary of " +
                  std::to_string(vocab_size()) + " pieces");
    pieces.push_back(impl_->model.id_to_piece(static_cast<int>(id)));
  }
  return pieces;
}

std::string AlbertTokenizer::convert_tokens_to_string(const std::vector<std::string>& pieces) const {
  return join_pieces(pieces);
}

std::vector<int64_t> AlbertTokenizer::encode(const std::string& text) const {
  return convert_tokens_to_ids(tokenize(text));
}

int64_t AlbertTokenizer::cls_id() const { return impl_->model.piece_to_id("[CLS]"); }
int64_t AlbertTokenizer::sep_id() const { return impl_->model.piece_to_id("[SEP]"); }
int64_t AlbertTokenizer::pad_id() const { return impl_->model.piece_to_id("<pad>"); }
int64_t AlbertTokenizer::unk_id() const { return impl_->model.unk_id(); }
int AlbertTokenizer::vocab_size() const { return impl_->model.size(); }
const TokenizerOptions& AlbertTokenizer::options() const { return impl_->options; }

}  // namespace layerprobe
