// What the decoder families (GPT-2, Llama, Mistral, Qwen2) add to the model
// interface: causal attention (and Mistral's sliding window), RoPE with
// Llama-3's rope_scaling, parameter counts of the published shapes against
// the counts transformers reports for them, and their bf16 weights.
#include <torch/torch.h>

#include <cmath>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/io/safetensors.hpp"
#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/model/family.hpp"
#include "layerprobe/model/qa_model.hpp"
#include "model/decoder.hpp"
#include "test_support.hpp"

using namespace layerprobe;
namespace fs = std::filesystem;

namespace {

using test_support::max_diff;

ModelConfig decoder_config(const std::string& model_type, nlohmann::json extra = nlohmann::json::object()) {
  nlohmann::json object;
  if (model_type == "gpt2") {
    object = {{"n_embd", 16}, {"n_head", 4}, {"n_inner", 24}, {"n_layer", 2}, {"n_positions", 32}};
  } else {
    object = {{"hidden_size", 16}, {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"intermediate_size", 24},
              {"num_hidden_layers", 2}, {"max_position_embeddings", 32}};
  }
  object["model_type"] = model_type;
  object["vocab_size"] = 40;
  object.update(extra);
  return config_from_json(object, model_type + " test config");
}

std::shared_ptr<QaModel> eval_model(const ModelConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  auto model = create_model(config);
  model->eval();
  return model;
}

EncoderBatch ids_batch(const torch::Tensor& ids) { return {ids, {}, torch::ones_like(ids)}; }

EncoderOutput run(QaModel& model, const torch::Tensor& ids) {
  torch::NoGradGuard no_grad;
  return model.forward(ids_batch(ids));
}

}  // namespace

class CausalFamily : public ::testing::TestWithParam<const char*> {};

INSTANTIATE_TEST_SUITE_P(Decoders, CausalFamily, ::testing::Values("gpt2", "llama", "mistral", "qwen2"));

TEST_P(CausalFamily, ATokenSeesOnlyWhatPrecedesIt) {
  auto model = eval_model(decoder_config(GetParam()), 3);
  torch::manual_seed(4);
  auto ids = torch::randint(3, 40, {2, 10}, torch::kLong);
  auto changed = ids.clone();
  changed.index_put_({torch::indexing::Slice(), 6}, (ids.select(1, 6) + 1) % 40);
  for (bool fast : {true, false}) {
    set_fast_cpu_path(fast);
    auto a = run(*model, ids), b = run(*model, changed);
    set_fast_cpu_path(true);
    for (size_t l = 0; l < a.hidden_states.size(); ++l) {
      EXPECT_LE(max_diff(a.hidden_states[l].slice(1, 0, 6), b.hidden_states[l].slice(1, 0, 6)), 1e-6) << l;
      EXPECT_GT(max_diff(a.hidden_states[l].slice(1, 6), b.hidden_states[l].slice(1, 6)), 1e-4) << l;
    }
  }
}

TEST(Mistral, SlidingWindowLimitsWhatEachLayerSees) {
  // Two layers of window 3: the last layer's position t sees tokens t-4..t.
  auto windowed = eval_model(decoder_config("mistral", {{"sliding_window", 3}}), 5);
  auto full = eval_model(decoder_config("mistral", {{"sliding_window", nullptr}}), 5);
  torch::manual_seed(6);
  auto ids = torch::randint(3, 40, {1, 12}, torch::kLong);
  auto changed = ids.clone();
  changed[0][0] = (ids[0][0].item<int64_t>() + 1) % 40;
  for (bool fast : {true, false}) {
    set_fast_cpu_path(fast);
    auto a = run(*windowed, ids), b = run(*windowed, changed);
    auto c = run(*full, ids), d = run(*full, changed);
    set_fast_cpu_path(true);
    EXPECT_GT(max_diff(a.hidden_states[2].slice(1, 4, 5), b.hidden_states[2].slice(1, 4, 5)), 1e-4);
    EXPECT_LE(max_diff(a.hidden_states[2].slice(1, 5), b.hidden_states[2].slice(1, 5)), 1e-6);
    EXPECT_GT(max_diff(c.hidden_states[2].slice(1, 5), d.hidden_states[2].slice(1, 5)), 1e-4);
  }
  // A window the sequence fits in is plain causal attention.
  auto wide = eval_model(decoder_config("mistral", {{"sliding_window", 12}}), 5);
  EXPECT_LE(max_diff(run(*wide, ids).start_logits, run(*full, ids).start_logits), 1e-6);
}

TEST(Rope, Llama3ScalingKeepsHighFrequenciesAndDividesLowOnes) {
  const nlohmann::json published = model_family("llama").published.at("meta-llama/Llama-3.2-1B");
  const ModelConfig config = config_from_json(published, "Llama-3.2-1B shape");
  const RotaryEmbedding rope = rotary_embedding(config, 64);
  ASSERT_EQ(rope.inv_freq.numel(), 32);
  const double theta = 500000.0, factor = 32.0;
  for (int64_t i = 0; i < 32; ++i) {
    const double plain = 1.0 / std::pow(theta, 2.0 * static_cast<double>(i) / 64.0);
    const double wavelen = 2 * M_PI / plain, got = rope.inv_freq[i].item<double>();
    if (wavelen < 8192.0 / 4.0) {  // high frequency: unchanged
      EXPECT_NEAR(got, plain, plain * 1e-6) << i;
    } else if (wavelen > 8192.0 / 1.0) {  // low frequency: divided by the factor
      EXPECT_NEAR(got, plain / factor, plain / factor * 1e-6) << i;
    } else {  // in between: smoothly interpolated
      const double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
      EXPECT_NEAR(got, (1 - smooth) * plain / factor + smooth * plain, plain * 1e-5) << i;
    }
  }
  auto [cos, sin] = rope.tables(5, torch::kCPU);
  EXPECT_EQ(cos.sizes(), (std::vector<int64_t>{5, 64}));
  EXPECT_NEAR(cos[3][1].item<double>(), std::cos(3 * rope.inv_freq[1].item<double>()), 1e-6);
  EXPECT_NEAR(sin[3][33].item<double>(), std::sin(3 * rope.inv_freq[1].item<double>()), 1e-6);
  // rope_scaling kinds transformers has and this implementation lacks are refused by name.
  nlohmann::json yarn = published;
  yarn["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  try {
    config_from_json(yarn, "yarn config");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rope_scaling type 'yarn' is not supported"), std::string::npos) << e.what();
  }
}

