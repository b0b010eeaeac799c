#include <torch/torch.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <regex>
#include <sys/wait.h>

#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/core/device.hpp"
#include "layerprobe/model/encoder.hpp"
#include "layerprobe/io/safetensors.hpp"
#include "test_support.hpp"

using namespace layerprobe;
namespace fs = std::filesystem;

namespace {

constexpr double kGoldenTolerance = 1e-5;

using test_support::max_diff;

AlbertConfig small_config(int64_t layers, int64_t groups, int64_t inner) {
  AlbertConfig config;
  config.vocab_size = 40;
  config.embedding_size = 8;
  config.hidden_size = 16;
  config.num_attention_heads = 4;
  config.intermediate_size = 24;
  config.num_hidden_layers = layers;
  config.num_hidden_groups = groups;
  config.inner_group_num = inner;
  return config;
}

// A random model whose LayerNorms are perturbed away from 1/0 as well.
AlbertForQuestionAnswering random_model(const AlbertConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  AlbertForQuestionAnswering model(config);
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters())
    if (item.key().find("LayerNorm") != std::string::npos || item.key().find("layer_norm") != std::string::npos)
      item.value().add_(torch::randn_like(item.value()) * 0.1);
  model->eval();
  return model;
}

// Copies parameters into `to`, reading each from `from` under the name
// rename(name) gives.
void copy_parameters(const AlbertForQuestionAnswering& from, AlbertForQuestionAnswering& to,
                     const std::function<std::string(const std::string&)>& rename) {
  torch::NoGradGuard no_grad;
  auto source = from->named_parameters();
  for (auto& item : to->named_parameters()) item.value().copy_(source[rename(item.key())]);
}

std::string replace(std::string text, const std::string& from, const std::string& to) {
  auto pos = text.find(from);
  if (pos != std::string::npos) text.replace(pos, from.size(), to);
  return text;
}

struct Inputs {
  torch::Tensor ids, types, mask;
};

Inputs random_inputs(const AlbertConfig& config, int64_t batch, int64_t length, uint64_t seed) {
  torch::manual_seed(seed);
  Inputs in;
  in.ids = torch::randint(config.vocab_size, {batch, length}, torch::kLong);
  in.types = (torch::arange(length) >= length / 2).to(torch::kLong).expand({batch, length}).contiguous();
  in.mask = torch::ones({batch, length}, torch::kLong);
  in.mask.index_put_({0, torch::indexing::Slice(length - 3, torch::indexing::None)}, 0);
  return in;
}

EncoderOutput run(AlbertForQuestionAnswering& model, const Inputs& in) {
  torch::NoGradGuard no_grad;
  return model(in.ids, in.types, in.mask);
}

// Runs probe_tools with `args`; returns its exit status, its log (stdout
// and stderr) in `log`.
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

}  // namespace

// --- against transformers 2.5.1 --------------------------------------------------

class GoldenEncoder : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenEncoder, MatchesTransformersWithin1e5) {
  REQUIRE_SHARED("golden/albert-tiny/reference_outputs.safetensors");
  const fs::path dir = test_support::shared_path("golden/albert-tiny");
  LoadedModel loaded = load_checkpoint(dir, dir / GetParam());
  const auto ref = read_safetensors(dir / "reference_outputs.safetensors").tensors;
  EncoderOutput out = run(loaded.model, {ref.at("input_ids"), ref.at("token_type_ids"), ref.at("attention_mask")});

  const torch::Tensor& hidden = ref.at("hidden_states");
  ASSERT_EQ(static_cast<int64_t>(out.hidden_states.size()), hidden.size(0));
  double worst = 0;
  for (int64_t i = 0; i < hidden.size(0); ++i) {
    double diff = max_diff(out.hidden_states[i], hidden[i]);
    EXPECT_LE(diff, kGoldenTolerance) << "hidden state " << i;
    worst = std::max(worst, diff);
  }
  double start = max_diff(out.start_logits, ref.at("start_logits"));
  double end = max_diff(out.end_logits, ref.at("end_logits"));
  EXPECT_LE(start, kGoldenTolerance);
  EXPECT_LE(end, kGoldenTolerance);
  std::cout << GetParam() << ": max |diff| hidden " << worst << ", start " << start << ", end " << end << "\n";
}

