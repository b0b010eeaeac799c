// End to end through the three executables in the original study's argument
// forms, on the golden tiny ALBERT as both models.
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>

#include "layerprobe/core/common.hpp"
#include "layerprobe/squad/predictions_io.hpp"
#include "layerprobe/probe/probe_store.hpp"
#include "test_support.hpp"

using namespace layerprobe;
namespace fs = std::filesystem;

namespace {

int run(const std::string& command, const fs::path& log) { return test_support::run_logged(command, log); }

using test_support::tool;

size_t csv_rows(const fs::path& path) {
  std::ifstream in(path);
  size_t lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  return lines;
}

}  // namespace

TEST(Workflow, TrainPredictEvaluateInTheOriginalForms) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  REQUIRE_SHARED(test_support::kDevFile);
  auto dir = test_support::scratch_dir("workflow");
  auto model = dir / "albert-tiny";
  fs::create_directories(model);
  for (const char* file : {"config.json", "model.safetensors"})
    fs::copy_file(test_support::shared_path(std::string("golden/albert-tiny/") + file), model / file);
  fs::copy_file(test_support::shared_path(test_support::kSpieceModel), model / "spiece.model");
  auto dev = test_support::shared_path(test_support::kDevFile).string();
  auto exper = dir / "exper";
  std::string models = " --pretrained-model " + model.string() + " --fine-tuned-model " + model.string();

  std::string train = tool("probe_train") + " both cpu 2" + models + " --train-file " + dev +
                      " --max-train-features 64 --output-dir " + exper.string();
  ASSERT_EQ(run(train, dir / "train.log"), 0) << read_file(dir / "train.log");
  for (const char* kind : {"pretrained", "fine_tuned"})
    for (int epoch : {1, 2}) {
      auto path = exper / (std::string(kind) + "_epoch_" + std::to_string(epoch)) / (std::string(kind) + "_probes") /
                  "probes.safetensors";
      ASSERT_TRUE(fs::exists(path)) << path;
      auto stored = load_probes(path);
      EXPECT_EQ(stored.metadata.epoch, epoch);
      EXPECT_EQ(stored.metadata.features_seen, 64 * epoch);
      EXPECT_EQ(stored.metadata.mean_loss.size(), 4u);
      EXPECT_EQ(stored.probes.layers(), 4);
    }
  // A rerun of a finished run does nothing and says so.
  ASSERT_EQ(run(train, dir / "train2.log"), 0);
  EXPECT_NE(read_file(dir / "train2.log").find("already trained"), std::string::npos) << read_file(dir / "train2.log");

  ASSERT_EQ(run(tool("probe_predict") + " exper " + exper.string() + " cpu --dev-file " + dev, dir / "predict.log"), 0)
      << read_file(dir / "predict.log");
  for (const char* kind : {"pretrained", "fine_tuned"}) {
    auto preds = exper / (std::string(kind) + "_epoch_2") / (std::string(kind) + "_preds");
    for (int layer = 1; layer <= 4; ++layer) {
      auto name = std::to_string(layer);
      EXPECT_EQ(load_predictions_json(preds / ("pred_layer_" + name + ".json")).size(), 6078u);
      EXPECT_EQ(load_na_probs(preds / ("null_odds_layer_" + name + ".json")).size(), 6078u);
      EXPECT_EQ(load_predictions_csv(preds / ("pred_layer_" + name + ".csv")).size(), 6078u);
    }
  }

  ASSERT_EQ(run(tool("probe_evaluate") + " exper " + exper.string(), dir / "evaluate.log"), 0)
      << read_file(dir / "evaluate.log");
  EXPECT_EQ(csv_rows(exper / "fine_tuned_epoch_1" / "results.csv"), 5u);
  EXPECT_EQ(csv_rows(exper / "summary.csv"), 1u + 2 * 2 * 4);
  EXPECT_NE(read_file(exper / "layers.svg").find("<svg"), std::string::npos);
}

