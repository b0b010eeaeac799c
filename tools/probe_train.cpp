// probe_train [pretrained|fine_tuned|both] [cpu|gpu] EPOCHS — train one probe
// per layer on frozen models, as the original train.py did.
#include "layerprobe/model/model_dir.hpp"
#include "layerprobe/probe/workflow.hpp"
#include "tool_main.hpp"

using namespace layerprobe;

int main(int argc, char** argv) {
  CLI::App app{"Train a softmax-regression probe per layer of frozen ALBERT models on SQuAD 2.0.\n"
               "Writes OUT/<kind>_epoch_<e>/<kind>_probes/probes.safetensors after each epoch; rerunning\n"
               "the same command resumes after the last finished epoch."};
  std::string which;
  ProbeTrainOptions options;
  int threads = 0;
  bool verbose = false, quiet = false;
  app.add_option("kind", which, "Which model's layers to probe")
      ->required()
      ->check(CLI::IsMember({"pretrained", "fine_tuned", "both"}));
  app.add_option("device", options.device, "cpu or gpu")->required()->check(CLI::IsMember({"cpu", "gpu"}));
  app.add_option("epochs", options.epochs, "Number of epochs")->required()->check(CLI::PositiveNumber);
  app.add_option("--pretrained-model", options.pretrained_model, "Pretrained model directory (HF layout)")
      ->capture_default_str();
  app.add_option("--fine-tuned-model", options.fine_tuned_model, "Fine-tuned model directory (HF layout)")
      ->capture_default_str();
  app.add_option("--train-file", options.train_file, "SQuAD 2.0 training file [$SQUAD_DIR/train-v2.0.json]");
  app.add_option("--vocab", options.vocab, "SentencePiece model [<model>/spiece.model]");
  app.add_option("--output-dir", options.output_dir, "Experiment directory")->capture_default_str();
  app.add_option("--batch-size", options.batch_size, "Features per batch")->capture_default_str();
  app.add_option("--learning-rate", options.learning_rate, "AdamW learning rate")->capture_default_str();
  app.add_option("--max-seq-length", options.max_seq_length, "Tokens per window")->capture_default_str();
  app.add_option("--doc-stride", options.doc_stride, "Window stride over the context")->capture_default_str();
  app.add_option("--max-query-length", options.max_query_length, "Question tokens kept")->capture_default_str();
  app.add_option("--seed", options.seed, "Seed for initialisation, shuffling and dropout")->capture_default_str();
  app.add_option("--max-train-features", options.max_train_features, "Use only the first N features (0 = all)")
      ->capture_default_str();
  app.add_flag("--overwrite", options.overwrite, "Train again even where epochs are already saved");
  app.add_option("--precision", options.precision, "Encoder precision: fp32, or bf16/fp16 on a GPU (autocast)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))
      ->capture_default_str();
  app.add_option("--threads", threads, "CPU threads [$LAYERPROBE_THREADS or all cores]");
  tools::add_logging_flags(app, verbose, quiet);
  return tools::run_tool(app, argc, argv, [&] {
    tools::configure_logging(verbose, quiet);
    install_stop_handlers();
    int used = configure_threads(threads);
    options.kinds = which == "both" ? std::vector<std::string>{"pretrained", "fine_tuned"}
                                    : std::vector<std::string>{which};
    tools::add_log_file(options.output_dir / "probe_train.log");
    spdlog::info("probe_train {} {} {} ({} threads)", which, options.device, options.epochs, used);
    train_probes(options);
    return 0;
  });
}
