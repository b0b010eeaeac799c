#include "layerprobe/model/encoder.hpp"

#include <atomic>
#include <cmath>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

namespace nn = torch::nn;

namespace {

nn::LayerNorm make_layer_norm(int64_t size, double eps) {
  return nn::LayerNorm(nn::LayerNormOptions({size}).eps(eps));
}

void init_linear(nn::LinearImpl& linear, double std) {
  linear.weight.normal_(0.0, std);
  if (linear.bias.defined()) linear.bias.zero_();
}

std::atomic<bool> g_fast_cpu_path{true};

// Debian's LibTorch multiplies through the system BLAS; oneDNN's inner
// product reaches several times its speed on these shapes. x is [N,in].
torch::Tensor onednn_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  return torch::mkldnn_linear(x.contiguous().to_mkldnn(), weight, bias).to_dense();
}

// A linear layer whose forward and backward products run as oneDNN inner
// products: Debian's LibTorch would run them through BLAS, on one thread.
class OneDnnLinear : public torch::autograd::Function<OneDnnLinear> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias) {
    auto sizes = x.sizes().vec();
    auto flat = x.reshape({-1, x.size(-1)}).contiguous().to_mkldnn();
    ctx->saved_data["input"] = flat;
    ctx->saved_data["input_sizes"] = sizes;
    ctx->save_for_backward({weight});
    sizes.back() = weight.size(0);
    return torch::mkldnn_linear(flat, weight.contiguous(), bias).to_dense().view(sizes);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto input = ctx->saved_data["input"].toTensor();
    const auto input_sizes = ctx->saved_data["input_sizes"].toIntVector();
    const auto weight = ctx->get_saved_variables()[0].contiguous();
    auto grad = grads[0].reshape({-1, weight.size(0)}).contiguous().to_mkldnn();
    auto dense = [](const torch::Tensor& t) { return t.is_mkldnn() ? t.to_dense() : t; };
    auto grad_input = dense(at::mkldnn_linear_backward_input(input.sizes(), grad, weight)).view(input_sizes);
    auto [grad_weight, grad_bias] = at::mkldnn_linear_backward_weights(grad, input, weight, true);
    return {grad_input, dense(grad_weight), dense(grad_bias)};
  }
};

// The activations as single kernels: the same functions as apply_activation
// (within float rounding) without its chain of temporaries.
torch::Tensor fused_activation(const torch::Tensor& x, Activation activation) {
  switch (activation) {
    case Activation::Gelu:
      return torch::gelu(x);
    case Activation::GeluNew:
      return torch::gelu(x, "tanh");
    case Activation::Relu:
      return torch::relu(x);
  }
  throw Error("unhandled activation");
}

// layer(x), through OneDnnLinear when autograd records on the CPU in float32
// and the fast path is on.
torch::Tensor linear(nn::Linear& layer, const torch::Tensor& x) {
  const bool onednn = g_fast_cpu_path && torch::GradMode::is_enabled() && at::hasMKLDNN() && x.device().is_cpu() &&
                      x.scalar_type() == torch::kFloat32 && layer->bias.defined() && x.numel() > 0 &&
                      (x.requires_grad() || layer->weight.requires_grad());
  return onednn ? OneDnnLinear::apply(x, layer->weight, layer->bias) : layer->forward(x);
}

}  // namespace

Activation parse_activation(const std::string& name) {
  if (name == "gelu") return Activation::Gelu;
  if (name == "gelu_new") return Activation::GeluNew;
  if (name == "relu") return Activation::Relu;
  throw Error("unknown activation '" + name + "' (supported: gelu, gelu_new, relu)");
}

torch::Tensor apply_activation(const torch::Tensor& x, Activation activation) {
  // Written as transformers 2.5.1 writes them, so rounding matches too.
  switch (activation) {
    case Activation::Gelu:
      return x * 0.5 * (1.0 + torch::erf(x / std::sqrt(2.0)));
    case Activation::GeluNew:
      return 0.5 * x * (1.0 + torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * torch::pow(x, 3))));
    case Activation::Relu:
      return torch::relu(x);
  }
  throw Error("unhandled activation");
}

