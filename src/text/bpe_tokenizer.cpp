#include "text/bpe_tokenizer.hpp"

#include "layerprobe/core/common.hpp"

namespace layerprobe {

namespace {

// RobertaTokenizer's defaults.
SpecialTokens roberta_special_tokens() {
  SpecialTokens specials;
  specials.bos = specials.cls = "<s>";
  specials.eos = specials.sep = "</s>";
  specials.unk = "<unk>";
  specials.pad = "<pad>";
  specials.mask = "<mask>";
  return specials;
}

}  // namespace

ByteLevelBpeTokenizer::ByteLevelBpeTokenizer(const std::filesystem::path& vocab_json,
                                             const std::filesystem::path& merges_txt, TokenizerSettings settings)
    : SlowTokenizer(roberta_special_tokens(), std::move(settings), vocab_json.string(), HfGeneration::v2_5_1),
      bpe_(vocab_json, merges_txt),
      vocab_path_(vocab_json),
      merges_path_(merges_txt) {
  for (const auto& token : special_tokens().all())
    if (bpe_.find(token) < 0)
      throw Error("special token '" + token + "' is not in '" + vocab_json.string() +
                  "'; use the vocab.json the model was trained with, or name special tokens it has in "
                  "special_tokens_map.json");
}

int64_t ByteLevelBpeTokenizer::vocab_token_to_id(const std::string& token) const {
  int64_t id = bpe_.find(token);
  if (id < 0) id = bpe_.find(special_tokens().unk);
  if (id < 0) throw Error("token '" + token + "' is not in the vocabulary, and no unk_token is declared");
  return id;
}

}  // namespace layerprobe
