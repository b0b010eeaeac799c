// The control task for span prediction (probe/control_task.hpp): its labels
// on tiny cases computed by hand from the documented definition, the
// threshold, window labels, and the control answers' gold file.
#include <nlohmann/json.hpp>

#include "layerprobe/core/common.hpp"
#include "layerprobe/probe/control_task.hpp"
#include "layerprobe/squad/features.hpp"
#include "layerprobe/squad/metrics.hpp"
#include "layerprobe/squad/squad.hpp"
#include "layerprobe/text/tokenizer.hpp"
#include "layerprobe/text/tokenizer_registry.hpp"
#include "test_support.hpp"

using namespace layerprobe;

namespace {

// The definition, written out again: u(v) = (splitmix64(splitmix64(S) ^ 2v) >> 11) / 2^53.
double hand_score(uint64_t seed, int64_t id) {
  return static_cast<double>(control_splitmix64(control_splitmix64(seed) ^ (2 * static_cast<uint64_t>(id))) >> 11) /
         9007199254740992.0;
}

int hand_extra(uint64_t seed, int64_t id) {
  return static_cast<int>(control_splitmix64(control_splitmix64(seed) ^ (2 * static_cast<uint64_t>(id) + 1)) % 4);
}

// A feature of a context of `context` tokens: window [window_start, window_start + length) after `offset` tokens.
SquadFeature window(int example, const std::vector<int64_t>& context, int window_start, int length, int offset) {
  SquadFeature f;
  f.example_index = example;
  f.input_ids.assign(static_cast<size_t>(offset), 2);  // [CLS] and question tokens
  for (int i = 0; i < length; ++i) f.input_ids.push_back(context[static_cast<size_t>(window_start + i)]);
  f.input_ids.push_back(3);  // [SEP]
  f.context_start = offset;
  f.window_start = window_start;
  f.paragraph_len = length;
  return f;
}

}  // namespace

