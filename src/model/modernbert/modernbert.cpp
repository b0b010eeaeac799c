#include "model/modernbert/modernbert.hpp"

#include <cmath>
#include <limits>

#include "layerprobe/core/common.hpp"
#include "layerprobe/model/family.hpp"

namespace layerprobe {

namespace nn = torch::nn;

namespace {

// Whether layer `index` attends within a sliding window (HF: layer_id % global_attn_every_n_layers != 0).
bool modernbert_layer_is_local(const ModelConfig& config, int64_t index) {
  return index % config.integer("global_attn_every_n_layers") != 0;
}

nn::Linear modernbert_linear(int64_t in, int64_t out, bool bias) {
  return nn::Linear(nn::LinearOptions(in, out).bias(bias));
}

// torch.nn.init.trunc_normal_(w, 0, std, -cutoff x std, cutoff x std), as PyTorch computes it:
// uniform over the truncated CDF's range, erfinv, scale, clamp.
void modernbert_trunc_normal(const torch::Tensor& weight, double std, double cutoff) {
  const double a = -cutoff * std, b = cutoff * std;
  auto cdf = [](double x) { return (1.0 + std::erf(x / std::sqrt(2.0))) / 2.0; };
  const double low = cdf(a / std), high = cdf(b / std);
  weight.uniform_(2 * low - 1, 2 * high - 1);
  weight.erfinv_();
  weight.mul_(std * std::sqrt(2.0));
  weight.clamp_(a, b);
}

}  // namespace

// --- modules -------------------------------------------------------------------------

ModernBertNormImpl::ModernBertNormImpl(int64_t size, double eps_in, bool with_bias) : eps(eps_in) {
  weight = register_parameter("weight", torch::ones({size}));
  if (with_bias) bias = register_parameter("bias", torch::zeros({size}));
}

torch::Tensor ModernBertNormImpl::forward(const torch::Tensor& x) {
  return torch::layer_norm(x.to(weight.scalar_type()), {weight.size(0)}, weight, bias, eps);
}

void ModernBertNormImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  weight.fill_(1.0);
  if (bias.defined()) bias.zero_();
}

ModernBertEmbeddingsImpl::ModernBertEmbeddingsImpl(const ModelConfig& config)
    : dropout_(config.number("embedding_dropout")) {
  tok_embeddings = register_module(
      "tok_embeddings", nn::Embedding(nn::EmbeddingOptions(config.vocab_size, config.hidden_size)
                                          .padding_idx(config.integer("pad_token_id"))));
  norm = register_module("norm", ModernBertNorm(config.hidden_size, config.layer_norm_eps, config.boolean("norm_bias")));
}

torch::Tensor ModernBertEmbeddingsImpl::forward(const torch::Tensor& input_ids) {
  return torch::dropout(norm(tok_embeddings(input_ids)), dropout_, is_training());
}

ModernBertAttentionImpl::ModernBertAttentionImpl(const ModelConfig& config) {
  const int64_t hidden = config.hidden_size;
  const bool bias = config.boolean("attention_bias");
  Wqkv = register_module("Wqkv", modernbert_linear(hidden, 3 * hidden, bias));
  Wo = register_module("Wo", modernbert_linear(hidden, hidden, bias));
}

ModernBertMLPImpl::ModernBertMLPImpl(const ModelConfig& config) {
  const bool bias = config.boolean("mlp_bias");
  Wi = register_module("Wi", modernbert_linear(config.hidden_size, 2 * config.intermediate_size, bias));
  Wo = register_module("Wo", modernbert_linear(config.intermediate_size, config.hidden_size, bias));
}

ModernBertEncoderLayerImpl::ModernBertEncoderLayerImpl(const ModelConfig& config, int64_t layer_id) {
  const bool norm_bias = config.boolean("norm_bias");
  if (layer_id != 0)
    attn_norm = register_module("attn_norm", ModernBertNorm(config.hidden_size, config.layer_norm_eps, norm_bias));
  attn = register_module("attn", ModernBertAttention(config));
  mlp_norm = register_module("mlp_norm", ModernBertNorm(config.hidden_size, config.layer_norm_eps, norm_bias));
  mlp = register_module("mlp", ModernBertMLP(config));
  ModernBertLayerStyle style;
  style.activation = parse_activation(config.hidden_act, config.source);
  style.heads = config.num_attention_heads;
  style.local = modernbert_layer_is_local(config, layer_id);
  style.attention_dropout = config.number("attention_dropout");
  style.mlp_dropout = config.number("mlp_dropout");
  kernel_ = std::make_unique<ModernBertLayerKernel>(
      ModernBertLayerKernel::Parts{attn_norm, attn->Wqkv, attn->Wo, mlp_norm, mlp->Wi, mlp->Wo}, style);
}

