// The model interface over every family: parity with transformers 2.5.1 on
// the golden tiny models (every weights format), the encode command, and HF
// semantics that hold for all families (padding, dropout, the oneDNN path,
// parameter counts, input checks).
#include <torch/torch.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <sys/wait.h>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/device.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/io/safetensors.hpp"
#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/model/family.hpp"
#include "layerprobe/model/qa_model.hpp"
#include "test_support.hpp"

using namespace layerprobe;
namespace fs = std::filesystem;

namespace {

constexpr double kGoldenTolerance = 1e-5;

using test_support::max_diff;

// A small config of each family, as config.json would spell it.
ModelConfig small_config(const std::string& model_type) {
  nlohmann::json object;
  if (model_type == "distilbert") {
    object = {{"dim", 16}, {"n_heads", 4}, {"hidden_dim", 24}, {"n_layers", 2}, {"max_position_embeddings", 32},
              {"dropout", 0.1}, {"attention_dropout", 0.1}, {"qa_dropout", 0.1}};
  } else if (model_type == "gpt2") {
    object = {{"n_embd", 16}, {"n_head", 4}, {"n_inner", 24}, {"n_layer", 2}, {"n_positions", 32}};
  } else if (model_type == "llama" || model_type == "qwen2" || model_type == "mistral") {
    object = {{"hidden_size", 16}, {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"intermediate_size", 24},
              {"num_hidden_layers", 2}, {"max_position_embeddings", 32}, {"attention_dropout", 0.1}};
    if (model_type == "mistral") object["sliding_window"] = 4;  // shorter than the inputs: windows matter
  } else {
    object = {{"hidden_size", 16}, {"num_attention_heads", 4}, {"intermediate_size", 24}, {"num_hidden_layers", 2},
              {"max_position_embeddings", 32}, {"hidden_dropout_prob", 0.1}, {"attention_probs_dropout_prob", 0.1}};
    if (model_type == "albert" || model_type == "electra") object["embedding_size"] = 8;
    if (model_type == "roberta" || model_type == "xlm-roberta")
      object.update({{"max_position_embeddings", 34}, {"type_vocab_size", 1}});
    // Two layers: 0 global, 1 attending within 2 positions either side; pad id inside the small vocabulary.
    if (model_type == "modernbert")
      object.update({{"local_attention", 4}, {"pad_token_id", 1}, {"attention_dropout", 0.1}, {"mlp_dropout", 0.1},
                     {"embedding_dropout", 0.1}, {"classifier_dropout", 0.1}});
    if (model_type == "deberta-v2")  // DeBERTa-v3's settings; buckets small enough to reach the log range
      object.update({{"relative_attention", true}, {"position_buckets", 8}, {"norm_rel_ebd", "layer_norm"},
                     {"share_att_key", true}, {"pos_att_type", "p2c|c2p"}, {"position_biased_input", false}});
  }
  object["model_type"] = model_type;
  object["vocab_size"] = 40;
  return config_from_json(object, model_type + " test config");
}

// A random model whose LayerNorms are perturbed away from 1/0 as well, in eval mode.
std::shared_ptr<QaModel> random_model(const ModelConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  auto model = create_model(config);
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters())
    if (item.key().find("LayerNorm") != std::string::npos || item.key().find("layer_norm") != std::string::npos ||
        item.key().find("norm") != std::string::npos || item.key().find(".ln_") != std::string::npos ||
        item.key().find("bias") != std::string::npos)
      item.value().add_(torch::randn_like(item.value()) * 0.1);
  model->eval();
  return model;
}

int64_t pad_id(const ModelConfig& config) {
  return config.model_type == "roberta" || config.model_type == "xlm-roberta" || config.model_type == "modernbert" ? 1
                                                                                                                  : 0;
}