TEST(Workflow, MissingModelSaysWhereItLookedAndHowToGetIt) {
  auto dir = test_support::scratch_dir("workflow_missing");
  ASSERT_NE(run("cd " + dir.string() + " && " + tool("probe_train") + " pretrained cpu 1 --train-file x.json",
                dir / "log"),
            0);
  auto log = read_file(dir / "log");
  EXPECT_NE(log.find("models/albert-base-v2/config.json"), std::string::npos) << log;
  EXPECT_NE(log.find("tools/download_models.sh albert-base-v2"), std::string::npos) << log;
}

TEST(Workflow, BadPositionalArgumentsAreUsageErrors) {
  auto dir = test_support::scratch_dir("workflow_usage");
  EXPECT_EQ(run(tool("probe_train") + " everything cpu 1", dir / "log"), 2) << read_file(dir / "log");
  EXPECT_EQ(run(tool("probe_train") + " both tpu 1", dir / "log"), 2) << read_file(dir / "log");
  // Half precision autocasts only on a GPU, and the value is checked before any model is read.
  EXPECT_EQ(run(tool("probe_train") + " both cpu 1 --precision fp16", dir / "log"), 2) << read_file(dir / "log");
  EXPECT_NE(read_file(dir / "log").find("needs a GPU"), std::string::npos) << read_file(dir / "log");
  EXPECT_EQ(run(tool("probe_predict") + " exper . cpu --precision fp8", dir / "log"), 2) << read_file(dir / "log");
  EXPECT_EQ(run(tool("probe_predict") + " exper " + (dir / "nothing").string(), dir / "log"), 1);
  EXPECT_NE(read_file(dir / "log").find("does not exist"), std::string::npos) << read_file(dir / "log");
}

namespace {

// The first `articles` articles of the dev file, as a smaller SQuAD 2.0 file.
fs::path dev_subset(const fs::path& dir, size_t articles) {
  auto json = nlohmann::json::parse(read_file(test_support::shared_path(test_support::kDevFile)));
  json["data"].erase(json["data"].begin() + static_cast<std::ptrdiff_t>(articles), json["data"].end());
  const fs::path path = dir / "dev-subset.json";
  write_file_atomically(path, json.dump());
  return path;
}

// A random model made by init-model (tiny widths, the published layer count) with the tokenizer at
// `vocab` (a file or directory), lower-casing as uncased hub models do.
void init_model_from(const std::string& like, const fs::path& vocab, bool lower_case, const fs::path& out,
                     const std::string& extra, const fs::path& log) {
  ASSERT_EQ(run(tool("probe_tools") + " init-model --like " + like + " --hidden-size 32 --heads 2 " +
                    "--intermediate-size 64 --vocab " + vocab.string() +
                    (lower_case ? " --lower-case" : "") + " --output " + out.string() + " " + extra,
                log),
            0)
      << read_file(log);
}

// The same with a tokenizer file under the test data.
void init_model(const std::string& like, const std::string& vocab, bool lower_case, const fs::path& out,
                const std::string& extra, const fs::path& log) {
  init_model_from(like, test_support::shared_path(vocab), lower_case, out, extra, log);
}

void init_model(const std::string& like, const fs::path& out, const std::string& extra, const fs::path& log) {
  init_model(like, "data/bert/vocab.txt", true, out, extra, log);
}

}  // namespace

