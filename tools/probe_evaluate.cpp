// probe_evaluate: official SQuAD 2.0 EM/F1 of probe predictions, per layer.
//   probe_evaluate exper DIR   every DIR/<kind>_epoch_<e>/<kind>_preds, plus summary.csv, layers.svg,
//                              report.svg and report.md (--bootstrap N intervals)
//   probe_evaluate preds DIR   one preds dir; results.csv beside it
//   probe_evaluate file DATA PRED   evaluate-v2.0.py on one prediction file
//   probe_evaluate MODEL            the final study's form: exper ./<MODEL's last path component>

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <tuple>

#include "layerprobe/probe/experiment.hpp"
#include "layerprobe/probe/experiment_eval.hpp"
#include "layerprobe/probe/probe_variant.hpp"
#include "layerprobe/squad/metrics.hpp"
#include "layerprobe/probe/report.hpp"
#include "layerprobe/probe/study_report.hpp"
#include "tool_main.hpp"

namespace fs = std::filesystem;
using namespace layerprobe;

namespace {

struct DirArgs {
  std::string dir;
  std::string dev_file;
  bool allow_missing = false, skip_unlabeled = false, allow_incomplete = false;
  BootstrapOptions bootstrap;
};

struct FileArgs {
  std::string data_file, pred_file, na_prob_file, out_file;
  double na_prob_thresh = 1.0;
  bool allow_missing = false, skip_unlabeled = false;
};

void add_dir_options(CLI::App& cmd, DirArgs& args, const std::string& what) {
  cmd.add_option("DIR", args.dir, what)->required()->check(CLI::ExistingDirectory);
  cmd.add_option("--dev-file", args.dev_file,
                 "SQuAD 2.0 file the predictions were made from (default: dev_file in preds_meta.json)")
      ->check(CLI::ExistingFile);
  cmd.add_flag("--allow-missing", args.allow_missing, "Score questions without a prediction as \"\" instead of failing");
  cmd.add_flag("--skip-unlabeled", args.skip_unlabeled,
               "Leave questions without gold answers (not marked is_impossible) out of the scores instead of failing");
  cmd.add_flag("--allow-incomplete", args.allow_incomplete,
               "Score the layer files found where layers are missing, or where probe_predict did not finish (no "
               "preds_meta.json beside the probes), instead of failing");
}

PredsEvalOptions preds_options(const DirArgs& args) {
  PredsEvalOptions options;
  if (!args.dev_file.empty()) options.dev_file = args.dev_file;
  options.allow_missing = args.allow_missing;
  options.skip_unlabeled = args.skip_unlabeled;
  options.allow_incomplete = args.allow_incomplete;
  return options;
}

// Writes results.csv beside the preds dir and prints its table.
RunResults evaluate_and_report(const fs::path& preds_dir, const PredsEvalOptions& options, GoldCache& gold) {
  RunResults run = evaluate_preds_dir(preds_dir, options, gold);
  const fs::path out = results_csv_path(preds_dir);
  write_file_atomically(out, results_csv(run.layers));
  // One seed of several gets a line; report.md tables their mean and spread.
  if (run.seed) {
    std::cout << "== " << preds_dir.string() << " (" << run.kind << ", epoch " << run.epoch << ", seed " << *run.seed
              << "): F1 layer " << run.layers.front().layer << " " << std::fixed << std::setprecision(2)
              << run.layers.front().eval.overall.f1 << ", layer " << run.layers.back().layer << " "
              << run.layers.back().eval.overall.f1 << std::defaultfloat << "\n"
              << std::flush;
  } else {
    std::cout << "== " << preds_dir.string() << " (" << run.kind << ", epoch " << run.epoch << ")\n"
              << results_table(run.layers) << std::flush;
  }
  spdlog::info("wrote {}", out.string());
  return run;
}

// report.md: the experiment's statistics with the codelength of each kind's epoch 1.
std::string experiment_report(const std::vector<KindStats>& stats, const std::vector<RunResults>& runs,
                              const DirArgs& args) {
  ReportInfo info;
  info.experiment = args.dir;
  // The SQuAD dev file the tables score, not a control task's answers (control_task_dev.json), whatever order the
  // runs were found in.
  info.dev_file = runs.front().dev_file;
  for (const auto& run : runs) {
    const auto variant = run.variant.empty() ? std::optional<ProbeVariant>{} : ProbeVariant::from_name(run.variant);
    if (!variant || variant->task != ProbeTask::control_task) {
      info.dev_file = run.dev_file;
      break;
    }
  }
  info.bootstrap = args.bootstrap;
  for (const auto& s : stats)
    if (!info.codelength.count(s.kind)) info.codelength[s.kind] = saved_codelengths(args.dir, s.kind);
  // The control task's compression, for the architecture the tables follow.
  const auto series = report_series(stats);
  if (!series.empty() && has_variants(stats)) {
    auto variant = series.front().variant.empty() ? ProbeVariant{} : *ProbeVariant::from_name(series.front().variant);
    variant.task = ProbeTask::control_task;
    for (const auto& s : series)
      if (!info.control_task_codelength.count(s.kind))
        info.control_task_codelength[s.kind] = saved_codelengths(args.dir, s.kind, variant.name());
  }
  if (fs::exists(fs::path(args.dir) / "amnesic.csv")) info.amnesic = read_amnesic_csv(fs::path(args.dir) / "amnesic.csv");
  return report_md(stats, info);
}

int run_exper(const DirArgs& args) {
  GoldCache gold;
  std::vector<RunResults> runs;
  for (const auto& preds_dir : find_preds_dirs(args.dir)) runs.push_back(evaluate_and_report(preds_dir, preds_options(args), gold));
  check_distinct_runs(runs);
  const auto started = std::chrono::steady_clock::now();
  const auto stats = layer_stats(runs, args.bootstrap);
  if (args.bootstrap.resamples > 0)
    spdlog::info("bootstrap: {} resamples of {} questions for {} kind/epoch series in {:.2f} s", args.bootstrap.resamples,
                 runs.front().layers.front().eval.questions.size(), stats.size(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  const fs::path dir(args.dir);
  write_file_atomically(dir / "summary.csv", summary_csv(stats));
  write_file_atomically(dir / "layers.svg", layers_svg(stats));
  write_file_atomically(dir / "report.svg", report_svg(stats));
  if (has_complexity_sweep(stats)) write_file_atomically(dir / "complexity.svg", complexity_svg(stats));
  write_file_atomically(dir / "report.md", experiment_report(stats, runs, args));
  spdlog::info("wrote summary.csv, layers.svg, report.svg{} and report.md in {}",
               has_complexity_sweep(stats) ? ", complexity.svg" : "", dir.string());
  return 0;
}

int run_preds(const DirArgs& args) {
  GoldCache gold;
  evaluate_and_report(args.dir, preds_options(args), gold);
  return 0;
}

int run_file(const FileArgs& args) {
  const GoldDataset gold = load_gold_dataset(args.data_file);
  const PredictionMap predictions = load_predictions_json(args.pred_file);
  NaProbMap na_probs;
  EvalOptions options;
  options.na_prob_thresh = args.na_prob_thresh;
  options.allow_missing = args.allow_missing;
  options.skip_unlabeled = args.skip_unlabeled;
  if (!args.na_prob_file.empty()) {
    na_probs = load_na_probs(args.na_prob_file);
    options.na_probs = &na_probs;
  }
  const SquadEvaluation eval = evaluate_squad(gold, predictions, options);
  if (eval.missing) spdlog::warn("{} questions had no prediction, scored as \"\"", eval.missing);
  if (eval.skipped_unlabeled) spdlog::warn("{} unlabeled questions left out of the scores", eval.skipped_unlabeled);
  // As evaluate-v2.0.py: json.dump to --out-file, else json.dumps(indent=2) to stdout.
  if (!args.out_file.empty()) {
    write_file_atomically(args.out_file, format_python_json(eval.to_json()));
  } else {
    std::cout << format_python_json(eval.to_json(), 2) << std::endl;
  }
  return 0;
}

}  // namespace

// The final study's form names a model: `probe_evaluate bert-base-uncased` is
// `probe_evaluate exper bert-base-uncased`.
std::vector<std::string> arguments(int argc, char** argv) {
  std::vector<std::string> words(argv, argv + argc);
  if (words.size() > 1 && !words[1].empty() && words[1][0] != '-' && words[1] != "exper" && words[1] != "preds" &&
      words[1] != "file") {
    words[1] = model_experiment_dir(words[1]).string();
    words.insert(words.begin() + 1, "exper");
  }
  return words;
}

int main(int argc, char** argv) {
  CLI::App app{"Official SQuAD 2.0 evaluation (evaluate-v2.0.py numbers) of per-layer probe predictions.\n"
               "probe_evaluate MODEL is probe_evaluate exper ./<MODEL's last path component> (the final study's form)"};
  app.require_subcommand(1);
  bool verbose = false, quiet = false;
  tools::add_logging_flags(app, verbose, quiet);

  DirArgs exper_args, preds_args;
  auto* exper = app.add_subcommand(
      "exper", "Evaluate every DIR/<kind>_epoch_<e>/<kind>_preds (and seed_<s> in it); write each results.csv, and "
               "DIR/summary.csv, DIR/layers.svg, DIR/report.svg and DIR/report.md");
  add_dir_options(*exper, exper_args, "Experiment directory");
  exper->add_option("--bootstrap", exper_args.bootstrap.resamples,
                    "Resamples of the dev questions for 95% intervals of every layer's scores and of paired "
                    "differences between kinds (0 = off; at most " +
                        std::to_string(kMostBootstrapResamples) + ")")
      ->check(tools::integer_in(0, kMostBootstrapResamples))
      ->capture_default_str();
  exper->add_option("--bootstrap-seed", exper_args.bootstrap.seed, "Seed of the bootstrap's resampling")
      ->capture_default_str();
  auto* preds = app.add_subcommand("preds", "Evaluate one <kind>_preds directory; write results.csv beside it");
  add_dir_options(*preds, preds_args, "Predictions directory (pred_layer_<L>.json or .csv)");

  FileArgs file_args;
  auto* file = app.add_subcommand("file", "evaluate-v2.0.py: score one prediction file, print or write the metrics JSON");
  file->add_option("DATA", file_args.data_file, "SQuAD 2.0 data file")->required()->check(CLI::ExistingFile);
  file->add_option("PRED", file_args.pred_file, "Predictions {\"id\": \"answer\"}")->required()->check(CLI::ExistingFile);
  file->add_option("-n,--na-prob-file", file_args.na_prob_file, "No-answer probabilities {\"id\": p}; adds best_*")
      ->check(CLI::ExistingFile);
  file->add_option("-t,--na-prob-thresh", file_args.na_prob_thresh, "Predict \"\" when the no-answer probability exceeds this")
      ->capture_default_str();
  file->add_option("-o,--out-file", file_args.out_file, "Write the metrics JSON here instead of printing it");
  file->add_flag("--allow-missing", file_args.allow_missing, "Score questions without a prediction as \"\" instead of failing");
  file->add_flag("--skip-unlabeled", file_args.skip_unlabeled,
                 "Leave questions without gold answers (not marked is_impossible) out of the scores instead of failing");

  std::vector<std::string> words;
  try {
    words = arguments(argc, argv);
  } catch (const Error& e) {
    std::cerr << e.what() << "\n";
    return e.exit_code();
  }
  std::vector<char*> pointers;
  for (auto& word : words) pointers.push_back(word.data());
  return tools::run_tool(app, static_cast<int>(pointers.size()), pointers.data(), [&] {
    tools::configure_logging(verbose, quiet);
    install_stop_handlers();
    if (*exper) return run_exper(exper_args);
    if (*preds) return run_preds(preds_args);
    return run_file(file_args);
  });
}
