#include "model/llama/llama.hpp"

#include <cmath>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

namespace nn = torch::nn;

namespace {

const nlohmann::json* llama_key(const ModelConfig& config, const std::string& key) {
  auto it = config.object.find(key);
  return it == config.object.end() || it->is_null() ? nullptr : &*it;
}

struct LlamaAttentionImpl : nn::Module {
  LlamaAttentionImpl(const ModelConfig& config, const LlamaVariant& variant) {
    const int64_t hidden = config.hidden_size, d = llama_head_dim(config);
    const int64_t heads = config.num_attention_heads, kv = llama_kv_heads(config);
    q_proj = register_module("q_proj", Dense(hidden, heads * d, variant.qkv_bias));
    k_proj = register_module("k_proj", Dense(hidden, kv * d, variant.qkv_bias));
    v_proj = register_module("v_proj", Dense(hidden, kv * d, variant.qkv_bias));
    o_proj = register_module("o_proj", Dense(heads * d, hidden, variant.output_bias));
  }
  Dense q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
};
TORCH_MODULE(LlamaAttention);

struct LlamaMlpImpl : nn::Module {
  LlamaMlpImpl(const ModelConfig& config, bool bias) {
    const int64_t hidden = config.hidden_size, inner = config.intermediate_size;
    gate_proj = register_module("gate_proj", Dense(hidden, inner, bias));
    up_proj = register_module("up_proj", Dense(hidden, inner, bias));
    down_proj = register_module("down_proj", Dense(inner, hidden, bias));
  }
  Dense gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(LlamaMlp);

class LlamaDecoderLayerImpl : public nn::Module {
 public:
  LlamaDecoderLayerImpl(const ModelConfig& config, const LlamaVariant& variant, int64_t index) {
    const double eps = config.layer_norm_eps;
    self_attn = register_module("self_attn", LlamaAttention(config, variant));
    mlp = register_module("mlp", LlamaMlp(config, variant.mlp_bias));
    input_layernorm = register_module("input_layernorm", Norm(config.hidden_size, eps, true));
    post_attention_layernorm = register_module("post_attention_layernorm", Norm(config.hidden_size, eps, true));
    DecoderLayerStyle style;
    style.heads = config.num_attention_heads;
    style.kv_heads = llama_kv_heads(config);
    style.head_dim = llama_head_dim(config);
    style.attention_scale = 1.0 / std::sqrt(static_cast<double>(style.head_dim));  // head_dim ** -0.5
    style.rope = true;
    style.sliding = llama_layer_window(config, index) > 0;
    style.activation = parse_activation(config.hidden_act, config.source);
    style.attention_dropout = config.number("attention_dropout");
    DecoderLayerParts parts;
    parts.attention_norm = input_layernorm;
    parts.query = self_attn->q_proj;
    parts.key = self_attn->k_proj;
    parts.value = self_attn->v_proj;
    parts.attention_output = self_attn->o_proj;
    parts.mlp_norm = post_attention_layernorm;
    parts.gate = mlp->gate_proj;
    parts.up = mlp->up_proj;
    parts.mlp_out = mlp->down_proj;
    kernel_ = std::make_unique<DecoderLayerKernel>(parts, style);
  }
  torch::Tensor forward(const torch::Tensor& hidden, const DecoderInputs& inputs) {
    return kernel_->forward(hidden, inputs, is_training());
  }

  LlamaAttention self_attn{nullptr};
  LlamaMlp mlp{nullptr};
  Norm input_layernorm{nullptr}, post_attention_layernorm{nullptr};

