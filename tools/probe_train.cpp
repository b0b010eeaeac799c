// probe_train [pretrained|fine_tuned|both] [cpu|gpu] EPOCHS — train one probe
// per layer on frozen models, as the original train.py did; or, in the final
// study's form, probe_train MODEL [cpu|gpu] EPOCHS for one named model.
#include "layerprobe/core/precision.hpp"
#include "layerprobe/model/model_dir.hpp"
#include "layerprobe/probe/experiment.hpp"
#include "layerprobe/probe/workflow.hpp"
#include "tool_main.hpp"

using namespace layerprobe;

namespace {

// The final study's form: one model, opened here and probed in an experiment directory named after it.
OpenedModels use_named_model(const std::string& name, const std::string& kind, ProbeTrainOptions& options) {
  std::filesystem::path dir;
  try {
    dir = resolve_model_dir(name, "MODEL");
  } catch (const Error& e) {
    throw Error(std::string("the first argument is pretrained, fine_tuned, both, or a model; ") + e.what(), 2);
  }
  const std::string option = kind.empty() ? "MODEL" : kind == "pretrained" ? "--pretrained-model" : "--fine-tuned-model";
  auto opened = std::make_shared<const OpenedModel>(open_model_dir(dir, option, options.vocab));
  const std::string probed_as = kind.empty() ? inferred_probe_kind(*opened) : kind;
  options.kinds = {probed_as};
  (probed_as == "pretrained" ? options.pretrained_model : options.fine_tuned_model) = dir;
  options.output_dir = model_experiment_dir(name, options.output_dir);
  return {opened};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train a softmax-regression probe per layer of frozen encoders (ALBERT, BERT, DistilBERT, RoBERTa)\n"
               "on SQuAD 2.0. Writes OUT/<kind>_epoch_<e>/<kind>_probes/probes.safetensors after each epoch\n"
               "(with --seeds, <kind>_probes/seed_<s>/probes.safetensors; epoch 1 also writes codelength.csv);\n"
               "rerunning the same command resumes after the last finished epoch.\n"
               "  probe_train both cpu 3                   --pretrained-model/--fine-tuned-model (ALBERT defaults)\n"
               "  probe_train both cpu 3 --control --seeds 1,2,3  + a random-init control and 3 probe seeds\n"
               "  probe_train both cpu 3 --control-task --probe rank:1,linear,mlp:256 --conditional\n"
               "                                           + selectivity, a complexity sweep, conditional probing\n"
               "  probe_train bert-base-uncased cpu 3      one model (hub name under models/, or a path); OUT is\n"
               "                                           --output-dir/<name's last component>, e.g. ./bert-base-uncased"};
  std::string which, kind;
  ProbeTrainOptions options;
  int threads = 0;
  bool verbose = false, quiet = false;
  tools::DistFlags dist_flags;
  app.add_option("what", which, "pretrained, fine_tuned or both; or a model (hub name or directory)")->required();
  app.add_option("device", options.device, "cpu or gpu")->required()->check(CLI::IsMember({"cpu", "gpu"}));
  app.add_option("epochs", options.epochs, "Number of epochs")->required()->check(tools::integer_in(1, tools::kMostEpochs));
  app.add_option("--kind", kind, "With a named model: probe it as pretrained or fine_tuned [fine_tuned when its "
                                 "weights hold a QA head]")
      ->check(CLI::IsMember({"pretrained", "fine_tuned"}));
  app.add_option("--pretrained-model", options.pretrained_model, "Pretrained model directory (HF layout)")
      ->capture_default_str();
  app.add_option("--fine-tuned-model", options.fine_tuned_model, "Fine-tuned model directory (HF layout)")
      ->capture_default_str();
  app.add_option("--train-file", options.train_file, "SQuAD 2.0 training file [$SQUAD_DIR/train-v2.0.json]");
  app.add_option("--vocab", options.vocab, "Tokenizer vocabulary file or directory [the model's own]");
  app.add_option("--output-dir", options.output_dir,
                 "Experiment directory (with a named model: where its directory is made)")
      ->capture_default_str();
  app.add_option("--batch-size", options.batch_size, "Features per batch")
      ->check(tools::integer_in(1, tools::kMostBatch))
      ->capture_default_str();
  app.add_option("--learning-rate", options.learning_rate, "AdamW learning rate")
      ->check(tools::number_in(0, 1000))
      ->capture_default_str();
  tools::add_window_options(app, options.window);
  app.add_option("--seed", options.seed, "Seed for the batch order, and for the probes' initialisation and dropout "
                                         "when --seeds is not given")
      ->capture_default_str();
  app.add_option("--seeds", options.seeds,
                 "Train one probe set per seed (initialisation and dropout) from the same encoder pass and batch "
                 "order, e.g. 1,2,3; each goes to <kind>_probes/seed_<s>/ (at most " +
                     std::to_string(tools::kMostSeeds) + ")")
      ->delimiter(',');
  app.add_flag("--control", options.control,
               "Also probe a control: a randomly initialised copy of the (first) probed model's architecture "
               "(HF init, never saved), written as kind 'control'");
  app.add_option("--control-seed", options.control_seed, "Seed of the control encoder's initialisation")
      ->capture_default_str();
  app.add_option("--probe", options.probes,
                 "Probe architectures, each a probe set from the same encoder pass: linear (the study's), rank:R "
                 "(W = U D, R x H), mlp:W (one ReLU layer of W units); e.g. rank:1,linear,mlp:256 [linear]")
      ->delimiter(',');
  app.add_flag("--control-task", options.control_task,
               "Also train every architecture on the control task (answers set by a seeded hash of token ids; "
               "Hewitt & Liang), for each layer's selectivity; in <kind>_probes/<probe>.control_task/");
  app.add_option("--control-task-seed", options.control_task_seed, "Seed of the control task's token scores")
      ->capture_default_str();
  app.add_flag("--conditional", options.conditional,
               "Also train every architecture on [layer l ; layer 0] and on layer 0 alone (conditional probing: "
               "what layer l adds to the embeddings)");
  app.add_flag("--tuned-lens", options.tuned_lens,
               "Also train the tuned lens of the fine-tuned model (per layer an affine translator into its own QA "
               "head, fitted to its last layer's start/end distributions), in <kind>_probes/tuned_lens/");
  app.add_option("--max-train-features", options.max_train_features, "Use only the first N features (0 = all)")
      ->check(tools::integer_in(0, INT64_MAX))
      ->capture_default_str();
  app.add_flag("--overwrite", options.overwrite, "Train again even where epochs are already saved");
  app.add_option("--precision", options.precision, kEncoderPrecisionHelp)
      ->check(CLI::IsMember({"fp32", "bf16", "fp16", "int8"}))
      ->capture_default_str();
  tools::add_threads_option(app, threads);
  tools::add_logging_flags(app, verbose, quiet);
  tools::add_dist_options(app, dist_flags);
  return tools::run_tool(app, argc, argv, [&] {
    tools::check_seed_list(options.seeds, "--seeds");
    tools::configure_logging(verbose, quiet);
    install_stop_handlers();
    if (auto status = tools::start_distributed(dist_flags, argc, argv, options.device == "gpu")) return *status;
    int used = configure_threads(threads);
    // Each model directory is opened once, here; everything below takes the opened models.
    OpenedModels models;
    if (which == "both")
      options.kinds = {"pretrained", "fine_tuned"};
    else if (which == "pretrained" || which == "fine_tuned")
      options.kinds = {which};
    else
      models = use_named_model(which, kind, options);
    if (!kind.empty() && options.kinds.size() == 1 && options.kinds.front() != kind)
      throw Error("--kind applies to a named model only", 2);
    if (dist::is_main()) tools::add_log_file(options.output_dir / "probe_train.log");
    spdlog::info("probe_train {} {} {} ({} threads{})", which, options.device, options.epochs, used,
                 dist::enabled() ? fmt::format(", {} ranks over {}", dist::world_size(), dist::backend_name()) : "");
    const auto start = std::chrono::steady_clock::now();
    if (models.empty()) models = open_probe_models(options);
    train_probes(options, models);
    if (dist::enabled())
      spdlog::info("rank 0 spent {:.2f} s of {:.2f} s in all-reduces (traffic and waiting for the other ranks)",
                   dist::collective_seconds(),
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return 0;
  });
}
