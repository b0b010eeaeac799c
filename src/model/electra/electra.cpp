#include "model/electra/electra.hpp"

#include "layerprobe/core/common.hpp"
#include "layerprobe/model/family.hpp"

namespace layerprobe {

namespace nn = torch::nn;

ElectraEmbeddingsImpl::ElectraEmbeddingsImpl(const ModelConfig& config)
    : dropout_(config.number("hidden_dropout_prob")) {
  const int64_t size = config.integer("embedding_size");
  word_embeddings = register_module(
      "word_embeddings",
      nn::Embedding(nn::EmbeddingOptions(config.vocab_size, size).padding_idx(config.integer("pad_token_id"))));
  position_embeddings = register_module("position_embeddings", nn::Embedding(config.max_position_embeddings, size));
  token_type_embeddings = register_module("token_type_embeddings", nn::Embedding(config.type_vocab_size, size));
  LayerNorm = register_module("LayerNorm", make_layer_norm(size, config.layer_norm_eps));
}

torch::Tensor ElectraEmbeddingsImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids) {
  auto position_ids = torch::arange(input_ids.size(1), input_ids.options()).unsqueeze(0).expand_as(input_ids);
  auto embeddings = word_embeddings(input_ids) + token_type_embeddings(token_types_or_zeros(token_type_ids, input_ids));
  embeddings = embeddings + position_embeddings(position_ids);
  return torch::dropout(LayerNorm(embeddings), dropout_, is_training());
}

ElectraModelImpl::ElectraModelImpl(const ModelConfig& config) {
  embeddings = register_module("embeddings", ElectraEmbeddings(config));
  const int64_t size = config.integer("embedding_size");
  if (size != config.hidden_size)
    embeddings_project = register_module("embeddings_project", nn::Linear(size, config.hidden_size));
  auto encoder = std::make_shared<nn::Module>();
  nn::ModuleList list;
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    layers.emplace_back(config);
    list->push_back(layers.back());
  }
  encoder->register_module("layer", list);
  register_module("encoder", encoder);
}

ElectraForQuestionAnswering::ElectraForQuestionAnswering(const ModelConfig& config) : QaModel(config) {
  electra = register_module("electra", ElectraModel(this->config()));
  register_qa_head();
  init_weights();
}

std::unique_ptr<LayerInputs> ElectraForQuestionAnswering::layer_inputs(const EncoderBatch& batch) {
  auto inputs = std::make_unique<LayerInputs>();
  inputs->additive_mask = additive_attention_mask(
      batch.attention_mask, electra->embeddings->word_embeddings->weight.scalar_type(), -10000.0);
  return inputs;
}

torch::Tensor ElectraForQuestionAnswering::embed(const EncoderBatch& batch, const LayerInputs&) {
  auto embedded = electra->embeddings(batch.input_ids, batch.token_type_ids);
  return electra->embeddings_project ? linear(electra->embeddings_project, embedded) : embedded;
}

torch::Tensor ElectraForQuestionAnswering::layer(int64_t index, const torch::Tensor& hidden,
                                                 const LayerInputs& inputs) {
  return electra->layers[static_cast<size_t>(index)](hidden, inputs.additive_mask);
}

bool ElectraForQuestionAnswering::init_module(const std::string&, nn::Module& module) {
  auto* embedding = module.as<nn::Embedding>();
  if (!embedding) return false;
  init_embedding_zero_padding(*embedding, config().initializer_range);
  return true;
}

