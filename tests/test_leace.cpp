// LEACE concept erasure (probe/leace.hpp) on a case with a known answer, and
// amnesic probing (probe_tools amnesic) end to end on a tiny fine-tuned model.
#include <nlohmann/json.hpp>

#include <cmath>

#include "layerprobe/core/common.hpp"
#include "layerprobe/probe/leace.hpp"
#include "layerprobe/probe/study_report.hpp"
#include "test_support.hpp"

using namespace layerprobe;
namespace fs = std::filesystem;

namespace {

// Held-out accuracy of a logistic regression for `y` trained on (train_x, train_y) by full-batch Adam.
double linear_probe_accuracy(const torch::Tensor& train_x, const torch::Tensor& train_y, const torch::Tensor& test_x,
                             const torch::Tensor& test_y) {
  const auto mean = train_x.mean(0), scale = train_x.std(0).clamp_min(1e-6);
  const auto x = (train_x - mean) / scale, held_out = (test_x - mean) / scale;
  auto w = torch::zeros({x.size(1)}, torch::requires_grad());
  auto b = torch::zeros({1}, torch::requires_grad());
  torch::optim::Adam optimizer({w, b}, torch::optim::AdamOptions(0.05));
  for (int step = 0; step < 400; ++step) {
    optimizer.zero_grad();
    auto loss = torch::binary_cross_entropy_with_logits(torch::mv(x, w) + b, train_y);
    loss.backward();
    optimizer.step();
  }
  torch::NoGradGuard no_grad;
  const auto predicted = (torch::mv(held_out, w) + b).gt(0).to(torch::kFloat);
  return predicted.eq(test_y).to(torch::kDouble).mean().item<double>();
}

double majority(const torch::Tensor& y) {
  const double p = y.to(torch::kDouble).mean().item<double>();
  return std::max(p, 1 - p);
}

}  // namespace

TEST(Leace, ErasedIndicatorsAreAtChanceAndOtherDirectionsUntouched) {
  torch::manual_seed(0);
  const int64_t d = 16, n = 20000, half = n / 2;
  // Correlated Gaussian noise, a mean shift, and three binary concepts along random directions:
  // the answer-start and answer-end indicators (erased) and another one (kept).
  const auto noise = torch::mm(torch::randn({n, d}), torch::randn({d, d}) / std::sqrt(static_cast<double>(d))) + 3.0;
  const auto start = torch::bernoulli(torch::full({n}, 0.3)), end = torch::bernoulli(torch::full({n}, 0.2)),
             other = torch::bernoulli(torch::full({n}, 0.5));
  auto directions = torch::randn({3, d});
  directions = directions / directions.norm(2, 1, true);
  const auto x = noise + 1.5 * torch::outer(start, directions[0]) + 1.5 * torch::outer(end, directions[1]) +
                 1.5 * torch::outer(other, directions[2]);
  const auto z = torch::stack({start, end}, 1);
  ConceptStatistics statistics(d, 2);
  for (int64_t at = 0; at < half; at += 1000) statistics.add(x.slice(0, at, at + 1000), z.slice(0, at, at + 1000));
  ASSERT_EQ(statistics.count(), half);
  const auto eraser = fit_leace(statistics);
  EXPECT_EQ(eraser.rank(), 2);
  const auto erased = eraser.apply(x);
  // The guarantee: no cross-covariance left between the erased data and the concept it was fitted on.
  const auto fitted = erased.slice(0, 0, half).to(torch::kDouble), concept = z.slice(0, 0, half).to(torch::kDouble);
  const auto covariance = torch::mm((fitted - fitted.mean(0)).t(), concept - concept.mean(0)) / static_cast<double>(half);
  const auto before = torch::mm((x.slice(0, 0, half).to(torch::kDouble) - x.slice(0, 0, half).to(torch::kDouble).mean(0)).t(),
                                concept - concept.mean(0)) / static_cast<double>(half);
  EXPECT_LT(covariance.abs().max().item<double>(), 1e-5 * before.abs().max().item<double>() + 1e-6);
  // A freshly trained linear probe for an erased indicator is at chance on held-out tokens ...
  for (int c = 0; c < 2; ++c) {
    const auto y = z.select(1, c);
    const double intact = linear_probe_accuracy(x.slice(0, 0, half), y.slice(0, 0, half), x.slice(0, half), y.slice(0, half));
    const double after = linear_probe_accuracy(erased.slice(0, 0, half), y.slice(0, 0, half), erased.slice(0, half),
                                               y.slice(0, half));
    const double chance = majority(y.slice(0, half));
    EXPECT_GT(intact, chance + 0.05) << "indicator " << c << " was not decodable to begin with";
    EXPECT_LE(after, chance + 0.01) << "indicator " << c;
  }
  // ... while another concept stays as decodable as it was ...
  const double other_before = linear_probe_accuracy(x.slice(0, 0, half), other.slice(0, 0, half), x.slice(0, half), other.slice(0, half));
  const double other_after = linear_probe_accuracy(erased.slice(0, 0, half), other.slice(0, 0, half), erased.slice(0, half),
                                                   other.slice(0, half));
  EXPECT_GT(other_before, 0.7);
  EXPECT_GT(other_after, other_before - 0.02);
  // ... and every direction orthogonal to the eraser's span is untouched, exactly.
  const auto q = std::get<0>(torch::linalg::qr(eraser.a.to(torch::kDouble), "complete"));
  const auto complement = q.slice(1, eraser.rank());  // [d, d - rank]
  const auto moved = (erased - x).to(torch::kDouble);
  EXPECT_LT(torch::mm(moved, complement).abs().max().item<double>(), 1e-4);
  // The control erases as many dimensions at random: the indicators stay decodable.
  const auto random = fit_random_eraser(statistics, eraser.rank(), 7);
  EXPECT_EQ(random.rank(), 2);
  const auto randomly_erased = random.apply(x);
  const auto y = z.select(1, 0);
  EXPECT_GT(linear_probe_accuracy(randomly_erased.slice(0, 0, half), y.slice(0, 0, half), randomly_erased.slice(0, half),
                                  y.slice(0, half)),
            majority(y.slice(0, half)) + 0.05);
}

