#include "model/layers.hpp"

#include <atomic>
#include <cmath>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/model/qa_model.hpp"
#include "model/onednn.hpp"

namespace layerprobe {

namespace nn = torch::nn;

namespace {

std::atomic<bool> g_fast_cpu_path{true};

// A linear layer whose forward and backward products run as oneDNN inner products.
class OneDnnLinear : public torch::autograd::Function<OneDnnLinear> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias) {
    auto sizes = x.sizes().vec();
    auto flat = x.reshape({-1, x.size(-1)}).contiguous().to_mkldnn();
    ctx->saved_data["input"] = flat;
    ctx->saved_data["input_sizes"] = sizes;
    ctx->saved_data["has_bias"] = bias.defined();
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
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    auto [grad_weight, grad_bias] = at::mkldnn_linear_backward_weights(grad, input, weight, has_bias);
    return {grad_input, dense(grad_weight), has_bias ? dense(grad_bias) : torch::Tensor()};
  }
};

}  // namespace

FusedActivation fused_activation(Activation activation) {
  switch (activation) {
    case Activation::Gelu:
      return FusedActivation::GeluErf;
    case Activation::GeluNew:
      return FusedActivation::GeluTanh;
    case Activation::Relu:
      return FusedActivation::Relu;
    case Activation::Swish:
      return FusedActivation::Swish;
    case Activation::Mish:
      return FusedActivation::Mish;
  }
  throw Error("unhandled activation");
}

namespace {

const std::pair<const char*, Activation> kActivations[] = {{"gelu", Activation::Gelu},
                                                           {"gelu_new", Activation::GeluNew},
                                                           {"relu", Activation::Relu},
                                                           {"swish", Activation::Swish},
                                                           {"silu", Activation::Swish},
                                                           {"mish", Activation::Mish}};

}  // namespace

void set_fast_cpu_path(bool enabled) { g_fast_cpu_path = enabled; }
bool fast_cpu_path_enabled() { return g_fast_cpu_path; }

bool is_supported_activation(const std::string& name) {
  for (const auto& [known, value] : kActivations)
    if (name == known) return true;
  return false;
}

Activation parse_activation(const std::string& name, const std::string& source) {
  for (const auto& [known, value] : kActivations)
    if (name == known) return value;
  throw Error(source + ": unknown activation '" + name + "' (supported: gelu, gelu_new, relu, swish, silu, mish)");
}

torch::Tensor apply_activation(const torch::Tensor& x, Activation activation) {
  // Written as transformers 2.5.1 writes them, so rounding matches too.
  switch (activation) {
    case Activation::Gelu:
      return torch::gelu(x);
    case Activation::GeluNew:
      return 0.5 * x * (1.0 + torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * torch::pow(x, 3))));
    case Activation::Relu:
      return torch::relu(x);
    case Activation::Swish:
      return x * torch::sigmoid(x);
    case Activation::Mish:
      return x * torch::tanh(torch::softplus(x));
  }
  throw Error("unhandled activation");
}

torch::Tensor additive_attention_mask(const torch::Tensor& attention_mask, torch::Dtype dtype, double masked_value) {
  auto padding = attention_mask.eq(0).unsqueeze(1).unsqueeze(2);
  return torch::zeros(padding.sizes(), torch::TensorOptions().dtype(dtype).device(attention_mask.device()))
      .masked_fill_(padding, masked_value);
}