// Ids of real tokens (never the padding id), two token types where the family
// has them, the last 3 tokens of row 0 padding.
EncoderBatch random_inputs(const ModelConfig& config, int64_t batch, int64_t length, uint64_t seed) {
  torch::manual_seed(seed);
  EncoderBatch in;
  in.input_ids = torch::randint(2, config.vocab_size, {batch, length}, torch::kLong);
  if (config.type_vocab_size > 1)
    in.token_type_ids = (torch::arange(length) >= length / 2).to(torch::kLong).expand({batch, length}).contiguous();
  in.attention_mask = torch::ones({batch, length}, torch::kLong);
  using torch::indexing::Slice;
  in.attention_mask.index_put_({0, Slice(length - 3, torch::indexing::None)}, 0);
  in.input_ids.index_put_({0, Slice(length - 3, torch::indexing::None)}, pad_id(config));
  return in;
}

EncoderOutput run(QaModel& model, const EncoderBatch& in) {
  torch::NoGradGuard no_grad;
  return model.forward(in);
}

EncoderBatch first_columns(const EncoderBatch& in, int64_t n) {
  auto cut = [&](const torch::Tensor& t) { return t.defined() ? t.slice(1, 0, n) : t; };
  return {cut(in.input_ids), cut(in.token_type_ids), cut(in.attention_mask)};
}

// Runs probe_tools with `args`; returns its exit status, its log (stdout and stderr) in `log`.
int run_probe_tools(const std::string& args, std::string& log) {
  const fs::path exe = test_support::tool("probe_tools");
  if (!fs::exists(exe)) {
    ADD_FAILURE() << exe << " is missing: build the probe_tools target";
    return -1;
  }
  // One file per test: ctest runs the tests of this file in parallel processes.
  const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  const fs::path log_file = test_support::scratch_dir("encoder_cli_log_" + test) / "log.txt";
  int status = std::system((exe.string() + " " + args + " > " + log_file.string() + " 2>&1").c_str());
  log = read_file(log_file);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const char* const kFamilies[] = {"albert", "bert", "distilbert", "roberta", "electra", "xlm-roberta", "deberta-v2",
                                 "modernbert", "gpt2", "llama", "mistral", "qwen2"};

}  // namespace

// --- against transformers 2.5.1 --------------------------------------------------

struct GoldenCase {
  const char* model;    // golden/<model>/
  const char* weights;  // file in it
};

class GoldenEncoder : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(GoldenEncoder, MatchesTransformersWithin1e5) {
  const std::string model = GetParam().model;
  REQUIRE_SHARED("golden/" + model + "/reference_outputs.safetensors");
  const fs::path dir = test_support::shared_path("golden/" + model);
  LoadedModel loaded = load_checkpoint(dir, dir / GetParam().weights);
  EXPECT_TRUE(loaded.has_qa_head);
  const auto reference_file = read_safetensors(dir / "reference_outputs.safetensors");
  const auto& ref = reference_file.tensors;
  EncoderBatch batch{ref.at("input_ids"), ref.count("token_type_ids") ? ref.at("token_type_ids") : torch::Tensor(),
                     ref.at("attention_mask")};
  const torch::Tensor& hidden = ref.at("hidden_states");
  // Where the golden says whether HF's last hidden_states entry is what the head reads, the model agrees.
  const auto said = reference_file.metadata.find("hidden_states_last_equals_last_hidden_state");
  if (said != reference_file.metadata.end()) {
    torch::NoGradGuard no_grad;
    const EncoderOutput out = loaded.model->forward(batch);
    EXPECT_EQ(torch::equal(out.hidden_states.back(), out.last_hidden_state), said->second == "True");
  }
  // The oneDNN path, then the reference ops (fast path off): every hidden state, the state the head
  // reads (where the golden records it: 4.57.5's, after ModernBERT's final norm) and the logits.
  for (const bool fast : {true, false}) {
    SCOPED_TRACE(fast ? "fast path" : "reference ops");
    set_fast_cpu_path(fast);
    EncoderOutput out = run(*loaded.model, batch);
    set_fast_cpu_path(true);
    ASSERT_EQ(static_cast<int64_t>(out.hidden_states.size()), hidden.size(0));
    double worst = 0;
    for (int64_t i = 0; i < hidden.size(0); ++i) {
      double diff = max_diff(out.hidden_states[i], hidden[i]);
      EXPECT_LE(diff, kGoldenTolerance) << "hidden state " << i;
      worst = std::max(worst, diff);
    }
    std::string last = "not in the golden";
    if (ref.count("last_hidden_state")) {
      const double diff = max_diff(out.last_hidden_state, ref.at("last_hidden_state"));
      EXPECT_LE(diff, kGoldenTolerance) << "last_hidden_state";
      last = std::to_string(diff);
    }
    double start = max_diff(out.start_logits, ref.at("start_logits"));
    double end = max_diff(out.end_logits, ref.at("end_logits"));
    EXPECT_LE(start, kGoldenTolerance);
    EXPECT_LE(end, kGoldenTolerance);
    std::cout << model << "/" << GetParam().weights << (fast ? " (fast path)" : " (reference ops)")
              << ": max |diff| hidden " << worst << ", last_hidden_state " << last << ", start " << start << ", end "
              << end << "\n";
  }
}