int64_t layer_group_index(int64_t layer, int64_t num_layers, int64_t num_groups) {
  return static_cast<int64_t>(static_cast<double>(layer) /
                              (static_cast<double>(num_layers) / static_cast<double>(num_groups)));
}

torch::Tensor additive_attention_mask(const torch::Tensor& attention_mask, torch::Dtype dtype) {
  torch::Tensor mask = attention_mask.unsqueeze(1).unsqueeze(2).to(dtype);
  return (1.0 - mask) * -10000.0;
}

// --- embeddings --------------------------------------------------------------

AlbertEmbeddingsImpl::AlbertEmbeddingsImpl(const AlbertConfig& config) {
  word_embeddings = register_module(
      "word_embeddings",
      nn::Embedding(nn::EmbeddingOptions(config.vocab_size, config.embedding_size).padding_idx(0)));
  position_embeddings = register_module(
      "position_embeddings", nn::Embedding(config.max_position_embeddings, config.embedding_size));
  token_type_embeddings =
      register_module("token_type_embeddings", nn::Embedding(config.type_vocab_size, config.embedding_size));
  LayerNorm = register_module("LayerNorm", make_layer_norm(config.embedding_size, config.layer_norm_eps));
  dropout = register_module("dropout", nn::Dropout(config.hidden_dropout_prob));
}

torch::Tensor AlbertEmbeddingsImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids) {
  const int64_t seq_length = input_ids.size(1);
  torch::Tensor position_ids =
      torch::arange(seq_length, torch::TensorOptions().dtype(torch::kLong).device(input_ids.device()))
          .unsqueeze(0)
          .expand_as(input_ids);
  torch::Tensor embeddings = word_embeddings(input_ids) + position_embeddings(position_ids) +
                             token_type_embeddings(token_type_ids);
  return dropout(LayerNorm(embeddings));
}

// --- attention ---------------------------------------------------------------

AlbertAttentionImpl::AlbertAttentionImpl(const AlbertConfig& config)
    : num_heads(config.num_attention_heads), head_size(config.hidden_size / config.num_attention_heads) {
  const int64_t hidden = config.hidden_size;
  query = register_module("query", nn::Linear(hidden, hidden));
  key = register_module("key", nn::Linear(hidden, hidden));
  value = register_module("value", nn::Linear(hidden, hidden));
  dense = register_module("dense", nn::Linear(hidden, hidden));
  LayerNorm = register_module("LayerNorm", make_layer_norm(hidden, config.layer_norm_eps));
  dropout = register_module("dropout", nn::Dropout(config.attention_probs_dropout_prob));
}

torch::Tensor AlbertAttentionImpl::forward(const torch::Tensor& hidden_states, const torch::Tensor& additive_mask) {
  const int64_t batch = hidden_states.size(0), length = hidden_states.size(1);
  auto split_heads = [&](const torch::Tensor& x) {
    return x.view({batch, length, num_heads, head_size}).permute({0, 2, 1, 3});
  };
  torch::Tensor q = split_heads(linear(query, hidden_states));
  torch::Tensor k = split_heads(linear(key, hidden_states));
  torch::Tensor v = split_heads(linear(value, hidden_states));

  torch::Tensor scores = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(head_size));
  scores = scores + additive_mask;
  torch::Tensor probs = dropout(torch::softmax(scores, -1));
  torch::Tensor context = torch::matmul(probs, v).permute({0, 2, 1, 3}).contiguous();
  // HF's einsum("bfnd,ndh->bfh", context, dense.weight.t().view(n, d, h)) + bias
  // is the dense layer applied to the heads laid side by side.
  torch::Tensor projected = linear(dense, context.view({batch, length, num_heads * head_size}));
  return LayerNorm(hidden_states + dropout(projected));
}

