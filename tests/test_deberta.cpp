// DeBERTa-v2/v3 beyond the golden tiny model (tests/test_encoder.cpp has that, with every family's
// shared checks): the log-bucketed relative positions, the config variants HF supports (absolute
// positions, separate position projections, embed_proj, the convolution, no relative attention) on both
// the oneDNN kernel and the reference ops, token types, FLOPs and parameters of the published shape,
// and configs refused with the key named.
#include <torch/torch.h>

#include <string>

#include "layerprobe/core/common.hpp"
#include "layerprobe/model/family.hpp"
#include "layerprobe/model/qa_model.hpp"
#include "model/deberta_v2/deberta_v2.hpp"
#include "test_support.hpp"

using namespace layerprobe;

// Named, not anonymous, tests included: the unity build compiles test files together (test_encoder.cpp has
// a random_model of its own).
namespace deberta_test {

using test_support::max_diff;

// A small DeBERTa-v3-like config, with `changes` applied.
ModelConfig deberta_config(const nlohmann::json& changes = nlohmann::json::object()) {
  nlohmann::json object = {{"model_type", "deberta-v2"},    {"vocab_size", 40},
                           {"hidden_size", 16},             {"num_attention_heads", 4},
                           {"intermediate_size", 24},       {"num_hidden_layers", 2},
                           {"max_position_embeddings", 32}, {"relative_attention", true},
                           {"position_buckets", 8},         {"norm_rel_ebd", "layer_norm"},
                           {"share_att_key", true},         {"pos_att_type", "p2c|c2p"},
                           {"position_biased_input", false}, {"hidden_dropout_prob", 0.1},
                           {"attention_probs_dropout_prob", 0.1}};
  object.update(changes);
  return config_from_json(object, "deberta test config");
}

std::shared_ptr<QaModel> random_model(const ModelConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  auto model = create_model(config);
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters())
    if (item.key().find("LayerNorm") != std::string::npos) item.value().add_(torch::randn_like(item.value()) * 0.1);
  model->eval();
  return model;
}

// Rows of 20 tokens, the last 4 of row 0 padding, token types 0 then 1.
EncoderBatch inputs(const ModelConfig& config, int64_t batch = 3, int64_t length = 20) {
  torch::manual_seed(7);
  EncoderBatch in;
  in.input_ids = torch::randint(1, config.vocab_size, {batch, length}, torch::kLong);
  in.token_type_ids = (torch::arange(length) >= length / 2).to(torch::kLong).expand({batch, length}).contiguous();
  in.attention_mask = torch::ones({batch, length}, torch::kLong);
  using torch::indexing::Slice;
  in.attention_mask.index_put_({0, Slice(length - 4, torch::indexing::None)}, 0);
  in.input_ids.index_put_({0, Slice(length - 4, torch::indexing::None)}, 0);
  return in;
}

EncoderOutput run(QaModel& model, const EncoderBatch& in, bool fast) {
  torch::NoGradGuard no_grad;
  set_fast_cpu_path(fast);
  auto out = model.forward(in);
  set_fast_cpu_path(true);
  return out;
}

double parameter_count(const QaModel& model) {
  double count = 0;
  for (const auto& p : model.parameters()) count += static_cast<double>(p.numel());
  return count;
}

// The rel_embeddings row c2p reads for query i and key j, from the kernel's table.
int64_t c2p_row(const RelativePositions& p, int64_t i, int64_t j) {
  return p.c2p_table[j - i + p.length - 1].item<int64_t>() + p.first;
}

