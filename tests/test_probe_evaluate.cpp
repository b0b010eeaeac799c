#include <sys/wait.h>

#include <cstdlib>
#include <fstream>

#include "layerprobe/core/common.hpp"
#include "layerprobe/probe/experiment_eval.hpp"
#include "layerprobe/squad/predictions_io.hpp"
#include "test_support.hpp"

using namespace layerprobe;
using layerprobe::test_support::scratch_dir;
using layerprobe::test_support::shared_path;
namespace fs = std::filesystem;

namespace {


fs::path golden(const std::string& name) { return shared_path("golden/metrics/" + name); }

nlohmann::ordered_json golden_json(const std::string& name) {
  return nlohmann::ordered_json::parse(read_file(golden(name)));
}

void expect_matches_golden(const SquadEvaluation& eval, const std::string& golden_name) {
  const auto expected = golden_json(golden_name);
  EXPECT_NEAR(eval.overall.exact, expected["exact"].get<double>(), 1e-9);
  EXPECT_NEAR(eval.overall.f1, expected["f1"].get<double>(), 1e-9);
  EXPECT_NEAR(eval.has_ans->f1, expected["HasAns_f1"].get<double>(), 1e-9);
  EXPECT_NEAR(eval.no_ans->exact, expected["NoAns_exact"].get<double>(), 1e-9);
}

// EXPER/fine_tuned_epoch_1/fine_tuned_preds: layer 1 all-empty, layer 2
// perturbed (JSON beside a CSV that must be ignored), with preds_meta.json.
// EXPER/pretrained_epoch_2/pretrained_preds: layer 3 perturbed as CSV, no meta.
fs::path make_experiment(const std::string& name) {
  const fs::path exper = scratch_dir(name);
  const fs::path fine = exper / "fine_tuned_epoch_1" / "fine_tuned_preds";
  const fs::path pre = exper / "pretrained_epoch_2" / "pretrained_preds";
  fs::create_directories(fine);
  fs::create_directories(pre);
  fs::copy_file(golden("pred_all_empty.json"), fine / "pred_layer_1.json");
  fs::copy_file(golden("pred_perturbed.json"), fine / "pred_layer_2.json");
  write_file_atomically(fine / "pred_layer_2.csv", "Id,Predicted\n");
  nlohmann::json meta = {{"dev_file", fs::absolute(shared_path(test_support::kDevFile)).string()}, {"layers", 2},
                         {"kind", "fine_tuned"}, {"epoch", 1}, {"model", "unused"}};
  write_file_atomically(fine / "preds_meta.json", meta.dump());

  std::vector<QuestionPrediction> rows;
  for (const auto& [id, text] : load_predictions_json(golden("pred_perturbed.json")).items) {
    QuestionPrediction p;
    p.qas_id = id;
    p.text = text;
    rows.push_back(p);
  }
  write_predictions_csv(pre / "pred_layer_3.csv", rows);
  return exper;
}

fs::path probe_evaluate_binary() { return test_support::tool("probe_evaluate"); }

// Runs probe_evaluate with `args`; returns its exit status, output in `out`.
int run_cli(const std::string& args, std::string& out, const fs::path& scratch) {
  const fs::path log = scratch / "cli_output.txt";
  const std::string command = probe_evaluate_binary().string() + " " + args + " > " + log.string() + " 2>&1";
  const int status = std::system(command.c_str());
  out = read_file(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST(ExperimentEval, ScoresEveryLayerOfAPredsDir) {
  REQUIRE_SHARED("golden/metrics/pred_perturbed.json");
  const fs::path exper = make_experiment("exper_eval_layers");
  GoldCache gold;
  RunResults run = evaluate_preds_dir(exper / "fine_tuned_epoch_1" / "fine_tuned_preds/", {}, gold);
  EXPECT_EQ(run.kind, "fine_tuned");
  EXPECT_EQ(run.epoch, 1);
  ASSERT_EQ(run.layers.size(), 2u);
  EXPECT_EQ(run.layers[0].layer, 1);
  expect_matches_golden(run.layers[0].eval, "official_all_empty.json");
  expect_matches_golden(run.layers[1].eval, "official_perturbed.json");
  EXPECT_EQ(results_csv_path(exper / "fine_tuned_epoch_1" / "fine_tuned_preds/"),
            fs::absolute(exper / "fine_tuned_epoch_1" / "results.csv").lexically_normal());

  auto dirs = find_preds_dirs(exper);
  ASSERT_EQ(dirs.size(), 2u);
  EXPECT_EQ(dirs[1].filename(), "pretrained_preds");
}

TEST(ExperimentEval, DevFileComesFromMetaOrTheOption) {
  REQUIRE_SHARED("golden/metrics/pred_perturbed.json");
  const fs::path exper = make_experiment("exper_eval_dev_file");
  const fs::path pre = exper / "pretrained_epoch_2" / "pretrained_preds";
  GoldCache gold;
  try {
    evaluate_preds_dir(pre, {}, gold);
    FAIL() << "a preds dir without preds_meta.json was evaluated without a dev file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--dev-file"), std::string::npos) << e.what();
  }
  PredsEvalOptions options;
  options.dev_file = shared_path(test_support::kDevFile);
  RunResults run = evaluate_preds_dir(pre, options, gold);
  EXPECT_EQ(run.kind, "pretrained");  // from the directory names
  EXPECT_EQ(run.epoch, 2);
  ASSERT_EQ(run.layers.size(), 1u);
  EXPECT_EQ(run.layers[0].layer, 3);
  expect_matches_golden(run.layers[0].eval, "official_perturbed.json");  // read from the CSV
}

TEST(ProbeEvaluateCli, ExperWritesResultsSummaryAndChart) {
  REQUIRE_SHARED("golden/metrics/pred_perturbed.json");
  ASSERT_TRUE(fs::exists(probe_evaluate_binary())) << "build the probe_evaluate target first";
  const fs::path exper = make_experiment("cli_exper");
  std::string out;
  ASSERT_EQ(run_cli("exper " + exper.string() + " --dev-file " + shared_path(test_support::kDevFile).string(), out, exper), 0) << out;
  EXPECT_NE(out.find("exact_has_ans"), std::string::npos) << out;  // the printed table

  const std::string results = read_file(exper / "fine_tuned_epoch_1" / "results.csv");
  EXPECT_EQ(results.substr(0, results.find('\n')), "layer,exact,f1,exact_no_ans,f1_no_ans,exact_has_ans,f1_has_ans");
  EXPECT_NE(results.find("\n1,52.122408687068116,52.122408687068116,100.0,100.0,0.0,0.0\n"), std::string::npos)
      << results;
  EXPECT_TRUE(fs::exists(exper / "pretrained_epoch_2" / "results.csv"));
  const std::string summary = read_file(exper / "summary.csv");
  EXPECT_NE(summary.find("\nfine_tuned,1,2,"), std::string::npos) << summary;
  EXPECT_NE(summary.find("\npretrained,2,3,"), std::string::npos) << summary;
  EXPECT_NE(read_file(exper / "layers.svg").find("<polyline"), std::string::npos);
}

TEST(ProbeEvaluateCli, FileModeReproducesTheOfficialScript) {
  REQUIRE_SHARED("golden/metrics/official_perturbed_na.json");
  ASSERT_TRUE(fs::exists(probe_evaluate_binary())) << "build the probe_evaluate target first";
  const fs::path dir = scratch_dir("cli_file");
  std::string out;
  const std::string base = "file " + shared_path(test_support::kDevFile).string() + " " + golden("pred_perturbed.json").string();
  ASSERT_EQ(run_cli(base + " -n " + golden("na_probs_random.json").string() + " --out-file " +
                        (dir / "eval.json").string(), out, dir), 0) << out;
  const auto got = nlohmann::ordered_json::parse(read_file(dir / "eval.json"));
  const auto expected = golden_json("official_perturbed_na.json");
  ASSERT_EQ(got.size(), expected.size());
  for (auto it = expected.begin(), jt = got.begin(); it != expected.end(); ++it, ++jt) {
    EXPECT_EQ(jt.key(), it.key());
    EXPECT_NEAR(jt.value().get<double>(), it.value().get<double>(), 1e-9) << it.key();
  }
  ASSERT_EQ(run_cli(base, out, dir), 0) << out;
  EXPECT_EQ(nlohmann::ordered_json::parse(out).size(), 9u);  // printed, no best_* without na-probs

  // A prediction file missing questions is an error naming the count.
  write_file_atomically(dir / "partial.json", R"({"68cf05f67fd29c6f129fe2fb9": "France"})");
  EXPECT_EQ(run_cli("file " + shared_path(test_support::kDevFile).string() + " " + (dir / "partial.json").string(), out, dir), 1);
  EXPECT_NE(out.find("6077 of 6078"), std::string::npos) << out;
  EXPECT_EQ(run_cli("file " + shared_path(test_support::kDevFile).string() + " " + (dir / "partial.json").string() + " --allow-missing",
                    out, dir), 0) << out;
  EXPECT_NE(run_cli("nonsense", out, dir), 0);  // a usage error
}
