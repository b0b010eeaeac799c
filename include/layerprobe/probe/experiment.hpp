// The experiment directory layout of the original study:
// EXPER/<kind>_epoch_<e>/<kind>_probes/probes.safetensors and, beside it,
// <kind>_preds/ with the predictions of every layer.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace layerprobe {

// "pretrained" or "fine_tuned"; Error (exit 2) for anything else.
void check_probe_kind(const std::string& kind);

std::filesystem::path probes_dir(const std::filesystem::path& exper_dir, const std::string& kind, int epoch);
std::filesystem::path probes_file(const std::filesystem::path& exper_dir, const std::string& kind, int epoch);
// <kind>_probes -> <kind>_preds in the same epoch directory.
std::filesystem::path preds_dir_for(const std::filesystem::path& probes_dir, const std::string& kind);

// Every EXPER/*_epoch_*/*_probes directory holding probes.safetensors,
// sorted by kind then epoch; Error when there is none, or when two
// directories name the same kind and epoch (pretrained_epoch_1 and
// pretrained_epoch_01). Entries that look like epoch directories but do not
// follow the layout get a warning, so a stray copy is never silently skipped.
std::vector<std::filesystem::path> find_probes_dirs(const std::filesystem::path& exper_dir);

// "<bytes>:<FNV-1a 64-bit hex>" of a file's content: cheap to recompute, so a
// later step can tell whether a file is still the one an earlier step read
// (probe_evaluate checks the dev file probe_predict used). Error naming the
// file when it cannot be read.
std::string file_fingerprint(const std::filesystem::path& path);

// The final study's form names a model instead of a kind (`probe_train
// bert-base-uncased cpu 3`); its experiment directory is `root` / the name's
// last path component, as train.py's model_prefix.split("/")[-1]. Usage
// Error (status 2) for a name without one.
std::filesystem::path model_experiment_dir(const std::string& name_or_path, const std::filesystem::path& root = ".");

// The kind ("pretrained"/"fine_tuned") named by a path component, if any.
std::optional<std::string> kind_from_path(const std::filesystem::path& path);

}  // namespace layerprobe
