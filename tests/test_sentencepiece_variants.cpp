// The SentencePiece kinds of transformers 4.57.5: XLMRobertaTokenizer
// ("xlm-roberta": fairseq ids over sentencepiece.bpe.model) and
// DebertaV2Tokenizer ("deberta-v2": spm.model's own ids) — their goldens on
// every dev text, the id mappings, the 4.57.5 added-token rules and the model
// directories of the golden tiny models.
#include "text/deberta_v2_tokenizer.hpp"
#include "text/xlm_roberta_tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "layerprobe/core/common.hpp"
#include "layerprobe/text/tokenizer_registry.hpp"
#include "test_support.hpp"
#include "tokenizer_golden.hpp"

using namespace layerprobe;
using Pieces = std::vector<std::string>;
using Ids = std::vector<int64_t>;

namespace {

// The goldens' tokenizers: albert-base-v2's spiece.model stands in for both models.
XlmRobertaTokenizer xlm_roberta(TokenizerSettings settings = {}) {
  return XlmRobertaTokenizer(test_support::shared_path(test_support::kSpieceModel), std::move(settings));
}

// DebertaV2Tokenizer(spiece.model, unk_token="<unk>", pad_token="<pad>").
TokenizerSettings deberta_golden_settings() {
  TokenizerSettings settings;
  settings.special_tokens = {{"unk_token", "<unk>"}, {"pad_token", "<pad>"}};
  return settings;
}

DebertaV2Tokenizer deberta(TokenizerSettings settings = deberta_golden_settings()) {
  return DebertaV2Tokenizer(test_support::shared_path(test_support::kSpieceModel), std::move(settings));
}

template <typename Make>
std::string spm_error_of(Make make) {
  try {
    make();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(XlmRobertaTokenizer, MatchesTransformers4OnEveryDevQuestionAndContext) {
  REQUIRE_SHARED("golden/tokenizer/xlm_roberta_dev.jsonl.gz");
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto result = test_support::compare_tokenizer_golden(xlm_roberta(), "golden/tokenizer/xlm_roberta_dev.jsonl.gz");
  EXPECT_EQ(result.lines, 6724u);
  EXPECT_EQ(result.mismatches, 0u);
}

TEST(XlmRobertaTokenizer, IdsFollowFairseq) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto tokenizer = xlm_roberta();
  EXPECT_EQ(tokenizer.convert_tokens_to_ids({"<s>", "<pad>", "</s>", "<unk>", "<mask>"}), (Ids{0, 1, 2, 3, 30001}));
  EXPECT_EQ(tokenizer.vocab_size(), 30002);
  // spm id k -> k + 1; the stand-in model's own unknown id (1) therefore -> 2, as HF gives it.
  EXPECT_EQ(tokenizer.convert_tokens_to_ids({"\u2581the", "no-such-piece"}), (Ids{15, 2}));
  EXPECT_EQ(tokenizer.convert_ids_to_tokens({0, 1, 2, 3, 15, 30001}),
            (Pieces{"<s>", "<pad>", "</s>", "<unk>", "\u2581the", "<mask>"}));
  EXPECT_NE(spm_error_of([&] { tokenizer.convert_ids_to_tokens({30002}); }).find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(spm_error_of([&] { tokenizer.convert_ids_to_tokens({-1}); }).find("outside the vocabulary"), std::string::npos);
  EXPECT_EQ(tokenizer.cls_id(), 0);
  EXPECT_EQ(tokenizer.sep_id(), 2);
  EXPECT_EQ(tokenizer.pad_id(), 1);
  EXPECT_FALSE(tokenizer.lowercases());
}

TEST(XlmRobertaTokenizer, PairLayoutIsRobertasWithHfsLegacyOffsetOfTwo) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  const PairLayout layout = xlm_roberta().pair_layout();
  EXPECT_EQ(layout.before_query, (Ids{0}));
  EXPECT_EQ(layout.between, (Ids{2, 2}));
  EXPECT_EQ(layout.after_context, (Ids{2}));
  EXPECT_EQ(layout.context_token_type, 0);
  EXPECT_EQ(layout.tokens_before_context(), 3);
  EXPECT_EQ(layout.legacy_tokens_before_context(), 2);
  EXPECT_EQ(xlm_roberta().encode_with_special_tokens("the"), (Ids{0, 15, 2}));
}

TEST(XlmRobertaTokenizer, MaskTokenEatsTheSpaceBeforeIt) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto tokenizer = xlm_roberta();
  // 4.57.5: <mask> is AddedToken(lstrip=True); the other special tokens strip nothing,
  // and text around them is not right-stripped as 2.5.1 did.
  EXPECT_EQ(tokenizer.tokenize("the <mask> cat"), (Pieces{"\u2581the", "<mask>", "\u2581cat"}));
  EXPECT_EQ(tokenizer.tokenize("the   <mask>"), (Pieces{"\u2581the", "<mask>"}));
  EXPECT_EQ(tokenizer.tokenize("the </s> cat"), (Pieces{"\u2581the", "</s>", "\u2581cat"}));
  EXPECT_EQ(tokenizer.tokenize("the</s>cat"), (Pieces{"\u2581the", "</s>", "\u2581cat"}));
  EXPECT_TRUE(tokenizer.tokenize("   ").empty());
  // A tokenizer_config.json's added_tokens_decoder flags win over the class's: a
  // single_word <mask> touching a word stays in the text, which SentencePiece cuts up.
  EXPECT_EQ(tokenizer.tokenize("a<mask>b"), (Pieces{"\u2581a", "<mask>", "\u2581b"}));
  TokenizerSettings settings;
  AddedToken mask{"<mask>"};
  mask.single_word = true;
  settings.added_tokens.emplace_back(30001, mask);
  const auto pieces = xlm_roberta(settings).tokenize("a<mask>b");
  EXPECT_EQ(std::count(pieces.begin(), pieces.end(), "<mask>"), 0) << nlohmann::json(pieces).dump();
  EXPECT_EQ(xlm_roberta(settings).tokenize("a <mask> b"), (Pieces{"\u2581a", "<mask>", "\u2581b"}));
}

TEST(XlmRobertaTokenizer, TokensTurnBackIntoText) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto tokenizer = xlm_roberta();
  EXPECT_EQ(tokenizer.convert_tokens_to_string(tokenizer.tokenize("the normans were in normandy.")),
            "the normans were in normandy.");
  EXPECT_EQ(tokenizer.convert_tokens_to_string({"\u2581", "N", "or", "man"}), "Norman");
}

