#include <numeric>

#include "layerprobe/core/common.hpp"
#include "layerprobe/squad/decoder.hpp"
#include "test_support.hpp"
#include "text/albert_tokenizer.hpp"

using namespace layerprobe;

namespace {

// The decoder needs only tokens -> text; SentencePiece pieces join as ALBERT's do.
class PieceJoiner : public Tokenizer {
 public:
  PieceJoiner() : Tokenizer(SpecialTokens{"", "", "<unk>", "[SEP]", "<pad>", "[CLS]", ""}, {}, "test") {}
  std::string kind() const override { return "sentencepiece"; }
  int64_t token_to_id(const std::string&) const override { return 0; }
  std::string id_to_token(int64_t) const override { return "<unk>"; }
  std::string convert_tokens_to_string(const std::vector<std::string>& tokens) const override {
    return join_pieces(tokens);
  }
  int64_t vocab_size() const override { return 1; }
  PairLayout pair_layout() const override { return {}; }
  bool lowercases() const override { return true; }
  std::vector<std::filesystem::path> files() const override { return {}; }
  std::vector<std::string> tokenize(const std::string&) const override { return {}; }
};

const PieceJoiner& pieces() {
  static const PieceJoiner joiner;
  return joiner;
}

// Context "Steve Smith's dog, Rex, barked." asked "who barked?".
SquadExample make_example(const std::string& id = "q1") {
  SquadExample ex;
  ex.qas_id = id;
  ex.question_text = "who barked?";
  ex.context = std::make_shared<const SquadContext>(
      SquadContext{"Steve Smith's dog, Rex, barked.", {"Steve", "Smith's", "dog,", "Rex,", "barked."}});
  return ex;
}

// `context` = (piece, word index, has max context) after "[CLS] ▁who ▁barked ? [SEP]".
struct ContextToken {
  std::string piece;
  int word;
  bool max_context = true;
};

SquadFeature make_feature(int example_index, const std::vector<ContextToken>& context) {
  SquadFeature f;
  f.example_index = example_index;
  auto add = [&](const std::string& piece, int word, bool max_context, int type) {
    f.tokens.push_back(piece);
    f.input_ids.push_back(static_cast<int64_t>(f.tokens.size()));
    f.token_type_ids.push_back(type);
    f.p_mask.push_back(word < 0 ? 1 : 0);
    f.token_to_orig_map.push_back(word);
    f.token_is_max_context.push_back(max_context ? 1 : 0);
  };
  for (const char* q : {"[CLS]", "\xE2\x96\x81who", "\xE2\x96\x81" "barked", "?", "[SEP]"}) add(q, -1, false, 0);
  for (const auto& t : context) add(t.piece, t.word, t.max_context, 1);
  add("[SEP]", -1, false, 1);
  f.paragraph_len = static_cast<int>(context.size());
  return f;
}

const std::string kW = "\xE2\x96\x81";  // U+2581, SentencePiece's word start

// Whole context in one window: token 5 = ▁steve ... 14 = .
SquadFeature full_window(int example_index = 0) {
  return make_feature(example_index, {{kW + "steve", 0}, {kW + "smith", 1}, {"'", 1}, {"s", 1}, {kW + "dog", 2},
                                      {",", 2}, {kW + "rex", 3}, {",", 3}, {kW + "barked", 4}, {".", 4}});
}

FeatureLogits zero_logits(size_t n) { return {std::vector<float>(n, 0.f), std::vector<float>(n, 0.f)}; }

QuestionPrediction decode_one(const SquadFeature& f, const FeatureLogits& l, DecodeOptions options = {}) {
  auto predictions = decode_predictions({make_example()}, {f}, {l}, pieces(), options);
  EXPECT_EQ(predictions.size(), 1u);
  return predictions.at(0);
}

}  // namespace

TEST(GetFinalText, AlignsPredictionOntoOriginalText) {
  EXPECT_EQ(get_final_text("steve smith", "Steve Smith's", true), "Steve Smith");
  EXPECT_EQ(get_final_text("cafe", "Caf\xC3\xA9,", true), "Caf\xC3\xA9");
  EXPECT_EQ(get_final_text("1066", "(1066),", true), "1066");
  EXPECT_EQ(get_final_text("Steve", "Steve's", false), "Steve");
}