namespace {

void validate_electra(const ModelConfig& config) {
  for (const char* key : {"hidden_dropout_prob", "attention_probs_dropout_prob"}) config.probability(key);
  if (config.integer("embedding_size") <= 0)
    throw Error(config.source + ": key 'embedding_size' must be positive, found " +
                std::to_string(config.integer("embedding_size")));
  const int64_t pad = config.integer("pad_token_id");
  if (pad < 0 || pad >= config.vocab_size)
    throw Error(config.source + ": key 'pad_token_id' " + std::to_string(pad) + " is outside the vocabulary [0, " +
                std::to_string(config.vocab_size) + ")");
  const std::string position_type = config.string("position_embedding_type");
  if (position_type != "absolute")
    throw Error(config.source + ": key 'position_embedding_type' is \"" + position_type +
                "\"; only \"absolute\" (every published ELECTRA model) is supported");
}

double electra_parameters(const ModelConfig& c) {
  const double E = static_cast<double>(c.integer("embedding_size")), H = static_cast<double>(c.hidden_size);
  const double embeddings = (static_cast<double>(c.vocab_size) + static_cast<double>(c.max_position_embeddings) +
                             static_cast<double>(c.type_vocab_size)) * E + 2 * E;
  const double project = E != H ? E * H + H : 0.0;
  return embeddings + project + static_cast<double>(c.num_hidden_layers) * transformer_layer_parameters(c) + 2 * H + 2;
}

double electra_forward_flops(const ModelConfig& c, int64_t tokens) {
  const double T = static_cast<double>(tokens), E = static_cast<double>(c.integer("embedding_size"));
  const double H = static_cast<double>(c.hidden_size);
  const double project = E != H ? 2.0 * T * E * H : 0.0;
  return project + static_cast<double>(c.num_hidden_layers) * transformer_layer_flops(c, tokens) + 2.0 * T * H * 2;
}

ModelFamily make_electra_family() {
  ModelFamily f;
  f.int8_encoder = true;  // TransformerLayerKernel's layers
  f.model_type = "electra";
  f.base_prefix = "electra";
  f.tokenizer = "wordpiece";
  f.example = "google/electra-base-discriminator";
  f.architecture = "ElectraForQuestionAnswering";
  // transformers 4.57.5's ElectraConfig defaults.
  f.defaults = {{"vocab_size", 30522},
                {"embedding_size", 128},
                {"hidden_size", 256},
                {"num_hidden_layers", 12},
                {"num_attention_heads", 4},
                {"intermediate_size", 1024},
                {"hidden_act", "gelu"},
                {"hidden_dropout_prob", 0.1},
                {"attention_probs_dropout_prob", 0.1},
                {"max_position_embeddings", 512},
                {"type_vocab_size", 2},
                {"initializer_range", 0.02},
                {"layer_norm_eps", 1e-12},
                {"summary_type", "first"},
                {"summary_use_proj", true},
                {"summary_activation", "gelu"},
                {"summary_last_dropout", 0.1},
                {"pad_token_id", 0},
                {"position_embedding_type", "absolute"},
                {"use_cache", true},
                {"classifier_dropout", nullptr}};
  auto shape = [](int64_t embedding, int64_t hidden, int64_t layers, int64_t heads) {
    return nlohmann::json{{"model_type", "electra"},       {"architectures", {"ElectraForPreTraining"}},
                          {"embedding_size", embedding},   {"hidden_size", hidden},
                          {"num_hidden_layers", layers},   {"num_attention_heads", heads},
                          {"intermediate_size", 4 * hidden}, {"vocab_size", 30522},
                          {"max_position_embeddings", 512}, {"type_vocab_size", 2},
                          {"layer_norm_eps", 1e-12},       {"pad_token_id", 0}};
  };
  f.published = {{"google/electra-small-discriminator", shape(128, 256, 12, 4)},
                 {"google/electra-base-discriminator", shape(768, 768, 12, 12)},
                 {"google/electra-large-discriminator", shape(1024, 1024, 24, 16)}};
  f.validate = validate_electra;
  f.create = [](const ModelConfig& config) { return std::make_shared<ElectraForQuestionAnswering>(config); };
  f.parameters = electra_parameters;
  f.forward_flops = electra_forward_flops;
  return f;
}

}  // namespace

const ModelFamily& electra_family() {
  static const ModelFamily family = make_electra_family();
  return family;
}

}  // namespace layerprobe
