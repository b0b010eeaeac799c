#include "model/bert/bert.hpp"

#include "layerprobe/core/common.hpp"
#include "layerprobe/model/family.hpp"

namespace layerprobe {

namespace nn = torch::nn;

torch::Tensor position_ids_from_input_ids(const torch::Tensor& input_ids, int64_t padding_idx) {
  auto mask = input_ids.ne(padding_idx).to(torch::kInt);
  auto incremental = torch::cumsum(mask, 1).to(torch::kInt) * mask;
  return incremental.to(torch::kLong) + padding_idx;
}

BertEmbeddingsImpl::BertEmbeddingsImpl(const ModelConfig& config, BertPositions positions)
    : positions_(positions), dropout_(config.number("hidden_dropout_prob")) {
  const int64_t hidden = config.hidden_size;
  auto embedding = [&](int64_t rows, bool padded) {
    auto options = nn::EmbeddingOptions(rows, hidden);
    if (padded) options.padding_idx(positions.padding_idx);
    return nn::Embedding(options);
  };
  word_embeddings = register_module("word_embeddings", embedding(config.vocab_size, true));
  // RoBERTa's position table has a padding row too.
  position_embeddings =
      register_module("position_embeddings", embedding(config.max_position_embeddings, positions.from_padding));
  token_type_embeddings = register_module("token_type_embeddings", embedding(config.type_vocab_size, false));
  LayerNorm = register_module("LayerNorm", make_layer_norm(hidden, config.layer_norm_eps));
}

torch::Tensor BertEmbeddingsImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids) {
  auto position_ids = positions_.from_padding
                          ? position_ids_from_input_ids(input_ids, positions_.padding_idx)
                          : torch::arange(input_ids.size(1), input_ids.options()).unsqueeze(0).expand_as(input_ids);
  auto embeddings = word_embeddings(input_ids) + position_embeddings(position_ids) +
                    token_type_embeddings(token_types_or_zeros(token_type_ids, input_ids));
  return torch::dropout(LayerNorm(embeddings), dropout_, is_training());
}

BertSelfAttentionImpl::BertSelfAttentionImpl(const ModelConfig& config) {
  const int64_t hidden = config.hidden_size;
  query = register_module("query", nn::Linear(hidden, hidden));
  key = register_module("key", nn::Linear(hidden, hidden));
  value = register_module("value", nn::Linear(hidden, hidden));
}

BertDenseNormImpl::BertDenseNormImpl(const ModelConfig& config, int64_t in_features) {
  dense = register_module("dense", nn::Linear(in_features, config.hidden_size));
  LayerNorm = register_module("LayerNorm", make_layer_norm(config.hidden_size, config.layer_norm_eps));
}

BertAttentionImpl::BertAttentionImpl(const ModelConfig& config) {
  self = register_module("self", BertSelfAttention(config));
  output = register_module("output", BertDenseNorm(config, config.hidden_size));
}

BertIntermediateImpl::BertIntermediateImpl(const ModelConfig& config) {
  dense = register_module("dense", nn::Linear(config.hidden_size, config.intermediate_size));
}

BertLayerImpl::BertLayerImpl(const ModelConfig& config) {
  attention = register_module("attention", BertAttention(config));
  intermediate = register_module("intermediate", BertIntermediate(config));
  output = register_module("output", BertDenseNorm(config, config.intermediate_size));
  LayerStyle style;
  style.activation = parse_activation(config.hidden_act, config.source);
  style.heads = config.num_attention_heads;
  // BertSelfAttention drops out the probabilities; BertSelfOutput and
  // BertOutput drop out their projections with hidden_dropout_prob.
  style.attention_dropout = config.number("attention_probs_dropout_prob");
  style.attention_output_dropout = style.output_dropout = config.number("hidden_dropout_prob");
  const auto& self = attention->self;
  kernel_ = std::make_unique<TransformerLayerKernel>(
      LayerParts{self->query, self->key, self->value, attention->output->dense, attention->output->LayerNorm,
                 intermediate->dense, output->dense, output->LayerNorm},
      style);
}

torch::Tensor BertLayerImpl::forward(const torch::Tensor& hidden_states, const torch::Tensor& additive_mask) {
  return kernel_->forward(hidden_states, additive_mask, is_training());
}

