#include "text/gpt2_tokenizer.hpp"

#include "layerprobe/core/common.hpp"

namespace layerprobe {

namespace {

SpecialTokens gpt2_special_tokens() {
  SpecialTokens specials;
  specials.bos = specials.eos = specials.unk = "<|endoftext|>";
  return specials;
}

}  // namespace

Gpt2Tokenizer::Gpt2Tokenizer(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt,
                             TokenizerSettings settings)
    : SlowTokenizer(gpt2_special_tokens(), std::move(settings), vocab_json.string(), HfGeneration::v4_57_5),
      bpe_(vocab_json, merges_txt),
      vocab_path_(vocab_json),
      merges_path_(merges_txt) {
  auto added_with_id = [&](const std::string& token) {
    for (const auto& [id, added] : this->settings().added_tokens)
      if (added.content == token && id >= 0) return true;
    return false;
  };
  for (const auto& token : special_tokens().all())
    if (bpe_.find(token) < 0 && !added_with_id(token))
      throw Error("special token '" + token + "' is not in '" + vocab_json.string() +
                  "'; use the vocab.json the model was trained with, or name special tokens it has in "
                  "special_tokens_map.json");
}

std::u32string Gpt2Tokenizer::prepare_for_tokenization(std::u32string text) const {
  return settings().add_prefix_space ? U" " + text : text;
}

int64_t Gpt2Tokenizer::vocab_token_to_id(const std::string& token) const {
  int64_t id = bpe_.find(token);
  if (id < 0 && token != special_tokens().unk) id = token_to_id(special_tokens().unk);
  if (id < 0) throw Error("token '" + token + "' is not in the vocabulary, and neither is the unknown token");
  return id;
}

PairLayout Gpt2Tokenizer::pair_layout() const {
  PairLayout layout;
  if (settings().add_bos_token) {
    const int64_t bos = token_to_id(special_tokens().bos);
    layout.before_query = {bos};
    layout.between = {bos};
  }
  layout.context_token_type = 1;
  // squad.py's sequence_added_tokens: the bos of a single sequence, if any.
  layout.legacy_context_offset = settings().add_bos_token ? 1 : 0;
  return layout;
}

std::pair<std::vector<int64_t>, std::vector<int64_t>> Gpt2Tokenizer::single_layout() const {
  if (!settings().add_bos_token) return {};
  return {{token_to_id(special_tokens().bos)}, {}};
}

}  // namespace layerprobe
