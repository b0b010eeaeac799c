// Accuracy against probe complexity (Pimentel et al. 2020, "Pareto probing"): for one layer,
// each probe architecture of a sweep is a point (complexity, F1); a point is on the Pareto
// frontier when no other point is at most as complex and at least as accurate, and strictly
// better in one of the two. The frontier's hypervolume is the area it dominates above a
// reference point: with x = log10(parameters) (lower is better) and y = F1 (higher is better),
// the union over frontier points p of the rectangles [x_p, x_ref] x [y_ref, y_p]. A point at or
// beyond the reference (x >= x_ref or y <= y_ref) dominates nothing.
#pragma once

#include <vector>

namespace layerprobe {

struct ParetoPoint {
  double complexity = 0;  // lower is better
  double accuracy = 0;    // higher is better
};

// For each point, whether it is on the frontier (NaN coordinates never are).
std::vector<bool> pareto_frontier(const std::vector<ParetoPoint>& points);

// The dominated area of the points' frontier above (reference.complexity, reference.accuracy):
// sum over the frontier sorted by complexity of (x_ref - x_i) (y_i - y_(i-1)), with y_0 = y_ref.
double pareto_hypervolume(const std::vector<ParetoPoint>& points, const ParetoPoint& reference);

}  // namespace layerprobe
