// Evaluation of probe prediction directories, as the original evaluate.py
// walked them: EXPER/<kind>_epoch_<e>/<kind>_preds/pred_layer_<L>.{json,csv}
// (and <kind>_preds/seed_<s>/ for probes trained with --seeds).
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "layerprobe/squad/metrics.hpp"
#include "layerprobe/probe/report.hpp"

namespace layerprobe {

struct PredsEvalOptions {
  // Overrides the dev file recorded in each preds dir's preds_meta.json.
  std::optional<std::filesystem::path> dev_file;
  bool allow_missing = false;
  bool skip_unlabeled = false;  // leave unlabeled questions out of the scores (else an Error)
  // Score the layer files found even when layers are missing or probe_predict did not finish
  // (no preds_meta.json beside probes); else an Error.
  bool allow_incomplete = false;
};

// Dev files load once however many preds dirs use them.
class GoldCache {
 public:
  const GoldDataset& get(const std::filesystem::path& dev_file);
  // file_fingerprint of the dev file, computed once.
  const std::string& fingerprint(const std::filesystem::path& dev_file);

 private:
  std::map<std::filesystem::path, GoldDataset> loaded_;
  std::map<std::filesystem::path, std::string> fingerprints_;
};

// Every EXPER/*_epoch_*/*_preds directory and every seed_<s> directory in
// one, sorted; Error when there is none.
std::vector<std::filesystem::path> find_preds_dirs(const std::filesystem::path& exper_dir);

// Error when two runs are the same kind and epoch (a stray copy of an epoch
// directory), which would put two rows per layer into summary.csv.
void check_distinct_runs(const std::vector<RunResults>& runs);

// Scores every layer of one preds dir (pred_layer_<L>.json, else .csv).
// kind and epoch come from preds_meta.json, else from the directory names.
RunResults evaluate_preds_dir(const std::filesystem::path& preds_dir, const PredsEvalOptions& options,
                              GoldCache& gold);

// Where results.csv of a preds dir goes: beside it, in the epoch directory
// (results_seed_<s>.csv there for <kind>_preds/seed_<s>).
std::filesystem::path results_csv_path(const std::filesystem::path& preds_dir);

}  // namespace layerprobe
