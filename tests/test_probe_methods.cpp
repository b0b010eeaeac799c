// The probing methods beyond the study's probe, end to end through probe_train /
// probe_predict / probe_evaluate in both argument forms: the control task and
// selectivity, a probe-complexity sweep with its Pareto frontier, conditional
// probing; the study's linear probes unchanged beside them; resuming.
#include <nlohmann/json.hpp>

#include <fstream>

#include "layerprobe/core/common.hpp"
#include "layerprobe/probe/probe_store.hpp"
#include "layerprobe/squad/squad.hpp"
#include "test_support.hpp"

using namespace layerprobe;
namespace fs = std::filesystem;

namespace {

using test_support::run_logged;

struct MethodsSetup {
  fs::path dir, model, data;
};

MethodsSetup methods_setup(const std::string& name) {
  MethodsSetup s{test_support::scratch_dir(name), {}, {}};
  s.model = s.dir / "albert-tiny";
  s.data = s.dir / "data";
  fs::create_directories(s.model);
  for (const char* file : {"config.json", "model.safetensors"})
    fs::copy_file(test_support::shared_path(std::string("golden/albert-tiny/") + file), s.model / file);
  fs::copy_file(test_support::shared_path(test_support::kSpieceModel), s.model / "spiece.model");
  const std::string synth = test_support::tool("probe_tools") + " synth --output-dir " + s.data.string() +
                            " --train-questions 120 --dev-questions 80";
  EXPECT_EQ(run_logged(synth, s.dir / "synth.log"), 0) << read_file(s.dir / "synth.log");
  return s;
}

std::string train_command(const MethodsSetup& s, const fs::path& exper, int epochs, const std::string& extra) {
  return test_support::tool("probe_train") + " both cpu " + std::to_string(epochs) + " --pretrained-model " +
         s.model.string() + " --fine-tuned-model " + s.model.string() + " --train-file " +
         (s.data / "train-v2.0.json").string() + " --max-train-features 40 --batch-size 8 --seeds 1,2 --output-dir " +
         exper.string() + " " + extra;
}

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> fields(1);
  for (char c : line) {
    if (c == ',') fields.emplace_back();
    else fields.back().push_back(c);
  }
  return fields;
}

// summary.csv as rows of named cells.
std::vector<std::map<std::string, std::string>> read_summary(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  const auto header = split_csv(line);
  std::vector<std::map<std::string, std::string>> rows;
  while (std::getline(in, line)) {
    const auto cells = split_csv(line);
    EXPECT_EQ(cells.size(), header.size()) << line;
    std::map<std::string, std::string> row;
    for (size_t i = 0; i < header.size() && i < cells.size(); ++i) row[header[i]] = cells[i];
    rows.push_back(row);
  }
  return rows;
}

fs::path probes_at(const fs::path& exper, const std::string& kind, int epoch, const std::string& variant, int seed) {
  fs::path dir = exper / (kind + "_epoch_" + std::to_string(epoch)) / (kind + "_probes");
  if (!variant.empty()) dir /= variant;
  return dir / ("seed_" + std::to_string(seed)) / "probes.safetensors";
}

const std::vector<std::string> kMethodVariants = {"",
                                                  "rank_1",
                                                  "mlp_8",
                                                  "linear.control_task",
                                                  "rank_1.control_task",
                                                  "mlp_8.control_task",
                                                  "linear.conditional",
                                                  "linear.embeddings",
                                                  "rank_1.conditional",
                                                  "mlp_8.embeddings"};

const char* const kMethods = "--control-task --control-task-seed 4 --probe rank:1,linear,mlp:8 --conditional";

}  // namespace

