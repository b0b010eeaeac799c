#include "layerprobe/probe/amnesic.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <regex>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/device.hpp"
#include "layerprobe/core/python_str.hpp"
#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/model/family.hpp"
#include "layerprobe/model/model_dir.hpp"
#include "layerprobe/probe/experiment.hpp"
#include "layerprobe/probe/leace.hpp"
#include "layerprobe/probe/probe_store.hpp"
#include "layerprobe/probe/study_report.hpp"
#include "layerprobe/squad/batch.hpp"
#include "layerprobe/squad/decoder.hpp"
#include "layerprobe/squad/encode_loop.hpp"
#include "layerprobe/squad/metrics.hpp"
#include "layerprobe/squad/squad.hpp"
#include "layerprobe/text/tokenizer.hpp"

namespace layerprobe {

namespace fs = std::filesystem;

namespace {

// What the experiment's fine_tuned probes record: the model, train file, windows and vocabulary.
struct AmnesicSources {
  fs::path model_dir, train_file, dev_file, vocab;
  WindowOptions window;
};

std::optional<fs::path> recorded_dev_file(const fs::path& experiment) {
  static const std::regex epoch_dir("fine_tuned_epoch_[0-9]+");
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(experiment, ec)) {
    if (entry.path().filename() != "preds_meta.json") continue;
    const auto relative = fs::relative(entry.path(), experiment).string();
    if (relative.rfind("fine_tuned_epoch_", 0) != 0) continue;
    try {
      auto meta = nlohmann::json::parse(read_file(entry.path()));
      const auto key = meta.contains("squad_dev_file") ? "squad_dev_file" : "dev_file";
      if (meta.contains(key) && meta[key].is_string()) return fs::path(meta[key].get<std::string>());
    } catch (const nlohmann::json::exception&) {
    }
  }
  return std::nullopt;
}

AmnesicSources amnesic_sources(const AmnesicOptions& options) {
  AmnesicSources sources;
  sources.model_dir = options.model_dir;
  sources.train_file = options.train_file;
  sources.dev_file = options.dev_file;
  std::optional<nlohmann::json> recorded;
  if (fs::is_directory(options.experiment_dir) && (options.model_dir.empty() || options.train_file.empty())) {
    for (const auto& dir : find_probes_dirs(options.experiment_dir)) {
      auto stored = load_probe_model(dir / "probes.safetensors");
      if (stored.metadata.kind != "fine_tuned") continue;
      if (sources.model_dir.empty()) sources.model_dir = stored.metadata.model_path;
      recorded = stored.metadata.training_options;
      break;
    }
  }
  if (recorded) {
    if (sources.train_file.empty()) sources.train_file = recorded->value("train_file", "");
    sources.window = WindowOptions::from_json(*recorded);
    sources.vocab = recorded->value("vocab", "");
  }
  if (options.window) sources.window = *options.window;
  if (sources.model_dir.empty() || sources.train_file.empty())
    throw Error("'" + options.experiment_dir.string() +
                    "' has no fine_tuned probes to take the model and train file from; pass --model and --train-file",
                2);
  if (sources.dev_file.empty()) sources.dev_file = recorded_dev_file(options.experiment_dir).value_or(squad_dir() / "dev-v2.0.json");
  return sources;
}

// Per requested layer, the LEACE and random erasers fitted on the train features' tokens.
struct LayerErasers {
  int layer;
  ConceptEraser leace, random;
};

std::vector<LayerErasers> fit_erasers(QaModel& model, const Tokenizer& tokenizer, const AmnesicSources& sources,
                                      const AmnesicOptions& options, const std::vector<int>& layers,
                                      const torch::Device& device, int64_t& used_features) {
  SquadLoadOptions load;
  load.is_training = true;
  const auto dataset = load_squad(sources.train_file, load);
  FeatureOptions feature_options;
  feature_options.window = sources.window;
  feature_options.is_training = true;
  feature_options.decoding_fields = false;
  auto features = convert_examples_to_features(dataset.examples, tokenizer, feature_options);
  if (options.train_features > 0 && static_cast<int64_t>(features.size()) > options.train_features)
    features.resize(static_cast<size_t>(options.train_features));
  if (features.empty()) throw Error("no training features from '" + sources.train_file.string() + "'");
  used_features = static_cast<int64_t>(features.size());
  const int64_t hidden = model.config().hidden_size;
  std::vector<ConceptStatistics> statistics(layers.size(), ConceptStatistics(hidden, 2));
  EncodeLoopOptions loop;
  loop.label = "erasers";
  loop.padding.pad_id = tokenizer.pad_id();
  loop.device = device;
  loop.resume_hint = "Nothing was written; rerun the same command.";
  for_each_batch(features, length_bucketed_batches(features, static_cast<size_t>(options.batch_size)), loop,
                 [&](const LoopBatch& batch) {
                   torch::InferenceMode inference;
                   const auto states = probed_hidden_states(model, batch.inputs, "fp32", true);  // [L+1,B,T,H]
                   const auto mask = batch.inputs.attention_mask.to(torch::kCPU);
                   const int64_t B = mask.size(0), T = mask.size(1);
                   auto z = torch::zeros({B, T, 2}, torch::kFloat);
                   for (int64_t b = 0; b < B; ++b) {
                     z[b][batch.rows[static_cast<size_t>(b)]->start_position][0] = 1;
                     z[b][batch.rows[static_cast<size_t>(b)]->end_position][1] = 1;
                   }
                   const auto tokens = mask.reshape({-1}).nonzero().squeeze(1);
                   const auto concept = z.reshape({-1, 2}).index_select(0, tokens);
                   for (size_t i = 0; i < layers.size(); ++i) {
                     const auto x = states[layers[i]].reshape({-1, hidden}).to(torch::kCPU).index_select(0, tokens);
                     statistics[i].add(x, concept);
                   }
                   return std::string();
                 });
  std::vector<LayerErasers> erasers;
  for (size_t i = 0; i < layers.size(); ++i) {
    auto leace = fit_leace(statistics[i]);
    auto random = fit_random_eraser(statistics[i], leace.rank(), options.seed + static_cast<uint64_t>(layers[i]));
    erasers.push_back({layers[i], leace.to(device), random.to(device)});
  }
  spdlog::info("amnesic: erasers of layers {}..{} fitted on {} tokens of {} train features (rank {})", layers.front(),
               layers.back(), statistics.front().count(), features.size(), erasers.front().leace.rank());
  return erasers;
}

std::vector<float> amnesic_row(const torch::Tensor& logits, int64_t row) {
  const float* data = logits.data_ptr<float>() + row * logits.size(1);
  return std::vector<float>(data, data + logits.size(1));
}

void add_logits(std::vector<FeatureLogits>& out, const torch::Tensor& start_in, const torch::Tensor& end_in, size_t rows) {
  const auto start = start_in.to(torch::kCPU, torch::kFloat).contiguous(), end = end_in.to(torch::kCPU, torch::kFloat).contiguous();
  for (int64_t r = 0; r < static_cast<int64_t>(rows); ++r) out.push_back({amnesic_row(start, r), amnesic_row(end, r)});
}

std::string amnesic_md(const std::vector<AmnesicRow>& rows, const AmnesicOptions& options, const AmnesicSources& sources,
                       int64_t train_features) {
  std::string out = "# Amnesic probing: " + options.experiment_dir.string() + "\n\n";
  out += "Does the fine-tuned model `" + sources.model_dir.string() +
         "` use what each layer's probes find? For each layer l, a LEACE eraser (Belrose et al. 2023) of the answer-start "
         "and answer-end indicators was fitted on the tokens of " + std::to_string(train_features) +
         " train features (`" + sources.train_file.string() +
         "`) and applied to layer l's output inside the forward pass; the remaining layers and the model's own QA head "
         "then answered the dev questions (`" + sources.dev_file.string() +
         "`, decoded as run_squad --do_eval). After erasure no linear classifier reads the indicators from layer l "
         "better than a constant. The control erases a random subspace of the same rank from the same data (in the "
         "whitened geometry LEACE uses), seed " + std::to_string(options.seed) +
         " + layer. A large drop under LEACE and a small one under the control means the model uses that information "
         "at that layer (Elazar et al. 2021). Scores in %.\n\n![F1, HasAns F1 and NoAns accuracy per layer](amnesic.svg)\n\n";
  out += amnesic_table_md(rows);
  return out;
}

}  // namespace

