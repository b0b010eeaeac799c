// probe_predict [exper|probes] DIR [cpu|gpu] — every layer's probe answers
// the dev questions, as the original predict.py did.
#include "layerprobe/probe/workflow.hpp"
#include "tool_main.hpp"

using namespace layerprobe;

int main(int argc, char** argv) {
  CLI::App app{"Predict dev-set answers with every layer's probe.\n"
               "Writes <kind>_preds/pred_layer_<L>.{csv,json} and null_odds_layer_<L>.json beside each probes dir."};
  ProbePredictOptions options;
  int threads = 0;
  bool verbose = false, quiet = false;
  app.add_option("mode", options.mode, "exper: every DIR/*_epoch_*/*_probes; probes: one probes directory")
      ->required()
      ->check(CLI::IsMember({"exper", "probes"}));
  app.add_option("dir", options.dir, "Experiment or probes directory")->required();
  app.add_option("device", options.device, "cpu or gpu")->check(CLI::IsMember({"cpu", "gpu"}))->capture_default_str();
  app.add_option("--dev-file", options.dev_file, "SQuAD 2.0 dev file [$SQUAD_DIR/dev-v2.0.json]");
  app.add_option("--pretrained-model", options.pretrained_model,
                 "Model for pretrained probes [the one recorded in the probes]");
  app.add_option("--fine-tuned-model", options.fine_tuned_model,
                 "Model for fine_tuned probes [the one recorded in the probes]");
  app.add_option("--vocab", options.vocab, "SentencePiece model [the one the probes were trained with]");
  app.add_option("--batch-size", options.batch_size, "Features per encoder batch")->capture_default_str();
  app.add_option("--max-answer-length", options.max_answer_length, "Longest answer in tokens")->capture_default_str();
  app.add_option("--n-best-size", options.n_best_size, "Candidate starts and ends per window")->capture_default_str();
  app.add_option("--null-score-diff-threshold", options.null_score_diff_threshold,
                 "Answer \"\" when null score - best span score exceeds this")
      ->capture_default_str();
  app.add_option("--precision", options.precision, "Encoder precision: fp32, or bf16/fp16 on a GPU (autocast)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))
      ->capture_default_str();
  app.add_option("--threads", threads, "CPU threads [$LAYERPROBE_THREADS or all cores]");
  tools::add_logging_flags(app, verbose, quiet);
  return tools::run_tool(app, argc, argv, [&] {
    tools::configure_logging(verbose, quiet);
    install_stop_handlers();
    configure_threads(threads);
    predict_probes(options);
    return 0;
  });
}
