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

// One probe set: the probes of one seed on one encoder, and how far they got.
struct SeedProbes {
  std::optional<uint64_t> seed;  // set when trained with --seeds: its seed_<s> directory
  uint64_t probe_seed = 1;       // initialisation and dropout
  nlohmann::json training_options;
  std::optional<LayerProbes> probes;
  int done_epochs = 0;
  int64_t features_seen = 0;
  torch::Tensor loss_sum;                // [L], over the current epoch
  std::optional<Codelength> codelength;  // accumulated during epoch 1
};

// One encoder being probed, and the probe sets (one per seed) it feeds.
struct ProbeRun {
  std::string kind;
  fs::path model_dir;  // for control: the directory whose config.json it copies
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

SeedProbes seed_probes(std::optional<uint64_t> seed, uint64_t probe_seed, nlohmann::json training_options) {
  SeedProbes set;
  set.seed = seed;
  set.probe_seed = probe_seed;
  set.training_options = std::move(training_options);
  return set;
}

std::vector<SeedProbes> seed_sets(const ProbeTrainOptions& options, const nlohmann::json& run_options) {
  if (options.seeds.empty()) return {seed_probes(std::nullopt, options.seed, run_options)};
  std::vector<SeedProbes> sets;
  for (uint64_t seed : options.seeds) {
    nlohmann::json json = run_options;
    json["probe_seed"] = seed;
    sets.push_back(seed_probes(seed, seed, json));
  }
  return sets;
}

// Picks up the last epoch already saved for this probe set, so a rerun resumes.
void resume(const ProbeRun& run, SeedProbes& set, const ProbeTrainOptions& options) {
  for (int epoch = options.epochs; epoch >= 1; --epoch) {
    auto path = probes_file(options.output_dir, run.kind, epoch, set.seed);
    if (!fs::exists(path)) continue;
    auto stored = [&] {
      try {
        return load_probes(path, probe_options(options));
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
    set.probes.emplace(std::move(stored.probes));
    set.done_epochs = epoch;
    set.features_seen = stored.metadata.features_seen;
    spdlog::info("{}: resuming after epoch {} ({})", run.kind, epoch, path.string());
    return;
  }
}

// Each batch's dropout masks follow from (probe seed, epoch, model, batch), so
// a resumed run repeats them exactly.
uint64_t dropout_seed(uint64_t seed, int epoch, const std::string& kind, size_t batch) {
  const uint64_t kind_index = kind == "fine_tuned" ? 1 : kind == "control" ? 2 : 0;
  return ((seed * 7919ULL + static_cast<uint64_t>(epoch)) * 104729ULL + kind_index) * 1000003ULL + batch;
}

std::vector<SquadFeature> training_features(const ProbeTrainOptions& options, const Tokenizer& tokenizer) {
  SquadLoadOptions load;
  load.is_training = true;
  auto dataset = load_squad(options.train_file, load);
  if (dataset.skipped) spdlog::warn("{}: skipped {} training examples whose answer does not match the context",
                                    options.train_file.string(), dataset.skipped);
  FeatureOptions feature_options;
  feature_options.window = options.window;
  feature_options.is_training = true;
  feature_options.decoding_fields = false;
  auto features = convert_examples_to_features(dataset.examples, tokenizer, feature_options);
  if (options.max_train_features > 0 && static_cast<int64_t>(features.size()) > options.max_train_features)
    features.resize(static_cast<size_t>(options.max_train_features));
  spdlog::info("{}: {} examples -> {} training features", options.train_file.string(), dataset.examples.size(),
               features.size());
  if (features.empty()) throw Error("no training features from '" + options.train_file.string() + "'");
  return features;
}

// One feature set serves both models only when they tokenize alike.
void check_same_tokenizer(const std::vector<ProbeRun>& runs, const fs::path& vocab) {
  if (runs.size() < 2 || runs[0].model_dir == runs[1].model_dir) return;
  auto first = load_model_tokenizer(runs[0].model_dir, vocab), second = load_model_tokenizer(runs[1].model_dir, vocab);
  auto same_files = [&] {
    auto a = first->files(), b = second->files();
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (read_file(a[i]) != read_file(b[i])) return false;
    return true;
  };
  if (first->kind() != second->kind() || first->lowercases() != second->lowercases() || !same_files())
    throw Error("the two models tokenize differently ('" + runs[0].model_dir.string() + "': " + first->kind() +
                (first->lowercases() ? ", lower-cased" : ", cased") + "; '" + runs[1].model_dir.string() +
                "': " + second->kind() + (second->lowercases() ? ", lower-cased" : ", cased") +
                "); train them in separate probe_train runs");
}

// <kind>_epoch_1/codelength.csv from every probe set saved for the kind's epoch 1.
void write_codelength_csv(const std::string& kind, const ProbeTrainOptions& options) {
  const auto rows = saved_codelengths(options.output_dir, kind);
  if (rows.empty()) return;
  write_file_atomically(probes_dir(options.output_dir, kind, 1).parent_path() / "codelength.csv", codelength_csv(rows));
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
  auto path = probes_file(options.output_dir, run.kind, epoch, set.seed);
  set.done_epochs = epoch;
  if (!dist::is_main()) return;  // every rank holds the same probes; rank 0 writes them
  save_probes(path, *set.probes, metadata);
  spdlog::info("{}{} epoch {}: mean loss layer 1 {:.4f}, layer {} {:.4f} -> {}", run.kind,
               set.seed ? " seed " + std::to_string(*set.seed) : "", epoch, metadata.mean_loss.front(),
               metadata.mean_loss.size(), metadata.mean_loss.back(), path.string());
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

// Hidden states of this rank's rows; [L,0,0,H] when it holds none of the batch.
torch::Tensor shard_hidden_states(ProbeRun& run, const LoopBatch& batch, const ProbeTrainOptions& options) {
  if (batch.rows.empty()) return torch::empty({run.model.config.num_hidden_layers, 0, 0, run.model.config.hidden_size});
  return probed_hidden_states(*run.model.model, batch.inputs, options.precision);
}

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
                       int epoch, const ProbeBatchShard& shard, const std::vector<int64_t>& positions) {
  std::vector<int64_t> starts, ends;
  for (const auto* f : batch.rows) {
    starts.push_back(f->start_position);
    ends.push_back(f->end_position);
  }
  const auto device = batch.inputs.input_ids.device();
  auto start_positions = torch::tensor(starts, torch::kInt64).to(device);
  auto end_positions = torch::tensor(ends, torch::kInt64).to(device);
  std::string detail;
  for (auto* run : active) {
    auto hidden = shard_hidden_states(*run, batch, options);
    torch::Tensor shown;
    for (auto* set : training_sets(*run, epoch)) {
      auto result = set->probes->train_step(hidden, batch.inputs.attention_mask, start_positions, end_positions,
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

void train_epoch(std::vector<ProbeRun*>& active, const std::vector<SquadFeature>& features,
                 const ProbeTrainOptions& options, int epoch, torch::Device device, int64_t pad_id) {
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
    return train_step(active, batch, options, epoch, dist::probe_batch_shard(shards, batch.number), positions);
  });
  for (auto* run : active) {
    for (auto* set : training_sets(*run, epoch))
      save_epoch(*run, *set, options, epoch, static_cast<int64_t>(features.size()));
    if (epoch == 1 && dist::is_main()) write_codelength_csv(run->kind, options);
  }
}

void check_seeds(std::vector<uint64_t> seeds) {
  std::sort(seeds.begin(), seeds.end());
  auto repeated = std::adjacent_find(seeds.begin(), seeds.end());
  if (repeated != seeds.end())
    throw Error("--seeds lists seed " + std::to_string(*repeated) + " twice; give each seed once", 2);
}

// The encoders: each kind's model directory, and the control copying the
// architecture of the first model probed.
std::vector<ProbeRun> probe_runs(const ProbeTrainOptions& options) {
  std::vector<ProbeRun> runs;
  for (const auto& kind : options.kinds) {
    check_probe_kind(kind);
    if (kind == "control") throw Error("the control is trained with --control, beside a model", 2);
    auto dir = kind == "pretrained" ? options.pretrained_model : options.fine_tuned_model;
    require_model_dir(dir, kind == "pretrained" ? "--pretrained-model" : "--fine-tuned-model", options.vocab);
    runs.push_back(ProbeRun{kind, dir, {}, {}});
  }
  if (runs.empty()) throw Error("no model to probe", 2);
  if (options.control) runs.push_back(ProbeRun{"control", runs.front().model_dir, {}, {}});
  return runs;
}

}  // namespace

std::string inferred_probe_kind(const fs::path& model_dir) {
  const TensorMap weights = read_weights(find_weights_file(model_dir));
  const ModelFamily& family = model_family(load_config(model_dir / "config.json").model_type);
  return weights.count(family.head_output) ? "fine_tuned" : "pretrained";
}

void train_probes(const ProbeTrainOptions& input_options) {
  ProbeTrainOptions options = input_options;
  if (options.train_file.empty()) options.train_file = squad_dir() / "train-v2.0.json";
  if (options.epochs < 1) throw Error("EPOCHS must be at least 1", 2);
  if (options.batch_size < 1) throw Error("--batch-size must be at least 1", 2);
  auto device = parse_device(options.device);
  check_precision(options.precision, device);
  check_seeds(options.seeds);
  std::vector<ProbeRun> runs = probe_runs(options);
  require_squad_file(options.train_file, "--train-file");
  check_same_tokenizer(runs, options.vocab);
  const auto shared_options = training_options_json(options);
  for (auto& run : runs) {
    // The control's weights fingerprint is part of its settings, so it is built before resuming.
    if (run.kind == "control") run.model = control_model(run.model_dir, options.control_seed);
    run.sets = seed_sets(options, run_training_options(shared_options, run, options));
    for (auto& set : run.sets) {
      if (!options.overwrite) resume(run, set, options);
      dist::require_same_on_every_rank(set.done_epochs, run.kind + (set.seed ? " seed " + std::to_string(*set.seed) : "") +
                                                            " epochs saved in '" + options.output_dir.string() + "'");
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
    if (!run.model.model) run.model = load_checkpoint(run.model_dir);
    run.model.model->to(device);
    run.model.model->eval();
    for (auto& set : run.sets) {
      if (!set.probes) set.probes.emplace(run.model.config.num_hidden_layers, run.model.config.hidden_size,
                                          probe_options(options), set.probe_seed);
      set.probes->to(device);
    }
  }
  const auto tokenizer = load_model_tokenizer(runs.front().model_dir, options.vocab);
  auto features = training_features(options, *tokenizer);
  for (int epoch = first_epoch; epoch <= options.epochs; ++epoch) {
    std::vector<ProbeRun*> active;
    for (auto& run : runs)
      if (run.done_epochs() < epoch) active.push_back(&run);
    train_epoch(active, features, options, epoch, device, tokenizer->pad_id());
  }
}

}  // namespace layerprobe
