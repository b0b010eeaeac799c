// The research-grade probing options end to end: a control encoder, several
// probe seeds from one encoder pass, the online codelength and the report
// with bootstrap intervals, through probe_train / probe_predict /
// probe_evaluate on the golden tiny ALBERT and a small synthetic SQuAD set.
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>

#include "layerprobe/core/common.hpp"
#include "layerprobe/probe/control.hpp"
#include "layerprobe/probe/probe_store.hpp"
#include "test_support.hpp"

using namespace layerprobe;
namespace fs = std::filesystem;

namespace {

using test_support::run_logged;

size_t line_count(const fs::path& path) {
  std::ifstream in(path);
  size_t lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  return lines;
}

// The golden tiny ALBERT with its vocabulary, and a small synthetic train/dev set.
struct ControlsSetup {
  fs::path dir, model, data;
};

ControlsSetup controls_setup(const std::string& name) {
  ControlsSetup s{test_support::scratch_dir(name), {}, {}};
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

std::string train_command(const ControlsSetup& s, const fs::path& exper, const std::string& extra) {
  return test_support::tool("probe_train") + " both cpu 2 --pretrained-model " + s.model.string() +
         " --fine-tuned-model " + s.model.string() + " --train-file " + (s.data / "train-v2.0.json").string() +
         " --max-train-features 40 --batch-size 8 --output-dir " + exper.string() + " " + extra;
}

fs::path seed_probes(const fs::path& exper, const std::string& kind, int epoch, int seed) {
  return exper / (kind + "_epoch_" + std::to_string(epoch)) / (kind + "_probes") / ("seed_" + std::to_string(seed)) /
         "probes.safetensors";
}

void expect_same_probes(const fs::path& a, const fs::path& b) {
  auto x = load_probes(a), y = load_probes(b);
  EXPECT_TRUE(torch::equal(x.probes.weight(), y.probes.weight())) << a << " vs " << b;
  EXPECT_TRUE(torch::equal(x.probes.bias(), y.probes.bias())) << a << " vs " << b;
  EXPECT_TRUE(torch::equal(x.probes.exp_avg_sq_weight(), y.probes.exp_avg_sq_weight())) << a << " vs " << b;
  EXPECT_EQ(x.metadata.mean_loss, y.metadata.mean_loss);
}

}  // namespace

TEST(ProbeControls, ControlEncoderIsAFunctionOfConfigAndSeed) {
  REQUIRE_SHARED("golden/albert-tiny/config.json");
  REQUIRE_SHARED(test_support::kSpieceModel);
  const fs::path model = test_support::shared_path("golden/albert-tiny");
  const OpenedModel opened = open_model_dir(model, "MODEL", test_support::shared_path(test_support::kSpieceModel));
  EXPECT_EQ(weights_fingerprint(*control_model(opened.config, 5).model), weights_fingerprint(*control_model(model, 5).model));
  auto a = control_model(model, 5), b = control_model(model, 5), c = control_model(model, 6);
  EXPECT_EQ(weights_fingerprint(*a.model), weights_fingerprint(*b.model));
  EXPECT_NE(weights_fingerprint(*a.model), weights_fingerprint(*c.model));
  EXPECT_NE(weights_fingerprint(*a.model), weights_fingerprint(*load_checkpoint(model).model));
  nlohmann::json options = {{"control_seed", 5}, {"control_weights", weights_fingerprint(*a.model)}};
  EXPECT_EQ(weights_fingerprint(*load_probed_model("control", opened, options, "p").model),
            weights_fingerprint(*a.model));
  options["control_weights"] = "fnv1a64:0000000000000000";
  try {
    load_probed_model("control", opened, options, "exper/control_probes/probes.safetensors");
    FAIL() << "a control encoder other than the recorded one was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exper/control_probes/probes.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("control_seed 5"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_probed_model("control", opened, nlohmann::json::object(), "p"), Error);
}

TEST(ProbeControls, SeedsControlCodelengthAndReportEndToEnd) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  REQUIRE_SHARED(test_support::kSpieceModel);
  const auto s = controls_setup("probe_controls");
  const fs::path exper = s.dir / "exper";
  ASSERT_EQ(run_logged(train_command(s, exper, "--control --control-seed 3 --seeds 1,2"), s.dir / "train.log"), 0)
      << read_file(s.dir / "train.log");
  for (const std::string kind : {"pretrained", "fine_tuned", "control"})
    for (int epoch : {1, 2})
      for (int seed : {1, 2}) ASSERT_TRUE(fs::exists(seed_probes(exper, kind, epoch, seed))) << kind << epoch << seed;
  auto control = load_probes(seed_probes(exper, "control", 1, 2));
  EXPECT_EQ(control.metadata.kind, "control");
  EXPECT_EQ(control.metadata.training_options.at("control_seed"), 3);
  EXPECT_EQ(control.metadata.training_options.at("probe_seed"), 2);
  EXPECT_EQ(control.metadata.training_options.at("control_weights"),
            weights_fingerprint(*control_model(s.model, 3).model));
  // Epoch 1 carries the online code; codelength.csv has a row per seed and layer.
  ASSERT_TRUE(control.metadata.codelength.has_value());
  EXPECT_EQ(control.metadata.codelength->features, 40);
  EXPECT_EQ(control.metadata.codelength->online_bits.size(), 4u);
  EXPECT_FALSE(load_probes(seed_probes(exper, "control", 2, 2)).metadata.codelength.has_value());
  EXPECT_EQ(line_count(exper / "fine_tuned_epoch_1" / "codelength.csv"), 1u + 2 * 4);
  // Seeds are independent of one another: seed 2 alone trains the same probes.
  const fs::path alone = s.dir / "alone";
  ASSERT_EQ(run_logged(train_command(s, alone, "--control --control-seed 3 --seeds 2"), s.dir / "alone.log"), 0)
      << read_file(s.dir / "alone.log");
  for (const std::string kind : {"pretrained", "control"})
    expect_same_probes(seed_probes(exper, kind, 2, 2), seed_probes(alone, kind, 2, 2));
  // A repeated seed is a usage error.
  EXPECT_EQ(run_logged(train_command(s, s.dir / "twice", "--seeds 1,1"), s.dir / "twice.log"), 2);

  const std::string dev = (s.data / "dev-v2.0.json").string();
  ASSERT_EQ(run_logged(test_support::tool("probe_predict") + " exper " + exper.string() + " cpu --dev-file " + dev,
                       s.dir / "predict.log"),
            0)
      << read_file(s.dir / "predict.log");
  const fs::path control_preds = exper / "control_epoch_2" / "control_preds" / "seed_1";
  ASSERT_TRUE(fs::exists(control_preds / "pred_layer_4.json")) << read_file(s.dir / "predict.log");
  EXPECT_EQ(nlohmann::json::parse(read_file(control_preds / "preds_meta.json")).at("seed"), 1);

  // probe_predict rebuilds the control from its recorded seed and refuses another encoder.
  auto tampered = load_probes(seed_probes(exper, "control", 2, 1));
  tampered.metadata.training_options["control_seed"] = 4;
  const fs::path odd = s.dir / "odd" / "control_probes";
  save_probes(odd / "probes.safetensors", tampered.probes, tampered.metadata);
  EXPECT_EQ(run_logged(test_support::tool("probe_predict") + " probes " + odd.string() + " cpu --dev-file " + dev,
                       s.dir / "odd.log"),
            1);
  EXPECT_NE(read_file(s.dir / "odd.log").find("control_seed 4"), std::string::npos) << read_file(s.dir / "odd.log");

  ASSERT_EQ(run_logged(test_support::tool("probe_evaluate") + " exper " + exper.string() + " --bootstrap 200",
                       s.dir / "evaluate.log"),
            0)
      << read_file(s.dir / "evaluate.log");
  EXPECT_TRUE(fs::exists(exper / "control_epoch_1" / "results_seed_2.csv"));
  EXPECT_EQ(line_count(exper / "summary.csv"), 1u + 3 * 2 * 4);
  const std::string summary = read_file(exper / "summary.csv");
  EXPECT_NE(summary.find(",f1_minus_control,f1_minus_control_ci_low,f1_minus_control_ci_high"), std::string::npos);
  const std::string report = read_file(exper / "report.md");
  EXPECT_NE(report.find("## control, epoch 2 (2 seeds (1, 2))"), std::string::npos) << report;
  EXPECT_NE(report.find("F1 \u2212 control"), std::string::npos) << report;
  EXPECT_NE(report.find("codelength (kbits)"), std::string::npos) << report;
  EXPECT_NE(read_file(exper / "report.svg").find("NoAns accuracy (%)"), std::string::npos);
}

TEST(ProbeControls, TheFinalStudyFormTrainsAndPredictsAControlBesideTheModel) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  REQUIRE_SHARED(test_support::kSpieceModel);
  const auto s = controls_setup("probe_controls_named");
  const fs::path root = s.dir / "experiments";
  const std::string train = test_support::tool("probe_train") + " " + s.model.string() + " cpu 1 --control --train-file " +
                            (s.data / "train-v2.0.json").string() + " --max-train-features 16 --output-dir " +
                            root.string();
  ASSERT_EQ(run_logged(train, s.dir / "train.log"), 0) << read_file(s.dir / "train.log");
  const fs::path exper = root / "albert-tiny";
  // The golden model has a QA head, so it is probed as fine_tuned; the control copies its architecture.
  ASSERT_TRUE(fs::exists(exper / "control_epoch_1" / "control_probes" / "probes.safetensors"));
  ASSERT_TRUE(fs::exists(exper / "fine_tuned_epoch_1" / "fine_tuned_probes" / "probes.safetensors"));
  EXPECT_TRUE(fs::exists(exper / "control_epoch_1" / "codelength.csv"));
  const std::string predict = test_support::tool("probe_predict") + " " + s.model.string() +
                              " cpu --experiments-root " + root.string() + " --dev-file " +
                              (s.data / "dev-v2.0.json").string();
  ASSERT_EQ(run_logged(predict, s.dir / "predict.log"), 0) << read_file(s.dir / "predict.log");
  EXPECT_TRUE(fs::exists(exper / "control_epoch_1" / "control_preds" / "pred_layer_4.json"));
  ASSERT_EQ(run_logged("cd " + root.string() + " && " + test_support::tool("probe_evaluate") + " albert-tiny --bootstrap 0",
                       s.dir / "evaluate.log"),
            0)
      << read_file(s.dir / "evaluate.log");
  const std::string report = read_file(exper / "report.md");
  EXPECT_NE(report.find("## control, epoch 1 (1 probe seed)"), std::string::npos) << report;
  EXPECT_EQ(report.find("95% percentile bootstrap"), std::string::npos) << report;  // --bootstrap 0
  EXPECT_EQ(line_count(exper / "summary.csv"), 1u + 2 * 4);
}
