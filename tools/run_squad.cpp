// run_squad — transformers 2.5.1's examples/run_squad.py for every family, with its
// flags (underscored, as in the original) and defaults.
#include <torch/cuda.h>

#include <iostream>
#include <set>

#include "layerprobe/train/run_squad.hpp"
#include "layerprobe/model/family.hpp"
#include "layerprobe/squad/evaluate.hpp"
#include "tool_main.hpp"

using namespace layerprobe;

namespace {

// The most optimizer steps any step option may name (about 30 years at a thousand steps a second).
constexpr int64_t kMostSteps = 1'000'000'000'000;

// The registered families' model_type names, for --help.
std::string model_type_names() {
  std::string names;
  for (const auto* family : model_families()) names += (names.empty() ? "" : ", ") + family->model_type;
  return names;
}

void add_options(CLI::App& app, RunSquadOptions& o) {
  FineTuneOptions& t = o.train;
  app.add_option("--model_type", o.model_type,
                 "Model family: " + model_type_names() + " (must match the model's config.json)")
      ->capture_default_str();
  app.add_option("--model_name_or_path", o.model_name_or_path,
                 "Hugging Face model directory, or a hub name looked up in models/<name>")
      ->required();
  app.add_option("--output_dir", o.output_dir, "Where the model, checkpoints and predictions are written")->required();
  app.add_option("--tokenizer_name", o.tokenizer_name, "Directory (or hub name) with the family's tokenizer files [the model's]");
  app.add_option("--data_dir", o.data_dir, "Directory with train-v2.0.json / dev-v2.0.json, when the files are not given");
  app.add_option("--train_file", o.train_file, "SQuAD 2.0 training file");
  app.add_option("--predict_file", o.predict_file, "SQuAD 2.0 evaluation file");
  app.add_flag("--version_2_with_negative", o.version_2_with_negative, "The data has unanswerable questions (required)");
  app.add_option("--null_score_diff_threshold", o.null_score_diff_threshold,
                 "Predict no answer when null score - best span score exceeds this")
      ->capture_default_str();
  tools::add_window_options(app, o.window, "_");
  app.add_flag("--skip_unlabeled", o.skip_unlabeled,
               "Score only labeled questions when --predict_file has questions without answers (not marked "
               "is_impossible); without it such a file is predicted, then scoring stops with an error");
  app.add_flag("--do_train", o.do_train, "Fine-tune on --train_file");
  app.add_flag("--do_eval", o.do_eval, "Evaluate on --predict_file");
  app.add_flag("--do_lower_case", o.do_lower_case,
               "Lowercase the text (uncased models such as ALBERT). For the study's families (albert, bert, "
               "distilbert, roberta) the flag sets the tokenizer's casing, as transformers 2.5.1 does; for the "
               "newer ones a do_lower_case stated in tokenizer_config.json wins (a cased DeBERTa-v3 keeps its "
               "case). Answers are matched to the context lower-cased either way (get_final_text)");
  app.add_option("--per_gpu_train_batch_size", t.batch_size, "Training batch size")
      ->check(tools::integer_in(1, tools::kMostBatch))
      ->capture_default_str();
  app.add_option("--per_gpu_eval_batch_size", o.per_gpu_eval_batch_size, "Evaluation batch size")
      ->check(tools::integer_in(1, tools::kMostBatch))
      ->capture_default_str();
  app.add_option("--learning_rate", t.learning_rate, "AdamW learning rate")->check(tools::number_in(0, 1000))->capture_default_str();
  app.add_option("--gradient_accumulation_steps", t.gradient_accumulation_steps, "Batches per optimizer update")
      ->check(tools::integer_in(1, 1000000))
      ->capture_default_str();
  app.add_option("--weight_decay", t.weight_decay, "AdamW weight decay (not on biases and LayerNorm weights)")
      ->check(tools::number_in(0, 1000))
      ->capture_default_str();
  app.add_option("--adam_epsilon", t.adam_epsilon, "AdamW epsilon")->check(tools::number_in(0, 1))->capture_default_str();
  app.add_option("--max_grad_norm", t.max_grad_norm, "Gradient clipping norm")
      ->check(tools::number_in(0, 1e12))
      ->capture_default_str();
  app.add_option("--num_train_epochs", t.num_train_epochs,
                 "Training epochs (int(N) epochs run, as in run_squad.py; a fraction lengthens the schedule)")
      ->check(tools::number_in(0, kMostTrainEpochs))
      ->capture_default_str();
  app.add_option("--max_steps", t.max_steps, "If > 0: total optimizer updates, overriding --num_train_epochs")
      ->check(tools::integer_in(-1, kMostSteps))
      ->capture_default_str();
  app.add_option("--warmup_steps", t.warmup_steps, "Linear warmup updates")
      ->check(tools::integer_in(0, kMostSteps))
      ->capture_default_str();
  app.add_option("--n_best_size", o.n_best_size, "Candidate spans kept per question")
      ->check(tools::integer_in(1, tools::kMostTokens))
      ->capture_default_str();
  app.add_option("--max_answer_length", o.max_answer_length, "Longest answer in tokens")
      ->check(tools::integer_in(1, tools::kMostTokens))
      ->capture_default_str();
  app.add_option("--logging_steps", t.logging_steps, "Log the mean loss every N updates (0 = never)")
      ->check(tools::integer_in(0, kMostSteps))
      ->capture_default_str();
  app.add_option("--save_steps", t.save_steps, "Save checkpoint-<step> every N updates (0 = never)")
      ->check(tools::integer_in(0, kMostSteps))
      ->capture_default_str();
  app.add_flag("--save_every_epoch", t.save_every_epoch, "Also save epoch-<e> after each epoch");
  app.add_flag("--resume", t.resume, "Continue training from the newest checkpoint in --output_dir");
  app.add_flag("--pad_to_longest", t.pad_to_longest,
               "Pad training batches to their longest window instead of --max_seq_length (faster; padding then "
               "stays out of the loss, unlike HF)");
  app.add_flag("--no_cuda", o.no_cuda, "Run on the CPU even when CUDA is available");
  app.add_flag("--overwrite_output_dir", o.overwrite_output_dir, "Train into a non-empty --output_dir");
  // No feature cache exists, so there is nothing to overwrite; the flag binds no variable (a local
  // would be written after it is gone: UBSan found that).
  app.add_flag("--overwrite_cache")->description("Accepted for compatibility (features are never cached)");
  app.add_option("--seed", t.seed, "Seed for the new QA head, shuffling and dropout")->capture_default_str();
  app.add_flag("--fp16", o.fp16, "Mixed precision (autocast, dynamic loss scaling) on CUDA");
  app.add_flag("--bf16", o.bf16,
               "Mixed precision in bf16 (autocast: linears and matmuls in bf16, no loss scaling) for training and "
               "evaluation, on CUDA or a CPU with native bf16 (AVX512_BF16 or AMX)");
  app.add_option("--precision", o.precision,
                 "Evaluation encoder precision: fp32, bf16 (CUDA autocast, or a CPU with native bf16), fp16 "
                 "(CUDA) or int8 (a CPU with AVX512_VNNI or AMX-INT8; the linears of albert, bert, distilbert, "
                 "roberta, electra, xlm-roberta in 8-bit); training stays fp32 (or --fp16 / --bf16)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16", "int8"}))
      ->capture_default_str();
  tools::add_threads_option(app, o.threads, "Threads for features and LibTorch");
}

