#include "layerprobe/probe/experiment.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>
#include <regex>
#include <tuple>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/hash.hpp"
#include "layerprobe/probe/probe_store.hpp"
#include "layerprobe/probe/probe_variant.hpp"

namespace layerprobe {

namespace fs = std::filesystem;

const std::vector<std::string>& probe_kinds() {
  static const std::vector<std::string> kinds = {"pretrained", "fine_tuned", "control"};
  return kinds;
}

void check_probe_kind(const std::string& kind) {
  const auto& kinds = probe_kinds();
  if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end())
    throw Error("unknown model kind '" + kind + "': expected pretrained, fine_tuned or control", 2);
}

std::string seed_dir_name(uint64_t seed) { return "seed_" + std::to_string(seed); }

std::optional<uint64_t> seed_from_dir_name(const std::string& name) {
  static const std::regex seed_dir("seed_([0-9]{1,19})");
  std::smatch match;
  if (!std::regex_match(name, match, seed_dir)) return std::nullopt;
  try {
    return std::stoull(match[1].str());
  } catch (const std::out_of_range&) {
    return std::nullopt;
  }
}

fs::path model_experiment_dir(const std::string& name_or_path, const fs::path& root) {
  fs::path name = fs::path(name_or_path).lexically_normal();
  if (name.filename().empty()) name = name.parent_path();
  const std::string last = name.filename().string();
  if (last.empty() || last == "." || last == "..")
    throw Error("cannot name an experiment directory after '" + name_or_path +
                    "': give the model as a hub name (bert-base-uncased) or a directory path",
                2);
  return root / last;
}

fs::path probes_dir(const fs::path& exper_dir, const std::string& kind, int epoch, std::optional<uint64_t> seed,
                    const std::string& variant) {
  auto dir = exper_dir / (kind + "_epoch_" + std::to_string(epoch)) / (kind + "_probes");
  if (!variant.empty()) dir /= variant;
  return seed ? dir / seed_dir_name(*seed) : dir;
}

fs::path probes_file(const fs::path& exper_dir, const std::string& kind, int epoch, std::optional<uint64_t> seed,
                     const std::string& variant) {
  return probes_dir(exper_dir, kind, epoch, seed, variant) / "probes.safetensors";
}

fs::path preds_dir_for(const fs::path& probes, const std::string& kind) {
  fs::path dir = probes.filename().empty() ? probes.parent_path() : probes;
  fs::path below;  // [<variant>/][seed_<s>]
  if (seed_from_dir_name(dir.filename().string())) below = dir.filename(), dir = dir.parent_path();
  if (ProbeVariant::from_name(dir.filename().string())) below = dir.filename() / below, dir = dir.parent_path();
  const fs::path preds = dir.parent_path() / (kind + "_preds");
  return below.empty() ? preds : preds / below;
}

namespace {

struct FoundProbes {
  std::string kind;
  int epoch;
  std::string variant;
  std::optional<uint64_t> seed;
  fs::path dir;
};

std::string describe(const FoundProbes& f) {
  return f.kind + " epoch " + std::to_string(f.epoch) + (f.variant.empty() ? "" : " probe " + f.variant) +
         (f.seed ? " seed " + std::to_string(*f.seed) : "");
}

// A directory itself when it holds probes, and each of its seed_<s> directories that does.
void add_probes_in(const fs::path& dir, const std::string& kind, int epoch, const std::string& variant,
                   std::vector<FoundProbes>& found) {
  if (fs::is_regular_file(dir / "probes.safetensors")) found.push_back({kind, epoch, variant, std::nullopt, dir});
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    auto seed = seed_from_dir_name(entry.path().filename().string());
    if (seed && entry.is_directory() && fs::is_regular_file(entry.path() / "probes.safetensors"))
      found.push_back({kind, epoch, variant, seed, entry.path()});
  }
}

