// The bench's plumbing (not its timings) and the encoder's CPU fast path it
// measures: the fast path must give the reference ops' results.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>

#include "layerprobe/bench/bench.hpp"
#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/model/family.hpp"
#include "layerprobe/model/qa_model.hpp"
#include "model/albert/albert.hpp"
#include "layerprobe/io/safetensors.hpp"
#include "model/onednn.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace layerprobe;

namespace {

using test_support::max_diff;

// Runs `model` on the golden tiny inputs with the fast path on or off.
EncoderOutput run_golden_inputs(QaModel& model, bool fast) {
  const auto ref = read_safetensors(test_support::shared_path("golden/albert-tiny/reference_outputs.safetensors")).tensors;
  set_fast_cpu_path(fast);
  torch::NoGradGuard no_grad;
  EncoderOutput out = model.forward({ref.at("input_ids"), ref.at("token_type_ids"), ref.at("attention_mask")});
  set_fast_cpu_path(true);
  return out;
}

LoadedModel golden_tiny() {
  return load_checkpoint(test_support::shared_path("golden/albert-tiny"));
}

AlbertForQuestionAnswering& albert(LoadedModel& loaded) {
  return dynamic_cast<AlbertForQuestionAnswering&>(*loaded.model);
}

}  // namespace

TEST(FastPath, MatchesTheReferenceOpsOnTheGoldenModel) {
  REQUIRE_SHARED("golden/albert-tiny/reference_outputs.safetensors");
  LoadedModel loaded = golden_tiny();
  EncoderOutput fast = run_golden_inputs(*loaded.model, true);
  EncoderOutput reference = run_golden_inputs(*loaded.model, false);
  ASSERT_EQ(fast.hidden_states.size(), reference.hidden_states.size());
  for (size_t i = 0; i < fast.hidden_states.size(); ++i)
    EXPECT_LE(max_diff(fast.hidden_states[i], reference.hidden_states[i]), 1e-5) << "hidden state " << i;
  EXPECT_LE(max_diff(fast.start_logits, reference.start_logits), 1e-5);
  EXPECT_LE(max_diff(fast.end_logits, reference.end_logits), 1e-5);
}

TEST(FastPath, FollowsParameterChanges) {
  REQUIRE_SHARED("golden/albert-tiny/reference_outputs.safetensors");
  LoadedModel loaded = golden_tiny();
  EncoderOutput before = run_golden_inputs(*loaded.model, true);  // prepares the fused weights
  {
    torch::NoGradGuard no_grad;
    auto& layer = *albert(loaded).albert->encoder->groups[0]->layers[0];
    layer.attention->key->weight.mul_(1.5);
    layer.ffn->bias.add_(0.25);
  }
  EncoderOutput fast = run_golden_inputs(*loaded.model, true);
  EncoderOutput reference = run_golden_inputs(*loaded.model, false);
  EXPECT_GT(max_diff(fast.last_hidden_state, before.last_hidden_state), 1e-3);
  EXPECT_LE(max_diff(fast.last_hidden_state, reference.last_hidden_state), 1e-5);
}

TEST(FastPath, NotUsedWhileTraining) {
  REQUIRE_SHARED("golden/albert-tiny/reference_outputs.safetensors");
  LoadedModel loaded = golden_tiny();
  loaded.model->train();
  const auto ref = read_safetensors(test_support::shared_path("golden/albert-tiny/reference_outputs.safetensors")).tensors;
  EncoderOutput out = loaded.model->forward({ref.at("input_ids"), ref.at("token_type_ids"), ref.at("attention_mask")}, false);
  out.start_logits.sum().backward();
  auto& layer = *albert(loaded).albert->encoder->groups[0]->layers[0];
  ASSERT_TRUE(layer.attention->query->weight.grad().defined());
  EXPECT_GT(layer.attention->query->weight.grad().abs().sum().item<double>(), 0);
}

ModelConfig published(const std::string& name) {
  nlohmann::json object = family_publishing(name).published.at(name);
  return config_from_json(object, name);
}

