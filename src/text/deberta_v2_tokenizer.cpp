#include "text/deberta_v2_tokenizer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"
#include "layerprobe/text/basic_tokenizer.hpp"
#include "layerprobe/text/sentencepiece.hpp"
#include "text/text_helpers.hpp"

namespace layerprobe {

namespace {

// DebertaV2Tokenizer's defaults (DeBERTa-v3's spm.model has these pieces).
SpecialTokens deberta_special_tokens() {
  SpecialTokens specials;
  specials.bos = specials.cls = "[CLS]";
  specials.eos = specials.sep = "[SEP]";
  specials.unk = "[UNK]";
  specials.pad = "[PAD]";
  specials.mask = "[MASK]";
  return specials;
}

// The unknown token is normalized (4.57.5 makes it AddedToken(normalized=True)).
std::vector<AddedToken> deberta_flags(const SpecialTokens& defaults, const TokenizerSettings& settings) {
  auto named = settings.special_tokens.find("unk_token");
  AddedToken unk{named != settings.special_tokens.end() ? named->second : defaults.unk};
  unk.normalized = true;
  return {unk};
}

// SPMTokenizer._run_split_on_punc: each punctuation character alone, the runs between whole.
std::vector<std::u32string> deberta_split_on_punctuation(const std::u32string& text) {
  std::vector<std::u32string> words;
  bool start_new_word = true;
  for (char32_t c : text) {
    if (is_bert_punctuation(c)) {
      words.emplace_back(1, c);
      start_new_word = true;
    } else {
      if (start_new_word) words.emplace_back();
      start_new_word = false;
      words.back().push_back(c);
    }
  }
  return words;
}

}  // namespace

DebertaV2Tokenizer::DebertaV2Tokenizer(const std::filesystem::path& model_path, TokenizerSettings settings)
    : SlowTokenizer(deberta_special_tokens(), settings, model_path.string(), HfGeneration::v4_57_5,
                    deberta_flags(deberta_special_tokens(), settings)),
      model_(std::make_unique<SentencePieceModel>(model_path)),
      model_path_(model_path) {
  const SpecialTokens& specials = special_tokens();
  for (const std::string* token : {&specials.cls, &specials.sep, &specials.pad})
    if (!token->empty() && model_->piece_to_id(*token) == model_->unk_id() && *token != specials.unk)
      spdlog::warn("'{}' has no piece '{}' (it takes the unknown id {}); DeBERTa-v3's spm.model has [CLS], [SEP], "
                   "[PAD] and [UNK]: name the model's own special tokens in tokenizer_config.json",
                   model_path.string(), *token, model_->unk_id());
}

DebertaV2Tokenizer::~DebertaV2Tokenizer() = default;

void DebertaV2Tokenizer::tokenize_text(const std::u32string& segment, std::vector<std::string>& out) const {
  const std::u32string text = lowercases() ? python_lower(segment) : segment;
  if (!settings().split_by_punct) {
    for (auto& piece : model_->encode(u32_to_utf8(text))) out.push_back(std::move(piece));
    return;
  }
  for (const auto& word : deberta_split_on_punctuation(text))
    for (auto& piece : model_->encode(u32_to_utf8(word))) out.push_back(std::move(piece));
}

int64_t DebertaV2Tokenizer::vocab_token_to_id(const std::string& token) const { return model_->piece_to_id(token); }

std::string DebertaV2Tokenizer::vocab_id_to_token(int64_t id) const {
  if (id < 0 || id >= vocab_size())
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(vocab_size()) +
                " pieces of '" + model_path_.string() + "' (ids 0.." + std::to_string(vocab_size() - 1) + ")");
  return model_->id_to_piece(static_cast<int>(id));
}

int64_t DebertaV2Tokenizer::vocab_size() const { return model_->size(); }

std::string DebertaV2Tokenizer::convert_tokens_to_string(const std::vector<std::string>& tokens) const {
  const auto specials = special_tokens().all();
  std::vector<std::string> run;
  std::string out;
  bool previous_special = false;
  for (const auto& token : tokens) {
    if (std::find(specials.begin(), specials.end(), token) != specials.end()) {
      if (!previous_special) out += ' ';
      out += model_->decode(run) + token;
      previous_special = true;
      run.clear();
    } else {
      run.push_back(token);
      previous_special = false;
    }
  }
  out += model_->decode(run);
  return python_strip(out);
}

}  // namespace layerprobe
