#include "model/deberta_v2/deberta_v2.hpp"

#include <algorithm>
#include <cctype>
#include <limits>
#include <sstream>

#include "layerprobe/core/common.hpp"
#include "layerprobe/model/family.hpp"

namespace layerprobe {

namespace nn = torch::nn;

namespace {

bool has_key(const ModelConfig& config, const std::string& key) {
  auto it = config.object.find(key);
  return it != config.object.end() && !it->is_null();
}

std::string lower_trimmed(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto begin = text.find_first_not_of(" \t"), end = text.find_last_not_of(" \t");
  return begin == std::string::npos ? "" : text.substr(begin, end - begin + 1);
}

// A '|'-separated string ("p2c|c2p") or a list of strings, lower-cased and trimmed, as HF reads them.
std::vector<std::string> name_list(const ModelConfig& config, const std::string& key) {
  std::vector<std::string> names;
  if (!has_key(config, key)) return names;
  const auto& value = config.object.at(key);
  if (value.is_string()) {
    std::stringstream stream(value.get<std::string>());
    for (std::string part; std::getline(stream, part, '|');) names.push_back(lower_trimmed(part));
  } else if (value.is_array()) {
    for (const auto& item : value) {
      if (!item.is_string())
        throw Error(config.source + ": key '" + key + "' has invalid value " + value.dump() +
                    " (a list of strings or a '|'-separated string expected)");
      names.push_back(lower_trimmed(item.get<std::string>()));
    }
  } else {
    throw Error(config.source + ": key '" + key + "' has invalid value " + value.dump() +
                " (a list of strings or a '|'-separated string expected)");
  }
  return names;
}

[[noreturn]] void bad_value(const ModelConfig& config, const std::string& key, const std::string& why) {
  throw Error(config.source + ": key '" + key + "' " + why);
}

}  // namespace

DebertaV2Settings::DebertaV2Settings(const ModelConfig& config) {
  embedding_size = has_key(config, "embedding_size") ? config.integer("embedding_size") : config.hidden_size;
  if (embedding_size <= 0) bad_value(config, "embedding_size", "must be positive");
  pad_token_id = has_key(config, "pad_token_id") ? config.integer("pad_token_id") : 0;
  if (pad_token_id < 0 || pad_token_id >= config.vocab_size)
    bad_value(config, "pad_token_id", "must lie in [0, vocab_size), found " + std::to_string(pad_token_id));
  position_biased_input = config.boolean("position_biased_input");
  hidden_dropout = config.probability("hidden_dropout_prob");
  attention_dropout = config.probability("attention_probs_dropout_prob");
  if (has_key(config, "attention_head_size") &&
      config.integer("attention_head_size") != config.hidden_size / config.num_attention_heads)
    bad_value(config, "attention_head_size",
              "differs from hidden_size / num_attention_heads; such models are not supported");

  relative.enabled = config.boolean("relative_attention");
  relative.max_relative_positions = config.integer("max_relative_positions");
  if (relative.max_relative_positions < 1) relative.max_relative_positions = config.max_position_embeddings;
  relative.position_buckets = has_key(config, "position_buckets") ? config.integer("position_buckets") : -1;
  if (relative.position_buckets > 0 &&
      (relative.position_buckets < 2 || relative.max_relative_positions - 1 <= relative.position_buckets / 2))
    bad_value(config, "position_buckets",
              "must be at least 2 and below 2 * (max_relative_positions - 1) (log buckets need both), found " +
                  std::to_string(relative.position_buckets));
  for (const std::string& type : name_list(config, "pos_att_type")) {
    if (type == "c2p") {
      relative.c2p = true;
    } else if (type == "p2c") {
      relative.p2c = true;
    } else if (type != "p2p") {  // DeBERTa v1's position-to-position, which v2 ignores
      bad_value(config, "pos_att_type", "has unknown attention type '" + type + "' (known: c2p, p2c)");
    }
  }
  share_att_key = has_key(config, "share_att_key") && config.boolean("share_att_key");
  for (const std::string& name : name_list(config, "norm_rel_ebd")) {
    if (name == "layer_norm") {
      norm_rel_ebd = true;
    } else if (name != "none") {
      bad_value(config, "norm_rel_ebd", "has unknown value '" + name + "' (known: layer_norm, none)");
    }
  }
  conv_kernel_size = has_key(config, "conv_kernel_size") ? config.integer("conv_kernel_size") : 0;
  if (conv_kernel_size > 0) {
    if (conv_kernel_size % 2 == 0)
      bad_value(config, "conv_kernel_size", "must be odd (HF pads by (size - 1) / 2 on each side)");
    conv_groups = has_key(config, "conv_groups") ? config.integer("conv_groups") : 1;
    if (conv_groups <= 0 || config.hidden_size % conv_groups != 0)
      bad_value(config, "conv_groups", "must divide hidden_size");
    conv_act = has_key(config, "conv_act") ? config.string("conv_act") : "tanh";
    if (conv_act != "tanh" && !is_supported_activation(conv_act))
      bad_value(config, "conv_act", "has unknown activation '" + conv_act + "' (supported: tanh, gelu, gelu_new, "
                                     "relu, swish, mish)");
  }
}

// --- modules ------------------------------------------------------------------------------

DebertaV2EmbeddingsImpl::DebertaV2EmbeddingsImpl(const ModelConfig& config, const DebertaV2Settings& settings)
    : dropout_(settings.hidden_dropout) {
  const int64_t size = settings.embedding_size;
  word_embeddings = register_module(
      "word_embeddings", nn::Embedding(nn::EmbeddingOptions(config.vocab_size, size).padding_idx(settings.pad_token_id)));
  if (settings.position_biased_input)
    position_embeddings = register_module("position_embeddings", nn::Embedding(config.max_position_embeddings, size));
  if (config.type_vocab_size > 0)
    token_type_embeddings = register_module("token_type_embeddings", nn::Embedding(config.type_vocab_size, size));
  if (size != config.hidden_size)
    embed_proj = register_module("embed_proj", nn::Linear(nn::LinearOptions(size, config.hidden_size).bias(false)));
  LayerNorm = register_module("LayerNorm", make_layer_norm(config.hidden_size, config.layer_norm_eps));
}

torch::Tensor DebertaV2EmbeddingsImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                                               const torch::Tensor& attention_mask) {
  auto embeddings = word_embeddings(input_ids);
  if (!position_embeddings.is_empty())
    embeddings = embeddings + position_embeddings(torch::arange(input_ids.size(1), input_ids.options()).unsqueeze(0));
  if (!token_type_embeddings.is_empty())
    embeddings = embeddings + token_type_embeddings(token_types_or_zeros(token_type_ids, input_ids));
  if (!embed_proj.is_empty()) embeddings = embed_proj(embeddings);
  embeddings = LayerNorm(embeddings) * attention_mask.unsqueeze(2).to(embeddings.scalar_type());
  return torch::dropout(embeddings, dropout_, is_training());
}