INSTANTIATE_TEST_SUITE_P(
    WeightFiles, GoldenEncoder,
    ::testing::Values(GoldenCase{"albert-tiny", "model.safetensors"}, GoldenCase{"albert-tiny", "pytorch_model.bin"},
                      GoldenCase{"albert-tiny", "pytorch_model_legacy.bin"},
                      GoldenCase{"bert-tiny", "model.safetensors"}, GoldenCase{"distilbert-tiny", "model.safetensors"},
                      GoldenCase{"roberta-tiny", "model.safetensors"}, GoldenCase{"electra-tiny", "model.safetensors"},
                      GoldenCase{"xlm-roberta-tiny", "model.safetensors"}, GoldenCase{"deberta-v3-tiny", "model.safetensors"},
                      GoldenCase{"modernbert-tiny", "model.safetensors"}, GoldenCase{"gpt2-tiny", "model.safetensors"},
                      GoldenCase{"llama-tiny", "model.safetensors"}, GoldenCase{"qwen2-tiny", "model.safetensors"}),
    [](const ::testing::TestParamInfo<GoldenCase>& info) {
      std::string name = std::string(info.param.model) + "_" + info.param.weights;
      for (char& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      return name;
    });

class EncodeCommand : public ::testing::TestWithParam<const char*> {};

TEST_P(EncodeCommand, WritesHiddenStatesAndLogitsMatchingTheReference) {
  const std::string model = GetParam();
  REQUIRE_SHARED("golden/" + model + "/reference_outputs.safetensors");
  const fs::path dir = test_support::shared_path("golden/" + model);
  const fs::path out = test_support::scratch_dir("encode_cli_" + model) / "out.safetensors";
  std::string err;
  ASSERT_EQ(run_probe_tools("encode --model " + dir.string() + " --inputs " +
                                (dir / "reference_outputs.safetensors").string() + " --output " + out.string() +
                                " --batch-size 4",
                            err),
            0)
      << err;
  const auto ref = read_safetensors(dir / "reference_outputs.safetensors").tensors;
  const auto got = read_safetensors(out).tensors;
  for (const char* name : {"hidden_states", "start_logits", "end_logits"}) {
    EXPECT_EQ(got.at(name).scalar_type(), torch::kFloat32) << name;
    EXPECT_LE(max_diff(got.at(name), ref.at(name)), kGoldenTolerance) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, EncodeCommand,
                         ::testing::Values("albert-tiny", "bert-tiny", "distilbert-tiny", "roberta-tiny", "electra-tiny",
                                           "xlm-roberta-tiny", "deberta-v3-tiny", "modernbert-tiny", "gpt2-tiny",
                                           "llama-tiny", "qwen2-tiny"));

TEST(EncodeCommandOptions, LegacyWeightsFileIsUsedWhenNamed) {
  REQUIRE_SHARED("golden/albert-tiny/reference_outputs.safetensors");
  const fs::path dir = test_support::shared_path("golden/albert-tiny");
  const fs::path out = test_support::scratch_dir("encode_cli_legacy") / "out.safetensors";
  std::string err;
  ASSERT_EQ(run_probe_tools("encode --model " + dir.string() + " --weights pytorch_model_legacy.bin --inputs " +
                                (dir / "reference_outputs.safetensors").string() + " --output " + out.string(),
                            err),
            0)
      << err;
  EXPECT_NE(read_safetensors(out).metadata.at("weights").find("pytorch_model_legacy.bin"), std::string::npos);
}

TEST(EncodeCommandOptions, GpuWithoutCudaIsAUsageError) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "CUDA is available here";
  try {
    parse_device("gpu");
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), 2);
    EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos);
  }
  std::string err;
  EXPECT_EQ(run_probe_tools("encode --model m --inputs i --output o --device gpu", err), 2);
  EXPECT_NE(err.find("no CUDA device"), std::string::npos) << err;
}

