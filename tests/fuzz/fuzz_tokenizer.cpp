// The SentencePiece tokenizers on arbitrary bytes (invalid UTF-8 included),
// with the study's SentencePiece model: ALBERT's (transformers 2.5.1's shell)
// and XLM-RoBERTa's and DeBERTa-v2's (4.57.5's: added-token flags, no stripping).
#include "fuzz_support.hpp"
#include "text/albert_tokenizer.hpp"
#include "text/deberta_v2_tokenizer.hpp"
#include "text/xlm_roberta_tokenizer.hpp"

namespace {

const std::filesystem::path& spiece_model() {
  static const auto path = std::filesystem::path(LAYERPROBE_SHARED_DIR) / "data" / "albert" / "spiece.model";
  return path;
}

void exercise(const layerprobe::Tokenizer& tokenizer, const std::string& text) {
  layerprobe::fuzz::refuse_only_with_error([&] {
    auto pieces = tokenizer.tokenize(text);
    tokenizer.convert_tokens_to_string(pieces);
    tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(pieces));
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace layerprobe::fuzz;
  static const layerprobe::AlbertTokenizer albert(spiece_model());
  static const layerprobe::XlmRobertaTokenizer xlm_roberta(spiece_model());
  static const layerprobe::DebertaV2Tokenizer deberta = [] {
    layerprobe::TokenizerSettings settings;
    settings.special_tokens = {{"unk_token", "<unk>"}, {"pad_token", "<pad>"}};
    settings.split_by_punct = true;
    return layerprobe::DebertaV2Tokenizer(spiece_model(), settings);
  }();
  const std::string text(as_bytes(data, size));
  exercise(albert, text);
  exercise(xlm_roberta, text);
  exercise(deberta, text);
  return 0;
}