DisentangledSelfAttentionImpl::DisentangledSelfAttentionImpl(const ModelConfig& config,
                                                             const DebertaV2Settings& settings) {
  const int64_t hidden = config.hidden_size;
  query_proj = register_module("query_proj", nn::Linear(hidden, hidden));
  key_proj = register_module("key_proj", nn::Linear(hidden, hidden));
  value_proj = register_module("value_proj", nn::Linear(hidden, hidden));
  if (settings.relative.enabled && !settings.share_att_key) {
    if (settings.relative.c2p) pos_key_proj = register_module("pos_key_proj", nn::Linear(hidden, hidden));
    if (settings.relative.p2c) pos_query_proj = register_module("pos_query_proj", nn::Linear(hidden, hidden));
  }
}

DebertaV2DenseNormImpl::DebertaV2DenseNormImpl(const ModelConfig& config, int64_t in_features) {
  dense = register_module("dense", nn::Linear(in_features, config.hidden_size));
  LayerNorm = register_module("LayerNorm", make_layer_norm(config.hidden_size, config.layer_norm_eps));
}

DebertaV2AttentionImpl::DebertaV2AttentionImpl(const ModelConfig& config, const DebertaV2Settings& settings) {
  self = register_module("self", DisentangledSelfAttention(config, settings));
  output = register_module("output", DebertaV2DenseNorm(config, config.hidden_size));
}

DebertaV2IntermediateImpl::DebertaV2IntermediateImpl(const ModelConfig& config) {
  dense = register_module("dense", nn::Linear(config.hidden_size, config.intermediate_size));
}

