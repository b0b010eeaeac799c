// The bootstrap over questions: its draws, percentiles, ratio statistics and
// paired differences against a direct computation.
#include <cmath>
#include <random>

#include "layerprobe/probe/bootstrap.hpp"
#include "layerprobe/probe/layer_stats.hpp"
#include "test_support.hpp"

using namespace layerprobe;

namespace {

// The direct computation: resample r's statistic by plain loops over its draws.
std::vector<double> direct_replicates(const std::vector<double>& numerator, const std::vector<double>& denominator,
                                      const BootstrapOptions& options) {
  const auto n = static_cast<int64_t>(numerator.size());
  std::vector<double> out;
  for (int64_t r = 0; r < options.resamples; ++r) {
    double top = 0, bottom = 0;
    for (int64_t k = 0; k < n; ++k) {
      const auto q = static_cast<size_t>(bootstrap_draw(options.seed, r, k, n));
      top += numerator[q];
      bottom += denominator[q];
    }
    out.push_back(top / bottom);
  }
  return out;
}

std::vector<double> random_scores(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(0.0, 100.0);
  std::vector<double> v(n);
  for (auto& x : v) x = uniform(rng);
  return v;
}

}  // namespace

TEST(Bootstrap, PercentileIsNumpysLinearInterpolation) {
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 0.25), 1.75);
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 1.0), 4.0);
  EXPECT_DOUBLE_EQ(percentile({7}, 0.025), 7.0);
  EXPECT_DOUBLE_EQ(percentile({1, NAN, 3}, 0.5), 2.0);  // NaN left out
  EXPECT_TRUE(std::isnan(percentile({}, 0.5)));
}

TEST(Bootstrap, DrawsAreUniformOverQuestionsAndRepeatable) {
  std::vector<int> hits(10, 0);
  for (int64_t k = 0; k < 100000; ++k) ++hits[static_cast<size_t>(bootstrap_draw(7, 3, k, 10))];
  for (int h : hits) EXPECT_NEAR(h, 10000, 400);
  EXPECT_EQ(bootstrap_draw(7, 3, 5, 1000), bootstrap_draw(7, 3, 5, 1000));
  EXPECT_NE(bootstrap_draw(7, 3, 5, 1u << 30), bootstrap_draw(8, 3, 5, 1u << 30));
}

TEST(Bootstrap, IntervalsEqualADirectComputation) {
  const size_t n = 301;
  const auto a = random_scores(n, 1), b = random_scores(n, 2);
  std::vector<double> ones(n, 1.0), subset(n), a_subset(n);
  for (size_t q = 0; q < n; ++q) {
    subset[q] = q % 3 == 0 ? 1.0 : 0.0;
    a_subset[q] = a[q] * subset[q];
  }
  BootstrapOptions options;
  options.resamples = 150;  // more than one block of resamples
  options.seed = 42;
  const auto replicates = bootstrap_replicates({{a, 0}, {b, 0}, {a_subset, 1}}, {ones, subset},
                                               static_cast<int64_t>(n), options);
  ASSERT_EQ(replicates.size(), 3u);
  const auto direct_a = direct_replicates(a, ones, options), direct_b = direct_replicates(b, ones, options);
  const auto direct_subset = direct_replicates(a_subset, subset, options);
  for (int64_t r = 0; r < options.resamples; ++r) {
    EXPECT_NEAR(replicates[0][r], direct_a[r], 1e-9);
    EXPECT_NEAR(replicates[1][r], direct_b[r], 1e-9);
    EXPECT_NEAR(replicates[2][r], direct_subset[r], 1e-9);
  }
  const auto interval = percentile_interval(replicates[0], 0.95);
  const auto direct = percentile_interval(direct_a, 0.95);
  EXPECT_NEAR(interval.low, direct.low, 1e-9);
  EXPECT_NEAR(interval.high, direct.high, 1e-9);
  EXPECT_NEAR(interval.low, percentile(direct_a, 0.025), 1e-9);
  // Paired: the difference's interval comes from the same resamples of both.
  std::vector<double> difference(direct_a.size());
  for (size_t r = 0; r < difference.size(); ++r) difference[r] = direct_a[r] - direct_b[r];
  std::vector<double> engine_difference(difference.size());
  for (size_t r = 0; r < difference.size(); ++r) engine_difference[r] = replicates[0][r] - replicates[1][r];
  EXPECT_NEAR(percentile_interval(engine_difference, 0.95).high, percentile_interval(difference, 0.95).high, 1e-9);
}

TEST(Bootstrap, IntervalWidthMatchesTheNormalApproximation) {
  // 2000 Bernoulli(0.3) scores: the mean's 95% interval is about 2 x 1.96 x sqrt(0.21 / 2000) wide.
  const size_t n = 2000;
  std::vector<double> scores(n), ones(n, 1.0);
  std::mt19937_64 rng(3);
  std::bernoulli_distribution coin(0.3);
  for (auto& s : scores) s = coin(rng) ? 1.0 : 0.0;
  BootstrapOptions options;
  options.resamples = 1000;
  const auto interval = percentile_interval(bootstrap_replicates({{scores, 0}}, {ones}, n, options)[0], 0.95);
  const double expected = 2 * 1.96 * std::sqrt(0.21 / n);
  EXPECT_NEAR(interval.high - interval.low, expected, 0.15 * expected);
}

TEST(Bootstrap, NoResamplesMeansNoIntervals) {
  BootstrapOptions options;
  options.resamples = 0;
  const auto replicates = bootstrap_replicates({{{1.0, 2.0}, 0}}, {{1.0, 1.0}}, 2, options);
  ASSERT_EQ(replicates.size(), 1u);
  EXPECT_TRUE(replicates[0].empty());
}

TEST(Bootstrap, ReplicatesBeyondTheMemoryBoundAreRefusedBeforeDrawing) {
  // 3000 statistics x 100000 resamples would keep 2.4 GB of replicate values.
  const std::vector<RatioStatistic> statistics(3000, RatioStatistic{{1.0, 0.0, 1.0}, 0});
  BootstrapOptions options;
  options.resamples = kMostBootstrapResamples;
  try {
    bootstrap_replicates(statistics, {{1.0, 1.0, 1.0}}, 3, options);
    FAIL() << "expected the memory bound";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), 2);
    EXPECT_NE(std::string(e.what()).find("--bootstrap 100000 would keep 3000 statistics"), std::string::npos) << e.what();
  }
}

TEST(Bootstrap, MismatchedLengthsAreAnError) {
  BootstrapOptions options;
  EXPECT_THROW(bootstrap_replicates({{{1.0, 2.0, 3.0}, 0}}, {{1.0, 1.0}}, 2, options), Error);
  EXPECT_THROW(bootstrap_replicates({{{1.0, 2.0}, 1}}, {{1.0, 1.0}}, 2, options), Error);
}
