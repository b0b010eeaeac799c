#include "text/albert_tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <thread>

#include "layerprobe/core/common.hpp"
#include "test_support.hpp"

using namespace layerprobe;
using Pieces = std::vector<std::string>;

namespace {


AlbertTokenizer albert(TokenizerSettings options = {}) {
  return AlbertTokenizer(test_support::shared_path(test_support::kSpieceModel), options);
}

TokenizerSettings cased() {
  TokenizerSettings options;
  options.do_lower_case = false;
  return options;
}

TokenizerSettings keep_accents() {
  TokenizerSettings options;
  options.keep_accents = true;
  return options;
}

}  // namespace

// Expected values: HF's preprocess_text run by Python 3 (unicodedata).
TEST(AlbertPreprocess, CollapsesPythonWhitespace) {
  EXPECT_EQ(albert_preprocess("  Hello \t World\u3000and\u00a0more  ", {}), "hello world and more");
  EXPECT_EQ(albert_preprocess("A\u2028B\u200b" "C", {}), "a b\u200b" "c");  // U+200B is not whitespace
}

TEST(AlbertPreprocess, TurnsTexQuotesIntoDoubleQuotes) {
  EXPECT_EQ(albert_preprocess("``Quoted'' text ''", {}), "\"quoted\" text \"");
}

TEST(AlbertPreprocess, NfkdDropsCombiningMarksUnlessKeepAccents) {
  EXPECT_EQ(albert_preprocess("Caf\u00e9 Na\u00efve \u00c5ngstr\u00f6m", {}), "cafe naive angstrom");
  EXPECT_EQ(albert_preprocess("Caf\u00e9 Na\u00efve \u00c5ngstr\u00f6m", keep_accents()),
            "caf\u00e9 na\u00efve \u00e5ngstr\u00f6m");
  EXPECT_EQ(albert_preprocess("\ufb01 \u2460 \u00b2 \uff21\uff22\uff23", {}), "fi 1 2 abc");
  EXPECT_EQ(albert_preprocess("x\u0301y", {}), "xy");
  EXPECT_EQ(albert_preprocess("\ud55c\uad6d\uc5b4", {}),
            "\u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165");  // Hangul decomposes to jamo
}

TEST(AlbertPreprocess, LowercasesLikePythonUnlessCased) {
  EXPECT_EQ(albert_preprocess("\u039f\u0394\u039f\u03a3 \u03a3 \u03a3\u0391", {}),
            "\u03bf\u03b4\u03bf\u03c2 \u03c3 \u03c3\u03b1");  // final sigma
  EXPECT_EQ(albert_preprocess("\u0130stanbul", {}), "istanbul");
  EXPECT_EQ(albert_preprocess("\u0130stanbul", keep_accents()), "i\u0307stanbul");
  EXPECT_EQ(albert_preprocess("Caf\u00e9 ABC", cased()), "Cafe ABC");
}

TEST(AlbertTokenizer, MatchesHuggingFaceOnEveryDevQuestionAndContext) {
  REQUIRE_SHARED("golden/tokenizer/dev.jsonl");
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto tokenizer = albert();
  std::ifstream in(test_support::shared_path("golden/tokenizer/dev.jsonl"));
  size_t lines = 0, mismatches = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    auto golden = nlohmann::json::parse(line);
    auto pieces = tokenizer.tokenize(golden["text"].get<std::string>());
    auto ids = tokenizer.convert_tokens_to_ids(pieces);
    if (pieces != golden["pieces"].get<Pieces>() || ids != golden["ids"].get<std::vector<int64_t>>()) {
      if (++mismatches <= 5) ADD_FAILURE() << "line " << lines + 1 << ": " << golden["text"];
    }
  }
  EXPECT_EQ(lines, 6724u);
  EXPECT_EQ(mismatches, 0u);
}

TEST(AlbertTokenizer, SpecialTokenIdsComeFromTheModel) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto tokenizer = albert();
  EXPECT_EQ(tokenizer.cls_id(), 2);
  EXPECT_EQ(tokenizer.sep_id(), 3);
  EXPECT_EQ(tokenizer.pad_id(), 0);
  EXPECT_EQ(tokenizer.unk_id(), 1);
  EXPECT_EQ(tokenizer.vocab_size(), 30000);
}

