#include "model/albert/albert.hpp"

#include "layerprobe/core/common.hpp"
#include "layerprobe/model/family.hpp"

namespace layerprobe {

namespace nn = torch::nn;

int64_t layer_group_index(int64_t layer, int64_t num_layers, int64_t num_groups) {
  return static_cast<int64_t>(static_cast<double>(layer) /
                              (static_cast<double>(num_layers) / static_cast<double>(num_groups)));
}

AlbertEmbeddingsImpl::AlbertEmbeddingsImpl(const ModelConfig& config)
    : dropout(config.number("hidden_dropout_prob")) {
  const int64_t size = config.integer("embedding_size");
  word_embeddings =
      register_module("word_embeddings", nn::Embedding(nn::EmbeddingOptions(config.vocab_size, size).padding_idx(0)));
  position_embeddings = register_module("position_embeddings", nn::Embedding(config.max_position_embeddings, size));
  token_type_embeddings = register_module("token_type_embeddings", nn::Embedding(config.type_vocab_size, size));
  LayerNorm = register_module("LayerNorm", make_layer_norm(size, config.layer_norm_eps));
}

torch::Tensor AlbertEmbeddingsImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids) {
  auto position_ids = torch::arange(input_ids.size(1), input_ids.options()).unsqueeze(0).expand_as(input_ids);
  auto embeddings = word_embeddings(input_ids) + position_embeddings(position_ids) +
                    token_type_embeddings(token_types_or_zeros(token_type_ids, input_ids));
  return torch::dropout(LayerNorm(embeddings), dropout, is_training());
}

AlbertAttentionImpl::AlbertAttentionImpl(const ModelConfig& config) {
  const int64_t hidden = config.hidden_size;
  query = register_module("query", nn::Linear(hidden, hidden));
  key = register_module("key", nn::Linear(hidden, hidden));
  value = register_module("value", nn::Linear(hidden, hidden));
  dense = register_module("dense", nn::Linear(hidden, hidden));
  LayerNorm = register_module("LayerNorm", make_layer_norm(hidden, config.layer_norm_eps));
}

AlbertLayerImpl::AlbertLayerImpl(const ModelConfig& config) {
  full_layer_layer_norm =
      register_module("full_layer_layer_norm", make_layer_norm(config.hidden_size, config.layer_norm_eps));
  attention = register_module("attention", AlbertAttention(config));
  ffn = register_module("ffn", nn::Linear(config.hidden_size, config.intermediate_size));
  ffn_output = register_module("ffn_output", nn::Linear(config.intermediate_size, config.hidden_size));
  LayerStyle style;
  style.activation = parse_activation(config.hidden_act, config.source);
  style.heads = config.num_attention_heads;
  // AlbertAttention drops out both the probabilities and the projection with
  // attention_probs_dropout_prob; AlbertLayer's feed-forward has no dropout.
  style.attention_dropout = style.attention_output_dropout = config.number("attention_probs_dropout_prob");
  kernel_ = std::make_unique<TransformerLayerKernel>(
      LayerParts{attention->query, attention->key, attention->value, attention->dense, attention->LayerNorm, ffn,
                 ffn_output, full_layer_layer_norm},
      style);
}

torch::Tensor AlbertLayerImpl::forward(const torch::Tensor& hidden_states, const torch::Tensor& additive_mask) {
  return kernel_->forward(hidden_states, additive_mask, is_training());
}

AlbertLayerGroupImpl::AlbertLayerGroupImpl(const ModelConfig& config) {
  nn::ModuleList list;
  for (int64_t j = 0; j < config.integer("inner_group_num"); ++j) {
    layers.emplace_back(config);
    list->push_back(layers.back());
  }
  register_module("albert_layers", list);
}

torch::Tensor AlbertLayerGroupImpl::forward(torch::Tensor hidden_states, const torch::Tensor& additive_mask) {
  for (auto& layer : layers) hidden_states = layer(hidden_states, additive_mask);
  return hidden_states;
}

AlbertTransformerImpl::AlbertTransformerImpl(const ModelConfig& config) : num_layers(config.num_hidden_layers) {
  embedding_hidden_mapping_in = register_module(
      "embedding_hidden_mapping_in", nn::Linear(config.integer("embedding_size"), config.hidden_size));
  nn::ModuleList list;
  for (int64_t g = 0; g < config.integer("num_hidden_groups"); ++g) {
    groups.emplace_back(config);
    list->push_back(groups.back());
  }
  register_module("albert_layer_groups", list);
}

torch::Tensor AlbertTransformerImpl::step(int64_t index, const torch::Tensor& hidden,
                                          const torch::Tensor& additive_mask) {
  const auto group = layer_group_index(index, num_layers, static_cast<int64_t>(groups.size()));
  return groups[static_cast<size_t>(group)](hidden, additive_mask);
}