TEST(Bench, FlopsCountEveryProductOfEachFamily) {
  const double t = 200, h = 768, e = 128, i = 3072;
  auto layer = [&](double layers) { return layers * (2 * t * (4 * h * h + 2 * h * i) + 2 * 2 * t * t * h); };
  const double head = 2 * t * 2 * h;
  EXPECT_DOUBLE_EQ(forward_flops(published("albert-base-v2"), 200), 2 * t * e * h + layer(12) + head);
  EXPECT_NEAR(forward_flops(published("albert-base-v2"), 200) / 1e9, 35.5, 0.1);  // ~35 GFLOP at the dev set's mean length
  EXPECT_DOUBLE_EQ(forward_flops(published("bert-base-uncased"), 200), layer(12) + head);
  EXPECT_DOUBLE_EQ(forward_flops(published("distilbert-base-uncased"), 200), layer(6) + head);
  EXPECT_DOUBLE_EQ(forward_flops(published("distilroberta-base"), 200), layer(6) + head);
  // ELECTRA-base's embeddings are as wide as its layers (no embeddings_project); XLM-R-base is BERT-base's shape.
  EXPECT_DOUBLE_EQ(forward_flops(published("google/electra-base-discriminator"), 200), layer(12) + head);
  EXPECT_DOUBLE_EQ(forward_flops(published("xlm-roberta-base"), 200), layer(12) + head);
  EXPECT_DOUBLE_EQ(forward_flops(published("google/electra-small-discriminator"), 200),
                   2 * t * 128 * 256 + 12 * (2 * t * (4 * 256 * 256 + 2 * 256 * 1024) + 2 * 2 * t * t * 256) +
                       2 * t * 2 * 256);
}

TEST(Bench, ModernBertFlopsCountTheKeysEachLayerAttends) {
  // 22 layers, global in 0, 3, ..., 21 (8), local (keys within 64 positions) in the other 14; Wqkv, Wo, the
  // GeGLU's Wi (2 x 1152 outputs) and Wo; head.dense and the classifier.
  const double t = 200, h = 768, i = 1152;
  double window_pairs = 0;
  for (int q = 0; q < 200; ++q)
    for (int k = 0; k < 200; ++k) window_pairs += std::abs(q - k) <= 64;
  const double linears = 2 * t * (3 * h * h + h * h + 2 * i * h + i * h);
  const double expected = 22 * linears + 8 * 2 * 2 * t * t * h + 14 * 2 * 2 * window_pairs * h + 2 * t * (h * h + 2 * h);
  EXPECT_DOUBLE_EQ(forward_flops(published("answerdotai/ModernBERT-base"), 200), expected);
  // Short windows attend to every key: local and global layers cost the same.
  const ModelConfig base = published("answerdotai/ModernBERT-base");
  nlohmann::json all_global = base.to_json();
  all_global["global_attn_every_n_layers"] = 1;
  EXPECT_DOUBLE_EQ(forward_flops(base, 60), forward_flops(config_from_json(all_global, "test"), 60));
}

TEST(Bench, PublishedParameterCounts) {
  // Counted by hand from the published shapes (QA head and pooler included):
  // BERT 23,837,184 embeddings + 12 x 7,087,872 + 590,592 pooler + 1,538 head.
  EXPECT_EQ(model_family("bert").parameters(published("bert-base-uncased")), 109483778.0);
  EXPECT_EQ(model_family("distilbert").parameters(published("distilbert-base-uncased")), 66364418.0);
  EXPECT_EQ(model_family("albert").parameters(published("albert-base-v2")), 11685122.0);
  // 4.57.5's QA models of ELECTRA and XLM-R have no pooler: ElectraModel-base 108,891,648 + 1,538;
  // XLMRobertaModel-base 278,043,648 with its pooler, 590,592 of it.
  EXPECT_EQ(model_family("electra").parameters(published("google/electra-base-discriminator")), 108893186.0);
  EXPECT_EQ(model_family("xlm-roberta").parameters(published("xlm-roberta-base")), 277454594.0);
  // ModernBertModel-base 149,014,272 (layer 0 has no attn_norm), + head.dense, head.norm, classifier.
  EXPECT_EQ(model_family("modernbert").parameters(published("answerdotai/ModernBERT-base")), 149014272.0 + 592130.0);
}

