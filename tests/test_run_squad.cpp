// run_squad against transformers 2.5.1's run_squad evaluation of the golden
// albert-tiny model, and its command line.
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "layerprobe/core/precision.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/squad/metrics.hpp"
#include "layerprobe/squad/predictions_io.hpp"
#include "layerprobe/train/run_squad.hpp"
#include "layerprobe/model/model_dir.hpp"
#include "layerprobe/squad/evaluate.hpp"
#include "test_support.hpp"

using namespace layerprobe;
namespace fs = std::filesystem;

namespace {

// Runs the run_squad executable; returns its exit status, its stdout+stderr in `output`.
int run_cli(const std::string& args, const fs::path& scratch, std::string& output) {
  const fs::path exe = test_support::tool("run_squad");
  if (!fs::exists(exe)) {
    ADD_FAILURE() << exe << " is missing: build the run_squad target";
    return -1;
  }
  const fs::path log = scratch / "cli_output.txt";
  const int status = std::system((exe.string() + " " + args + " > " + log.string() + " 2>&1").c_str());
  output = read_file(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A golden tiny model and the vocabulary its goldens were made with.
struct GoldenRun {
  const char* model;       // golden/<model>/
  const char* model_type;  // --model_type
  std::vector<const char*> vocab;  // files under ../shared/data to copy in
  bool do_lower_case = true;       // as the golden run was made
  const char* extra_flags = "";    // further run_squad flags the golden run needs
};

// The golden models hold no tokenizer: pair each with its family's vocabulary.
fs::path tiny_model_dir(const fs::path& scratch, const GoldenRun& run) {
  const fs::path dir = scratch / run.model;
  fs::create_directories(dir);
  for (const char* name : {"config.json", "model.safetensors"})
    fs::copy_file(test_support::shared_path(std::string("golden/") + run.model) / name, dir / name);
  for (const char* file : run.vocab)
    fs::copy_file(test_support::shared_path(file), dir / fs::path(file).filename());
  return dir;
}

// Score of the best and second-best n-best entries of `id`.
std::pair<double, double> top_two_scores(const nlohmann::json& nbest, const std::string& id) {
  const auto& entries = nbest.at(id);
  auto score = [](const nlohmann::json& e) { return e.at("start_logit").get<double>() + e.at("end_logit").get<double>(); };
  return {score(entries.at(0)), entries.size() > 1 ? score(entries.at(1)) : -1e9};
}

}  // namespace

class RunSquadGolden : public ::testing::TestWithParam<GoldenRun> {};

// Against its family's reference: transformers 2.5.1 for the study's four, 4.57.5 for the newer ones.
TEST_P(RunSquadGolden, EvalMatchesItsReference) {
  const GoldenRun& run = GetParam();
  const std::string golden_dir = std::string("golden/") + run.model + "/run_squad_eval";
  REQUIRE_SHARED(golden_dir + "/predictions.json");
  REQUIRE_SHARED(test_support::kDevFile);
  for (const char* file : run.vocab) REQUIRE_SHARED(file);
  const fs::path scratch = test_support::scratch_dir(std::string("run_squad_eval_") + run.model);
  const fs::path model = tiny_model_dir(scratch, run), out = scratch / "out";
  const fs::path dev = test_support::shared_path(test_support::kDevFile);
  const fs::path golden = test_support::shared_path(golden_dir);
  // The original README's evaluation command, flags verbatim.
  std::string output;
  const int status = run_cli(std::string("--model_type ") + run.model_type + " --model_name_or_path " + model.string() +
                                 " --do_eval --overwrite_cache" + (run.do_lower_case ? " --do_lower_case" : "") +
                                 " " + run.extra_flags +
                                 " --version_2_with_negative"
                                 " --predict_file " + dev.string() +
                                 " --per_gpu_train_batch_size 8 --num_train_epochs 3 --learning_rate 3e-5"
                                 " --max_seq_length 384 --doc_stride 128 --per_gpu_eval_batch_size 32 --output_dir " +
                                 out.string(),
                             scratch, output);
  ASSERT_EQ(status, 0) << output;

  const PredictionMap ours = load_predictions_json(out / "predictions.json");
  const PredictionMap theirs = load_predictions_json(golden / "predictions.json");
  ASSERT_EQ(ours.size(), theirs.size());
  const auto nbest = nlohmann::json::parse(read_file(out / "nbest_predictions.json"));
  const NaProbMap our_odds = load_na_probs(out / "null_odds.json");
  const NaProbMap their_odds = load_na_probs(golden / "null_odds.json");
  size_t same = 0;
  for (const auto& [id, text] : theirs.items) {
    const std::string* mine = ours.find(id);
    ASSERT_NE(mine, nullptr) << id;
    if (*mine == text) {
      ++same;
      continue;
    }
    // A different answer is only acceptable where two candidates (or the
    // null answer and the best span) tie to float rounding.
    auto [best, second] = top_two_scores(nbest, id);
    EXPECT_TRUE(std::abs(best - second) < 1e-3 || std::abs(*our_odds.find(id)) < 1e-3)
        << id << ": '" << *mine << "' vs '" << text << "' is not a near-tie";
  }
  EXPECT_GE(static_cast<double>(same) / static_cast<double>(theirs.size()), 0.999)
      << same << " of " << theirs.size() << " identical";

  ASSERT_EQ(our_odds.size(), their_odds.size());
  double max_diff = 0.0;
  for (const auto& [id, value] : their_odds.items) max_diff = std::max(max_diff, std::abs(*our_odds.find(id) - value));
  EXPECT_LE(max_diff, 1e-4);
  std::cout << run.model << ": " << same << " of " << theirs.size() << " predictions identical, null odds max |diff| "
            << max_diff << "\n";

  // The official script on our files (with the null odds, as official_eval.json was made).
  // Where every prediction is identical the metrics must be too (to float rounding); otherwise near.
  const double metric_tolerance = same == theirs.size() ? 1e-9 : 0.05;
  const GoldDataset gold = load_gold_dataset(dev);
  EvalOptions eval_options;
  eval_options.na_probs = &our_odds;
  const auto official = evaluate_squad(gold, ours, eval_options).to_json();
  const auto expected = nlohmann::json::parse(read_file(golden / "official_eval.json"));
  for (const auto& [key, value] : expected.items()) {
    // A best threshold is one of the null odds, which agree within 1e-4 (above).
    const bool threshold = key.size() > 7 && key.compare(key.size() - 7, 7, "_thresh") == 0;
    EXPECT_NEAR(official.at(key).get<double>(), value.get<double>(), threshold ? 1e-4 : metric_tolerance) << key;
  }

  // Results as 2.5.1 prints them: squad_evaluate with no-answer probabilities 0.
  const auto results = nlohmann::json::parse(read_file(out / "eval_results.json"));
  for (const char* key : {"exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"})
    EXPECT_NEAR(results.at(key).get<double>(), expected.at(key).get<double>(), metric_tolerance) << key;
  EXPECT_EQ(results.at("total"), 6078);
  EXPECT_TRUE(results.contains("best_f1_thresh"));
  EXPECT_NE(output.find("Results: {'exact': "), std::string::npos) << output;
  // HF's own squad_evaluate on its predictions, where the golden has it.
  if (fs::exists(golden / "hf_squad_evaluate.json")) {
    const auto hf = nlohmann::json::parse(read_file(golden / "hf_squad_evaluate.json"));
    for (const char* key : {"exact", "f1", "HasAns_exact", "NoAns_exact"})
      EXPECT_NEAR(results.at(key).get<double>(), hf.at(key).get<double>(), metric_tolerance) << key;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Families, RunSquadGolden,
    ::testing::Values(GoldenRun{"albert-tiny", "albert", {test_support::kSpieceModel}},
                      GoldenRun{"bert-tiny", "bert", {"data/bert/vocab.txt"}},
                      GoldenRun{"distilbert-tiny", "distilbert", {"data/bert/vocab.txt"}},
                      GoldenRun{"roberta-tiny", "roberta", {"data/roberta/vocab.json", "data/roberta/merges.txt"}, false},
                      // transformers 4.57.5 (ElectraTokenizer features equal BERT's).
                      GoldenRun{"electra-tiny", "electra", {"data/bert/vocab.txt"}},
                      // HF's legacy squad.py offsets for XLMRobertaTokenizer (../shared/README.md).
                      GoldenRun{"xlm-roberta-tiny",
                                "xlm-roberta",
                                {"golden/xlm-roberta-tiny/sentencepiece.bpe.model",
                                 "golden/xlm-roberta-tiny/tokenizer_config.json",
                                 "golden/xlm-roberta-tiny/special_tokens_map.json"},
                                true,
                                "--hf_legacy_offsets"},
                      // Its tokenizer_config.json says do_lower_case false: the text keeps its case while
                      // get_final_text lower-cases (--do_lower_case), as the 4.57.5 golden was made.
                      GoldenRun{"deberta-v3-tiny",
                                "deberta-v2",
                                {"golden/deberta-v3-tiny/spm.model", "golden/deberta-v3-tiny/tokenizer_config.json",
                                 "golden/deberta-v3-tiny/special_tokens_map.json"}}),
    [](const ::testing::TestParamInfo<GoldenRun>& info) {
      std::string name = info.param.model_type;
      for (char& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      return name;
    });

TEST(RunSquad, ModelTypeMustMatchTheModel) {
  REQUIRE_SHARED("golden/bert-tiny/config.json");
  const fs::path scratch = test_support::scratch_dir("run_squad_model_type");
  const fs::path model = tiny_model_dir(scratch, GoldenRun{"bert-tiny", "bert", {"data/bert/vocab.txt"}});
  std::string output;
  EXPECT_EQ(run_cli("--model_type distilbert --model_name_or_path " + model.string() + " --do_eval "
                    "--version_2_with_negative --predict_file " +
                        test_support::shared_path(test_support::kDevFile).string() + " --output_dir " +
                        (scratch / "out").string(),
                    scratch, output),
            2);
  EXPECT_NE(output.find("is a bert model; pass --model_type bert"), std::string::npos) << output;
  EXPECT_EQ(run_cli("--model_type xlnet --model_name_or_path " + model.string() +
                        " --do_eval --version_2_with_negative --output_dir " + (scratch / "out").string(),
                    scratch, output),
            2);
  EXPECT_NE(output.find("--model_type: unknown model_type 'xlnet' (supported: albert, bert, distilbert, roberta, electra, "
                        "xlm-roberta, modernbert, gpt2, llama, mistral, qwen2, deberta-v2)"),
            std::string::npos)
      << output;
}

TEST(RunSquad, EvaluationPrecisionIsCheckedBeforeAnyWork) {
  const fs::path scratch = test_support::scratch_dir("run_squad_precision");
  std::string output;
  // fp16 needs CUDA, and the check comes before the model is read.
  EXPECT_EQ(run_cli("--model_name_or_path missing --output_dir y --do_eval --version_2_with_negative --no_cuda "
                    "--precision fp16",
                    scratch, output),
            2);
  EXPECT_NE(output.find("fp16"), std::string::npos) << output;
  EXPECT_EQ(run_cli("--model_name_or_path x --output_dir y --do_eval --version_2_with_negative --precision int4",
                    scratch, output),
            2);
  // int8: a CPU with VNNI or AMX-INT8, and a family with int8 layers, both checked before the model is read.
  EXPECT_EQ(run_cli("--model_type deberta-v2 --model_name_or_path missing --output_dir y --do_eval "
                    "--version_2_with_negative --no_cuda --precision int8",
                    scratch, output),
            2);
  EXPECT_NE(output.find(cpu_has_int8_dot() ? "does not cover the deberta-v2 family" : "AVX512_VNNI or AMX-INT8"),
            std::string::npos)
      << output;
  // Training precision: one of --fp16 and --bf16; --bf16 needs CUDA or a CPU with native bf16.
  EXPECT_EQ(run_cli("--model_name_or_path missing --output_dir y --do_train --version_2_with_negative --fp16 --bf16",
                    scratch, output),
            2);
  EXPECT_NE(output.find("--fp16 and --bf16 exclude each other"), std::string::npos) << output;
  if (!cpu_has_native_bf16()) {
    EXPECT_EQ(run_cli("--model_name_or_path missing --output_dir y --do_train --version_2_with_negative --no_cuda "
                      "--bf16",
                      scratch, output),
              2);
    EXPECT_NE(output.find("native bf16"), std::string::npos) << output;
  }
}

TEST(RunSquad, UnknownFlagListsTheValidOnes) {
  const fs::path scratch = test_support::scratch_dir("run_squad_unknown_flag");
  std::string output;
  EXPECT_EQ(run_cli("--model_name_or_path x --output_dir y --do_eval --version_2_with_negative --bogus_flag 3",
                    scratch, output),
            2);
  EXPECT_NE(output.find("--bogus_flag"), std::string::npos) << output;
  EXPECT_NE(output.find("valid options"), std::string::npos) << output;
  EXPECT_NE(output.find("--per_gpu_train_batch_size"), std::string::npos) << output;
  EXPECT_NE(output.find("--null_score_diff_threshold"), std::string::npos) << output;
}

TEST(RunSquad, MissingHubModelNamesTheDownloadScript) {
  const fs::path scratch = test_support::scratch_dir("run_squad_missing_model");
  ::setenv("LAYERPROBE_MODELS_DIR", scratch.c_str(), 1);
  try {
    resolve_model_dir("twmkn9/albert-base-v2-squad2", "--model_name_or_path");
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tools/download_models.sh twmkn9/albert-base-v2-squad2"), std::string::npos)
        << e.what();
  }
  fs::create_directories(scratch / "albert-base-v2");
  EXPECT_EQ(resolve_model_dir("albert-base-v2", "--model_name_or_path"), scratch / "albert-base-v2");
  ::unsetenv("LAYERPROBE_MODELS_DIR");
}

TEST(RunSquad, RequiresSquad2AndAKnownModelType) {
  RunSquadOptions options;
  options.model_name_or_path = "unused";
  options.output_dir = test_support::scratch_dir("run_squad_usage");
  options.do_eval = true;
  EXPECT_THROW(run_squad(options), Error);  // no --version_2_with_negative
  options.version_2_with_negative = true;
  options.model_type = "xlnet";
  EXPECT_THROW(run_squad(options), Error);
}

TEST(RunSquad, ResultsPrintAsAPythonDict) {
  nlohmann::ordered_json results = {{"exact", 85.32411977624218}, {"total", 6078}, {"best_exact_thresh", 0.0}};
  EXPECT_EQ(python_dict_repr(results), "{'exact': 85.32411977624218, 'total': 6078, 'best_exact_thresh': 0.0}");
}

// Which casing run_squad tokenizes with, per family and per what tokenizer_config.json states:
// 2.5.1's do_lower_case kwarg overrides a stated casing (bert-base-uncased run without
// --do_lower_case tokenizes cased there); 4.57.5 keeps a stated one.
TEST(RunSquad, DoLowerCaseFlagAgainstAStatedCasingPerFamily) {
  const fs::path scratch = test_support::scratch_dir("run_squad_casing");
  const auto tokenizer_dir = [&](const std::string& name, const std::string& config) {
    const fs::path dir = scratch / name;
    fs::create_directories(dir);
    if (!config.empty()) write_file_atomically(dir / "tokenizer_config.json", config);
    return dir;
  };
  const fs::path says_lower = tokenizer_dir("says_lower", R"({"do_lower_case": true})");
  const fs::path says_cased = tokenizer_dir("says_cased", R"({"do_lower_case": false})");
  const fs::path says_nothing = tokenizer_dir("says_nothing", "");
  for (const std::string family : {"albert", "bert", "distilbert", "roberta"}) {
    SCOPED_TRACE(family);
    EXPECT_EQ(run_squad_tokenizer_request(family, says_lower, false).do_lower_case, std::optional<bool>(false));
    EXPECT_EQ(run_squad_tokenizer_request(family, says_cased, true).do_lower_case, std::optional<bool>(true));
    EXPECT_EQ(run_squad_tokenizer_request(family, says_nothing, false).do_lower_case, std::optional<bool>(false));
  }
  for (const std::string family : {"electra", "xlm-roberta", "deberta-v2", "modernbert", "llama"}) {
    SCOPED_TRACE(family);
    EXPECT_EQ(run_squad_tokenizer_request(family, says_lower, false).do_lower_case, std::nullopt);
    EXPECT_EQ(run_squad_tokenizer_request(family, says_cased, true).do_lower_case, std::nullopt);
    EXPECT_EQ(run_squad_tokenizer_request(family, says_nothing, true).do_lower_case, std::optional<bool>(true));
    EXPECT_EQ(run_squad_tokenizer_request(family, says_nothing, false).do_lower_case, std::optional<bool>(false));
  }
  EXPECT_EQ(run_squad_tokenizer_request("bert", says_lower, false).kind, "wordpiece");
}
