// Per-layer statistics of an experiment's evaluated probes: the mean and
// standard deviation over probe seeds, bootstrap confidence intervals over
// questions, and paired differences to the pretrained model and the control
// (Hewitt & Liang's selectivity-style gap), for each kind and epoch.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "layerprobe/probe/bootstrap.hpp"
#include "layerprobe/probe/report.hpp"

namespace layerprobe {

// The metrics a layer is reported with, in percent: results.csv's six columns.
enum class LayerMetric { exact, f1, exact_no_ans, f1_no_ans, exact_has_ans, f1_has_ans };
constexpr size_t kLayerMetrics = 6;
// results.csv's column name of a metric ("exact", ..., "f1_has_ans").
const char* metric_name(LayerMetric metric);
// Its value in an evaluation; NaN when the dev file has no question of its subset.
double metric_value(const SquadEvaluation& eval, LayerMetric metric);

// The references a kind is compared with, per layer and epoch.
const std::vector<std::string>& reference_kinds();  // "pretrained", "control"
// The metrics paired differences are given for.
const std::vector<LayerMetric>& difference_metrics();  // exact, f1

struct Estimate {
  double value = NAN;
  std::optional<Interval> ci;  // with --bootstrap
};

struct LayerStats {
  int layer = 0;
  // Over seeds: the mean and the sample standard deviation (n - 1; NaN for one seed).
  std::array<double, kLayerMetrics> mean{}, std{};
  // Bootstrap intervals of the seed-averaged per-question scores.
  std::array<std::optional<Interval>, kLayerMetrics> ci{};
  // [reference kind][metric]: this kind minus the reference at the same layer
  // and epoch (paired over questions); absent for the reference itself, or
  // when the experiment has no such kind.
  std::map<std::string, std::map<LayerMetric, Estimate>> minus;
};

struct KindStats {
  std::string kind;
  int epoch = 0;
  std::vector<std::optional<uint64_t>> seeds;  // one entry (none) for probes trained without --seeds
  std::vector<LayerStats> layers;
  // Share of unanswerable questions in %: the overall F1 (and EM) of always answering "".
  double always_empty_f1 = NAN;
};

// Groups the runs by kind and epoch (every seed of a group must have the
// same layers and be scored on the same questions: Error otherwise), in
// kind order pretrained, fine_tuned, control (others after), then epoch.
std::vector<KindStats> layer_stats(const std::vector<RunResults>& runs, const BootstrapOptions& bootstrap);

}  // namespace layerprobe
