// ModernBertLayerKernel: one ModernBERT encoder layer, as HF's op sequence and on oneDNN.
#include <ATen/Parallel.h>

#include <cmath>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/model/qa_model.hpp"
#include "model/modernbert/modernbert.hpp"

namespace layerprobe {

namespace {

// HF's rotate_half(x) = cat(-x2, x1) over the last dimension.
torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

// x * cos + rotate_half(x) * sin with tables [T, d/2] widened to [T, d] as HF's cat((freqs, freqs)).
torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos_half, const torch::Tensor& sin_half) {
  const auto cos = torch::cat({cos_half, cos_half}, -1).to(x.scalar_type());
  const auto sin = torch::cat({sin_half, sin_half}, -1).to(x.scalar_type());
  return x * cos + rotate_half(x) * sin;
}

// RoPE in place on the query and key parts of a fused QKV output [B*T, 3H] (rows [q | k | v], each
// heads x d), position t = row % T; the same products and sums as apply_rotary, element by element.
template <typename Scalar>
void rotate_in_place(Scalar* qkv, const float* cos, const float* sin, int64_t batch, int64_t length, int64_t heads,
                     int64_t dim) {
  const int64_t half = dim / 2, width3 = 3 * heads * dim;
  at::parallel_for(0, batch * length, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const float* c = cos + (row % length) * half;
      const float* s = sin + (row % length) * half;
      Scalar* base = qkv + row * width3;
      for (int64_t part = 0; part < 2 * heads; ++part) {  // the heads of q, then those of k
        Scalar* x = base + part * dim;
        for (int64_t i = 0; i < half; ++i) {
          const float x1 = static_cast<float>(x[i]), x2 = static_cast<float>(x[i + half]);
          x[i] = static_cast<Scalar>(x1 * c[i] - x2 * s[i]);
          x[i + half] = static_cast<Scalar>(x2 * c[i] + x1 * s[i]);
        }
      }
    }
  });
}

void rotate_qkv(const torch::Tensor& qkv, const torch::Tensor& cos, const torch::Tensor& sin, int64_t batch,
                int64_t length, int64_t heads) {
  const int64_t dim = qkv.size(1) / 3 / heads;
  const auto c = cos.contiguous(), s = sin.contiguous();
  if (qkv.scalar_type() == torch::kFloat)
    rotate_in_place(qkv.data_ptr<float>(), c.data_ptr<float>(), s.data_ptr<float>(), batch, length, heads, dim);
  else
    rotate_in_place(qkv.data_ptr<at::BFloat16>(), c.data_ptr<float>(), s.data_ptr<float>(), batch, length, heads, dim);
}

torch::Tensor norm_or_identity(ModernBertNorm norm, const torch::Tensor& x) { return norm ? norm(x) : x; }

}  // namespace

torch::Tensor ModernBertLayerKernel::reference_forward(const torch::Tensor& hidden, const ModernBertInputs& inputs,
                                                       bool training) {
  const int64_t batch = hidden.size(0), length = hidden.size(1), width = hidden.size(2);
  const int64_t heads = style_.heads, dim = width / heads;
  // [B,T,3,heads,d] -> [B,heads,3,T,d]: HF's qkv.transpose(3, 1).unbind(dim=2).
  const auto qkv = linear(parts_.Wqkv, norm_or_identity(parts_.attn_norm, hidden))
                       .view({batch, length, 3, heads, dim})
                       .transpose(3, 1);
  const auto& cos = style_.local ? inputs.local_cos : inputs.global_cos;
  const auto& sin = style_.local ? inputs.local_sin : inputs.global_sin;
  const auto query = apply_rotary(qkv.select(2, 0), cos, sin), key = apply_rotary(qkv.select(2, 1), cos, sin);
  const auto value = qkv.select(2, 2);
  auto scores = torch::matmul(query, key.transpose(2, 3)) * std::pow(static_cast<double>(dim), -0.5);
  // The mask stays float32 (autocast's fp16 scores are promoted), as HF's mask is in the model's dtype.
  scores = scores + (style_.local ? inputs.sliding_mask : inputs.additive_mask);
  auto probs = torch::softmax(scores, -1, torch::kFloat).to(query.scalar_type());
  probs = torch::dropout(probs, style_.attention_dropout, training);
  const auto context = torch::matmul(probs, value).transpose(1, 2).contiguous().view({batch, length, width});
  const auto attended = hidden + torch::dropout(linear(parts_.attn_Wo, context), style_.attention_dropout, training);
  const auto chunks = linear(parts_.Wi, parts_.mlp_norm(attended)).chunk(2, -1);
  const auto inner = torch::dropout(apply_activation(chunks[0], style_.activation) * chunks[1], style_.mlp_dropout,
                                    training);
  return attended + linear(parts_.mlp_Wo, inner);
}