TEST(DebertaV2, RelativePositionsAreLogBucketedAsHf) {
  // DeBERTa-v3-base: 256 buckets, max_relative_positions 512; rows span + bucket(i - j).
  RelativeAttention v3;
  v3.enabled = v3.c2p = v3.p2c = true;
  v3.position_buckets = 256;
  v3.max_relative_positions = 512;
  const RelativePositions p = relative_positions(v3, 400);
  // bucket(d) = d for |d| <= 128, then ceil(log(|d| / 128) / log(511 / 128) * 127) + 128 (values of HF's function).
  const std::pair<int64_t, int64_t> buckets[] = {{0, 0},     {1, 1},     {-1, -1},   {127, 127}, {128, 128},
                                                 {129, 129}, {-129, -129}, {150, 143}, {189, 164}, {200, 169},
                                                 {-200, -169}, {383, 229}};
  for (const auto& [distance, bucket] : buckets) {
    const int64_t i = distance >= 0 ? distance : 0, j = distance >= 0 ? 0 : -distance;
    EXPECT_EQ(c2p_row(p, i, j), 256 + bucket) << "i - j = " << distance;
    // p2c reads clamp(-bucket(j - i) + span): the same row, as the buckets are odd.
    EXPECT_EQ(p.p2c_table[j - i + p.length - 1].item<int64_t>() + p.first, 256 + bucket) << distance;
  }
  // A 400-token window reaches rows 256 +- 233 only: the products compute 467 of the 512 columns.
  EXPECT_EQ(p.first, 256 - 233);
  EXPECT_EQ(p.columns, 467);
  // HF's [T,T] gather index, rebuilt from the table.
  const auto index = p.pair_index(p.c2p_table);
  EXPECT_EQ(index[189][0].item<int64_t>(), 256 + 164);
  EXPECT_EQ(index[0][189].item<int64_t>(), 256 - 164);
  EXPECT_EQ(index[250][250].item<int64_t>(), 256);
  // The small config's 8 buckets over 32 positions: 5 -> 5, 7 -> 5, 10 -> 6, 20 -> 7.
  RelativeAttention small = v3;
  small.position_buckets = 8;
  small.max_relative_positions = 32;
  const RelativePositions q = relative_positions(small, 24);
  for (const auto& [distance, bucket] : {std::pair{3, 3}, {5, 5}, {7, 5}, {10, 6}, {20, 7}})
    EXPECT_EQ(c2p_row(q, distance, 0), 8 + bucket) << distance;
  // Without buckets the distance itself, clamped to the table.
  RelativeAttention plain = v3;
  plain.position_buckets = -1;
  plain.max_relative_positions = 6;
  const RelativePositions r = relative_positions(plain, 10);
  EXPECT_EQ(c2p_row(r, 3, 0), 6 + 3);
  EXPECT_EQ(c2p_row(r, 9, 0), 11);  // clamp(9 + 6, 0, 11)
  EXPECT_EQ(c2p_row(r, 0, 9), 0);   // clamp(-9 + 6, 0, 11)
}

// HF's variants of the layer: each must run the same on the oneDNN kernel and the reference ops, count
// its parameters by the family's formula and train.
class DebertaV2Variant : public ::testing::TestWithParam<const char*> {};