TEST(ProbeMethods, ControlTaskSweepAndConditionalProbingEndToEnd) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  REQUIRE_SHARED(test_support::kSpieceModel);
  const auto s = methods_setup("probe_methods");
  const fs::path plain = s.dir / "plain", full = s.dir / "full";
  ASSERT_EQ(run_logged(train_command(s, plain, 2, ""), s.dir / "plain.log"), 0) << read_file(s.dir / "plain.log");
  ASSERT_EQ(run_logged(train_command(s, full, 2, kMethods), s.dir / "full.log"), 0) << read_file(s.dir / "full.log");
  for (const std::string kind : {"pretrained", "fine_tuned"})
    for (int epoch : {1, 2})
      for (int seed : {1, 2}) {
        // The study's probes are the same bytes beside the methods as alone.
        EXPECT_EQ(read_file(probes_at(full, kind, epoch, "", seed)), read_file(probes_at(plain, kind, epoch, "", seed)))
            << kind << epoch << seed;
        for (const auto& variant : kMethodVariants)
          EXPECT_TRUE(fs::exists(probes_at(full, kind, epoch, variant, seed))) << kind << " " << variant;
      }
  // The control task's settings: the threshold set for the train questions' unanswerable share.
  const auto control = load_probe_model(probes_at(full, "fine_tuned", 1, "linear.control_task", 1));
  const auto& spec = control.metadata.training_options.at("control_task");
  EXPECT_EQ(spec.at("seed"), 4);
  const auto train = load_squad(s.data / "train-v2.0.json", SquadLoadOptions{true});
  const double impossible = static_cast<double>(std::count_if(train.examples.begin(), train.examples.end(),
                                                              [](const SquadExample& e) { return e.is_impossible; })) /
                            static_cast<double>(train.examples.size());
  EXPECT_NEAR(spec.at("unanswerable_share").get<double>(), impossible, 1e-12);
  EXPECT_GT(spec.at("threshold").get<double>(), 0.0);
  EXPECT_EQ(control.metadata.training_options.at("probe"), "linear");
  EXPECT_EQ(load_probe_model(probes_at(full, "pretrained", 2, "mlp_8", 2)).probes->arch().spec(), "mlp:8");
  EXPECT_EQ(load_probe_model(probes_at(full, "pretrained", 2, "linear.embeddings", 2)).probes->layers(), 1);
  EXPECT_EQ(load_probe_model(probes_at(full, "pretrained", 2, "linear.conditional", 2)).probes->input_size(), 2 * 64);  // hidden size 64
  EXPECT_TRUE(fs::exists(full / "fine_tuned_epoch_1" / "codelength_linear.control_task.csv"));
  EXPECT_EQ(read_file(full / "fine_tuned_epoch_1" / "codelength.csv"), read_file(plain / "fine_tuned_epoch_1" / "codelength.csv"));

  // A rerun finds everything trained; a run stopped after epoch 1 resumes to the same probes.
  ASSERT_EQ(run_logged(train_command(s, full, 2, kMethods), s.dir / "again.log"), 0);
  EXPECT_NE(read_file(s.dir / "again.log").find("already trained"), std::string::npos) << read_file(s.dir / "again.log");
  const fs::path resumed = s.dir / "resumed";
  ASSERT_EQ(run_logged(train_command(s, resumed, 1, kMethods), s.dir / "resumed1.log"), 0) << read_file(s.dir / "resumed1.log");
  ASSERT_EQ(run_logged(train_command(s, resumed, 2, kMethods), s.dir / "resumed2.log"), 0) << read_file(s.dir / "resumed2.log");
  EXPECT_NE(read_file(s.dir / "resumed2.log").find("resuming after epoch 1"), std::string::npos);
  for (const auto& variant : kMethodVariants) {
    auto a = load_probe_model(probes_at(resumed, "fine_tuned", 2, variant, 1));
    auto b = load_probe_model(probes_at(full, "fine_tuned", 2, variant, 1));
    for (const auto& [name, t] : b.probes->tensors())
      EXPECT_TRUE(torch::equal(a.probes->tensors().at(name), t)) << variant << " " << name;
  }
  // Methods added to a finished plain run train only their own probe sets.
  const auto before = read_file(probes_at(plain, "pretrained", 2, "", 1));
  ASSERT_EQ(run_logged(train_command(s, plain, 2, "--probe linear,rank:1"), s.dir / "added.log"), 0)
      << read_file(s.dir / "added.log");
  EXPECT_EQ(read_file(probes_at(plain, "pretrained", 2, "", 1)), before);
  EXPECT_TRUE(fs::exists(probes_at(plain, "pretrained", 2, "rank_1", 1)));
  fs::remove_all(plain / "pretrained_epoch_1" / "pretrained_probes" / "rank_1");
  fs::remove_all(plain / "pretrained_epoch_2" / "pretrained_probes" / "rank_1");
  fs::remove_all(plain / "fine_tuned_epoch_1" / "fine_tuned_probes" / "rank_1");
  fs::remove_all(plain / "fine_tuned_epoch_2" / "fine_tuned_probes" / "rank_1");

  const std::string dev = (s.data / "dev-v2.0.json").string();
  for (const auto& exper : {plain, full}) {
    ASSERT_EQ(run_logged(test_support::tool("probe_predict") + " exper " + exper.string() + " cpu --dev-file " + dev,
                         s.dir / "predict.log"),
              0)
        << read_file(s.dir / "predict.log");
    ASSERT_EQ(run_logged(test_support::tool("probe_evaluate") + " exper " + exper.string() + " --bootstrap 200",
                         s.dir / "evaluate.log"),
              0)
        << read_file(s.dir / "evaluate.log");
  }
  // The control task's predictions are scored against its own answers; layer 0 is scored as layer 0.
  const fs::path control_preds = full / "fine_tuned_epoch_2" / "fine_tuned_preds" / "linear.control_task";
  const auto meta = nlohmann::json::parse(read_file(control_preds / "seed_1" / "preds_meta.json"));
  EXPECT_EQ(fs::path(meta.at("dev_file").get<std::string>()), fs::absolute(control_preds / "control_task_dev.json"));
  EXPECT_EQ(meta.at("squad_dev_file").get<std::string>(), fs::absolute(dev).lexically_normal().string());
  const auto gold = nlohmann::json::parse(read_file(control_preds / "control_task_dev.json"));
  EXPECT_EQ(gold.at("data").size(), nlohmann::json::parse(read_file(dev)).at("data").size());
  EXPECT_TRUE(fs::exists(full / "fine_tuned_epoch_2" / "fine_tuned_preds" / "linear.embeddings" / "seed_2" / "pred_layer_0.json"));
  EXPECT_TRUE(fs::exists(full / "fine_tuned_epoch_2" / "results_linear.embeddings_seed_2.csv"));
  EXPECT_TRUE(fs::exists(full / "fine_tuned_epoch_2" / "results_mlp_8_seed_1.csv"));

  // The plain experiment's summary keeps the study's columns; the full one adds the methods'.
  const std::string plain_header = read_file(plain / "summary.csv").substr(0, read_file(plain / "summary.csv").find('\n'));
  EXPECT_EQ(plain_header.find(",probe,"), std::string::npos) << plain_header;
  EXPECT_FALSE(fs::exists(plain / "complexity.svg"));
  const auto plain_rows = read_summary(plain / "summary.csv");
  const auto rows = read_summary(full / "summary.csv");
  ASSERT_EQ(rows.size(), 2u * 2 * 3 * 4);  // kinds x epochs x architectures x layers
  size_t linear_rows = 0;
  for (const auto& row : rows) {
    EXPECT_FALSE(row.at("parameters").empty());
    EXPECT_TRUE(row.at("pareto") == "0" || row.at("pareto") == "1") << row.at("pareto");
    EXPECT_GE(std::stod(row.at("hypervolume")), 0.0);
    const double f1 = std::stod(row.at("f1"));
    EXPECT_NEAR(std::stod(row.at("selectivity")), f1 - std::stod(row.at("control_task_f1")), 1e-9);
    EXPECT_LE(std::stod(row.at("selectivity_ci_low")), std::stod(row.at("selectivity_ci_high")));
    if (row.at("probe") == "mlp:8") {
      EXPECT_TRUE(row.at("nuclear_norm").empty());
      EXPECT_FALSE(row.at("embeddings_f1").empty());
      EXPECT_FALSE(row.at("conditional_gain").empty());
      continue;
    }
    EXPECT_GT(std::stod(row.at("nuclear_norm")), 0.0);
    if (row.at("probe") != "linear") continue;
    EXPECT_EQ(row.at("parameters"), std::to_string(2 * 64 + 2));
    EXPECT_NEAR(std::stod(row.at("conditional_gain")),
                std::stod(row.at("conditional_f1")) - std::stod(row.at("embeddings_f1")), 1e-9);
    // The study's probes score as they do alone.
    for (const auto& plain_row : plain_rows)
      if (plain_row.at("kind") == row.at("kind") && plain_row.at("epoch") == row.at("epoch") &&
          plain_row.at("layer") == row.at("layer")) {
        EXPECT_EQ(plain_row.at("f1"), row.at("f1"));
        EXPECT_EQ(plain_row.at("f1_minus_pretrained"), row.at("f1_minus_pretrained"));
        ++linear_rows;
      }
  }
  EXPECT_EQ(linear_rows, 2u * 2 * 4);
  const std::string report = read_file(full / "report.md");
  // The dev file named is the one the tables score, never a control task's answers.
  EXPECT_NE(report.find("dev-v2.0.json`; "), std::string::npos) << report;
  EXPECT_EQ(report.find("control_task_dev.json"), std::string::npos) << report;
  EXPECT_NE(report.find("| control-task F1 | selectivity |"), std::string::npos) << report;
  EXPECT_NE(report.find("gain over layer 0"), std::string::npos) << report;
  EXPECT_NE(report.find("## Probe complexity"), std::string::npos) << report;
  EXPECT_NE(report.find("control-task compression"), std::string::npos) << report;
  EXPECT_NE(read_file(full / "report.svg").find("Selectivity"), std::string::npos);
  EXPECT_NE(read_file(full / "complexity.svg").find("Pareto hypervolume per layer"), std::string::npos);
}