TEST(AlbertTokenizer, LiteralSpecialTokensStayWhole) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto tokenizer = albert();
  EXPECT_EQ(tokenizer.tokenize("What is [SEP] this?"), (Pieces{"\u2581what", "\u2581is", "[SEP]", "\u2581this", "?"}));
  EXPECT_EQ(tokenizer.tokenize("[CLS]hello<pad>"), (Pieces{"[CLS]", "\u2581hello", "<pad>"}));
  EXPECT_EQ(tokenizer.encode("[MASK] <unk>"), (std::vector<int64_t>{4, 1}));
  // Matching is case-sensitive and happens before lowercasing.
  EXPECT_EQ(tokenizer.tokenize("[sep]"), (Pieces{"\u2581[", "s", "ep", "]"}));
  EXPECT_EQ(tokenizer.tokenize("[Sep]"), (Pieces{"\u2581[", "s", "ep", "]"}));
}

TEST(AlbertTokenizer, CommaAfterDigitBecomesItsOwnPiece) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto tokenizer = albert();
  // SentencePiece alone gives "▁9," and "▁the ▁2, 5 ,"; "▁1,000" keeps its inner comma.
  EXPECT_EQ(tokenizer.tokenize("9,"), (Pieces{"\u25819", ","}));
  EXPECT_EQ(tokenizer.tokenize("the 2,5,"), (Pieces{"\u2581the", "\u25812", ",", "5", ","}));
  EXPECT_EQ(tokenizer.tokenize("1,000,"), (Pieces{"\u25811,000", ","}));
}

TEST(AlbertTokenizer, OptionsChangeThePieces) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  EXPECT_EQ(albert().tokenize("``Caf\u00e9''"), (Pieces{"\u2581", "\"", "ca", "fe", "\""}));
  EXPECT_NE(albert(cased()).tokenize("Paris"), albert().tokenize("Paris"));
  EXPECT_NE(albert(keep_accents()).tokenize("caf\u00e9"), albert().tokenize("caf\u00e9"));
}

TEST(AlbertTokenizer, BlankTextHasNoPieces) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  EXPECT_TRUE(albert().tokenize(" \t\u3000\n").empty());
  EXPECT_TRUE(albert().tokenize("").empty());
}

TEST(AlbertTokenizer, IdsAndPiecesRoundTrip) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto tokenizer = albert();
  auto pieces = tokenizer.tokenize("The Normans were in Normandy.");
  EXPECT_EQ(tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(pieces)), pieces);
  EXPECT_EQ(tokenizer.convert_tokens_to_string(pieces), "the normans were in normandy.");
  EXPECT_EQ(tokenizer.convert_tokens_to_ids({"no-such-piece"}), (std::vector<int64_t>{1}));
  EXPECT_THROW(tokenizer.convert_ids_to_tokens({30000}), Error);
  EXPECT_THROW(tokenizer.convert_ids_to_tokens({-1}), Error);
}

TEST(AlbertTokenizer, ConcurrentTokenisationAgrees) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto tokenizer = albert();
  const std::string text = "Normandy, 1,000, and the Normans' d\u00e9j\u00e0 vu [SEP] 9, done";
  test_support::expect_concurrent_tokenisation_agrees(tokenizer, text);
}

TEST(AlbertTokenizer, MissingModelIsAnErrorNamingIt) {
  try {
    AlbertTokenizer tokenizer("/nonexistent/spiece.model");
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/spiece.model"), std::string::npos) << e.what();
  }
}

// Issue 25's check of ALBERT's path for a word-final capital sigma. With
// do_lower_case in init_kwargs (run_squad --do_lower_case), 2.5.1 lower-cases
// one character at a time first (Σ -> σ); without it, preprocess_text's
// str.lower() of the whole text makes it ς. 2.5.1's preprocess_text (Python
// 3.11) gives "η οδοσ ειναι" and "η οδος ειναι" for "Η ΟΔΟΣ ΕΙΝΑΙ"; the pieces
// are SentencePiece's of those texts.
TEST(AlbertTokenizer, FinalCapitalSigmaFollowsTheLowerCasingPath) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  const std::string text = "\u0397 \u039f\u0394\u039f\u03a3 \u0395\u0399\u039d\u0391\u0399";
  TokenizerSettings lower;
  lower.do_lower_case = true;
  EXPECT_EQ(albert(lower).tokenize(text), albert().tokenize("\u03b7 \u03bf\u03b4\u03bf\u03c3 \u03b5\u03b9\u03bd\u03b1\u03b9"));
  EXPECT_EQ(albert().tokenize(text), albert().tokenize("\u03b7 \u03bf\u03b4\u03bf\u03c2 \u03b5\u03b9\u03bd\u03b1\u03b9"));
  EXPECT_NE(albert().tokenize("\u03bf\u03b4\u03bf\u03c3"), albert().tokenize("\u03bf\u03b4\u03bf\u03c2"));
}