INSTANTIATE_TEST_SUITE_P(WeightFiles, GoldenEncoder,
                         ::testing::Values("model.safetensors", "pytorch_model.bin", "pytorch_model_legacy.bin"));

TEST(EncodeCommand, WritesHiddenStatesAndLogitsMatchingTheReference) {
  REQUIRE_SHARED("golden/albert-tiny/reference_outputs.safetensors");
  const fs::path dir = test_support::shared_path("golden/albert-tiny");
  const fs::path out = test_support::scratch_dir("encode_cli") / "out.safetensors";
  std::string err;
  ASSERT_EQ(run_probe_tools("encode --model " + dir.string() + " --weights pytorch_model_legacy.bin --inputs " +
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

TEST(EncodeCommand, GpuWithoutCudaIsAUsageError) {
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

TEST(EncodeCommand, UnknownDeviceIsAUsageError) {
  EXPECT_EQ(parse_device("cpu"), torch::Device(torch::kCPU));
  try {
    parse_device("tpu");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), 2);
  }
}

// --- HF semantics without references --------------------------------------------

TEST(Encoder, ActivationsMatchTheirDefinitions) {
  torch::Tensor x = torch::tensor({-1.0, 0.0, 1.0}, torch::kFloat64);
  auto gelu = apply_activation(x, Activation::Gelu);
  auto gelu_new = apply_activation(x, Activation::GeluNew);
  EXPECT_NEAR(gelu[2].item<double>(), 0.8413447460685429, 1e-12);
  EXPECT_NEAR(gelu[0].item<double>(), -0.15865525393145707, 1e-12);
  EXPECT_NEAR(gelu_new[2].item<double>(), 0.8411919906082768, 1e-12);
  EXPECT_TRUE(torch::equal(apply_activation(x, Activation::Relu), torch::tensor({0.0, 0.0, 1.0}, torch::kFloat64)));
  EXPECT_THROW(parse_activation("swish"), Error);
}

TEST(Encoder, LayerToGroupAssignmentFollowsHf) {
  auto groups_of = [](int64_t layers, int64_t groups) {
    std::vector<int64_t> out;
    for (int64_t i = 0; i < layers; ++i) out.push_back(layer_group_index(i, layers, groups));
    return out;
  };
  EXPECT_EQ(groups_of(4, 2), (std::vector<int64_t>{0, 0, 1, 1}));
  EXPECT_EQ(groups_of(3, 2), (std::vector<int64_t>{0, 0, 1}));
  EXPECT_EQ(groups_of(4, 3), (std::vector<int64_t>{0, 0, 1, 2}));
  EXPECT_EQ(groups_of(5, 3), (std::vector<int64_t>{0, 0, 1, 1, 2}));
  EXPECT_EQ(groups_of(12, 1), std::vector<int64_t>(12, 0));
  EXPECT_EQ(groups_of(3, 3), (std::vector<int64_t>{0, 1, 2}));
}

TEST(Encoder, GroupedKeyLayoutIsHfs) {
  AlbertForQuestionAnswering model(small_config(4, 2, 2));
  auto params = model->named_parameters();
  // embeddings 5 + mapping 2 + 2 groups x 2 inner layers x 16 + pooler 2 + qa 2
  EXPECT_EQ(params.size(), 5u + 2u + 64u + 2u + 2u);
  for (const char* key : {"albert.embeddings.word_embeddings.weight", "albert.embeddings.LayerNorm.bias",
                          "albert.encoder.embedding_hidden_mapping_in.weight",
                          "albert.encoder.albert_layer_groups.1.albert_layers.1.full_layer_layer_norm.weight",
                          "albert.encoder.albert_layer_groups.1.albert_layers.0.attention.query.weight",
                          "albert.encoder.albert_layer_groups.0.albert_layers.1.attention.dense.bias",
                          "albert.encoder.albert_layer_groups.0.albert_layers.1.attention.LayerNorm.weight",
                          "albert.encoder.albert_layer_groups.1.albert_layers.1.ffn.weight",
                          "albert.encoder.albert_layer_groups.1.albert_layers.1.ffn_output.bias",
                          "albert.pooler.weight", "qa_outputs.weight", "qa_outputs.bias"})
    EXPECT_NE(params.find(key), nullptr) << key;
  EXPECT_EQ(params["albert.encoder.albert_layer_groups.1.albert_layers.0.ffn.weight"].sizes(),
            (std::vector<int64_t>{24, 16}));
}

TEST(Encoder, TwoIdenticalGroupsEqualOneGroup) {
  auto one = random_model(small_config(4, 1, 1), 11);
  auto two = random_model(small_config(4, 2, 1), 12);
  copy_parameters(one, two, [](const std::string& name) {
    return replace(name, "albert_layer_groups.1.", "albert_layer_groups.0.");
  });
  Inputs in = random_inputs(one->config(), 2, 9, 5);
  auto a = run(one, in), b = run(two, in);
  ASSERT_EQ(a.hidden_states.size(), 5u);
  ASSERT_EQ(b.hidden_states.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_LE(max_diff(a.hidden_states[i], b.hidden_states[i]), 1e-6) << i;
  EXPECT_LE(max_diff(a.start_logits, b.start_logits), 1e-6);
}

TEST(Encoder, GroupsRunInHfOrder) {
  auto grouped = random_model(small_config(4, 2, 1), 21);
  auto first = random_model(small_config(2, 1, 1), 22);
  copy_parameters(grouped, first, [](const std::string& name) { return name; });
  Inputs in = random_inputs(grouped->config(), 2, 7, 6);
  auto g = run(grouped, in), f = run(first, in);
  // Layers 1-2 run group 0, so they equal a 2-layer model of group 0 ...
  for (size_t i = 0; i < 3; ++i) EXPECT_LE(max_diff(g.hidden_states[i], f.hidden_states[i]), 1e-6) << i;
  // ... and layers 3-4 run group 1 on that.
  torch::NoGradGuard no_grad;
  auto mask = additive_attention_mask(in.mask, torch::kFloat32);
  auto& group1 = grouped->albert->encoder->groups[1];
  auto h3 = group1(g.hidden_states[2], mask);
  EXPECT_LE(max_diff(h3, g.hidden_states[3]), 1e-6);
  EXPECT_LE(max_diff(group1(h3, mask), g.hidden_states[4]), 1e-6);
  EXPECT_GT(max_diff(g.hidden_states[4], grouped->albert->encoder->groups[0](h3, mask)), 1e-3)
      << "the groups should differ, or this test shows nothing";
}

TEST(Encoder, EachLayerStepRunsAllInnerLayers) {
  auto inner = random_model(small_config(2, 1, 2), 31);
  auto flat = random_model(small_config(4, 1, 1), 32);
  // Both inner layers hold the flat model's one layer: 2 steps x 2 inner = 4 layers.
  copy_parameters(flat, inner, [](const std::string& name) {
    return replace(name, "albert_layers.1.", "albert_layers.0.");
  });
  Inputs in = random_inputs(flat->config(), 3, 6, 7);
  auto a = run(inner, in), b = run(flat, in);
  ASSERT_EQ(a.hidden_states.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_LE(max_diff(a.hidden_states[i], b.hidden_states[2 * i]), 1e-6) << i;
  EXPECT_LE(max_diff(a.end_logits, b.end_logits), 1e-6);
}

TEST(Encoder, UnevenGroupsAndOutputShapes) {
  auto model = random_model(small_config(3, 2, 3), 41);
  Inputs in = random_inputs(model->config(), 2, 5, 8);
  auto out = run(model, in);
  ASSERT_EQ(out.hidden_states.size(), 4u);
  for (const auto& h : out.hidden_states) EXPECT_EQ(h.sizes(), (std::vector<int64_t>{2, 5, 16}));
  EXPECT_EQ(out.start_logits.sizes(), (std::vector<int64_t>{2, 5}));
  torch::NoGradGuard no_grad;
  auto last_only = model(in.ids, in.types, in.mask, /*collect_hidden_states=*/false);
  ASSERT_EQ(last_only.hidden_states.size(), 1u);
  EXPECT_TRUE(torch::equal(last_only.hidden_states[0], out.hidden_states.back()));
}

TEST(Encoder, PaddingDoesNotChangeRealTokens) {
  AlbertConfig config = small_config(2, 1, 1);
  config.hidden_act = "gelu";
  auto model = random_model(config, 51);
  Inputs padded = random_inputs(config, 1, 8, 9);  // last 3 tokens of row 0 are padding
  Inputs cut{padded.ids.slice(1, 0, 5), padded.types.slice(1, 0, 5), padded.mask.slice(1, 0, 5)};
  auto a = run(model, padded), b = run(model, cut);
  for (size_t i = 0; i < a.hidden_states.size(); ++i)
    EXPECT_LE(max_diff(a.hidden_states[i].slice(1, 0, 5), b.hidden_states[i]), 1e-5) << i;
}

TEST(Encoder, TrainingModeHasDropoutAndGradients) {
  AlbertConfig config = small_config(2, 1, 1);
  config.hidden_dropout_prob = 0.2;
  config.attention_probs_dropout_prob = 0.2;
  auto model = random_model(config, 61);
  Inputs in = random_inputs(config, 2, 6, 10);
  model->train();
  auto a = model(in.ids, in.types, in.mask), b = model(in.ids, in.types, in.mask);
  EXPECT_GT(max_diff(a.start_logits, b.start_logits), 0.0) << "dropout should be active in train()";
  (a.start_logits.sum() + a.end_logits.sum()).backward();
  auto grad = model->albert->encoder->groups[0]->layers[0]->ffn->weight.grad();
  ASSERT_TRUE(grad.defined());
  EXPECT_GT(grad.abs().sum().item<float>(), 0.f);
  EXPECT_FALSE(model->qa_outputs->weight.grad().abs().sum().item<float>() == 0.f);

  model->eval();
  auto c = run(model, in), d = run(model, in);
  EXPECT_TRUE(torch::equal(c.start_logits, d.start_logits)) << "eval() must be deterministic";
}

TEST(Encoder, OneDnnTrainingGradientsEqualTheReferenceOps) {
  auto model = random_model(small_config(3, 2, 1), 71);
  Inputs in = random_inputs(model->config(), 3, 7, 12);
  auto gradients = [&](bool fast) {
    set_fast_cpu_path(fast);
    model->zero_grad();
    auto out = model(in.ids, in.types, in.mask);
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
    return grads;
  };
  auto fast = gradients(true), reference = gradients(false);
  for (const auto& [name, grad] : reference) {
    if (!grad.defined()) {  // the pooler: not on the QA path
      EXPECT_FALSE(fast.at(name).defined()) << name;
      continue;
    }
    const double scale = std::max(1e-3, grad.abs().max().item<double>());
    EXPECT_LE(max_diff(fast.at(name), grad) / scale, 1e-5) << name;
  }
}

TEST(Encoder, InputsAreValidated) {
  AlbertConfig config = small_config(1, 1, 1);
  auto ids = torch::zeros({2, 4}, torch::kLong);
  auto expect_error = [&](const torch::Tensor& i, const torch::Tensor& t, const torch::Tensor& m,
                          const std::string& text) {
    try {
      validate_encoder_inputs(config, i, t, m);
      ADD_FAILURE() << "expected an Error containing " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  validate_encoder_inputs(config, ids, ids, ids);
  expect_error(ids + 40, ids, ids, "input_ids values must lie in [0, 40)");
  expect_error(ids, ids + 2, ids, "token_type_ids values must lie in [0, 2)");
  expect_error(ids, ids, ids.slice(1, 0, 3), "attention_mask has shape [2, 3]");
  expect_error(ids, ids.to(torch::kFloat32), ids, "token_type_ids must be an integer tensor");
  expect_error(torch::zeros({1, 600}, torch::kLong), torch::zeros({1, 600}, torch::kLong),
               torch::zeros({1, 600}, torch::kLong), "at most 512");
}
