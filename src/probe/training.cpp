#include <spdlog/spdlog.h>

#include <fstream>
#include <algorithm>
#include <map>
#include <optional>

#include "layerprobe/squad/batch.hpp"
#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/core/device.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/dist/dist.hpp"
#include "layerprobe/dist/sharding.hpp"
#include "layerprobe/probe/codelength.hpp"
#include "layerprobe/probe/control.hpp"
#include "layerprobe/probe/control_task.hpp"
#include "layerprobe/probe/probe_model.hpp"
#include "layerprobe/probe/probe_variant.hpp"
#include "layerprobe/probe/experiment.hpp"
#include "layerprobe/squad/features.hpp"
#include "layerprobe/train/finetune.hpp"
#include "layerprobe/model/family.hpp"
#include "layerprobe/model/model_dir.hpp"
#include "layerprobe/probe/probe_store.hpp"
#include "layerprobe/probe/workflow.hpp"
#include "layerprobe/core/progress.hpp"
#include "layerprobe/squad/squad.hpp"
#include "layerprobe/squad/encode_loop.hpp"
#include "layerprobe/text/tokenizer.hpp"

namespace layerprobe {

namespace fs = std::filesystem;

namespace {

// One probe set: the probes of one variant and seed on one encoder, and how far they got.
struct SeedProbes {
  ProbeVariant variant;          // architecture, task and input (the study's probe by default)
  std::optional<uint64_t> seed;  // set when trained with --seeds: its seed_<s> directory
  uint64_t probe_seed = 1;       // initialisation and dropout
  nlohmann::json training_options;
  std::unique_ptr<ProbeModel> probes;
  int done_epochs = 0;
  int64_t features_seen = 0;
  torch::Tensor loss_sum;                // [L], over the current epoch
  std::optional<Codelength> codelength;  // accumulated during epoch 1
};

// One encoder being probed, and the probe sets (one per seed) it feeds.
struct ProbeRun {
  std::string kind;
  fs::path model_dir;  // for control: the directory whose config.json it copies
  std::shared_ptr<const OpenedModel> opened;  // model_dir, opened once
  LoadedModel model;
  std::vector<SeedProbes> sets;

