// probe_tools bench: throughput of every stage of the study on one set of
// features in one run (featurisation, encoder forward with and without
// length bucketing, probe training and prediction steps, a fine-tuning step),
// with analytic FLOPs, the machine's measured GEMM peak and peak memory.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "layerprobe/model/config.hpp"
#include "layerprobe/squad/features.hpp"

namespace layerprobe {

struct BenchOptions {
  std::filesystem::path model_dir;  // config.json + weights + the family's tokenizer files
  std::filesystem::path data_file;  // SQuAD 2.0 json
  int64_t features = 128;           // features measured (an even sample of the file's); 0 = all
  int64_t train_features = 32;      // of those, how many the fine-tuning step runs over
  int batch_size = 8;
  WindowOptions window;
  std::string device = "cpu";
  std::string precision = "fp32";  // fp32, bf16, fp16 or int8 (the frozen encoder's --precision)
  // A second precision ("int8", "bf16"; empty: none) whose forward pass is timed beside --precision's,
  // batch after batch in the same loop, so their ratio holds whatever else the machine runs.
  std::string compare_precision;
  bool fast_path = true;           // false: the reference encoder ops (set_fast_cpu_path)
  double gemm_seconds = 1.0;       // time spent measuring each GEMM peak
  bool profile = false;            // also time one forward pass per LibTorch op (BenchResult::forward_profile)
  int probe_seeds = 5;             // probe sets of the several-seed probe_train step (probe_train --seeds)
  // Probing methods timed as probe_train runs them beside the study's probes, each alone:
  // an architecture ("rank:1", "mlp:256": probe_train --probe linear,<it>), "control_task"
  // (--control-task) or "conditional" (--conditional).
  std::vector<std::string> probe_methods;
};

// Every figure of one bench run; to_json() gives the documented keys.
struct BenchResult {
  int64_t features = 0, feature_tokens = 0;
  double padding_fraction = 0;  // of the token slots the forward pass computes (batches padded to their longest)
  double featurize_s = 0, featurized_features = 0;
  double forward_fps = 0, forward_padded_fps = 0, probe_train_fps = 0, predict_fps = 0;
  int probe_seeds = 0;
  double probe_train_seeds_fps = 0;  // the probe_train step with probe_seeds probe sets on one encoder pass
  // Per probe method: the probe_train step with it (features/s), beside the plain step; and the
  // time of the method's own probe sets over the encoder pass's (forward alone, same batches).
  std::vector<std::pair<std::string, double>> probe_method_fps, probe_method_share;
  double flops_per_feature = 0, gemm_peak_onednn_gflops = 0, gemm_peak_blas_gflops = 0;
  double gemm_peak_bf16_gflops = 0;  // oneDNN bf16, on a CPU with native bf16 only
  double gemm_peak_int8_gflops = 0;  // oneDNN u8 x s8, on a CPU with VNNI or AMX-INT8 only
  // Each of the encoder's linear shapes as measured; the oneDNN peaks are their maxima.
  struct GemmShape {
    int64_t rows = 0, in = 0, out = 0;
    double fp32_gflops = 0, bf16_gflops = 0, int8_gflops = 0;
  };
  std::vector<GemmShape> gemm_shapes;
  std::string cpu_isa;               // onednn_cpu_isa()
  // The forward pass in BenchOptions::compare_precision, timed beside forward_fps (0: none).
  std::string compare_precision;
  double compare_forward_fps = 0;
  // run_squad's training step, in bf16 autocast under --precision bf16 (run_squad --bf16; float32
  // under --precision int8, an inference-only precision)
  double train_step_fps = 0, train_flops_per_feature = 0;  // forward FLOPs of the features it trained on
  double peak_rss_mb = 0;
  int threads = 0, batch_size = 0;
  std::string device, precision;
  bool fast_path = true;
  // Seconds per LibTorch op called by the encoder itself (nested ops count in their caller),
  // over one length-bucketed forward pass, largest first; empty unless BenchOptions::profile.
  std::vector<std::pair<std::string, double>> forward_profile;
  double forward_profile_s = 0;  // wall time of the profiled pass, the profiler's own cost included

  double gemm_peak_gflops() const;  // float32
  // The peak of `precision` (on this device): bf16's or int8's on a CPU, else float32's.
  double peak_gflops(const std::string& precision) const;
  // The peak of the precision the forward ran in: bf16's under --precision bf16 on a CPU.
  double forward_peak_gflops() const;
  double forward_mfu() const;
  double compare_forward_mfu() const;  // against compare_precision's peak
  double train_mfu() const;
  nlohmann::json to_json() const;
};

BenchResult run_bench(const BenchOptions& options);

// Multiply-adds x 2 of one eval forward pass over a feature of `tokens`
// tokens: embedding projection, every layer's linears and attention
// products, and the QA head (embedding lookups, norms and activations are
// not counted).
double forward_flops(const ModelConfig& config, int64_t tokens);

// The instruction set oneDNN dispatches to on this CPU ("avx2", "avx512_core_bf16",
// "avx512_core_amx", ...), from the libdnnl LibTorch uses; "unknown" when it cannot be asked.
std::string onednn_cpu_isa();

// GFLOP/s of an [rows,in] x [in,out] product, measured for about `seconds`, through oneDNN
// (mkldnn_linear on operands already in its layout, no conversions timed) or through torch::mm
// (the system BLAS, float32 only); `dtype` bf16 measures oneDNN's bf16 product, kChar its
// u8 x s8 product into float32 with per-channel scales (the int8 encoder's, its input already in u8).
double measure_gemm_gflops(int64_t rows, int64_t in, int64_t out, bool onednn, double seconds,
                           torch::ScalarType dtype = torch::kFloat);

}  // namespace layerprobe
