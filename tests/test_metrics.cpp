#include <fstream>

#include "layerprobe/core/common.hpp"
#include "layerprobe/squad/metrics.hpp"
#include "test_support.hpp"

using namespace layerprobe;
using layerprobe::test_support::shared_path;

namespace {

// Same keys in the same order; integers equal, floats within 1e-9.
void expect_same_metrics(const nlohmann::ordered_json& got, const std::filesystem::path& golden_file) {
  const auto golden = nlohmann::ordered_json::parse(read_file(golden_file));
  std::vector<std::string> got_keys, golden_keys;
  for (const auto& [k, v] : got.items()) got_keys.push_back(k);
  for (const auto& [k, v] : golden.items()) golden_keys.push_back(k);
  ASSERT_EQ(got_keys, golden_keys) << golden_file;
  for (const auto& [key, expected] : golden.items()) {
    if (expected.is_number_integer()) {
      EXPECT_TRUE(got[key].is_number_integer()) << key;
      EXPECT_EQ(got[key].get<long>(), expected.get<long>()) << golden_file << " " << key;
    } else {
      EXPECT_NEAR(got[key].get<double>(), expected.get<double>(), 1e-9) << golden_file << " " << key;
    }
  }
}

GoldDataset dev() { return load_gold_dataset(shared_path(test_support::kDevFile)); }

}  // namespace

TEST(NormalizeAnswer, LowercasesDropsPunctuationArticlesAndSpaces) {
  EXPECT_EQ(normalize_answer("The  Cat!"), "cat");
  EXPECT_EQ(normalize_answer("an apple, a pear and THE plum"), "apple pear and plum");
  EXPECT_EQ(normalize_answer("theatre anthem"), "theatre anthem");
  EXPECT_EQ(normalize_answer("the_a a-b"), "thea ab");  // "_" and "-" are string.punctuation
  // Unicode lowercase and whitespace; a non-ASCII dash is kept but ends the word "a".
  EXPECT_EQ(normalize_answer("\xC3\x89T\xC3\x89\xC2\xA0 A\xE2\x80\x94" "b"), "\xC3\xA9t\xC3\xA9 \xE2\x80\x94" "b");
  EXPECT_EQ(normalize_answer("x\xC2\xB2the y"), "x\xC2\xB2the y");  // superscript two (No) is a word character
  EXPECT_EQ(normalize_answer("the\xC2\xB7" "a"), "\xC2\xB7");       // middle dot (Po) is not
  EXPECT_EQ(normalize_answer("the\xCC\x81 x"), "\xCC\x81 x");  // a combining mark is not a word character
  EXPECT_EQ(normalize_answer("A"), "");
}

TEST(ComputeScores, ExactAndF1AsTheOfficialScript) {
  EXPECT_EQ(compute_exact("The Eiffel Tower", "eiffel tower."), 1);
  EXPECT_EQ(compute_exact("Eiffel Tower", "Eiffel"), 0);
  EXPECT_DOUBLE_EQ(compute_f1("the cat sat on the mat", "cat on mat"), 2 * 1.0 * 0.75 / 1.75);
  EXPECT_DOUBLE_EQ(compute_f1("x y y", "y y y"), 2.0 / 3.0);  // Counter intersection
  EXPECT_EQ(compute_f1("", ""), 1.0);
  EXPECT_EQ(compute_f1("", "something"), 0.0);
  EXPECT_EQ(compute_f1("the", ""), 1.0);  // both normalise to no tokens
  EXPECT_EQ(compute_f1("alpha", "beta"), 0.0);
}

TEST(FormatPythonJson, DumpsLikePythonsJsonModule) {
  nlohmann::ordered_json j;
  j["exact"] = 52.122408687068116;
  j["total"] = 6078;
  j["best_exact_thresh"] = 0.0;
  j["tiny"] = 1e-05;
  EXPECT_EQ(format_python_json(j), R"({"exact": 52.122408687068116, "total": 6078, "best_exact_thresh": 0.0, "tiny": 1e-05})");
  EXPECT_EQ(format_python_json(j, 2),
            "{\n  \"exact\": 52.122408687068116,\n  \"total\": 6078,\n  \"best_exact_thresh\": 0.0,\n  \"tiny\": 1e-05\n}");
}

TEST(GoldDataset, ReadsAnswersAndDictSemantics) {
  const std::string json = R"({"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": [
      {"id": "q1", "question": "?", "answers": [{"text": "A", "answer_start": 0}, {"text": "the", "answer_start": 0}]},
      {"id": "q2", "question": "?", "answers": [], "plausible_answers": [{"text": "x", "answer_start": 0}]},
      {"id": "q1", "question": "?", "answers": [{"text": "B", "answer_start": 0}]}]}]}]})";
  GoldDataset gold = parse_gold_dataset(json, "inline");
  ASSERT_EQ(gold.questions.size(), 2u);
  EXPECT_EQ(gold.questions[0].id, "q1");
  EXPECT_EQ(gold.questions[0].answers, std::vector<std::string>{"B"});
  EXPECT_FALSE(gold.questions[1].has_answer);
  EXPECT_THROW(parse_gold_dataset(R"({"version": "v2.0"})", "inline"), Error);
  EXPECT_THROW(parse_gold_dataset("{not json", "inline"), Error);
}