AlbertModelImpl::AlbertModelImpl(const ModelConfig& config) {
  embeddings = register_module("embeddings", AlbertEmbeddings(config));
  encoder = register_module("encoder", AlbertTransformer(config));
  pooler = register_module("pooler", nn::Linear(config.hidden_size, config.hidden_size));
}

AlbertForQuestionAnswering::AlbertForQuestionAnswering(const ModelConfig& config) : QaModel(config) {
  albert = register_module("albert", AlbertModel(this->config()));
  register_qa_head();
  init_weights();
}

std::unique_ptr<LayerInputs> AlbertForQuestionAnswering::layer_inputs(const EncoderBatch& batch) {
  auto inputs = std::make_unique<LayerInputs>();
  inputs->additive_mask = additive_attention_mask(batch.attention_mask, albert->pooler->weight.scalar_type(), -10000.0);
  return inputs;
}

torch::Tensor AlbertForQuestionAnswering::embed(const EncoderBatch& batch, const LayerInputs&) {
  return linear(albert->encoder->embedding_hidden_mapping_in, albert->embeddings(batch.input_ids, batch.token_type_ids));
}

torch::Tensor AlbertForQuestionAnswering::layer(int64_t index, const torch::Tensor& hidden,
                                                const LayerInputs& inputs) {
  return albert->encoder->step(index, hidden, inputs.additive_mask);
}

namespace {

void validate_albert(const ModelConfig& config) {
  for (const char* key : {"embedding_size", "num_hidden_groups", "inner_group_num"})
    if (config.integer(key) <= 0)
      throw Error(config.source + ": key '" + key + "' must be positive, found " + std::to_string(config.integer(key)));
  for (const char* key : {"hidden_dropout_prob", "attention_probs_dropout_prob"}) config.probability(key);
}

double albert_flops(const ModelConfig& c, int64_t tokens) {
  const double T = static_cast<double>(tokens);
  const double projection = 2.0 * T * static_cast<double>(c.integer("embedding_size")) * c.hidden_size;
  return projection + c.num_hidden_layers * transformer_layer_flops(c, tokens) + 2.0 * T * c.hidden_size * 2;
}

double albert_parameters(const ModelConfig& c) {
  const double E = static_cast<double>(c.integer("embedding_size")), H = static_cast<double>(c.hidden_size);
  const double embeddings =
      (static_cast<double>(c.vocab_size) + static_cast<double>(c.max_position_embeddings) + c.type_vocab_size) * E +
      2 * E;
  const double layers = static_cast<double>(c.integer("num_hidden_groups")) *
                        static_cast<double>(c.integer("inner_group_num")) * transformer_layer_parameters(c);
  return embeddings + E * H + H + layers + H * H + H + 2 * H + 2;
}

ModelFamily make_albert_family() {
  ModelFamily f;
  f.int8_encoder = true;  // TransformerLayerKernel's layers
  f.model_type = "albert";
  f.run_squad_flag_sets_casing = true;
  f.base_prefix = "albert";
  f.tokenizer = "sentencepiece";
  f.example = "albert-base-v2";
  f.architecture = "AlbertForQuestionAnswering";
  // transformers 2.5.1's AlbertConfig defaults.
  f.defaults = {{"vocab_size", 30000},         {"embedding_size", 128},
                {"hidden_size", 4096},         {"num_hidden_layers", 12},
                {"num_hidden_groups", 1},      {"num_attention_heads", 64},
                {"intermediate_size", 16384},  {"inner_group_num", 1},
                {"hidden_act", "gelu_new"},    {"hidden_dropout_prob", 0.0},
                {"attention_probs_dropout_prob", 0.0}, {"max_position_embeddings", 512},
                {"type_vocab_size", 2},        {"initializer_range", 0.02},
                {"layer_norm_eps", 1e-12},     {"classifier_dropout_prob", 0.1}};
  auto shape = [](int64_t hidden, int64_t heads, int64_t intermediate) {
    return nlohmann::json{{"model_type", "albert"}, {"architectures", {"AlbertForMaskedLM"}},
                          {"hidden_size", hidden}, {"num_attention_heads", heads},
                          {"intermediate_size", intermediate}, {"embedding_size", 128},
                          {"hidden_act", "gelu_new"}, {"bos_token_id", 2}, {"eos_token_id", 3},
                          {"pad_token_id", 0}, {"classifier_dropout_prob", 0.1}};
  };
  f.published = {{"albert-base-v2", shape(768, 12, 3072)},
                 {"albert-large-v2", shape(1024, 16, 4096)},
                 {"albert-xxlarge-v2", shape(4096, 64, 16384)}};
  f.published["albert-large-v2"]["num_hidden_layers"] = 24;
  f.validate = validate_albert;
  f.create = [](const ModelConfig& config) { return std::make_shared<AlbertForQuestionAnswering>(config); };
  f.parameters = albert_parameters;
  f.forward_flops = albert_flops;
  return f;
}

}  // namespace

const ModelFamily& albert_family() {
  static const ModelFamily family = make_albert_family();
  return family;
}

}  // namespace layerprobe
