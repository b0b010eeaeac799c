#include "layerprobe/probe/bootstrap.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// [rows, questions] counts of each question in resamples first .. first + rows - 1.
torch::Tensor resample_counts(int64_t first, int64_t rows, int64_t questions, uint64_t seed) {
  auto counts = torch::zeros({rows, questions}, torch::kDouble);
  auto* data = counts.data_ptr<double>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < questions; ++k) data[r * questions + bootstrap_draw(seed, first + r, k, questions)] += 1;
  return counts;
}

// [questions, columns]: one column per vector.
torch::Tensor question_matrix(const std::vector<const std::vector<double>*>& columns, int64_t questions) {
  auto matrix = torch::empty({questions, static_cast<int64_t>(columns.size())}, torch::kDouble);
  auto accessor = matrix.accessor<double, 2>();
  for (size_t c = 0; c < columns.size(); ++c) {
    if (static_cast<int64_t>(columns[c]->size()) != questions)
      throw Error("bootstrap: " + std::to_string(columns[c]->size()) + " question scores where " +
                  std::to_string(questions) + " questions are resampled");
    for (int64_t q = 0; q < questions; ++q) accessor[q][static_cast<int64_t>(c)] = (*columns[c])[static_cast<size_t>(q)];
  }
  return matrix;
}

}  // namespace

int64_t bootstrap_draw(uint64_t seed, int64_t resample, int64_t draw, int64_t questions) {
  const uint64_t counter = static_cast<uint64_t>(resample) * static_cast<uint64_t>(questions) +
                           static_cast<uint64_t>(draw);
  const uint64_t u = splitmix64(splitmix64(seed) ^ counter);
  return static_cast<int64_t>((static_cast<unsigned __int128>(u) * static_cast<uint64_t>(questions)) >> 64);
}

double percentile(std::vector<double> values, double q) {
  // A resample without a question of a subset has no value for that subset's statistic.
  values.erase(std::remove_if(values.begin(), values.end(), [](double v) { return std::isnan(v); }), values.end());
  if (values.empty()) return NAN;
  std::sort(values.begin(), values.end());
  const double position = q * static_cast<double>(values.size() - 1);
  const auto below = static_cast<size_t>(std::floor(position));
  const size_t above = std::min(below + 1, values.size() - 1);
  const double fraction = position - static_cast<double>(below);
  return values[below] + (values[above] - values[below]) * fraction;
}

std::vector<std::vector<double>> bootstrap_replicates(const std::vector<RatioStatistic>& statistics,
                                                      const std::vector<std::vector<double>>& denominators,
                                                      int64_t questions, const BootstrapOptions& options) {
  std::vector<std::vector<double>> replicates(statistics.size());
  if (statistics.empty() || options.resamples <= 0 || questions <= 0) return replicates;
  // Every statistic keeps every resample's value: bound that memory before drawing any.
  const double bytes = static_cast<double>(options.resamples) * static_cast<double>(statistics.size()) * sizeof(double);
  if (bytes > kBootstrapMemoryBytes)
    throw Error("--bootstrap " + std::to_string(options.resamples) + " would keep " + std::to_string(statistics.size()) +
                    " statistics x " + std::to_string(options.resamples) + " resamples (" +
                    std::to_string(static_cast<int64_t>(bytes / (1 << 20))) + " MiB), more than the " +
                    std::to_string(kBootstrapMemoryBytes >> 20) + " MiB allowed; use at most " +
                    std::to_string(static_cast<int64_t>(kBootstrapMemoryBytes / (statistics.size() * sizeof(double)))) +
                    " resamples",
                2);
  std::vector<const std::vector<double>*> numerator_columns, denominator_columns;
  std::vector<int64_t> which;
  for (const auto& statistic : statistics) {
    if (statistic.denominator >= denominators.size()) throw Error("bootstrap: a statistic names no denominator");
    numerator_columns.push_back(&statistic.numerator);
    which.push_back(static_cast<int64_t>(statistic.denominator));
  }
  for (const auto& d : denominators) denominator_columns.push_back(&d);
  const auto numerators = question_matrix(numerator_columns, questions);
  const auto shared = question_matrix(denominator_columns, questions);
  const auto pick = torch::tensor(which, torch::kInt64);
  constexpr int64_t kBlock = 64;
  for (int64_t first = 0; first < options.resamples; first += kBlock) {
    throw_if_stop_requested("Nothing was written; rerun the same command.");
    const int64_t rows = std::min(kBlock, options.resamples - first);
    const auto counts = resample_counts(first, rows, questions, options.seed);
    const auto totals = counts.mm(shared).index_select(1, pick);             // [rows, S]
    const auto values = (counts.mm(numerators) / totals).contiguous();       // [rows, S]
    const auto accessor = values.accessor<double, 2>();
    for (size_t s = 0; s < statistics.size(); ++s)
      for (int64_t r = 0; r < rows; ++r) replicates[s].push_back(accessor[r][static_cast<int64_t>(s)]);
  }
  return replicates;
}

Interval percentile_interval(const std::vector<double>& replicates, double confidence) {
  const double tail = (1.0 - confidence) / 2.0;
  return {percentile(replicates, tail), percentile(replicates, 1.0 - tail)};
}

}  // namespace layerprobe