TEST(GetFinalText, FallsBackToOriginalTextWhenAlignmentFails) {
  EXPECT_EQ(get_final_text("xyz", "Steve Smith", true), "Steve Smith");          // not found
  EXPECT_EQ(get_final_text("steve smith's", "Steve Smith's", true), "Steve Smith's");  // tokenised differently
  EXPECT_EQ(get_final_text("steve", "Steve's", false), "Steve's");               // case kept
  // U+200B is dropped by the tokenizer, so the lengths differ.
  EXPECT_EQ(get_final_text("abc", "ab\xE2\x80\x8B" "c", true), "ab\xE2\x80\x8B" "c");
}

TEST(Decoder, SpanBeatsNull) {
  SquadFeature f = full_window();
  FeatureLogits l = zero_logits(f.length());
  l.start[0] = 1, l.end[0] = 1;
  l.start[5] = 5, l.end[6] = 5;
  auto p = decode_one(f, l);
  EXPECT_EQ(p.qas_id, "q1");
  EXPECT_EQ(p.text, "Steve Smith");
  EXPECT_DOUBLE_EQ(p.null_odds, 2.0 - 10.0);
  ASSERT_FALSE(p.nbest.empty());
  EXPECT_EQ(p.nbest[0].text, "Steve Smith");
  EXPECT_DOUBLE_EQ(p.nbest[0].start_logit, 5.0);
  double total = 0;
  for (const auto& e : p.nbest) total += e.probability;
  EXPECT_NEAR(total, 1.0, 1e-12);
  for (size_t i = 1; i < p.nbest.size(); ++i) EXPECT_GE(p.nbest[i - 1].probability, p.nbest[i].probability);
  EXPECT_LE(p.nbest.size(), 21u);
}

TEST(Decoder, NullBeatsSpanAndThresholdShiftsTheChoice) {
  SquadFeature f = full_window();
  FeatureLogits l = zero_logits(f.length());
  l.start[0] = 6, l.end[0] = 6;
  l.start[5] = 5, l.end[6] = 5;
  auto p = decode_one(f, l);
  EXPECT_EQ(p.text, "");
  EXPECT_DOUBLE_EQ(p.null_odds, 2.0);
  EXPECT_EQ(p.nbest[0].text, "");
  EXPECT_EQ(p.nbest[1].text, "Steve Smith");

  DecodeOptions lenient;
  lenient.null_score_diff_threshold = 2.5;
  EXPECT_EQ(decode_one(f, l, lenient).text, "Steve Smith");
  l.start[0] = 1, l.end[0] = 1;  // null_odds now -8
  DecodeOptions strict;
  strict.null_score_diff_threshold = -9;
  EXPECT_EQ(decode_one(f, l, strict).text, "");
}

TEST(Decoder, MaxAnswerLengthExcludesLongSpans) {
  SquadFeature f = full_window();
  FeatureLogits l = zero_logits(f.length());
  l.start[5] = 5, l.end[8] = 5;    // "Steve Smith's": 4 tokens
  l.start[11] = 3, l.end[11] = 3;  // "Rex"
  DecodeOptions options;
  options.max_answer_length = 3;
  EXPECT_EQ(decode_one(f, l, options).text, "Rex");
  options.max_answer_length = 4;
  // "steve smith's" is not a substring of the BasicTokenizer's "steve smith ' s":
  // HF falls back to the original words.
  EXPECT_EQ(decode_one(f, l, options).text, "Steve Smith's");
}

TEST(Decoder, EndBeforeStartAndQuestionTokensAreInvalid) {
  SquadFeature f = full_window();
  FeatureLogits l = zero_logits(f.length());
  l.start[9] = 5, l.end[5] = 5;  // end before start
  l.end[9] = 2;                  // "dog"
  l.start[2] = 9, l.end[2] = 9;  // inside the question
  auto p = decode_one(f, l);
  EXPECT_EQ(p.text, "dog");
  EXPECT_DOUBLE_EQ(p.null_odds, 0.0 - 7.0);
}

