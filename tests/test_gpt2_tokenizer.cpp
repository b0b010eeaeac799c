// Gpt2Tokenizer ("gpt2"): transformers 4.57.5's slow GPT2Tokenizer on every dev
// text, and what sets it apart from the 2.5.1 RoBERTa kind that shares its
// byte-level BPE: no stripping around special tokens, trailing whitespace kept,
// add_prefix_space / add_bos_token, <|endoftext|> as the only special token.
#include "text/gpt2_tokenizer.hpp"

#include <fstream>

#include "layerprobe/core/common.hpp"
#include "layerprobe/text/tokenizer_registry.hpp"
#include "test_support.hpp"
#include "tokenizer_golden.hpp"

using namespace layerprobe;
using Pieces = std::vector<std::string>;
using Ids = std::vector<int64_t>;

namespace {

constexpr const char* kGpt2Vocab = "golden/gpt2-tiny/vocab.json";
constexpr const char* kGpt2Merges = "golden/gpt2-tiny/merges.txt";

Gpt2Tokenizer gpt2(TokenizerSettings settings = {}) {
  return Gpt2Tokenizer(test_support::shared_path(kGpt2Vocab), test_support::shared_path(kGpt2Merges), std::move(settings));
}

}  // namespace

TEST(Gpt2Tokenizer, MatchesTransformers4OnEveryDevQuestionAndContext) {
  REQUIRE_SHARED("golden/tokenizer/gpt2_dev.jsonl.gz");
  REQUIRE_SHARED(kGpt2Merges);
  auto result = test_support::compare_tokenizer_golden(gpt2(), "golden/tokenizer/gpt2_dev.jsonl.gz");
  EXPECT_EQ(result.lines, 6724u);
  EXPECT_EQ(result.mismatches, 0u);
}

TEST(Gpt2Tokenizer, EndOfTextIsTheOnlySpecialToken) {
  REQUIRE_SHARED(kGpt2Merges);
  auto tokenizer = gpt2();
  EXPECT_EQ(tokenizer.special_tokens().all(), (Pieces{"<|endoftext|>"}));
  EXPECT_EQ(tokenizer.vocab_size(), 50257);
  EXPECT_EQ(tokenizer.unk_id(), 50256);
  EXPECT_EQ(tokenizer.cls_id(), -1);
  EXPECT_EQ(tokenizer.sep_id(), -1);
  EXPECT_EQ(tokenizer.pad_id(), 50256);  // no pad token: the unknown token's id pads
  EXPECT_EQ(tokenizer.tokenize("Hi<|endoftext|>there"), (Pieces{"Hi", "<|endoftext|>", "there"}));
  EXPECT_EQ(tokenizer.convert_tokens_to_ids({"no-such-token"}), (Ids{50256}));
}

TEST(Gpt2Tokenizer, KeepsTheWhitespaceThatTransformers2Stripped) {
  REQUIRE_SHARED(kGpt2Merges);
  auto tokenizer = gpt2();
  const std::string G = "\u0120";
  EXPECT_EQ(tokenizer.tokenize("Hello "), (Pieces{"Hello", G}));
  EXPECT_EQ(tokenizer.tokenize("Hello <|endoftext|> world"), (Pieces{"Hello", G, "<|endoftext|>", G + "world"}));
  EXPECT_EQ(tokenizer.tokenize(" "), (Pieces{G}));
  EXPECT_TRUE(tokenizer.tokenize("").empty());
}

TEST(Gpt2Tokenizer, PrefixSpaceAndBosFollowTheSettings) {
  REQUIRE_SHARED(kGpt2Merges);
  TokenizerSettings settings;
  settings.add_prefix_space = true;
  settings.add_bos_token = true;
  auto tokenizer = gpt2(settings);
  EXPECT_EQ(tokenizer.tokenize("Hello"), (Pieces{"\u0120Hello"}));
  EXPECT_EQ(tokenizer.encode_with_special_tokens("Hello"), (Ids{50256, 18435}));
  const PairLayout with_bos = tokenizer.pair_layout();
  EXPECT_EQ(with_bos.before_query, (Ids{50256}));
  EXPECT_EQ(with_bos.between, (Ids{50256}));
  EXPECT_EQ(with_bos.legacy_tokens_before_context(), 1);
  const PairLayout plain = gpt2().pair_layout();
  EXPECT_TRUE(plain.before_query.empty() && plain.between.empty() && plain.after_context.empty());
  EXPECT_EQ(plain.context_token_type, 1);
  EXPECT_EQ(gpt2().encode_with_special_tokens("Hello"), (Ids{15496}));
}

TEST(Gpt2Tokenizer, TokensTurnBackIntoText) {
  REQUIRE_SHARED(kGpt2Merges);
  auto tokenizer = gpt2();
  const std::string text = "Caf\u00e9 d\u00e9j\u00e0-vu \U0001F600 costs $3.50!";
  EXPECT_EQ(tokenizer.convert_tokens_to_string(tokenizer.tokenize(text)), text);
}

TEST(Gpt2Tokenizer, ModelDirectoryIsReadAsGpt2WhenTheFamilyOrClassSaysSo) {
  REQUIRE_SHARED(kGpt2Merges);
  const auto dir = test_support::shared_path("golden/gpt2-tiny");
  // vocab.json + merges.txt are RoBERTa's or GPT-2's: config.json's model_type tells them apart.
  EXPECT_EQ(load_tokenizer(dir)->kind(), "gpt2");
  TokenizerRequest request;
  request.kind = "gpt2";
  EXPECT_EQ(load_tokenizer(dir, request)->kind(), "gpt2");
  // A saved gpt2 tokenizer says so in tokenizer_config.json's tokenizer_class.
  auto saved = test_support::scratch_dir("gpt2_saved");
  save_tokenizer(*load_tokenizer(dir, request), saved);
  EXPECT_EQ(load_tokenizer(saved)->kind(), "gpt2");
  EXPECT_EQ(load_tokenizer(saved / "vocab.json")->kind(), "gpt2");
  // Without either, they are RoBERTa's, as before.
  EXPECT_EQ(load_tokenizer(test_support::shared_path("data/roberta"))->kind(), "bpe");
}

TEST(Gpt2Tokenizer, ConcurrentTokenisationAgrees) {
  REQUIRE_SHARED(kGpt2Merges);
  test_support::expect_concurrent_tokenisation_agrees(gpt2(), "He's here <|endoftext|> 1,000 caf\u00e9  \n\n x ");
}
