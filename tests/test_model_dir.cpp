// A model directory is opened once: open_model_dir reads config.json, builds the
// tokenizer and finds the weights at a command's edge, and probe_train's path
// below it (the two kinds, the tokenizer check, the control, the encoder pass)
// reads neither config.json nor the tokenizer files again. Proved by removing
// them after opening: a second read anywhere below fails the run.
#include <nlohmann/json.hpp>

#include "layerprobe/core/common.hpp"
#include "layerprobe/model/family.hpp"
#include "layerprobe/model/model_dir.hpp"
#include "layerprobe/probe/experiment.hpp"
#include "layerprobe/probe/workflow.hpp"
#include "layerprobe/synth/synth.hpp"
#include "test_support.hpp"

using namespace layerprobe;
namespace fs = std::filesystem;

namespace {

// Two copies of the golden tiny ALBERT, each with its vocabulary, and a small synthetic SQuAD 2.0 set.
struct TwoModels {
  fs::path dir, pretrained, fine_tuned, data;
};

TwoModels two_models(const std::string& name) {
  TwoModels m{test_support::scratch_dir(name), {}, {}, {}};
  m.pretrained = m.dir / "albert-a";
  m.fine_tuned = m.dir / "albert-b";
  m.data = m.dir / "data";
  for (const auto& model : {m.pretrained, m.fine_tuned}) {
    fs::create_directories(model);
    for (const char* file : {"config.json", "model.safetensors"})
      fs::copy_file(test_support::shared_path(std::string("golden/albert-tiny/") + file), model / file);
    fs::copy_file(test_support::shared_path(test_support::kSpieceModel), model / "spiece.model");
  }
  SynthOptions synth;
  synth.train_questions = 60;
  synth.dev_questions = 20;
  write_synthetic_squad(m.data, synth);
  return m;
}

ProbeTrainOptions both_with_control(const TwoModels& m, const fs::path& out) {
  ProbeTrainOptions options;
  options.kinds = {"pretrained", "fine_tuned"};
  options.control = true;
  options.control_seed = 3;
  options.pretrained_model = m.pretrained;
  options.fine_tuned_model = m.fine_tuned;
  options.train_file = m.data / "train-v2.0.json";
  options.max_train_features = 16;
  options.batch_size = 8;
  options.output_dir = out;
  return options;
}

}  // namespace

TEST(ModelDirectory, OpenReadsConfigFamilyTokenizerAndFindsTheWeights) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  REQUIRE_SHARED(test_support::kSpieceModel);
  const auto m = two_models("model_dir_open");
  const OpenedModel opened = open_model_dir(m.pretrained, "--pretrained-model");
  EXPECT_EQ(opened.dir, m.pretrained);
  EXPECT_EQ(opened.config.model_type, "albert");
  ASSERT_NE(opened.family, nullptr);
  EXPECT_EQ(opened.family->model_type, "albert");
  ASSERT_NE(opened.tokenizer, nullptr);
  EXPECT_EQ(opened.tokenizer->kind(), "sentencepiece");
  EXPECT_EQ(opened.weights_file, m.pretrained / "model.safetensors");
  EXPECT_EQ(load_checkpoint(opened).config.num_hidden_layers, opened.config.num_hidden_layers);
  // Both kinds of one directory share one opened model; two directories are opened once each.
  ProbeTrainOptions options = both_with_control(m, m.dir / "unused");
  options.fine_tuned_model = m.pretrained;
  auto same = open_probe_models(options);
  ASSERT_EQ(same.size(), 2u);
  EXPECT_EQ(same[0].get(), same[1].get());
  auto two = open_probe_models(both_with_control(m, m.dir / "unused"));
  ASSERT_EQ(two.size(), 2u);
  EXPECT_NE(two[0].get(), two[1].get());
  // A directory without config.json: the error names the file, the option and the download.
  try {
    open_model_dir(m.dir / "nothing", "--pretrained-model");
    FAIL() << "a directory without config.json was opened";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json' does not exist"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--pretrained-model DIR"), std::string::npos) << e.what();
  }
}

TEST(ModelDirectory, ProbeTrainReadsNoConfigOrTokenizerFileAfterOpening) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  REQUIRE_SHARED(test_support::kSpieceModel);
  const auto m = two_models("model_dir_once");
  // The reference: opened and trained in one call, with every file there.
  const fs::path reference = m.dir / "reference", opened_first = m.dir / "opened_first";
  train_probes(both_with_control(m, reference));
  // Opened at the edge; then config.json and the vocabulary are gone. Any second read of either
  // (a config, a tokenizer built again: the tokenizer check, the control, the encoder, the features)
  // would now fail; only the weights, which the encoder pass reads once, stay.
  const ProbeTrainOptions options = both_with_control(m, opened_first);
  const OpenedModels models = open_probe_models(options);
  for (const auto& model : {m.pretrained, m.fine_tuned})
    for (const char* file : {"config.json", "spiece.model"}) ASSERT_TRUE(fs::remove(model / file)) << model / file;
  ASSERT_NO_THROW(train_probes(options, models));
  // And the probes are byte for byte those of the reference.
  for (const std::string kind : {"pretrained", "fine_tuned", "control"}) {
    const fs::path expected = probes_file(reference, kind, 1, std::nullopt), got = probes_file(opened_first, kind, 1, std::nullopt);
    ASSERT_TRUE(fs::exists(got)) << got;
    EXPECT_EQ(read_file(got), read_file(expected)) << kind;
  }
  // Without the opened models, the same run reads the directory and names what is missing.
  try {
    train_probes(both_with_control(m, m.dir / "reopened"));
    FAIL() << "a model directory without config.json was probed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
}