 private:
  std::unique_ptr<DecoderLayerKernel> kernel_;
};
TORCH_MODULE(LlamaDecoderLayer);

class LlamaForQuestionAnswering : public DecoderQaModel {
 public:
  LlamaForQuestionAnswering(const ModelConfig& config, const LlamaVariant& variant) : DecoderQaModel(config) {
    const ModelConfig& c = this->config();
    const nlohmann::json* pad = llama_key(c, "pad_token_id");
    const int64_t padding_idx = pad != nullptr && pad->is_number_integer() ? pad->get<int64_t>() : -1;
    auto base = std::make_shared<nn::Module>();
    embed_tokens_ = base->register_module("embed_tokens", TokenEmbedding(c.vocab_size, c.hidden_size, padding_idx));
    nn::ModuleList list;
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      layers_.emplace_back(c, variant, i);
      list->push_back(layers_.back());
      if (sliding_window_ == 0) sliding_window_ = llama_layer_window(c, i);
    }
    base->register_module("layers", list);
    final_norm_ = base->register_module("norm", Norm(c.hidden_size, c.layer_norm_eps, true));
    register_module(variant.base_prefix, base);
    register_qa_head();
    rope_ = rotary_embedding(c, llama_head_dim(c));
    init_weights_unless_loading();
  }

 protected:
  torch::Tensor embed(const EncoderBatch& batch, const LayerInputs&) override { return embed_tokens_(batch.input_ids); }

  torch::Tensor layer(int64_t index, const torch::Tensor& hidden, const LayerInputs& inputs) override {
    return layers_[static_cast<size_t>(index)]->forward(hidden, static_cast<const DecoderInputs&>(inputs));
  }

 private:
  TokenEmbedding embed_tokens_{nullptr};
  std::vector<LlamaDecoderLayer> layers_;
};

// transformers 4.57.5's LlamaConfig defaults.
nlohmann::json llama_config_defaults() {
  return {{"vocab_size", 32000},
          {"hidden_size", 4096},
          {"intermediate_size", 11008},
          {"num_hidden_layers", 32},
          {"num_attention_heads", 32},
          {"num_key_value_heads", nullptr},
          {"hidden_act", "silu"},
          {"max_position_embeddings", 2048},
          {"initializer_range", 0.02},
          {"rms_norm_eps", 1e-6},
          {"pad_token_id", nullptr},
          {"bos_token_id", 1},
          {"eos_token_id", 2},
          {"pretraining_tp", 1},
          {"tie_word_embeddings", false},
          {"rope_theta", 10000.0},
          {"rope_scaling", nullptr},
          {"attention_bias", false},
          {"attention_dropout", 0.0},
          {"mlp_bias", false},
          {"head_dim", nullptr}};
}

DecoderShape llama_shape(const ModelConfig& c, const LlamaVariant& v) {
  DecoderShape s;
  s.hidden = static_cast<double>(c.hidden_size);
  s.heads = static_cast<double>(c.num_attention_heads);
  s.kv_heads = static_cast<double>(llama_kv_heads(c));
  s.head_dim = static_cast<double>(llama_head_dim(c));
  s.intermediate = static_cast<double>(c.intermediate_size);
  s.gated = true;
  s.qkv_bias = v.qkv_bias, s.output_bias = v.output_bias, s.mlp_bias = v.mlp_bias;
  return s;
}

ModelFamily make_llama_family() {
  ModelFamily f;
  f.model_type = "llama";
  f.base_prefix = "transformer";
  f.checkpoint_prefixes = {"model"};
  f.tokenizer = "tokenizer.json";
  f.example = "meta-llama/Llama-3.2-1B";
  f.architecture = "LlamaForQuestionAnswering";
  f.keys.type_vocab_size = "";
  f.keys.layer_norm_eps = "rms_norm_eps";
  f.defaults = llama_config_defaults();
  auto llama3 = [](double factor) {
    return nlohmann::json{{"rope_type", "llama3"},
                          {"factor", factor},
                          {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 8192}};
  };
  auto shape = [](int64_t hidden, int64_t inner, int64_t layers, int64_t heads, int64_t kv, int64_t vocab) {
    return nlohmann::json{{"model_type", "llama"},        {"architectures", {"LlamaForCausalLM"}},
                          {"hidden_size", hidden},        {"intermediate_size", inner},
                          {"num_hidden_layers", layers},  {"num_attention_heads", heads},
                          {"num_key_value_heads", kv},    {"vocab_size", vocab},
                          {"hidden_act", "silu"},         {"rms_norm_eps", 1e-5}};
  };
  auto llama3_shape = [&](int64_t hidden, int64_t inner, int64_t layers, int64_t heads, double factor, bool tied) {
    auto config = shape(hidden, inner, layers, heads, 8, 128256);
    config.update({{"head_dim", hidden / heads},
                   {"max_position_embeddings", 131072},
                   {"rope_theta", 500000.0},
                   {"rope_scaling", llama3(factor)},
                   {"tie_word_embeddings", tied},
                   {"bos_token_id", 128000},
                   {"eos_token_id", 128001}});
    return config;
  };
  auto llama2 = shape(4096, 11008, 32, 32, 32, 32000);
  llama2.update({{"max_position_embeddings", 4096}, {"bos_token_id", 1}, {"eos_token_id", 2}});
  auto tinyllama = shape(2048, 5632, 22, 32, 4, 32000);
  tinyllama.update({{"max_position_embeddings", 2048}, {"bos_token_id", 1}, {"eos_token_id", 2}});
  f.published = {{"meta-llama/Llama-3.2-1B", llama3_shape(2048, 8192, 16, 32, 32.0, true)},
                 {"meta-llama/Llama-3.2-3B", llama3_shape(3072, 8192, 28, 24, 32.0, true)},
                 {"meta-llama/Llama-3.1-8B", llama3_shape(4096, 14336, 32, 32, 8.0, false)},
                 {"meta-llama/Llama-2-7b-hf", llama2},
                 {"TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T", tinyllama}};
  f.takes_token_type_ids = false;
  f.null_position = "last";  // docs/decoders.md: the layout and why
  f.creates_in_weights_dtype = true;
  f.validate = validate_llama;
  f.create = [](const ModelConfig& config) { return create_llama_model(config, llama_variant(config)); };
  f.parameters = [](const ModelConfig& config) { return llama_parameters(config, llama_variant(config)); };
  f.forward_flops = llama_forward_flops;
  return f;
}

}  // namespace

