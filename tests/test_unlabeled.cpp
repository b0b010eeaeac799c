// Unlabeled SQuAD files (the test split, leaderboard files, a user's own
// questions): questions without answers and without is_impossible are
// featurised and predicted as transformers 2.5.1 does in evaluation mode,
// refused for training, and refused (or skipped on request) for scoring.
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <sys/wait.h>

#include "layerprobe/core/common.hpp"
#include "layerprobe/squad/features.hpp"
#include "layerprobe/squad/metrics.hpp"
#include "layerprobe/squad/predictions_io.hpp"
#include "layerprobe/squad/squad.hpp"
#include "layerprobe/text/tokenizer_registry.hpp"
#include "test_support.hpp"

using namespace layerprobe;
namespace fs = std::filesystem;

namespace {

// The first `articles` articles of the dev file; with `strip`, every question
// loses its answers and is_impossible (every `keep`-th keeps them, when keep > 0).
std::string dev_articles(size_t articles, bool strip, size_t keep = 0) {
  auto json = nlohmann::json::parse(read_file(test_support::shared_path(test_support::kDevFile)));
  json["data"].erase(json["data"].begin() + static_cast<std::ptrdiff_t>(articles), json["data"].end());
  size_t n = 0;
  for (auto& article : json["data"])
    for (auto& paragraph : article["paragraphs"])
      for (auto& qa : paragraph["qas"])
        if (strip && !(keep > 0 && n++ % keep == 0)) {
          qa.erase("answers");
          qa.erase("is_impossible");
        }
  return json.dump();
}

int run_logged(const std::string& command, const fs::path& log) {
  const int status = std::system((command + " >" + log.string() + " 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST(Unlabeled, EvaluationFeaturesEqualThoseOfTheLabeledFile) {
  REQUIRE_SHARED(test_support::kDevFile);
  REQUIRE_SHARED("data/bert/vocab.txt");
  TokenizerRequest lower;
  lower.do_lower_case = true;
  const auto tokenizer = load_tokenizer(test_support::shared_path("data/bert/vocab.txt"), lower);
  const auto labeled = parse_squad(dev_articles(2, false), "labeled.json");
  const auto unlabeled = parse_squad(dev_articles(2, true), "unlabeled.json");
  ASSERT_EQ(unlabeled.examples.size(), labeled.examples.size());
  EXPECT_EQ(unlabeled.unlabeled, unlabeled.examples.size());
  EXPECT_EQ(labeled.unlabeled, 0u);
  FeatureOptions options;
  const auto a = convert_examples_to_features(labeled.examples, *tokenizer, options);
  const auto b = convert_examples_to_features(unlabeled.examples, *tokenizer, options);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].input_ids, b[i].input_ids) << i;
    EXPECT_EQ(a[i].token_type_ids, b[i].token_type_ids) << i;
    EXPECT_EQ(a[i].tokens, b[i].tokens) << i;
    EXPECT_EQ(a[i].token_to_orig_map, b[i].token_to_orig_map) << i;
    EXPECT_EQ(a[i].token_is_max_context, b[i].token_is_max_context) << i;
    EXPECT_EQ(b[i].start_position, 0);
    EXPECT_EQ(b[i].end_position, 0);
  }
}

TEST(Unlabeled, TrainingRefusesAQuestionWithoutAnswers) {
  REQUIRE_SHARED(test_support::kDevFile);
  try {
    parse_squad(dev_articles(1, true), "unlabeled.json", {true});
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("training needs one"), std::string::npos) << e.what();
  }
}

TEST(Unlabeled, ScoringRefusesUnlabeledQuestionsOrSkipsThemWhenAsked) {
  REQUIRE_SHARED(test_support::kDevFile);
  const GoldDataset mixed = parse_gold_dataset(dev_articles(1, true, 3), "mixed.json");
  size_t labeled = 0;
  std::string first_unlabeled;
  PredictionMap predictions;
  for (const auto& q : mixed.questions) {
    predictions.set(q.id, "");
    if (q.labeled) ++labeled;
    else if (first_unlabeled.empty()) first_unlabeled = q.id;
  }
  ASSERT_GT(labeled, 0u);
  ASSERT_LT(labeled, mixed.questions.size());
  try {
    evaluate_squad(mixed, predictions);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(std::to_string(mixed.questions.size() - labeled) + " of " +
                        std::to_string(mixed.questions.size()) + " questions are unlabeled"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("first: '" + first_unlabeled + "'"), std::string::npos) << what;
    EXPECT_NE(what.find("--skip-unlabeled"), std::string::npos) << what;
  }
  EvalOptions skip;
  skip.skip_unlabeled = true;
  const auto eval = evaluate_squad(mixed, predictions, skip);
  EXPECT_EQ(eval.skipped_unlabeled, mixed.questions.size() - labeled);
  EXPECT_EQ(eval.overall.total, static_cast<double>(labeled));
  EXPECT_THROW(evaluate_squad(parse_gold_dataset(dev_articles(1, true), "all.json"), predictions, skip), Error);
}

TEST(Unlabeled, RunSquadPredictsAnUnlabeledFileAndProbeEvaluateRefusesToScoreIt) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  REQUIRE_SHARED(test_support::kDevFile);
  const fs::path dir = test_support::scratch_dir("unlabeled_run_squad");
  fs::create_directories(dir / "model");
  for (const char* name : {"config.json", "model.safetensors"})
    fs::copy_file(test_support::shared_path(std::string("golden/albert-tiny/") + name), dir / "model" / name);
  fs::copy_file(test_support::shared_path(test_support::kSpieceModel), dir / "model" / "spiece.model");
  const fs::path data = dir / "unlabeled.json";
  write_file_atomically(data, dev_articles(1, true));
  const std::string command = test_support::tool("run_squad") + " --model_type albert --model_name_or_path " +
                              (dir / "model").string() + " --do_eval --do_lower_case --version_2_with_negative" +
                              " --predict_file " + data.string() + " --output_dir " + (dir / "out").string();
  EXPECT_EQ(run_logged(command, dir / "log"), 1) << read_file(dir / "log");
  EXPECT_NE(read_file(dir / "log").find("questions are unlabeled"), std::string::npos) << read_file(dir / "log");
  // The predictions were written before scoring stopped, one per question.
  const auto predictions = load_predictions_json(dir / "out" / "predictions.json");
  EXPECT_EQ(predictions.size(), parse_gold_dataset(read_file(data), "x").questions.size());
  EXPECT_EQ(run_logged(test_support::tool("probe_evaluate") + " file " + data.string() + " " +
                    (dir / "out" / "predictions.json").string(),
                dir / "log2"),
            1);
  EXPECT_NE(read_file(dir / "log2").find("are unlabeled"), std::string::npos) << read_file(dir / "log2");
}
