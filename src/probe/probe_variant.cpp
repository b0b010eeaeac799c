#include "layerprobe/probe/probe_variant.hpp"

#include <algorithm>
#include <regex>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

ProbeArch ProbeArch::parse(const std::string& spec) {
  static const std::regex pattern("(linear)|(rank|mlp):([0-9]{1,7})");
  std::smatch match;
  if (spec == "tuned_lens") return ProbeArch{Kind::tuned_lens, 0};
  if (std::regex_match(spec, match, pattern)) {
    if (match[1].matched) return ProbeArch{};
    const int64_t width = std::stoll(match[3].str());
    if (width >= 1) return ProbeArch{match[2] == "rank" ? Kind::rank : Kind::mlp, width};
  }
  throw Error("probe '" + spec + "': expected linear, rank:R or mlp:W with R, W >= 1 (e.g. --probe rank:1,linear,mlp:256)",
              2);
}

std::string ProbeArch::spec() const {
  if (kind == Kind::linear) return "linear";
  if (kind == Kind::tuned_lens) return "tuned_lens";
  return std::string(kind == Kind::rank ? "rank:" : "mlp:") + std::to_string(width);
}

std::string ProbeArch::name() const {
  std::string out = spec();
  std::replace(out.begin(), out.end(), ':', '_');
  return out;
}

int64_t ProbeArch::parameters(int64_t input) const {
  switch (kind) {
    case Kind::linear: return 2 * input + 2;
    case Kind::rank: return width * (input + 2) + 2;
    case Kind::mlp: return width * (input + 1) + 2 * width + 2;
    case Kind::tuned_lens: return input * (input + 1);
  }
  return 0;
}

std::vector<ProbeArch> parse_probe_archs(const std::vector<std::string>& specs) {
  std::vector<ProbeArch> archs;
  for (const auto& spec : specs) {
    auto arch = ProbeArch::parse(spec);
    if (arch.is_lens()) throw Error("--probe tuned_lens: the tuned lens is trained with --tuned-lens", 2);
    if (std::find(archs.begin(), archs.end(), arch) != archs.end())
      throw Error("--probe lists '" + arch.spec() + "' twice; give each probe once", 2);
    archs.push_back(arch);
  }
  if (archs.empty()) throw Error("--probe needs at least one probe (linear, rank:R or mlp:W)", 2);
  return archs;
}

namespace {

const char* variant_task_name(ProbeTask task) { return task == ProbeTask::control_task ? "control_task" : "squad"; }

const char* variant_input_name(ProbeInput input) {
  switch (input) {
    case ProbeInput::conditional: return "conditional";
    case ProbeInput::embeddings: return "embeddings";
    case ProbeInput::layer: break;
  }
  return "layer";
}

}  // namespace

bool ProbeVariant::is_default() const {
  return arch.kind == ProbeArch::Kind::linear && task == ProbeTask::squad && input == ProbeInput::layer;
}

std::string ProbeVariant::name() const {
  if (is_default()) return "";
  std::string out = arch.name();
  if (task != ProbeTask::squad) out += std::string(".") + variant_task_name(task);
  if (input != ProbeInput::layer) out += std::string(".") + variant_input_name(input);
  return out;
}

std::optional<ProbeVariant> ProbeVariant::from_name(const std::string& name) {
  static const std::regex pattern(
      "(linear|rank_[0-9]{1,7}|mlp_[0-9]{1,7}|tuned_lens)(\\.control_task)?(\\.conditional|\\.embeddings)?");
  std::smatch match;
  if (!std::regex_match(name, match, pattern)) return std::nullopt;
  ProbeVariant variant;
  std::string spec = match[1].str();
  if (spec != "tuned_lens") std::replace(spec.begin(), spec.end(), '_', ':');
  try {
    variant.arch = ProbeArch::parse(spec);
  } catch (const Error&) {
    return std::nullopt;
  }
  if (match[2].matched) variant.task = ProbeTask::control_task;
  if (match[3].matched) variant.input = match[3] == ".conditional" ? ProbeInput::conditional : ProbeInput::embeddings;
  if (variant.is_default() || variant.name() != name) return std::nullopt;
  return variant;
}

void ProbeVariant::add_to(nlohmann::json& training_options) const {
  if (is_default()) return;
  training_options["probe"] = arch.spec();
  training_options["task"] = variant_task_name(task);
  training_options["input"] = variant_input_name(input);
}

ProbeVariant ProbeVariant::from_training_options(const nlohmann::json& options, const std::string& source) {
  ProbeVariant variant;
  auto text = [&](const char* key, const char* fallback) -> std::string {
    auto it = options.find(key);
    if (it == options.end()) return fallback;
    if (!it->is_string()) throw Error("'" + source + "': training option '" + key + "' is not a string");
    return it->get<std::string>();
  };
  try {
    variant.arch = ProbeArch::parse(text("probe", "linear"));
  } catch (const Error& e) {
    throw Error("'" + source + "': " + e.what());
  }
  const std::string task = text("task", "squad"), input = text("input", "layer");
  if (task != "squad" && task != "control_task")
    throw Error("'" + source + "': training option 'task' is '" + task + "' (expected squad or control_task)");
  if (input != "layer" && input != "conditional" && input != "embeddings")
    throw Error("'" + source + "': training option 'input' is '" + input + "' (expected layer, conditional or embeddings)");
  variant.task = task == "control_task" ? ProbeTask::control_task : ProbeTask::squad;
  variant.input = input == "conditional" ? ProbeInput::conditional
                  : input == "embeddings" ? ProbeInput::embeddings
                                          : ProbeInput::layer;
  return variant;
}

std::vector<ProbeVariant> probe_variants(const std::vector<ProbeArch>& archs, bool control_task, bool conditional) {
  std::vector<ProbeVariant> variants;
  for (const auto& arch : archs) variants.push_back({arch, ProbeTask::squad, ProbeInput::layer});
  if (control_task)
    for (const auto& arch : archs) variants.push_back({arch, ProbeTask::control_task, ProbeInput::layer});
  if (conditional)
    for (const auto& arch : archs) {
      variants.push_back({arch, ProbeTask::squad, ProbeInput::conditional});
      variants.push_back({arch, ProbeTask::squad, ProbeInput::embeddings});
    }
  return variants;
}

ProbeArch primary_arch(const std::vector<ProbeArch>& archs) {
  for (const auto& arch : archs)
    if (arch.kind == ProbeArch::Kind::linear) return arch;
  return archs.empty() ? ProbeArch{} : archs.front();
}

}  // namespace layerprobe
