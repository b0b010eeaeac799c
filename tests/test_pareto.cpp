// The Pareto frontier of probe complexity against F1 and its hypervolume
// (probe/pareto.hpp), against hand computations, and as layer_stats reports them.
#include <cmath>

#include "layerprobe/probe/layer_stats.hpp"
#include "layerprobe/probe/pareto.hpp"
#include "test_support.hpp"

using namespace layerprobe;

TEST(Pareto, FrontierKeepsThePointsNothingDominates) {
  // (complexity, accuracy): b dominates d (simpler and better); a, b, c trade off; e equals c.
  const std::vector<ParetoPoint> points = {{1, 50}, {2, 60}, {3, 70}, {2.5, 55}, {3, 70}, {NAN, 99}};
  EXPECT_EQ(pareto_frontier(points), (std::vector<bool>{true, true, true, false, true, false}));
}

TEST(Pareto, HypervolumeEqualsAHandComputation) {
  // Reference (4, 40). Frontier a (1, 50), b (2, 60), c (3, 70); d (2.5, 55) is dominated by b.
  // Area = (4 - 1)(50 - 40) + (4 - 2)(60 - 50) + (4 - 3)(70 - 60) = 30 + 20 + 10 = 60.
  const std::vector<ParetoPoint> points = {{2.5, 55}, {3, 70}, {1, 50}, {2, 60}};
  EXPECT_DOUBLE_EQ(pareto_hypervolume(points, {4, 40}), 60.0);
  // A point below the reference accuracy or beyond its complexity adds nothing.
  auto more = points;
  more.push_back({0.5, 30});
  more.push_back({5, 90});
  EXPECT_DOUBLE_EQ(pareto_hypervolume(more, {4, 40}), 60.0);
  // A simpler, better point replaces the staircase under it: (0.5, 65) dominates a and b.
  // Area = (4 - 0.5)(65 - 40) + (4 - 3)(70 - 65) = 87.5 + 5 = 92.5.
  more.push_back({0.5, 65});
  EXPECT_DOUBLE_EQ(pareto_hypervolume(more, {4, 40}), 92.5);
  EXPECT_DOUBLE_EQ(pareto_hypervolume({}, {4, 40}), 0.0);
}

namespace {

SquadEvaluation pareto_eval(double f1) {
  SquadEvaluation e;
  e.overall = {f1, f1, 2};
  e.has_ans = ScoreSummary{f1, f1, 1};
  e.no_ans = ScoreSummary{f1, f1, 1};
  e.questions = {{f1 / 100, f1 / 100, true}, {f1 / 100, f1 / 100, false}};
  return e;
}

RunResults pareto_run(const std::string& variant, int64_t parameters, double f1_layer1, double f1_layer2) {
  RunResults run;
  run.kind = "fine_tuned";
  run.epoch = 1;
  run.variant = variant;
  run.parameters = parameters;
  run.layers = {{1, pareto_eval(f1_layer1)}, {2, pareto_eval(f1_layer2)}};
  return run;
}

}  // namespace

TEST(Pareto, LayerStatsPlacesEachArchitectureAndComputesTheHypervolume) {
  BootstrapOptions none;
  none.resamples = 0;
  // Parameters 10, 100, 1000: log10 1, 2, 3; the reference is (3 + 1, always-"" F1 = 50).
  const auto stats = layer_stats({pareto_run("rank_1", 10, 60, 55), pareto_run("", 100, 70, 80),
                                  pareto_run("mlp_8", 1000, 65, 90)},
                                 none);
  ASSERT_EQ(stats.size(), 3u);
  EXPECT_EQ(stats[0].variant, "rank_1");  // rank before linear before mlp
  EXPECT_EQ(stats[1].variant, "");
  const auto reference = pareto_reference(stats);
  EXPECT_DOUBLE_EQ(reference.complexity, 4.0);
  EXPECT_DOUBLE_EQ(reference.accuracy, 50.0);
  // Layer 1: rank_1 (1, 60), linear (2, 70) on the frontier; mlp (3, 65) dominated by linear.
  EXPECT_TRUE(stats[0].layers[0].pareto);
  EXPECT_TRUE(stats[1].layers[0].pareto);
  EXPECT_FALSE(stats[2].layers[0].pareto);
  // (4 - 1)(60 - 50) + (4 - 2)(70 - 60) = 50.
  EXPECT_NEAR(stats[1].layers[0].hypervolume, 50.0, 1e-12);
  // Layer 2: all three on it: (4 - 1)(55 - 50) + (4 - 2)(80 - 55) + (4 - 3)(90 - 80) = 15 + 50 + 10 = 75.
  for (const auto& s : stats) {
    EXPECT_TRUE(s.layers[1].pareto) << s.variant;
    EXPECT_NEAR(s.layers[1].hypervolume, 75.0, 1e-12) << s.variant;
  }
}