BertModelImpl::BertModelImpl(const ModelConfig& config, BertPositions positions, bool add_pooling_layer) {
  embeddings = register_module("embeddings", BertEmbeddings(config, positions));
  auto encoder = std::make_shared<nn::Module>();
  nn::ModuleList list;
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    layers.emplace_back(config);
    list->push_back(layers.back());
  }
  encoder->register_module("layer", list);
  register_module("encoder", encoder);
  if (!add_pooling_layer) return;
  auto pooler = std::make_shared<nn::Module>();
  pooler_dense = pooler->register_module("dense", nn::Linear(config.hidden_size, config.hidden_size));
  register_module("pooler", pooler);
}

BertForQuestionAnswering::BertForQuestionAnswering(const ModelConfig& config, const std::string& base_prefix,
                                                   BertPositions positions, bool add_pooling_layer)
    : QaModel(config), prefix_(base_prefix) {
  bert = register_module(base_prefix, BertModel(this->config(), positions, add_pooling_layer));
  register_qa_head();
  init_weights();
}

std::unique_ptr<LayerInputs> BertForQuestionAnswering::layer_inputs(const EncoderBatch& batch) {
  auto inputs = std::make_unique<LayerInputs>();
  // get_extended_attention_mask: (1 - mask) * -10000 in the parameters' dtype.
  inputs->additive_mask = additive_attention_mask(
      batch.attention_mask, bert->embeddings->word_embeddings->weight.scalar_type(), -10000.0);
  return inputs;
}

torch::Tensor BertForQuestionAnswering::embed(const EncoderBatch& batch, const LayerInputs&) {
  return bert->embeddings(batch.input_ids, batch.token_type_ids);
}

torch::Tensor BertForQuestionAnswering::layer(int64_t index, const torch::Tensor& hidden, const LayerInputs& inputs) {
  return bert->layers[static_cast<size_t>(index)](hidden, inputs.additive_mask);
}

namespace {

void validate_bert_dropouts(const ModelConfig& config) {
  for (const char* key : {"hidden_dropout_prob", "attention_probs_dropout_prob"}) config.probability(key);
}

// transformers 2.5.1's BertConfig defaults (RobertaConfig inherits them).
nlohmann::json bert_config_defaults() {
  return {{"vocab_size", 30522},          {"hidden_size", 768},
          {"num_hidden_layers", 12},      {"num_attention_heads", 12},
          {"intermediate_size", 3072},    {"hidden_act", "gelu"},
          {"hidden_dropout_prob", 0.1},   {"attention_probs_dropout_prob", 0.1},
          {"max_position_embeddings", 512}, {"type_vocab_size", 2},
          {"initializer_range", 0.02},    {"layer_norm_eps", 1e-12}};
}

double bert_parameters(const ModelConfig& c) {
  const double H = static_cast<double>(c.hidden_size);
  const double embeddings = (static_cast<double>(c.vocab_size) + static_cast<double>(c.max_position_embeddings) +
                             static_cast<double>(c.type_vocab_size)) * H + 2 * H;
  const double layers = static_cast<double>(c.num_hidden_layers) * transformer_layer_parameters(c);
  return embeddings + layers + H * H + H + 2 * H + 2;
}

double bert_forward_flops(const ModelConfig& c, int64_t tokens) {
  const double T = static_cast<double>(tokens), H = static_cast<double>(c.hidden_size);
  return static_cast<double>(c.num_hidden_layers) * transformer_layer_flops(c, tokens) + 2.0 * T * H * 2;
}

ModelFamily make_bert_family() {
  ModelFamily f;
  f.int8_encoder = true;  // TransformerLayerKernel's layers
  f.model_type = "bert";
  f.run_squad_flag_sets_casing = true;
  f.base_prefix = "bert";
  f.tokenizer = "wordpiece";
  f.example = "bert-base-uncased";
  f.architecture = "BertForQuestionAnswering";
  f.defaults = bert_config_defaults();
  auto shape = [](int64_t hidden, int64_t layers, int64_t heads) {
    return nlohmann::json{{"model_type", "bert"},       {"architectures", {"BertForMaskedLM"}},
                          {"hidden_size", hidden},      {"num_hidden_layers", layers},
                          {"num_attention_heads", heads}, {"intermediate_size", 4 * hidden},
                          {"vocab_size", 30522},        {"pad_token_id", 0}};
  };
  f.published = {{"bert-base-uncased", shape(768, 12, 12)}, {"bert-large-uncased", shape(1024, 24, 16)}};
  f.validate = validate_bert_dropouts;
  f.create = [](const ModelConfig& config) { return std::make_shared<BertForQuestionAnswering>(config); };
  f.parameters = bert_parameters;
  f.forward_flops = bert_forward_flops;
  return f;
}

}  // namespace

const ModelFamily& bert_family() {
  static const ModelFamily family = make_bert_family();
  return family;
}

}  // namespace layerprobe
