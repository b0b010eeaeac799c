// The tokenizer.json reader on arbitrary files: the input is a tokenizer.json,
// then (after the first NUL byte) a text to tokenise with it. Loading may only
// fail with an Error; a loaded tokenizer tokenises, maps ids back and forth,
// decodes and lays out a pair.
#include <algorithm>

#include "fuzz_support.hpp"
#include "text/tokenizer_json/tokenizer_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace layerprobe::fuzz;
  const std::string_view input = as_bytes(data, size);
  const size_t split = std::min(input.find('\0'), input.size());
  const auto file = scratch().write("tokenizer.json", input.substr(0, split));
  const std::string text(input.substr(std::min(split + 1, input.size())));
  refuse_only_with_error([&] {
    const layerprobe::TokenizerJson tokenizer(file);
    auto pieces = tokenizer.tokenize(text);
    tokenizer.convert_tokens_to_string(pieces);
    tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(pieces));
    tokenizer.encode_with_special_tokens(text);
    tokenizer.pair_layout();
  });
  return 0;
}
