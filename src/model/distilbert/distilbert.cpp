#include "model/distilbert/distilbert.hpp"

#include <cmath>

#include "layerprobe/core/common.hpp"
#include "layerprobe/model/family.hpp"

namespace layerprobe {

namespace nn = torch::nn;

torch::Tensor sinusoidal_position_table(int64_t positions, int64_t dim) {
  auto table = torch::empty({positions, dim}, torch::kDouble);
  auto values = table.accessor<double, 2>();
  for (int64_t pos = 0; pos < positions; ++pos)
    for (int64_t j = 0; j < dim; ++j) {
      const double angle = static_cast<double>(pos) /
                           std::pow(10000.0, 2.0 * static_cast<double>(j / 2) / static_cast<double>(dim));
      values[pos][j] = j % 2 == 0 ? std::sin(angle) : std::cos(angle);
    }
  return table.to(torch::kFloat);
}

DistilBertEmbeddingsImpl::DistilBertEmbeddingsImpl(const ModelConfig& config)
    : sinusoidal_(config.boolean("sinusoidal_pos_embds")), dropout_(config.number("dropout")) {
  word_embeddings = register_module(
      "word_embeddings", nn::Embedding(nn::EmbeddingOptions(config.vocab_size, config.hidden_size).padding_idx(0)));
  position_embeddings =
      register_module("position_embeddings", nn::Embedding(config.max_position_embeddings, config.hidden_size));
  LayerNorm = register_module("LayerNorm", make_layer_norm(config.hidden_size, config.layer_norm_eps));
}

void DistilBertEmbeddingsImpl::init_sinusoids() {
  if (!sinusoidal_) return;
  torch::NoGradGuard no_grad;
  auto& weight = position_embeddings->weight;
  weight.copy_(sinusoidal_position_table(weight.size(0), weight.size(1)));
  weight.set_requires_grad(false);
}

torch::Tensor DistilBertEmbeddingsImpl::forward(const torch::Tensor& input_ids) {
  auto position_ids = torch::arange(input_ids.size(1), input_ids.options()).unsqueeze(0).expand_as(input_ids);
  auto embeddings = word_embeddings(input_ids) + position_embeddings(position_ids);
  return torch::dropout(LayerNorm(embeddings), dropout_, is_training());
}

MultiHeadSelfAttentionImpl::MultiHeadSelfAttentionImpl(const ModelConfig& config) {
  const int64_t dim = config.hidden_size;
  q_lin = register_module("q_lin", nn::Linear(dim, dim));
  k_lin = register_module("k_lin", nn::Linear(dim, dim));
  v_lin = register_module("v_lin", nn::Linear(dim, dim));
  out_lin = register_module("out_lin", nn::Linear(dim, dim));
}

DistilFfnImpl::DistilFfnImpl(const ModelConfig& config) {
  lin1 = register_module("lin1", nn::Linear(config.hidden_size, config.intermediate_size));
  lin2 = register_module("lin2", nn::Linear(config.intermediate_size, config.hidden_size));
}

TransformerBlockImpl::TransformerBlockImpl(const ModelConfig& config) {
  attention = register_module("attention", MultiHeadSelfAttention(config));
  sa_layer_norm = register_module("sa_layer_norm", make_layer_norm(config.hidden_size, config.layer_norm_eps));
  ffn = register_module("ffn", DistilFfn(config));
  output_layer_norm =
      register_module("output_layer_norm", make_layer_norm(config.hidden_size, config.layer_norm_eps));
  LayerStyle style;
  style.activation = parse_activation(config.hidden_act, config.source);
  style.heads = config.num_attention_heads;
  style.scale_query_first = true;
  // Dropout on the attention weights and after lin2; none on out_lin's output.
  style.attention_dropout = config.number("attention_dropout");
  style.output_dropout = config.number("dropout");
  kernel_ = std::make_unique<TransformerLayerKernel>(
      LayerParts{attention->q_lin, attention->k_lin, attention->v_lin, attention->out_lin, sa_layer_norm, ffn->lin1,
                 ffn->lin2, output_layer_norm},
      style);
}

torch::Tensor TransformerBlockImpl::forward(const torch::Tensor& hidden_states, const torch::Tensor& additive_mask) {
  return kernel_->forward(hidden_states, additive_mask, is_training());
}

DistilBertModelImpl::DistilBertModelImpl(const ModelConfig& config) {
  embeddings = register_module("embeddings", DistilBertEmbeddings(config));
  auto transformer = std::make_shared<nn::Module>();
  nn::ModuleList list;
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    layers.emplace_back(config);
    list->push_back(layers.back());
  }
  transformer->register_module("layer", list);
  register_module("transformer", transformer);
}

