// The head lens (probe_predict lens MODEL): a fine-tuned model's own QA head
// at every layer. At the last layer it must be run_squad --do_eval's
// predictions.json exactly, on a model of every family; probe_evaluate then
// scores it with the experiment. And the tuned lens (probe_train --tuned-lens).
#include <nlohmann/json.hpp>

#include "layerprobe/core/common.hpp"
#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/probe/probe_model.hpp"
#include "layerprobe/squad/encode_loop.hpp"
#include "test_support.hpp"

using namespace layerprobe;
namespace fs = std::filesystem;

namespace {

using test_support::run_logged;
using test_support::tool;

// The dev file's first article (208 questions), or its first `paragraphs` paragraphs.
fs::path lens_dev_subset(const fs::path& dir, size_t paragraphs = 0) {
  auto json = nlohmann::json::parse(read_file(test_support::shared_path(test_support::kDevFile)));
  json["data"].erase(json["data"].begin() + 1, json["data"].end());  // the first article
  auto& kept = json["data"][0]["paragraphs"];
  if (paragraphs > 0 && paragraphs < kept.size())
    kept.erase(kept.begin() + static_cast<std::ptrdiff_t>(paragraphs), kept.end());
  const fs::path path = dir / (paragraphs > 0 ? "dev-subset-" + std::to_string(paragraphs) + ".json" : "dev-subset.json");
  write_file_atomically(path, json.dump());
  return path;
}

}  // namespace

// Every family the project supports: the study's four at their published depth on the first dev article, the
// newer encoders and the decoders at 3 layers (their published depths are 12-24; the lens reads each layer
// alike) on its first 12 paragraphs (70 questions, 30 answerable), to keep the test fast.
TEST(HeadLens, LastLayerIsRunSquadsPredictionsOnEveryFamily) {
  struct Family {
    const char* like;
    const char* model_type;
    const char* vocab;   // a file or directory under the test data; "tokenizer.json": roberta_tokenizer_json_dir
    bool lower_case;     // init-model --lower-case (an uncased WordPiece vocabulary)
    bool do_lower_case;  // run_squad --do_lower_case: what the model's tokenizer does (ALBERT lower-cases by default)
    const char* sizes = "--hidden-size 32 --heads 2 --intermediate-size 64";
    size_t paragraphs = 0;  // of the first dev article (0: all)
  };
  const Family families[] = {
      {"albert-base-v2", "albert", test_support::kSpieceModel, false, true},
      {"bert-base-uncased", "bert", "data/bert/vocab.txt", true, true},
      {"distilbert-base-uncased", "distilbert", "data/bert/vocab.txt", true, true},
      {"distilroberta-base", "roberta", "data/roberta/vocab.json", false, false},
      {"google/electra-small-discriminator", "electra", "data/bert/vocab.txt", true, true,
       "--hidden-size 32 --heads 2 --intermediate-size 64 --embedding-size 16 --layers 3", 12},
      {"xlm-roberta-base", "xlm-roberta", "golden/xlm-roberta-tiny/sentencepiece.bpe.model", false, false,
       "--hidden-size 32 --heads 2 --intermediate-size 64 --layers 3", 12},
      // The whole article: on its first 12 paragraphs this random DeBERTa's layer 1 happens to answer as its last.
      {"microsoft/deberta-v3-base", "deberta-v2", "golden/deberta-v3-tiny/spm.model", false, false,
       "--hidden-size 32 --heads 2 --intermediate-size 64 --layers 3", 0},
      {"answerdotai/ModernBERT-base", "modernbert", "tokenizer.json", false, false,
       "--hidden-size 32 --heads 2 --intermediate-size 64 --layers 3", 12},
      {"gpt2", "gpt2", "golden/gpt2-tiny", false, false, "--hidden-size 32 --heads 2 --layers 3", 12},
      {"meta-llama/Llama-3.2-1B", "llama", "golden/llama-tiny", false, false,
       "--hidden-size 32 --heads 8 --intermediate-size 64 --layers 3", 12},
      // Qwen2 reads a tokenizer.json: the Llama golden's.
      {"Qwen/Qwen2.5-0.5B", "qwen2", "golden/llama-tiny", false, false,
       "--hidden-size 32 --heads 2 --intermediate-size 64 --layers 3", 12}};
  REQUIRE_SHARED(test_support::kDevFile);
  const auto dir = test_support::scratch_dir("head_lens");
  for (const auto& family : families) {
    SCOPED_TRACE(family.like);
    const std::string dev = lens_dev_subset(dir, family.paragraphs).string();
    const bool tokenizer_json = std::string(family.vocab) == "tokenizer.json";
    REQUIRE_SHARED(tokenizer_json ? "data/roberta-base-tokenizer-json/tokenizer.json" : family.vocab);
    const fs::path vocab = tokenizer_json ? test_support::roberta_tokenizer_json_dir(dir) : test_support::shared_path(family.vocab);
    const fs::path model = dir / "models" / family.like;
    // A random model of the family with a QA head: its answers are arbitrary spans and "".
    ASSERT_EQ(run_logged(tool("probe_tools") + " init-model --like " + family.like + " " + family.sizes +
                             " --seed 3 --vocab " + vocab.string() + (family.lower_case ? " --lower-case" : "") +
                             " --output " + model.string(),
                         dir / "init.log"),
              0)
        << read_file(dir / "init.log");
    const fs::path eval = dir / "run_squad" / family.like;
    const std::string windows = " --max_seq_length 192 --doc_stride 64";
    ASSERT_EQ(run_logged(tool("run_squad") + " --model_type " + family.model_type + " --model_name_or_path " +
                             model.string() + " --do_eval --version_2_with_negative --predict_file " + dev +
                             (family.do_lower_case ? " --do_lower_case" : "") + windows + " --output_dir " + eval.string(),
                         dir / "run_squad.log"),
              0)
        << read_file(dir / "run_squad.log");
    const fs::path root = dir / "experiments";
    ASSERT_EQ(run_logged(tool("probe_predict") + " lens " + model.string() + " cpu --experiments-root " + root.string() +
                             " --dev-file " + dev + " --max-seq-length 192 --doc-stride 64",
                         dir / "lens.log"),
              0)
        << read_file(dir / "lens.log");
    const fs::path exper = root / fs::path(family.like).filename();  // the lens's experiment: the model's name
    const fs::path preds = exper / "head_lens_preds";
    const auto meta = nlohmann::json::parse(read_file(preds / "preds_meta.json"));
    const int layers = meta.at("layers");
    const auto expected = nlohmann::json::parse(read_file(eval / "predictions.json"));
    const auto last = nlohmann::json::parse(read_file(preds / ("pred_layer_" + std::to_string(layers) + ".json")));
    EXPECT_EQ(last, expected);  // every question's answer, exactly
    size_t answered = 0;
    for (const auto& [id, answer] : expected.items()) answered += !answer.get<std::string>().empty();
    EXPECT_GT(answered, 0u) << "a test that compares only empty answers proves little";
    // Lower layers read the same head on other states: other answers.
    EXPECT_NE(nlohmann::json::parse(read_file(preds / "pred_layer_1.json")), expected);
    // probe_evaluate scores the lens with the experiment; its last layer's F1 is run_squad's.
    ASSERT_EQ(run_logged(tool("probe_evaluate") + " exper " + exper.string() + " --bootstrap 0",
                         dir / "evaluate.log"),
              0)
        << read_file(dir / "evaluate.log");
    const std::string results = read_file(exper / "head_lens_results.csv");
    const auto eval_results = nlohmann::json::parse(read_file(eval / "eval_results.json"));
    const std::string last_row = results.substr(results.find("\n" + std::to_string(layers) + ",") + 1);
    EXPECT_NEAR(std::stod(last_row.substr(last_row.find(',', last_row.find(',') + 1) + 1)),
                eval_results.at("f1").get<double>(), 1e-9)
        << results;
    EXPECT_NE(read_file(exper / "report.md").find("head lens"), std::string::npos);
  }
}

