// probe_tools features: a SQuAD 2.0 file -> HF's sliding-window features as JSONL.
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <memory>

#include "commands.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/squad/features.hpp"
#include "layerprobe/squad/squad.hpp"
#include "../tool_main.hpp"

namespace layerprobe::tools {

namespace {

struct FeaturesArgs {
  TokenizerChoice tokenizer;
  std::filesystem::path data, output;
  std::string mode;
  FeatureOptions features;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void run_features(FeaturesArgs args) {
  auto start = std::chrono::steady_clock::now();
  args.features.is_training = args.mode == "train";
  args.features.threads = configure_threads(args.features.threads);
  const auto tokenizer = open_tokenizer(args.tokenizer);
  SquadLoadOptions load_options;
  load_options.is_training = args.features.is_training;
  auto dataset = load_squad(args.data, load_options);
  auto loaded = seconds_since(start);
  spdlog::info("{}: {} questions; featurising on {} thread(s)", args.data.string(), dataset.examples.size(),
               args.features.threads);
  auto features = convert_examples_to_features(dataset.examples, *tokenizer, args.features);
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
  add_tokenizer_options(*command, args->tokenizer);
  command->add_option("--data", args->data, "SQuAD 2.0 JSON file")->required();
  command->add_option("--mode", args->mode, "train: answer targets, unfindable answers skipped; eval: no targets")
      ->required()
      ->check(CLI::IsMember({"train", "eval"}));
  add_window_options(*command, args->features.window);
  add_threads_option(*command, args->features.threads, "Worker threads");
  command->add_option("--output", args->output, "JSONL file to write")->required();
  command->callback([args] { run_features(*args); });
}

}  // namespace layerprobe::tools