DebertaV2ConvLayerImpl::DebertaV2ConvLayerImpl(const ModelConfig& config, const DebertaV2Settings& settings)
    : activation_(settings.conv_act), dropout_(settings.hidden_dropout) {
  const int64_t hidden = config.hidden_size, size = settings.conv_kernel_size;
  conv = register_module(
      "conv", nn::Conv1d(nn::Conv1dOptions(hidden, hidden, size).padding((size - 1) / 2).groups(settings.conv_groups)));
  LayerNorm = register_module("LayerNorm", make_layer_norm(hidden, config.layer_norm_eps));
}

torch::Tensor DebertaV2ConvLayerImpl::forward(const torch::Tensor& hidden, const torch::Tensor& residual,
                                              const torch::Tensor& mask) {
  // In the convolution's dtype (float32; a CPU bf16 layer output is widened, and the result narrowed back).
  const auto dtype = conv->weight.scalar_type();
  auto out = conv(hidden.to(dtype).permute({0, 2, 1}).contiguous()).permute({0, 2, 1});
  out = out.masked_fill(mask.eq(0).unsqueeze(-1), 0.0);
  out = torch::dropout(out, dropout_, is_training());
  out = activation_ == "tanh" ? torch::tanh(out) : apply_activation(out, parse_activation(activation_));
  const auto output = LayerNorm(residual.to(dtype) + out);
  return (output * mask.unsqueeze(2).to(dtype)).to(residual.scalar_type());
}

DebertaV2LayerImpl::DebertaV2LayerImpl(const ModelConfig& config, const DebertaV2Settings& settings) {
  attention = register_module("attention", DebertaV2Attention(config, settings));
  intermediate = register_module("intermediate", DebertaV2Intermediate(config));
  output = register_module("output", DebertaV2DenseNorm(config, config.intermediate_size));
  DisentangledStyle style;
  style.activation = parse_activation(config.hidden_act, config.source);
  style.heads = config.num_attention_heads;
  style.relative = settings.relative;
  style.share_att_key = settings.share_att_key;
  style.attention_dropout = settings.attention_dropout;
  style.hidden_dropout = settings.hidden_dropout;
  const auto& self = attention->self;
  DisentangledLayerParts parts;
  parts.query = self->query_proj;
  parts.key = self->key_proj;
  parts.value = self->value_proj;
  parts.pos_key = self->pos_key_proj;
  parts.pos_query = self->pos_query_proj;
  parts.attention_output = attention->output->dense;
  parts.attention_norm = attention->output->LayerNorm;
  parts.intermediate = intermediate->dense;
  parts.output = output->dense;
  parts.output_norm = output->LayerNorm;
  kernel_ = std::make_unique<DisentangledLayerKernel>(std::move(parts), std::move(style));
}

void DebertaV2LayerImpl::share_relative_embeddings(nn::Embedding rel_embeddings, nn::LayerNorm norm) {
  kernel_->set_relative_embeddings(std::move(rel_embeddings), std::move(norm));
}

torch::Tensor DebertaV2LayerImpl::forward(const torch::Tensor& hidden_states, const DisentangledInputs& inputs) {
  return kernel_->forward(hidden_states, inputs, is_training());
}

DebertaV2ModelImpl::DebertaV2ModelImpl(const ModelConfig& config, const DebertaV2Settings& settings) {
  embeddings = register_module("embeddings", DebertaV2Embeddings(config, settings));
  // DebertaV2Encoder's modules, in HF's order.
  auto encoder = std::make_shared<nn::Module>();
  nn::ModuleList list;
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    layers.emplace_back(config, settings);
    list->push_back(layers.back());
  }
  encoder->register_module("layer", list);
  if (settings.relative.enabled)
    rel_embeddings =
        encoder->register_module("rel_embeddings", nn::Embedding(2 * settings.relative.span(), config.hidden_size));
  if (settings.norm_rel_ebd)
    rel_norm = encoder->register_module("LayerNorm", make_layer_norm(config.hidden_size, config.layer_norm_eps));
  if (settings.conv_kernel_size > 0) conv = encoder->register_module("conv", DebertaV2ConvLayer(config, settings));
  register_module("encoder", encoder);
  for (auto& layer : layers) layer->share_relative_embeddings(rel_embeddings, rel_norm);
}