// <kind>_probes and its seeds, then each variant directory in it and its seeds; `variant_only`
// keeps one variant ("" the study's probes).
std::vector<FoundProbes> probes_in(const fs::path& dir, const std::string& kind, int epoch,
                                   const std::optional<std::string>& variant_only = std::nullopt) {
  std::vector<FoundProbes> found;
  if (!variant_only || variant_only->empty()) add_probes_in(dir, kind, epoch, "", found);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !ProbeVariant::from_name(name) || (variant_only && *variant_only != name)) continue;
    add_probes_in(entry.path(), kind, epoch, name, found);
  }
  return found;
}

}  // namespace

std::vector<fs::path> find_probes_dirs(const fs::path& exper_dir) {
  if (!fs::is_directory(exper_dir)) throw Error("experiment directory '" + exper_dir.string() + "' does not exist");
  static const std::regex epoch_dir("(pretrained|fine_tuned|control)_epoch_([0-9]{1,6})");
  std::vector<FoundProbes> found;
  for (const auto& entry : fs::directory_iterator(exper_dir)) {
    std::smatch match;
    std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !std::regex_match(name, match, epoch_dir)) {
      if (name.find("_epoch_") != std::string::npos)
        spdlog::warn("ignoring '{}': not a <kind>_epoch_<e> directory (kind pretrained, fine_tuned or control)",
                     entry.path().string());
      continue;
    }
    auto here = probes_in(entry.path() / (match[1].str() + "_probes"), match[1], std::stoi(match[2]));
    if (here.empty())
      spdlog::warn("ignoring '{}': it has no {} (nor seed_<s>/ or <probe variant>/ below it)", entry.path().string(),
                   (fs::path(match[1].str() + "_probes") / "probes.safetensors").string());
    found.insert(found.end(), here.begin(), here.end());
  }
  if (found.empty())
    throw Error("no probes found under '" + exper_dir.string() +
                "' (expected <kind>_epoch_<e>/<kind>_probes/probes.safetensors; run probe_train first)");
  std::sort(found.begin(), found.end(), [](const FoundProbes& a, const FoundProbes& b) {
    return std::tie(a.kind, a.epoch, a.variant, a.seed, a.dir) < std::tie(b.kind, b.epoch, b.variant, b.seed, b.dir);
  });
  for (size_t i = 1; i < found.size(); ++i)
    if (found[i].kind == found[i - 1].kind && found[i].epoch == found[i - 1].epoch &&
        found[i].variant == found[i - 1].variant && found[i].seed == found[i - 1].seed)
      throw Error("'" + found[i - 1].dir.string() + "' and '" + found[i].dir.string() + "' are both " +
                  describe(found[i]) + "; remove or rename the stray copy");
  std::vector<fs::path> dirs;
  for (auto& f : found) dirs.push_back(f.dir);
  return dirs;
}

std::vector<SeedCodelength> saved_codelengths(const fs::path& exper_dir, const std::string& kind,
                                              const std::string& variant) {
  std::vector<SeedCodelength> rows;
  const fs::path dir = probes_dir(exper_dir, kind, 1);
  if (!fs::is_directory(dir)) return rows;
  for (const auto& found : probes_in(dir, kind, 1, variant)) {
    auto stored = load_probe_model(found.dir / "probes.safetensors");
    if (stored.metadata.codelength) rows.push_back({found.seed, *stored.metadata.codelength});
  }
  std::sort(rows.begin(), rows.end(), [](const SeedCodelength& a, const SeedCodelength& b) { return a.seed < b.seed; });
  return rows;
}

std::string file_fingerprint(const fs::path& path) {
  const std::string content = read_file(path);
  Fnv1a64 hash;
  hash.add_bytes(content.data(), content.size());
  return std::to_string(content.size()) + ":" + fmt::format("{:016x}", hash.value());
}

std::optional<std::string> kind_from_path(const fs::path& path) {
  for (auto it = path.end(); it != path.begin();) {
    auto name = (--it)->string();
    for (const auto& kind : probe_kinds())
      if (name.rfind(kind, 0) == 0) return kind;
  }
  return std::nullopt;
}

}  // namespace layerprobe
