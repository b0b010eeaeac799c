#include "layerprobe/probe/lens.hpp"

#include <spdlog/spdlog.h>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/device.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/dist/dist.hpp"
#include "layerprobe/dist/sharding.hpp"
#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/model/family.hpp"
#include "layerprobe/model/model_dir.hpp"
#include "layerprobe/probe/experiment.hpp"
#include "layerprobe/squad/encode_loop.hpp"
#include "layerprobe/squad/predictions_io.hpp"
#include "layerprobe/squad/squad.hpp"
#include "layerprobe/text/tokenizer.hpp"

namespace layerprobe {

namespace fs = std::filesystem;

namespace {

std::vector<float> lens_row(const torch::Tensor& logits, int64_t row) {
  const float* data = logits.data_ptr<float>() + row * logits.size(1);
  return std::vector<float>(data, data + logits.size(1));
}

}  // namespace

fs::path head_lens_preds_dir(const fs::path& experiment_dir) { return experiment_dir / "head_lens_preds"; }

std::vector<std::vector<FeatureLogits>> head_lens_logits(QaModel& model, const std::vector<SquadFeature>& features,
                                                         const LogitsOptions& options, const torch::Device& device) {
  if (options.batch_size < 1) throw Error("--batch-size must be at least 1", 2);
  model.eval();
  const int64_t layers = model.num_layers();
  std::vector<std::vector<FeatureLogits>> logits(static_cast<size_t>(layers));
  for (auto& layer : logits) layer.reserve(features.size());
  EncodeLoopOptions loop;
  loop.label = "head lens";
  loop.padding = BatchOptions{options.pad_to, options.pad_id};
  loop.device = device;
  loop.resume_hint = "Nothing was written; rerun the same command.";
  // run_squad's batches: consecutive features, padded to max_seq_length.
  for_each_batch(features, sequential_batches(features.size(), static_cast<size_t>(options.batch_size)), loop,
                 [&](const LoopBatch& batch) {
                   torch::InferenceMode inference;
                   const auto output = encode_frozen(model, batch.inputs, options.precision, true);
                   for (int64_t layer = 1; layer <= layers; ++layer) {
                     auto [start, end] = model.head_logits_at(output.hidden_states[static_cast<size_t>(layer)], layer);
                     start = start.to(torch::kCPU, torch::kFloat).contiguous();
                     end = end.to(torch::kCPU, torch::kFloat).contiguous();
                     for (int64_t r = 0; r < static_cast<int64_t>(batch.rows.size()); ++r)
                       logits[static_cast<size_t>(layer - 1)].push_back({lens_row(start, r), lens_row(end, r)});
                   }
                   return std::string();
                 });
  return logits;
}

void predict_head_lens(const HeadLensOptions& input) {
  HeadLensOptions options = input;
  if (options.dev_file.empty()) options.dev_file = squad_dir() / "dev-v2.0.json";
  const auto device = parse_device(options.device);
  check_precision(options.precision, device);
  const OpenedModel opened = open_model_dir(options.model_dir, "MODEL");
  // The windows' no-answer position: the one run_squad fine-tuned the head with (the family's, unless given).
  options.window = options.window.resolved(opened.family->null_position);
  require_squad_file(options.dev_file, "--dev-file");
  LoadedModel loaded = load_checkpoint(opened);
  if (!loaded.has_qa_head)
    throw Error("the head lens reads a fine-tuned model's own QA head, and '" + options.model_dir.string() +
                "' has none (no " + loaded.model->family().head_output +
                "); give the fine-tuned model (run_squad's --output_dir)");
  loaded.model->to(device);
  const auto& tokenizer = opened.tokenizer;
  const auto dataset = load_squad(options.dev_file);
  FeatureOptions feature_options;
  feature_options.window = options.window;
  feature_options.is_training = false;
  auto features = convert_examples_to_features(dataset.examples, *tokenizer, feature_options);
  spdlog::info("{}: {} questions -> {} features; the head lens of {} ({} layers)", options.dev_file.string(),
               dataset.examples.size(), features.size(), options.model_dir.string(), loaded.config.num_hidden_layers);
  // Each rank its questions, with all their windows (all of them in one process).
  const auto shard = dist::enabled()
                         ? dist::question_shard(dataset.examples, features, dist::rank(), dist::world_size())
                         : dist::QuestionShard{};
  const auto& examples = dist::enabled() ? shard.examples : dataset.examples;
  const auto& local_features = dist::enabled() ? shard.features : features;
  LogitsOptions logits_options;
  logits_options.batch_size = options.batch_size;
  logits_options.pad_to = options.window.max_seq_length;
  logits_options.pad_id = tokenizer->pad_id();
  logits_options.precision = options.precision;
  auto logits = keep_on_stop([&] { return head_lens_logits(*loaded.model, local_features, logits_options, device); },
                             features);
  DecodeOptions decode;
  decode.do_lower_case = tokenizer->lowercases();
  decode.n_best_size = options.n_best_size;
  decode.max_answer_length = options.max_answer_length;
  decode.null_score_diff_threshold = options.null_score_diff_threshold;
  const fs::path preds = head_lens_preds_dir(options.experiment_dir);
  for (size_t layer = 0; layer < logits.size(); ++layer) {
    auto predictions = dist::gather_predictions(
        decode_predictions(examples, local_features, logits[layer], *tokenizer, decode), dataset.examples.size());
    logits[layer].clear();
    logits[layer].shrink_to_fit();
    if (!dist::is_main()) continue;
    const std::string name = std::to_string(layer + 1);
    write_predictions_csv(preds / ("pred_layer_" + name + ".csv"), predictions);
    write_predictions_json(preds / ("pred_layer_" + name + ".json"), predictions);
    write_null_odds_json(preds / ("null_odds_layer_" + name + ".json"), predictions);
  }
  if (!dist::is_main()) return;
  const nlohmann::json meta = {{"dev_file", fs::absolute(options.dev_file).lexically_normal().string()},
                               {"dev_file_fingerprint", file_fingerprint(options.dev_file)},
                               {"layers", loaded.config.num_hidden_layers},
                               {"first_layer", 1},
                               {"kind", "head_lens"},
                               {"epoch", 0},
                               {"model", fs::absolute(options.model_dir).lexically_normal().string()},
                               {"lens", "the model's own QA head (final norm, where the family has one, then head) "
                                        "on every layer's hidden state"},
                               {"questions", dataset.examples.size()},
                               {"window", options.window.to_json()},
                               {"batch_size", options.batch_size},
                               {"padded_to", options.window.max_seq_length},
                               {"max_answer_length", options.max_answer_length},
                               {"n_best_size", options.n_best_size},
                               {"null_score_diff_threshold", options.null_score_diff_threshold}};
  write_file_atomically(preds / "preds_meta.json", meta.dump(2) + "\n");
  spdlog::info("head lens: {} layers x {} predictions -> {}", logits.size(), dataset.examples.size(), preds.string());
}

}  // namespace layerprobe