  int done_epochs() const {
    int done = sets.front().done_epochs;
    for (const auto& set : sets) done = std::min(done, set.done_epochs);
    return done;
  }
};

nlohmann::json training_options_json(const ProbeTrainOptions& o) {
  nlohmann::json json = {{"train_file", fs::absolute(o.train_file).lexically_normal().string()},
          {"batch_size", o.batch_size},
          {"learning_rate", o.learning_rate},
          {"max_seq_length", o.window.max_seq_length},
          {"doc_stride", o.window.doc_stride},
          {"max_query_length", o.window.max_query_length},
          {"seed", o.seed},
          {"max_train_features", o.max_train_features},
          {"vocab", o.vocab.empty() ? "" : fs::absolute(o.vocab).lexically_normal().string()},
          {"dropout", ProbeOptions{}.dropout},
          {"optimizer", "AdamW(betas=(0.9,0.999), eps=1e-8, weight_decay=0, correct_bias=False), clip 1.0 per head"},
          {"padding_masked", true}};
  // Recorded only when not fp32, so probes saved before the option existed still resume.
  if (o.precision != "fp32") json["precision"] = o.precision;
  // Likewise only when on; probe_predict featurises the dev file the same way (WindowOptions::from_json).
  if (o.window.hf_legacy_offsets) json["hf_legacy_offsets"] = true;
  // Likewise only when not the encoders' "first" (resolved from the model's family by train_probes).
  if (o.window.null_position != "first") json["null_position"] = o.window.null_position;
  // The training file's content, as probe_predict records its dev file's: a resume onto a changed file is refused.
  json["train_file_fingerprint"] = file_fingerprint(o.train_file);
  return json;
}

ProbeOptions probe_options(const ProbeTrainOptions& o) {
  ProbeOptions options;
  options.learning_rate = o.learning_rate;
  return options;
}

// What one run's training options add to the shared ones: the control
// encoder's seed and weights, and the probe seed of a --seeds set.
nlohmann::json run_training_options(const nlohmann::json& shared, const ProbeRun& run, const ProbeTrainOptions& o) {
  nlohmann::json json = shared;
  if (run.kind != "control") return json;
  json["control_seed"] = o.control_seed;
  json["control_init"] = kControlInit;
  json["control_weights"] = weights_fingerprint(*run.model.model);
  return json;
}

SeedProbes seed_probes(const ProbeVariant& variant, std::optional<uint64_t> seed, uint64_t probe_seed,
                       nlohmann::json training_options) {
  SeedProbes set;
  set.variant = variant;
  set.seed = seed;
  set.probe_seed = probe_seed;
  set.training_options = std::move(training_options);
  return set;
}

// One probe set per variant and seed. A variant's training options add its architecture, task
// and input (and the control task's settings); the study's probe adds nothing.
std::vector<SeedProbes> seed_sets(const ProbeTrainOptions& options, const nlohmann::json& run_options,
                                  const std::vector<ProbeVariant>& variants,
                                  const std::optional<ControlTaskSpec>& control_task) {
  std::vector<SeedProbes> sets;
  for (const auto& variant : variants) {
    nlohmann::json variant_options = run_options;
    variant.add_to(variant_options);
    if (variant.task == ProbeTask::control_task) variant_options["control_task"] = control_task->to_json();
    if (options.seeds.empty()) {
      sets.push_back(seed_probes(variant, std::nullopt, options.seed, variant_options));
      continue;
    }
    for (uint64_t seed : options.seeds) {
      nlohmann::json json = variant_options;
      json["probe_seed"] = seed;
      sets.push_back(seed_probes(variant, seed, seed, json));
    }
  }
  return sets;
}

std::string describe_set(const ProbeRun& run, const SeedProbes& set) {
  return run.kind + (set.variant.is_default() ? "" : " " + set.variant.name()) +
         (set.seed ? " seed " + std::to_string(*set.seed) : "");
}

// Picks up the last epoch already saved for this probe set, so a rerun resumes.
void resume(const ProbeRun& run, SeedProbes& set, const ProbeTrainOptions& options) {
  for (int epoch = options.epochs; epoch >= 1; --epoch) {
    auto path = probes_file(options.output_dir, run.kind, epoch, set.seed, set.variant.name());
    if (!fs::exists(path)) continue;
    auto stored = [&] {
      try {
        return load_probe_model(path, probe_options(options));
      } catch (const Error& e) {  // never resumed from: a damaged or diverged epoch would poison the rest
        throw Error(std::string(e.what()) + " (a rerun resumes from the last saved epoch: delete that epoch's " +
                    "directory to resume from the one before, or pass --overwrite to train from the start)");
      }
    }();
    auto model_path = fs::absolute(run.model_dir).lexically_normal().string();
    nlohmann::json expected = set.training_options;
    const auto& recorded = stored.metadata.training_options;
    if (!recorded.contains("train_file_fingerprint")) {
      expected.erase("train_file_fingerprint");  // probes saved before training files were fingerprinted
    } else if (recorded["train_file_fingerprint"] != expected["train_file_fingerprint"]) {
      throw Error("'" + path.string() + "' was trained on '" + recorded.value("train_file", "?") + "' (fingerprint " +
                  recorded["train_file_fingerprint"].dump() + ") but '" + options.train_file.string() +
                  "' now has other content (fingerprint " + expected["train_file_fingerprint"].dump() +
                  "); resuming would mix two training sets: restore the file, or pass --overwrite to train again "
                  "on the new one (or another --output-dir)");
    }
    if (stored.metadata.model_path != model_path || recorded != expected)
      throw Error("'" + path.string() + "' was trained with other settings (model '" + stored.metadata.model_path +
                  "', options " + stored.metadata.training_options.dump() +
                  "); pass --overwrite to start again, or another --output-dir");
    set.probes = std::move(stored.probes);
    set.done_epochs = epoch;
    set.features_seen = stored.metadata.features_seen;
    spdlog::info("{}: resuming after epoch {} ({})", describe_set(run, set), epoch, path.string());
    return;
  }
}

// Each batch's dropout masks follow from (probe seed, epoch, model, batch), so
// a resumed run repeats them exactly.
uint64_t dropout_seed(uint64_t seed, int epoch, const std::string& kind, size_t batch) {
  const uint64_t kind_index = kind == "fine_tuned" ? 1 : kind == "control" ? 2 : 0;
  return ((seed * 7919ULL + static_cast<uint64_t>(epoch)) * 104729ULL + kind_index) * 1000003ULL + batch;
}

// The training features, and with --control-task the control task fitted on them and each
// feature's control targets.
struct TrainingData {
  std::vector<SquadFeature> features;
  std::optional<ControlTaskSpec> control_task;
  std::vector<std::pair<int, int>> control_targets;  // per feature
};

TrainingData training_data(const ProbeTrainOptions& options, const Tokenizer& tokenizer) {
  SquadLoadOptions load;
  load.is_training = true;
  auto dataset = load_squad(options.train_file, load);
  if (dataset.skipped) spdlog::warn("{}: skipped {} training examples whose answer does not match the context",
                                    options.train_file.string(), dataset.skipped);
  FeatureOptions feature_options;
  feature_options.window = options.window;
  feature_options.is_training = true;
  feature_options.decoding_fields = false;
  TrainingData data;
  auto& features = data.features;
  features = convert_examples_to_features(dataset.examples, tokenizer, feature_options);
  if (options.control_task) {
    // Fitted on every question of the train file, before --max-train-features cuts any.
    const auto can_start = control_start_tokens(tokenizer);
    data.control_task = fit_control_task(dataset.examples, features, options.control_task_seed, can_start);
    data.control_targets = control_task_targets(features, dataset.examples.size(), *data.control_task, can_start);
  }
  if (options.max_train_features > 0 && static_cast<int64_t>(features.size()) > options.max_train_features) {
    features.resize(static_cast<size_t>(options.max_train_features));
    if (options.control_task) data.control_targets.resize(features.size());
  }
  spdlog::info("{}: {} examples -> {} training features", options.train_file.string(), dataset.examples.size(),
               features.size());
  if (features.empty()) throw Error("no training features from '" + options.train_file.string() + "'");
  if (data.control_task) {
    int64_t labelled = 0;
    for (size_t i = 0; i < features.size(); ++i) labelled += data.control_targets[i].first != features[i].null_index;
    spdlog::info("control task (seed {}): threshold {:.6f} for the train questions' unanswerable share {:.4f}; {} of {} "
                 "features hold a control span",
                 data.control_task->seed, data.control_task->threshold, data.control_task->unanswerable_share, labelled,
                 features.size());
  }
  return data;
}

// One feature set serves both models only when they tokenize alike (their
// files compared while the directories are being opened).
void check_same_tokenizer(const OpenedModels& models) {
  if (models.size() < 2 || models[0] == models[1]) return;
  const auto &first = models[0]->tokenizer, &second = models[1]->tokenizer;
  auto same_files = [&] {
    auto a = first->files(), b = second->files();
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (read_file(a[i]) != read_file(b[i])) return false;
    return true;
  };
  if (first->kind() != second->kind() || first->lowercases() != second->lowercases() || !same_files())
    throw Error("the two models tokenize differently ('" + models[0]->dir.string() + "': " + first->kind() +
                (first->lowercases() ? ", lower-cased" : ", cased") + "; '" + models[1]->dir.string() +
                "': " + second->kind() + (second->lowercases() ? ", lower-cased" : ", cased") +
                "); train them in separate probe_train runs");
}

// <kind>_epoch_1/codelength.csv from every probe set saved for the kind's epoch 1.
// (codelength_<variant>.csv for a variant's probe sets)
void write_codelength_csv(const std::string& kind, const std::string& variant, const ProbeTrainOptions& options) {
  const auto rows = saved_codelengths(options.output_dir, kind, variant);
  if (rows.empty()) return;
  const std::string name = variant.empty() ? "codelength.csv" : "codelength_" + variant + ".csv";
  write_file_atomically(probes_dir(options.output_dir, kind, 1).parent_path() / name, codelength_csv(rows));
}

void save_epoch(const ProbeRun& run, SeedProbes& set, const ProbeTrainOptions& options, int epoch,
                int64_t features) {
  auto mean = (set.loss_sum / static_cast<double>(features)).to(torch::kCPU, torch::kDouble).contiguous();
  ProbeMetadata metadata;
  metadata.kind = run.kind;
  metadata.model_path = fs::absolute(run.model_dir).lexically_normal().string();
  metadata.model_config = run.model.config.to_json();
  metadata.training_options = set.training_options;
  metadata.epoch = epoch;
  metadata.features_seen = set.features_seen;
  metadata.mean_loss.assign(mean.data_ptr<double>(), mean.data_ptr<double>() + mean.numel());
  if (epoch == 1) metadata.codelength = set.codelength;
  auto path = probes_file(options.output_dir, run.kind, epoch, set.seed, set.variant.name());
  set.done_epochs = epoch;
  if (!dist::is_main()) return;  // every rank holds the same probes; rank 0 writes them
  save_probe_model(path, *set.probes, metadata);
  const int first = set.variant.first_layer();
  spdlog::info("{} epoch {}: mean loss layer {} {:.4f}, layer {} {:.4f} -> {}", describe_set(run, set), epoch, first,
               metadata.mean_loss.front(), first + static_cast<int>(metadata.mean_loss.size()) - 1,
               metadata.mean_loss.back(), path.string());
}

// The probe sets of `run` that still need `epoch`.
std::vector<SeedProbes*> training_sets(ProbeRun& run, int epoch) {
  std::vector<SeedProbes*> sets;
  for (auto& set : run.sets)
    if (set.done_epochs < epoch) sets.push_back(&set);
  return sets;
}

// Each feature's tokens: the targets the probe's softmax may name. From the
// global batch, so every rank codes the same features.
std::vector<int64_t> feature_positions(const std::vector<SquadFeature>& features, const std::vector<size_t>& batch) {
  std::vector<int64_t> positions;
  for (size_t index : batch) positions.push_back(static_cast<int64_t>(features[index].length()));
  return positions;
}

// Hidden states of this rank's rows, with the embeddings (index 0) first when `embeddings`;
// [L(+1),0,0,H] when it holds none of the batch.
torch::Tensor shard_hidden_states(ProbeRun& run, const LoopBatch& batch, const ProbeTrainOptions& options,
                                  bool embeddings) {
  const int64_t layers = run.model.config.num_hidden_layers + (embeddings ? 1 : 0);
  if (batch.rows.empty()) return torch::empty({layers, 0, 0, run.model.config.hidden_size});
  return probed_hidden_states(*run.model.model, batch.inputs, options.precision, embeddings);
}

bool needs_embeddings(const std::vector<SeedProbes*>& sets) {
  return std::any_of(sets.begin(), sets.end(), [](const SeedProbes* s) { return s->variant.input != ProbeInput::layer; });
}

// What each input kind reads of one batch's hidden states: layers 1..L, [layer l ; layer 0]
// (made once per batch, when a set needs it) or layer 0 alone.
class ProbeInputs {
 public:
  ProbeInputs(torch::Tensor hidden, bool with_embeddings) : hidden_(std::move(hidden)), embeddings_(with_embeddings) {}
  const torch::Tensor& of(ProbeInput input) const {
    if (!embeddings_) return hidden_;
    if (!layers_.defined()) {
      layers_ = hidden_.slice(0, 1);
      layer0_ = hidden_.slice(0, 0, 1);
    }
    if (input == ProbeInput::layer) return layers_;
    if (input == ProbeInput::embeddings) return layer0_;
    if (!conditional_.defined()) conditional_ = conditional_input(layers_, layer0_);
    return conditional_;
  }

