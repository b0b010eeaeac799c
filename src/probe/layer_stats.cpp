#include "layerprobe/probe/layer_stats.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "layerprobe/core/common.hpp"
#include "layerprobe/probe/probe_variant.hpp"

namespace layerprobe {

namespace {

constexpr LayerMetric kAllMetrics[kLayerMetrics] = {LayerMetric::exact,         LayerMetric::f1,
                                                    LayerMetric::exact_no_ans,  LayerMetric::f1_no_ans,
                                                    LayerMetric::exact_has_ans, LayerMetric::f1_has_ans};

size_t metric_index(LayerMetric metric) { return static_cast<size_t>(metric); }

// The runs of one kind, epoch and variant, one per seed.
struct SeedGroup {
  std::string kind;
  int epoch = 0;
  std::string variant;
  std::vector<const RunResults*> seeds;
};

ProbeVariant variant_named(const std::string& name) {
  if (name.empty()) return ProbeVariant{};
  auto variant = ProbeVariant::from_name(name);
  if (!variant) throw Error("unknown probe variant '" + name + "'");
  return *variant;
}

// Variants in order: SQuAD before the control task, one layer before [l ; 0] before layer 0,
// then rank before linear before mlp, narrower first.
std::tuple<int, int, int, int64_t> variant_rank(const std::string& name) {
  const auto v = variant_named(name);
  return {static_cast<int>(v.task), static_cast<int>(v.input), static_cast<int>(v.arch.kind == ProbeArch::Kind::rank ? 0 : v.arch.kind == ProbeArch::Kind::linear ? 1 : 2),
          v.arch.width};
}

int kind_rank(const std::string& kind) {
  const std::vector<std::string> order = {"pretrained", "fine_tuned", "control"};
  return static_cast<int>(std::find(order.begin(), order.end(), kind) - order.begin());
}

std::string describe(const SeedGroup& group) {
  return group.kind + " epoch " + std::to_string(group.epoch) + (group.variant.empty() ? "" : " probe " + group.variant);
}

std::vector<SeedGroup> group_runs(const std::vector<RunResults>& runs) {
  std::vector<SeedGroup> groups;
  for (const auto& run : runs) {
    auto it = std::find_if(groups.begin(), groups.end(), [&](const SeedGroup& g) {
      return g.kind == run.kind && g.epoch == run.epoch && g.variant == run.variant;
    });
    if (it == groups.end()) it = groups.insert(groups.end(), SeedGroup{run.kind, run.epoch, run.variant, {}});
    it->seeds.push_back(&run);
  }
  std::sort(groups.begin(), groups.end(), [](const SeedGroup& a, const SeedGroup& b) {
    return std::make_tuple(kind_rank(a.kind), a.kind, a.epoch, variant_rank(a.variant)) <
           std::make_tuple(kind_rank(b.kind), b.kind, b.epoch, variant_rank(b.variant));
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

// Denominators shared by the statistics: every question, the NoAns ones, the HasAns ones (of
// the SQuAD task, and after them of the control task).
enum Denominator : size_t { kAll = 0, kNoAns = 1, kHasAns = 2 };
constexpr size_t kControlTaskDenominators = 2;  // offset of the control task's NoAns, HasAns

std::vector<std::vector<double>> denominators(const QuestionSet& questions, const QuestionSet& control_questions) {
  std::vector<std::vector<double>> d(5);
  for (bool has : questions.has_answer) {
    d[kAll].push_back(1.0);
    d[kNoAns].push_back(has ? 0.0 : 1.0);
    d[kHasAns].push_back(has ? 1.0 : 0.0);
  }
  for (size_t q = 0; q < questions.has_answer.size(); ++q) {
    const bool has = q < control_questions.has_answer.size() && control_questions.has_answer[q];
    d[kNoAns + kControlTaskDenominators].push_back(has ? 0.0 : 1.0);
    d[kHasAns + kControlTaskDenominators].push_back(has ? 1.0 : 0.0);
  }
  return d;
}

// The six statistics of one layer: seed-averaged per-question scores (x 100) over their subsets;
// `offset` picks the task's NoAns/HasAns denominators.
std::vector<RatioStatistic> layer_statistics(const SeedGroup& group, size_t layer_index, const QuestionSet& questions,
                                             size_t offset) {
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
          {subset(exact, false), kNoAns + offset},
          {subset(f1, false), kNoAns + offset},
          {subset(exact, true), kHasAns + offset},
          {subset(f1, true), kHasAns + offset}};
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
      while (r < all.size() &&
             !(all[r].kind == reference && all[r].epoch == all[k].epoch && all[r].variant == all[k].variant))
        ++r;
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

// Mean over the group's seeds of a layer's nuclear norm (NaN unless every seed has one).
double mean_nuclear_norm(const SeedGroup& group, size_t layer_index) {
  double sum = 0;
  for (const auto* run : group.seeds) {
    if (layer_index >= run->nuclear_norms.size()) return NAN;
    sum += run->nuclear_norms[layer_index];
  }
  return sum / static_cast<double>(group.seeds.size());
}

// The group of `kind` and `epoch` whose variant is `variant`, if any.
std::optional<size_t> find_group(const std::vector<KindStats>& all, const KindStats& like, const ProbeVariant& variant) {
  for (size_t i = 0; i < all.size(); ++i)
    if (all[i].kind == like.kind && all[i].epoch == like.epoch && all[i].variant == variant.name()) return i;
  return std::nullopt;
}

// F1 of one group's layer, with its interval, and paired with another's.
Estimate f1_estimate(const LayerStats& layer, const std::vector<double>& replicates, double confidence) {
  Estimate e{layer.mean[metric_index(LayerMetric::f1)], std::nullopt};
  if (!replicates.empty()) e.ci = percentile_interval(replicates, confidence);
  return e;
}

Estimate f1_difference(const LayerStats& a, const std::vector<double>& ra, const LayerStats& b,
                       const std::vector<double>& rb, double confidence) {
  Estimate e{a.mean[metric_index(LayerMetric::f1)] - b.mean[metric_index(LayerMetric::f1)], std::nullopt};
  if (!ra.empty() && ra.size() == rb.size()) {
    std::vector<double> difference(ra.size());
    for (size_t i = 0; i < ra.size(); ++i) difference[i] = ra[i] - rb[i];
    e.ci = percentile_interval(difference, confidence);
  }
  return e;
}

// Selectivity against each SQuAD group's control-task twin (same layer), and conditional
// probing's gain of its [l ; 0] twin over its layer-0 twin.
void add_twins(std::vector<KindStats>& all, const std::vector<std::vector<std::vector<double>>>& replicates,
               double confidence) {
  auto f1_replicates = [&](size_t group, size_t layer_index) -> const std::vector<double>& {
    return replicates[group][layer_index * kLayerMetrics + metric_index(LayerMetric::f1)];
  };
  for (size_t k = 0; k < all.size(); ++k) {
    const auto variant = variant_named(all[k].variant);
    if (variant.task != ProbeTask::squad || variant.input != ProbeInput::layer) continue;
    const auto control = find_group(all, all[k], {variant.arch, ProbeTask::control_task, ProbeInput::layer});
    const auto conditional = find_group(all, all[k], {variant.arch, ProbeTask::squad, ProbeInput::conditional});
    const auto embeddings = find_group(all, all[k], {variant.arch, ProbeTask::squad, ProbeInput::embeddings});
    for (size_t l = 0; l < all[k].layers.size(); ++l) {
      auto& layer = all[k].layers[l];
      if (control)
        if (const LayerStats* twin = find_layer(all[*control], layer.layer)) {
          const size_t t = static_cast<size_t>(twin - all[*control].layers.data());
          layer.control_task_f1 = f1_estimate(*twin, f1_replicates(*control, t), confidence);
          layer.selectivity = f1_difference(layer, f1_replicates(k, l), *twin, f1_replicates(*control, t), confidence);
        }
      const LayerStats* with_layer0 = conditional ? find_layer(all[*conditional], layer.layer) : nullptr;
      const LayerStats* layer0 = embeddings ? find_layer(all[*embeddings], 0) : nullptr;
      if (with_layer0) {
        const size_t c = static_cast<size_t>(with_layer0 - all[*conditional].layers.data());
        layer.conditional_f1 = f1_estimate(*with_layer0, f1_replicates(*conditional, c), confidence);
        if (layer0) {
          const size_t e = static_cast<size_t>(layer0 - all[*embeddings].layers.data());
          layer.conditional_gain = f1_difference(*with_layer0, f1_replicates(*conditional, c), *layer0,
                                                 f1_replicates(*embeddings, e), confidence);
        }
      }
      if (layer0) {
        const size_t e = static_cast<size_t>(layer0 - all[*embeddings].layers.data());
        layer.embeddings_f1 = f1_estimate(*layer0, f1_replicates(*embeddings, e), confidence);
      }
    }
  }
}

// Per kind, epoch and layer, the SQuAD one-layer groups of every architecture as points
// (log10 parameters, F1): each one's place on the frontier, and the frontier's hypervolume.
void add_pareto(std::vector<KindStats>& all) {
  const ParetoPoint reference = pareto_reference(all);
  std::vector<size_t> members;
  for (size_t k = 0; k < all.size(); ++k) {
    const auto variant = variant_named(all[k].variant);
    if (variant.task == ProbeTask::squad && variant.input == ProbeInput::layer && !variant.arch.is_lens())
      members.push_back(k);
  }
  for (size_t k : members)
    for (auto& layer : all[k].layers) {
      std::vector<ParetoPoint> points;
      size_t mine = 0;
      for (size_t other : members) {
        if (all[other].kind != all[k].kind || all[other].epoch != all[k].epoch) continue;
        const LayerStats* at = find_layer(all[other], layer.layer);
        if (!at || all[other].parameters <= 0) continue;
        if (other == k) mine = points.size();
        points.push_back({std::log10(static_cast<double>(all[other].parameters)), at->mean[metric_index(LayerMetric::f1)]});
      }
      if (all[k].parameters <= 0 || points.empty()) continue;
      layer.pareto = pareto_frontier(points)[mine];
      layer.hypervolume = pareto_hypervolume(points, reference);
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
  // Each task's questions, from its first group: the control task's have their own answers.
  QuestionSet questions, control_questions;
  const SeedGroup* first_control = nullptr;
  for (const auto& group : groups) {
    const bool control = variant_named(group.variant).task == ProbeTask::control_task;
    QuestionSet& set = control ? control_questions : questions;
    if (!set.has_answer.empty() || group.seeds.front()->layers.empty()) continue;
    for (const auto& q : group.seeds.front()->layers.front().eval.questions) set.has_answer.push_back(q.has_answer);
    if (control) first_control = &group;
  }
  if (questions.has_answer.empty()) questions.has_answer.assign(control_questions.has_answer.size(), false);
  if (first_control && control_questions.has_answer.size() != questions.has_answer.size())
    throw Error(describe(*first_control) + " was scored on " + std::to_string(control_questions.has_answer.size()) +
                " questions but the SQuAD task on " + std::to_string(questions.has_answer.size()) +
                "; predict every probe set of the experiment with one probe_predict run on one dev file");
  std::vector<KindStats> all;
  std::vector<RatioStatistic> statistics;
  for (const auto& group : groups) {
    check_same_layers(group);
    const bool control = variant_named(group.variant).task == ProbeTask::control_task;
    const QuestionSet& scored = control ? control_questions : questions;
    KindStats stats{group.kind, group.epoch, group.variant, group.seeds.front()->parameters, {}, {},
                    always_empty_f1(questions)};
    for (const auto* run : group.seeds) stats.seeds.push_back(run->seed);
    for (size_t l = 0; l < group.seeds.front()->layers.size(); ++l) {
      LayerStats layer;
      layer.layer = group.seeds.front()->layers[l].layer;
      mean_and_std(group, l, layer);
      layer.nuclear_norm = mean_nuclear_norm(group, l);
      for (auto& statistic : layer_statistics(group, l, scored, control ? kControlTaskDenominators : 0))
        statistics.push_back(std::move(statistic));
      stats.layers.push_back(std::move(layer));
    }
    all.push_back(std::move(stats));
  }
  auto flat = bootstrap_replicates(statistics, denominators(questions, control_questions),
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
  add_twins(all, replicates, bootstrap.confidence);
  add_pareto(all);
  return all;
}

bool has_variants(const std::vector<KindStats>& stats) {
  return std::any_of(stats.begin(), stats.end(), [](const KindStats& s) { return !s.variant.empty(); });
}

ParetoPoint pareto_reference(const std::vector<KindStats>& stats) {
  int64_t largest = 0;
  for (const auto& s : stats) {
    const auto variant = variant_named(s.variant);
    if (variant.task == ProbeTask::squad && variant.input == ProbeInput::layer && !variant.arch.is_lens())
      largest = std::max(largest, s.parameters);
  }
  return {largest > 0 ? std::log10(static_cast<double>(largest)) + 1 : NAN,
          stats.empty() ? NAN : stats.front().always_empty_f1};
}

}  // namespace layerprobe
