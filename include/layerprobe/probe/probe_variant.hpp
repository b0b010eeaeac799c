// What one probe set is beyond its encoder and seed: its architecture
// (linear, rank:R, mlp:W; Pimentel et al. 2020's complexity axis), the task
// its labels come from (the SQuAD spans, or the control task of
// probe/control_task.hpp; Hewitt & Liang 2019) and its input (one layer, the
// conditional input [layer l ; layer 0], or layer 0 alone; Hewitt et al. 2021).
// The study's probe is linear, SQuAD, one layer: it keeps the original layout
// <kind>_probes/; every other variant lives in <kind>_probes/<name>/, its
// predictions in <kind>_preds/<name>/.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace layerprobe {

struct ProbeArch {
  // tuned_lens: not a probe but the tuned lens (Belrose et al. 2023; probe_model.hpp), trained and
  // stored like a probe set (probe_train --tuned-lens), never part of a complexity sweep.
  enum class Kind { linear, rank, mlp, tuned_lens };
  Kind kind = Kind::linear;
  int64_t width = 0;  // R of rank:R, W of mlp:W

  // "linear", "rank:R" or "mlp:W" (R, W >= 1), or "tuned_lens"; usage Error (exit 2) naming the spec otherwise.
  static ProbeArch parse(const std::string& spec);
  bool is_lens() const { return kind == Kind::tuned_lens; }
  std::string spec() const;  // "rank:8"
  std::string name() const;  // "rank_8": directory names
  // Trained parameters of one layer's probe (both heads) over inputs of `input` units:
  // linear 2H + 2; rank:R R(H + 2) + 2; mlp:W W(H + 1) + 2W + 2; tuned_lens H(H + 1).
  int64_t parameters(int64_t input) const;
  bool operator==(const ProbeArch& other) const { return kind == other.kind && width == other.width; }
  bool operator!=(const ProbeArch& other) const { return !(*this == other); }
};

// Comma-separated specs ("rank:1,linear,mlp:256"), each once, no tuned_lens; usage Error (exit 2) otherwise.
std::vector<ProbeArch> parse_probe_archs(const std::vector<std::string>& specs);

enum class ProbeTask { squad, control_task };
enum class ProbeInput {
  layer,        // hidden state l (1..L): the study's probe
  conditional,  // [hidden state l ; hidden state 0], 2H units
  embeddings,   // hidden state 0 alone: one probe, reported as layer 0
};

struct ProbeVariant {
  ProbeArch arch;
  ProbeTask task = ProbeTask::squad;
  ProbeInput input = ProbeInput::layer;

  // linear, SQuAD, one layer: the study's probe in the study's layout.
  bool is_default() const;
  // "" for the default; else "<arch name>[.control_task][.conditional|.embeddings]".
  std::string name() const;
  // The variant a directory name gives, if it is one (not the default's "").
  static std::optional<ProbeVariant> from_name(const std::string& name);
  // The variant's keys in a probe set's training options (none for the default, so the
  // study's probes are saved exactly as before): probe, task, input.
  void add_to(nlohmann::json& training_options) const;
  // Error naming `source` when the keys are present but wrong.
  static ProbeVariant from_training_options(const nlohmann::json& training_options, const std::string& source);

  // Input units of each probe for hidden states of width `hidden`.
  int64_t input_size(int64_t hidden) const { return input == ProbeInput::conditional ? 2 * hidden : hidden; }
  // Probes in the set for an encoder of `layers` layers (1 for embeddings).
  int64_t probe_layers(int64_t layers) const { return input == ProbeInput::embeddings ? 1 : layers; }
  // The layer number of the set's first probe: 0 for embeddings, else 1.
  int first_layer() const { return input == ProbeInput::embeddings ? 0 : 1; }

  bool operator==(const ProbeVariant& other) const {
    return arch == other.arch && task == other.task && input == other.input;
  }
  bool operator!=(const ProbeVariant& other) const { return !(*this == other); }
};

// The variants probe_train trains for these options: every architecture on the SQuAD task;
// with control_task, each again on the control task; with conditional, each on
// [layer l ; layer 0] and on layer 0 alone.
std::vector<ProbeVariant> probe_variants(const std::vector<ProbeArch>& archs, bool control_task, bool conditional);

// The architecture the report's per-layer tables and plots follow: linear when it is among
// `archs`, else the first.
ProbeArch primary_arch(const std::vector<ProbeArch>& archs);

}  // namespace layerprobe