// CLI11 would only name the unexpected arguments; list what is accepted too.
void reject_unknown(const CLI::App& app) {
  const auto extras = app.remaining();
  if (extras.empty()) return;
  std::string unknown, valid;
  for (const auto& arg : extras) unknown += (unknown.empty() ? "" : " ") + arg;
  for (const CLI::Option* option : app.get_options()) valid += "\n  " + option->get_name();
  throw Error("unknown arguments: " + unknown + "\nvalid options:" + valid, 2);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Fine-tune and/or evaluate ALBERT on SQuAD 2.0, as transformers 2.5.1's run_squad.py.\n"
               "Evaluation writes predictions.json, nbest_predictions.json, null_odds.json and\n"
               "eval_results.json to --output_dir and prints `Results: {...}`."};
  app.allow_extras();
  RunSquadOptions options;
  options.threads = 0;
  bool verbose = false, quiet = false;
  tools::DistFlags dist_flags;
  add_options(app, options);
  tools::add_logging_flags(app, verbose, quiet);
  tools::add_dist_options(app, dist_flags);
  app.add_option("--local_rank", dist_flags.local_rank,
                 "This rank's GPU, as torch.distributed.launch passes it (default: $LOCAL_RANK)")
      ->check(tools::integer_in(-1, tools::kMostLocalRanks - 1));
  return tools::run_tool(app, argc, argv, [&] {
    reject_unknown(app);
    // int(--num_train_epochs) epochs run: below 1 none would (--max_steps overrides the epochs).
    if (options.train.max_steps <= 0) check_train_epochs(options.train.num_train_epochs);
    tools::configure_logging(verbose, quiet);
    install_stop_handlers();
    const int used = configure_threads(options.threads);
    if (options.threads <= 0) options.threads = used;
    if (auto status = tools::start_distributed(dist_flags, argc, argv, !options.no_cuda && torch::cuda::is_available()))
      return *status;
    auto results = run_squad(options);
    if (options.do_eval && dist::is_main()) std::cout << "Results: " << python_dict_repr(results) << std::endl;
    return 0;
  });
}