// --- the QA model ----------------------------------------------------------------------------

DebertaV2ForQuestionAnswering::DebertaV2ForQuestionAnswering(const ModelConfig& config)
    : QaModel(config), settings_(this->config()) {
  deberta = register_module("deberta", DebertaV2Model(this->config(), settings_));
  register_qa_head();
  init_weights();
}

std::unique_ptr<LayerInputs> DebertaV2ForQuestionAnswering::layer_inputs(const EncoderBatch& batch) {
  auto inputs = std::make_unique<DisentangledInputs>();
  const auto& mask = batch.attention_mask;
  inputs->attention_mask = mask;
  // get_attention_mask: mask[b, i] * mask[b, j], as [B,1,T,T].
  const auto real = mask.ne(0);
  inputs->pair_mask = real.unsqueeze(1).unsqueeze(2).logical_and(real.unsqueeze(1).unsqueeze(3));
  inputs->additive_mask = additive_attention_mask(mask, torch::kFloat, std::numeric_limits<float>::lowest());
  if (settings_.relative.enabled) {
    // get_rel_embedding: the table through encoder.LayerNorm where norm_rel_ebd says so.
    inputs->rel_embeddings = deberta->rel_norm.is_empty() ? deberta->rel_embeddings->weight
                                                          : deberta->rel_norm(deberta->rel_embeddings->weight);
    const int64_t length = batch.length();
    std::lock_guard<std::mutex> lock(positions_mutex_);
    auto& positions = positions_[length];
    if (!positions) positions = std::make_shared<const RelativePositions>(relative_positions(settings_.relative, length));
    inputs->positions = positions;
  }
  return inputs;
}

torch::Tensor DebertaV2ForQuestionAnswering::embed(const EncoderBatch& batch, const LayerInputs&) {
  return deberta->embeddings(batch.input_ids, batch.token_type_ids, batch.attention_mask);
}

torch::Tensor DebertaV2ForQuestionAnswering::layer(int64_t index, const torch::Tensor& hidden,
                                                   const LayerInputs& inputs) {
  const auto& disentangled = static_cast<const DisentangledInputs&>(inputs);
  auto output = deberta->layers[static_cast<size_t>(index)](hidden, disentangled);
  // The convolution reads the first layer's input (the embeddings) beside its output.
  if (index == 0 && !deberta->conv.is_empty()) output = deberta->conv(hidden, output, disentangled.attention_mask);
  return output;
}

void DebertaV2ForQuestionAnswering::init_family_weights() {
  deberta->embeddings->word_embeddings->weight[settings_.pad_token_id].zero_();
}

// --- the registry entry ------------------------------------------------------------------------

int64_t deberta_v2_relative_columns(const ModelConfig& config, int64_t tokens) {
  const DebertaV2Settings settings(config);
  if (!settings.relative.enabled || tokens <= 0) return 0;
  return relative_positions(settings.relative, tokens).columns;
}