TEST_P(DebertaV2Variant, KernelEqualsReferenceAndTheFormulaCountsItsParameters) {
  const auto changes = nlohmann::json::parse(GetParam());
  const ModelConfig config = deberta_config(changes);
  auto model = random_model(config, 3);
  EXPECT_EQ(parameter_count(*model), model->family().parameters(config));
  const auto in = inputs(config);
  const auto fast = run(*model, in, true), reference = run(*model, in, false);
  ASSERT_EQ(fast.hidden_states.size(), 3u);
  for (size_t i = 0; i < fast.hidden_states.size(); ++i)
    EXPECT_LE(max_diff(fast.hidden_states[i], reference.hidden_states[i]), 1e-5) << i;
  EXPECT_LE(max_diff(fast.start_logits, reference.start_logits), 1e-5);
  // Padding does not reach the real tokens.
  auto cut = [](const torch::Tensor& t) { return t.slice(1, 0, 16); };
  const auto shorter = run(*model, {cut(in.input_ids), cut(in.token_type_ids), cut(in.attention_mask)}, true);
  EXPECT_LE(max_diff(cut(fast.hidden_states.back()).slice(0, 0, 1), shorter.hidden_states.back().slice(0, 0, 1)),
            1e-5);
  // Training: dropout and gradients on every parameter the QA path reaches.
  model->train();
  auto out = model->forward(in);
  (out.start_logits.sum() + out.end_logits.sum()).backward();
  const bool relative = config.boolean("relative_attention");
  for (const auto& item : model->named_parameters()) {
    if (!relative && item.key().find("encoder.LayerNorm") != std::string::npos) continue;  // HF keeps it unused
    EXPECT_TRUE(item.value().grad().defined()) << item.key();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Configs, DebertaV2Variant,
    ::testing::Values(R"({})", R"({"share_att_key": false})", R"({"pos_att_type": ["c2p"]})",
                      R"({"pos_att_type": "p2c"})", R"({"position_buckets": -1, "max_relative_positions": 6})",
                      R"({"norm_rel_ebd": "none"})", R"({"relative_attention": false, "position_biased_input": true})",
                      R"({"embedding_size": 8, "position_biased_input": true, "type_vocab_size": 2})",
                      R"({"conv_kernel_size": 3, "conv_act": "gelu"})", R"({"conv_kernel_size": 3, "conv_groups": 2})",
                      R"({"hidden_act": "gelu_new"})"),
    [](const ::testing::TestParamInfo<const char*>& info) { return "variant" + std::to_string(info.index); });

TEST(DebertaV2, TokenTypesCountOnlyWithTokenTypeEmbeddings) {
  for (int64_t types : {0, 2}) {
    const ModelConfig config = deberta_config({{"type_vocab_size", types}});
    auto model = random_model(config, 5);
    auto in = inputs(config);
    auto zeros = in;
    zeros.token_type_ids = torch::Tensor();
    const double diff = max_diff(run(*model, in, true).start_logits, run(*model, zeros, true).start_logits);
    if (types == 0) {
      EXPECT_EQ(diff, 0.0) << "type_vocab_size 0: the ids are ignored, as HF does";
      validate_encoder_inputs(config, in);  // ... and not refused
    } else {
      EXPECT_GT(diff, 1e-4);
    }
  }
}

TEST(DebertaV2, EmbeddingsAreZeroAtPaddingAndThePaddingRowIsZeroAtInit) {
  const ModelConfig config = deberta_config();
  auto model = random_model(config, 6);
  auto out = run(*model, inputs(config), true);
  EXPECT_EQ(out.hidden_states[0][0].slice(0, 16).abs().max().item<double>(), 0.0);
  torch::manual_seed(1);
  auto fresh = create_model(config);
  EXPECT_EQ(fresh->named_parameters()["deberta.embeddings.word_embeddings.weight"][0].abs().max().item<double>(), 0.0);
}

TEST(DebertaV2, PublishedBaseShapeCountsTheRelativeProducts) {
  const ModelFamily& family = family_publishing("microsoft/deberta-v3-base");
  const ModelConfig config = config_from_json(family.published.at("microsoft/deberta-v3-base"), "v3-base");
  // HF's DebertaV2ForQuestionAnswering on this config: 98.4M embedding and 85.1M layer parameters.
  EXPECT_EQ(family.parameters(config), 183833090.0);
  // A layer = BERT's linears and QK^T/PV, plus c2p and p2c over the rows the window reaches.
  for (int64_t tokens : {48, 190, 384}) {
    const double columns = static_cast<double>(deberta_v2_relative_columns(config, tokens));
    const double expected = 12 * (transformer_layer_flops(config, tokens) + 2 * 2.0 * tokens * columns * 768) +
                            2.0 * tokens * 768 * 2;
    EXPECT_DOUBLE_EQ(family.forward_flops(config, tokens), expected) << tokens;
  }
  EXPECT_EQ(deberta_v2_relative_columns(config, 190), 2 * 164 + 1);
  EXPECT_EQ(deberta_v2_relative_columns(config, 48), 2 * 47 + 1);
}

TEST(DebertaV2, UnsupportedSettingsAreRefusedNamingTheKey) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"pos_att_type": "c2p|x2y"})", "'pos_att_type' has unknown attention type 'x2y'"},
      {R"({"conv_kernel_size": 2})", "'conv_kernel_size' must be odd"},
      {R"({"conv_kernel_size": 3, "conv_groups": 3})", "'conv_groups' must divide hidden_size"},
      {R"({"conv_kernel_size": 3, "conv_act": "softsign"})", "'conv_act' has unknown activation"},
      {R"({"position_buckets": 1})", "'position_buckets' must be at least 2"},
      {R"({"norm_rel_ebd": "batch_norm"})", "'norm_rel_ebd' has unknown value"},
      {R"({"attention_head_size": 8})", "'attention_head_size' differs"},
      {R"({"type_vocab_size": -1})", "'type_vocab_size' must be positive"},
      {R"({"pos_att_type": 3})", "'pos_att_type' has invalid value 3"}};
  for (const auto& [changes, message] : cases) {
    try {
      deberta_config(nlohmann::json::parse(changes));
      ADD_FAILURE() << changes << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("deberta test config"), std::string::npos) << e.what();
    }
  }
}

}  // namespace deberta_test