DistilBertForQuestionAnswering::DistilBertForQuestionAnswering(const ModelConfig& config) : QaModel(config) {
  distilbert = register_module("distilbert", DistilBertModel(this->config()));
  register_qa_head();
  qa_dropout = this->config().number("qa_dropout");
  init_weights();
}

std::unique_ptr<LayerInputs> DistilBertForQuestionAnswering::layer_inputs(const EncoderBatch& batch) {
  auto inputs = std::make_unique<LayerInputs>();
  // scores.masked_fill_(mask == 0, -inf): adding -inf there gives the same scores.
  inputs->additive_mask = additive_attention_mask(
      batch.attention_mask, distilbert->embeddings->LayerNorm->weight.scalar_type(),
      -std::numeric_limits<double>::infinity());
  return inputs;
}

torch::Tensor DistilBertForQuestionAnswering::embed(const EncoderBatch& batch, const LayerInputs&) {
  return distilbert->embeddings(batch.input_ids);
}

torch::Tensor DistilBertForQuestionAnswering::layer(int64_t index, const torch::Tensor& hidden,
                                                    const LayerInputs& inputs) {
  return distilbert->layers[static_cast<size_t>(index)](hidden, inputs.additive_mask);
}

void DistilBertForQuestionAnswering::init_family_weights() { distilbert->embeddings->init_sinusoids(); }

namespace {

void validate_distilbert(const ModelConfig& config) {
  for (const char* key : {"dropout", "attention_dropout", "qa_dropout"}) config.probability(key);
  if (config.hidden_act != "gelu" && config.hidden_act != "relu")
    throw Error(config.source + ": key 'activation' must be \"gelu\" or \"relu\" for DistilBERT, found \"" +
                config.hidden_act + "\"");
  config.boolean("sinusoidal_pos_embds");
}

double distilbert_parameters(const ModelConfig& c) {
  const double H = static_cast<double>(c.hidden_size);
  const double embeddings =
      (static_cast<double>(c.vocab_size) + static_cast<double>(c.max_position_embeddings)) * H + 2 * H;
  return embeddings + static_cast<double>(c.num_hidden_layers) * transformer_layer_parameters(c) + 2 * H + 2;
}

double distilbert_flops(const ModelConfig& c, int64_t tokens) {
  const double T = static_cast<double>(tokens), H = static_cast<double>(c.hidden_size);
  return static_cast<double>(c.num_hidden_layers) * transformer_layer_flops(c, tokens) + 2.0 * T * H * 2;
}

ModelFamily make_distilbert_family() {
  ModelFamily f;
  f.int8_encoder = true;  // TransformerLayerKernel's layers
  f.model_type = "distilbert";
  f.run_squad_flag_sets_casing = true;
  f.base_prefix = "distilbert";
  f.tokenizer = "wordpiece";
  f.example = "distilbert-base-uncased";
  f.architecture = "DistilBertForQuestionAnswering";
  f.keys.hidden_size = "dim";
  f.keys.num_hidden_layers = "n_layers";
  f.keys.num_attention_heads = "n_heads";
  f.keys.intermediate_size = "hidden_dim";
  f.keys.hidden_act = "activation";
  f.keys.type_vocab_size = "";
  f.keys.layer_norm_eps = "";
  f.fixed.type_vocab_size = 0;
  f.fixed.layer_norm_eps = 1e-12;
  // transformers 2.5.1's DistilBertConfig defaults.
  f.defaults = {{"vocab_size", 30522},   {"max_position_embeddings", 512}, {"sinusoidal_pos_embds", false},
                {"n_layers", 6},         {"n_heads", 12},                  {"dim", 768},
                {"hidden_dim", 3072},    {"dropout", 0.1},                 {"attention_dropout", 0.1},
                {"activation", "gelu"},  {"initializer_range", 0.02},      {"tie_weights_", true},
                {"qa_dropout", 0.1},     {"seq_classif_dropout", 0.2}};
  f.published = {{"distilbert-base-uncased",
                  {{"model_type", "distilbert"}, {"architectures", {"DistilBertForMaskedLM"}}, {"dim", 768},
                   {"n_layers", 6}, {"n_heads", 12}, {"hidden_dim", 3072}, {"vocab_size", 30522},
                   {"sinusoidal_pos_embds", false}, {"activation", "gelu"}}}};
  f.takes_token_type_ids = false;
  f.validate = validate_distilbert;
  f.create = [](const ModelConfig& config) { return std::make_shared<DistilBertForQuestionAnswering>(config); };
  f.parameters = distilbert_parameters;
  f.forward_flops = distilbert_flops;
  return f;
}

}  // namespace

const ModelFamily& distilbert_family() {
  static const ModelFamily family = make_distilbert_family();
  return family;
}

}  // namespace layerprobe