TEST(ControlTask, SplitMix64IsTheReferenceGenerator) {
  // The first outputs of Vigna's splitmix64 seeded with 0 and 1 (published values).
  EXPECT_EQ(control_splitmix64(0), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(control_splitmix64(0x9e3779b97f4a7c15ULL), 0x6e789e6aa1b965f4ULL);
}

TEST(ControlTask, LabelsFollowTheDefinitionByHand) {
  const uint64_t seed = 7;
  const std::vector<int64_t> context = {11, 42, 7, 42, 99, 5, 13};
  // By hand: every token's score; the first best; its extra tokens.
  size_t best = 0;
  for (size_t i = 1; i < context.size(); ++i)
    if (hand_score(seed, context[i]) > hand_score(seed, context[best])) best = i;
  for (size_t i = 0; i < context.size(); ++i) EXPECT_EQ(control_score(seed, context[i]), hand_score(seed, context[i]));
  const int extra = hand_extra(seed, context[best]);
  EXPECT_EQ(control_extra_tokens(seed, context[best]), extra);
  auto answer = control_answer(context, seed, 0.0);
  ASSERT_TRUE(answer.answerable);
  EXPECT_EQ(answer.start, static_cast<int>(best));
  EXPECT_EQ(answer.end, std::min<int>(static_cast<int>(best) + extra, static_cast<int>(context.size()) - 1));
  EXPECT_EQ(answer.best_score, hand_score(seed, context[best]));
  // Under a threshold above the best score there is no answer.
  EXPECT_FALSE(control_answer(context, seed, answer.best_score + 1e-12).answerable);
  EXPECT_TRUE(control_answer(context, seed, answer.best_score).answerable);
  // A repeated best token: the first occurrence starts the answer; the scores depend on the id alone.
  const std::vector<int64_t> twice = {static_cast<int64_t>(context[best]), 11, static_cast<int64_t>(context[best])};
  EXPECT_EQ(control_answer(twice, seed, 0.0).start, 0);
  // At the end of the context the span is cut short.
  const std::vector<int64_t> last = {11, static_cast<int64_t>(context[best])};
  auto at_end = control_answer(last, seed, 0.0);
  if (hand_score(seed, context[best]) > hand_score(seed, 11)) {
    EXPECT_EQ(at_end.start, 1);
    EXPECT_EQ(at_end.end, 1);
  }
  // Another seed, other scores.
  EXPECT_NE(control_score(8, 42), control_score(7, 42));
  EXPECT_GE(control_score(7, 42), 0.0);
  EXPECT_LT(control_score(7, 42), 1.0);
}

TEST(ControlTask, TheThresholdGivesTheUnanswerableShare) {
  EXPECT_DOUBLE_EQ(control_threshold({0.1, 0.5, 0.3, 0.9}, 0.5), 0.4);  // between the 2nd and 3rd smallest
  EXPECT_DOUBLE_EQ(control_threshold({0.1, 0.5, 0.3, 0.9}, 0.25), 0.2);
  EXPECT_DOUBLE_EQ(control_threshold({0.1, 0.5}, 0.0), 0.0);  // nothing unanswerable
  EXPECT_DOUBLE_EQ(control_threshold({0.1, 0.5}, 1.0), 1.0);  // everything
  const std::vector<double> best = {0.2, 0.7, 0.4, 0.95, 0.6, 0.1};
  const double tau = control_threshold(best, 1.0 / 3);
  EXPECT_EQ(std::count_if(best.begin(), best.end(), [&](double b) { return b < tau; }), 2);
}

TEST(ControlTask, WindowsAreLabelledLikeSquadsAnswers) {
  // One context of 10 tokens in two windows (0..5 and 4..9), after 3 tokens each; one context too short for an answer.
  const uint64_t seed = 3;
  std::vector<int64_t> context(10);
  for (int i = 0; i < 10; ++i) context[static_cast<size_t>(i)] = 100 + 7 * i;
  std::vector<SquadFeature> features = {window(0, context, 0, 6, 3), window(0, context, 4, 6, 3), window(1, {50, 51}, 0, 2, 4)};
  const auto ids = context_ids_by_example(features, 2);
  EXPECT_EQ(ids[0], context);
  EXPECT_EQ(ids[1], (std::vector<int64_t>{50, 51}));
  ControlTaskSpec spec;
  spec.seed = seed;
  spec.threshold = 0.0;
  const auto answer = control_answer(context, seed, 0.0);
  const auto targets = control_task_targets(features, 2, spec, {});
  for (size_t w = 0; w < 2; ++w) {
    const int first = features[w].window_start, last = first + 5;
    if (answer.start >= first && answer.end <= last)
      EXPECT_EQ(targets[w], (std::pair<int, int>{answer.start - first + 3, answer.end - first + 3})) << w;
    else
      EXPECT_EQ(targets[w], (std::pair<int, int>{0, 0})) << w;
  }
  // With the threshold above both contexts' best scores, every window points at the classifier token.
  spec.threshold = 1.0;
  for (const auto& t : control_task_targets(features, 2, spec, {})) EXPECT_EQ(t, (std::pair<int, int>{0, 0}));
  // A gap in the windows is an error, not a silently wrong label.
  std::vector<SquadFeature> gap = {window(0, context, 0, 4, 3), window(0, context, 6, 4, 3)};
  EXPECT_THROW(context_ids_by_example(gap, 1), Error);
}

TEST(ControlTask, GoldAnswersAreWhatDecodingGivesForTheSpan) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  const auto tokenizer = load_tokenizer(test_support::shared_path(test_support::kSpieceModel));
  const std::string json = R"({"version": "v2.0", "data": [{"title": "T", "paragraphs": [
      {"context": "Marie Curie was born in Warsaw in 1867 and studied physics in Paris.",
       "qas": [{"id": "q1", "question": "Where was Marie born?", "answers": [{"text": "Warsaw", "answer_start": 24}], "is_impossible": false},
               {"id": "q2", "question": "What did she study?", "answers": [{"text": "physics", "answer_start": 51}], "is_impossible": false}]},
      {"context": "The river flows north through the old valley.",
       "qas": [{"id": "q3", "question": "Which way?", "answers": [], "is_impossible": true}]}]}]})";
  const auto dataset = parse_squad(json, "inline");
  FeatureOptions options;
  options.window.max_seq_length = 24;  // several windows per context
  options.window.doc_stride = 6;
  options.window.max_query_length = 8;
  const auto features = convert_examples_to_features(dataset.examples, *tokenizer, options);
  ControlTaskSpec spec;
  spec.seed = 5;
  spec.threshold = 0.0;
  size_t answerable = 0;
  const auto gold = nlohmann::json::parse(control_task_gold(dataset.examples, features, *tokenizer, spec, &answerable));
  EXPECT_EQ(answerable, 3u);
  const auto ids = context_ids_by_example(features, dataset.examples.size());
  const auto& paragraphs = gold.at("data").at(0).at("paragraphs");
  ASSERT_EQ(paragraphs.size(), 2u);
  EXPECT_EQ(paragraphs.at(0).at("qas").size(), 2u);
  for (size_t e = 0; e < 3; ++e) {
    const auto& qa = e < 2 ? paragraphs.at(0).at("qas").at(e) : paragraphs.at(1).at("qas").at(0);
    EXPECT_EQ(qa.at("id"), dataset.examples[e].qas_id);
    // The gold text is the span's pieces joined and mapped back to the context.
    const auto answer = control_answer(ids[e], spec.seed, spec.threshold, control_start_tokens(*tokenizer));
    const auto pieces = tokenizer->convert_ids_to_tokens(
        std::vector<int64_t>(ids[e].begin() + answer.start, ids[e].begin() + answer.end + 1));
    const std::string text = qa.at("answers").at(0).at("text");
    EXPECT_FALSE(normalize_answer(text).empty()) << text;  // never scored like "no answer"
    EXPECT_EQ(normalize_answer(text), normalize_answer(tokenizer->convert_tokens_to_string(pieces))) << text;
    const int start = qa.at("answers").at(0).at("answer_start");
    EXPECT_EQ(dataset.examples[e].context_text().substr(static_cast<size_t>(start), text.size()), text);
  }
  // Above every best score: no question has a control answer.
  spec.threshold = 1.0;
  const auto none = nlohmann::json::parse(control_task_gold(dataset.examples, features, *tokenizer, spec, &answerable));
  EXPECT_EQ(answerable, 0u);
  EXPECT_TRUE(none.at("data").at(0).at("paragraphs").at(1).at("qas").at(0).at("is_impossible").get<bool>());
}

