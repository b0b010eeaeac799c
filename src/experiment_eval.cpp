#include "layerprobe/experiment_eval.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <regex>

#include "layerprobe/common.hpp"

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
  std::optional<std::string> kind;
  std::optional<int> epoch;
};

PredsMeta read_meta(const fs::path& preds_dir) {
  PredsMeta meta;
  const fs::path path = preds_dir / "preds_meta.json";
  if (!fs::exists(path)) return meta;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error("'" + path.string() + "' is not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw Error("'" + path.string() + "' must hold a JSON object");
  if (j.contains("dev_file") && j["dev_file"].is_string()) meta.dev_file = j["dev_file"].get<std::string>();
  if (j.contains("kind") && j["kind"].is_string()) meta.kind = j["kind"].get<std::string>();
  if (j.contains("epoch") && j["epoch"].is_number_integer()) meta.epoch = j["epoch"].get<int>();
  return meta;
}

// <kind>_epoch_<e>/<kind>_preds, as probe_predict lays them out.
void kind_and_epoch_from_names(const fs::path& preds_dir, RunResults& run) {
  static const std::regex epoch_dir("(.+)_epoch_([0-9]+)");
  static const std::regex preds_name("(.+)_preds");
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

// Layer number -> prediction file, JSON preferred over the CSV.
std::map<int, fs::path> find_layer_files(const fs::path& preds_dir) {
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
  return files;
}

}  // namespace

const GoldDataset& GoldCache::get(const fs::path& dev_file) {
  auto it = loaded_.find(dev_file);
  if (it == loaded_.end()) it = loaded_.emplace(dev_file, load_gold_dataset(dev_file)).first;
  return it->second;
}

std::vector<fs::path> find_preds_dirs(const fs::path& exper_dir) {
  static const std::regex epoch_dir(".+_epoch_[0-9]+");
  static const std::regex preds_dir(".+_preds");
  if (!fs::is_directory(exper_dir)) throw Error("'" + exper_dir.string() + "' is not a directory", 2);
  std::vector<fs::path> found;
  for (const auto& epoch : fs::directory_iterator(exper_dir)) {
    if (!epoch.is_directory() || !std::regex_match(epoch.path().filename().string(), epoch_dir)) continue;
    for (const auto& preds : fs::directory_iterator(epoch.path()))
      if (preds.is_directory() && std::regex_match(preds.path().filename().string(), preds_dir))
        found.push_back(clean_dir(preds.path()));
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
  if (meta.kind) run.kind = *meta.kind;
  if (meta.epoch) run.epoch = *meta.epoch;

  const std::optional<fs::path> dev_file = options.dev_file ? options.dev_file : meta.dev_file;
  if (!dev_file)
    throw Error("no dev file for '" + preds_dir.string() + "': its preds_meta.json (written by probe_predict) is " +
                "missing or has no \"dev_file\"; pass --dev-file PATH", 2);
  const GoldDataset& dataset = gold.get(*dev_file);

  EvalOptions eval_options;
  eval_options.allow_missing = options.allow_missing;
  for (const auto& [layer, file] : find_layer_files(preds_dir)) {
    const PredictionMap predictions =
        file.extension() == ".json" ? load_predictions_json(file) : load_predictions_csv(file);
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

fs::path results_csv_path(const fs::path& preds_dir) { return clean_dir(preds_dir).parent_path() / "results.csv"; }

}  // namespace layerprobe