torch::Tensor ModernBertEncoderLayerImpl::forward(const torch::Tensor& hidden_states, const ModernBertInputs& inputs) {
  return kernel_->forward(hidden_states, inputs, is_training());
}

ModernBertModelImpl::ModernBertModelImpl(const ModelConfig& config) {
  embeddings = register_module("embeddings", ModernBertEmbeddings(config));
  nn::ModuleList list;
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    layers.emplace_back(config, i);
    list->push_back(layers.back());
  }
  register_module("layers", list);
  final_norm = register_module("final_norm", ModernBertNorm(config.hidden_size, config.layer_norm_eps,
                                                            config.boolean("norm_bias")));
}

ModernBertPredictionHeadImpl::ModernBertPredictionHeadImpl(const ModelConfig& config)
    : activation_(parse_activation(config.string("classifier_activation"), config.source)) {
  dense = register_module("dense", modernbert_linear(config.hidden_size, config.hidden_size, config.boolean("classifier_bias")));
  norm = register_module("norm", ModernBertNorm(config.hidden_size, config.layer_norm_eps, config.boolean("norm_bias")));
}

torch::Tensor ModernBertPredictionHeadImpl::forward(const torch::Tensor& x) {
  return norm(apply_activation(linear(dense, x), activation_));
}

// --- the QA model --------------------------------------------------------------------

ModernBertForQuestionAnswering::ModernBertForQuestionAnswering(const ModelConfig& config)
    : QaModel(config), classifier_dropout_(config.number("classifier_dropout")) {
  model = register_module("model", ModernBertModel(this->config()));
  head_module = register_module("head", ModernBertPredictionHead(this->config()));
  classifier = register_module("classifier", nn::Linear(this->config().hidden_size, 2));
  init_weights();
}

std::pair<torch::Tensor, torch::Tensor> rope_tables(int64_t length, int64_t dim, double theta,
                                                    const torch::Device& device) {
  const auto options = torch::TensorOptions().dtype(torch::kFloat).device(device);
  // HF: 1.0 / (base ** (arange(0, dim, 2) / dim)), then position x inverse frequency, all in float32.
  const auto exponents = torch::arange(0, dim, 2, torch::TensorOptions().dtype(torch::kLong).device(device))
                             .to(torch::kFloat) /
                         static_cast<double>(dim);
  const auto inverse_frequencies = torch::pow(theta, exponents).reciprocal();
  const auto angles = torch::arange(length, options).unsqueeze(1) * inverse_frequencies.unsqueeze(0);
  return {angles.cos(), angles.sin()};
}

std::unique_ptr<LayerInputs> ModernBertForQuestionAnswering::layer_inputs(const EncoderBatch& batch) {
  const ModelConfig& c = config();
  auto inputs = std::make_unique<ModernBertInputs>();
  const int64_t length = batch.length();
  const auto device = batch.input_ids.device();
  // _prepare_4d_attention_mask: 0 where attended, finfo(float32).min at padding. The lowest bf16 value
  // (-3.39e38) stands in for it: a score plus it rounds to it in float32 as with HF's value, so a row
  // keeps the same probabilities (a row masked throughout: uniform over all keys, as HF's), and it stays
  // finite in the CPU bf16 path, where HF's would round to -inf.
  const double kMasked = static_cast<double>(std::numeric_limits<c10::BFloat16>::lowest());
  inputs->additive_mask = additive_attention_mask(batch.attention_mask, torch::kFloat, kMasked);
  bool any_local = false;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) any_local = any_local || modernbert_layer_is_local(c, i);
  const int64_t dim = c.hidden_size / c.num_attention_heads;
  std::tie(inputs->global_cos, inputs->global_sin) = rope_tables(length, dim, c.number("global_rope_theta"), device);
  if (any_local) {
    std::tie(inputs->local_cos, inputs->local_sin) = rope_tables(length, dim, c.number("local_rope_theta"), device);
    // _update_attention_mask: keys further than local_attention // 2 from the query are set to finfo.min.
    const auto positions = torch::arange(length, torch::TensorOptions().dtype(torch::kLong).device(device));
    const auto outside = (positions.unsqueeze(0) - positions.unsqueeze(1)).abs().gt(c.integer("local_attention") / 2);
    inputs->sliding_mask = inputs->additive_mask.expand({batch.size(), 1, length, length})
                               .masked_fill(outside.unsqueeze(0).unsqueeze(0), kMasked)
                               .contiguous();
  }
  return inputs;
}

torch::Tensor ModernBertForQuestionAnswering::embed(const EncoderBatch& batch, const LayerInputs&) {
  return model->embeddings(batch.input_ids);
}

