#include "layerprobe/probe/layer_stats.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

namespace {

constexpr LayerMetric kAllMetrics[kLayerMetrics] = {LayerMetric::exact,         LayerMetric::f1,
                                                    LayerMetric::exact_no_ans,  LayerMetric::f1_no_ans,
                                                    LayerMetric::exact_has_ans, LayerMetric::f1_has_ans};

size_t metric_index(LayerMetric metric) { return static_cast<size_t>(metric); }

// The runs of one kind and epoch, one per seed.
struct SeedGroup {
  std::string kind;
  int epoch = 0;
  std::vector<const RunResults*> seeds;
};

int kind_rank(const std::string& kind) {
  const std::vector<std::string> order = {"pretrained", "fine_tuned", "control"};
  return static_cast<int>(std::find(order.begin(), order.end(), kind) - order.begin());
}

std::string describe(const SeedGroup& group) { return group.kind + " epoch " + std::to_string(group.epoch); }

std::vector<SeedGroup> group_runs(const std::vector<RunResults>& runs) {
  std::vector<SeedGroup> groups;
  for (const auto& run : runs) {
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const SeedGroup& g) { return g.kind == run.kind && g.epoch == run.epoch; });
    if (it == groups.end()) it = groups.insert(groups.end(), SeedGroup{run.kind, run.epoch, {}});
    it->seeds.push_back(&run);
  }
  std::sort(groups.begin(), groups.end(), [](const SeedGroup& a, const SeedGroup& b) {
    return std::make_tuple(kind_rank(a.kind), a.kind, a.epoch) < std::make_tuple(kind_rank(b.kind), b.kind, b.epoch);
  });
  for (auto& group : groups)
    std::sort(group.seeds.begin(), group.seeds.end(), [](const RunResults* a, const RunResults* b) { return a->seed < b->seed; });
  return groups;
}

// The questions every evaluation of the experiment scored: their count and HasAns flags.
struct QuestionSet {
  std::vector<bool> has_answer;
};

void check_same_questions(const QuestionSet& questions, const SquadEvaluation& eval, const std::string& what) {
  bool same = eval.questions.size() == questions.has_answer.size();
  for (size_t q = 0; same && q < eval.questions.size(); ++q) same = eval.questions[q].has_answer == questions.has_answer[q];
  if (!same)
    throw Error(what + " was scored on other questions (" + std::to_string(eval.questions.size()) + " against " +
                std::to_string(questions.has_answer.size()) +
                "); evaluate every prediction directory of the experiment against one dev file");
}

void check_same_layers(const SeedGroup& group) {
  const auto& first = group.seeds.front()->layers;
  for (const auto* run : group.seeds) {
    bool same = run->layers.size() == first.size();
    for (size_t i = 0; same && i < first.size(); ++i) same = run->layers[i].layer == first[i].layer;
    if (!same)
      throw Error("the seeds of " + describe(group) + " have different layers; predict every seed with one probe_predict run");
  }
}

void mean_and_std(const SeedGroup& group, size_t layer_index, LayerStats& stats) {
  const double n = static_cast<double>(group.seeds.size());
  for (auto metric : kAllMetrics) {
    double sum = 0, squares = 0;
    for (const auto* run : group.seeds) sum += metric_value(run->layers[layer_index].eval, metric);
    const double mean = sum / n;
    for (const auto* run : group.seeds) squares += std::pow(metric_value(run->layers[layer_index].eval, metric) - mean, 2);
    stats.mean[metric_index(metric)] = mean;
    stats.std[metric_index(metric)] = group.seeds.size() > 1 ? std::sqrt(squares / (n - 1)) : NAN;
  }
}

// Denominators shared by the statistics: every question, the NoAns ones, the HasAns ones.
enum Denominator : size_t { kAll = 0, kNoAns = 1, kHasAns = 2 };

std::vector<std::vector<double>> denominators(const QuestionSet& questions) {
  std::vector<std::vector<double>> d(3);
  for (bool has : questions.has_answer) {
    d[kAll].push_back(1.0);
    d[kNoAns].push_back(has ? 0.0 : 1.0);
    d[kHasAns].push_back(has ? 1.0 : 0.0);
  }
  return d;
}

// The six statistics of one layer: seed-averaged per-question scores (x 100) over their subsets.
std::vector<RatioStatistic> layer_statistics(const SeedGroup& group, size_t layer_index, const QuestionSet& questions) {
  const size_t n = questions.has_answer.size();
  std::vector<double> exact(n, 0.0), f1(n, 0.0);
  for (const auto* run : group.seeds) {
    const auto& scored = run->layers[layer_index].eval;
    check_same_questions(questions, scored, describe(group) + " layer " + std::to_string(run->layers[layer_index].layer));
    for (size_t q = 0; q < n; ++q) {
      exact[q] += 100.0 * scored.questions[q].exact / static_cast<double>(group.seeds.size());
      f1[q] += 100.0 * scored.questions[q].f1 / static_cast<double>(group.seeds.size());
    }
  }
  auto subset = [&](const std::vector<double>& values, bool has_answer) {
    std::vector<double> out(n);
    for (size_t q = 0; q < n; ++q) out[q] = questions.has_answer[q] == has_answer ? values[q] : 0.0;
    return out;
  };
  return {{exact, kAll},
          {f1, kAll},
          {subset(exact, false), kNoAns},
          {subset(f1, false), kNoAns},
          {subset(exact, true), kHasAns},
          {subset(f1, true), kHasAns}};
}