TEST(HeadLens, AModelWithoutAQaHeadIsRefused) {
  REQUIRE_SHARED("data/bert/vocab.txt");
  REQUIRE_SHARED(test_support::kDevFile);
  const auto dir = test_support::scratch_dir("head_lens_no_head");
  const fs::path model = dir / "bert";
  ASSERT_EQ(run_logged(tool("probe_tools") + " init-model --like bert-base-uncased --hidden-size 32 --heads 2 "
                           "--intermediate-size 64 --no-qa-head --vocab " +
                           test_support::shared_path("data/bert/vocab.txt").string() + " --output " + model.string(),
                       dir / "init.log"),
            0);
  EXPECT_EQ(run_logged(tool("probe_predict") + " lens " + model.string() + " cpu --experiments-root " + dir.string() +
                           " --dev-file " + lens_dev_subset(dir).string(),
                       dir / "lens.log"),
            1);
  EXPECT_NE(read_file(dir / "lens.log").find("has none"), std::string::npos) << read_file(dir / "lens.log");
  EXPECT_EQ(run_logged(tool("probe_predict") + " lens", dir / "usage.log"), 2);
}


TEST(TunedLens, StartsAsTheHeadLensAndLearnsTheLastLayersDistributions) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  auto loaded = load_checkpoint(test_support::shared_path("golden/albert-tiny"));
  auto& model = *loaded.model;
  model.eval();
  torch::manual_seed(5);
  EncoderBatch batch;
  batch.input_ids = torch::randint(5, 200, {4, 24});
  batch.token_type_ids = torch::zeros({4, 24}, torch::kInt64);
  batch.attention_mask = torch::ones({4, 24}, torch::kInt64);
  batch.attention_mask.slice(1, 18).slice(0, 2).zero_();  // two rows padded
  const auto hidden = probed_hidden_states(model, batch);  // [L,B,T,H]
  const int64_t L = hidden.size(0);
  ProbeOptions options;
  options.learning_rate = 1e-2;
  auto lens = make_probe_model(ProbeArch::parse("tuned_lens"), L, hidden.size(3), options, 1);
  EXPECT_THROW(lens->score(hidden), Error);  // no model attached yet
  lens->attach_model(&model);
  // A = 0, b = 0: exactly the head lens, and at the last layer the model's own logits.
  const auto scores = lens->score(hidden);
  for (int64_t l = 0; l < L; ++l) {
    torch::InferenceMode inference;
    auto [start, end] = model.head_logits_at(hidden[l], l + 1);
    EXPECT_TRUE(torch::equal(scores[l].select(-1, 0), start)) << l;
    EXPECT_TRUE(torch::equal(scores[l].select(-1, 1), end)) << l;
  }
  torch::Tensor own_start;
  {
    torch::InferenceMode inference;
    own_start = model.forward(batch).start_logits;
  }
  EXPECT_LE(test_support::max_diff(scores[L - 1].select(-1, 0), own_start), 1e-5);
  // Training lowers the KL to the last layer's distributions; the last layer's own is 0.
  const auto starts = torch::zeros({4}, torch::kInt64);
  const auto first = lens->train_step(hidden, batch.attention_mask, starts, starts, 1).loss;
  EXPECT_NEAR(first[L - 1].item<double>(), 0.0, 1e-6);
  EXPECT_GT(first[0].item<double>(), 1e-5);  // the golden model's head is nearly flat: small, not zero
  torch::Tensor last;
  for (int step = 0; step < 60; ++step) last = lens->train_step(hidden, batch.attention_mask, starts, starts, 1).loss;
  EXPECT_LT(last[0].item<double>(), 0.5 * first[0].item<double>()) << first << last;
  EXPECT_EQ(lens->arch().spec(), "tuned_lens");
  EXPECT_EQ(ProbeArch::parse("tuned_lens").parameters(64), 64 * 65);
  EXPECT_THROW(parse_probe_archs({"linear", "tuned_lens"}), Error);  // --tuned-lens, not --probe
}