torch::Tensor linear(nn::Linear& layer, const torch::Tensor& x) {
  // Under CPU autocast (run_squad --bf16) a float32 input keeps this path (its backward is oneDNN's
  // too); a bf16 one goes to torch::linear, which autocast runs in bf16. (Sending every linear to bf16
  // feeds LayerNorm a bf16 input with float32 weights, which LibTorch 1.13's CPU kernel refuses.)
  const bool onednn = g_fast_cpu_path && torch::GradMode::is_enabled() && at::hasMKLDNN() && x.device().is_cpu() &&
                      x.scalar_type() == torch::kFloat32 && x.numel() > 0 &&
                      (x.requires_grad() || layer->weight.requires_grad());
  // An autograd Function takes no undefined inputs: a missing bias (ModernBERT's) is a zero one without a gradient.
  if (!onednn) return layer->forward(x);
  const auto& bias = layer->bias;
  return OneDnnLinear::apply(x, layer->weight,
                             bias.defined() ? bias : torch::zeros({layer->weight.size(0)}, layer->weight.options()));
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  const bool onednn = g_fast_cpu_path && torch::GradMode::is_enabled() && at::hasMKLDNN() && x.device().is_cpu() &&
                      x.scalar_type() == torch::kFloat32 && weight.scalar_type() == torch::kFloat32 &&
                      x.numel() > 0 && (x.requires_grad() || weight.requires_grad());
  if (!onednn) return torch::linear(x, weight, bias);
  // An autograd Function takes no undefined inputs: a missing bias is a zero one without a gradient.
  return OneDnnLinear::apply(x, weight, bias.defined() ? bias : torch::zeros({weight.size(0)}, weight.options()));
}

void init_linear(nn::LinearImpl& linear, double std) {
  linear.weight.normal_(0.0, std);
  if (linear.bias.defined()) linear.bias.zero_();
}

void init_embedding_zero_padding(nn::EmbeddingImpl& embedding, double std) {
  embedding.weight.normal_(0.0, std);
  if (embedding.options.padding_idx()) embedding.weight[*embedding.options.padding_idx()].zero_();
}

nn::LayerNorm make_layer_norm(int64_t size, double eps) {
  return nn::LayerNorm(nn::LayerNormOptions({size}).eps(eps));
}

namespace {
thread_local torch::Dtype t_creation_dtype = torch::kFloat32;
thread_local bool t_creation_initialises = true;
}  // namespace

ModelCreation::ModelCreation(torch::Dtype dtype, bool initialise)
    : saved_dtype_(t_creation_dtype), saved_initialise_(t_creation_initialises) {
  t_creation_dtype = dtype;
  t_creation_initialises = initialise;
}

ModelCreation::~ModelCreation() {
  t_creation_dtype = saved_dtype_;
  t_creation_initialises = saved_initialise_;
}

torch::Dtype ModelCreation::dtype() { return t_creation_dtype; }
bool ModelCreation::initialise() { return t_creation_initialises; }

torch::Tensor token_types_or_zeros(const torch::Tensor& token_type_ids, const torch::Tensor& input_ids) {
  return token_type_ids.defined() ? token_type_ids : torch::zeros_like(input_ids);
}

// --- the transformer layer ---------------------------------------------------------

torch::Tensor TransformerLayerKernel::attention_context(torch::Tensor q, torch::Tensor k, torch::Tensor v,
                                                        const torch::Tensor& additive_mask, bool training) const {
  // q, k, v: [B,heads,T,d] (or [B*heads,T,d]); returns the context in q's layout.
  const double scale = std::sqrt(static_cast<double>(q.size(-1)));
  torch::Tensor scores;
  if (style_.scale_query_first) {
    scores = torch::matmul(q / scale, k.transpose(-1, -2));
  } else {
    scores = torch::matmul(q, k.transpose(-1, -2)) / scale;
  }
  const auto sizes = scores.sizes().vec();
  scores = (scores.view({additive_mask.size(0), -1, sizes[sizes.size() - 2], sizes.back()}) +
            additive_mask.to(scores.scalar_type()))
               .view(sizes);
  auto probs = torch::dropout(torch::softmax(scores, -1), style_.attention_dropout, training);
  return torch::matmul(probs, v);
}

torch::Tensor TransformerLayerKernel::reference_forward(const torch::Tensor& hidden,
                                                        const torch::Tensor& additive_mask, bool training) {
  const int64_t batch = hidden.size(0), length = hidden.size(1), width = hidden.size(2);
  const int64_t head_size = width / style_.heads;
  auto split_heads = [&](const torch::Tensor& x) {
    return x.view({batch, length, style_.heads, head_size}).permute({0, 2, 1, 3});
  };
  auto context = attention_context(split_heads(linear(parts_.query, hidden)), split_heads(linear(parts_.key, hidden)),
                                   split_heads(linear(parts_.value, hidden)), additive_mask, training)
                     .permute({0, 2, 1, 3})
                     .contiguous()
                     .view({batch, length, width});
  auto projected = torch::dropout(linear(parts_.attention_output, context), style_.attention_output_dropout, training);
  auto attention = parts_.attention_norm(projected + hidden);
  auto inner = apply_activation(linear(parts_.intermediate, attention), style_.activation);
  auto output = torch::dropout(linear(parts_.output, inner), style_.output_dropout, training);
  return parts_.output_norm(output + attention);
}