const ModernBertLayerKernel::Prepared& ModernBertLayerKernel::prepared(torch::ScalarType dtype) {
  const Parts& p = parts_;
  std::vector<std::pair<const void*, uint32_t>> source;
  for (const torch::nn::Linear* l : {&p.Wqkv, &p.attn_Wo, &p.Wi, &p.mlp_Wo})
    for (const torch::Tensor* t : {&(*l)->weight, &(*l)->bias})
      if (t->defined()) source.emplace_back(t->data_ptr(), static_cast<uint32_t>(t->_version()));
  if (prepared_.qkv.defined() && source == prepared_.source && prepared_.dtype == dtype) return prepared_;
  auto bias_of = [](const torch::nn::Linear& l, int64_t first, int64_t count) {
    return l->bias.defined() ? l->bias.slice(0, first, first + count) : torch::zeros({count}, l->weight.options());
  };
  auto packed = [&](const torch::nn::Linear& l) { return PackedLinear(l->weight, bias_of(l, 0, l->weight.size(0)), dtype); };
  prepared_.qkv = packed(p.Wqkv);
  prepared_.attention_output = packed(p.attn_Wo);
  // Wi's rows: the GeGLU's input half, then its gate half; the activation is fused into the first.
  const int64_t inner = p.Wi->weight.size(0) / 2;
  prepared_.gelu_input = PackedLinear(p.Wi->weight.slice(0, 0, inner), bias_of(p.Wi, 0, inner), dtype);
  prepared_.gate = PackedLinear(p.Wi->weight.slice(0, inner), bias_of(p.Wi, inner, inner), dtype);
  prepared_.mlp_output = packed(p.mlp_Wo);
  prepared_.zero_bias = torch::zeros({p.Wqkv->weight.size(1)});
  prepared_.dtype = dtype;
  prepared_.source = std::move(source);
  return prepared_;
}

torch::Tensor ModernBertLayerKernel::fast_forward(const torch::Tensor& hidden, const ModernBertInputs& inputs) {
  const Prepared& w = prepared(cpu_compute_dtype());
  const int64_t batch = hidden.size(0), length = hidden.size(1), width = hidden.size(2);
  auto norm = [&w](const torch::Tensor& x, const ModernBertNorm& module) {
    return layer_norm(x, module->weight, module->bias.defined() ? module->bias : w.zero_bias, module->eps);
  };
  const torch::Tensor flat = hidden.to(w.dtype).reshape({batch * length, width}).contiguous();
  const torch::Tensor qkv = w.qkv.forward(parts_.attn_norm ? norm(flat, parts_.attn_norm) : flat);
  rotate_qkv(qkv, style_.local ? inputs.local_cos : inputs.global_cos,
             style_.local ? inputs.local_sin : inputs.global_sin, batch, length, style_.heads);
  const torch::Tensor context = onednn_attention(qkv, style_.local ? inputs.sliding_mask : inputs.additive_mask, batch,
                                                 length, style_.heads);
  const torch::Tensor attended = w.attention_output.forward(context, FusedActivation::None, flat);
  const torch::Tensor normed = norm(attended, parts_.mlp_norm);
  torch::Tensor inner = w.gelu_input.forward(normed, fused_activation(style_.activation));
  inner.mul_(w.gate.forward(normed));
  return w.mlp_output.forward(inner, FusedActivation::None, attended).view({batch, length, width});
}

torch::Tensor ModernBertLayerKernel::forward(const torch::Tensor& hidden, const ModernBertInputs& inputs,
                                             bool training) {
  const auto dtype = hidden.scalar_type();
  const bool fast = fast_cpu_path_enabled() && !training && !torch::GradMode::is_enabled() && at::hasMKLDNN() &&
                    hidden.device().is_cpu() && (dtype == torch::kFloat32 || dtype == torch::kBFloat16) &&
                    hidden.numel() > 0;
  return fast ? fast_forward(hidden, inputs) : reference_forward(hidden, inputs, training);
}

}  // namespace layerprobe
