// GPT-2 (transformers 4.57.5's modeling_gpt2.py): token + learned position
// embeddings, pre-LayerNorm decoder blocks with causal attention, Conv1D
// weights stored [in, out], a final LayerNorm (ln_f). GPT2ForQuestionAnswering
// keeps the base model under "transformer." (as GPT2LMHeadModel does; a
// GPT2Model checkpoint has bare keys). Modules carry HF's names:
// transformer.{wte,wpe}, transformer.h.<i>.{ln_1,attn.c_attn,attn.c_proj,ln_2,mlp.c_fc,mlp.c_proj},
// transformer.ln_f, qa_outputs. hidden_states[L] is after ln_f, as HF's.
#include <cmath>

#include "layerprobe/core/common.hpp"
#include "layerprobe/model/family.hpp"
#include "model/decoder.hpp"

namespace layerprobe {

namespace nn = torch::nn;

namespace {

struct Gpt2AttentionImpl : nn::Module {
  explicit Gpt2AttentionImpl(int64_t hidden) {
    c_attn = register_module("c_attn", Dense(hidden, 3 * hidden, true, true));
    c_proj = register_module("c_proj", Dense(hidden, hidden, true, true));
  }
  Dense c_attn{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(Gpt2Attention);

struct Gpt2MlpImpl : nn::Module {
  Gpt2MlpImpl(int64_t hidden, int64_t inner) {
    c_fc = register_module("c_fc", Dense(hidden, inner, true, true));
    c_proj = register_module("c_proj", Dense(inner, hidden, true, true));
  }
  Dense c_fc{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(Gpt2Mlp);

class Gpt2BlockImpl : public nn::Module {
 public:
  Gpt2BlockImpl(const ModelConfig& config, int64_t index) {
    const int64_t hidden = config.hidden_size;
    ln_1 = register_module("ln_1", Norm(hidden, config.layer_norm_eps, false));
    attn = register_module("attn", Gpt2Attention(hidden));
    ln_2 = register_module("ln_2", Norm(hidden, config.layer_norm_eps, false));
    mlp = register_module("mlp", Gpt2Mlp(hidden, config.intermediate_size));
    DecoderLayerStyle style;
    style.heads = style.kv_heads = config.num_attention_heads;
    style.head_dim = hidden / config.num_attention_heads;
    style.attention_scale = 1.0;
    if (config.boolean("scale_attn_weights")) style.attention_scale /= std::sqrt(static_cast<double>(style.head_dim));
    if (config.boolean("scale_attn_by_inverse_layer_idx")) style.attention_scale /= static_cast<double>(index + 1);
    style.activation = parse_activation(config.hidden_act, config.source);
    style.attention_dropout = config.number("attn_pdrop");
    style.residual_dropout = config.number("resid_pdrop");
    DecoderLayerParts parts;
    parts.attention_norm = ln_1;
    parts.qkv = attn->c_attn;
    parts.attention_output = attn->c_proj;
    parts.mlp_norm = ln_2;
    parts.mlp_in = mlp->c_fc;
    parts.mlp_out = mlp->c_proj;
    kernel_ = std::make_unique<DecoderLayerKernel>(parts, style);
  }
  torch::Tensor forward(const torch::Tensor& hidden, const DecoderInputs& inputs) {
    return kernel_->forward(hidden, inputs, is_training());
  }

  Norm ln_1{nullptr}, ln_2{nullptr};
  Gpt2Attention attn{nullptr};
  Gpt2Mlp mlp{nullptr};

 private:
  std::unique_ptr<DecoderLayerKernel> kernel_;
};
TORCH_MODULE(Gpt2Block);

class Gpt2ForQuestionAnswering : public DecoderQaModel {
 public:
  explicit Gpt2ForQuestionAnswering(const ModelConfig& config) : DecoderQaModel(config) {
    const ModelConfig& c = this->config();
    auto transformer = std::make_shared<nn::Module>();
    wte_ = transformer->register_module("wte", TokenEmbedding(c.vocab_size, c.hidden_size));
    wpe_ = transformer->register_module("wpe", TokenEmbedding(c.max_position_embeddings, c.hidden_size));
    nn::ModuleList list;
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      blocks_.emplace_back(c, i);
      list->push_back(blocks_.back());
    }
    transformer->register_module("h", list);
    final_norm_ = transformer->register_module("ln_f", Norm(c.hidden_size, c.layer_norm_eps, false));
    register_module("transformer", transformer);
    register_qa_head();
    embedding_dropout_ = c.number("embd_pdrop");
    init_weights_unless_loading();
  }

 protected:
  torch::Tensor embed(const EncoderBatch& batch, const LayerInputs&) override {
    const auto positions = torch::arange(batch.length(), batch.input_ids.options()).unsqueeze(0);
    return torch::dropout(wte_(batch.input_ids) + wpe_(positions), embedding_dropout_, is_training());
  }

  torch::Tensor layer(int64_t index, const torch::Tensor& hidden, const LayerInputs& inputs) override {
    return blocks_[static_cast<size_t>(index)]->forward(hidden, static_cast<const DecoderInputs&>(inputs));
  }

  // _init_weights' special case: every c_proj weight ~ N(0, initializer_range / sqrt(2 n_layer)).
  void init_family_weights() override {
    const double std =
        config().initializer_range / std::sqrt(2.0 * static_cast<double>(config().num_hidden_layers));
    for (auto& block : blocks_) {
      block->attn->c_proj->weight.normal_(0.0, std);
      block->mlp->c_proj->weight.normal_(0.0, std);
    }
  }

 private:
  TokenEmbedding wte_{nullptr}, wpe_{nullptr};
  std::vector<Gpt2Block> blocks_;
  double embedding_dropout_ = 0;
};

// transformers 4.57.5's GPT2Config defaults.
nlohmann::json gpt2_config_defaults() {
  return {{"vocab_size", 50257},
          {"n_positions", 1024},
          {"n_embd", 768},
          {"n_layer", 12},
          {"n_head", 12},
          {"n_inner", nullptr},
          {"activation_function", "gelu_new"},
          {"resid_pdrop", 0.1},
          {"embd_pdrop", 0.1},
          {"attn_pdrop", 0.1},
          {"layer_norm_epsilon", 1e-5},
          {"initializer_range", 0.02},
          {"scale_attn_weights", true},
          {"scale_attn_by_inverse_layer_idx", false},
          {"reorder_and_upcast_attn", false},
          {"bos_token_id", 50256},
          {"eos_token_id", 50256}};
}

void derive_gpt2(ModelConfig& config) {
  auto inner = config.object.find("n_inner");
  if (inner == config.object.end() || inner->is_null()) {
    config.intermediate_size = 4 * config.hidden_size;
  } else {
    config.intermediate_size = config.integer("n_inner");
  }
}

void validate_gpt2(const ModelConfig& config) {
  for (const char* key : {"resid_pdrop", "embd_pdrop", "attn_pdrop"}) config.probability(key);
  for (const char* key : {"scale_attn_weights", "scale_attn_by_inverse_layer_idx"}) config.boolean(key);
}

DecoderShape gpt2_shape(const ModelConfig& c) {
  DecoderShape s;
  s.hidden = static_cast<double>(c.hidden_size);
  s.heads = s.kv_heads = static_cast<double>(c.num_attention_heads);
  s.head_dim = s.hidden / s.heads;
  s.intermediate = static_cast<double>(c.intermediate_size);
  s.qkv_bias = s.output_bias = s.mlp_bias = s.norm_bias = 1;
  return s;
}

double gpt2_parameters(const ModelConfig& c) {
  const double H = static_cast<double>(c.hidden_size);
  const double embeddings = (static_cast<double>(c.vocab_size) + static_cast<double>(c.max_position_embeddings)) * H;
  return embeddings + static_cast<double>(c.num_hidden_layers) * decoder_layer_parameters(gpt2_shape(c)) + 2 * H +
         2 * H + 2;
}

double gpt2_forward_flops(const ModelConfig& c, int64_t tokens) {
  const double T = static_cast<double>(tokens), H = static_cast<double>(c.hidden_size);
  return static_cast<double>(c.num_hidden_layers) * decoder_layer_flops(gpt2_shape(c), tokens) + 2.0 * T * H * 2;
}

ModelFamily make_gpt2_family() {
  ModelFamily f;
  f.model_type = "gpt2";
  f.base_prefix = "transformer";
  f.tokenizer = "gpt2";
  f.example = "gpt2";
  f.architecture = "GPT2ForQuestionAnswering";
  f.keys.hidden_size = "n_embd";
  f.keys.num_hidden_layers = "n_layer";
  f.keys.num_attention_heads = "n_head";
  f.keys.intermediate_size = "";  // n_inner, or 4 x n_embd where null: derive
  f.keys.max_position_embeddings = "n_positions";
  f.keys.type_vocab_size = "";
  f.keys.hidden_act = "activation_function";
  f.keys.layer_norm_eps = "layer_norm_epsilon";
  f.defaults = gpt2_config_defaults();
  auto shape = [](int64_t hidden, int64_t layers, int64_t heads) {
    return nlohmann::json{{"model_type", "gpt2"},   {"architectures", {"GPT2LMHeadModel"}},
                          {"n_embd", hidden},       {"n_layer", layers},
                          {"n_head", heads},        {"vocab_size", 50257},
                          {"n_positions", 1024},    {"activation_function", "gelu_new"},
                          {"bos_token_id", 50256},  {"eos_token_id", 50256}};
  };
  f.published = {{"gpt2", shape(768, 12, 12)},
                 {"distilgpt2", shape(768, 6, 12)},
                 {"gpt2-medium", shape(1024, 24, 16)},
                 {"gpt2-large", shape(1280, 36, 20)},
                 {"gpt2-xl", shape(1600, 48, 25)}};
  f.takes_token_type_ids = false;
  f.null_position = "last";  // docs/decoders.md: the layout and why
  f.creates_in_weights_dtype = true;
  f.derive = derive_gpt2;
  f.validate = validate_gpt2;
  f.create = [](const ModelConfig& config) { return std::make_shared<Gpt2ForQuestionAnswering>(config); };
  f.parameters = gpt2_parameters;
  f.forward_flops = gpt2_forward_flops;
  return f;
}

}  // namespace

const ModelFamily& gpt2_family() {
  static const ModelFamily family = make_gpt2_family();
  return family;
}

}  // namespace layerprobe
