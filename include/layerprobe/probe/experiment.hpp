// The experiment directory layout of the original study:
// EXPER/<kind>_epoch_<e>/<kind>_probes/probes.safetensors and, beside it,
// <kind>_preds/ with the predictions of every layer. Probes trained with
// --seeds go one level down, one directory per seed:
// <kind>_probes/seed_<s>/probes.safetensors and <kind>_preds/seed_<s>/.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "layerprobe/probe/codelength.hpp"

namespace layerprobe {

// The kinds of probed encoder: "pretrained", "fine_tuned", and "control" (a
// randomly initialised copy of the probed architecture, probe/control.hpp).
const std::vector<std::string>& probe_kinds();
// Error (exit 2) for anything but one of probe_kinds().
void check_probe_kind(const std::string& kind);

// "seed_<s>": the directory of one seed's probes (or predictions).
std::string seed_dir_name(uint64_t seed);
// The seed a "seed_<s>" directory name gives, if it is one.
std::optional<uint64_t> seed_from_dir_name(const std::string& name);

// <kind>_epoch_<e>/<kind>_probes[/<variant>][/seed_<s>]: `variant` is a ProbeVariant's name
// (probe_variant.hpp; "" for the study's linear probe, which keeps the original layout).
std::filesystem::path probes_dir(const std::filesystem::path& exper_dir, const std::string& kind, int epoch,
                                 std::optional<uint64_t> seed = std::nullopt, const std::string& variant = "");
std::filesystem::path probes_file(const std::filesystem::path& exper_dir, const std::string& kind, int epoch,
                                  std::optional<uint64_t> seed = std::nullopt, const std::string& variant = "");
// <kind>_probes -> <kind>_preds in the same epoch directory;
// <kind>_probes/seed_<s> -> <kind>_preds/seed_<s>; <kind>_probes/<variant>[/seed_<s>] ->
// <kind>_preds/<variant>[/seed_<s>].
std::filesystem::path preds_dir_for(const std::filesystem::path& probes_dir, const std::string& kind);

// Every EXPER/*_epoch_*/*_probes directory holding probes.safetensors, and
// every seed directory and variant directory (with its seeds) below one, sorted
// by kind, epoch, variant and seed; Error when
// there is none, or when two directories name the same kind, epoch and seed
// (pretrained_epoch_1 and pretrained_epoch_01) and variant. Entries that look like epoch directories but do not
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

// Epoch 1's online codelength of every probe set of `kind` saved in the
// experiment (from the probes' metadata), the set without a seed first, then
// by seed; empty when there is none.
std::vector<SeedCodelength> saved_codelengths(const std::filesystem::path& exper_dir, const std::string& kind,
                                              const std::string& variant = "");

// The kind (one of probe_kinds()) named by a path component, if any.
std::optional<std::string> kind_from_path(const std::filesystem::path& path);

}  // namespace layerprobe
