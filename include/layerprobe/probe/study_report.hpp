// The experiment-wide report of probe_evaluate exper: summary.csv (one row
// per kind, epoch and layer: means over seeds, their spread, bootstrap
// intervals and paired differences to the pretrained model and the control),
// layers.svg (EM and F1 per layer), report.svg (F1, HasAns F1 and NoAns
// accuracy, each kind's last epoch, with seed bands, CI bars and the
// always-"" baseline) and report.md (tables that render on GitHub).
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "layerprobe/probe/amnesic.hpp"
#include "layerprobe/probe/codelength.hpp"
#include "layerprobe/probe/layer_stats.hpp"

namespace layerprobe {

// kind,epoch,layer, then results.csv's six metric columns (the mean over
// seeds: the plain value with one seed), then seeds, <metric>_std,
// <metric>_ci_low, <metric>_ci_high, and for exact and f1
// <metric>_minus_<reference>[_ci_low|_ci_high] for each reference kind.
// Floats as Python prints them; a value that does not exist is empty.
std::string summary_csv(const std::vector<KindStats>& stats);

// The series the plots and report.md's tables follow: every group when the experiment has no
// probe variants; else the SQuAD one-layer probes of the primary architecture (the study's
// linear probe when there is one, else the first), whose rows carry the variants' figures.
std::vector<KindStats> report_series(const std::vector<KindStats>& stats);

// Two panels (EM, F1), one line per kind and epoch.
std::string layers_svg(const std::vector<KindStats>& stats);

// Three panels (F1, HasAns F1, NoAns accuracy), each kind at its last epoch; with a control
// task, a fourth of selectivity; with conditional probes, one of their gain over layer 0.
std::string report_svg(const std::vector<KindStats>& stats);

// Whether the experiment sweeps more than one architecture on the SQuAD task.
bool has_complexity_sweep(const std::vector<KindStats>& stats);

// One panel per kind (last epoch): F1 against log10 parameters per layer, one line per layer
// through the architectures, filled markers on the layer's Pareto frontier; and one panel of
// each kind's hypervolume per layer.
std::string complexity_svg(const std::vector<KindStats>& stats);

// amnesic.svg: F1, HasAns F1 and NoAns accuracy per layer with the model intact, with the layer's
// start/end information erased (LEACE) and with a random subspace of the same rank erased.
std::string amnesic_svg(const std::vector<AmnesicRow>& rows);
// Their Markdown table (layer, rank, F1, HasAns F1 and NoAns accuracy under the three conditions).
std::string amnesic_table_md(const std::vector<AmnesicRow>& rows);

struct ReportInfo {
  std::string experiment;  // the directory, as given
  std::string dev_file;
  BootstrapOptions bootstrap;
  std::map<std::string, std::vector<SeedCodelength>> codelength;  // by kind
  // by kind: the control-task probes of the primary architecture (compression on the control task)
  std::map<std::string, std::vector<SeedCodelength>> control_task_codelength;
  // amnesic.csv's rows, when probe_tools amnesic has run on the experiment.
  std::vector<AmnesicRow> amnesic;
};

// amnesic.csv's rows back (Error naming the file and line on a malformed file).
std::vector<AmnesicRow> read_amnesic_csv(const std::filesystem::path& path);

// Markdown: what was measured and how, the plot, and one table per kind (its last epoch).
std::string report_md(const std::vector<KindStats>& stats, const ReportInfo& info);

// Each kind's last epoch, in stats' order.
std::vector<KindStats> last_epochs(const std::vector<KindStats>& stats);

}  // namespace layerprobe
