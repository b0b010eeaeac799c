#include "layerprobe/probe/experiment_eval.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <regex>
#include <tuple>
#include <unordered_set>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/json.hpp"
#include "layerprobe/probe/experiment.hpp"
#include "layerprobe/probe/probe_store.hpp"

namespace layerprobe {

namespace fs = std::filesystem;

namespace {

// Absolute, normalised, without a trailing separator.
fs::path clean_dir(const fs::path& dir) {
  fs::path p = fs::absolute(dir).lexically_normal();
  return p.filename().empty() ? p.parent_path() : p;
}

struct PredsMeta {
  std::optional<fs::path> dev_file;
  std::optional<std::string> dev_fingerprint;
  std::optional<std::string> kind;
  std::optional<int> epoch;
  std::optional<int> layers;
  std::optional<uint64_t> seed;
};

PredsMeta read_meta(const fs::path& preds_dir) {
  PredsMeta meta;
  const fs::path path = preds_dir / "preds_meta.json";
  if (!fs::exists(path)) return meta;
  const nlohmann::json j = parse_json(read_file(path), path.string());
  if (!j.is_object()) throw Error("'" + path.string() + "' must hold a JSON object");
  if (j.contains("dev_file") && j["dev_file"].is_string()) meta.dev_file = j["dev_file"].get<std::string>();
  if (j.contains("kind") && j["kind"].is_string()) meta.kind = j["kind"].get<std::string>();
  if (j.contains("epoch") && j["epoch"].is_number_integer()) meta.epoch = j["epoch"].get<int>();
  if (j.contains("layers") && j["layers"].is_number_integer()) meta.layers = j["layers"].get<int>();
  if (j.contains("seed") && j["seed"].is_number_unsigned()) meta.seed = j["seed"].get<uint64_t>();
  if (j.contains("dev_file_fingerprint") && j["dev_file_fingerprint"].is_string())
    meta.dev_fingerprint = j["dev_file_fingerprint"].get<std::string>();
  return meta;
}

// <kind>_epoch_<e>/<kind>_preds[/seed_<s>], as probe_predict lays them out.
void kind_and_epoch_from_names(const fs::path& dir, RunResults& run) {
  static const std::regex epoch_dir("(.+)_epoch_([0-9]+)");
  static const std::regex preds_name("(.+)_preds");
  run.seed = seed_from_dir_name(dir.filename().string());
  const fs::path preds_dir = run.seed ? dir.parent_path() : dir;
  std::smatch m;
  const std::string parent = preds_dir.parent_path().filename().string();
  const std::string name = preds_dir.filename().string();
  if (std::regex_match(parent, m, epoch_dir)) {
    run.kind = m[1];
    run.epoch = std::stoi(m[2]);
  } else if (std::regex_match(name, m, preds_name)) {
    run.kind = m[1];
  } else {
    run.kind = name;
  }
}

// Layer number -> prediction file, JSON preferred over the CSV. With the
// layer count probe_predict recorded, every layer must be there and files of
// layers beyond it (left by an earlier, deeper model) are skipped with a
// warning; either way the table never silently gains or loses a row.
std::map<int, fs::path> find_layer_files(const fs::path& preds_dir, std::optional<int> layers, bool allow_incomplete) {
  static const std::regex layer_file("pred_layer_([0-9]+)\\.(json|csv)");
  std::map<int, fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(preds_dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (!std::regex_match(name, m, layer_file)) continue;
    const int layer = std::stoi(m[1]);
    auto it = files.find(layer);
    if (it == files.end() || m[2] == "json") files[layer] = entry.path();
  }
  if (ec) throw Error("cannot read directory '" + preds_dir.string() + "': " + ec.message());
  if (files.empty())
    throw Error("no pred_layer_<L>.json or pred_layer_<L>.csv in '" + preds_dir.string() +
                "'; run probe_predict on the probes first");
  if (!layers) return files;
  for (auto it = files.begin(); it != files.end();) {
    if (it->first >= 1 && it->first <= *layers) {
      ++it;
      continue;
    }
    spdlog::warn("ignoring '{}': preds_meta.json says the probes have {} layers", it->second.string(), *layers);
    it = files.erase(it);
  }
  for (int layer = 1; layer <= *layers; ++layer) {
    if (files.count(layer)) continue;
    const std::string missing = "'" + preds_dir.string() + "' has no pred_layer_" + std::to_string(layer) +
                                ".json or .csv but preds_meta.json says " + std::to_string(*layers) + " layers";
    if (!allow_incomplete) throw Error(missing + "; rerun probe_predict (or pass --allow-incomplete to score the rest)");
    spdlog::warn("{}; scoring the {} layer(s) found (--allow-incomplete)", missing, files.size());
  }
  return files;
}

// The probes a preds dir was predicted with, as probe_predict lays them out:
// <kind>_epoch_<e>/<kind>_probes[/seed_<s>]/probes.safetensors beside <kind>_preds[/seed_<s>].
std::optional<fs::path> probes_beside(const fs::path& preds_dir) {
  static const std::regex preds_name("(.+)_preds");
  const bool seeded = seed_from_dir_name(preds_dir.filename().string()).has_value();
  const fs::path kind_dir = seeded ? preds_dir.parent_path() : preds_dir;
  std::smatch m;
  const std::string name = kind_dir.filename().string();
  if (!std::regex_match(name, m, preds_name)) return std::nullopt;
  fs::path probes = kind_dir.parent_path() / (m[1].str() + "_probes");
  if (seeded) probes /= preds_dir.filename();
  probes /= "probes.safetensors";
  return fs::is_regular_file(probes) ? std::optional<fs::path>(probes) : std::nullopt;
}

// Without preds_meta.json, which probe_predict writes after every layer's files, a preds dir
// beside its probes is one probe_predict did not finish (stopped, or out of disk): its layers
// may be missing or left from an earlier run. Returns the layer count when the probes tell it.
std::optional<int> layers_without_meta(const fs::path& preds_dir, bool allow_incomplete) {
  const auto probes = probes_beside(preds_dir);
  if (!probes) {
    spdlog::warn("'{}' has no preds_meta.json: scoring the layer files found without knowing how many layers the "
                 "probes have", preds_dir.string());
    return std::nullopt;
  }
  const int layers = static_cast<int>(load_probes(*probes).probes.layers());
  const std::string problem = "'" + preds_dir.string() + "' has no preds_meta.json, which probe_predict writes " +
                              "after every layer's predictions: it did not finish there (stopped, or out of disk), " +
                              "so some of the " + std::to_string(layers) + " layers of '" + probes->string() +
                              "' may be missing or stale";
  if (!allow_incomplete) throw Error(problem + "; rerun probe_predict (or pass --allow-incomplete to score the files found)");
  spdlog::warn("{}; scoring the files found (--allow-incomplete)", problem);
  return layers;
}

// The dev file must hold what probe_predict read: other content (another
// dataset, an edited copy) would score the predictions against the wrong answers.
void check_dev_file(const fs::path& preds_dir, const PredsMeta& meta, const fs::path& dev_file, GoldCache& gold) {
  if (!meta.dev_fingerprint || gold.fingerprint(dev_file) == *meta.dev_fingerprint) return;
  throw Error("the predictions in '" + preds_dir.string() + "' were made on '" + meta.dev_file.value_or("?").string() +
              "' (fingerprint " + *meta.dev_fingerprint + ") but '" + dev_file.string() +
              "' has other content (fingerprint " + gold.fingerprint(dev_file) +
              "); evaluate against the file they were made on, or rerun probe_predict with --dev-file " +
              dev_file.string());
}

// Ids the dev file does not have mean the predictions were made on another file.
void check_ids_known(const PredictionMap& predictions, const GoldDataset& dataset, const fs::path& file,
                     const fs::path& dev_file) {
  std::unordered_set<std::string> known;
  for (const auto& question : dataset.questions) known.insert(question.id);
  size_t unknown = 0;
  const std::string* first = nullptr;
  for (const auto& [id, answer] : predictions.items)
    if (!known.count(id) && unknown++ == 0) first = &id;
  if (unknown)
    throw Error("'" + file.string() + "': " + std::to_string(unknown) + " of " + std::to_string(predictions.size()) +
                " predicted question ids (first '" + *first + "') are not in '" + dev_file.string() +
                "'; the predictions were made on another dev file: pass that one with --dev-file");
}

}  // namespace

const GoldDataset& GoldCache::get(const fs::path& dev_file) {
  auto it = loaded_.find(dev_file);
  if (it == loaded_.end()) it = loaded_.emplace(dev_file, load_gold_dataset(dev_file)).first;
  return it->second;
}

const std::string& GoldCache::fingerprint(const fs::path& dev_file) {
  auto it = fingerprints_.find(dev_file);
  if (it == fingerprints_.end()) it = fingerprints_.emplace(dev_file, file_fingerprint(dev_file)).first;
  return it->second;
}

std::vector<fs::path> find_preds_dirs(const fs::path& exper_dir) {
  static const std::regex epoch_dir(".+_epoch_[0-9]+");
  static const std::regex preds_dir(".+_preds");
  if (!fs::is_directory(exper_dir)) throw Error("'" + exper_dir.string() + "' is not a directory", 2);
  std::vector<fs::path> found;
  for (const auto& epoch : fs::directory_iterator(exper_dir)) {
    if (!epoch.is_directory() || !std::regex_match(epoch.path().filename().string(), epoch_dir)) continue;
    for (const auto& preds : fs::directory_iterator(epoch.path())) {
      if (!preds.is_directory() || !std::regex_match(preds.path().filename().string(), preds_dir)) continue;
      bool seeds = false;
      for (const auto& seed : fs::directory_iterator(preds.path()))
        if (seed.is_directory() && seed_from_dir_name(seed.path().filename().string())) {
          found.push_back(clean_dir(seed.path()));
          seeds = true;
        }
      // A preds dir holding seed directories is scored per seed; its own files, if any, too.
      if (!seeds || fs::exists(preds.path() / "preds_meta.json")) found.push_back(clean_dir(preds.path()));
    }
  }
  if (found.empty())
    throw Error("no <kind>_epoch_<e>/<kind>_preds directories in '" + exper_dir.string() +
                "'; run probe_predict on the experiment first");
  std::sort(found.begin(), found.end());
  return found;
}

RunResults evaluate_preds_dir(const fs::path& dir, const PredsEvalOptions& options, GoldCache& gold) {
  const fs::path preds_dir = clean_dir(dir);
  if (!fs::is_directory(preds_dir)) throw Error("'" + dir.string() + "' is not a directory", 2);
  const PredsMeta meta = read_meta(preds_dir);
  RunResults run;
  kind_and_epoch_from_names(preds_dir, run);
  if ((meta.kind && *meta.kind != run.kind) || (meta.epoch && *meta.epoch != run.epoch))
    spdlog::warn("'{}' is named as {} epoch {} but its preds_meta.json says {} epoch {}; reporting the latter",
                 preds_dir.string(), run.kind, run.epoch, meta.kind.value_or(run.kind), meta.epoch.value_or(run.epoch));
  if (meta.kind) run.kind = *meta.kind;
  if (meta.epoch) run.epoch = *meta.epoch;
  if (meta.seed) run.seed = meta.seed;

  const std::optional<fs::path> dev_file = options.dev_file ? options.dev_file : meta.dev_file;
  if (!dev_file)
    throw Error("no dev file for '" + preds_dir.string() + "': its preds_meta.json (written by probe_predict) is " +
                "missing or has no \"dev_file\"; pass --dev-file PATH", 2);
  check_dev_file(preds_dir, meta, *dev_file, gold);
  run.dev_file = dev_file->string();
  const GoldDataset& dataset = gold.get(*dev_file);

  EvalOptions eval_options;
  eval_options.allow_missing = options.allow_missing;
  eval_options.skip_unlabeled = options.skip_unlabeled;
  const auto layers = fs::exists(preds_dir / "preds_meta.json") ? meta.layers
                                                                 : layers_without_meta(preds_dir, options.allow_incomplete);
  const auto layer_files = find_layer_files(preds_dir, layers, options.allow_incomplete);
  spdlog::info("{}: scoring {} layer(s) against {}", preds_dir.string(), layer_files.size(), dev_file->string());
  for (const auto& [layer, file] : layer_files) {
    // results.csv and summary.csv are written only after every layer is scored.
    throw_if_stop_requested("Nothing was written; rerun the same command.");
    const PredictionMap predictions =
        file.extension() == ".json" ? load_predictions_json(file) : load_predictions_csv(file);
    check_ids_known(predictions, dataset, file, *dev_file);
    SquadEvaluation eval;
    try {
      eval = evaluate_squad(dataset, predictions, eval_options);
    } catch (const Error& e) {
      throw Error("'" + file.string() + "' against '" + dev_file->string() + "': " + e.what(), e.exit_code());
    }
    if (eval.missing) spdlog::warn("{}: {} questions had no prediction, scored as \"\"", file.string(), eval.missing);
    run.layers.push_back({layer, std::move(eval)});
  }
  return run;
}

void check_distinct_runs(const std::vector<RunResults>& runs) {
  std::map<std::tuple<std::string, int, std::optional<uint64_t>>, size_t> seen;
  for (const auto& run : runs)
    if (++seen[{run.kind, run.epoch, run.seed}] == 2)
      throw Error("two prediction directories are both " + run.kind + " epoch " + std::to_string(run.epoch) +
                  (run.seed ? " seed " + std::to_string(*run.seed) : "") +
                  "; remove or rename the stray copy so that summary.csv has one row per layer");
}

fs::path results_csv_path(const fs::path& preds_dir) {
  const fs::path dir = clean_dir(preds_dir);
  if (auto seed = seed_from_dir_name(dir.filename().string()))
    return dir.parent_path().parent_path() / ("results_" + seed_dir_name(*seed) + ".csv");
  return dir.parent_path() / "results.csv";
}

}  // namespace layerprobe
