// probe_tools bench: throughput, FLOP utilisation and memory of the study's
// stages on one set of features (see docs in README.md, "Performance").
#include <spdlog/spdlog.h>

#include <iostream>
#include <memory>

#include "../tool_main.hpp"
#include "commands.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/bench/bench.hpp"
#include "layerprobe/core/common.hpp"

namespace layerprobe::tools {

namespace {

struct BenchArgs {
  BenchOptions options;
  std::string model_dir, data_file;
  int threads = 0;
  bool json = false, reference_path = false;
};

void print_table(const nlohmann::json& r) {
  auto line = [](const std::string& what, const std::string& value) { std::cout << what << ": " << value << "\n"; };
  line("features", fmt::format("{} ({:.0f} tokens on average), batch {}, {} thread(s), {} {}", r["features"].get<int64_t>(),
                               r["mean_tokens"].get<double>(), r["batch_size"].get<int>(), r["threads"].get<int>(),
                               r["device"].get<std::string>(), r["precision"].get<std::string>()));
  line("featurisation", fmt::format("{:.2f} s for {:.0f} features", r["featurize_s"].get<double>(),
                                    r["featurized_features"].get<double>()));
  line("forward, bucketed", fmt::format("{:.2f} features/s", r["forward_fps"].get<double>()));
  line("forward, padded", fmt::format("{:.2f} features/s ({:.2f}x)", r["forward_padded_fps"].get<double>(),
                                      r["forward_padded_ratio"].get<double>()));
  line("probe_train step", fmt::format("{:.2f} features/s ({:.3f}x forward)", r["probe_train_fps"].get<double>(),
                                       r["probe_train_ratio"].get<double>()));
  if (r["probe_seeds"].get<int>() > 1)
    line("probe_train, " + std::to_string(r["probe_seeds"].get<int>()) + " seeds",
         fmt::format("{:.2f} features/s ({:.3f}x the time of one seed)", r["probe_train_seeds_fps"].get<double>(),
                     r["probe_seeds_cost"].get<double>()));
  for (const auto& [method, fps] : r["probe_method_fps"].items())
    line("probe_train + " + method,
         fmt::format("{:.2f} features/s ({:.3f}x the time of the plain step; its probes {:.3f}x the encoder pass)",
                     fps.get<double>(), r["probe_method_cost"][method].get<double>(),
                     r["probe_method_share"][method].get<double>()));
  line("probe_predict", fmt::format("{:.2f} features/s", r["predict_fps"].get<double>()));
  line("FLOPs", fmt::format("{:.2f} GFLOP/feature, forward {:.1f} GFLOP/s, GEMM peak {:.1f} (oneDNN {:.1f}, BLAS {:.1f})",
                            r["flops_per_feature"].get<double>() / 1e9, r["forward_gflops"].get<double>(),
                            r["gemm_peak_gflops"].get<double>(), r["gemm_peak_onednn_gflops"].get<double>(),
                            r["gemm_peak_blas_gflops"].get<double>()));
  line("forward MFU", fmt::format("{:.1f}%", 100 * r["forward_mfu"].get<double>()));
  if (r.contains("compare_precision"))
    line("forward, " + r["compare_precision"].get<std::string>(),
         fmt::format("{:.2f} features/s ({:.2f}x {}), MFU {:.1f}%", r["compare_forward_fps"].get<double>(),
                     r["compare_forward_ratio"].get<double>(), r["precision"].get<std::string>(),
                     100 * r["compare_forward_mfu"].get<double>()));
  if (r["gemm_peak_int8_gflops"].get<double>() > 0)
    line("int8 GEMM peak", fmt::format("{:.1f} GOP/s (oneDNN u8 x s8)", r["gemm_peak_int8_gflops"].get<double>()));
  line("run_squad step", fmt::format("{:.2f} features/s, MFU {:.1f}%", r["train_step_fps"].get<double>(),
                                     100 * r["train_mfu"].get<double>()));
  line("peak memory", fmt::format("{:.0f} MB", r["peak_rss_mb"].get<double>()));
}

void run_bench_command(BenchArgs& args) {
  configure_threads(args.threads);
  args.options.model_dir = args.model_dir;
  args.options.data_file = args.data_file;
  args.options.fast_path = !args.reference_path;
  auto result = run_bench(args.options).to_json();
  if (args.json) std::cout << result.dump() << "\n";
  else print_table(result);
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* command = app.add_subcommand(
      "bench",
      "Measure featurisation, encoder forward (length-bucketed and padded), probe_train and probe_predict steps, "
      "a run_squad training step, FLOP utilisation against the measured GEMM peak, and peak memory");
  auto args = std::make_shared<BenchArgs>();
  auto& o = args->options;
  command->add_option("--model", args->model_dir, "Model directory (config.json, weights, tokenizer files)")->required();
  command->add_option("--data", args->data_file, "SQuAD 2.0 json file to featurise and measure on")->required();
  command->add_option("--features", o.features, "Features measured, an even sample of the file's (0 = all)")
      ->check(integer_in(0, INT64_MAX))
      ->capture_default_str();
  command->add_option("--train-features", o.train_features, "Of those, features run through the run_squad step (0 = skip)")
      ->check(integer_in(0, INT64_MAX))
      ->capture_default_str();
  command->add_option("--batch-size", o.batch_size, "Batch size")->check(integer_in(1, kMostBatch))->capture_default_str();
  add_window_options(*command, o.window);
  command->add_option("--device", o.device, "cpu or gpu")->capture_default_str();
  command->add_option("--precision", o.precision, kEncoderPrecisionHelp)
      ->capture_default_str();
  command->add_option("--compare-precision", o.compare_precision,
                      "A second encoder precision (int8, bf16, fp16) whose forward pass is timed beside --precision's "
                      "on the same batches, one after the other (JSON compare_forward_fps, compare_forward_ratio, "
                      "compare_forward_mfu against its own GEMM peak)");
  add_threads_option(*command, args->threads);
  command->add_option("--gemm-seconds", o.gemm_seconds, "Seconds spent measuring each GEMM peak")
      ->check(number_in(0.001, 3600))
      ->capture_default_str();
  command->add_flag("--reference-path", args->reference_path,
                    "Run the encoder's reference ops instead of its CPU fast path (for comparison)");
  command->add_flag("--profile", o.profile,
                    "Also time one forward pass per LibTorch op the encoder calls (logged; JSON key forward_profile)");
  command->add_option("--probe-seeds", o.probe_seeds,
                      "Probe sets of the several-seed probe_train step (probe_train --seeds), timed beside the "
                      "one-seed step (1 = skip)")
      ->check(integer_in(1, kMostSeeds))
      ->capture_default_str();
  command->add_option("--probe-methods", o.probe_methods,
                      "Probing methods timed as probe_train runs them beside the study's probes, each against the "
                      "plain step: an architecture (rank:1, mlp:256), control_task, conditional or tuned_lens")
      ->delimiter(',');
  command->add_flag("--json", args->json, "Print one JSON object instead of a table");
  command->callback([args] { run_bench_command(*args); });
}

}  // namespace layerprobe::tools
