#include "layerprobe/train/run_squad.hpp"

#include <spdlog/spdlog.h>
#include <torch/cuda.h>

#include <cstdlib>
#include <iostream>

#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/dist/dist.hpp"
#include "layerprobe/dist/sharding.hpp"
#include "layerprobe/squad/metrics.hpp"
#include "layerprobe/model/model_dir.hpp"
#include "layerprobe/squad/predictions_io.hpp"
#include "layerprobe/squad/squad.hpp"
#include "layerprobe/squad/evaluate.hpp"
#include "layerprobe/model/family.hpp"
#include "layerprobe/text/tokenizer_registry.hpp"

namespace layerprobe {

namespace fs = std::filesystem;

namespace {

fs::path data_file(const fs::path& given, const fs::path& data_dir, const char* default_name,
                   const std::string& option_name) {
  fs::path path = !given.empty() ? given : !data_dir.empty() ? data_dir / default_name : fs::path();
  if (path.empty()) throw Error(option_name + " is required (or --data_dir with " + default_name + ")", 2);
  require_squad_file(path, option_name);
  return path;
}

// The family --model_type names; a usage error (status 2) listing the known ones otherwise.
const ModelFamily& requested_family(const std::string& model_type) {
  try {
    return model_family(model_type);
  } catch (const Error& error) {
    throw Error(std::string("--model_type: ") + error.what(), 2);
  }
}

void validate(const RunSquadOptions& o) {
  requested_family(o.model_type);
  if (!o.version_2_with_negative)
    throw Error("this run_squad decodes SQuAD 2.0 only: pass --version_2_with_negative", 2);
  if (!o.do_train && !o.do_eval) throw Error("nothing to do: pass --do_train and/or --do_eval", 2);
  if (o.fp16 && o.bf16) throw Error("--fp16 and --bf16 exclude each other: pick one", 2);
  if (o.do_train && !o.overwrite_output_dir && !o.train.resume && fs::is_directory(o.output_dir) &&
      !fs::is_empty(o.output_dir))
    throw Error("Output directory (" + o.output_dir.string() +
                    ") already exists and is not empty. Use --overwrite_output_dir to overcome (or --resume to "
                    "continue its training).",
                2);
}

// run_squad.py builds the model class of --model_type; a directory of another family would not load there.
void check_model_type(const std::string& model_type, const ModelConfig& config, const fs::path& model_dir) {
  if (config.model_type != model_type)
    throw Error("--model_type " + model_type + " but '" + (model_dir / "config.json").string() + "' is a " +
                    config.model_type + " model; pass --model_type " + config.model_type,
                2);
}

torch::Device pick_device(const RunSquadOptions& o) {
  // LOCAL_RANK (or --local_rank) picks the GPU of a data-parallel rank.
  if (!o.no_cuda && torch::cuda::is_available())
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(dist::enabled() ? dist::local_rank() : 0));
  return torch::Device(torch::kCPU);
}

std::vector<SquadFeature> squad_features(const std::vector<SquadExample>& examples, const Tokenizer& tokenizer,
                                         const RunSquadOptions& o, bool is_training) {
  FeatureOptions options;
  options.window = o.window;
  options.is_training = is_training;
  options.decoding_fields = !is_training;
  options.threads = o.threads;
  return convert_examples_to_features(examples, tokenizer, options);
}

// The examples are dropped once featurised: training reads only the features.
std::vector<SquadFeature> training_features(const Tokenizer& tokenizer, const RunSquadOptions& o) {
  const fs::path train_file = data_file(o.train_file, o.data_dir, "train-v2.0.json", "--train_file");
  SquadLoadOptions load;
  load.is_training = true;
  auto dataset = load_squad(train_file, load);
  if (dataset.skipped)
    spdlog::warn("{}: skipped {} training examples whose answer does not match the context", train_file.string(),
                 dataset.skipped);
  auto features = squad_features(dataset.examples, tokenizer, o, true);
  spdlog::info("{}: {} examples -> {} training features", train_file.string(), dataset.examples.size(),
               features.size());
  return features;
}

void train(LoadedModel& loaded, const Tokenizer& tokenizer, const RunSquadOptions& o,
           const torch::Device& device) {
  const auto features = training_features(tokenizer, o);
  auto result = fine_tune(*loaded.model, features, o.train, device);
  spdlog::info(" global_step = {}, average loss = {}", result.global_step, result.mean_loss);
}

nlohmann::ordered_json evaluate(LoadedModel& loaded, const Tokenizer& tokenizer, const RunSquadOptions& o,
                                const torch::Device& device) {
  const fs::path predict_file = data_file(o.predict_file, o.data_dir, "dev-v2.0.json", "--predict_file");
  const auto dataset = load_squad(predict_file);
  const auto all_features = squad_features(dataset.examples, tokenizer, o, false);
  // Each rank evaluates its questions, with all their windows; rank 0 writes every answer.
  const auto shard = dist::enabled()
                         ? dist::question_shard(dataset.examples, all_features, dist::rank(), dist::world_size())
                         : dist::QuestionShard{};
  const auto& examples = dist::enabled() ? shard.examples : dataset.examples;
  const auto& features = dist::enabled() ? shard.features : all_features;
  spdlog::info("{}: {} examples -> {} features; evaluating with batch size {}", predict_file.string(),
               dataset.examples.size(), all_features.size(), o.per_gpu_eval_batch_size);
  LogitsOptions logits_options;
  logits_options.batch_size = o.per_gpu_eval_batch_size;
  logits_options.pad_to = o.window.max_seq_length;
  logits_options.pad_id = tokenizer.pad_id();
  logits_options.precision = o.precision != "fp32"             ? o.precision
                             : o.fp16 && device.is_cuda() ? "fp16"
                             : o.bf16                     ? "bf16"
                                                          : "fp32";
  const auto logits = compute_feature_logits(*loaded.model, features, logits_options, device);
  DecodeOptions decode;
  decode.n_best_size = o.n_best_size;
  decode.max_answer_length = o.max_answer_length;
  decode.null_score_diff_threshold = o.null_score_diff_threshold;
  decode.do_lower_case = o.do_lower_case;
  const auto predictions = dist::gather_predictions(decode_predictions(examples, features, logits, tokenizer, decode),
                                                   dataset.examples.size());
  if (!dist::is_main()) return nlohmann::ordered_json::object();
  fs::create_directories(o.output_dir);
  write_predictions_json(o.output_dir / "predictions.json", predictions);
  write_nbest_json(o.output_dir / "nbest_predictions.json", predictions);
  write_null_odds_json(o.output_dir / "null_odds.json", predictions);
  spdlog::info("wrote predictions.json, nbest_predictions.json and null_odds.json to {}", o.output_dir.string());
  auto results = squad_evaluate(predict_file, predictions, o.skip_unlabeled);
  write_file_atomically(o.output_dir / "eval_results.json", format_python_json(results, 4) + "\n");
  spdlog::info("wrote eval_results.json to {}", o.output_dir.string());
  return results;
}

}  // namespace

