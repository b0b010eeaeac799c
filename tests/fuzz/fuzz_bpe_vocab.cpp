// The byte-level BPE tokenizer's files and text: the input is vocab.json,
// merges.txt and a text to tokenize, separated by the first two NUL bytes
// (missing parts are empty).
#include <algorithm>
#include <array>

#include "fuzz_support.hpp"
#include "text/bpe_tokenizer.hpp"

namespace {

std::array<std::string_view, 3> split_parts(std::string_view input) {
  std::array<std::string_view, 3> parts;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    size_t end = input.find('\0');
    if (end == std::string_view::npos) end = input.size();
    parts[i] = input.substr(0, end);
    input.remove_prefix(std::min(end + 1, input.size()));
  }
  parts.back() = input;
  return parts;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace layerprobe::fuzz;
  const auto parts = split_parts(as_bytes(data, size));
  const auto vocab = scratch().write("vocab.json", parts[0]);
  const auto merges = scratch().write("merges.txt", parts[1]);
  refuse_only_with_error([&] {
    const layerprobe::ByteLevelBpeTokenizer tokenizer(vocab, merges);
    auto pieces = tokenizer.tokenize(std::string(parts[2]));
    tokenizer.convert_tokens_to_string(pieces);
    tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(pieces));
  });
  return 0;
}
