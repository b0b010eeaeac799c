// Per-layer evaluation reports of one prediction directory: the original
// study's results.csv and an aligned text table (study_report.hpp has the
// experiment-wide ones).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "layerprobe/squad/metrics.hpp"

namespace layerprobe {

struct LayerResult {
  int layer = 0;
  SquadEvaluation eval;
};

// The probes of one kind ("pretrained"/"fine_tuned"/"control") after one
// epoch, of one seed when trained with --seeds.
struct RunResults {
  std::string kind;
  int epoch = 0;
  std::optional<uint64_t> seed;
  std::string variant;   // ProbeVariant::name() ("" for the study's linear probe)
  std::string dev_file;  // what the layers were scored against
  std::vector<LayerResult> layers;
  // From the probes file (preds_meta.json's "probes"), when it is found: parameters of one
  // layer's probe and each layer's nuclear norm (empty for mlp).
  int64_t parameters = 0;
  std::vector<double> nuclear_norms;
};

// layer,exact,f1,exact_no_ans,f1_no_ans,exact_has_ans,f1_has_ans with floats
// as Python prints them (the original's results.csv); a metric the dev file
// cannot have (no answerable / no unanswerable question) is left empty.
std::string results_csv(const std::vector<LayerResult>& layers);
// The same columns, right-aligned, two decimals.
std::string results_table(const std::vector<LayerResult>& layers);
}  // namespace layerprobe
