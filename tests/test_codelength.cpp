// The online codelength against a hand computation on a tiny case.
#include <cmath>

#include "layerprobe/probe/codelength.hpp"
#include "layerprobe/probe/probes.hpp"
#include "test_support.hpp"

using namespace layerprobe;

namespace {

// -log of softmax(logits)[target] over the first `length` positions.
double hand_cross_entropy(const std::vector<double>& logits, size_t length, size_t target) {
  double total = 0;
  for (size_t t = 0; t < length; ++t) total += std::exp(logits[t]);
  return std::log(total) - logits[target];
}

}  // namespace

TEST(Codelength, UntrainedZeroProbesCodeAsTheUniformCode) {
  ProbeOptions options;
  options.dropout = 0.0;
  LayerProbes probes(torch::zeros({2, 2, 3}), torch::zeros({2, 2}), options);
  auto hidden = torch::randn({2, 2, 4, 3});
  auto mask = torch::tensor({1, 1, 1, 1, 1, 1, 0, 0}, torch::kInt64).view({2, 4});
  auto result = probes.train_step(hidden, mask, torch::tensor({0, 1}), torch::tensor({3, 0}), 1);
  Codelength code;
  code.add_batch(result.loss, {4, 2});
  ASSERT_EQ(code.online_bits.size(), 2u);
  const double uniform = 2 * std::log2(4.0) + 2 * std::log2(2.0);
  EXPECT_NEAR(code.uniform_bits, uniform, 1e-12);
  EXPECT_NEAR(code.online_bits[0], uniform, 1e-5);
  EXPECT_NEAR(code.online_bits[1], uniform, 1e-5);
  EXPECT_NEAR(code.compression(0), 1.0, 1e-6);
  EXPECT_EQ(code.features, 2);
}

TEST(Codelength, EqualsTheHandComputedPreUpdateLossInBits) {
  ProbeOptions options;
  options.dropout = 0.0;
  // One layer, hidden width 1: start logit = 2h + 0.5, end logit = -h.
  LayerProbes probes(torch::tensor({2.0f, -1.0f}).view({1, 2, 1}), torch::tensor({0.5f, 0.0f}).view({1, 2}), options);
  const std::vector<std::vector<double>> h = {{0.1, -0.4, 0.7}, {1.2, 0.3, 9.0}};
  auto hidden = torch::tensor({0.1f, -0.4f, 0.7f, 1.2f, 0.3f, 9.0f}).view({1, 2, 3, 1});
  auto mask = torch::tensor({1, 1, 1, 1, 1, 0}, torch::kInt64).view({2, 3});
  const std::vector<size_t> starts = {2, 0}, ends = {1, 1}, lengths = {3, 2};
  auto result = probes.train_step(hidden, mask, torch::tensor({2, 0}), torch::tensor({1, 1}), 1);
  Codelength code;
  code.add_batch(result.loss, {3, 2});
  double nats = 0;
  for (size_t b = 0; b < 2; ++b) {
    std::vector<double> start_logits, end_logits;
    for (double x : h[b]) start_logits.push_back(2 * x + 0.5), end_logits.push_back(-x);
    nats += hand_cross_entropy(start_logits, lengths[b], starts[b]) + hand_cross_entropy(end_logits, lengths[b], ends[b]);
  }
  EXPECT_NEAR(code.online_bits[0], nats / std::log(2.0), 1e-5);
  EXPECT_NEAR(code.uniform_bits, 2 * std::log2(3.0) + 2 * std::log2(2.0), 1e-12);
  // A second batch adds to both codes.
  code.add_batch(result.loss, {3, 2});
  EXPECT_NEAR(code.online_bits[0], 2 * nats / std::log(2.0), 2e-5);
  EXPECT_EQ(code.features, 4);
}

TEST(Codelength, JsonRoundTripsAndBadJsonNamesTheSource) {
  Codelength code;
  code.online_bits = {10.5, 3.25};
  code.uniform_bits = 20.0;
  code.features = 3;
  auto back = Codelength::from_json(code.to_json(), "x");
  EXPECT_EQ(back.online_bits, code.online_bits);
  EXPECT_EQ(back.uniform_bits, 20.0);
  EXPECT_EQ(back.features, 3);
  try {
    Codelength::from_json(nlohmann::json{{"online_bits", "no"}}, "probes.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("probes.safetensors"), std::string::npos);
  }
}

TEST(Codelength, CsvHasOneRowPerSeedAndLayer) {
  Codelength code;
  code.online_bits = {100.0, 50.0};
  code.uniform_bits = 200.0;
  code.features = 7;
  EXPECT_EQ(codelength_csv({{std::nullopt, code}, {3, code}}),
            "seed,layer,features,online_bits,uniform_bits,compression\n"
            ",1,7,100.0,200.0,2.0\n,2,7,50.0,200.0,4.0\n3,1,7,100.0,200.0,2.0\n3,2,7,50.0,200.0,4.0\n");
}