// --- layer, group, transformer ----------------------------------------------------

AlbertLayerImpl::AlbertLayerImpl(const AlbertConfig& config) : activation(parse_activation(config.hidden_act)) {
  full_layer_layer_norm =
      register_module("full_layer_layer_norm", make_layer_norm(config.hidden_size, config.layer_norm_eps));
  attention = register_module("attention", AlbertAttention(config));
  ffn = register_module("ffn", nn::Linear(config.hidden_size, config.intermediate_size));
  ffn_output = register_module("ffn_output", nn::Linear(config.intermediate_size, config.hidden_size));
}

void set_fast_cpu_path(bool enabled) { g_fast_cpu_path = enabled; }
bool fast_cpu_path_enabled() { return g_fast_cpu_path; }

bool AlbertLayerImpl::use_fast_path(const torch::Tensor& hidden_states) const {
  return g_fast_cpu_path && !is_training() && !torch::GradMode::is_enabled() && at::hasMKLDNN() &&
         hidden_states.device().is_cpu() && hidden_states.scalar_type() == torch::kFloat32 &&
         hidden_states.numel() > 0;
}

const AlbertLayerImpl::PreparedWeights& AlbertLayerImpl::prepared_weights() {
  const auto& a = *attention;
  const torch::Tensor* sources[] = {&a.query->weight, &a.query->bias,  &a.key->weight, &a.key->bias,
                                    &a.value->weight, &a.value->bias,  &a.dense->weight, &ffn->weight,
                                    &ffn_output->weight};
  std::vector<std::pair<const void*, uint32_t>> source;
  for (const torch::Tensor* t : sources) source.emplace_back(t->data_ptr(), static_cast<uint32_t>(t->_version()));
  if (prepared_.qkv_weight.defined() && source == prepared_.source) return prepared_;
  prepared_.qkv_weight = torch::cat({a.query->weight, a.key->weight, a.value->weight}).to_mkldnn();
  prepared_.qkv_bias = torch::cat({a.query->bias, a.key->bias, a.value->bias});
  prepared_.dense_weight = a.dense->weight.contiguous().to_mkldnn();
  prepared_.ffn_weight = ffn->weight.contiguous().to_mkldnn();
  prepared_.ffn_output_weight = ffn_output->weight.contiguous().to_mkldnn();
  prepared_.source = std::move(source);
  return prepared_;
}

torch::Tensor AlbertLayerImpl::fast_forward(const torch::Tensor& hidden_states, const torch::Tensor& additive_mask) {
  const PreparedWeights& w = prepared_weights();
  AlbertAttentionImpl& a = *attention;
  const int64_t batch = hidden_states.size(0), length = hidden_states.size(1), hidden = hidden_states.size(2);
  const int64_t heads = a.num_heads, head_size = a.head_size;
  torch::Tensor flat = hidden_states.reshape({batch * length, hidden});
  // [B*T,3H] -> [3,B,heads,T,d]
  torch::Tensor qkv = onednn_linear(flat, w.qkv_weight, w.qkv_bias)
                          .view({batch, length, 3, heads, head_size})
                          .permute({2, 0, 3, 1, 4});
  auto per_head = [&](int64_t i) { return qkv[i].reshape({batch * heads, length, head_size}); };
  torch::Tensor q = per_head(0), k = per_head(1), v = per_head(2);
  // Same order of rounding as the reference: (q k^T) / sqrt(d) + mask.
  torch::Tensor scores = torch::bmm(q, k.transpose(1, 2)).div_(std::sqrt(static_cast<double>(head_size)));
  scores.view({batch, heads, length, length}).add_(additive_mask);
  torch::Tensor context = torch::bmm(torch::softmax(scores, -1), v)
                              .view({batch, heads, length, head_size})
                              .permute({0, 2, 1, 3})
                              .reshape({batch * length, hidden});
  torch::Tensor projected = onednn_linear(context, w.dense_weight, a.dense->bias);
  torch::Tensor attention_output = a.LayerNorm->forward(projected.add_(flat));
  torch::Tensor intermediate = fused_activation(onednn_linear(attention_output, w.ffn_weight, ffn->bias), activation);
  torch::Tensor ffn_hidden = onednn_linear(intermediate, w.ffn_output_weight, ffn_output->bias);
  return full_layer_layer_norm(ffn_hidden.add_(attention_output)).view({batch, length, hidden});
}

