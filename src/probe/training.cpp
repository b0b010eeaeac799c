#include <spdlog/spdlog.h>

#include <fstream>
#include <map>
#include <optional>

#include "layerprobe/squad/batch.hpp"
#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/core/device.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/dist/dist.hpp"
#include "layerprobe/dist/sharding.hpp"
#include "layerprobe/probe/experiment.hpp"
#include "layerprobe/squad/features.hpp"
#include "layerprobe/train/finetune.hpp"
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

// One model being probed: its encoder, its probes and how far it got.
struct ProbeRun {
  std::string kind;
  fs::path model_dir;
  LoadedModel model;
  std::optional<LayerProbes> probes;
  int done_epochs = 0;
  int64_t features_seen = 0;
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
  return json;
}

ProbeOptions probe_options(const ProbeTrainOptions& o) {
  ProbeOptions options;
  options.learning_rate = o.learning_rate;
  return options;
}

// Picks up the last epoch already saved for this run, so a rerun resumes.
void resume(ProbeRun& run, const ProbeTrainOptions& options, const nlohmann::json& training_options) {
  for (int epoch = options.epochs; epoch >= 1; --epoch) {
    auto path = probes_file(options.output_dir, run.kind, epoch);
    if (!fs::exists(path)) continue;
    auto stored = load_probes(path, probe_options(options));
    auto model_path = fs::absolute(run.model_dir).lexically_normal().string();
    if (stored.metadata.model_path != model_path || stored.metadata.training_options != training_options)
      throw Error("'" + path.string() + "' was trained with other settings (model '" + stored.metadata.model_path +
                  "', options " + stored.metadata.training_options.dump() +
                  "); pass --overwrite to start again, or another --output-dir");
    run.probes.emplace(std::move(stored.probes));
    run.done_epochs = epoch;
    run.features_seen = stored.metadata.features_seen;
    spdlog::info("{}: resuming after epoch {} ({})", run.kind, epoch, path.string());
    return;
  }
}

// Each batch's dropout masks follow from (seed, epoch, model, batch), so a
// resumed run repeats them exactly.
uint64_t dropout_seed(uint64_t seed, int epoch, const std::string& kind, size_t batch) {
  return ((seed * 7919ULL + static_cast<uint64_t>(epoch)) * 104729ULL + (kind == "fine_tuned" ? 1 : 0)) * 1000003ULL +
         batch;
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
  if (runs.size() < 2) return;
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

void save_epoch(ProbeRun& run, const ProbeTrainOptions& options, const nlohmann::json& training_options, int epoch,
                const torch::Tensor& loss_sum, int64_t features) {
  auto mean = (loss_sum / static_cast<double>(features)).to(torch::kCPU, torch::kDouble).contiguous();
  ProbeMetadata metadata;
  metadata.kind = run.kind;
  metadata.model_path = fs::absolute(run.model_dir).lexically_normal().string();
  metadata.model_config = run.model.config.to_json();
  metadata.training_options = training_options;
  metadata.epoch = epoch;
  metadata.features_seen = run.features_seen;
  metadata.mean_loss.assign(mean.data_ptr<double>(), mean.data_ptr<double>() + mean.numel());
  auto path = probes_file(options.output_dir, run.kind, epoch);
  run.done_epochs = epoch;
  if (!dist::is_main()) return;  // every rank holds the same probes; rank 0 writes them
  save_probes(path, *run.probes, metadata);
  spdlog::info("{} epoch {}: mean loss layer 1 {:.4f}, layer {} {:.4f} -> {}", run.kind, epoch, metadata.mean_loss.front(),
               metadata.mean_loss.size(), metadata.mean_loss.back(), path.string());
}

// Hidden states of this rank's rows; [L,0,0,H] when it holds none of the batch.
torch::Tensor shard_hidden_states(ProbeRun& run, const LoopBatch& batch, const ProbeTrainOptions& options) {
  if (batch.rows.empty()) return torch::empty({run.probes->layers(), 0, 0, run.probes->hidden_size()});
  return probed_hidden_states(*run.model.model, batch.inputs, options.precision);
}

std::string train_step(std::vector<ProbeRun*>& active, const LoopBatch& batch, std::vector<torch::Tensor>& loss_sums,
                       const ProbeTrainOptions& options, int epoch, const ProbeBatchShard& shard) {
  std::vector<int64_t> starts, ends;
  for (const auto* f : batch.rows) {
    starts.push_back(f->start_position);
    ends.push_back(f->end_position);
  }
  const auto device = batch.inputs.input_ids.device();
  auto start_positions = torch::tensor(starts, torch::kInt64).to(device);
  auto end_positions = torch::tensor(ends, torch::kInt64).to(device);
  std::string detail;
  for (size_t k = 0; k < active.size(); ++k) {
    auto hidden = shard_hidden_states(*active[k], batch, options);
    auto result = active[k]->probes->train_step(hidden, batch.inputs.attention_mask, start_positions, end_positions,
                                                dropout_seed(options.seed, epoch, active[k]->kind, batch.number),
                                                shard);
    auto loss = result.loss.to(torch::kCPU, torch::kDouble);
    loss_sums[k] += loss * static_cast<double>(shard.global_rows);
    active[k]->features_seen += shard.global_rows;
    detail += (detail.empty() ? "" : ", ") + active[k]->kind + " loss L" + std::to_string(loss.size(0)) + " " +
              fmt::format("{:.3f}", loss[-1].item<double>());
  }
  return detail;
}

void train_epoch(std::vector<ProbeRun*>& active, const std::vector<SquadFeature>& features,
                 const ProbeTrainOptions& options, const nlohmann::json& training_options, int epoch,
                 torch::Device device, int64_t pad_id) {
  const auto batches = shuffled_length_pooled_batches(features, static_cast<size_t>(options.batch_size), options.seed,
                                                      epoch);
  std::vector<torch::Tensor> loss_sums;
  for (auto* run : active) loss_sums.push_back(torch::zeros({run->probes->layers()}, torch::kDouble));
  EncodeLoopOptions loop;
  loop.label = "epoch " + std::to_string(epoch) + "/" + std::to_string(options.epochs);
  loop.padding.pad_id = pad_id;
  loop.device = device;
  loop.resume_hint = "Rerun the same command to resume after epoch " + std::to_string(epoch - 1) + ".";
  loop.units_per_feature = static_cast<int64_t>(active.size());
  // Each rank encodes its rows of every global batch (all of them in one process).
  const auto shards = dist::rank_batches(batches, dist::rank(), dist::world_size());
  for_each_batch(features, shards.local, loop, [&](const LoopBatch& batch) {
    return train_step(active, batch, loss_sums, options, epoch, dist::probe_batch_shard(shards, batch.number));
  });
  for (size_t k = 0; k < active.size(); ++k)
    save_epoch(*active[k], options, training_options, epoch, loss_sums[k], static_cast<int64_t>(features.size()));
}

}  // namespace