TEST(Leace, AConceptOfOneDirectionGivesARankOneEraser) {
  torch::manual_seed(1);
  const int64_t d = 8, n = 4000;
  const auto flag = torch::bernoulli(torch::full({n}, 0.4));
  const auto x = torch::randn({n, d}) + torch::outer(flag, torch::ones({d}));
  ConceptStatistics statistics(d, 2);
  statistics.add(x, torch::stack({flag, flag}, 1));  // two identical indicators: one direction
  EXPECT_EQ(fit_leace(statistics).rank(), 1);
  EXPECT_THROW(statistics.add(torch::zeros({3, d + 1}), torch::zeros({3, 2})), Error);
  EXPECT_THROW(fit_leace(ConceptStatistics(d, 2)), Error);  // no samples
}

namespace {

// Amnesic probing end to end on the fine-tuned model `model` (of run_squad's --model_type `model_type`) with
// `layers` layers: probe_train, probe_predict, probe_tools amnesic; the intact model is run_squad --do_eval.
void check_amnesic_end_to_end(const fs::path& dir, const fs::path& model, const std::string& model_type,
                              bool do_lower_case, size_t layers) {
  const fs::path data = dir / "data", exper = dir / "exper";
  auto run = [&](const std::string& command, const std::string& log) {
    const int status = test_support::run_logged(command, dir / log);
    EXPECT_EQ(status, 0) << command << "\n" << read_file(dir / log);
    return status == 0;
  };
  if (!run(test_support::tool("probe_tools") + " synth --output-dir " + data.string() + " --train-questions 120 --dev-questions 60",
      "synth.log"))
    return;
  const std::string windows = " --max-seq-length 128 --doc-stride 64";
  if (!run(test_support::tool("probe_train") + " fine_tuned cpu 1 --fine-tuned-model " + model.string() + " --train-file " +
          (data / "train-v2.0.json").string() + " --max-train-features 30 --output-dir " + exper.string() + windows,
      "train.log"))
    return;
  if (!run(test_support::tool("probe_predict") + " exper " + exper.string() + " cpu --dev-file " + (data / "dev-v2.0.json").string(),
      "predict.log"))
    return;
  if (!run(test_support::tool("probe_tools") + " amnesic --experiment " + exper.string() + " --train-features 30",
           "amnesic.log"))
    return;
  // The columns first, in its order.
  EXPECT_EQ(read_file(exper / "amnesic.csv").rfind("layer,f1_intact,f1_erased,f1_random_erased,", 0), 0u);
  const auto rows = read_amnesic_csv(exper / "amnesic.csv");
  ASSERT_EQ(rows.size(), layers);
  // The model intact is run_squad --do_eval on the same dev file and windows.
  if (!run(test_support::tool("run_squad") + " --model_type " + model_type + " --model_name_or_path " + model.string() +
          " --do_eval" + (do_lower_case ? " --do_lower_case" : "") + " --version_2_with_negative --predict_file " +
          (data / "dev-v2.0.json").string() + " --max_seq_length 128 --doc_stride 64 --output_dir " + (dir / "eval").string(),
      "run_squad.log"))
    return;
  const double f1 = nlohmann::json::parse(read_file(dir / "eval" / "eval_results.json")).at("f1").get<double>();
  bool erasure_changed_something = false;
  for (const auto& row : rows) {
    EXPECT_NEAR(row.f1[0], f1, 1e-9) << row.layer;
    EXPECT_GE(row.rank, 1);
    EXPECT_LE(row.rank, 2);
    for (int c = 0; c < 3; ++c) EXPECT_FALSE(std::isnan(row.f1[c]));
    erasure_changed_something |= row.f1[1] != row.f1[0] || row.f1[2] != row.f1[0];
  }
  // The edited state reaches the head: a pass that ignored it would score the intact F1 everywhere.
  EXPECT_TRUE(erasure_changed_something) << read_file(exper / "amnesic.csv");
  EXPECT_NE(read_file(exper / "amnesic.md").find("| layer | rank | F1 intact"), std::string::npos);
  EXPECT_NE(read_file(exper / "amnesic.svg").find("LEACE"), std::string::npos);
  // probe_evaluate's report includes it.
  if (!run(test_support::tool("probe_evaluate") + " exper " + exper.string() + " --bootstrap 0", "evaluate.log")) return;
  EXPECT_NE(read_file(exper / "report.md").find("## Amnesic probing (LEACE)"), std::string::npos);
  // Layers outside the model are a usage error.
  EXPECT_EQ(test_support::run_logged(test_support::tool("probe_tools") + " amnesic --experiment " + exper.string() +
                                         " --layers " + std::to_string(layers + 1),
                                     dir / "bad.log"),
            2);
}

}  // namespace

