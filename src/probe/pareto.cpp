#include "layerprobe/probe/pareto.hpp"

#include <algorithm>
#include <cmath>

namespace layerprobe {

namespace {

bool pareto_usable(const ParetoPoint& p) { return !std::isnan(p.complexity) && !std::isnan(p.accuracy); }

bool pareto_dominates(const ParetoPoint& a, const ParetoPoint& b) {
  return a.complexity <= b.complexity && a.accuracy >= b.accuracy &&
         (a.complexity < b.complexity || a.accuracy > b.accuracy);
}

}  // namespace

std::vector<bool> pareto_frontier(const std::vector<ParetoPoint>& points) {
  std::vector<bool> on(points.size(), false);
  for (size_t i = 0; i < points.size(); ++i) {
    if (!pareto_usable(points[i])) continue;
    on[i] = std::none_of(points.begin(), points.end(),
                         [&](const ParetoPoint& other) { return pareto_usable(other) && pareto_dominates(other, points[i]); });
  }
  return on;
}

double pareto_hypervolume(const std::vector<ParetoPoint>& points, const ParetoPoint& reference) {
  const auto on = pareto_frontier(points);
  std::vector<ParetoPoint> frontier;
  for (size_t i = 0; i < points.size(); ++i)
    if (on[i] && points[i].complexity < reference.complexity && points[i].accuracy > reference.accuracy)
      frontier.push_back(points[i]);
  // Ascending complexity; equal points (both on the frontier) count once.
  std::sort(frontier.begin(), frontier.end(), [](const ParetoPoint& a, const ParetoPoint& b) {
    return a.complexity < b.complexity || (a.complexity == b.complexity && a.accuracy < b.accuracy);
  });
  double area = 0, below = reference.accuracy;
  for (const auto& p : frontier) {
    if (p.accuracy <= below) continue;
    area += (reference.complexity - p.complexity) * (p.accuracy - below);
    below = p.accuracy;
  }
  return area;
}

}  // namespace layerprobe