// The final study's form on a model of each family: named after the model,
// probed as pretrained (the weights hold no QA head), as many layers as its config.
TEST(Workflow, FinalStudyFormOnEveryFamily) {
  struct Family {
    const char* name;
    const char* vocab;
    bool lower_case;
    size_t layers;
  };
  const Family families[] = {{"albert-base-v2", test_support::kSpieceModel, false, 12},
                             {"bert-base-uncased", "data/bert/vocab.txt", true, 12},
                             {"distilbert-base-uncased", "data/bert/vocab.txt", true, 6},
                             {"distilroberta-base", "data/roberta/vocab.json", false, 6}};
  REQUIRE_SHARED(test_support::kDevFile);
  auto dir = test_support::scratch_dir("workflow_named");
  const std::string dev = dev_subset(dir, 1).string();
  const std::string env = "cd " + dir.string() + " && LAYERPROBE_MODELS_DIR=" + (dir / "models").string() + " ";
  for (const auto& family : families) {
    SCOPED_TRACE(family.name);
    REQUIRE_SHARED(family.vocab);
    const std::string name = family.name;
    init_model(name, family.vocab, family.lower_case, dir / "models" / name, "--no-qa-head", dir / "init.log");
    // With a control of the family's architecture and two probe seeds from one encoder pass.
    ASSERT_EQ(run(env + tool("probe_train") + " " + name + " cpu 1 --train-file " + dev +
                      " --max-train-features 32 --control --seeds 1,2",
                  dir / "train.log"),
              0)
        << read_file(dir / "train.log");
    for (const std::string kind : {"pretrained", "control"})
      for (const char* seed : {"seed_1", "seed_2"}) {
        auto probes = dir / name / (kind + "_epoch_1") / (kind + "_probes") / seed / "probes.safetensors";
        ASSERT_TRUE(fs::exists(probes)) << read_file(dir / "train.log");
        EXPECT_EQ(load_probes(probes).probes.layers(), static_cast<int64_t>(family.layers));
      }
    EXPECT_EQ(csv_rows(dir / name / "control_epoch_1" / "codelength.csv"), 1u + 2 * family.layers);
    ASSERT_EQ(run(env + tool("probe_predict") + " " + name + " cpu --dev-file " + dev, dir / "predict.log"), 0)
        << read_file(dir / "predict.log");
    ASSERT_EQ(run(env + tool("probe_evaluate") + " " + name + " --bootstrap 100", dir / "evaluate.log"), 0)
        << read_file(dir / "evaluate.log");
    EXPECT_EQ(csv_rows(dir / name / "pretrained_epoch_1" / "results_seed_2.csv"), family.layers + 1);
    EXPECT_EQ(csv_rows(dir / name / "summary.csv"), 1u + 2 * family.layers);
    EXPECT_NE(read_file(dir / name / "report.md").find("## control, epoch 1 (2 seeds (1, 2))"), std::string::npos);
  }
}

