// Percentile bootstrap over questions: confidence intervals for per-layer
// scores and for paired differences between two probes scored on the same
// questions. Only per-question scores are resampled (answers are never
// normalised again), as ratio estimators: a statistic is
// sum_i c_i num_i / sum_i c_i den_i, where c_i counts question i in a resample
// (den = 1 for a mean over every question; den = the HasAns or NoAns
// indicator for a mean over that subset).
#pragma once

#include <cstdint>
#include <vector>

namespace layerprobe {

// The most --bootstrap resamples, and the most memory their replicate values may take.
constexpr int64_t kMostBootstrapResamples = 100000;
constexpr int64_t kBootstrapMemoryBytes = int64_t{2} << 30;

struct BootstrapOptions {
  int64_t resamples = 1000;  // 0 = no intervals
  uint64_t seed = 1;
  double confidence = 0.95;  // a central percentile interval
};

// Draw k (0 <= k < questions) of resample r: the index of the question drawn,
// floor(u * questions) with u = splitmix64(seed, r * questions + k) / 2^64.
// Resample r draws `questions` questions with replacement.
int64_t bootstrap_draw(uint64_t seed, int64_t resample, int64_t draw, int64_t questions);

// numpy.percentile's default ("linear"): q in [0, 1] of the values, sorted or
// not, NaNs left out (NaN when nothing is left).
double percentile(std::vector<double> values, double q);

struct Interval {
  double low = 0.0, high = 0.0;
};

// One statistic: its numerator per question, and which of the shared
// denominators (per question) it divides by.
struct RatioStatistic {
  std::vector<double> numerator;
  size_t denominator = 0;
};

// Each statistic's value under every resample: [statistic][resample]. All
// statistics see the same resamples, so differences between two of them are
// paired. Every vector holds one value per question. Runs in blocks of
// resamples as two matrix products.
std::vector<std::vector<double>> bootstrap_replicates(const std::vector<RatioStatistic>& statistics,
                                                      const std::vector<std::vector<double>>& denominators,
                                                      int64_t questions, const BootstrapOptions& options);

// The central `confidence` percentile interval of replicates.
Interval percentile_interval(const std::vector<double>& replicates, double confidence);

}  // namespace layerprobe