namespace {

// Bench options over the golden tiny model (copied with the study's vocabulary) and the dev file,
// with a short GEMM measurement.
BenchOptions tiny_model_bench(const std::string& scratch_name) {
  const fs::path dir = test_support::scratch_dir(scratch_name);
  for (const char* name : {"config.json", "model.safetensors"})
    fs::copy_file(test_support::shared_path(std::string("golden/albert-tiny/") + name), dir / name);
  fs::copy_file(test_support::shared_path(test_support::kSpieceModel), dir / "spiece.model");
  BenchOptions options;
  options.model_dir = dir;
  options.data_file = test_support::shared_path(test_support::kDevFile);
  options.gemm_seconds = 0.02;
  return options;
}

}  // namespace

TEST(Bench, RunsEveryStageOnATinyModel) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  REQUIRE_SHARED(test_support::kDevFile);
  BenchOptions options = tiny_model_bench("bench_tiny");
  options.features = 12;
  options.train_features = 4;
  options.batch_size = 4;
  const nlohmann::json json = run_bench(options).to_json();
  for (const char* key : {"features", "featurize_s", "forward_fps", "forward_padded_fps", "probe_train_fps",
                          "predict_fps", "flops_per_feature", "gemm_peak_gflops", "forward_mfu", "train_step_fps",
                          "train_mfu", "peak_rss_mb", "device", "precision"})
    EXPECT_TRUE(json.contains(key)) << key;
  EXPECT_GE(json["features"].get<int64_t>(), 12);
  EXPECT_LE(json["features"].get<int64_t>(), 20);  // whole questions: a few more than asked for at most
  EXPECT_EQ(json["featurized_features"].get<double>(), 6398);  // the golden feature count of the dev file
  for (const char* key : {"forward_fps", "forward_padded_fps", "probe_train_fps", "predict_fps", "train_step_fps",
                          "gemm_peak_gflops", "forward_mfu", "train_mfu", "peak_rss_mb"})
    EXPECT_GT(json[key].get<double>(), 0) << key;
  EXPECT_EQ(json["device"], "cpu");
  EXPECT_EQ(json["precision"], "fp32");
  EXPECT_FALSE(json.contains("forward_profile"));
  // A bf16 peak where the CPU has native bf16 (never measured through emulation).
  EXPECT_EQ(json["gemm_peak_bf16_gflops"].get<double>() > 0, cpu_has_native_bf16());
  // Debian's LibTorch uses the system libdnnl, which says what it dispatches to.
  const std::string isa = json["cpu_isa"].get<std::string>();
  EXPECT_NE(isa, "unknown");
  if (cpu_has_native_bf16()) EXPECT_TRUE(isa == "avx512_core_bf16" || isa == "avx512_core_amx") << isa;
}

TEST(Bench, TimesEachProbingMethodBesideThePlainStep) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  REQUIRE_SHARED(test_support::kDevFile);
  BenchOptions options = tiny_model_bench("bench_tiny_methods");
  options.features = 8;
  options.train_features = 0;
  options.probe_seeds = 1;
  options.probe_methods = {"rank:1", "mlp:4", "control_task", "conditional", "tuned_lens"};
  const nlohmann::json json = run_bench(options).to_json();
  for (const auto& method : options.probe_methods) {
    EXPECT_GT(json["probe_method_fps"][method].get<double>(), 0) << method;
    EXPECT_GT(json["probe_method_cost"][method].get<double>(), 0) << method;
    EXPECT_GT(json["probe_method_share"][method].get<double>(), 0) << method;
  }
  options.probe_methods = {"cnn:2"};
  EXPECT_THROW(run_bench(options), Error);
}

TEST(Bench, Bf16RunsAndItsMfuIsAgainstTheBf16Peak) {
  if (!cpu_has_native_bf16()) GTEST_SKIP() << "this CPU has no native bf16 (AVX512_BF16 or AMX)";
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  REQUIRE_SHARED(test_support::kDevFile);
  BenchOptions options = tiny_model_bench("bench_tiny_bf16");
  options.features = 8;
  options.train_features = 0;
  options.precision = "bf16";
  const BenchResult result = run_bench(options);
  ASSERT_GT(result.gemm_peak_bf16_gflops, 0);
  EXPECT_GT(result.forward_fps, 0);
  EXPECT_DOUBLE_EQ(result.forward_mfu(),
                   result.forward_fps * result.flops_per_feature / 1e9 / result.gemm_peak_bf16_gflops);
}