TEST(EncodeCommandOptions, UnknownDeviceIsAUsageError) {
  EXPECT_EQ(parse_device("cpu"), torch::Device(torch::kCPU));
  try {
    parse_device("tpu");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), 2);
  }
}

// --- HF semantics, every family --------------------------------------------------

class EveryFamily : public ::testing::TestWithParam<const char*> {};

INSTANTIATE_TEST_SUITE_P(Families, EveryFamily, ::testing::ValuesIn(kFamilies));

TEST_P(EveryFamily, OutputShapesAndHiddenStateCount) {
  auto model = random_model(small_config(GetParam()), 41);
  auto in = random_inputs(model->config(), 2, 5, 8);
  auto out = run(*model, in);
  ASSERT_EQ(out.hidden_states.size(), 3u);
  for (const auto& h : out.hidden_states) EXPECT_EQ(h.sizes(), (std::vector<int64_t>{2, 5, 16}));
  EXPECT_EQ(out.start_logits.sizes(), (std::vector<int64_t>{2, 5}));
  torch::NoGradGuard no_grad;
  auto last_only = model->forward(in, /*collect_hidden_states=*/false);
  ASSERT_EQ(last_only.hidden_states.size(), 1u);
  EXPECT_TRUE(torch::equal(last_only.hidden_states[0], out.hidden_states.back()));
}

TEST_P(EveryFamily, PaddingDoesNotChangeRealTokens) {
  auto model = random_model(small_config(GetParam()), 51);
  auto padded = random_inputs(model->config(), 1, 8, 9);  // last 3 tokens of row 0 are padding
  auto a = run(*model, padded), b = run(*model, first_columns(padded, 5));
  for (size_t i = 0; i < a.hidden_states.size(); ++i)
    EXPECT_LE(max_diff(a.hidden_states[i].slice(1, 0, 5), b.hidden_states[i]), 1e-5) << i;
}

TEST_P(EveryFamily, ParameterCountIsTheFamilysFormula) {
  auto model = random_model(small_config(GetParam()), 52);
  double count = 0;
  for (const auto& p : model->parameters()) count += static_cast<double>(p.numel());
  EXPECT_EQ(count, model->family().parameters(model->config()));
}

TEST_P(EveryFamily, KeysCarryTheFamilysPrefixAndTheQaHead) {
  auto model = random_model(small_config(GetParam()), 53);
  const ModelFamily& family = model->family();
  auto in_head = [&](const std::string& key) {
    for (const auto& prefix : family.head_prefixes)
      if (key.rfind(prefix, 0) == 0) return true;
    return false;
  };
  for (const auto& item : model->named_parameters())
    EXPECT_TRUE(item.key().rfind(family.base_prefix + ".", 0) == 0 || in_head(item.key())) << item.key();
  EXPECT_NE(model->named_parameters().find(family.head_output), nullptr);
  EXPECT_TRUE(in_head(family.head_output));
}

