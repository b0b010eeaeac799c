// The study's workflow: train every layer's probe on a frozen model
// (probe_train) and predict answers with every layer's probe (probe_predict).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "layerprobe/model/model_dir.hpp"
#include "layerprobe/squad/features.hpp"

namespace layerprobe {

struct ProbeTrainOptions {
  std::vector<std::string> kinds;  // "pretrained" and/or "fine_tuned"
  // Also probe a control: a random-init copy of the first kind's architecture
  // (probe/control.hpp), HF-initialised after torch::manual_seed(control_seed).
  bool control = false;
  uint64_t control_seed = 1;
  std::string device = "cpu";
  int epochs = 1;
  std::filesystem::path pretrained_model = "models/albert-base-v2";
  std::filesystem::path fine_tuned_model = "models/twmkn9/albert-base-v2-squad2";
  std::filesystem::path train_file;  // default $SQUAD_DIR/train-v2.0.json
  std::filesystem::path vocab;       // default: the model's own tokenizer files
  std::filesystem::path output_dir = ".";
  int batch_size = 8;
  double learning_rate = 5e-5;
  WindowOptions window;
  uint64_t seed = 1;  // batch order; also the probes' seed when `seeds` is empty
  // One probe set per seed (initialisation and dropout), all trained from one
  // encoder pass in the same batch order, each in <kind>_probes/seed_<s>/.
  // Empty: one set seeded by `seed`, in <kind>_probes/ itself.
  std::vector<uint64_t> seeds;
  int64_t max_train_features = 0;  // 0 = all
  std::string precision = "fp32";  // the encoder's: fp32, or bf16/fp16 on a GPU (precision.hpp)
  bool overwrite = false;
  // Probe architectures (probe_variant.hpp), each a probe set of its own from the same encoder
  // pass: "linear" (the study's), "rank:R", "mlp:W". Every set but linear on the SQuAD task
  // goes to <kind>_probes/<variant>/.
  std::vector<std::string> probes = {"linear"};
  // Also train each architecture on the control task (probe/control_task.hpp), seeded by
  // control_task_seed, for its selectivity.
  bool control_task = false;
  uint64_t control_task_seed = 1;
  // Also train each architecture on [layer l ; layer 0] and on layer 0 alone (conditional probing).
  bool conditional = false;
  // Also train the tuned lens (probe_model.hpp) of every model with a QA head (fine_tuned), from
  // the same pass, in <kind>_probes/tuned_lens/ (one set: it has no seed-dependent part).
  bool tuned_lens = false;
};

// Each kind's model directory (options.kinds, in order), opened once at the
// edge (model/model_dir.hpp); kinds naming the same directory share one. The
// options' values are checked first (usage errors before any model is read);
// Error when two directories tokenize differently (one feature set serves both).
using OpenedModels = std::vector<std::shared_ptr<const OpenedModel>>;
OpenedModels open_probe_models(const ProbeTrainOptions& options);

// The kind a model directory is probed as when the final study's form names it
// without --kind: fine_tuned when its weights hold a QA head (qa_outputs.*),
// else pretrained.
std::string inferred_probe_kind(const OpenedModel& model);

// Trains on `models` (open_probe_models(options); the control reads the
// first), saves after each epoch, and resumes after the last saved epoch.
// Reads no model directory's config.json or tokenizer files itself.
void train_probes(const ProbeTrainOptions& options, const OpenedModels& models);
// open_probe_models, then train_probes.
void train_probes(const ProbeTrainOptions& options);

struct ProbePredictOptions {
  std::string mode = "exper";  // "exper" (walk DIR) or "probes" (one probes dir)
  std::filesystem::path dir;
  std::string device = "cpu";
  std::filesystem::path dev_file;  // default $SQUAD_DIR/dev-v2.0.json
  // Override the model recorded in the probes' metadata, per kind.
  std::filesystem::path pretrained_model, fine_tuned_model;
  std::filesystem::path vocab;  // default: the one the probes were trained with
  int batch_size = 32;
  int max_answer_length = 17;
  int n_best_size = 20;
  double null_score_diff_threshold = 0.0;
  std::string precision = "fp32";  // the encoder's: fp32, or bf16/fp16 on a GPU (precision.hpp)
};

// Writes <kind>_preds/ beside every probes directory.
void predict_probes(const ProbePredictOptions& options);

}  // namespace layerprobe