// The same on a tiny model of each family after the study's (4 layers, hidden 32): HF-named weights
// without the QA head (ModernBERT's head. and classifier.), each with its own tokenizer kind.
TEST(Workflow, FinalStudyFormOnEveryFamilyBeyondTheStudy) {
  struct Family {
    const char* name;
    const char* vocab;
    bool lower_case;
    const char* extra;
  };
  const Family families[] = {
      {"google/electra-small-discriminator", "data/bert/vocab.txt", true, "--embedding-size 16"},
      {"xlm-roberta-base", "golden/xlm-roberta-tiny/sentencepiece.bpe.model", false, ""},
      {"microsoft/deberta-v3-base", "golden/deberta-v3-tiny/spm.model", false, ""},
      {"answerdotai/ModernBERT-base", "data/roberta-base-tokenizer-json/tokenizer.json", false, ""}};
  constexpr size_t kLayers = 4;
  REQUIRE_SHARED(test_support::kDevFile);
  auto dir = test_support::scratch_dir("workflow_named_newer");
  const std::string dev = dev_subset(dir, 1).string();
  const std::string env = "cd " + dir.string() + " && LAYERPROBE_MODELS_DIR=" + (dir / "models").string() + " ";
  for (const auto& family : families) {
    SCOPED_TRACE(family.name);
    REQUIRE_SHARED(family.vocab);
    const std::string name = family.name, short_name = fs::path(name).filename().string();
    // roberta-base's tokenizer.json names no pad token (its tokenizer_config.json does, as ModernBERT's does
    // "[PAD]"): give it one, so that the model pads with an id of the smaller vocabulary.
    fs::path vocab = test_support::shared_path(family.vocab);
    if (vocab.filename() == "tokenizer.json") {
      const fs::path tokenizer_dir = dir / ("tokenizer-" + short_name);
      fs::create_directories(tokenizer_dir);
      fs::copy_file(vocab, tokenizer_dir / "tokenizer.json", fs::copy_options::overwrite_existing);
      write_file_atomically(tokenizer_dir / "tokenizer_config.json",
                            R"({"bos_token": "<s>", "eos_token": "</s>", "cls_token": "<s>", "sep_token": "</s>", )"
                            R"("unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"})");
      vocab = tokenizer_dir;
    }
    init_model_from(name, vocab, family.lower_case, dir / "models" / name,
                    "--no-qa-head --layers " + std::to_string(kLayers) + " " + family.extra, dir / "init.log");
    ASSERT_EQ(run(env + tool("probe_train") + " " + name + " cpu 1 --train-file " + dev +
                      " --max-train-features 24 --control --seeds 1,2",
                  dir / "train.log"),
              0)
        << read_file(dir / "train.log");
    for (const std::string kind : {"pretrained", "control"})
      for (const char* seed : {"seed_1", "seed_2"}) {
        auto probes = dir / short_name / (kind + "_epoch_1") / (kind + "_probes") / seed / "probes.safetensors";
        ASSERT_TRUE(fs::exists(probes)) << read_file(dir / "train.log");
        EXPECT_EQ(load_probes(probes).probes.layers(), static_cast<int64_t>(kLayers));
      }
    EXPECT_EQ(csv_rows(dir / short_name / "control_epoch_1" / "codelength.csv"), 1u + 2 * kLayers);
    ASSERT_EQ(run(env + tool("probe_predict") + " " + name + " cpu --dev-file " + dev, dir / "predict.log"), 0)
        << read_file(dir / "predict.log");
    ASSERT_EQ(run(env + tool("probe_evaluate") + " " + name + " --bootstrap 100", dir / "evaluate.log"), 0)
        << read_file(dir / "evaluate.log");
    EXPECT_EQ(csv_rows(dir / short_name / "pretrained_epoch_1" / "results_seed_2.csv"), kLayers + 1);
    EXPECT_EQ(csv_rows(dir / short_name / "summary.csv"), 1u + 2 * kLayers);
    EXPECT_NE(read_file(dir / short_name / "report.md").find("## control, epoch 1 (2 seeds (1, 2))"),
              std::string::npos);
  }
}

TEST(Workflow, BothKindsOfDistilBertModels) {
  REQUIRE_SHARED("data/bert/vocab.txt");
  REQUIRE_SHARED(test_support::kDevFile);
  auto dir = test_support::scratch_dir("workflow_distilbert");
  init_model("distilbert-base-uncased", dir / "pretrained", "--no-qa-head --seed 1", dir / "init1.log");
  init_model("distilbert-base-uncased", dir / "fine_tuned", "--seed 2", dir / "init2.log");
  const std::string dev = dev_subset(dir, 1).string();
  auto exper = dir / "exper";
  ASSERT_EQ(run(tool("probe_train") + " both cpu 1 --pretrained-model " + (dir / "pretrained").string() +
                    " --fine-tuned-model " + (dir / "fine_tuned").string() + " --train-file " + dev +
                    " --max-train-features 32 --output-dir " + exper.string(),
                dir / "train.log"),
            0)
      << read_file(dir / "train.log");
  for (const char* kind : {"pretrained", "fine_tuned"}) {
    auto path = exper / (std::string(kind) + "_epoch_1") / (std::string(kind) + "_probes") / "probes.safetensors";
    ASSERT_TRUE(fs::exists(path)) << path;
    EXPECT_EQ(load_probes(path).probes.layers(), 6);
  }
  ASSERT_EQ(run(tool("probe_predict") + " exper " + exper.string() + " cpu --dev-file " + dev, dir / "predict.log"), 0)
      << read_file(dir / "predict.log");
  ASSERT_EQ(run(tool("probe_evaluate") + " exper " + exper.string(), dir / "evaluate.log"), 0)
      << read_file(dir / "evaluate.log");
  EXPECT_EQ(csv_rows(exper / "summary.csv"), 1u + 2 * 6);
}