// A control answer never starts at a token whose own text SQuAD's normalisation empties ("a",
// "the", punctuation): the official metric would score such an answer like "no answer", which
// put a constant offset into selectivity (the demo: 188 of 668 control answers were "a").
TEST(ControlTask, StartsOnlyAtTokensWhoseTextSurvivesNormalisation) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  const auto tokenizer = load_tokenizer(test_support::shared_path(test_support::kSpieceModel));
  const auto can_start = control_start_tokens(*tokenizer);
  ASSERT_EQ(can_start.size(), static_cast<size_t>(tokenizer->vocab_size()));
  const int64_t article = tokenizer->token_to_id("\u2581a"), the = tokenizer->token_to_id("\u2581the");
  const int64_t comma = tokenizer->token_to_id(","), word = tokenizer->token_to_id("\u2581paris");
  for (int64_t id : {article, the, comma, word}) ASSERT_NE(id, tokenizer->token_to_id("<unk>")) << id;
  EXPECT_FALSE(can_start[static_cast<size_t>(article)]);
  EXPECT_FALSE(can_start[static_cast<size_t>(the)]);
  EXPECT_FALSE(can_start[static_cast<size_t>(comma)]);
  EXPECT_TRUE(can_start[static_cast<size_t>(word)]);
  // A seed under which the article outscores the word: without the rule the answer starts at the
  // article, with it at the word.
  uint64_t seed = 1;
  while (hand_score(seed, article) <= hand_score(seed, word)) ++seed;
  const std::vector<int64_t> context = {article, word};
  EXPECT_EQ(control_answer(context, seed, 0.0).start, 0);
  const auto answer = control_answer(context, seed, 0.0, can_start);
  EXPECT_TRUE(answer.answerable);
  EXPECT_EQ(answer.start, 1);
  EXPECT_EQ(answer.best_score, hand_score(seed, word));
  // Nothing can start: unanswerable whatever the threshold.
  EXPECT_FALSE(control_answer({article, comma}, seed, 0.0, can_start).answerable);
}

TEST(ControlTask, ProbesOfAnEarlierDefinitionAreRefusedByName) {
  ControlTaskSpec spec;
  spec.seed = 4;
  spec.threshold = 0.5;
  const auto json = spec.to_json();
  EXPECT_EQ(ControlTaskSpec::from_json(json, "x").seed, 4u);
  auto earlier = json;
  earlier["definition"] = "splitmix64 token scores, span of up to 4 sub-tokens from the first best-scoring context token "
                          "(docs/methods.md)";
  try {
    ControlTaskSpec::from_json(earlier, "probes.safetensors");
    FAIL() << "an earlier definition was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("another definition"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("train the control-task probes again"), std::string::npos) << e.what();
  }
  earlier.erase("definition");
  EXPECT_THROW(ControlTaskSpec::from_json(earlier, "x"), Error);
}
