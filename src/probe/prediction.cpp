#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <regex>

#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/squad/decoder.hpp"
#include "layerprobe/core/device.hpp"
#include "layerprobe/dist/dist.hpp"
#include "layerprobe/dist/sharding.hpp"
#include "layerprobe/probe/control.hpp"
#include "layerprobe/probe/control_task.hpp"
#include "layerprobe/probe/probe_model.hpp"
#include "layerprobe/probe/experiment.hpp"
#include "layerprobe/squad/features.hpp"
#include "layerprobe/model/model_dir.hpp"
#include "layerprobe/squad/predictions_io.hpp"
#include "layerprobe/probe/probe_store.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/probe/workflow.hpp"
#include "layerprobe/core/progress.hpp"
#include "layerprobe/squad/squad.hpp"
#include "layerprobe/squad/encode_loop.hpp"
#include "layerprobe/text/tokenizer.hpp"

namespace layerprobe {

namespace fs = std::filesystem;

namespace {

struct ProbeSet {
  fs::path dir;
  std::string kind;
  std::optional<uint64_t> seed;  // probes trained with --seeds
  StoredProbeModel stored;       // stored.variant: architecture, task and input
  fs::path model_dir;
  fs::path vocab;
  std::shared_ptr<const OpenedModel> opened;  // model_dir with vocab, opened once for every set reading it
  std::vector<std::vector<FeatureLogits>> logits;  // [layer][feature]
};

std::vector<fs::path> probes_dirs(const ProbePredictOptions& options) {
  if (options.mode == "exper") return find_probes_dirs(options.dir);
  if (options.mode != "probes") throw Error("unknown mode '" + options.mode + "': expected exper or probes", 2);
  if (!fs::is_regular_file(options.dir / "probes.safetensors"))
    throw Error("'" + (options.dir / "probes.safetensors").string() + "' does not exist (run probe_train first)");
  return {options.dir};
}

// A probes file copied into another kind's directory would get its
// predictions filed, and tabled, under the wrong model.
void check_kind_matches_directory(const fs::path& dir, const std::string& kind, const ProbeVariant& variant) {
  static const std::regex probes_name("(pretrained|fine_tuned|control)_probes");
  fs::path named_dir = dir.filename().empty() ? dir.parent_path() : dir;
  if (seed_from_dir_name(named_dir.filename().string())) named_dir = named_dir.parent_path();
  // A variant's probes lie in their variant's directory, the study's probes in none.
  const auto in_variant = ProbeVariant::from_name(named_dir.filename().string());
  if (in_variant ? *in_variant != variant : !variant.is_default())
    throw Error("'" + (dir / "probes.safetensors").string() + "' holds " +
                (variant.is_default() ? std::string("the study's linear probes") : variant.name() + " probes") +
                " but lies in " + (in_variant ? "the directory of " + in_variant->name() : std::string("another directory")) +
                "; move it to <kind>_probes/" + variant.name());
  if (in_variant) named_dir = named_dir.parent_path();
  std::smatch named;
  const std::string name = named_dir.filename().string();
  if (std::regex_match(name, named, probes_name) && named[1] != kind)
    throw Error("'" + (dir / "probes.safetensors").string() + "' holds " + kind + " probes but lies in a " +
                named[1].str() + "_probes directory; move it to <exper>/" + kind + "_epoch_<e>/" + kind + "_probes");
}

// Model directories opened so far, by directory and vocabulary: each is opened once.
using OpenedByDir = std::map<std::string, std::shared_ptr<const OpenedModel>>;

ProbeSet load_probe_set(const fs::path& dir, const ProbePredictOptions& options, OpenedByDir& opened) {
  auto stored = load_probe_model(dir / "probes.safetensors");
  std::string kind = stored.metadata.kind.empty() ? kind_from_path(dir).value_or("") : stored.metadata.kind;
  try {
    check_probe_kind(kind);
  } catch (const Error& e) {
    throw Error("probes file '" + (dir / "probes.safetensors").string() + "': " + e.what());  // bad data: status 1
  }
  check_kind_matches_directory(dir, kind, stored.variant);
  // The control copies the pretrained model's architecture (or the model it was trained beside).
  const auto& override_dir = kind == "fine_tuned" ? options.fine_tuned_model : options.pretrained_model;
  fs::path model_dir = override_dir.empty() ? fs::path(stored.metadata.model_path) : override_dir;
  fs::path vocab = options.vocab.empty() ? fs::path(stored.metadata.training_options.value("vocab", ""))
                                         : options.vocab;
  auto& model = opened[fs::absolute(model_dir).lexically_normal().string() + "\n" + vocab.string()];
  if (!model)
    model = std::make_shared<const OpenedModel>(
        open_model_dir(model_dir, kind == "fine_tuned" ? "--fine-tuned-model" : "--pretrained-model", vocab));
  const fs::path named = dir.filename().empty() ? dir.parent_path() : dir;
  return ProbeSet{dir,        kind,  seed_from_dir_name(named.filename().string()), std::move(stored),
                  model_dir, vocab, model,                                          {}};
}

// Probe sets sharing this key share one encoder pass: the same model (and
// vocabulary), or the same control encoder.
std::string encoder_key(const ProbeSet& set) {
  std::string key = fs::absolute(set.model_dir).lexically_normal().string() + "\n" + set.vocab.string();
  if (set.kind == "control") key += "\ncontrol " + set.stored.metadata.training_options.value("control_weights", "");
  return key;
}

// What identifies an encoder's architecture in its config (the shared fields).
std::string architecture(const ModelConfig& c) {
  return c.model_type + " (layers " + std::to_string(c.num_hidden_layers) + ", hidden " + std::to_string(c.hidden_size) +
         ", heads " + std::to_string(c.num_attention_heads) + ", intermediate " + std::to_string(c.intermediate_size) +
         ", vocab " + std::to_string(c.vocab_size) + ", positions " + std::to_string(c.max_position_embeddings) +
         ", token types " + std::to_string(c.type_vocab_size) + ", " + c.hidden_act + ")";
}

void check_fits(const ProbeSet& set, const ModelConfig& config) {
  const auto& variant = set.stored.variant;
  const auto& probes = *set.stored.probes;
  if (probes.layers() != variant.probe_layers(config.num_hidden_layers) ||
      probes.input_size() != variant.input_size(config.hidden_size))
    throw Error("probes in '" + set.dir.string() + "' have " + std::to_string(probes.layers()) +
                " layers of width " + std::to_string(probes.input_size()) + " but model '" + set.model_dir.string() +
                "' has " + std::to_string(config.num_hidden_layers) + " of width " + std::to_string(config.hidden_size) +
                (variant.input == ProbeInput::layer ? "" : " (" + variant.name() + " probes)") +
                "; pass the model they were trained on");
  // Probes read one encoder's features: another family's (or another architecture's) of the same width
  // would give answers that look like results.
  const ModelConfig trained = config_from_json(set.stored.metadata.model_config,
                                               "probes file '" + (set.dir / "probes.safetensors").string() + "' (model_config)");
  if (architecture(trained) != architecture(config))
    throw Error("probes in '" + set.dir.string() + "' were trained on a " + architecture(trained) + " encoder but model '" +
                set.model_dir.string() + "' is a " + architecture(config) + "; pass the model they were trained on");
}

std::vector<SquadFeature> dev_features(const std::vector<SquadExample>& examples, const Tokenizer& tokenizer,
                                       const nlohmann::json& training_options) {
  FeatureOptions options;
  options.window = WindowOptions::from_json(training_options);
  options.is_training = false;
  return convert_examples_to_features(examples, tokenizer, options);
}

// Copies one batch's [L,B,T,2] probe scores into the set's per-layer logits.
void store_scores(ProbeSet& set, const LoopBatch& batch, const torch::Tensor& scores_on_device) {
  auto scores = scores_on_device.to(torch::kCPU).contiguous();
  if (!torch::isfinite(scores).all().item<bool>())
    throw Error("the probes in '" + set.dir.string() + "' score features of this batch as NaN or Inf: model '" +
                set.model_dir.string() + "' gives hidden states that are not finite (weights too large?); nothing "
                "was written");
  auto accessor = scores.accessor<float, 4>();
  for (int64_t layer = 0; layer < scores.size(0); ++layer)
    for (size_t row = 0; row < batch.rows.size(); ++row) {
      auto& out = set.logits[layer][batch.indices[row]];
      const size_t length = batch.rows[row]->length();
      out.start.resize(length);
      out.end.resize(length);
      for (size_t t = 0; t < length; ++t) {
        out.start[t] = accessor[layer][row][t][0];
        out.end[t] = accessor[layer][row][t][1];
      }
    }
}

// One encoder pass over the dev features; every probe set scores it.
void score_features(QaModel& model, const std::vector<SquadFeature>& features, std::vector<ProbeSet*>& sets,
                    const ProbePredictOptions& options, torch::Device device, int64_t pad_id) {
  for (auto* set : sets) set->logits.assign(set->stored.probes->layers(), std::vector<FeatureLogits>(features.size()));
  const bool embeddings = std::any_of(sets.begin(), sets.end(),
                                      [](const ProbeSet* s) { return s->stored.variant.input != ProbeInput::layer; });
  EncodeLoopOptions loop;
  loop.label = "predict";
  loop.padding.pad_id = pad_id;
  loop.device = device;
  loop.resume_hint = "Rerun the same command to predict again.";
  loop.bytes_per_token = hidden_state_bytes_per_token(model.config());
  for_each_batch(features, length_bucketed_batches(features, static_cast<size_t>(options.batch_size)), loop,
                 [&](const LoopBatch& batch) {
                   auto hidden = probed_hidden_states(model, batch.inputs, options.precision, embeddings);
                   torch::Tensor layers = embeddings ? hidden.slice(0, 1) : hidden, conditional;
                   for (auto* set : sets) {
                     const auto input = set->stored.variant.input;
                     if (input == ProbeInput::conditional && !conditional.defined())
                       conditional = conditional_input(layers, hidden.slice(0, 0, 1));
                     const auto& x = input == ProbeInput::layer         ? layers
                                     : input == ProbeInput::embeddings ? hidden.slice(0, 0, 1)
                                                                        : conditional;
                     store_scores(*set, batch, set->stored.probes->score(x));
                   }
                   return std::string();
                 });
}

// Where a control-task preds directory's gold answers go: its variant directory, shared by its seeds.
fs::path control_gold_path(const fs::path& preds) {
  const fs::path dir = seed_from_dir_name(preds.filename().string()) ? preds.parent_path() : preds;
  return dir / "control_task_dev.json";
}

// The control answers of the dev questions (rank 0 writes them), where a control-task set's
// predictions are scored: returns the path and its fingerprint.
std::pair<fs::path, std::string> write_control_gold(const ProbeSet& set, const std::vector<SquadExample>& examples,
                                                    const std::vector<SquadFeature>& features,
                                                    const Tokenizer& tokenizer) {
  const auto source = (set.dir / "probes.safetensors").string();
  auto it = set.stored.metadata.training_options.find("control_task");
  if (it == set.stored.metadata.training_options.end())
    throw Error("'" + source + "' holds control-task probes but its training options lack 'control_task'");
  const auto spec = ControlTaskSpec::from_json(*it, source);
  const fs::path path = control_gold_path(preds_dir_for(set.dir, set.kind));
  size_t answerable = 0;
  const std::string gold = control_task_gold(examples, features, tokenizer, spec, &answerable);
  write_file_atomically(path, gold);
  spdlog::info("control task (seed {}, threshold {:.6f}): {} of {} dev questions have a control answer -> {}", spec.seed,
               spec.threshold, answerable, examples.size(), path.string());
  return {path, file_fingerprint(path)};
}

void write_predictions(ProbeSet& set, const std::vector<SquadExample>& examples,
                       const std::vector<SquadFeature>& features, const Tokenizer& tokenizer,
                       const ProbePredictOptions& options, const std::string& dev_fingerprint,
                       size_t total_questions, const std::optional<std::pair<fs::path, std::string>>& control_gold) {
  DecodeOptions decode;
  decode.do_lower_case = tokenizer.lowercases();
  decode.n_best_size = options.n_best_size;
  decode.max_answer_length = options.max_answer_length;
  decode.null_score_diff_threshold = options.null_score_diff_threshold;
  auto preds = preds_dir_for(set.dir, set.kind);
  // preds_meta.json is written after every layer: until then the directory reads as unfinished.
  if (dist::is_main()) {
    std::error_code ignored;
    fs::remove(preds / "preds_meta.json", ignored);
  }
  for (size_t layer = 0; layer < set.logits.size(); ++layer) {
    // With several ranks, each decodes its questions and rank 0 writes them all.
    auto predictions = dist::gather_predictions(
        decode_predictions(examples, features, set.logits[layer], tokenizer, decode), total_questions);
    set.logits[layer].clear();
    set.logits[layer].shrink_to_fit();
    if (!dist::is_main()) continue;
    auto name = std::to_string(static_cast<int>(layer) + set.stored.variant.first_layer());
    write_predictions_csv(preds / ("pred_layer_" + name + ".csv"), predictions);
    write_predictions_json(preds / ("pred_layer_" + name + ".json"), predictions);
    write_null_odds_json(preds / ("null_odds_layer_" + name + ".json"), predictions);
  }
  if (!dist::is_main()) return;
  nlohmann::json meta = {{"dev_file", fs::absolute(options.dev_file).lexically_normal().string()},
                         {"dev_file_fingerprint", dev_fingerprint},
                         {"layers", set.stored.probes->layers()},
                         {"kind", set.kind},
                         {"epoch", set.stored.metadata.epoch},
                         {"seed", set.seed ? nlohmann::json(*set.seed) : nlohmann::json()},
                         {"model", fs::absolute(set.model_dir).lexically_normal().string()},
                         {"probes", fs::absolute(set.dir / "probes.safetensors").lexically_normal().string()},
                         {"questions", total_questions},
                         {"max_answer_length", options.max_answer_length},
                         {"n_best_size", options.n_best_size},
                         {"null_score_diff_threshold", options.null_score_diff_threshold}};
  // A variant names itself; a control-task set is scored against its control answers.
  const auto& variant = set.stored.variant;
  if (!variant.is_default()) {
    nlohmann::json training_options;
    variant.add_to(training_options);
    meta.update(training_options);
    meta["variant"] = variant.name();
    meta["first_layer"] = variant.first_layer();
  }
  if (control_gold) {
    meta["squad_dev_file"] = meta["dev_file"];
    meta["dev_file"] = fs::absolute(control_gold->first).lexically_normal().string();
    meta["dev_file_fingerprint"] = control_gold->second;
  }
  write_file_atomically(preds / "preds_meta.json", meta.dump(2) + "\n");
  spdlog::info("{}: {} layers x {} predictions -> {}", set.dir.string(), set.logits.size(), total_questions,
               preds.string());
}

// One encoder pass over the dev features for every probe set of one encoder,
// then each set's predictions (this rank's questions when distributed).
void predict_group(std::vector<ProbeSet*>& group, const SquadDataset& dataset,
                   std::map<std::string, std::vector<SquadFeature>>& features_by_tokenizer,
                   const ProbePredictOptions& options, torch::Device device, const std::string& dev_fingerprint) {
  const ProbeSet& first = *group.front();
  const fs::path& model_dir = first.model_dir;
  auto loaded = load_probed_model(first.kind, *first.opened, first.stored.metadata.training_options,
                                  (first.dir / "probes.safetensors").string(),
                                  {weights_dtype_for(options.precision, device), options.precision});
  for (auto* set : group) {
    check_fits(*set, loaded.config);
    set->stored.probes->to(device);
    set->stored.probes->attach_model(loaded.model.get());  // the tuned lens reads the model's head
  }
  loaded.model->to(device);
  loaded.model->eval();
  const auto& tokenizer = first.opened->tokenizer;
  const auto& training_options = first.stored.metadata.training_options;
  const std::string tokenizer_key = fs::absolute(model_dir).lexically_normal().string() + "\n" +
                                    first.vocab.string() + "\n" + WindowOptions::from_json(training_options).to_json().dump();
  auto cached = features_by_tokenizer.find(tokenizer_key);
  if (cached == features_by_tokenizer.end())
    cached = features_by_tokenizer.emplace(tokenizer_key, dev_features(dataset.examples, *tokenizer, training_options)).first;
  const auto& features = cached->second;
  spdlog::info("{}: {} questions -> {} features; scoring with {} probe set(s) of {}{}", options.dev_file.string(),
               dataset.examples.size(), features.size(), group.size(),
               first.kind == "control" ? "the control encoder of " : "", model_dir.string());
  // Each rank scores and decodes its questions, with all their windows (all of them in one process).
  const auto shard = dist::enabled()
                         ? dist::question_shard(dataset.examples, features, dist::rank(), dist::world_size())
                         : dist::QuestionShard{};
  const auto& examples = dist::enabled() ? shard.examples : dataset.examples;
  const auto& local_features = dist::enabled() ? shard.features : features;
  score_features(*loaded.model, local_features, group, options, device, tokenizer->pad_id());
  // The control answers need every question's windows: rank 0 makes them from all the features.
  std::map<fs::path, std::pair<fs::path, std::string>> control_golds;
  for (auto* set : group) {
    std::optional<std::pair<fs::path, std::string>> gold;
    if (set->stored.variant.task == ProbeTask::control_task && dist::is_main()) {
      const fs::path key = control_gold_path(preds_dir_for(set->dir, set->kind));
      auto it = control_golds.find(key);
      if (it == control_golds.end())
        it = control_golds.emplace(key, write_control_gold(*set, dataset.examples, features, *tokenizer)).first;
      gold = it->second;
    }
    write_predictions(*set, examples, local_features, *tokenizer, options, dev_fingerprint, dataset.examples.size(),
                      gold);
  }
}

}  // namespace

void predict_probes(const ProbePredictOptions& input_options) {
  ProbePredictOptions options = input_options;
  if (options.dev_file.empty()) options.dev_file = squad_dir() / "dev-v2.0.json";
  if (options.batch_size < 1) throw Error("--batch-size must be at least 1", 2);
  auto device = parse_device(options.device);
  check_precision(options.precision, device);
  std::vector<ProbeSet> sets;
  OpenedByDir opened;  // each model directory opened once, for every probe set (and the control) reading it
  for (const auto& dir : probes_dirs(options)) sets.push_back(load_probe_set(dir, options, opened));
  require_squad_file(options.dev_file, "--dev-file");
  auto dataset = load_squad(options.dev_file);
  // Recorded so that probe_evaluate can refuse to score against other content.
  const std::string dev_fingerprint = file_fingerprint(options.dev_file);
  std::map<std::string, std::vector<ProbeSet*>> by_model;
  // Probe sets of one model (and vocabulary) share one encoder pass.
  for (auto& set : sets) by_model[encoder_key(set)].push_back(&set);
  // A control shares its model's tokenizer, so their features are made once.
  std::map<std::string, std::vector<SquadFeature>> features_by_tokenizer;
  // Stopped by a signal, the process exits at once: the dev set's examples,
  // features and logits (millions of small allocations) are not freed on the way out.
  keep_on_stop(
      [&] {
        for (auto& [key, group] : by_model)
          predict_group(group, dataset, features_by_tokenizer, options, device, dev_fingerprint);
      },
      dataset, features_by_tokenizer, sets);
}

}  // namespace layerprobe