std::string inferred_probe_kind(const fs::path& model_dir) {
  const TensorMap weights = read_weights(find_weights_file(model_dir));
  return weights.count("qa_outputs.weight") ? "fine_tuned" : "pretrained";
}

void train_probes(const ProbeTrainOptions& input_options) {
  ProbeTrainOptions options = input_options;
  if (options.train_file.empty()) options.train_file = squad_dir() / "train-v2.0.json";
  if (options.epochs < 1) throw Error("EPOCHS must be at least 1", 2);
  if (options.batch_size < 1) throw Error("--batch-size must be at least 1", 2);
  auto device = parse_device(options.device);
  check_precision(options.precision, device);
  std::vector<ProbeRun> runs;
  for (const auto& kind : options.kinds) {
    check_probe_kind(kind);
    auto dir = kind == "pretrained" ? options.pretrained_model : options.fine_tuned_model;
    require_model_dir(dir, kind == "pretrained" ? "--pretrained-model" : "--fine-tuned-model", options.vocab);
    runs.push_back(ProbeRun{kind, dir, {}, std::nullopt, 0, 0});
  }
  require_squad_file(options.train_file, "--train-file");
  check_same_tokenizer(runs, options.vocab);
  auto training_options = training_options_json(options);
  for (auto& run : runs) {
    if (!options.overwrite) resume(run, options, training_options);
    dist::require_same_on_every_rank(run.done_epochs, run.kind + " epochs saved in '" + options.output_dir.string() + "'");
  }
  int first_epoch = options.epochs + 1;
  for (const auto& run : runs) first_epoch = std::min(first_epoch, run.done_epochs + 1);
  if (first_epoch > options.epochs) {
    spdlog::info("all {} epochs are already trained in '{}'; pass --overwrite to train again", options.epochs,
                 options.output_dir.string());
    return;
  }
  for (auto& run : runs) {
    run.model = load_checkpoint(run.model_dir);
    run.model.model->to(device);
    run.model.model->eval();
    if (!run.probes) run.probes.emplace(run.model.config.num_hidden_layers, run.model.config.hidden_size,
                                        probe_options(options), options.seed);
    run.probes->to(device);
  }
  const auto tokenizer = load_model_tokenizer(runs.front().model_dir, options.vocab);
  auto features = training_features(options, *tokenizer);
  for (int epoch = first_epoch; epoch <= options.epochs; ++epoch) {
    std::vector<ProbeRun*> active;
    for (auto& run : runs)
      if (run.done_epochs < epoch) active.push_back(&run);
    train_epoch(active, features, options, training_options, epoch, device, tokenizer->pad_id());
  }
}

}  // namespace layerprobe