namespace {

double deberta_v2_parameters(const ModelConfig& c) {
  const DebertaV2Settings s(c);
  const double H = static_cast<double>(c.hidden_size), E = static_cast<double>(s.embedding_size);
  double embeddings = static_cast<double>(c.vocab_size) * E + 2 * H;
  if (s.position_biased_input) embeddings += static_cast<double>(c.max_position_embeddings) * E;
  if (c.type_vocab_size > 0) embeddings += static_cast<double>(c.type_vocab_size) * E;
  if (s.embedding_size != c.hidden_size) embeddings += E * H;
  double layer = transformer_layer_parameters(c);
  if (s.relative.enabled && !s.share_att_key) layer += ((s.relative.c2p ? 1 : 0) + (s.relative.p2c ? 1 : 0)) * (H * H + H);
  double encoder = static_cast<double>(c.num_hidden_layers) * layer;
  if (s.relative.enabled) encoder += 2.0 * static_cast<double>(s.relative.span()) * H;
  if (s.norm_rel_ebd) encoder += 2 * H;
  if (s.conv_kernel_size > 0)
    encoder += H * (H / static_cast<double>(s.conv_groups)) * static_cast<double>(s.conv_kernel_size) + H + 2 * H;
  return embeddings + encoder + 2 * H + 2;
}

double deberta_v2_flops(const ModelConfig& c, int64_t tokens) {
  const DebertaV2Settings s(c);
  const double T = static_cast<double>(tokens), H = static_cast<double>(c.hidden_size);
  double flops = 2.0 * T * H * 2;  // qa_outputs
  if (s.embedding_size != c.hidden_size) flops += 2.0 * T * static_cast<double>(s.embedding_size) * H;
  double layer = transformer_layer_flops(c, tokens);
  if (s.relative.enabled) {
    // c2p and p2c: the queries and keys against the relative-embedding rows the window reaches.
    const double columns = static_cast<double>(relative_positions(s.relative, tokens).columns);
    layer += ((s.relative.c2p ? 1 : 0) + (s.relative.p2c ? 1 : 0)) * 2.0 * T * columns * H;
  }
  flops += static_cast<double>(c.num_hidden_layers) * layer;
  if (s.conv_kernel_size > 0)
    flops += 2.0 * T * H * (H / static_cast<double>(s.conv_groups)) * static_cast<double>(s.conv_kernel_size);
  return flops;
}

ModelFamily make_deberta_v2_family() {
  ModelFamily f;
  f.model_type = "deberta-v2";
  f.base_prefix = "deberta";
  f.tokenizer = "deberta-v2";
  f.example = "microsoft/deberta-v3-base";
  f.architecture = "DebertaV2ForQuestionAnswering";
  // transformers 4.57.5's DebertaV2Config defaults (keys HF reads with getattr, e.g. position_buckets,
  // share_att_key, norm_rel_ebd, conv_kernel_size, take their getattr defaults in DebertaV2Settings).
  f.defaults = {{"vocab_size", 128100},          {"hidden_size", 1536},
                {"num_hidden_layers", 24},       {"num_attention_heads", 24},
                {"intermediate_size", 6144},     {"hidden_act", "gelu"},
                {"hidden_dropout_prob", 0.1},    {"attention_probs_dropout_prob", 0.1},
                {"max_position_embeddings", 512}, {"type_vocab_size", 0},
                {"initializer_range", 0.02},     {"layer_norm_eps", 1e-7},
                {"relative_attention", false},   {"max_relative_positions", -1},
                {"pad_token_id", 0},             {"position_biased_input", true},
                {"pos_att_type", nullptr},       {"pooler_dropout", 0},
                {"pooler_hidden_act", "gelu"},   {"legacy", true}};
  // The DeBERTa-v3 models' config.json (microsoft/deberta-v3-{xsmall,small,base,large}).
  auto v3 = [](int64_t hidden, int64_t layers, int64_t heads) {
    return nlohmann::json{{"model_type", "deberta-v2"},     {"architectures", {"DebertaV2ForMaskedLM"}},
                          {"hidden_size", hidden},          {"num_hidden_layers", layers},
                          {"num_attention_heads", heads},   {"intermediate_size", 4 * hidden},
                          {"hidden_act", "gelu"},           {"hidden_dropout_prob", 0.1},
                          {"attention_probs_dropout_prob", 0.1}, {"initializer_range", 0.02},
                          {"max_position_embeddings", 512}, {"relative_attention", true},
                          {"position_buckets", 256},        {"norm_rel_ebd", "layer_norm"},
                          {"share_att_key", true},          {"pos_att_type", "p2c|c2p"},
                          {"layer_norm_eps", 1e-7},         {"max_relative_positions", -1},
                          {"position_biased_input", false}, {"type_vocab_size", 0},
                          {"vocab_size", 128100}};
  };
  f.published = {{"microsoft/deberta-v3-xsmall", v3(384, 12, 6)},
                 {"microsoft/deberta-v3-small", v3(768, 6, 12)},
                 {"microsoft/deberta-v3-base", v3(768, 12, 12)},
                 {"microsoft/deberta-v3-large", v3(1024, 24, 16)}};
  f.token_types_optional = true;
  f.validate = [](const ModelConfig& config) { DebertaV2Settings settings(config); };
  f.create = [](const ModelConfig& config) { return std::make_shared<DebertaV2ForQuestionAnswering>(config); };
  f.parameters = deberta_v2_parameters;
  f.forward_flops = deberta_v2_flops;
  return f;
}

}  // namespace

const ModelFamily& deberta_v2_family() {
  static const ModelFamily family = make_deberta_v2_family();
  return family;
}

}  // namespace layerprobe
