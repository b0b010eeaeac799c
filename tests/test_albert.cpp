// ALBERT's own structure: parameter groups shared across layer steps, inner
// groups, HF's group assignment and key layout; and the activations of ACT2FN.
#include <torch/torch.h>

#include <functional>

#include "layerprobe/core/common.hpp"
#include "layerprobe/model/config.hpp"
#include "model/albert/albert.hpp"
#include "model/layers.hpp"
#include "test_support.hpp"

using namespace layerprobe;

namespace {

using test_support::max_diff;

ModelConfig albert_config(int64_t layers, int64_t groups, int64_t inner) {
  return config_from_json({{"model_type", "albert"}, {"vocab_size", 40}, {"embedding_size", 8}, {"hidden_size", 16},
                           {"num_attention_heads", 4}, {"intermediate_size", 24}, {"num_hidden_layers", layers},
                           {"num_hidden_groups", groups}, {"inner_group_num", inner}},
                          "albert test config");
}

std::shared_ptr<AlbertForQuestionAnswering> random_albert(const ModelConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  auto model = std::make_shared<AlbertForQuestionAnswering>(config);
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters())
    if (item.key().find("LayerNorm") != std::string::npos || item.key().find("layer_norm") != std::string::npos)
      item.value().add_(torch::randn_like(item.value()) * 0.1);
  model->eval();
  return model;
}

// Copies parameters into `to`, reading each from `from` under the name rename(name) gives.
void copy_albert_parameters(const QaModel& from, QaModel& to, const std::function<std::string(const std::string&)>& rename) {
  torch::NoGradGuard no_grad;
  auto source = from.named_parameters();
  for (auto& item : to.named_parameters()) item.value().copy_(source[rename(item.key())]);
}

std::string replace_first(std::string text, const std::string& from, const std::string& to) {
  auto pos = text.find(from);
  if (pos != std::string::npos) text.replace(pos, from.size(), to);
  return text;
}

EncoderBatch albert_inputs(int64_t batch, int64_t length, uint64_t seed) {
  torch::manual_seed(seed);
  EncoderBatch in;
  in.input_ids = torch::randint(40, {batch, length}, torch::kLong);
  in.token_type_ids = (torch::arange(length) >= length / 2).to(torch::kLong).expand({batch, length}).contiguous();
  in.attention_mask = torch::ones({batch, length}, torch::kLong);
  in.attention_mask.index_put_({0, torch::indexing::Slice(length - 3, torch::indexing::None)}, 0);
  return in;
}

EncoderOutput run_albert(QaModel& model, const EncoderBatch& in) {
  torch::NoGradGuard no_grad;
  return model.forward(in);
}

}  // namespace

TEST(Activations, MatchTheirDefinitions) {
  torch::Tensor x = torch::tensor({-1.0, 0.0, 1.0}, torch::kFloat64);
  auto gelu = apply_activation(x, Activation::Gelu);
  auto gelu_new = apply_activation(x, Activation::GeluNew);
  EXPECT_NEAR(gelu[2].item<double>(), 0.8413447460685429, 1e-12);
  EXPECT_NEAR(gelu[0].item<double>(), -0.15865525393145707, 1e-12);
  EXPECT_NEAR(gelu_new[2].item<double>(), 0.8411919906082768, 1e-12);
  EXPECT_TRUE(torch::equal(apply_activation(x, Activation::Relu), torch::tensor({0.0, 0.0, 1.0}, torch::kFloat64)));
  EXPECT_NEAR(apply_activation(x, Activation::Swish)[2].item<double>(), 0.7310585786300049, 1e-12);
  EXPECT_THROW(parse_activation("tanh"), Error);
}

TEST(Albert, LayerToGroupAssignmentFollowsHf) {
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

TEST(Albert, GroupedKeyLayoutIsHfs) {
  AlbertForQuestionAnswering model(albert_config(4, 2, 2));
  auto params = model.named_parameters();
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

TEST(Albert, TwoIdenticalGroupsEqualOneGroup) {
  auto one = random_albert(albert_config(4, 1, 1), 11);
  auto two = random_albert(albert_config(4, 2, 1), 12);
  copy_albert_parameters(*one, *two, [](const std::string& name) {
    return replace_first(name, "albert_layer_groups.1.", "albert_layer_groups.0.");
  });
  auto in = albert_inputs(2, 9, 5);
  auto a = run_albert(*one, in), b = run_albert(*two, in);
  ASSERT_EQ(a.hidden_states.size(), 5u);
  ASSERT_EQ(b.hidden_states.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_LE(max_diff(a.hidden_states[i], b.hidden_states[i]), 1e-6) << i;
  EXPECT_LE(max_diff(a.start_logits, b.start_logits), 1e-6);
}

TEST(Albert, GroupsRunInHfOrder) {
  auto grouped = random_albert(albert_config(4, 2, 1), 21);
  auto first = random_albert(albert_config(2, 1, 1), 22);
  copy_albert_parameters(*grouped, *first, [](const std::string& name) { return name; });
  auto in = albert_inputs(2, 7, 6);
  auto g = run_albert(*grouped, in), f = run_albert(*first, in);
  // Layers 1-2 run group 0, so they equal a 2-layer model of group 0 ...
  for (size_t i = 0; i < 3; ++i) EXPECT_LE(max_diff(g.hidden_states[i], f.hidden_states[i]), 1e-6) << i;
  // ... and layers 3-4 run group 1 on that.
  torch::NoGradGuard no_grad;
  auto mask = additive_attention_mask(in.attention_mask, torch::kFloat32, -10000.0);
  auto& group1 = grouped->albert->encoder->groups[1];
  auto h3 = group1(g.hidden_states[2], mask);
  EXPECT_LE(max_diff(h3, g.hidden_states[3]), 1e-6);
  EXPECT_LE(max_diff(group1(h3, mask), g.hidden_states[4]), 1e-6);
  EXPECT_GT(max_diff(g.hidden_states[4], grouped->albert->encoder->groups[0](h3, mask)), 1e-3)
      << "the groups should differ, or this test shows nothing";
}

TEST(Albert, EachLayerStepRunsAllInnerLayers) {
  auto inner = random_albert(albert_config(2, 1, 2), 31);
  auto flat = random_albert(albert_config(4, 1, 1), 32);
  // Both inner layers hold the flat model's one layer: 2 steps x 2 inner = 4 layers.
  copy_albert_parameters(*flat, *inner, [](const std::string& name) {
    return replace_first(name, "albert_layers.1.", "albert_layers.0.");
  });
  auto in = albert_inputs(3, 6, 7);
  auto a = run_albert(*inner, in), b = run_albert(*flat, in);
  ASSERT_EQ(a.hidden_states.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_LE(max_diff(a.hidden_states[i], b.hidden_states[2 * i]), 1e-6) << i;
  EXPECT_LE(max_diff(a.end_logits, b.end_logits), 1e-6);
}
