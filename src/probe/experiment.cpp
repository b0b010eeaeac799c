#include "layerprobe/probe/experiment.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>
#include <regex>
#include <tuple>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

namespace fs = std::filesystem;

void check_probe_kind(const std::string& kind) {
  if (kind != "pretrained" && kind != "fine_tuned")
    throw Error("unknown model kind '" + kind + "': expected pretrained or fine_tuned", 2);
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

fs::path probes_dir(const fs::path& exper_dir, const std::string& kind, int epoch) {
  return exper_dir / (kind + "_epoch_" + std::to_string(epoch)) / (kind + "_probes");
}

fs::path probes_file(const fs::path& exper_dir, const std::string& kind, int epoch) {
  return probes_dir(exper_dir, kind, epoch) / "probes.safetensors";
}

fs::path preds_dir_for(const fs::path& probes, const std::string& kind) {
  return probes.parent_path() / (kind + "_preds");
}

std::vector<fs::path> find_probes_dirs(const fs::path& exper_dir) {
  if (!fs::is_directory(exper_dir)) throw Error("experiment directory '" + exper_dir.string() + "' does not exist");
  static const std::regex epoch_dir("(pretrained|fine_tuned)_epoch_([0-9]{1,6})");
  struct Found {
    std::string kind;
    int epoch;
    fs::path dir;
  };
  std::vector<Found> found;
  for (const auto& entry : fs::directory_iterator(exper_dir)) {
    std::smatch match;
    std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !std::regex_match(name, match, epoch_dir)) {
      if (name.find("_epoch_") != std::string::npos)
        spdlog::warn("ignoring '{}': not a <kind>_epoch_<e> directory (kind pretrained or fine_tuned)",
                     entry.path().string());
      continue;
    }
    auto dir = entry.path() / (match[1].str() + "_probes");
    if (fs::is_regular_file(dir / "probes.safetensors"))
      found.push_back({match[1], std::stoi(match[2]), dir});
    else
      spdlog::warn("ignoring '{}': it has no {}", entry.path().string(),
                   (fs::path(match[1].str() + "_probes") / "probes.safetensors").string());
  }
  if (found.empty())
    throw Error("no probes found under '" + exper_dir.string() +
                "' (expected <kind>_epoch_<e>/<kind>_probes/probes.safetensors; run probe_train first)");
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) {
    return std::tie(a.kind, a.epoch, a.dir) < std::tie(b.kind, b.epoch, b.dir);
  });
  for (size_t i = 1; i < found.size(); ++i)
    if (found[i].kind == found[i - 1].kind && found[i].epoch == found[i - 1].epoch)
      throw Error("'" + found[i - 1].dir.string() + "' and '" + found[i].dir.string() + "' are both " +
                  found[i].kind + " epoch " + std::to_string(found[i].epoch) +
                  "; remove or rename the stray copy");
  std::vector<fs::path> dirs;
  for (auto& f : found) dirs.push_back(f.dir);
  return dirs;
}

std::string file_fingerprint(const fs::path& path) {
  const std::string content = read_file(path);
  uint64_t hash = 1469598103934665603ULL;  // FNV-1a 64
  for (unsigned char byte : content) {
    hash ^= byte;
    hash *= 1099511628211ULL;
  }
  return std::to_string(content.size()) + ":" + fmt::format("{:016x}", hash);
}

std::optional<std::string> kind_from_path(const fs::path& path) {
  for (auto it = path.end(); it != path.begin();) {
    auto name = (--it)->string();
    if (name.rfind("fine_tuned", 0) == 0) return "fine_tuned";
    if (name.rfind("pretrained", 0) == 0) return "pretrained";
  }
  return std::nullopt;
}

}  // namespace layerprobe