TEST_P(EveryFamily, TrainingModeHasDropoutAndGradients) {
  auto model = random_model(small_config(GetParam()), 61);
  auto in = random_inputs(model->config(), 2, 6, 10);
  model->train();
  auto a = model->forward(in), b = model->forward(in);
  EXPECT_GT(max_diff(a.start_logits, b.start_logits), 0.0) << "dropout should be active in train()";
  (a.start_logits.sum() + a.end_logits.sum()).backward();
  int64_t with_gradient = 0;
  for (const auto& item : model->named_parameters())
    if (item.value().grad().defined() && item.value().grad().abs().sum().item<float>() > 0) ++with_gradient;
  EXPECT_GT(with_gradient, 10);
  EXPECT_GT(model->named_parameters()[model->family().head_output].grad().abs().sum().item<float>(), 0.f);
  model->eval();
  auto c = run(*model, in), d = run(*model, in);
  EXPECT_TRUE(torch::equal(c.start_logits, d.start_logits)) << "eval() must be deterministic";
}

TEST_P(EveryFamily, OneDnnPathEqualsTheReferenceOps) {
  auto model = random_model(small_config(GetParam()), 71);
  auto in = random_inputs(model->config(), 3, 7, 12);
  auto forward_and_gradients = [&](bool fast) {
    set_fast_cpu_path(fast);
    auto eval_out = run(*model, in);
    model->zero_grad();
    auto out = model->forward(in);
    torch::manual_seed(5);
    (out.start_logits * torch::randn_like(out.start_logits) + out.end_logits * torch::randn_like(out.end_logits))
        .sum()
        .backward();
    set_fast_cpu_path(true);
    std::map<std::string, torch::Tensor> grads;
    for (const auto& item : model->named_parameters()) {
      const auto& grad = item.value().grad();
      grads[item.key()] = grad.defined() ? grad.clone() : grad;
    }
    return std::make_pair(eval_out, grads);
  };
  auto [fast_out, fast] = forward_and_gradients(true);
  auto [reference_out, reference] = forward_and_gradients(false);
  for (size_t i = 0; i < fast_out.hidden_states.size(); ++i)
    EXPECT_LE(max_diff(fast_out.hidden_states[i], reference_out.hidden_states[i]), 1e-5) << i;
  for (const auto& [name, grad] : reference) {
    if (!grad.defined()) {  // the pooler: not on the QA path
      EXPECT_FALSE(fast.at(name).defined()) << name;
      continue;
    }
    const double scale = std::max(1e-3, grad.abs().max().item<double>());
    EXPECT_LE(max_diff(fast.at(name), grad) / scale, 1e-5) << name;
  }
}