torch::Tensor AlbertLayerImpl::forward(const torch::Tensor& hidden_states, const torch::Tensor& additive_mask) {
  if (use_fast_path(hidden_states)) return fast_forward(hidden_states, additive_mask);
  torch::Tensor attention_output = attention(hidden_states, additive_mask);
  torch::Tensor ffn_hidden = linear(ffn_output, apply_activation(linear(ffn, attention_output), activation));
  return full_layer_layer_norm(ffn_hidden + attention_output);
}

AlbertLayerGroupImpl::AlbertLayerGroupImpl(const AlbertConfig& config) {
  nn::ModuleList list;
  for (int64_t j = 0; j < config.inner_group_num; ++j) {
    layers.emplace_back(config);
    list->push_back(layers.back());
  }
  register_module("albert_layers", list);
}

torch::Tensor AlbertLayerGroupImpl::forward(torch::Tensor hidden_states, const torch::Tensor& additive_mask) {
  for (auto& layer : layers) hidden_states = layer(hidden_states, additive_mask);
  return hidden_states;
}

AlbertTransformerImpl::AlbertTransformerImpl(const AlbertConfig& config) : num_layers(config.num_hidden_layers) {
  embedding_hidden_mapping_in =
      register_module("embedding_hidden_mapping_in", nn::Linear(config.embedding_size, config.hidden_size));
  nn::ModuleList list;
  for (int64_t g = 0; g < config.num_hidden_groups; ++g) {
    groups.emplace_back(config);
    list->push_back(groups.back());
  }
  register_module("albert_layer_groups", list);
}

std::vector<torch::Tensor> AlbertTransformerImpl::forward(const torch::Tensor& embeddings,
                                                          const torch::Tensor& additive_mask, bool collect) {
  torch::Tensor hidden_states = linear(embedding_hidden_mapping_in, embeddings);
  std::vector<torch::Tensor> all_hidden_states;
  if (collect) all_hidden_states.push_back(hidden_states);
  const auto num_groups = static_cast<int64_t>(groups.size());
  for (int64_t i = 0; i < num_layers; ++i) {
    // Each of the num_hidden_layers steps runs a whole group (all its inner layers).
    hidden_states = groups[layer_group_index(i, num_layers, num_groups)](hidden_states, additive_mask);
    if (collect) all_hidden_states.push_back(hidden_states);
  }
  if (!collect) all_hidden_states.push_back(hidden_states);
  return all_hidden_states;
}

// --- model and QA head -------------------------------------------------------------

AlbertModelImpl::AlbertModelImpl(const AlbertConfig& config) {
  embeddings = register_module("embeddings", AlbertEmbeddings(config));
  encoder = register_module("encoder", AlbertTransformer(config));
  pooler = register_module("pooler", nn::Linear(config.hidden_size, config.hidden_size));
}

std::vector<torch::Tensor> AlbertModelImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                                                    const torch::Tensor& attention_mask, bool collect) {
  torch::Tensor additive_mask = additive_attention_mask(attention_mask, pooler->weight.scalar_type());
  return encoder(embeddings(input_ids, token_type_ids), additive_mask, collect);
}

AlbertForQuestionAnsweringImpl::AlbertForQuestionAnsweringImpl(const AlbertConfig& config) : config_(config) {
  config_.validate("model configuration");
  albert = register_module("albert", AlbertModel(config_));
  qa_outputs = register_module("qa_outputs", nn::Linear(config_.hidden_size, 2));
  init_weights();
}

