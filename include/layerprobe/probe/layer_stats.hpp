// Per-layer statistics of an experiment's evaluated probes: the mean and
// standard deviation over probe seeds, bootstrap confidence intervals over
// questions, and paired differences to the pretrained model and the control
// (Hewitt & Liang's selectivity-style gap), for each kind, epoch and probe
// variant; with probe variants (probe_variant.hpp) also the control task's F1
// and selectivity, conditional probing's gain over layer 0, and each
// architecture's complexity with the Pareto frontier and its hypervolume.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "layerprobe/probe/bootstrap.hpp"
#include "layerprobe/probe/pareto.hpp"
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
  // With the control-task twin of this probe set (same kind, epoch, architecture): its F1 at
  // this layer and the selectivity F1 - control-task F1 (Hewitt & Liang 2019), paired.
  std::optional<Estimate> control_task_f1, selectivity;
  // With the conditional twins: F1 of [layer l ; layer 0], of layer 0 alone, and the gain
  // F1([l ; 0]) - F1(0) (what layer l adds to the embeddings; Hewitt et al. 2021), paired.
  std::optional<Estimate> conditional_f1, embeddings_f1, conditional_gain;
  // Complexity (SQuAD-task probes on one layer): the nuclear norm of the probe's linear map
  // (mean over seeds; NaN for mlp or when the probes files are not found), whether this
  // architecture is on the layer's Pareto frontier (log10 parameters against F1) among the
  // experiment's architectures for this kind and epoch, and that frontier's hypervolume.
  double nuclear_norm = NAN;
  bool pareto = false;
  double hypervolume = NAN;
};

struct KindStats {
  std::string kind;
  int epoch = 0;
  std::string variant;  // ProbeVariant::name(): "" for the study's linear probe
  int64_t parameters = 0;  // per layer's probe (0 when unknown)
  std::vector<std::optional<uint64_t>> seeds;  // one entry (none) for probes trained without --seeds
  std::vector<LayerStats> layers;
  // Share of unanswerable questions in %: the overall F1 (and EM) of always answering "".
  double always_empty_f1 = NAN;
};

// Groups the runs by kind, epoch and variant (every seed of a group must have the
// same layers and be scored on the same questions: Error otherwise), in
// kind order pretrained, fine_tuned, control (others after), then epoch, then
// variant (the study's probe first). Control-task runs are scored on their own
// answers, so their HasAns/NoAns split is their own; every run must score the
// same number of questions, in the same order, so that differences pair them.
std::vector<KindStats> layer_stats(const std::vector<RunResults>& runs, const BootstrapOptions& bootstrap);

// Whether the statistics hold any probe variant (then summary.csv and the report add their columns).
bool has_variants(const std::vector<KindStats>& stats);

// The reference point of the hypervolumes: log10 of the largest per-layer parameter count
// among the experiment's architectures (SQuAD probes on one layer) plus one decade, and the
// always-"" F1 (NaN coordinates when unknown).
ParetoPoint pareto_reference(const std::vector<KindStats>& stats);

}  // namespace layerprobe