LlamaVariant llama_variant(const ModelConfig& config) {
  LlamaVariant variant;
  variant.qkv_bias = variant.output_bias = config.boolean("attention_bias");
  variant.mlp_bias = config.boolean("mlp_bias");
  return variant;
}

int64_t llama_head_dim(const ModelConfig& config) {
  if (llama_key(config, "head_dim")) return config.integer("head_dim");
  return config.hidden_size / config.num_attention_heads;
}

int64_t llama_kv_heads(const ModelConfig& config) {
  if (llama_key(config, "num_key_value_heads")) return config.integer("num_key_value_heads");
  return config.num_attention_heads;
}

int64_t llama_layer_window(const ModelConfig& config, int64_t index) {
  const nlohmann::json* window = llama_key(config, "sliding_window");
  if (const nlohmann::json* types = llama_key(config, "layer_types")) {
    if (!types->is_array() || static_cast<int64_t>(types->size()) != config.num_hidden_layers)
      throw Error(config.source + ": layer_types must list one type per layer (" +
                  std::to_string(config.num_hidden_layers) + ")");
    const auto& type = (*types)[static_cast<size_t>(index)];
    if (type == "full_attention") return 0;
    if (type != "sliding_attention")
      throw Error(config.source + ": layer_types entry " + type.dump() +
                  " is not one of full_attention, sliding_attention");
    if (window == nullptr) throw Error(config.source + ": layer_types has sliding layers but sliding_window is null");
    return config.integer("sliding_window");
  }
  if (window == nullptr) return 0;
  if (config.object.contains("use_sliding_window")) {  // Qwen2: from max_window_layers on, when used
    if (!config.boolean("use_sliding_window")) return 0;
    return index >= config.integer("max_window_layers") ? config.integer("sliding_window") : 0;
  }
  return config.integer("sliding_window");  // Mistral: every layer
}

std::shared_ptr<QaModel> create_llama_model(const ModelConfig& config, const LlamaVariant& variant) {
  return std::make_shared<LlamaForQuestionAnswering>(config, variant);
}

