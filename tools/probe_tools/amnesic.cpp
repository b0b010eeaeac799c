// probe_tools amnesic: amnesic probing with LEACE on a fine-tuned model and its
// probes' experiment directory (probe/amnesic.hpp).
#include <memory>
#include <string>

#include "../tool_main.hpp"
#include "commands.hpp"
#include "layerprobe/probe/amnesic.hpp"

namespace layerprobe::tools {

void add_amnesic_command(CLI::App& app) {
  auto* command = app.add_subcommand(
      "amnesic",
      "Amnesic probing with LEACE: per layer, erase the answer-start and answer-end indicators from the layer's "
      "output inside the fine-tuned model's forward pass (an eraser fitted on the train features' tokens), run the "
      "remaining layers and the model's own QA head on the dev set, against erasing a random subspace of the same "
      "rank; writes EXPER/amnesic.csv, amnesic.md and amnesic.svg (probe_evaluate exper adds them to report.md)");
  struct Args {
    AmnesicOptions options;
    WindowOptions window;
    int threads = 0;
  };
  auto args = std::make_shared<Args>();
  auto& o = args->options;
  command->add_option("--experiment", o.experiment_dir,
                      "Experiment directory: its fine_tuned probes give the model, train file and windows; the "
                      "outputs go there")
      ->required();
  command->add_option("--model", o.model_dir, "Fine-tuned model directory [the fine_tuned probes' model]");
  command->add_option("--train-file", o.train_file, "SQuAD 2.0 file the erasers are fitted on [the probes' train file]");
  command->add_option("--dev-file", o.dev_file,
                      "SQuAD 2.0 file scored [the fine_tuned predictions', else $SQUAD_DIR/dev-v2.0.json]");
  command->add_option("--train-features", o.train_features, "Train features whose tokens fit the erasers (0 = all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->add_option("--layers", o.layers, "Layers to erase at, e.g. 1,6,12 [all]")->delimiter(',');
  command->add_option("--batch-size", o.batch_size, "Features per batch (dev batches padded to max_seq_length, as "
                                                    "run_squad evaluates)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_option("--seed", o.seed, "Seed of the random control subspaces (seed + layer)")->capture_default_str();
  command->add_option("--device", o.device, "cpu or gpu")->check(CLI::IsMember({"cpu", "gpu"}))->capture_default_str();
  add_window_options(*command, args->window);
  command->add_option("--threads", args->threads, "CPU threads [$LAYERPROBE_THREADS or all cores]");
  command->callback([args, command] {
    configure_threads(args->threads);
    if (command->count("--max-seq-length") || command->count("--doc-stride") || command->count("--max-query-length"))
      args->options.window = args->window;
    run_amnesic(args->options);
  });
}

}  // namespace layerprobe::tools