EncoderOutput AlbertForQuestionAnsweringImpl::forward(const torch::Tensor& input_ids,
                                                      const torch::Tensor& token_type_ids,
                                                      const torch::Tensor& attention_mask,
                                                      bool collect_hidden_states) {
  if (input_ids.dim() != 2 || token_type_ids.sizes() != input_ids.sizes() ||
      attention_mask.sizes() != input_ids.sizes())
    throw Error("encoder inputs must be three [batch, tokens] tensors of one shape");
  if (input_ids.size(1) > config_.max_position_embeddings)
    throw Error("sequence of " + std::to_string(input_ids.size(1)) + " tokens exceeds max_position_embeddings " +
                std::to_string(config_.max_position_embeddings));
  EncoderOutput output;
  output.hidden_states = albert(input_ids, token_type_ids, attention_mask, collect_hidden_states);
  std::vector<torch::Tensor> logits = qa_outputs(output.hidden_states.back()).split(1, -1);
  output.start_logits = logits[0].squeeze(-1);
  output.end_logits = logits[1].squeeze(-1);
  return output;
}

void AlbertForQuestionAnsweringImpl::init_weights() {
  torch::NoGradGuard no_grad;
  const double std = config_.initializer_range;
  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* linear = module->as<nn::Linear>()) {
      init_linear(*linear, std);
    } else if (auto* embedding = module->as<nn::Embedding>()) {
      embedding->weight.normal_(0.0, std);
    } else if (auto* norm = module->as<nn::LayerNorm>()) {
      norm->weight.fill_(1.0);
      norm->bias.zero_();
    }
  }
}

void AlbertForQuestionAnsweringImpl::init_qa_head() {
  torch::NoGradGuard no_grad;
  init_linear(*qa_outputs, config_.initializer_range);
}

void AlbertForQuestionAnsweringImpl::init_pooler() {
  torch::NoGradGuard no_grad;
  init_linear(*albert->pooler, config_.initializer_range);
}

void validate_encoder_inputs(const AlbertConfig& config, const torch::Tensor& input_ids,
                             const torch::Tensor& token_type_ids, const torch::Tensor& attention_mask) {
  const std::pair<const char*, const torch::Tensor*> named[] = {
      {"input_ids", &input_ids}, {"token_type_ids", &token_type_ids}, {"attention_mask", &attention_mask}};
  for (const auto& [name, tensor] : named) {
    if (!tensor->defined()) throw Error(std::string(name) + " is missing");
    if (tensor->dim() != 2) throw Error(std::string(name) + " must be [batch, tokens], found rank " +
                                        std::to_string(tensor->dim()));
    if (torch::isFloatingType(tensor->scalar_type()) || tensor->scalar_type() == torch::kBool)
      throw Error(std::string(name) + " must be an integer tensor (I64)");
    if (tensor->sizes() != input_ids.sizes())
      throw Error(std::string(name) + " has shape " + c10::str(tensor->sizes()) + " but input_ids has " +
                  c10::str(input_ids.sizes()));
  }
  if (input_ids.size(1) > config.max_position_embeddings)
    throw Error("inputs have " + std::to_string(input_ids.size(1)) + " tokens; the model takes at most " +
                std::to_string(config.max_position_embeddings) + " (max_position_embeddings)");
  if (input_ids.numel() == 0) return;
  auto check_range = [](const char* name, const torch::Tensor& tensor, int64_t limit, const char* limit_name) {
    int64_t low = tensor.min().item<int64_t>(), high = tensor.max().item<int64_t>();
    if (low < 0 || high >= limit)
      throw Error(std::string(name) + " values must lie in [0, " + std::to_string(limit) + ") (" + limit_name +
                  "), found range [" + std::to_string(low) + ", " + std::to_string(high) + "]");
  };
  check_range("input_ids", input_ids, config.vocab_size, "vocab_size");
  check_range("token_type_ids", token_type_ids, config.type_vocab_size, "type_vocab_size");
  check_range("attention_mask", attention_mask, 2, "0 or 1");
}

}  // namespace layerprobe
