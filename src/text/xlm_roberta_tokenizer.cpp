#include "text/xlm_roberta_tokenizer.hpp"

#include <array>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"
#include "layerprobe/text/sentencepiece.hpp"
#include "text/text_helpers.hpp"

namespace layerprobe {

namespace {

constexpr int64_t kFairseqOffset = 1;
// fairseq's first four ids.
const std::array<const char*, 4> kFairseqTokens = {"<s>", "<pad>", "</s>", "<unk>"};

SpecialTokens xlm_roberta_special_tokens() {
  SpecialTokens specials;
  specials.bos = specials.cls = "<s>";
  specials.eos = specials.sep = "</s>";
  specials.unk = "<unk>";
  specials.pad = "<pad>";
  specials.mask = "<mask>";
  return specials;
}

// XLMRobertaTokenizer's mask token "behaves like a normal word, i.e. includes the space before it".
std::vector<AddedToken> xlm_roberta_flags() {
  AddedToken mask{"<mask>"};
  mask.lstrip = true;
  return {mask};
}

}  // namespace

XlmRobertaTokenizer::XlmRobertaTokenizer(const std::filesystem::path& model_path, TokenizerSettings settings)
    : SlowTokenizer(xlm_roberta_special_tokens(), std::move(settings), model_path.string(), HfGeneration::v4_57_5,
                    xlm_roberta_flags()),
      model_(std::make_unique<SentencePieceModel>(model_path)),
      model_path_(model_path) {}

XlmRobertaTokenizer::~XlmRobertaTokenizer() = default;

void XlmRobertaTokenizer::tokenize_text(const std::u32string& text, std::vector<std::string>& out) const {
  for (auto& piece : model_->encode(u32_to_utf8(text))) out.push_back(std::move(piece));
}

int64_t XlmRobertaTokenizer::vocab_token_to_id(const std::string& token) const {
  for (size_t id = 0; id < kFairseqTokens.size(); ++id)
    if (token == kFairseqTokens[id]) return static_cast<int64_t>(id);
  if (token == "<mask>") return model_->size() + kFairseqOffset;
  const int spm_id = model_->piece_to_id(token);
  // "Need to return unknown token if the SP model returned 0": only id 0 is
  // taken for unknown, whatever the model's own unknown id is.
  if (spm_id != 0) return spm_id + kFairseqOffset;
  // (An unknown token the model lacks too would recurse in HF; it takes fairseq's <unk>.)
  return token == special_tokens().unk ? 3 : token_to_id(special_tokens().unk);
}

std::string XlmRobertaTokenizer::vocab_id_to_token(int64_t id) const {
  if (id >= 0 && id < static_cast<int64_t>(kFairseqTokens.size())) return kFairseqTokens[static_cast<size_t>(id)];
  if (id == model_->size() + kFairseqOffset) return "<mask>";
  if (id < 0 || id >= vocab_size())
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(vocab_size()) +
                " XLM-RoBERTa ids (0.." + std::to_string(vocab_size() - 1) + ")");
  return model_->id_to_piece(static_cast<int>(id - kFairseqOffset));
}

std::string XlmRobertaTokenizer::convert_tokens_to_string(const std::vector<std::string>& tokens) const {
  std::string joined;
  for (const auto& token : tokens) joined += token;
  return python_strip(replace_all(joined, space_mark(), " "));
}

int64_t XlmRobertaTokenizer::vocab_size() const { return model_->size() + kFairseqOffset + 1; }

PairLayout XlmRobertaTokenizer::pair_layout() const {
  PairLayout layout{{cls_id()}, {sep_id(), sep_id()}, {sep_id()}, 0};
  layout.legacy_context_offset = 2;
  return layout;
}

}  // namespace layerprobe