 private:
  torch::Tensor hidden_;
  bool embeddings_;
  mutable torch::Tensor layers_, layer0_, conditional_;
};

// A loss that is not finite would poison every later step and the saved epoch: stop, saving nothing of it.
void check_finite_loss(const torch::Tensor& loss, const ProbeRun& run, int epoch, size_t batch) {
  const auto finite = torch::isfinite(loss);
  if (finite.all().item<bool>()) return;
  const int64_t layer = finite.logical_not().nonzero()[0][0].item<int64_t>();
  throw Error(run.kind + " probes: the loss of layer " + std::to_string(layer + 1) + " became " +
              std::to_string(loss[layer].item<double>()) + " in epoch " + std::to_string(epoch) + ", batch " +
              std::to_string(batch + 1) + ": the encoder '" + run.model_dir.string() +
              "' gives hidden states that are not finite (weights too large?); nothing of epoch " +
              std::to_string(epoch) + " was saved");
}

// One batch through every active encoder, then each of its probe sets'
// training step; `positions` (epoch 1 only) feed the codelength.
std::string train_step(std::vector<ProbeRun*>& active, const LoopBatch& batch, const ProbeTrainOptions& options,
                       int epoch, const ProbeBatchShard& shard, const std::vector<int64_t>& positions,
                       const std::vector<std::pair<int, int>>& control_targets) {
  std::vector<int64_t> starts, ends;
  for (const auto* f : batch.rows) {
    starts.push_back(f->start_position);
    ends.push_back(f->end_position);
  }
  const auto device = batch.inputs.input_ids.device();
  auto start_positions = torch::tensor(starts, torch::kInt64).to(device);
  auto end_positions = torch::tensor(ends, torch::kInt64).to(device);
  torch::Tensor control_starts, control_ends;
  if (!control_targets.empty()) {
    std::vector<int64_t> cs, ce;
    for (size_t index : batch.indices) {
      cs.push_back(control_targets[index].first);
      ce.push_back(control_targets[index].second);
    }
    control_starts = torch::tensor(cs, torch::kInt64).to(device);
    control_ends = torch::tensor(ce, torch::kInt64).to(device);
  }
  std::string detail;
  for (auto* run : active) {
    const auto sets = training_sets(*run, epoch);
    const ProbeInputs inputs(shard_hidden_states(*run, batch, options, needs_embeddings(sets)), needs_embeddings(sets));
    torch::Tensor shown;
    for (auto* set : sets) {
      const bool control = set->variant.task == ProbeTask::control_task;
      auto result = set->probes->train_step(inputs.of(set->variant.input), batch.inputs.attention_mask,
                                            control ? control_starts : start_positions,
                                            control ? control_ends : end_positions,
                                            dropout_seed(set->probe_seed, epoch, run->kind, batch.number), shard);
      auto loss = result.loss.to(torch::kCPU, torch::kDouble);
      check_finite_loss(loss, *run, epoch, batch.number);
      set->loss_sum += loss * static_cast<double>(shard.global_rows);
      if (set->codelength) set->codelength->add_batch(loss, positions);
      set->features_seen += shard.global_rows;
      if (!shown.defined()) shown = loss;
    }
    detail += (detail.empty() ? "" : ", ") + run->kind + " loss L" + std::to_string(shown.size(0)) + " " +
              fmt::format("{:.3f}", shown[-1].item<double>());
  }
  return detail;
}

void train_epoch(std::vector<ProbeRun*>& active, const TrainingData& data, const ProbeTrainOptions& options, int epoch,
                 torch::Device device, int64_t pad_id) {
  const auto& features = data.features;
  const auto batches = shuffled_length_pooled_batches(features, static_cast<size_t>(options.batch_size), options.seed,
                                                      epoch);
  for (auto* run : active)
    for (auto* set : training_sets(*run, epoch)) {
      set->loss_sum = torch::zeros({set->probes->layers()}, torch::kDouble);
      if (epoch == 1) set->codelength.emplace();
    }
  EncodeLoopOptions loop;
  loop.label = "epoch " + std::to_string(epoch) + "/" + std::to_string(options.epochs);
  loop.padding.pad_id = pad_id;
  loop.device = device;
  loop.resume_hint = "Rerun the same command to resume after epoch " + std::to_string(epoch - 1) + ".";
  loop.units_per_feature = static_cast<int64_t>(active.size());
  for (auto* run : active) loop.bytes_per_token += hidden_state_bytes_per_token(run->model.config);
  // Each rank encodes its rows of every global batch (all of them in one process).
  const auto shards = dist::rank_batches(batches, dist::rank(), dist::world_size());
  for_each_batch(features, shards.local, loop, [&](const LoopBatch& batch) {
    const auto positions = epoch == 1 ? feature_positions(features, batches[batch.number]) : std::vector<int64_t>{};
    return train_step(active, batch, options, epoch, dist::probe_batch_shard(shards, batch.number), positions,
                      data.control_targets);
  });
  for (auto* run : active) {
    std::vector<std::string> variants;
    for (auto* set : training_sets(*run, epoch)) {
      save_epoch(*run, *set, options, epoch, static_cast<int64_t>(features.size()));
      if (std::find(variants.begin(), variants.end(), set->variant.name()) == variants.end())
        variants.push_back(set->variant.name());
    }
    if (epoch == 1 && dist::is_main())
      for (const auto& variant : variants) write_codelength_csv(run->kind, variant, options);
  }
}

void check_seeds(std::vector<uint64_t> seeds) {
  std::sort(seeds.begin(), seeds.end());
  auto repeated = std::adjacent_find(seeds.begin(), seeds.end());
  if (repeated != seeds.end())
    throw Error("--seeds lists seed " + std::to_string(*repeated) + " twice; give each seed once", 2);
}

// The kinds probed, each with its model directory's option.
void check_kinds(const ProbeTrainOptions& options) {
  for (const auto& kind : options.kinds) {
    check_probe_kind(kind);
    if (kind == "control") throw Error("the control is trained with --control, beside a model", 2);
  }
  if (options.kinds.empty()) throw Error("no model to probe", 2);
}

// The options' values, checked before any model is read; the device they name.
torch::Device checked_device(const ProbeTrainOptions& options) {
  if (options.epochs < 1) throw Error("EPOCHS must be at least 1", 2);
  if (options.batch_size < 1) throw Error("--batch-size must be at least 1", 2);
  auto device = parse_device(options.device);
  check_precision(options.precision, device);
  check_seeds(options.seeds);
  return device;
}

// The encoders: each kind's opened model directory, and the control copying
// the architecture of the first model probed.
std::vector<ProbeRun> probe_runs(const ProbeTrainOptions& options, const OpenedModels& models) {
  check_kinds(options);
  if (models.size() != options.kinds.size())
    throw Error("probe_train: " + std::to_string(models.size()) + " opened models for " +
                std::to_string(options.kinds.size()) + " kinds (open them with open_probe_models)");
  std::vector<ProbeRun> runs;
  for (size_t i = 0; i < models.size(); ++i) runs.push_back(ProbeRun{options.kinds[i], models[i]->dir, models[i], {}, {}});
  if (options.control) runs.push_back(ProbeRun{"control", runs.front().model_dir, runs.front().opened, {}, {}});
  return runs;
}

}  // namespace

OpenedModels open_probe_models(const ProbeTrainOptions& options) {
  checked_device(options);
  check_kinds(options);
  OpenedModels models;
  for (const auto& kind : options.kinds) {
    const fs::path& dir = kind == "pretrained" ? options.pretrained_model : options.fine_tuned_model;
    std::shared_ptr<const OpenedModel> opened;
    for (const auto& model : models)
      if (model->dir == dir) opened = model;  // both kinds of one directory: opened once
    if (!opened)
      opened = std::make_shared<const OpenedModel>(
          open_model_dir(dir, kind == "pretrained" ? "--pretrained-model" : "--fine-tuned-model", options.vocab));
    models.push_back(opened);
  }
  check_same_tokenizer(models);
  return models;
}

std::string inferred_probe_kind(const OpenedModel& model) {
  const TensorMap weights = read_weights(model.weights_file.empty() ? find_weights_file(model.dir) : model.weights_file);
  return weights.count(model.family->head_output) ? "fine_tuned" : "pretrained";
}

void train_probes(const ProbeTrainOptions& options) { train_probes(options, open_probe_models(options)); }

void train_probes(const ProbeTrainOptions& input_options, const OpenedModels& models) {
  ProbeTrainOptions options = input_options;
  if (options.train_file.empty()) options.train_file = squad_dir() / "train-v2.0.json";
  auto device = checked_device(options);
  const auto archs = parse_probe_archs(options.probes);
  const auto variants = probe_variants(archs, options.control_task, options.conditional);
  for (const auto& arch : archs)
    if (arch.kind == ProbeArch::Kind::rank && arch.width > 2)
      spdlog::warn("rank:{} is full rank for the two heads' 2 x H map: it expresses exactly the linear probe "
                   "(rank:1 is the constrained one); it is trained all the same", arch.width);
  std::vector<ProbeRun> runs = probe_runs(options, models);
  // The no-answer position the model's family reads unless --null-position chose one; recorded
  // with the probes, so probe_predict featurises the dev file the same way.
  options.window = options.window.resolved(runs.front().opened->family->null_position);
  require_squad_file(options.train_file, "--train-file");
  const auto& tokenizer = runs.front().opened->tokenizer;
  // The control task's threshold comes from the training questions, and is part of its probes' settings.
  std::optional<TrainingData> data;
  if (options.control_task) data = training_data(options, *tokenizer);
  const auto shared_options = training_options_json(options);
  for (auto& run : runs) {
    // The control's weights fingerprint is part of its settings, so it is built before resuming.
    if (run.kind == "control") run.model = control_model(run.opened->config, options.control_seed);
    run.sets = seed_sets(options, run_training_options(shared_options, run, options), variants,
                         data ? data->control_task : std::nullopt);
    if (options.tuned_lens && run.kind == "fine_tuned") {
      const ProbeVariant lens{ProbeArch::parse("tuned_lens"), ProbeTask::squad, ProbeInput::layer};
      nlohmann::json lens_options = run_training_options(shared_options, run, options);
      lens.add_to(lens_options);
      run.sets.push_back(seed_probes(lens, std::nullopt, options.seed, lens_options));
    }
    for (auto& set : run.sets) {
      if (!options.overwrite) resume(run, set, options);
      dist::require_same_on_every_rank(set.done_epochs,
                                       describe_set(run, set) + " epochs saved in '" + options.output_dir.string() + "'");
    }
  }
  int first_epoch = options.epochs + 1;
  for (const auto& run : runs) first_epoch = std::min(first_epoch, run.done_epochs() + 1);
  if (first_epoch > options.epochs) {
    spdlog::info("all {} epochs are already trained in '{}'; pass --overwrite to train again", options.epochs,
                 options.output_dir.string());
    return;
  }
  for (auto& run : runs) {
    if (!run.model.model) run.model = load_checkpoint(*run.opened, {weights_dtype_for(options.precision, device), options.precision});
    run.model.model->to(device);
    run.model.model->eval();
    const auto& config = run.model.config;
    const bool lens = std::any_of(run.sets.begin(), run.sets.end(), [](const SeedProbes& s) { return s.variant.arch.is_lens(); });
    if (lens && !run.model.has_qa_head)
      throw Error("--tuned-lens reads the fine-tuned model's own QA head, and '" + run.model_dir.string() +
                  "' has none; give the fine-tuned model (run_squad's --output_dir)", 2);
    for (auto& set : run.sets) {
      if (!set.probes)
        set.probes = make_probe_model(set.variant.arch, set.variant.probe_layers(config.num_hidden_layers),
                                      set.variant.input_size(config.hidden_size), probe_options(options),
                                      set.probe_seed);
      set.probes->to(device);
      set.probes->attach_model(run.model.model.get());
    }
  }
  if (!data) data = training_data(options, *tokenizer);
  for (int epoch = first_epoch; epoch <= options.epochs; ++epoch) {
    std::vector<ProbeRun*> active;
    for (auto& run : runs)
      if (run.done_epochs() < epoch) active.push_back(&run);
    train_epoch(active, *data, options, epoch, device, tokenizer->pad_id());
  }
}

}  // namespace layerprobe