bool TransformerLayerKernel::use_fast_path(const torch::Tensor& hidden, bool training) const {
  const auto dtype = hidden.scalar_type();
  return g_fast_cpu_path && !training && !torch::GradMode::is_enabled() && at::hasMKLDNN() &&
         hidden.device().is_cpu() && (dtype == torch::kFloat32 || dtype == torch::kBFloat16) && hidden.numel() > 0;
}

const TransformerLayerKernel::Prepared& TransformerLayerKernel::prepared(torch::ScalarType dtype) {
  const LayerParts& p = parts_;
  // The linears' parameters (LayerNorm reads its own as they are).
  const torch::Tensor* sources[] = {&p.query->weight,        &p.query->bias,           &p.key->weight,
                                    &p.key->bias,            &p.value->weight,         &p.value->bias,
                                    &p.attention_output->weight, &p.attention_output->bias,
                                    &p.intermediate->weight, &p.intermediate->bias,    &p.output->weight,
                                    &p.output->bias};
  std::vector<std::pair<const void*, uint32_t>> source;
  for (const torch::Tensor* t : sources) source.emplace_back(t->data_ptr(), static_cast<uint32_t>(t->_version()));
  // One set per dtype in use (the bench's --compare-precision alternates two); a parameter change drops them all.
  if (!prepared_.empty() && prepared_.front().source != source) prepared_.clear();
  for (const Prepared& w : prepared_)
    if (w.dtype == dtype) return w;
  Prepared& w = prepared_.emplace_back();
  auto packed = [&](const torch::nn::Linear& l) { return PackedLinear(l->weight, l->bias, dtype); };
  w.qkv = PackedLinear(torch::cat({p.query->weight, p.key->weight, p.value->weight}),
                       torch::cat({p.query->bias, p.key->bias, p.value->bias}), dtype);
  w.attention_output = packed(p.attention_output);
  w.intermediate = packed(p.intermediate);
  w.output = packed(p.output);
  w.dtype = dtype;
  w.source = std::move(source);
  return w;
}

torch::Tensor TransformerLayerKernel::fast_forward(const torch::Tensor& hidden, const torch::Tensor& additive_mask) {
  const Prepared& w = prepared(cpu_compute_dtype());
  const int64_t batch = hidden.size(0), length = hidden.size(1), width = hidden.size(2);
  auto norm = [](const torch::Tensor& x, const torch::nn::LayerNorm& module) {
    return layer_norm(x, module->weight, module->bias, module->options.eps());
  };
  // int8 (kChar): the products quantise their float32 inputs themselves; all else runs in float32.
  const torch::ScalarType activations = w.dtype == torch::kChar ? torch::kFloat : w.dtype;
  const torch::Tensor flat = hidden.to(activations).reshape({batch * length, width});
  const torch::Tensor context = onednn_attention(w.qkv.forward(flat), additive_mask, batch, length, style_.heads);
  const torch::Tensor attention =
      norm(w.attention_output.forward(context, FusedActivation::None, flat), parts_.attention_norm);
  const torch::Tensor inner = w.intermediate.forward(attention, fused_activation(style_.activation));
  return norm(w.output.forward(inner, FusedActivation::None, attention), parts_.output_norm)
      .view({batch, length, width});
}

torch::Tensor TransformerLayerKernel::forward(const torch::Tensor& hidden, const torch::Tensor& additive_mask,
                                              bool training) {
  if (use_fast_path(hidden, training)) return fast_forward(hidden, additive_mask);
  return reference_forward(hidden, additive_mask, training);
}

}  // namespace layerprobe