TEST(Decoder, SpansStartOnlyWhereTheWindowHasMaximalContextAndNullIsTheSmallest) {
  SquadExample ex = make_example();
  // Window A ends at "▁rex", which it does not give maximal context; window B does.
  SquadFeature a = make_feature(0, {{kW + "steve", 0}, {kW + "smith", 1}, {"'", 1}, {"s", 1}, {kW + "dog", 2},
                                    {",", 2}, {kW + "rex", 3, false}});
  SquadFeature b = make_feature(0, {{kW + "dog", 2, false}, {",", 2, false}, {kW + "rex", 3}, {",", 3}, {kW + "barked", 4},
                                    {".", 4}});
  FeatureLogits la = zero_logits(a.length()), lb = zero_logits(b.length());
  la.start[11] = 8;  // "rex" in A: not maximal context
  la.start[0] = 1, la.end[0] = 1;
  lb.start[7] = 3, lb.end[7] = 3;  // "rex" in B
  lb.start[0] = 0.5f, lb.end[0] = 0.5f;
  auto predictions = decode_predictions({ex}, {a, b}, {la, lb}, pieces(), DecodeOptions{});
  ASSERT_EQ(predictions.size(), 1u);
  const auto& p = predictions[0];
  EXPECT_EQ(p.text, "Rex");
  EXPECT_DOUBLE_EQ(p.null_odds, 1.0 - 6.0);
  for (const auto& e : p.nbest)
    if (e.text.empty()) {
      EXPECT_DOUBLE_EQ(e.start_logit, 0.5);  // null from the smallest window
    }
}

TEST(Decoder, DuplicateTextsAreListedOnce) {
  SquadFeature f = full_window();
  FeatureLogits l = zero_logits(f.length());
  // "▁smith ' s" and "' s" both fall back to the original word "Smith's".
  l.start[6] = 4, l.start[7] = 3.9f, l.end[8] = 4;
  auto p = decode_one(f, l);
  EXPECT_EQ(p.text, "Smith's");
  int count = 0;
  for (const auto& e : p.nbest) count += e.text == "Smith's";
  EXPECT_EQ(count, 1);
  EXPECT_LT(p.nbest[1].start_logit + p.nbest[1].end_logit, 7.0);  // the duplicate (score 7.9) was skipped
}

TEST(Decoder, PaddingLogitsTakeNbestSlotsAndNonceEntryAppears) {
  SquadFeature f = full_window();
  FeatureLogits l = zero_logits(f.length() + 4);  // scored over a padded window
  l.start[f.length() + 1] = 100, l.end[f.length() + 1] = 100;
  l.start[11] = 3, l.end[11] = 3;
  l.start[0] = -1, l.end[0] = -1;
  DecodeOptions one;
  one.n_best_size = 1;
  auto p = decode_one(f, l, one);
  // No valid span survives, so HF inserts its "empty" nonce (score 0) ahead of
  // the null and, with a negative null score, even predicts it.
  ASSERT_EQ(p.nbest.size(), 2u);
  EXPECT_EQ(p.nbest[0].text, "empty");
  EXPECT_EQ(p.nbest[1].text, "");
  EXPECT_DOUBLE_EQ(p.null_odds, -2.0);
  EXPECT_EQ(p.text, "empty");
  EXPECT_EQ(decode_one(f, l).text, "Rex");
}

TEST(Decoder, ExampleWithoutFeaturesPredictsNoAnswer) {
  auto predictions = decode_predictions({make_example("a"), make_example("b")}, {full_window(1)},
                                        {zero_logits(full_window().length())}, pieces(), DecodeOptions{});
  ASSERT_EQ(predictions.size(), 2u);
  EXPECT_EQ(predictions[0].qas_id, "a");
  EXPECT_EQ(predictions[0].text, "");
  EXPECT_DOUBLE_EQ(predictions[0].null_odds, 1000000.0);
  EXPECT_EQ(predictions[1].qas_id, "b");
}

TEST(Decoder, InconsistentInputsAreErrors) {
  SquadFeature f = full_window();
  FeatureLogits short_logits = zero_logits(f.length() - 1);
  EXPECT_THROW(decode_predictions({make_example()}, {f}, {short_logits}, pieces(), DecodeOptions{}), Error);
  EXPECT_THROW(decode_predictions({make_example()}, {f}, {}, pieces(), DecodeOptions{}), Error);
  SquadFeature orphan = full_window(3);
  EXPECT_THROW(decode_predictions({make_example()}, {orphan}, {zero_logits(orphan.length())}, pieces(), DecodeOptions{}), Error);
  SquadFeature bad_word = full_window();
  bad_word.token_to_orig_map[5] = 99;
  EXPECT_THROW(decode_predictions({make_example()}, {bad_word}, {zero_logits(f.length())}, pieces(), DecodeOptions{}), Error);
}
