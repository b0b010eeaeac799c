// The ALBERT tokenizer on arbitrary bytes (invalid UTF-8 included), with the
// study's SentencePiece model.
#include "fuzz_support.hpp"
#include "text/albert_tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace layerprobe::fuzz;
  static const layerprobe::AlbertTokenizer tokenizer(std::filesystem::path(LAYERPROBE_SHARED_DIR) / "data" /
                                                     "albert" / "spiece.model");
  refuse_only_with_error([&] {
    auto pieces = tokenizer.tokenize(std::string(as_bytes(data, size)));
    tokenizer.convert_tokens_to_string(pieces);
    tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(pieces));
  });
  return 0;
}
