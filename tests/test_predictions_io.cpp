#include <nlohmann/json.hpp>

#include "layerprobe/core/common.hpp"
#include "layerprobe/squad/predictions_io.hpp"
#include "test_support.hpp"

using namespace layerprobe;
using layerprobe::test_support::scratch_dir;

namespace {

std::vector<QuestionPrediction> sample_predictions() {
  QuestionPrediction a;
  a.qas_id = "zeta";
  a.text = "Caf\xC3\xA9, \"quoted\"";
  a.null_odds = -0.36991399899125099;
  a.nbest = {{a.text, 0.7310585786300049, 1.2345678f, 2.5}, {"", 0.2689414213699951, 0.1, 0.2}};
  QuestionPrediction b;
  b.qas_id = "alpha";
  b.text = "";
  b.null_odds = 0.0794839859008789;
  b.nbest = {{"", 1.0, 0.0, 0.0}};
  return {a, b};
}

}  // namespace

TEST(PredictionsIo, JsonFilesKeepOrderAndRoundTripFloats) {
  const auto dir = scratch_dir("predictions_io_json");
  const auto preds = sample_predictions();
  write_predictions_json(dir / "predictions.json", preds);
  write_null_odds_json(dir / "null_odds.json", preds);
  write_nbest_json(dir / "nbest_predictions.json", preds);

  const std::string text = read_file(dir / "predictions.json");
  EXPECT_EQ(text, "{\n    \"zeta\": \"Caf\\u00e9, \\\"quoted\\\"\",\n    \"alpha\": \"\"\n}\n");  // as json.dumps(indent=4)
  PredictionMap loaded = load_predictions_json(dir / "predictions.json");
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_EQ(loaded.items[0].first, "zeta");
  EXPECT_EQ(loaded.items[0].second, preds[0].text);

  NaProbMap odds = load_na_probs(dir / "null_odds.json");
  EXPECT_EQ(*odds.find("zeta"), preds[0].null_odds);  // bit-exact
  EXPECT_EQ(*odds.find("alpha"), preds[1].null_odds);

  const auto nbest = nlohmann::ordered_json::parse(read_file(dir / "nbest_predictions.json"));
  ASSERT_EQ(nbest["zeta"].size(), 2u);
  EXPECT_EQ(nbest["zeta"][0].begin().key(), "text");
  EXPECT_EQ(nbest["zeta"][0]["start_logit"].get<double>(), static_cast<double>(1.2345678f));
  EXPECT_EQ(nbest["zeta"][0]["probability"].get<double>(), 0.7310585786300049);
}

TEST(PredictionsIo, CsvQuotesAsPythonsCsvModuleAndReadsBack) {
  EXPECT_EQ(csv_field("plain text"), "plain text");
  EXPECT_EQ(csv_field("a,b"), "\"a,b\"");
  EXPECT_EQ(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(csv_field("two\nlines"), "\"two\nlines\"");
  EXPECT_EQ(csv_field(""), "");

  const auto dir = scratch_dir("predictions_io_csv");
  auto preds = sample_predictions();
  preds[1].text = "line one\nline two";
  write_predictions_csv(dir / "pred_layer_1.csv", preds);
  EXPECT_EQ(read_file(dir / "pred_layer_1.csv"),
            "Id,Predicted\nzeta,\"Caf\xC3\xA9, \"\"quoted\"\"\"\nalpha,\"line one\nline two\"\n");
  PredictionMap loaded = load_predictions_csv(dir / "pred_layer_1.csv");
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_EQ(*loaded.find("zeta"), preds[0].text);
  EXPECT_EQ(*loaded.find("alpha"), preds[1].text);
}

TEST(PredictionsIo, BadFilesAreErrors) {
  const auto dir = scratch_dir("predictions_io_bad");
  write_file_atomically(dir / "list.json", "[1, 2]");
  write_file_atomically(dir / "number.json", "{\"q\": 3}");
  write_file_atomically(dir / "string_prob.json", "{\"q\": \"0.5\"}");
  write_file_atomically(dir / "header.csv", "id,answer\nq,a\n");
  write_file_atomically(dir / "fields.csv", "Id,Predicted\nq,a,b\n");
  EXPECT_THROW(load_predictions_json(dir / "list.json"), Error);
  EXPECT_THROW(load_predictions_json(dir / "number.json"), Error);
  EXPECT_THROW(load_na_probs(dir / "string_prob.json"), Error);
  EXPECT_THROW(load_predictions_csv(dir / "header.csv"), Error);
  EXPECT_THROW(load_predictions_csv(dir / "fields.csv"), Error);
  EXPECT_THROW(load_predictions_json(dir / "absent.json"), Error);
}

TEST(PredictionsIo, RepeatedIdsKeepTheFirstPlaceAndTheLastValueAsAPythonDict) {
  const auto dir = scratch_dir("predictions_io_repeated");
  auto preds = sample_predictions();
  auto again = preds[0];
  again.text = "later";
  again.null_odds = 1.5;
  preds.push_back(again);
  write_predictions_json(dir / "predictions.json", preds);
  write_null_odds_json(dir / "null_odds.json", preds);
  EXPECT_EQ(read_file(dir / "predictions.json"), "{\n    \"zeta\": \"later\",\n    \"alpha\": \"\"\n}\n");
  EXPECT_EQ(*load_na_probs(dir / "null_odds.json").find("zeta"), 1.5);
}