TEST_P(EveryFamily, InputsAreValidated) {
  const ModelConfig config = small_config(GetParam());
  auto ids = torch::zeros({2, 4}, torch::kLong);
  auto expect_error = [&](const EncoderBatch& batch, const std::string& text) {
    try {
      validate_encoder_inputs(config, batch);
      ADD_FAILURE() << "expected an Error containing " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  validate_encoder_inputs(config, {ids, ids, ids});
  validate_encoder_inputs(config, {ids, torch::Tensor(), ids});
  expect_error({ids + 40, ids, ids}, "input_ids values must lie in [0, 40)");
  expect_error({ids, ids, ids.slice(1, 0, 3)}, "attention_mask has shape [2, 3]");
  expect_error({ids, ids.to(torch::kFloat32), ids}, "token_type_ids must be an integer tensor");
  expect_error({torch::zeros({1, 40}, torch::kLong), torch::Tensor(), torch::zeros({1, 40}, torch::kLong)},
               "at most " + std::to_string(config.max_position_embeddings - model_family(config.model_type).position_offset));
  if (model_family(config.model_type).takes_token_type_ids && config.type_vocab_size > 0)
    expect_error({ids, ids + 2, ids}, "token_type_ids values must lie in [0, " + std::to_string(config.type_vocab_size) + ")");
  else
    validate_encoder_inputs(config, {ids, ids + 1, ids});  // ignored: run_squad drops them, or the model has none
}

// --- per-family details ------------------------------------------------------------

TEST(DistilBert, IgnoresTokenTypesAsRunSquadDropsThem) {
  auto model = random_model(small_config("distilbert"), 81);
  auto in = random_inputs(model->config(), 2, 6, 13);
  auto with_types = in;
  with_types.token_type_ids = torch::ones_like(in.input_ids);
  EXPECT_TRUE(torch::equal(run(*model, in).start_logits, run(*model, with_types).start_logits));
}

TEST(Bert, TokenTypesChangeTheOutput) {
  auto model = random_model(small_config("bert"), 82);
  auto in = random_inputs(model->config(), 2, 6, 14);
  auto zeros = in;
  zeros.token_type_ids = torch::Tensor();
  EXPECT_GT(max_diff(run(*model, in).start_logits, run(*model, zeros).start_logits), 1e-4);
}

TEST(Roberta, PositionsCountFromThePaddingId) {
  auto model = random_model(small_config("roberta"), 83);
  // A row padded on the left keeps its real tokens' positions 2, 3, ... (HF's
  // create_position_ids_from_input_ids), so it matches the unpadded row.
  EncoderBatch plain{torch::tensor({{5, 6, 7, 8}}, torch::kLong), {}, torch::ones({1, 4}, torch::kLong)};
  EncoderBatch left{torch::tensor({{1, 5, 6, 7, 8}}, torch::kLong), {}, torch::tensor({{0, 1, 1, 1, 1}}, torch::kLong)};
  auto a = run(*model, plain), b = run(*model, left);
  EXPECT_LE(max_diff(a.hidden_states[0], b.hidden_states[0].slice(1, 1, 5)), 1e-6);
  // 32 positions (34 - 2) fit; 33 do not.
  EncoderBatch longest{torch::full({1, 32}, 5, torch::kLong), {}, torch::ones({1, 32}, torch::kLong)};
  EXPECT_NO_THROW(run(*model, longest));
  EncoderBatch too_long{torch::full({1, 33}, 5, torch::kLong), {}, torch::ones({1, 33}, torch::kLong)};
  EXPECT_THROW(run(*model, too_long), Error);
}

TEST(ModernBert, LocalLayersAttendOnlyWithinTheirWindow) {
  // Layer 1 (index 1) of the small config is local: local_attention 4, so each query sees keys within 2.
  auto model = random_model(small_config("modernbert"), 84);
  auto in = random_inputs(model->config(), 1, 9, 15);
  in.attention_mask.fill_(1);
  torch::NoGradGuard no_grad;
  const auto hidden = torch::randn({1, 9, 16});
  auto edited = hidden.clone();
  edited.index_put_({0, 0}, torch::randn({16}));
  for (const bool fast : {true, false}) {
    set_fast_cpu_path(fast);
    const auto a = model->forward_from(in, 1, hidden).hidden_states.back();
    const auto b = model->forward_from(in, 1, edited).hidden_states.back();
    set_fast_cpu_path(true);
    EXPECT_GT(max_diff(a.select(1, 2), b.select(1, 2)), 1e-4) << "position 2 sees position 0";
    EXPECT_EQ(max_diff(a.slice(1, 3), b.slice(1, 3)), 0.0) << "positions 3.. are beyond the window of position 0";
  }
}

TEST(ModernBert, EveryBiasTheConfigAsksForIsLoadedCountedAndUsed) {
  nlohmann::json object = small_config("modernbert").to_json();
  for (const char* key : {"attention_bias", "mlp_bias", "norm_bias", "classifier_bias"}) object[key] = true;
  auto model = random_model(config_from_json(object, "test"), 85);
  auto parameters = model->named_parameters();
  for (const char* name : {"model.layers.1.attn.Wqkv.bias", "model.layers.0.mlp.Wi.bias", "model.final_norm.bias",
                           "model.layers.1.attn_norm.bias", "head.dense.bias", "head.norm.bias"})
    EXPECT_NE(parameters.find(name), nullptr) << name;
  EXPECT_EQ(parameters.find("model.layers.0.attn_norm.weight"), nullptr) << "layer 0 has no attn_norm";
  double count = 0;
  for (const auto& p : model->parameters()) count += static_cast<double>(p.numel());
  EXPECT_EQ(count, model->family().parameters(model->config()));
  torch::NoGradGuard no_grad;
  for (auto& item : parameters)
    if (item.key().find(".bias") != std::string::npos) item.value().normal_(0, 0.5);
  auto in = random_inputs(model->config(), 2, 7, 16);
  set_fast_cpu_path(false);
  auto reference = run(*model, in);
  set_fast_cpu_path(true);
  auto fast = run(*model, in);
  for (size_t i = 0; i < fast.hidden_states.size(); ++i)
    EXPECT_LE(max_diff(fast.hidden_states[i], reference.hidden_states[i]), 1e-5) << i;
  EXPECT_LE(max_diff(fast.start_logits, reference.start_logits), 1e-5);
}

TEST(Electra, EmbeddingsAreProjectedOnlyWhenNarrowerThanTheLayers) {
  EXPECT_NE(create_model(small_config("electra"))->named_parameters().find("electra.embeddings_project.weight"),
            nullptr);
  nlohmann::json object = small_config("electra").to_json();
  object["embedding_size"] = 16;
  EXPECT_EQ(create_model(config_from_json(object, "test"))->named_parameters().find("electra.embeddings_project.weight"),
            nullptr);
}

TEST(Families, NewerFamiliesInitialiseAsTransformers4) {
  // 4.x zeroes the embeddings' padding rows (2.5.1 left them random); ModernBERT draws truncated normals.
  torch::manual_seed(3);
  auto xlmr = create_model(small_config("xlm-roberta"));
  auto p = xlmr->named_parameters();
  EXPECT_EQ(p["roberta.embeddings.word_embeddings.weight"][1].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(p["roberta.embeddings.position_embeddings.weight"][1].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(p.find("roberta.pooler.dense.weight"), nullptr) << "4.x's XLM-R QA model has no pooler";
  auto electra = create_model(small_config("electra"));
  EXPECT_EQ(electra->named_parameters()["electra.embeddings.word_embeddings.weight"][0].abs().sum().item<double>(), 0.0);
  nlohmann::json object = small_config("modernbert").to_json();
  object.update({{"hidden_size", 64}, {"intermediate_size", 96}, {"vocab_size", 4000}});
  const ModelConfig config = config_from_json(object, "test");
  auto modern = create_model(config);
  auto q = modern->named_parameters();
  const double cutoff = config.number("initializer_cutoff_factor"), range = config.initializer_range;
  auto expect_truncated = [&](const std::string& name, double std) {
    const auto w = q[name];
    EXPECT_LE(w.abs().max().item<double>(), cutoff * std + 1e-9) << name;
    EXPECT_NEAR(w.std().item<double>(), std * 0.88, std * 0.1) << name;  // N(0, std) cut at 2 std: SD 0.88 std
  };
  expect_truncated("model.embeddings.tok_embeddings.weight", range);
  expect_truncated("model.layers.1.attn.Wqkv.weight", range);
  expect_truncated("model.layers.1.mlp.Wo.weight", range / std::sqrt(2.0 * 2));
  expect_truncated("head.dense.weight", range / std::sqrt(2.0 * 2));
  EXPECT_LE(q["classifier.weight"].abs().max().item<double>(), cutoff / 8.0 + 1e-9);  // std = 64^-0.5
  EXPECT_EQ(q["classifier.bias"].abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(torch::equal(q["model.final_norm.weight"], torch::ones({64})));
}

TEST(DistilBert, SinusoidalPositionsAreFixed) {
  nlohmann::json object = small_config("distilbert").to_json();
  object["sinusoidal_pos_embds"] = true;
  auto model = create_model(config_from_json(object, "test"));
  auto table = model->named_parameters()["distilbert.embeddings.position_embeddings.weight"];
  EXPECT_FALSE(table.requires_grad());
  EXPECT_NEAR(table[0][0].item<double>(), 0.0, 1e-7);            // sin(0)
  EXPECT_NEAR(table[0][1].item<double>(), 1.0, 1e-7);            // cos(0)
  EXPECT_NEAR(table[3][2].item<double>(), std::sin(3.0 / std::pow(10000.0, 2.0 / 16)), 1e-6);
  EXPECT_NEAR(table[3][3].item<double>(), std::cos(3.0 / std::pow(10000.0, 2.0 / 16)), 1e-6);
}

TEST(Families, UnknownModelTypeNamesTheKnownOnes) {
  try {
    config_from_json({{"model_type", "t5"}}, "x/config.json");
    FAIL();
  } catch (const Error& e) {
    const std::string what = e.what();
    for (const char* family : kFamilies) EXPECT_NE(what.find(family), std::string::npos) << what;
  }
}

namespace {

// The largest |start logit| difference over real tokens between `encode`'s output and a golden
// model's reference outputs (its hidden states must come back in fp32 whatever the precision).
double encoded_start_logits_diff(const fs::path& golden_dir, const fs::path& encoded) {
  const auto ref = read_safetensors(golden_dir / "reference_outputs.safetensors").tensors;
  const auto got = read_safetensors(encoded).tensors;
  EXPECT_EQ(got.at("hidden_states").scalar_type(), torch::kFloat32);
  const auto real = ref.at("attention_mask").to(torch::kBool);
  return (got.at("start_logits") - ref.at("start_logits")).abs().masked_select(real).max().item<double>();
}

}  // namespace

TEST(EncodeCommandOptions, Bf16PrecisionRunsWhereTheCpuHasItAndIsRefusedElsewhere) {
  REQUIRE_SHARED("golden/bert-tiny/reference_outputs.safetensors");
  const fs::path dir = test_support::shared_path("golden/bert-tiny");
  const fs::path out = test_support::scratch_dir("encode_cli_bf16") / "out.safetensors";
  std::string err;
  const int status = run_probe_tools("encode --model " + dir.string() + " --inputs " +
                                         (dir / "reference_outputs.safetensors").string() + " --output " +
                                         out.string() + " --precision bf16",
                                     err);
  if (!cpu_has_native_bf16()) {
    EXPECT_EQ(status, 2) << err;
    EXPECT_NE(err.find("bf16"), std::string::npos) << err;
    return;
  }
  ASSERT_EQ(status, 0) << err;
  // bf16 rounding shows, within the bound test_precision.cpp pins on the same model.
  const double diff = encoded_start_logits_diff(dir, out);
  EXPECT_GT(diff, 1e-6);
  EXPECT_LE(diff, 0.012);
  EXPECT_EQ(run_probe_tools("encode --model " + dir.string() + " --inputs i --output o --precision fp16", err), 2);
}

TEST(EncodeCommandOptions, Int8PrecisionRunsWhereTheCpuHasVnniAndIsRefusedElsewhere) {
  REQUIRE_SHARED("golden/bert-tiny/reference_outputs.safetensors");
  const fs::path dir = test_support::shared_path("golden/bert-tiny");
  const fs::path out = test_support::scratch_dir("encode_cli_int8") / "out.safetensors";
  const std::string command = "encode --model " + dir.string() + " --inputs " +
                              (dir / "reference_outputs.safetensors").string() + " --output " + out.string() +
                              " --precision int8";
  std::string err;
  // A CPU without VNNI or AMX-INT8, simulated: a usage error naming what is missing.
  setenv("LAYERPROBE_HIDE_CPU_FLAGS", "avx512_vnni,amx_int8", 1);
  const int hidden = run_probe_tools(command, err);
  unsetenv("LAYERPROBE_HIDE_CPU_FLAGS");
  EXPECT_EQ(hidden, 2) << err;
  EXPECT_NE(err.find("AVX512_VNNI or AMX-INT8"), std::string::npos) << err;
  const int status = run_probe_tools(command, err);
  if (!cpu_has_int8_dot()) {
    EXPECT_EQ(status, 2) << err;
    return;
  }
  ASSERT_EQ(status, 0) << err;
  // int8 rounding shows, within the bound test_precision.cpp pins on the same model (0.001).
  const double diff = encoded_start_logits_diff(dir, out);
  EXPECT_GT(diff, 1e-6);
  EXPECT_LE(diff, 0.001);
}