double always_empty_f1(const QuestionSet& questions) {
  if (questions.has_answer.empty()) return NAN;
  const auto unanswerable = std::count(questions.has_answer.begin(), questions.has_answer.end(), false);
  return 100.0 * static_cast<double>(unanswerable) / static_cast<double>(questions.has_answer.size());
}

const LayerStats* find_layer(const KindStats& stats, int layer) {
  for (const auto& l : stats.layers)
    if (l.layer == layer) return &l;
  return nullptr;
}

// Point differences to each reference kind at the same epoch and layer, with
// paired intervals from the shared resamples when there are any.
void add_differences(std::vector<KindStats>& all, const std::vector<std::vector<std::vector<double>>>& replicates,
                     double confidence) {
  for (size_t k = 0; k < all.size(); ++k)
    for (const auto& reference : reference_kinds()) {
      if (all[k].kind == reference) continue;
      size_t r = 0;
      while (r < all.size() && !(all[r].kind == reference && all[r].epoch == all[k].epoch)) ++r;
      if (r == all.size()) continue;
      for (size_t l = 0; l < all[k].layers.size(); ++l) {
        auto& layer = all[k].layers[l];
        const LayerStats* other = find_layer(all[r], layer.layer);
        if (!other) continue;
        const size_t o = static_cast<size_t>(other - all[r].layers.data());
        for (auto metric : difference_metrics()) {
          Estimate estimate{layer.mean[metric_index(metric)] - other->mean[metric_index(metric)], std::nullopt};
          const auto& mine = replicates[k][l * kLayerMetrics + metric_index(metric)];
          const auto& theirs = replicates[r][o * kLayerMetrics + metric_index(metric)];
          if (!mine.empty()) {
            std::vector<double> difference(mine.size());
            for (size_t i = 0; i < mine.size(); ++i) difference[i] = mine[i] - theirs[i];
            estimate.ci = percentile_interval(difference, confidence);
          }
          layer.minus[reference][metric] = estimate;
        }
      }
    }
}

}  // namespace

const char* metric_name(LayerMetric metric) {
  static const char* const names[kLayerMetrics] = {"exact",         "f1",           "exact_no_ans",
                                                   "f1_no_ans",     "exact_has_ans", "f1_has_ans"};
  return names[metric_index(metric)];
}

double metric_value(const SquadEvaluation& eval, LayerMetric metric) {
  switch (metric) {
    case LayerMetric::exact: return eval.overall.exact;
    case LayerMetric::f1: return eval.overall.f1;
    case LayerMetric::exact_no_ans: return eval.no_ans ? eval.no_ans->exact : NAN;
    case LayerMetric::f1_no_ans: return eval.no_ans ? eval.no_ans->f1 : NAN;
    case LayerMetric::exact_has_ans: return eval.has_ans ? eval.has_ans->exact : NAN;
    case LayerMetric::f1_has_ans: return eval.has_ans ? eval.has_ans->f1 : NAN;
  }
  return NAN;
}

const std::vector<std::string>& reference_kinds() {
  static const std::vector<std::string> kinds = {"pretrained", "control"};
  return kinds;
}

const std::vector<LayerMetric>& difference_metrics() {
  static const std::vector<LayerMetric> metrics = {LayerMetric::exact, LayerMetric::f1};
  return metrics;
}

std::vector<KindStats> layer_stats(const std::vector<RunResults>& runs, const BootstrapOptions& bootstrap) {
  const auto groups = group_runs(runs);
  if (groups.empty()) return {};
  QuestionSet questions;
  for (const auto& q : groups.front().seeds.front()->layers.front().eval.questions) questions.has_answer.push_back(q.has_answer);
  std::vector<KindStats> all;
  std::vector<RatioStatistic> statistics;
  for (const auto& group : groups) {
    check_same_layers(group);
    KindStats stats{group.kind, group.epoch, {}, {}, always_empty_f1(questions)};
    for (const auto* run : group.seeds) stats.seeds.push_back(run->seed);
    for (size_t l = 0; l < group.seeds.front()->layers.size(); ++l) {
      LayerStats layer;
      layer.layer = group.seeds.front()->layers[l].layer;
      mean_and_std(group, l, layer);
      for (auto& statistic : layer_statistics(group, l, questions)) statistics.push_back(std::move(statistic));
      stats.layers.push_back(std::move(layer));
    }
    all.push_back(std::move(stats));
  }
  auto flat = bootstrap_replicates(statistics, denominators(questions),
                                   static_cast<int64_t>(questions.has_answer.size()), bootstrap);
  // [kind][layer * kLayerMetrics + metric]
  std::vector<std::vector<std::vector<double>>> replicates(all.size());
  size_t next = 0;
  for (size_t k = 0; k < all.size(); ++k)
    for (auto& layer : all[k].layers)
      for (auto metric : kAllMetrics) {
        auto& values = flat[next++];
        if (!values.empty()) layer.ci[metric_index(metric)] = percentile_interval(values, bootstrap.confidence);
        replicates[k].push_back(std::move(values));
      }
  add_differences(all, replicates, bootstrap.confidence);
  return all;
}

}  // namespace layerprobe