TEST(Bench, Int8ForwardIsTimedBesideFp32AndItsMfuIsAgainstTheInt8Peak) {
  if (!cpu_has_int8_dot()) GTEST_SKIP() << "this CPU has no 8-bit dot products (AVX512_VNNI or AMX-INT8)";
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  REQUIRE_SHARED(test_support::kDevFile);
  BenchOptions options = tiny_model_bench("bench_tiny_int8");
  options.features = 8;
  options.train_features = 4;
  options.probe_seeds = 1;
  options.compare_precision = "int8";
  const BenchResult result = run_bench(options);
  ASSERT_GT(result.gemm_peak_int8_gflops, 0);
  for (const auto& shape : result.gemm_shapes) EXPECT_GT(shape.int8_gflops, 0) << shape.in << "x" << shape.out;
  EXPECT_GT(result.forward_fps, 0);
  EXPECT_GT(result.compare_forward_fps, 0);
  EXPECT_DOUBLE_EQ(result.compare_forward_mfu(),
                   result.compare_forward_fps * result.flops_per_feature / 1e9 / result.gemm_peak_int8_gflops);
  const nlohmann::json json = result.to_json();
  EXPECT_EQ(json["compare_precision"], "int8");
  EXPECT_DOUBLE_EQ(json["compare_forward_ratio"].get<double>(), result.compare_forward_fps / result.forward_fps);
  // --precision int8 itself: its forward against the int8 peak; run_squad's step trains in fp32 beside it.
  options.precision = "int8";
  options.compare_precision = "fp32";
  const BenchResult int8 = run_bench(options);
  EXPECT_DOUBLE_EQ(int8.forward_mfu(), int8.forward_fps * int8.flops_per_feature / 1e9 / int8.gemm_peak_int8_gflops);
  EXPECT_GT(int8.train_step_fps, 0);
  EXPECT_DOUBLE_EQ(int8.train_mfu(), int8.train_step_fps * 3 * int8.train_flops_per_feature / 1e9 / int8.gemm_peak_gflops());
  // The same precision twice is a usage error.
  options.compare_precision = "int8";
  EXPECT_THROW(run_bench(options), Error);
}

TEST(Bench, ProfileTimesTheOpsOfOneForwardPass) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  REQUIRE_SHARED(test_support::kDevFile);
  BenchOptions options = tiny_model_bench("bench_profile");
  options.features = 8;
  options.train_features = 0;
  options.profile = true;
  const auto result = run_bench(options);
  std::map<std::string, double> seconds(result.forward_profile.begin(), result.forward_profile.end());
  // The fast path's products, attention and LayerNorm, each called by the encoder itself: oneDNN's
  // kernels as they record themselves, or LibTorch's ops in a build without oneDNN's headers.
  const std::vector<const char*> ops =
      onednn_available() ? std::vector<const char*>{"onednn::inner_product", "onednn::inner_product+activation",
                                                    "onednn::attention", "aten::layer_norm"}
                         : std::vector<const char*>{"aten::mkldnn_linear", "aten::matmul", "aten::softmax",
                                                    "aten::layer_norm"};
  for (const char* op : ops) EXPECT_GT(seconds[op], 0) << op;
  double total = 0;
  for (const auto& [op, s] : result.forward_profile) total += s;
  // Top-level ops of one thread run one after another: counting nested ops too would exceed the pass's time.
  EXPECT_GT(total, 0);
  EXPECT_LE(total, result.forward_profile_s);
  EXPECT_TRUE(std::is_sorted(result.forward_profile.begin(), result.forward_profile.end(),
                             [](const auto& a, const auto& b) { return a.second > b.second; }));
}

TEST(Bench, HalfPrecisionNeedsAGpu) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "CUDA is available here";
  BenchOptions options;
  options.model_dir = "/nonexistent";
  options.precision = "fp16";
  try {
    run_bench(options);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), 2);
  }
}