TEST(Leace, AmnesicProbingEndToEnd) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  REQUIRE_SHARED(test_support::kSpieceModel);
  const auto dir = test_support::scratch_dir("amnesic");
  const fs::path model = dir / "albert-tiny";
  fs::create_directories(model);
  for (const char* file : {"config.json", "model.safetensors"})
    fs::copy_file(test_support::shared_path(std::string("golden/albert-tiny/") + file), model / file);
  fs::copy_file(test_support::shared_path(test_support::kSpieceModel), model / "spiece.model");
  check_amnesic_end_to_end(dir, model, "albert", true, 4);
}

// "Continue from layer l" on the newer families: an encoder with relative positions (DeBERTa-v3: the erased
// state goes on through disentangled attention), ModernBERT (a final norm before the head) and decoders (a causal
// mask; the no-answer position is the last token), each a random model with a QA head made by init-model.
TEST(Leace, AmnesicProbingOnNewerEncodersAndDecoders) {
  struct Family {
    const char* like;
    const char* model_type;
    const char* vocab;  // a file or directory under the test data; "tokenizer.json": roberta_tokenizer_json_dir
    const char* sizes;
  };
  const Family families[] = {
      {"microsoft/deberta-v3-base", "deberta-v2", "golden/deberta-v3-tiny/spm.model",
       "--hidden-size 32 --heads 2 --intermediate-size 64 --layers 3"},
      {"answerdotai/ModernBERT-base", "modernbert", "tokenizer.json",
       "--hidden-size 32 --heads 2 --intermediate-size 64 --layers 3"},
      {"gpt2", "gpt2", "golden/gpt2-tiny", "--hidden-size 32 --heads 2 --layers 3"},
      {"meta-llama/Llama-3.2-1B", "llama", "golden/llama-tiny",
       "--hidden-size 32 --heads 8 --intermediate-size 64 --layers 3"}};
  for (const auto& family : families) {
    SCOPED_TRACE(family.like);
    const bool tokenizer_json = std::string(family.vocab) == "tokenizer.json";
    REQUIRE_SHARED(tokenizer_json ? "data/roberta-base-tokenizer-json/tokenizer.json" : family.vocab);
    const auto dir = test_support::scratch_dir("amnesic_" + fs::path(family.like).filename().string());
    const fs::path vocab = tokenizer_json ? test_support::roberta_tokenizer_json_dir(dir)
                                          : test_support::shared_path(family.vocab);
    const fs::path model = dir / "model";
    ASSERT_EQ(test_support::run_logged(test_support::tool("probe_tools") + " init-model --like " + family.like + " " +
                                           family.sizes + " --seed 5 --vocab " + vocab.string() +
                                           " --output " + model.string(),
                                       dir / "init.log"),
              0)
        << read_file(dir / "init.log");
    check_amnesic_end_to_end(dir, model, family.model_type, false, 3);
  }
}