// The parameter counts transformers reports for the base models of these published shapes
// (GPT2Model, LlamaModel, Qwen2Model: embeddings tied to the LM head, so counted once), plus the
// QA head's 2 x hidden + 2.
TEST(Decoders, PublishedShapesHaveTransformersParameterCounts) {
  const std::pair<const char*, double> counts[] = {
      {"gpt2", 124439808}, {"meta-llama/Llama-3.2-1B", 1235814400}, {"Qwen/Qwen2.5-0.5B", 494032768}};
  for (const auto& [name, base] : counts) {
    const ModelFamily& family = family_publishing(name);
    const ModelConfig config = config_from_json(family.published.at(name), name);
    EXPECT_EQ(family.parameters(config), base + 2 * static_cast<double>(config.hidden_size) + 2) << name;
  }
}

TEST(Decoders, ConfigErrorsNameTheKey) {
  auto error_of = [](nlohmann::json object) {
    try {
      config_from_json(object, "x/config.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of({{"model_type", "llama"}, {"num_attention_heads", 32}, {"num_key_value_heads", 5}})
                .find("num_key_value_heads 5 must divide num_attention_heads 32"),
            std::string::npos);
  EXPECT_NE(error_of({{"model_type", "llama"}, {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}}}})
                .find("needs a number 'low_freq_factor'"),
            std::string::npos);
  EXPECT_NE(error_of({{"model_type", "gpt2"}, {"attn_pdrop", 1.5}}).find("'attn_pdrop' must be in [0, 1)"),
            std::string::npos);
  EXPECT_NE(error_of({{"model_type", "qwen2"}, {"layer_types", {"full_attention"}}}).find("one type per layer"),
            std::string::npos);
  // GPT-2's n_inner: null means 4 x n_embd.
  EXPECT_EQ(config_from_json({{"model_type", "gpt2"}, {"n_embd", 32}, {"n_head", 2}}, "x").intermediate_size, 128);
  EXPECT_EQ(config_from_json({{"model_type", "gpt2"}, {"n_embd", 32}, {"n_head", 2}, {"n_inner", 40}}, "x")
                .intermediate_size,
            40);
}

// A bf16 checkpoint probed in bf16 keeps its weights in bf16 and computes in bf16 (on a CPU with
// native bf16), close to the float32 pass of the golden model.
TEST(Decoders, Bf16WeightsComputeInBf16NearTheFloat32Pass) {
  REQUIRE_SHARED("golden/llama-tiny/reference_outputs.safetensors");
  if (!cpu_has_native_bf16()) GTEST_SKIP() << "this CPU has no native bf16";
  const fs::path golden = test_support::shared_path("golden/llama-tiny");
  const fs::path dir = test_support::scratch_dir("decoder_bf16");
  LoadedModel fp32 = load_checkpoint(golden);
  save_checkpoint(*fp32.model, dir, {torch::kBFloat16, 0});
  LoadedModel bf16 = load_checkpoint(dir, std::nullopt, {torch::kBFloat16});
  const auto ref = read_safetensors(golden / "reference_outputs.safetensors").tensors;
  EncoderBatch batch{ref.at("input_ids"), {}, ref.at("attention_mask")};
  torch::NoGradGuard no_grad;
  auto out = bf16.model->forward(batch);
  EXPECT_EQ(out.hidden_states[2].scalar_type(), torch::kBFloat16);
  const auto real = ref.at("attention_mask").to(torch::kBool);
  const double logits = (out.start_logits.to(torch::kFloat) - ref.at("start_logits")).abs().masked_select(real).max().item<double>();
  const double scale = ref.at("start_logits").abs().max().item<double>();
  std::cout << "llama-tiny bf16: start logits within " << logits << " (largest " << scale << ")\n";
  EXPECT_GT(logits, 1e-6);
  EXPECT_LE(logits, 0.02 * scale);
}

// The family says where a window's no-answer score is read (docs/decoders.md): the decoders at the
// last token, which has seen the question and the whole window; the encoders at [CLS] as HF does.
TEST(Decoders, FamiliesReadTheNullScoreAtTheLastToken) {
  for (const char* type : {"gpt2", "llama", "mistral", "qwen2"}) EXPECT_EQ(model_family(type).null_position, "last") << type;
  for (const char* type : {"albert", "bert", "distilbert", "roberta"})
    EXPECT_EQ(model_family(type).null_position, "first") << type;
}

// Memory checks count the bytes a family really allocates: the decoders build bf16 weights in bf16.
TEST(Decoders, CreateModelAllocatesInTheWeightsDtype) {
  EXPECT_TRUE(model_family("llama").creates_in_weights_dtype);
  EXPECT_FALSE(model_family("bert").creates_in_weights_dtype);
  auto model = create_model(decoder_config("llama"), torch::kBFloat16);
  int64_t bf16 = 0;
  for (const auto& item : model->named_parameters()) bf16 += item.value().scalar_type() == torch::kBFloat16;
  EXPECT_GT(bf16, 0);
}
