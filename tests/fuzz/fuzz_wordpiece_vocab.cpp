// The WordPiece vocabulary reader on arbitrary bytes as vocab.txt (invalid
// UTF-8, stray "\r", repeated tokens, missing special tokens), then a fixed
// text tokenised with whatever vocabulary was read: its pieces must map to
// ids and back.
#include <cstdlib>

#include "fuzz_support.hpp"
#include "text/wordpiece_tokenizer.hpp"

namespace {

// Special tokens, punctuation, an accent, CJK, "##" and a word over 100 code points.
const std::string kText = "[CLS] Who gave their name to Normandy in the 1000's? Caf\u00e9 \u4e2d\u6587 un##affable [SEP] " +
                          std::string(101, 'x') + " [MASK]";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace layerprobe::fuzz;
  auto vocab = scratch().write("vocab.txt", as_bytes(data, size));
  refuse_only_with_error([&] {
    layerprobe::WordPieceTokenizer tokenizer(vocab);
    auto pieces = tokenizer.tokenize(kText);
    tokenizer.convert_tokens_to_string(pieces);
    auto back = tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(pieces));
    // Only "[MASK]", which the vocabulary need not hold, may come back as the unknown token.
    for (size_t i = 0; i < pieces.size(); ++i)
      if (back[i] != pieces[i] && pieces[i] != tokenizer.special_tokens().mask) std::abort();
  });
  return 0;
}
