// probe_predict [exper|probes] DIR [cpu|gpu] — every layer's probe answers
// the dev questions, as the original predict.py did; or, in the final study's
// form, probe_predict MODEL [cpu|gpu] for the experiment named after MODEL;
// probe_predict lens MODEL [cpu|gpu] — the model's own QA head at every layer.
#include "layerprobe/core/precision.hpp"
#include "layerprobe/model/model_dir.hpp"
#include "layerprobe/probe/experiment.hpp"
#include "layerprobe/probe/lens.hpp"
#include "layerprobe/probe/workflow.hpp"
#include "tool_main.hpp"

using namespace layerprobe;

namespace {

// Positionals: exper|probes DIR [device], or MODEL [device].
void read_positionals(const std::vector<std::string>& words, const std::string& root, ProbePredictOptions& options) {
  if (words.empty()) throw Error("expected exper DIR, probes DIR or a model name (see --help)", 2);
  const bool seed_form = words[0] == "exper" || words[0] == "probes";
  const size_t device_at = seed_form ? 2 : 1;
  if (words.size() > device_at + 1 || (seed_form && words.size() < 2))
    throw Error("expected exper DIR [cpu|gpu], probes DIR [cpu|gpu] or MODEL [cpu|gpu] (see --help)", 2);
  if (words.size() == device_at + 1) {
    options.device = words[device_at];
    if (options.device != "cpu" && options.device != "gpu")
      throw Error("device '" + options.device + "': expected cpu or gpu", 2);
  }
  if (seed_form) {
    options.mode = words[0];
    options.dir = words[1];
    return;
  }
  options.mode = "exper";
  options.dir = model_experiment_dir(words[0], root);
  const auto model_dir = resolve_model_dir(words[0], "MODEL");
  if (options.pretrained_model.empty()) options.pretrained_model = model_dir;
  if (options.fine_tuned_model.empty()) options.fine_tuned_model = model_dir;
}

// lens MODEL [cpu|gpu]: the head lens of MODEL into the experiment named after it.
bool read_lens_positionals(const std::vector<std::string>& words, const std::string& root, HeadLensOptions& lens) {
  if (words.empty() || words[0] != "lens") return false;
  if (words.size() < 2 || words.size() > 3) throw Error("expected lens MODEL [cpu|gpu] (see --help)", 2);
  if (words.size() == 3) {
    lens.device = words[2];
    if (lens.device != "cpu" && lens.device != "gpu") throw Error("device '" + lens.device + "': expected cpu or gpu", 2);
  }
  lens.model_dir = resolve_model_dir(words[1], "MODEL");
  lens.experiment_dir = model_experiment_dir(words[1], root);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Predict dev-set answers with every layer's probe.\n"
               "Writes <kind>_preds/pred_layer_<L>.{csv,json} and null_odds_layer_<L>.json beside each probes dir.\n"
               "  probe_predict lens MODEL [cpu|gpu]   the head lens: MODEL's own QA head on every layer's hidden\n"
               "      state, decoded as run_squad --do_eval does (its windows, batches of 8 padded to max_seq_length,\n"
               "      answers up to 30 tokens), into <experiments-root>/<MODEL's last path component>/head_lens_preds/"};
  ProbePredictOptions options;
  int threads = 0;
  bool verbose = false, quiet = false;
  tools::DistFlags dist_flags;
  std::vector<std::string> words;
  std::string root = ".";
  app.add_option("args", words,
                 "exper DIR [cpu|gpu]: every DIR/*_epoch_*/*_probes; probes DIR [cpu|gpu]: one probes directory; "
                 "MODEL [cpu|gpu]: the experiment named after MODEL (./<last path component>), with MODEL's "
                 "weights (a hub name under models/, or a path); lens MODEL [cpu|gpu]: MODEL's head lens")
      ->required()
      ->expected(1, 3);
  app.add_option("--experiments-root", root, "With MODEL: where its experiment directory lies")->capture_default_str();
  app.add_option("--dev-file", options.dev_file, "SQuAD 2.0 dev file [$SQUAD_DIR/dev-v2.0.json]");
  app.add_option("--pretrained-model", options.pretrained_model,
                 "Model for pretrained probes, and whose config.json the control encoder is rebuilt from [the one "
                 "recorded in the probes]");
  app.add_option("--fine-tuned-model", options.fine_tuned_model,
                 "Model for fine_tuned probes [the one recorded in the probes]");
  app.add_option("--vocab", options.vocab, "Tokenizer vocabulary file or directory [the one the probes were trained with]");
  app.add_option("--batch-size", options.batch_size, "Features per encoder batch")
      ->check(tools::integer_in(1, tools::kMostBatch))
      ->capture_default_str();
  app.add_option("--max-answer-length", options.max_answer_length, "Longest answer in tokens")
      ->check(tools::integer_in(1, tools::kMostTokens))
      ->capture_default_str();
  app.add_option("--n-best-size", options.n_best_size, "Candidate starts and ends per window")
      ->check(tools::integer_in(1, tools::kMostTokens))
      ->capture_default_str();
  app.add_option("--null-score-diff-threshold", options.null_score_diff_threshold,
                 "Answer \"\" when null score - best span score exceeds this")
      ->capture_default_str();
  app.add_option("--precision", options.precision, kEncoderPrecisionHelp)
      ->check(CLI::IsMember({"fp32", "bf16", "fp16", "int8"}))
      ->capture_default_str();
  HeadLensOptions lens;
  tools::add_window_options(app, lens.window);  // the lens featurises as run_squad; probes keep their own windows
  tools::add_threads_option(app, threads);
  tools::add_logging_flags(app, verbose, quiet);
  tools::add_dist_options(app, dist_flags);
  return tools::run_tool(app, argc, argv, [&] {
    tools::configure_logging(verbose, quiet);
    install_stop_handlers();
    configure_threads(threads);
    if (read_lens_positionals(words, root, lens)) {
      // run_squad's evaluation defaults unless given: batches of 8, answers up to 30 tokens.
      lens.batch_size = app.count("--batch-size") ? options.batch_size : 8;
      lens.max_answer_length = app.count("--max-answer-length") ? options.max_answer_length : 30;
      lens.n_best_size = options.n_best_size;
      lens.null_score_diff_threshold = options.null_score_diff_threshold;
      lens.dev_file = options.dev_file;
      lens.precision = options.precision;
      if (auto status = tools::start_distributed(dist_flags, argc, argv, lens.device == "gpu")) return *status;
      predict_head_lens(lens);
      return 0;
    }
    if (app.count("--max-seq-length") || app.count("--doc-stride") || app.count("--max-query-length"))
      throw Error("--max-seq-length, --doc-stride and --max-query-length apply to probe_predict lens only (probes "
                  "predict with the windows they were trained on)", 2);
    read_positionals(words, root, options);
    if (auto status = tools::start_distributed(dist_flags, argc, argv, options.device == "gpu")) return *status;
    predict_probes(options);
    return 0;
  });
}