void validate_llama(const ModelConfig& config) {
  const int64_t kv = llama_kv_heads(config), d = llama_head_dim(config);
  if (kv <= 0 || config.num_attention_heads % kv != 0)
    throw Error(config.source + ": num_key_value_heads " + std::to_string(kv) +
                " must divide num_attention_heads " + std::to_string(config.num_attention_heads));
  if (d <= 0) throw Error(config.source + ": head_dim must be positive");
  config.probability("attention_dropout");
  for (const char* key : {"attention_bias", "mlp_bias"})
    if (config.object.contains(key)) config.boolean(key);
  validate_rope(config, d);
  for (int64_t i = 0; i < config.num_hidden_layers; ++i)
    if (llama_layer_window(config, i) < 0) throw Error(config.source + ": sliding_window must be positive");
}

double llama_parameters(const ModelConfig& c, const LlamaVariant& variant) {
  const double H = static_cast<double>(c.hidden_size);
  return static_cast<double>(c.vocab_size) * H +
         static_cast<double>(c.num_hidden_layers) * decoder_layer_parameters(llama_shape(c, variant)) + H + 2 * H + 2;
}

double llama_forward_flops(const ModelConfig& c, int64_t tokens) {
  const double T = static_cast<double>(tokens), H = static_cast<double>(c.hidden_size);
  return static_cast<double>(c.num_hidden_layers) * decoder_layer_flops(llama_shape(c, {}), tokens) + 2.0 * T * H * 2;
}

const ModelFamily& llama_family() {
  static const ModelFamily family = make_llama_family();
  return family;
}

// Mistral (transformers 4.57.5's MistralConfig): Llama's modules without biases, every layer
// attending within sliding_window where one is set (a window longer than the sequence changes nothing).
namespace {

ModelFamily make_mistral_family() {
  ModelFamily f = llama_family();
  f.model_type = "mistral";
  f.base_prefix = "model";
  f.checkpoint_prefixes = {"transformer"};
  f.example = "mistralai/Mistral-7B-v0.1";
  f.architecture = "MistralForQuestionAnswering";
  f.defaults = {{"vocab_size", 32000},
                {"hidden_size", 4096},
                {"intermediate_size", 14336},
                {"num_hidden_layers", 32},
                {"num_attention_heads", 32},
                {"num_key_value_heads", 8},
                {"head_dim", nullptr},
                {"hidden_act", "silu"},
                {"max_position_embeddings", 4096 * 32},
                {"initializer_range", 0.02},
                {"rms_norm_eps", 1e-6},
                {"pad_token_id", nullptr},
                {"bos_token_id", 1},
                {"eos_token_id", 2},
                {"tie_word_embeddings", false},
                {"rope_theta", 10000.0},
                {"rope_scaling", nullptr},
                // MistralConfig's default is 4096, but a null in config.json (Mistral v0.2 on) means no
                // window, and null keys take the defaults here: null it is.
                {"sliding_window", nullptr},
                {"attention_dropout", 0.0}};
  f.published = {{"mistralai/Mistral-7B-v0.1",
                  {{"model_type", "mistral"},
                   {"architectures", {"MistralForCausalLM"}},
                   {"hidden_size", 4096},
                   {"intermediate_size", 14336},
                   {"num_hidden_layers", 32},
                   {"num_attention_heads", 32},
                   {"num_key_value_heads", 8},
                   {"max_position_embeddings", 32768},
                   {"rms_norm_eps", 1e-5},
                   {"sliding_window", 4096},
                   {"vocab_size", 32000}}}};
  const LlamaVariant plain{"model", false, false, false};
  f.create = [plain](const ModelConfig& config) { return create_llama_model(config, plain); };
  f.parameters = [plain](const ModelConfig& config) { return llama_parameters(config, plain); };
  return f;
}

}  // namespace

const ModelFamily& mistral_family() {
  static const ModelFamily family = make_mistral_family();
  return family;
}

}  // namespace layerprobe