TEST(XlmRobertaTokenizer, ConcurrentTokenisationAgrees) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto tokenizer = xlm_roberta();
  test_support::expect_concurrent_tokenisation_agrees(tokenizer, "Normandy, 1,000 <mask> d\u00e9j\u00e0 vu </s> done");
}

TEST(DebertaV2Tokenizer, MatchesTransformers4OnEveryDevQuestionAndContext) {
  REQUIRE_SHARED("golden/tokenizer/deberta_v3_dev.jsonl.gz");
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto result = test_support::compare_tokenizer_golden(deberta(), "golden/tokenizer/deberta_v3_dev.jsonl.gz");
  EXPECT_EQ(result.lines, 6724u);
  EXPECT_EQ(result.mismatches, 0u);
}

TEST(DebertaV2Tokenizer, IdsAreTheModelsOwn) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto tokenizer = deberta();
  EXPECT_EQ(tokenizer.convert_tokens_to_ids({"<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]", "N"}), (Ids{0, 1, 2, 3, 4, 1}));
  EXPECT_EQ(tokenizer.vocab_size(), 30000);
  EXPECT_EQ(tokenizer.cls_id(), 2);
  EXPECT_EQ(tokenizer.sep_id(), 3);
  EXPECT_EQ(tokenizer.pad_id(), 0);
  EXPECT_EQ(tokenizer.unk_id(), 1);
  const PairLayout layout = tokenizer.pair_layout();
  EXPECT_EQ(layout.before_query, (Ids{2}));
  EXPECT_EQ(layout.between, (Ids{3}));
  EXPECT_EQ(layout.after_context, (Ids{3}));
  EXPECT_EQ(layout.context_token_type, 1);
  EXPECT_EQ(layout.legacy_tokens_before_context(), layout.tokens_before_context());
  EXPECT_NE(spm_error_of([&] { tokenizer.convert_ids_to_tokens({30000}); }).find("outside the vocabulary"), std::string::npos);
}