TokenizerRequest run_squad_tokenizer_request(const std::string& model_type, const fs::path& tokenizer_dir,
                                             bool do_lower_case) {
  const ModelFamily& family = requested_family(model_type);
  TokenizerRequest request;
  request.kind = family.tokenizer;
  // The study's families: --do_lower_case sets the casing, as 2.5.1's from_pretrained kwarg does.
  // The newer ones: it lower-cases only where the tokenizer's own tokenizer_config.json does not
  // state do_lower_case (a cased DeBERTa-v3's {"do_lower_case": false} keeps its case), as
  // transformers 4.57.5's run_squad goldens were made. Decoding (get_final_text) follows the flag.
  if (family.run_squad_flag_sets_casing || !read_tokenizer_settings(tokenizer_dir).do_lower_case)
    request.do_lower_case = do_lower_case;
  return request;
}

nlohmann::ordered_json run_squad(RunSquadOptions options) {
  validate(options);
  const torch::Device device = pick_device(options);
  check_precision(options.precision, device);
  if (options.bf16) check_precision("bf16", device);  // before any work
  const ModelFamily& family = requested_family(options.model_type);
  check_precision_for_family(options.precision, family);
  const fs::path model_dir = resolve_model_dir(options.model_name_or_path, "--model_name_or_path");
  const fs::path tokenizer_dir = options.tokenizer_name.empty()
                                     ? model_dir
                                     : resolve_model_dir(options.tokenizer_name, "--tokenizer_name");
  const auto tokenizer =
      load_tokenizer(tokenizer_dir, run_squad_tokenizer_request(options.model_type, tokenizer_dir, options.do_lower_case));

  // A fresh QA head is drawn from the seeded generator, as set_seed() precedes loading in HF.
  torch::manual_seed(options.train.seed);
  LoadOptions load_options;
  load_options.precision = options.precision;  // its family checked again, from config.json
  LoadedModel loaded = load_checkpoint(model_dir, std::nullopt, load_options);
  check_model_type(options.model_type, loaded.config, model_dir);
  // Training targets and decoding read the no-answer score where the family puts it unless
  // --null_position says otherwise (probe_train then reads it there too by default).
  options.window = options.window.resolved(model_family(loaded.config.model_type).null_position);
  loaded.model->to(device);
  spdlog::info("model {} ({} layers, hidden {}) on {}", model_dir.string(), loaded.config.num_hidden_layers,
               loaded.config.hidden_size, device.str());
  if (options.do_train) {
    options.train.output_dir = options.output_dir;
    options.train.tokenizer = tokenizer.get();
    options.train.max_seq_length = options.window.max_seq_length;
    options.train.fp16 = options.fp16;
    options.train.bf16 = options.bf16;
    train(loaded, *tokenizer, options, device);
  }
  if (!options.do_eval) return nlohmann::ordered_json::object();
  return evaluate(loaded, *tokenizer, options, device);
}

}  // namespace layerprobe
