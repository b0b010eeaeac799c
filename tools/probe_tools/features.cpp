// probe_tools features: a SQuAD 2.0 file -> HF's sliding-window features as JSONL.
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <memory>

#include "commands.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/squad/features.hpp"
#include "layerprobe/squad/squad.hpp"
#include "layerprobe/text/albert_tokenizer.hpp"

namespace layerprobe::tools {

namespace {

struct FeaturesArgs {
  std::filesystem::path vocab, data, output;
  std::string mode;
  FeatureOptions features;
  bool cased = false;
  bool keep_accents = false;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void run_features(FeaturesArgs args) {
  auto start = std::chrono::steady_clock::now();
  args.features.is_training = args.mode == "train";
  args.features.threads = configure_threads(args.features.threads);
  TokenizerOptions options;
  options.do_lower_case = !args.cased;
  options.keep_accents = args.keep_accents;
  AlbertTokenizer tokenizer(args.vocab, options);
  SquadLoadOptions load_options;
  load_options.is_training = args.features.is_training;
  auto dataset = load_squad(args.data, load_options);
  auto loaded = seconds_since(start);
  auto features = convert_examples_to_features(dataset.examples, tokenizer, args.features);
  auto featurised = seconds_since(start);
  std::string out;
  for (const auto& feature : features)
    out += feature_to_json_line(feature, dataset.examples[static_cast<size_t>(feature.example_index)].qas_id) + "\n";
  write_file_atomically(args.output, out);
  spdlog::info("{} questions ({} skipped) -> {} features in {}; load {:.2f} s, featurise {:.2f} s on {} threads, "
               "total {:.2f} s",
               dataset.examples.size(), dataset.skipped, features.size(), args.output.string(), loaded,
               featurised - loaded, args.features.threads, seconds_since(start));
}

}  // namespace

void add_features_command(CLI::App& app) {
  auto* command = app.add_subcommand(
      "features", "Featurise a SQuAD 2.0 file as transformers 2.5.1's squad_convert_examples_to_features "
                  "(one JSONL line per feature: qas_id, input_ids, token_type_ids, start_position, "
                  "end_position, is_impossible, token_to_orig_map)");
  auto args = std::make_shared<FeaturesArgs>();
  command->add_option("--vocab", args->vocab, "SentencePiece model, e.g. spiece.model of albert-base-v2")
      ->required();
  command->add_option("--data", args->data, "SQuAD 2.0 JSON file")->required();
  command->add_option("--mode", args->mode, "train: answer targets, unfindable answers skipped; eval: no targets")
      ->required()
      ->check(CLI::IsMember({"train", "eval"}));
  command->add_option("--max-seq-length", args->features.max_seq_length, "Tokens per window")->capture_default_str();
  command->add_option("--doc-stride", args->features.doc_stride, "Context tokens between window starts")
      ->capture_default_str();
  command->add_option("--max-query-length", args->features.max_query_length, "Question tokens kept")
      ->capture_default_str();
  command->add_option("--threads", args->features.threads, "Worker threads (0: $LAYERPROBE_THREADS or all cores)")
      ->capture_default_str();
  command->add_flag("--cased", args->cased, "Keep letter case (do_lower_case=False)");
  command->add_flag("--keep-accents", args->keep_accents, "Keep accents (no NFKD / combining-mark removal)");
  command->add_option("--output", args->output, "JSONL file to write")->required();
  command->callback([args] { run_features(*args); });
}

}  // namespace layerprobe::tools