TEST(TunedLens, TrainedPredictedAndReportedBesideTheProbes) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  REQUIRE_SHARED(test_support::kSpieceModel);
  const auto dir = test_support::scratch_dir("tuned_lens");
  const fs::path model = dir / "albert-tiny", data = dir / "data", exper = dir / "exper";
  fs::create_directories(model);
  for (const char* file : {"config.json", "model.safetensors"})
    fs::copy_file(test_support::shared_path(std::string("golden/albert-tiny/") + file), model / file);
  fs::copy_file(test_support::shared_path(test_support::kSpieceModel), model / "spiece.model");
  ASSERT_EQ(run_logged(tool("probe_tools") + " synth --output-dir " + data.string() + " --train-questions 80 --dev-questions 40",
                       dir / "synth.log"),
            0);
  const std::string train = tool("probe_train") + " both cpu 2 --pretrained-model " + model.string() +
                            " --fine-tuned-model " + model.string() + " --train-file " + (data / "train-v2.0.json").string() +
                            " --max-train-features 24 --learning-rate 1e-3 --tuned-lens --seeds 1,2 --output-dir " +
                            exper.string();
  ASSERT_EQ(run_logged(train, dir / "train.log"), 0) << read_file(dir / "train.log");
  // One tuned lens, for the model with a QA head: the fine-tuned kind only.
  EXPECT_TRUE(fs::exists(exper / "fine_tuned_epoch_2" / "fine_tuned_probes" / "tuned_lens" / "probes.safetensors"));
  EXPECT_FALSE(fs::exists(exper / "pretrained_epoch_2" / "pretrained_probes" / "tuned_lens"));
  ASSERT_EQ(run_logged(tool("probe_predict") + " exper " + exper.string() + " cpu --dev-file " +
                           (data / "dev-v2.0.json").string(),
                       dir / "predict.log"),
            0)
      << read_file(dir / "predict.log");
  ASSERT_EQ(run_logged(tool("probe_evaluate") + " exper " + exper.string() + " --bootstrap 50", dir / "evaluate.log"), 0)
      << read_file(dir / "evaluate.log");
  const std::string summary = read_file(exper / "summary.csv");
  EXPECT_NE(summary.find("fine_tuned,2,4,"), std::string::npos);
  EXPECT_NE(summary.find(",tuned_lens,"), std::string::npos) << summary;
  EXPECT_FALSE(fs::exists(exper / "complexity.svg"));  // the tuned lens is no complexity sweep
  EXPECT_NE(read_file(exper / "report.md").find("## tuned lens of fine_tuned, epoch 2"), std::string::npos);
}
