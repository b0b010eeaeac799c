// Per-layer evaluation reports: the original study's results.csv, an aligned
// text table, an experiment-wide summary.csv and an SVG chart of EM/F1 per
// layer (the paper's Figures 1-2).
#pragma once

#include <string>
#include <vector>

#include "layerprobe/squad/metrics.hpp"

namespace layerprobe {

struct LayerResult {
  int layer = 0;
  SquadEvaluation eval;
};

// The probes of one kind ("pretrained"/"fine_tuned") after one epoch.
struct RunResults {
  std::string kind;
  int epoch = 0;
  std::vector<LayerResult> layers;
};

// layer,exact,f1,exact_no_ans,f1_no_ans,exact_has_ans,f1_has_ans with floats
// as Python prints them (the original's results.csv); a metric the dev file
// cannot have (no answerable / no unanswerable question) is left empty.
std::string results_csv(const std::vector<LayerResult>& layers);
// The same columns, right-aligned, two decimals.
std::string results_table(const std::vector<LayerResult>& layers);
// kind,epoch,layer followed by the results.csv metric columns.
std::string summary_csv(const std::vector<RunResults>& runs);
// Self-contained SVG: an EM panel and an F1 panel, x = layer, one line per
// kind and epoch, with a legend.
std::string layers_svg(const std::vector<RunResults>& runs);

}  // namespace layerprobe
