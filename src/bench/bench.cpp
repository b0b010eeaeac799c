#include "layerprobe/bench/bench.hpp"

#include <dlfcn.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <ATen/record_function.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <optional>

#include "layerprobe/squad/batch.hpp"
#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/squad/decoder.hpp"
#include "layerprobe/core/device.hpp"
#include "layerprobe/model/family.hpp"
#include "layerprobe/model/qa_model.hpp"
#include "layerprobe/squad/features.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/probe/workflow.hpp"
#include "layerprobe/probe/probe_model.hpp"
#include "layerprobe/probe/probe_variant.hpp"
#include "layerprobe/probe/probes.hpp"
#include "layerprobe/squad/squad.hpp"
#include "layerprobe/model/model_dir.hpp"
#include "layerprobe/squad/encode_loop.hpp"
#include "model/onednn.hpp"
#include "layerprobe/train/finetune.hpp"

namespace layerprobe {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Wall time of `work`, waiting for queued GPU work on both sides.
// Between batches: Ctrl-C/SIGTERM ends the bench (exit 130), which writes nothing before its end.
void stop_point() { throw_if_stop_requested("Nothing was written; rerun the bench."); }

double timed(const torch::Device& device, const std::function<void()>& work) {
  if (device.is_cuda()) torch::cuda::synchronize();
  auto start = Clock::now();
  work();
  if (device.is_cuda()) torch::cuda::synchronize();
  return seconds_since(start);
}

// An even sample of whole examples holding about `wanted` features, with
// the features' example_index renumbered into the sampled examples.
struct Sample {
  std::vector<SquadExample> examples;
  std::vector<SquadFeature> features;
};

Sample sample_examples(const std::vector<SquadExample>& examples, const std::vector<SquadFeature>& features,
                       int64_t wanted) {
  if (wanted <= 0 || wanted >= static_cast<int64_t>(features.size())) return {examples, features};
  std::vector<std::vector<const SquadFeature*>> by_example(examples.size());
  for (const auto& f : features) by_example[static_cast<size_t>(f.example_index)].push_back(&f);
  const double stride = static_cast<double>(features.size()) / static_cast<double>(wanted);
  Sample sample;
  for (double pos = 0; pos < static_cast<double>(examples.size()) &&
                       static_cast<int64_t>(sample.features.size()) < wanted;
       pos += stride) {
    const auto index = static_cast<size_t>(pos);
    if (by_example[index].empty()) continue;
    for (const SquadFeature* f : by_example[index]) {
      sample.features.push_back(*f);
      sample.features.back().example_index = static_cast<int>(sample.examples.size());
    }
    sample.examples.push_back(examples[index]);
  }
  return sample;
}

// Batches of batch_size features sorted by length (length bucketing).
std::vector<std::vector<const SquadFeature*>> bucketed_batches(const std::vector<SquadFeature>& features,
                                                               int batch_size) {
  std::vector<std::vector<const SquadFeature*>> batches;
  for (const auto& indices : length_bucketed_batches(features, static_cast<size_t>(batch_size))) {
    batches.emplace_back();
    for (size_t index : indices) batches.back().push_back(&features[index]);
  }
  return batches;
}

// The batch whose padded [rows x longest] tensors are the largest.
const std::vector<const SquadFeature*>& largest_batch(const std::vector<std::vector<const SquadFeature*>>& batches) {
  auto cells = [](const std::vector<const SquadFeature*>& rows) {
    size_t longest = 0;
    for (const auto* f : rows) longest = std::max(longest, f->length());
    return longest * rows.size();
  };
  return *std::max_element(batches.begin(), batches.end(),
                           [&](const auto& a, const auto& b) { return cells(a) < cells(b); });
}

torch::Tensor positions(const std::vector<const SquadFeature*>& rows, bool start, const torch::Device& device) {
  std::vector<int64_t> values;
  for (const auto* f : rows) values.push_back(start ? f->start_position : f->end_position);
  return torch::tensor(values, torch::kInt64).to(device);
}

// The probe_predict work after the encoder: every layer's probe scores
// every position, logits are copied out per feature and decoded.
std::vector<FeatureLogits> score_rows(const LayerProbes& probes, const torch::Tensor& hidden,
                                      const std::vector<const SquadFeature*>& rows) {
  auto scores = probes.score(hidden).to(torch::kCPU).contiguous();  // [L,B,T,2]
  auto accessor = scores.accessor<float, 4>();
  std::vector<FeatureLogits> out(static_cast<size_t>(scores.size(0)) * rows.size());
  for (int64_t layer = 0; layer < scores.size(0); ++layer)
    for (size_t row = 0; row < rows.size(); ++row) {
      auto& logits = out[static_cast<size_t>(layer) * rows.size() + row];
      for (size_t t = 0; t < rows[row]->length(); ++t) {
        logits.start.push_back(accessor[layer][static_cast<int64_t>(row)][static_cast<int64_t>(t)][0]);
        logits.end.push_back(accessor[layer][static_cast<int64_t>(row)][static_cast<int64_t>(t)][1]);
      }
    }
  return out;
}

double predict_seconds(QaModel& model, const Tokenizer& tokenizer, const LayerProbes& probes, const Sample& sample,
                       const std::vector<std::vector<const SquadFeature*>>& batches, const torch::Device& device,
                       const std::string& precision) {
  BatchOptions padding;
  padding.pad_id = tokenizer.pad_id();
  return timed(device, [&] {
    const auto layers = static_cast<size_t>(probes.layers());
    std::vector<std::vector<FeatureLogits>> logits(layers, std::vector<FeatureLogits>(sample.features.size()));
    for (const auto& rows : batches) {
      stop_point();
      auto hidden = probed_hidden_states(model, make_batch(rows, padding).to(device), precision);
      auto scored = score_rows(probes, hidden, rows);
      for (size_t layer = 0; layer < layers; ++layer)
        for (size_t row = 0; row < rows.size(); ++row)
          logits[layer][static_cast<size_t>(rows[row] - sample.features.data())] =
              std::move(scored[layer * rows.size() + row]);
    }
    DecodeOptions decode;
    decode.do_lower_case = tokenizer.lowercases();
    for (const auto& layer_logits : logits)
      decode_predictions(sample.examples, sample.features, layer_logits, tokenizer, decode);
  });
}

// run_squad's step: forward in train mode, mean start/end cross-entropy,
// backward and AdamW over every parameter.
double train_step_seconds(QaModel& model, const std::vector<std::vector<const SquadFeature*>>& batches,
                          const BatchOptions& padding, const torch::Device& device, const std::string& precision) {
  model.train();
  torch::optim::AdamW optimizer(model.parameters(), torch::optim::AdamWOptions(3e-5));
  double total = timed(device, [&] {
    for (const auto& rows : batches) {
      stop_point();
      auto batch = make_batch(rows, padding).to(device);
      torch::Tensor loss;
      {
        Autocast autocast(precision, device);  // run_squad --bf16 / --fp16
        auto out = model.forward(batch, false);
        loss = qa_loss(out.start_logits.to(torch::kFloat32), out.end_logits.to(torch::kFloat32),
                       positions(rows, true, device), positions(rows, false, device));
      }
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
    }
  });
  model.eval();
  return total;
}

// Inclusive time of each op the profiled thread starts outside any other op,
// through ATen's RecordFunction callbacks: a stable API from LibTorch 1.13 on,
// where the legacy profiler's header moved and is on its way out.
struct TopLevelOps {
  int depth = 0;
  std::map<std::string, double> seconds;
};
thread_local TopLevelOps* profiled_ops = nullptr;  // set on the profiled thread only

struct OpStart : at::ObserverContext {
  std::chrono::steady_clock::time_point time = std::chrono::steady_clock::now();
};

std::unique_ptr<at::ObserverContext> on_op_start(const at::RecordFunction&) {
  if (profiled_ops == nullptr || profiled_ops->depth++ > 0) return nullptr;
  return std::make_unique<OpStart>();
}

void on_op_end(const at::RecordFunction& op, at::ObserverContext* context) {
  if (profiled_ops == nullptr) return;
  --profiled_ops->depth;
  if (context == nullptr) return;
  const auto start = static_cast<OpStart*>(context)->time;
  profiled_ops->seconds[op.name()] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Profiles the calling thread while alive.
class ProfiledThread {
 public:
  ProfiledThread() : handle_(at::addThreadLocalCallback(at::RecordFunctionCallback(on_op_start, on_op_end))) {
    profiled_ops = &ops_;
  }
  ~ProfiledThread() {
    at::removeCallback(handle_);
    profiled_ops = nullptr;
  }
  ProfiledThread(const ProfiledThread&) = delete;
  ProfiledThread& operator=(const ProfiledThread&) = delete;

  std::vector<std::pair<std::string, double>> slowest_first() const {
    std::vector<std::pair<std::string, double>> sorted(ops_.seconds.begin(), ops_.seconds.end());
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    return sorted;
  }

 private:
  TopLevelOps ops_;
  at::CallbackHandle handle_;
};

std::vector<std::pair<std::string, double>> profile_forward(const std::function<void()>& forward_pass) {
  ProfiledThread profiled;
  forward_pass();
  return profiled.slowest_first();
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

}  // namespace

double forward_flops(const ModelConfig& config, int64_t tokens) {
  return model_family(config.model_type).forward_flops(config, tokens);
}

std::string onednn_cpu_isa() {
  // dnnl_get_effective_cpu_isa() of oneDNN's C API (dnnl.h); looked up at run time, as the libdnnl LibTorch
  // loaded (Debian's libdnnl.so.2) ships no development symlink to link against.
  using IsaFunction = int (*)();
  void* symbol = dlsym(RTLD_DEFAULT, "dnnl_get_effective_cpu_isa");
  if (!symbol) {
    if (void* library = dlopen("libdnnl.so.2", RTLD_LAZY | RTLD_NOLOAD)) symbol = dlsym(library, "dnnl_get_effective_cpu_isa");
  }
  if (!symbol) return "unknown";
  // dnnl_cpu_isa_t of oneDNN 2.x.
  static const std::pair<int, const char*> kIsas[] = {
      {0x1, "sse41"},          {0x3, "avx"},
      {0x7, "avx2"},           {0x407, "avx2_vnni"},
      {0x27, "avx512_core"},   {0x67, "avx512_core_vnni"},
      {0xe7, "avx512_core_bf16"}, {0x3e7, "avx512_core_amx"},
      {0xf, "avx512_mic"},     {0x1f, "avx512_mic_4ops"}};
  const int isa = reinterpret_cast<IsaFunction>(symbol)();
  for (const auto& [value, name] : kIsas)
    if (value == isa) return name;
  return "isa 0x" + fmt::format("{:x}", isa);
}

double measure_gemm_gflops(int64_t rows, int64_t in, int64_t out, bool onednn, double seconds, torch::ScalarType dtype) {
  if (dtype != torch::kFloat && !onednn) throw Error("the BLAS GEMM peak is measured in float32 only");
  if (dtype == torch::kChar) return int8_product_gflops(rows, in, out, seconds);
  torch::InferenceMode inference;
  auto x = torch::randn({rows, in}).to(dtype);
  auto weight = torch::randn({out, in}).to(dtype);
  auto bias = torch::zeros({out}).to(dtype);
  auto prepared = weight.to_mkldnn();
  // The product alone: operands already in oneDNN's layout, the result left in it.
  auto prepared_input = x.to_mkldnn();
  auto once = [&] {
    if (onednn) torch::mkldnn_linear(prepared_input, prepared, bias);
    else torch::mm(x, weight.t());
  };
  once();
  int64_t runs = 0;
  auto start = Clock::now();
  do {
    once();
    ++runs;
  } while (seconds_since(start) < seconds);
  return 2.0 * static_cast<double>(rows * in * out) * static_cast<double>(runs) / seconds_since(start) / 1e9;
}

namespace {

// The encoder's linear shapes [in, out]: Q, K and V fused, the attention output, FFN in, FFN out.
std::vector<std::pair<int64_t, int64_t>> encoder_linear_shapes(const ModelConfig& config) {
  const int64_t hidden = config.hidden_size, inner = config.intermediate_size;
  return {{hidden, 3 * hidden}, {hidden, hidden}, {hidden, inner}, {inner, hidden}};
}

void measure_gemm_peaks(const ModelConfig& config, int64_t rows, double seconds, BenchResult& result) {
  const bool bf16 = cpu_has_native_bf16(), int8 = cpu_has_int8_dot() && onednn_available();
  for (const auto& [in, out] : encoder_linear_shapes(config)) {
    const double fp32 = measure_gemm_gflops(rows, in, out, true, seconds);
    const double half = bf16 ? measure_gemm_gflops(rows, in, out, true, seconds, torch::kBFloat16) : 0.0;
    const double eight = int8 ? measure_gemm_gflops(rows, in, out, true, seconds, torch::kChar) : 0.0;
    result.gemm_peak_onednn_gflops = std::max(result.gemm_peak_onednn_gflops, fp32);
    result.gemm_peak_bf16_gflops = std::max(result.gemm_peak_bf16_gflops, half);
    result.gemm_peak_int8_gflops = std::max(result.gemm_peak_int8_gflops, eight);
    result.gemm_shapes.push_back({rows, in, out, fp32, half, eight});
    spdlog::info("bench: GEMM [{}x{}]x[{}x{}] through oneDNN: fp32 {:.1f} GFLOP/s, bf16 {:.1f}, int8 {:.1f} GOP/s", rows,
                 in, in, out, fp32, half, eight);
  }
  // The system BLAS on the FFN's product, for comparison (Debian's LibTorch sends torch::linear there).
  result.gemm_peak_blas_gflops = measure_gemm_gflops(rows, config.hidden_size, config.intermediate_size, false, seconds);
  spdlog::info("bench: GEMM peaks over the encoder's shapes: oneDNN fp32 {:.1f}, bf16 {:.1f}, int8 {:.1f}; BLAS fp32 "
               "{:.1f} GFLOP/s",
               result.gemm_peak_onednn_gflops, result.gemm_peak_bf16_gflops, result.gemm_peak_int8_gflops,
               result.gemm_peak_blas_gflops);
}

}  // namespace

double BenchResult::gemm_peak_gflops() const { return std::max(gemm_peak_onednn_gflops, gemm_peak_blas_gflops); }

double BenchResult::peak_gflops(const std::string& p) const {
  if (device != "cpu") return gemm_peak_gflops();
  return p == "bf16" ? gemm_peak_bf16_gflops : p == "int8" ? gemm_peak_int8_gflops : gemm_peak_gflops();
}

double BenchResult::forward_peak_gflops() const { return peak_gflops(precision); }

double BenchResult::forward_mfu() const {
  return forward_peak_gflops() > 0 ? forward_fps * flops_per_feature / 1e9 / forward_peak_gflops() : 0;
}

double BenchResult::compare_forward_mfu() const {
  const double peak = compare_precision.empty() ? 0 : peak_gflops(compare_precision);
  return peak > 0 ? compare_forward_fps * flops_per_feature / 1e9 / peak : 0;
}

double BenchResult::train_mfu() const {
  // Backward costs twice the forward's multiply-adds; int8 trains in float32.
  const double peak = precision == "int8" ? gemm_peak_gflops() : forward_peak_gflops();
  return peak > 0 ? train_step_fps * 3 * train_flops_per_feature / 1e9 / peak : 0;
}

nlohmann::json BenchResult::to_json() const {
  auto ratio = [&](double value) { return forward_fps > 0 ? value / forward_fps : 0.0; };
  // [[rows, in, out, fp32 GFLOP/s, bf16 GFLOP/s, int8 GOP/s], ...]
  nlohmann::json shapes = nlohmann::json::array();
  for (const auto& g : gemm_shapes) shapes.push_back({g.rows, g.in, g.out, g.fp32_gflops, g.bf16_gflops, g.int8_gflops});
  nlohmann::json json = {{"features", features},
          {"mean_tokens", features ? static_cast<double>(feature_tokens) / static_cast<double>(features) : 0.0},
          {"padding_fraction", padding_fraction},
          {"featurize_s", featurize_s},
          {"featurized_features", featurized_features},
          {"forward_fps", forward_fps},
          {"forward_padded_fps", forward_padded_fps},
          {"forward_padded_ratio", ratio(forward_padded_fps)},
          {"probe_train_fps", probe_train_fps},
          {"probe_train_ratio", ratio(probe_train_fps)},
          {"probe_seeds", probe_seeds},
          {"probe_train_seeds_fps", probe_train_seeds_fps},
          {"probe_seeds_cost", probe_train_seeds_fps > 0 ? probe_train_fps / probe_train_seeds_fps : 0.0},
          {"probe_method_fps", nlohmann::json::object()},
          {"probe_method_cost", nlohmann::json::object()},
          {"probe_method_share", nlohmann::json::object()},
          {"predict_fps", predict_fps},
          {"flops_per_feature", flops_per_feature},
          {"forward_gflops", forward_fps * flops_per_feature / 1e9},
          {"gemm_peak_gflops", gemm_peak_gflops()},
          {"gemm_peak_onednn_gflops", gemm_peak_onednn_gflops},
          {"gemm_peak_blas_gflops", gemm_peak_blas_gflops},
          {"gemm_peak_bf16_gflops", gemm_peak_bf16_gflops},
          {"gemm_peak_int8_gflops", gemm_peak_int8_gflops},
          {"gemm_shapes", shapes},
          {"forward_mfu", forward_mfu()},
          {"train_step_fps", train_step_fps},
          {"train_flops_per_feature", train_flops_per_feature},
          {"train_mfu", train_mfu()},
          {"peak_rss_mb", peak_rss_mb},
          {"threads", threads},
          {"cpu_isa", cpu_isa},
          {"openblas_core", openblas_core()},
          {"batch_size", batch_size},
          {"fast_path", fast_path},
          {"device", device},
          {"precision", precision}};
  if (!compare_precision.empty()) {
    json["compare_precision"] = compare_precision;
    json["compare_forward_fps"] = compare_forward_fps;
    json["compare_forward_ratio"] = ratio(compare_forward_fps);
    json["compare_forward_mfu"] = compare_forward_mfu();
  }
  for (const auto& [method, fps] : probe_method_fps) {
    json["probe_method_fps"][method] = fps;
    json["probe_method_cost"][method] = fps > 0 ? probe_train_fps / fps : 0.0;
  }
  for (const auto& [method, share] : probe_method_share) json["probe_method_share"][method] = share;
  if (!forward_profile.empty()) {
    json["forward_profile"] = forward_profile;  // [[op, seconds], ...]
    json["forward_profile_s"] = forward_profile_s;
  }
  return json;
}

namespace {

// The share of padding in the token slots of `batches`, each padded to its longest feature.
double padding_fraction(const std::vector<std::vector<const SquadFeature*>>& batches) {
  double slots = 0, tokens = 0;
  for (const auto& rows : batches) {
    size_t longest = 0;
    for (const auto* f : rows) {
      longest = std::max(longest, f->length());
      tokens += static_cast<double>(f->length());
    }
    slots += static_cast<double>(longest * rows.size());
  }
  return slots > 0 ? 1.0 - tokens / slots : 0.0;
}

// Times the frozen encoder's forward pass, the probe_train step (one and
// several probe seeds), the optional profile, the padded forward pass and
// probe_predict with decoding, each over the whole sample.
void measure_encoder(const BenchOptions& options, LoadedModel& loaded, const Tokenizer& tokenizer, const Sample& sample,
                     const torch::Device& device, const BatchOptions& unpadded, BenchResult& result) {
  QaModel& model = *loaded.model;
  const auto n = static_cast<double>(result.features);
  const auto batches = bucketed_batches(sample.features, options.batch_size);
  result.padding_fraction = padding_fraction(batches);
  // Probe set 0 is the one-seed step's; all of them, the several-seed step's.
  std::vector<LayerProbes> probe_sets;
  for (int s = 0; s < std::max(1, options.probe_seeds); ++s) {
    probe_sets.emplace_back(loaded.config.num_hidden_layers, loaded.config.hidden_size, ProbeOptions{}, s + 1);
    probe_sets.back().to(device);
  }
  LayerProbes& probes = probe_sets.front();
  auto forward_batch = [&](const EncoderBatch& batch) { encode_frozen(model, batch, options.precision, true); };
  auto forward = [&](const BatchOptions& padding) {
    return timed(device, [&] {
      for (const auto& rows : batches) {
        stop_point();
        forward_batch(make_batch(rows, padding).to(device));
      }
    });
  };
  uint64_t dropout_seed = 1;
  // probe_train's step: one encoder pass, then each probe set's train_step.
  auto probe_train_batch = [&](const std::vector<const SquadFeature*>& rows, const EncoderBatch& batch, size_t sets) {
    auto hidden = probed_hidden_states(model, batch, options.precision);
    for (size_t s = 0; s < sets; ++s)
      probe_sets[s].train_step(hidden, batch.attention_mask, positions(rows, true, device),
                               positions(rows, false, device), dropout_seed++);
  };
  // Each probing method: the probe sets probe_train adds for it beside the study's probes.
  struct Method {
    std::string name;
    std::vector<ProbeVariant> variants;
    std::vector<std::unique_ptr<ProbeModel>> sets;
    double seconds = 0;      // the whole step: encoder pass, the study's probes, the method's sets
    double own_seconds = 0;  // the method's sets alone (their inputs included)
  };
  std::vector<Method> methods;
  const int64_t layers = loaded.config.num_hidden_layers, hidden_size = loaded.config.hidden_size;
  for (const auto& name : options.probe_methods) {
    Method method{name, {}, {}, 0};
    const ProbeArch linear;
    if (name == "control_task") method.variants = {{linear, ProbeTask::control_task, ProbeInput::layer}};
    else if (name == "conditional")
      method.variants = {{linear, ProbeTask::squad, ProbeInput::conditional}, {linear, ProbeTask::squad, ProbeInput::embeddings}};
    else method.variants = {{ProbeArch::parse(name), ProbeTask::squad, ProbeInput::layer}};  // an architecture, tuned_lens
    for (const auto& v : method.variants) {
      method.sets.push_back(make_probe_model(v.arch, v.probe_layers(layers), v.input_size(hidden_size), ProbeOptions{}, 1));
      method.sets.back()->to(device);
      method.sets.back()->attach_model(&model);  // the tuned lens reads the model's head
    }
    methods.push_back(std::move(method));
  }
  // probe_train's step with a method: one encoder pass (with the embeddings where a set reads
  // them), the study's probes, then the method's sets. (The control task's step is timed on
  // the SQuAD targets: the same work.)
  auto method_batch = [&](Method& method, const std::vector<const SquadFeature*>& rows, const EncoderBatch& batch) {
    const bool embeddings = std::any_of(method.variants.begin(), method.variants.end(),
                                        [](const ProbeVariant& v) { return v.input != ProbeInput::layer; });
    auto all = probed_hidden_states(model, batch, options.precision, embeddings);
    auto hidden = embeddings ? all.slice(0, 1) : all;
    auto starts = positions(rows, true, device), ends = positions(rows, false, device);
    probes.train_step(hidden, batch.attention_mask, starts, ends, dropout_seed++);
    method.own_seconds += timed(device, [&] {
      torch::Tensor conditional;
      for (size_t i = 0; i < method.sets.size(); ++i) {
        const auto input = method.variants[i].input;
        if (input == ProbeInput::conditional && !conditional.defined())
          conditional = conditional_input(hidden, all.slice(0, 0, 1));
        const auto& x = input == ProbeInput::layer ? hidden : input == ProbeInput::embeddings ? all.slice(0, 0, 1) : conditional;
        method.sets[i]->train_step(x, batch.attention_mask, starts, ends, dropout_seed++);
      }
    });
  };
  forward(unpadded);  // warm-up: weight preparation, allocator, kernels
  auto compare_batch = [&](const EncoderBatch& batch) { encode_frozen(model, batch, options.compare_precision, true); };
  if (!options.compare_precision.empty())
    for (const auto& rows : batches) compare_batch(make_batch(rows, unpadded).to(device));  // its warm-up
  // ... and the optimisers' state, on the longest batch: the allocator then holds what every batch needs,
  // as in a long probe_train run, instead of growing (and faulting pages in) within the timed steps
  const auto& longest = largest_batch(batches);
  probe_train_batch(longest, make_batch(longest, unpadded).to(device), probe_sets.size());
  for (auto& method : methods) {
    method_batch(method, longest, make_batch(longest, unpadded).to(device));
    method.own_seconds = 0;
  }
  // Forward alone and the probe_train steps run on each batch one after the
  // other: a change in the machine's speed (another process, clocks) then
  // falls on all alike, and their ratios hold still from run to run.
  double forward_s = 0, probe_train_s = 0, probe_seeds_s = 0, compare_s = 0;
  for (const auto& rows : batches) {
    stop_point();
    const auto batch = make_batch(rows, unpadded).to(device);
    forward_s += timed(device, [&] { forward_batch(batch); });
    if (!options.compare_precision.empty()) compare_s += timed(device, [&] { compare_batch(batch); });
    probe_train_s += timed(device, [&] { probe_train_batch(rows, batch, 1); });
    if (options.probe_seeds > 1)
      probe_seeds_s += timed(device, [&] { probe_train_batch(rows, batch, probe_sets.size()); });
    for (auto& method : methods) method.seconds += timed(device, [&] { method_batch(method, rows, batch); });
  }
  for (const auto& method : methods) {
    result.probe_method_fps.emplace_back(method.name, n / method.seconds);
    result.probe_method_share.emplace_back(method.name, method.own_seconds / forward_s);
    spdlog::info("bench: probe_train step with {} {:.2f} features/s ({:.3f}x the time of the plain step; its probe sets "
                 "alone {:.3f}x the encoder pass)",
                 method.name, n / method.seconds, method.seconds / probe_train_s, method.own_seconds / forward_s);
  }
  result.forward_fps = n / forward_s;
  result.probe_train_fps = n / probe_train_s;
  if (!options.compare_precision.empty()) {
    result.compare_forward_fps = n / compare_s;
    spdlog::info("bench: forward in {} {:.2f} features/s, {:.3f}x {}'s", options.compare_precision,
                 result.compare_forward_fps, forward_s / compare_s, options.precision);
  }
  result.probe_seeds = options.probe_seeds;
  if (options.probe_seeds > 1) {
    result.probe_train_seeds_fps = n / probe_seeds_s;
    spdlog::info("bench: probe_train step with {} probe seeds {:.2f} features/s ({:.3f}x the time of one)",
                 options.probe_seeds, result.probe_train_seeds_fps, probe_seeds_s / probe_train_s);
  }
  spdlog::info("bench: forward {:.2f} features/s, probe_train step {:.2f} features/s", result.forward_fps,
               result.probe_train_fps);
  if (options.profile) {
    result.forward_profile_s =
        timed(device, [&] { result.forward_profile = profile_forward([&] { forward(unpadded); }); });
    for (const auto& [op, seconds] : result.forward_profile) spdlog::info("bench: profile {:>8.3f} s  {}", seconds, op);
  }
  BatchOptions padded = unpadded;
  padded.pad_to = options.window.max_seq_length;
  result.forward_padded_fps = n / forward(padded);
  spdlog::info("bench: forward padded to {} {:.2f} features/s", padded.pad_to, result.forward_padded_fps);
  result.predict_fps = n / predict_seconds(model, tokenizer, probes, sample, batches, device, options.precision);
  spdlog::info("bench: probe_predict with decoding {:.2f} features/s", result.predict_fps);
}

// run_squad's training step (forward, backward, AdamW) over part of the sample.
void measure_train_step(const BenchOptions& options, LoadedModel& loaded, const Sample& sample,
                        const torch::Device& device, const BatchOptions& unpadded, BenchResult& result) {
  QaModel& model = *loaded.model;
  Sample train_sample = sample_examples(sample.examples, sample.features, options.train_features);
  auto train_batches = bucketed_batches(train_sample.features, options.batch_size);
  // Warm-up: optimiser state, allocator.
  // int8 is an inference precision: run_squad trains in float32 beside it.
  const std::string precision = options.precision == "int8" ? "fp32" : options.precision;
  train_step_seconds(model, {train_batches.front()}, unpadded, device, precision);
  double flops = 0;
  for (const auto& f : train_sample.features) flops += forward_flops(loaded.config, static_cast<int64_t>(f.length()));
  result.train_flops_per_feature = flops / static_cast<double>(train_sample.features.size());
  result.train_step_fps = static_cast<double>(train_sample.features.size()) /
                          train_step_seconds(model, train_batches, unpadded, device, precision);
  spdlog::info("bench: run_squad training step {:.2f} features/s", result.train_step_fps);
}

}  // namespace

BenchResult run_bench(const BenchOptions& options) {
  if (options.batch_size < 1) throw Error("--batch-size must be at least 1", 2);
  const torch::Device device = parse_device(options.device);
  check_precision(options.precision, device);  // before any work
  if (!options.compare_precision.empty()) {
    check_precision(options.compare_precision, device);
    if (options.compare_precision == options.precision)
      throw Error("--compare-precision " + options.compare_precision + " is --precision itself: name another", 2);
  }
  for (const auto& method : options.probe_methods)
    if (method != "control_task" && method != "conditional") ProbeArch::parse(method);  // usage Error naming it
  BenchResult result;
  result.device = options.device;
  result.precision = options.precision;
  result.compare_precision = options.compare_precision;
  result.batch_size = options.batch_size;
  result.threads = torch::get_num_threads();
  result.cpu_isa = onednn_cpu_isa();
  result.fast_path = options.fast_path;
  set_fast_cpu_path(options.fast_path);

  const OpenedModel opened = open_model_dir(options.model_dir, "--model");
  for (const std::string& p : {options.precision, options.compare_precision})
    check_precision_for_family(p, *opened.family);
  LoadedModel loaded = load_checkpoint(opened, {weights_dtype_for(options.precision, device), options.precision});
  QaModel& model = *loaded.model;
  model.to(device);
  model.eval();
  const Tokenizer& tokenizer = *opened.tokenizer;
  BatchOptions unpadded;
  unpadded.pad_id = tokenizer.pad_id();
  auto dataset = load_squad(options.data_file);
  FeatureOptions feature_options;
  feature_options.window = options.window;
  std::vector<SquadFeature> all_features;
  result.featurize_s = timed(torch::kCPU, [&] {
    all_features = convert_examples_to_features(dataset.examples, tokenizer, feature_options);
  });
  result.featurized_features = static_cast<double>(all_features.size());
  Sample sample = sample_examples(dataset.examples, all_features, options.features);
  if (sample.features.empty()) throw Error("'" + options.data_file.string() + "' gives no features to measure");
  result.features = static_cast<int64_t>(sample.features.size());
  double flops = 0;
  for (const auto& f : sample.features) {
    result.feature_tokens += static_cast<int64_t>(f.length());
    flops += forward_flops(loaded.config, static_cast<int64_t>(f.length()));
  }
  result.flops_per_feature = flops / static_cast<double>(result.features);
  const auto n = static_cast<double>(result.features);
  spdlog::info("bench: {} features ({} tokens on average), batch {}, {} thread(s), {} {}, oneDNN ISA {}", result.features,
               static_cast<double>(result.feature_tokens) / n, options.batch_size, result.threads, options.device,
               options.precision, result.cpu_isa);
  // Stopped by a signal, the process exits at once: the dev set's examples
  // and features (millions of small allocations) are not freed on the way out.
  keep_on_stop(
      [&] {
        measure_encoder(options, loaded, tokenizer, sample, device, unpadded, result);
        const int64_t mean_tokens = std::max<int64_t>(1, result.feature_tokens / result.features);
        const int64_t gemm_rows = mean_tokens * options.batch_size;
        if (!device.is_cuda()) measure_gemm_peaks(loaded.config, gemm_rows, options.gemm_seconds, result);
        if (options.train_features > 0) measure_train_step(options, loaded, sample, device, unpadded, result);
        result.peak_rss_mb = peak_rss_mb();
        set_fast_cpu_path(true);
      },
      dataset, all_features, sample);
  return result;
}

}  // namespace layerprobe
