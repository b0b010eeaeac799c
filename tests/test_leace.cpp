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

TEST(Leace, AmnesicProbingEndToEnd) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  REQUIRE_SHARED(test_support::kSpieceModel);
  const auto dir = test_support::scratch_dir("amnesic");
  const fs::path model = dir / "albert-tiny", data = dir / "data", exper = dir / "exper";
  fs::create_directories(model);
  for (const char* file : {"config.json", "model.safetensors"})
    fs::copy_file(test_support::shared_path(std::string("golden/albert-tiny/") + file), model / file);
  fs::copy_file(test_support::shared_path(test_support::kSpieceModel), model / "spiece.model");
  auto run = [&](const std::string& command, const std::string& log) {
    EXPECT_EQ(test_support::run_logged(command, dir / log), 0) << command << "\n" << read_file(dir / log);
  };
  run(test_support::tool("probe_tools") + " synth --output-dir " + data.string() + " --train-questions 120 --dev-questions 60",
      "synth.log");
  const std::string windows = " --max-seq-length 128 --doc-stride 64";
  run(test_support::tool("probe_train") + " fine_tuned cpu 1 --fine-tuned-model " + model.string() + " --train-file " +
          (data / "train-v2.0.json").string() + " --max-train-features 30 --output-dir " + exper.string() + windows,
      "train.log");
  run(test_support::tool("probe_predict") + " exper " + exper.string() + " cpu --dev-file " + (data / "dev-v2.0.json").string(),
      "predict.log");
  run(test_support::tool("probe_tools") + " amnesic --experiment " + exper.string() + " --train-features 30", "amnesic.log");
  // The columns first, in its order.
  EXPECT_EQ(read_file(exper / "amnesic.csv").rfind("layer,f1_intact,f1_erased,f1_random_erased,", 0), 0u);
  const auto rows = read_amnesic_csv(exper / "amnesic.csv");
  ASSERT_EQ(rows.size(), 4u);
  // The model intact is run_squad --do_eval on the same dev file and windows.
  run(test_support::tool("run_squad") + " --model_type albert --model_name_or_path " + model.string() +
          " --do_eval --do_lower_case --version_2_with_negative --predict_file " + (data / "dev-v2.0.json").string() +
          " --max_seq_length 128 --doc_stride 64 --output_dir " + (dir / "eval").string(),
      "run_squad.log");
  const double f1 = nlohmann::json::parse(read_file(dir / "eval" / "eval_results.json")).at("f1").get<double>();
  for (const auto& row : rows) {
    EXPECT_NEAR(row.f1[0], f1, 1e-9) << row.layer;
    EXPECT_GE(row.rank, 1);
    EXPECT_LE(row.rank, 2);
    for (int c = 0; c < 3; ++c) EXPECT_FALSE(std::isnan(row.f1[c]));
  }
  EXPECT_NE(read_file(exper / "amnesic.md").find("| layer | rank | F1 intact"), std::string::npos);
  EXPECT_NE(read_file(exper / "amnesic.svg").find("LEACE"), std::string::npos);
  // probe_evaluate's report includes it.
  run(test_support::tool("probe_evaluate") + " exper " + exper.string() + " --bootstrap 0", "evaluate.log");
  EXPECT_NE(read_file(exper / "report.md").find("## Amnesic probing (LEACE)"), std::string::npos);
  // Layers outside the model are a usage error.
  EXPECT_EQ(test_support::run_logged(test_support::tool("probe_tools") + " amnesic --experiment " + exper.string() +
                                         " --layers 5",
                                     dir / "bad.log"),
            2);
}