TEST(ProbeMethods, TheFinalStudyFormRunsTheMethods) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  REQUIRE_SHARED(test_support::kSpieceModel);
  const auto s = methods_setup("probe_methods_named");
  const fs::path root = s.dir / "experiments";
  const std::string train = test_support::tool("probe_train") + " " + s.model.string() +
                            " cpu 1 --control-task --probe linear,rank:1 --conditional --train-file " +
                            (s.data / "train-v2.0.json").string() + " --max-train-features 16 --output-dir " +
                            root.string();
  ASSERT_EQ(run_logged(train, s.dir / "train.log"), 0) << read_file(s.dir / "train.log");
  const fs::path exper = root / "albert-tiny";
  EXPECT_TRUE(fs::exists(exper / "fine_tuned_epoch_1" / "fine_tuned_probes" / "probes.safetensors"));
  EXPECT_TRUE(fs::exists(exper / "fine_tuned_epoch_1" / "fine_tuned_probes" / "rank_1.control_task" / "probes.safetensors"));
  const std::string predict = test_support::tool("probe_predict") + " " + s.model.string() + " cpu --experiments-root " +
                              root.string() + " --dev-file " + (s.data / "dev-v2.0.json").string();
  ASSERT_EQ(run_logged(predict, s.dir / "predict.log"), 0) << read_file(s.dir / "predict.log");
  ASSERT_EQ(run_logged("cd " + root.string() + " && " + test_support::tool("probe_evaluate") + " albert-tiny --bootstrap 50",
                       s.dir / "evaluate.log"),
            0)
      << read_file(s.dir / "evaluate.log");
  const auto rows = read_summary(exper / "summary.csv");
  ASSERT_EQ(rows.size(), 2u * 4);  // linear and rank:1, 4 layers
  for (const auto& row : rows) {
    EXPECT_FALSE(row.at("selectivity").empty());
    EXPECT_FALSE(row.at("conditional_gain").empty());
  }
  EXPECT_TRUE(fs::exists(exper / "complexity.svg"));
}

TEST(ProbeMethods, BadMethodOptionsAreUsageErrors) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  REQUIRE_SHARED(test_support::kSpieceModel);
  const auto s = methods_setup("probe_methods_usage");
  for (const std::string bad : {"--probe rank:0", "--probe linear,linear", "--probe cnn:3", "--probe mlp:"})
    EXPECT_EQ(run_logged(train_command(s, s.dir / "bad", 1, bad), s.dir / "bad.log"), 2) << bad << read_file(s.dir / "bad.log");
  EXPECT_NE(read_file(s.dir / "bad.log").find("mlp:"), std::string::npos);
}