// Issue 26: the final study's form on a tiny GPT-2 and a tiny Llama (init-model with the published
// shapes' keys, small widths, 2 layers; the Llama saved in bf16 and widened as it loads), with a
// control and two probe seeds; the decoders' no-answer position ("last") is recorded with the probes.
TEST(Workflow, FinalStudyFormOnTinyDecoders) {
  struct Decoder {
    const char* name;
    const char* out;     // the experiment directory: the name's last component
    const char* vocab;   // a tokenizer directory under the test data
    const char* sizes;
  };
  const Decoder decoders[] = {
      {"gpt2", "gpt2", "golden/gpt2-tiny", "--hidden-size 32 --heads 2 --layers 2"},
      {"meta-llama/Llama-3.2-1B", "Llama-3.2-1B", "golden/llama-tiny",
       "--hidden-size 32 --heads 8 --intermediate-size 64 --layers 2 --dtype bf16"}};
  REQUIRE_SHARED(test_support::kDevFile);
  auto dir = test_support::scratch_dir("workflow_decoders");
  const std::string dev = dev_subset(dir, 1).string();
  const std::string env = "cd " + dir.string() + " && LAYERPROBE_MODELS_DIR=" + (dir / "models").string() + " ";
  for (const auto& decoder : decoders) {
    SCOPED_TRACE(decoder.name);
    REQUIRE_SHARED(decoder.vocab);
    const std::string name = decoder.name;
    const fs::path out = dir / decoder.out;
    ASSERT_EQ(run(tool("probe_tools") + " init-model --like " + name + " " + decoder.sizes + " --vocab " +
                      test_support::shared_path(decoder.vocab).string() + " --no-qa-head --output " +
                      (dir / "models" / name).string(),
                  dir / "init.log"),
              0)
        << read_file(dir / "init.log");
    ASSERT_EQ(run(env + tool("probe_train") + " " + name + " cpu 1 --train-file " + dev +
                      " --max-train-features 32 --control --seeds 1,2",
                  dir / "train.log"),
              0)
        << read_file(dir / "train.log");
    for (const std::string kind : {"pretrained", "control"})
      for (const char* seed : {"seed_1", "seed_2"}) {
        auto probes = out / (kind + "_epoch_1") / (kind + "_probes") / seed / "probes.safetensors";
        ASSERT_TRUE(fs::exists(probes)) << read_file(dir / "train.log");
        const auto stored = load_probes(probes);
        EXPECT_EQ(stored.probes.layers(), 2);
        EXPECT_EQ(stored.metadata.training_options.value("null_position", ""), "last");
      }
    EXPECT_EQ(csv_rows(out / "control_epoch_1" / "codelength.csv"), 1u + 2 * 2);
    ASSERT_EQ(run(env + tool("probe_predict") + " " + name + " cpu --dev-file " + dev, dir / "predict.log"), 0)
        << read_file(dir / "predict.log");
    ASSERT_EQ(run(env + tool("probe_evaluate") + " " + name + " --bootstrap 100", dir / "evaluate.log"), 0)
        << read_file(dir / "evaluate.log");
    EXPECT_EQ(csv_rows(out / "pretrained_epoch_1" / "results_seed_2.csv"), 2u + 1);
    EXPECT_EQ(csv_rows(out / "summary.csv"), 1u + 2 * 2);
    EXPECT_NE(read_file(out / "report.md").find("## control, epoch 1 (2 seeds (1, 2))"), std::string::npos);
  }
}