TEST(EvaluateSquad, AnswersThatNormaliseToNothingCountAsNoAnswer) {
  // Gold answers "A" and "the" normalise to "": only "" is right, yet the
  // question still counts as answerable (bool(answers)).
  const std::string json = R"({"data": [{"paragraphs": [{"qas": [
      {"id": "q1", "answers": [{"text": "A"}, {"text": "the"}]},
      {"id": "q2", "answers": [{"text": "Paris"}]}]}]}]})";
  GoldDataset gold = parse_gold_dataset(json, "inline");
  PredictionMap preds;
  preds.set("q1", "");
  preds.set("q2", "paris");
  auto eval = evaluate_squad(gold, preds);
  EXPECT_DOUBLE_EQ(eval.overall.exact, 100.0);
  ASSERT_TRUE(eval.has_ans.has_value());
  EXPECT_EQ(eval.has_ans->total, 2);
  EXPECT_FALSE(eval.no_ans.has_value());
  EXPECT_EQ(eval.to_json().dump(), R"({"exact":100.0,"f1":100.0,"total":2,"HasAns_exact":100.0,"HasAns_f1":100.0,"HasAns_total":2})");
}

TEST(EvaluateSquad, NaProbThresholdTurnsAnswersIntoNoAnswers) {
  const std::string json = R"({"data": [{"paragraphs": [{"qas": [
      {"id": "q1", "answers": []}, {"id": "q2", "answers": [{"text": "Paris"}]}]}]}]})";
  GoldDataset gold = parse_gold_dataset(json, "inline");
  PredictionMap preds;
  preds.set("q1", "London");
  preds.set("q2", "Paris");
  NaProbMap na;
  na.set("q1", 0.9);
  na.set("q2", 0.2);
  EvalOptions options;
  options.na_probs = &na;
  options.na_prob_thresh = 0.5;
  auto eval = evaluate_squad(gold, preds, options);
  EXPECT_DOUBLE_EQ(eval.overall.exact, 100.0);  // q1 forced to no-answer
  ASSERT_TRUE(eval.best.has_value());
  // Sweep: start 1 (q1 empty), q2 at 0.2 adds 1 -> 2, q1 at 0.9 answered wrongly -> 1.
  EXPECT_DOUBLE_EQ(eval.best->best_exact, 100.0);
  EXPECT_DOUBLE_EQ(eval.best->best_exact_thresh, 0.2);
}

TEST(EvaluateSquad, MissingPredictionsAreAnErrorUnlessAllowed) {
  REQUIRE_SHARED("golden/metrics/pred_perturbed.json");
  const GoldDataset gold = dev();
  PredictionMap all = load_predictions_json(shared_path("golden/metrics/pred_perturbed.json"));
  PredictionMap partial;
  for (size_t i = 3; i < all.items.size(); ++i) partial.set(all.items[i].first, all.items[i].second);
  try {
    evaluate_squad(gold, partial);
    FAIL() << "missing predictions were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("3 of 6078"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--allow-missing"), std::string::npos) << e.what();
  }
  EvalOptions allow;
  allow.allow_missing = true;
  auto eval = evaluate_squad(gold, partial, allow);
  EXPECT_EQ(eval.missing, 3u);
  EXPECT_EQ(eval.overall.total, 6078);
  // Scoring the missing ones as "" equals predicting "" for them.
  for (size_t i = 0; i < 3; ++i) partial.set(all.items[i].first, "");
  EXPECT_DOUBLE_EQ(evaluate_squad(gold, partial).overall.f1, eval.overall.f1);
}

TEST(EvaluateSquad, MatchesEveryOfficialGoldenFile) {
  REQUIRE_SHARED("golden/metrics/official_perturbed_na.json");
  const GoldDataset gold = dev();
  const NaProbMap na = load_na_probs(shared_path("golden/metrics/na_probs_random.json"));
  for (const std::string name : {"all_empty", "perturbed"}) {
    SCOPED_TRACE(name);
    const PredictionMap preds = load_predictions_json(shared_path("golden/metrics/pred_" + name + ".json"));
    expect_same_metrics(evaluate_squad(gold, preds).to_json(), shared_path("golden/metrics/official_" + name + ".json"));
    EvalOptions options;
    options.na_probs = &na;
    expect_same_metrics(evaluate_squad(gold, preds, options).to_json(),
                        shared_path("golden/metrics/official_" + name + "_na.json"));
  }
}

TEST(EvaluateSquad, MatchesOfficialEvalOfRunSquadPredictionsWithNullOdds) {
  REQUIRE_SHARED("golden/albert-tiny/run_squad_eval/official_eval.json");
  const std::string dir = "golden/albert-tiny/run_squad_eval/";
  const NaProbMap null_odds = load_na_probs(shared_path(dir + "null_odds.json"));
  EvalOptions options;
  options.na_probs = &null_odds;
  auto eval = evaluate_squad(dev(), load_predictions_json(shared_path(dir + "predictions.json")), options);
  expect_same_metrics(eval.to_json(), shared_path(dir + "official_eval.json"));
}