torch::Tensor ModernBertForQuestionAnswering::layer(int64_t index, const torch::Tensor& hidden,
                                                    const LayerInputs& inputs) {
  return model->layers[static_cast<size_t>(index)](hidden, static_cast<const ModernBertInputs&>(inputs));
}

torch::Tensor ModernBertForQuestionAnswering::final_norm(const torch::Tensor& hidden) { return model->final_norm(hidden); }

torch::Tensor ModernBertForQuestionAnswering::head(const torch::Tensor& last_hidden_state) {
  auto x = head_module(last_hidden_state.to(classifier->weight.scalar_type()));
  return linear(classifier, torch::dropout(x, classifier_dropout_, is_training()));
}

bool ModernBertForQuestionAnswering::init_module(const std::string& name, nn::Module& module) {
  const ModelConfig& c = config();
  const double cutoff = c.number("initializer_cutoff_factor");
  const double in = c.initializer_range;
  const double out = c.initializer_range / std::sqrt(2.0 * static_cast<double>(c.num_hidden_layers));
  const double final_out = std::pow(static_cast<double>(c.hidden_size), -0.5);
  auto ends_with = [&name](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (auto* norm = module.as<ModernBertNorm>()) {
    norm->reset_parameters();
    return true;
  }
  if (auto* embedding = module.as<nn::Embedding>()) {
    modernbert_trunc_normal(embedding->weight, in, cutoff);
    return true;
  }
  if (auto* dense = module.as<nn::Linear>()) {
    double std = in;  // attn.Wqkv, mlp.Wi
    if (ends_with("Wo") || name == "head.dense") std = out;
    if (name == "classifier") std = final_out;
    modernbert_trunc_normal(dense->weight, std, cutoff);
    if (dense->bias.defined()) dense->bias.zero_();
    return true;
  }
  return false;
}

// --- the family ----------------------------------------------------------------------

namespace {

void validate_modernbert(const ModelConfig& config) {
  for (const char* key : {"attention_dropout", "mlp_dropout", "embedding_dropout", "classifier_dropout"})
    config.probability(key);
  for (const char* key : {"attention_bias", "mlp_bias", "norm_bias", "classifier_bias"}) config.boolean(key);
  auto require_positive = [&](const char* key) {
    if (config.integer(key) <= 0)
      throw Error(config.source + ": key '" + key + "' must be positive, found " + std::to_string(config.integer(key)));
  };
  require_positive("global_attn_every_n_layers");
  require_positive("local_attention");
  for (const char* key : {"global_rope_theta", "local_rope_theta", "initializer_cutoff_factor"})
    if (!(config.number(key) > 0))
      throw Error(config.source + ": key '" + std::string(key) + "' must be positive");
  if ((config.hidden_size / config.num_attention_heads) % 2 != 0)
    throw Error(config.source + ": the head size hidden_size / num_attention_heads = " +
                std::to_string(config.hidden_size / config.num_attention_heads) +
                " is odd; rotary positions rotate pairs of dimensions");
  const int64_t pad = config.integer("pad_token_id");
  if (pad < 0 || pad >= config.vocab_size)
    throw Error(config.source + ": key 'pad_token_id' " + std::to_string(pad) + " is outside the vocabulary [0, " +
                std::to_string(config.vocab_size) + ")");
  const std::string activation = config.string("classifier_activation");
  if (!is_supported_activation(activation))
    throw Error(config.source + ": key 'classifier_activation' has unknown activation '" + activation +
                "' (supported: gelu, gelu_new, relu, swish, mish)");
  for (const char* key : {"layer_types", "rope_parameters"})
    if (config.object.contains(key) && !config.object.at(key).is_null())
      throw Error(config.source + ": key '" + std::string(key) +
                  "' (a transformers 5 config) is not read; give global_attn_every_n_layers, global_rope_theta "
                  "and local_rope_theta as transformers 4.x saves them");
}

double modernbert_parameters(const ModelConfig& c) {
  const double H = static_cast<double>(c.hidden_size), I = static_cast<double>(c.intermediate_size);
  const double L = static_cast<double>(c.num_hidden_layers);
  const double norm = c.boolean("norm_bias") ? 2 * H : H;
  const double attention = 3 * H * H + H * H + (c.boolean("attention_bias") ? 4 * H : 0.0);
  const double mlp = 2 * I * H + I * H + (c.boolean("mlp_bias") ? 2 * I + H : 0.0);
  const double embeddings = static_cast<double>(c.vocab_size) * H + norm;
  const double layers = L * (attention + mlp + 2 * norm) - norm;  // layer 0 has no attn_norm
  const double head = H * H + (c.boolean("classifier_bias") ? H : 0.0) + norm + 2 * H + 2;
  return embeddings + layers + norm + head;
}

// Keys each query sees: all T in the global layers; in the local ones those within local_attention / 2.
double modernbert_attended_pairs(int64_t tokens, int64_t half_window) {
  double pairs = 0;
  for (int64_t q = 0; q < tokens; ++q)
    pairs += static_cast<double>(std::min(tokens - 1, q + half_window) - std::max<int64_t>(0, q - half_window) + 1);
  return pairs;
}

double modernbert_forward_flops(const ModelConfig& c, int64_t tokens) {
  const double T = static_cast<double>(tokens), H = static_cast<double>(c.hidden_size);
  const double I = static_cast<double>(c.intermediate_size);
  const double linears = T * (3 * H * H + H * H + 2 * I * H + I * H);
  const double global_pairs = T * T, local_pairs = modernbert_attended_pairs(tokens, c.integer("local_attention") / 2);
  double total = 0;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    total += 2 * (linears + 2 * H * (modernbert_layer_is_local(c, i) ? local_pairs : global_pairs));  // QK^T and PV
  return total + 2 * T * (H * H + 2 * H);  // head.dense and the classifier
}

ModelFamily make_modernbert_family() {
  ModelFamily f;
  f.model_type = "modernbert";
  f.base_prefix = "model";
  f.tokenizer = "tokenizer.json";
  f.example = "answerdotai/ModernBERT-base";
  f.architecture = "ModernBertForQuestionAnswering";
  f.keys.hidden_act = "hidden_activation";
  f.keys.layer_norm_eps = "norm_eps";
  f.keys.type_vocab_size = "";
  f.fixed.type_vocab_size = 0;
  // transformers 4.57.5's ModernBertConfig defaults.
  f.defaults = {{"vocab_size", 50368},
                {"hidden_size", 768},
                {"intermediate_size", 1152},
                {"num_hidden_layers", 22},
                {"num_attention_heads", 12},
                {"hidden_activation", "gelu"},
                {"max_position_embeddings", 8192},
                {"initializer_range", 0.02},
                {"initializer_cutoff_factor", 2.0},
                {"norm_eps", 1e-5},
                {"norm_bias", false},
                {"pad_token_id", 50283},
                {"eos_token_id", 50282},
                {"bos_token_id", 50281},
                {"cls_token_id", 50281},
                {"sep_token_id", 50282},
                {"global_rope_theta", 160000.0},
                {"attention_bias", false},
                {"attention_dropout", 0.0},
                {"global_attn_every_n_layers", 3},
                {"local_attention", 128},
                {"local_rope_theta", 10000.0},
                {"embedding_dropout", 0.0},
                {"mlp_bias", false},
                {"mlp_dropout", 0.0},
                {"decoder_bias", true},
                {"classifier_pooling", "cls"},
                {"classifier_dropout", 0.0},
                {"classifier_bias", false},
                {"classifier_activation", "gelu"},
                {"deterministic_flash_attn", false},
                {"sparse_prediction", false},
                {"sparse_pred_ignore_index", -100},
                {"reference_compile", nullptr},
                {"repad_logits_with_grad", false}};
  auto shape = [](int64_t hidden, int64_t layers, int64_t heads, int64_t intermediate) {
    return nlohmann::json{{"model_type", "modernbert"},
                          {"architectures", {"ModernBertForMaskedLM"}},
                          {"hidden_size", hidden},
                          {"num_hidden_layers", layers},
                          {"num_attention_heads", heads},
                          {"intermediate_size", intermediate},
                          {"vocab_size", 50368},
                          {"max_position_embeddings", 8192},
                          {"global_attn_every_n_layers", 3},
                          {"local_attention", 128},
                          {"global_rope_theta", 160000.0},
                          {"local_rope_theta", 10000.0},
                          {"hidden_activation", "gelu"},
                          {"norm_eps", 1e-5},
                          {"classifier_pooling", "mean"},
                          {"bos_token_id", 50281},
                          {"cls_token_id", 50281},
                          {"eos_token_id", 50282},
                          {"sep_token_id", 50282},
                          {"pad_token_id", 50283}};
  };
  f.published = {{"answerdotai/ModernBERT-base", shape(768, 22, 12, 1152)},
                 {"answerdotai/ModernBERT-large", shape(1024, 28, 16, 2624)}};
  f.head_prefixes = {"head.", "classifier."};
  f.head_output = "classifier.weight";
  // ModernBertForQuestionAnswering takes no token type ids.
  f.takes_token_type_ids = false;
  f.validate = validate_modernbert;
  f.create = [](const ModelConfig& config) { return std::make_shared<ModernBertForQuestionAnswering>(config); };
  f.parameters = modernbert_parameters;
  f.forward_flops = modernbert_forward_flops;
  return f;
}

}  // namespace

const ModelFamily& modernbert_family() {
  static const ModelFamily family = make_modernbert_family();
  return family;
}

}  // namespace layerprobe