TEST(DebertaV2Tokenizer, LowerCasingAndPunctuationSplitFollowTheSettings) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  // The stand-in vocabulary is lower-case only: upper-case letters are unknown pieces unless lower-cased.
  EXPECT_EQ(deberta().tokenize("The"), (Pieces{"\u2581", "T", "he"}));
  TokenizerSettings lower = deberta_golden_settings();
  lower.do_lower_case = true;
  EXPECT_EQ(deberta(lower).tokenize("The"), (Pieces{"\u2581the"}));
  EXPECT_TRUE(deberta(lower).lowercases());
  TokenizerSettings split = deberta_golden_settings();
  split.split_by_punct = true;
  // Each punctuation mark is encoded on its own, so "," gets a word-start mark of its own.
  EXPECT_EQ(deberta(split).tokenize("a,b"), (Pieces{"\u2581a", "\u2581", ",", "\u2581b"}));
  EXPECT_EQ(deberta().tokenize("a,b"), (Pieces{"\u2581a", ",", "b"}));
}

TEST(DebertaV2Tokenizer, TokensTurnBackIntoTextThroughSentencePiece) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto tokenizer = deberta();
  EXPECT_EQ(tokenizer.convert_tokens_to_string(tokenizer.tokenize("the normans were in normandy.")),
            "the normans were in normandy.");
  // Special tokens are not decoded by SentencePiece; a space goes before a run of them.
  EXPECT_EQ(tokenizer.convert_tokens_to_string({"\u2581the", "[SEP]", "\u2581cat"}), "the[SEP]cat");
  EXPECT_EQ(tokenizer.convert_tokens_to_string({"\u2581the", "[SEP]", "[SEP]", "\u2581cat", "\u2581dog"}),
            "the[SEP][SEP]cat dog");
}

TEST(DebertaV2Tokenizer, ConcurrentTokenisationAgrees) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  test_support::expect_concurrent_tokenisation_agrees(deberta(), "Normandy, 1,000 [SEP] d\u00e9j\u00e0 vu [MASK] x");
}

TEST(SentencePieceVariants, GoldenModelDirectoriesLoadTheirTokenizers) {
  REQUIRE_SHARED("golden/xlm-roberta-tiny/sentencepiece.bpe.model");
  REQUIRE_SHARED("golden/deberta-v3-tiny/spm.model");
  auto xlmr = load_tokenizer(test_support::shared_path("golden/xlm-roberta-tiny"));
  EXPECT_EQ(xlmr->kind(), "xlm-roberta");
  EXPECT_EQ(xlmr->encode("In what country"), xlm_roberta().encode("In what country"));
  auto deb = load_tokenizer(test_support::shared_path("golden/deberta-v3-tiny"));
  EXPECT_EQ(deb->kind(), "deberta-v2");
  EXPECT_EQ(deb->special_tokens().unk, "<unk>");
  EXPECT_EQ(deb->special_tokens().pad, "<pad>");
  EXPECT_EQ(deb->encode("In what country"), deberta().encode("In what country"));
  // The same SentencePiece file read as a family's kind.
  TokenizerRequest as_xlmr;
  as_xlmr.kind = "xlm-roberta";
  EXPECT_EQ(load_tokenizer(test_support::shared_path(test_support::kSpieceModel), as_xlmr)->kind(), "xlm-roberta");
  EXPECT_EQ(load_tokenizer(test_support::shared_path("golden/xlm-roberta-tiny/sentencepiece.bpe.model"))->kind(),
            "xlm-roberta");
}

TEST(SentencePieceVariants, SavedTokenizersReloadAsTheirKind) {
  REQUIRE_SHARED("golden/deberta-v3-tiny/spm.model");
  auto original = load_tokenizer(test_support::shared_path("golden/deberta-v3-tiny"));
  auto dir = test_support::scratch_dir("spm_variants_save");
  save_tokenizer(*original, dir);
  auto reread = load_tokenizer(dir);
  EXPECT_EQ(reread->kind(), "deberta-v2");
  EXPECT_EQ(reread->special_tokens().unk, "<unk>");
  EXPECT_EQ(reread->encode("In what country?"), original->encode("In what country?"));
}