std::string amnesic_csv(const std::vector<AmnesicRow>& rows) {
  std::string out = "layer,f1_intact,f1_erased,f1_random_erased,exact_intact,exact_erased,exact_random_erased,"
                    "has_ans_f1_intact,has_ans_f1_erased,has_ans_f1_random_erased,no_ans_f1_intact,no_ans_f1_erased,"
                    "no_ans_f1_random_erased,rank\n";
  auto cells = [](const double (&v)[3]) {
    std::string s;
    for (double x : v) s += "," + (std::isnan(x) ? std::string() : python_float_repr(x));
    return s;
  };
  for (const auto& r : rows)
    out += std::to_string(r.layer) + cells(r.f1) + cells(r.exact) + cells(r.has_ans_f1) + cells(r.no_ans_f1) + "," +
           std::to_string(r.rank) + "\n";
  return out;
}

std::vector<AmnesicRow> run_amnesic(const AmnesicOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  const auto device = parse_device(options.device);
  if (options.batch_size < 1) throw Error("--batch-size must be at least 1", 2);
  AmnesicSources sources = amnesic_sources(options);
  const OpenedModel opened = open_model_dir(sources.model_dir, "--model", sources.vocab);
  sources.window = sources.window.resolved(opened.family->null_position);
  require_squad_file(sources.train_file, "--train-file");
  require_squad_file(sources.dev_file, "--dev-file");
  LoadedModel loaded = load_checkpoint(opened);
  if (!loaded.has_qa_head)
    throw Error("amnesic probing reads a fine-tuned model's own answers, and '" + sources.model_dir.string() +
                "' has no QA head (" + loaded.model->family().head_output + "); give the fine-tuned model");
  QaModel& model = *loaded.model;
  model.to(device);
  model.eval();
  const int L = static_cast<int>(loaded.config.num_hidden_layers);
  std::vector<int> layers = options.layers;
  if (layers.empty())
    for (int l = 1; l <= L; ++l) layers.push_back(l);
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  for (int l : layers)
    if (l < 1 || l > L)
      throw Error("--layers: layer " + std::to_string(l) + " is outside 1.." + std::to_string(L), 2);
  const auto& tokenizer = opened.tokenizer;
  int64_t train_features = 0;
  const auto erasers = fit_erasers(model, *tokenizer, sources, options, layers, device, train_features);

  const auto dataset = load_squad(sources.dev_file);
  FeatureOptions feature_options;
  feature_options.window = sources.window;
  auto features = convert_examples_to_features(dataset.examples, *tokenizer, feature_options);
  // [0]: intact; then per layer erased, random.
  std::vector<std::vector<FeatureLogits>> logits(1 + 2 * layers.size());
  EncodeLoopOptions loop;
  loop.label = "amnesic";
  loop.padding = BatchOptions{sources.window.max_seq_length, tokenizer->pad_id()};
  loop.device = device;
  loop.resume_hint = "Nothing was written; rerun the same command.";
  loop.units_per_feature = static_cast<int64_t>(1 + 2 * layers.size());
  keep_on_stop(
      [&] {
        for_each_batch(features, sequential_batches(features.size(), static_cast<size_t>(options.batch_size)), loop,
                       [&](const LoopBatch& batch) {
                         torch::InferenceMode inference;
                         const auto output = encode_frozen(model, batch.inputs, "fp32", true);
                         add_logits(logits[0], output.start_logits, output.end_logits, batch.rows.size());
                         for (size_t i = 0; i < erasers.size(); ++i) {
                           const auto& state = output.hidden_states[static_cast<size_t>(erasers[i].layer)];
                           for (int c = 0; c < 2; ++c) {
                             const auto& eraser = c == 0 ? erasers[i].leace : erasers[i].random;
                             const auto erased = model.forward_from(batch.inputs, erasers[i].layer, eraser.apply(state), false);
                             add_logits(logits[1 + 2 * i + static_cast<size_t>(c)], erased.start_logits, erased.end_logits,
                                        batch.rows.size());
                           }
                         }
                         return std::string();
                       });
      },
      features);
  DecodeOptions decode;
  decode.do_lower_case = tokenizer->lowercases();
  const GoldDataset gold = load_gold_dataset(sources.dev_file);
  EvalOptions eval_options;
  eval_options.allow_missing = true;  // as run_squad: a question without features gets no prediction
  std::vector<SquadEvaluation> scores;
  for (auto& condition : logits) {
    const auto predictions = decode_predictions(dataset.examples, features, condition, *tokenizer, decode);
    PredictionMap answers;
    for (const auto& p : predictions) answers.set(p.qas_id, p.text);
    scores.push_back(evaluate_squad(gold, answers, eval_options));
    condition.clear();
    condition.shrink_to_fit();
  }
  std::vector<AmnesicRow> rows;
  for (size_t i = 0; i < layers.size(); ++i) {
    AmnesicRow row;
    row.layer = layers[i];
    row.rank = erasers[i].leace.rank();
    const SquadEvaluation* conditions[3] = {&scores[0], &scores[1 + 2 * i], &scores[2 + 2 * i]};
    for (int c = 0; c < 3; ++c) {
      row.f1[c] = conditions[c]->overall.f1;
      row.exact[c] = conditions[c]->overall.exact;
      row.has_ans_f1[c] = conditions[c]->has_ans ? conditions[c]->has_ans->f1 : NAN;
      row.no_ans_f1[c] = conditions[c]->no_ans ? conditions[c]->no_ans->f1 : NAN;
    }
    rows.push_back(row);
    spdlog::info("amnesic layer {}: F1 intact {:.2f}, erased {:.2f}, random {:.2f}", row.layer, row.f1[0], row.f1[1],
                 row.f1[2]);
  }
  fs::create_directories(options.experiment_dir);
  write_file_atomically(options.experiment_dir / "amnesic.csv", amnesic_csv(rows));
  write_file_atomically(options.experiment_dir / "amnesic.svg", amnesic_svg(rows));
  write_file_atomically(options.experiment_dir / "amnesic.md", amnesic_md(rows, options, sources, train_features));
  spdlog::info("amnesic: wrote amnesic.csv, amnesic.md and amnesic.svg in {} ({:.1f} s)", options.experiment_dir.string(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  return rows;
}

}  // namespace layerprobe
