#include "model/decoder.hpp"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <cmath>
#include <limits>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/precision.hpp"
#include "model/onednn.hpp"

namespace layerprobe {

namespace {

torch::TensorOptions creation_options() { return torch::TensorOptions().dtype(ModelCreation::dtype()); }

}  // namespace

// --- modules -------------------------------------------------------------------------

DenseImpl::DenseImpl(int64_t in, int64_t out, bool with_bias, bool in_out_layout) : in_out(in_out_layout) {
  weight = register_parameter("weight", torch::empty(in_out ? std::vector<int64_t>{in, out} : std::vector<int64_t>{out, in},
                                                     creation_options()));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}, creation_options()));
}

torch::Tensor DenseImpl::forward(const torch::Tensor& x) {
  // With autograd recording, through oneDNN's inner product and its backward where the fast path allows.
  if (!in_out || torch::GradMode::is_enabled()) return linear(x, in_out ? weight.t() : weight, bias);
  // transformers' Conv1D: torch.addmm(bias, x.view(-1, nx), weight).view(..., nf)
  auto sizes = x.sizes().vec();
  sizes.back() = weight.size(1);
  return torch::addmm(bias, x.reshape({-1, x.size(-1)}), weight).view(sizes);
}

void DenseImpl::init(double std) {
  weight.normal_(0.0, std);
  if (bias.defined()) bias.zero_();
}

TokenEmbeddingImpl::TokenEmbeddingImpl(int64_t rows, int64_t dim, int64_t padding)
    : padding_idx(padding >= 0 && padding < rows ? padding : -1) {
  weight = register_parameter("weight", torch::empty({rows, dim}, creation_options()));
}

torch::Tensor TokenEmbeddingImpl::forward(const torch::Tensor& ids) { return torch::embedding(weight, ids, padding_idx); }

void TokenEmbeddingImpl::init(double std) {
  weight.normal_(0.0, std);
  if (padding_idx >= 0) weight[padding_idx].zero_();
}

NormImpl::NormImpl(int64_t size, double epsilon, bool rms_norm) : eps(epsilon), rms(rms_norm) {
  weight = register_parameter("weight", torch::empty({size}, creation_options()));
  if (!rms) bias = register_parameter("bias", torch::empty({size}, creation_options()));
}

torch::Tensor NormImpl::forward(const torch::Tensor& x) {
  if (!rms) return torch::layer_norm(x, {x.size(-1)}, weight.to(x.scalar_type()), bias.to(x.scalar_type()), eps);
  // LlamaRMSNorm: float32 statistics, the normalised state cast back, then the weight.
  const auto input_dtype = x.scalar_type();
  const auto h = x.to(torch::kFloat32);
  const auto variance = h.pow(2).mean(-1, /*keepdim=*/true);
  return weight * (h * torch::rsqrt(variance + eps)).to(input_dtype);
}

void NormImpl::init() {
  weight.fill_(1.0);
  if (bias.defined()) bias.zero_();
}

bool init_decoder_module(torch::nn::Module& module, double std) {
  if (auto* dense = module.as<DenseImpl>()) {
    dense->init(std);
  } else if (auto* embedding = module.as<TokenEmbeddingImpl>()) {
    embedding->init(std);
  } else if (auto* norm = module.as<NormImpl>()) {
    norm->init();
  } else {
    return false;
  }
  return true;
}

// --- RoPE ------------------------------------------------------------------------------

namespace {

const nlohmann::json* rope_scaling_of(const ModelConfig& config) {
  auto it = config.object.find("rope_scaling");
  if (it == config.object.end() || it->is_null()) return nullptr;
  if (!it->is_object())
    throw Error(config.source + ": key 'rope_scaling' must be an object or null, found " + it->dump());
  return &*it;
}

std::string rope_type_of(const ModelConfig& config, const nlohmann::json& scaling) {
  for (const char* key : {"rope_type", "type"}) {  // "type": the older spelling
    auto it = scaling.find(key);
    if (it != scaling.end() && !it->is_null()) {
      if (!it->is_string()) throw Error(config.source + ": rope_scaling." + key + " must be a string");
      return it->get<std::string>();
    }
  }
  return "default";
}

double scaling_number(const ModelConfig& config, const nlohmann::json& scaling, const std::string& key) {
  auto it = scaling.find(key);
  if (it == scaling.end() || !it->is_number())
    throw Error(config.source + ": rope_scaling needs a number '" + key + "' for rope_type '" +
                rope_type_of(config, scaling) + "'");
  return it->get<double>();
}

}  // namespace

void validate_rope(const ModelConfig& config, int64_t head_dim) {
  if (!(config.number("rope_theta") > 0)) throw Error(config.source + ": key 'rope_theta' must be positive");
  if (head_dim % 2 != 0)
    throw Error(config.source + ": RoPE needs an even head dimension, found " + std::to_string(head_dim));
  auto partial = config.object.find("partial_rotary_factor");
  if (partial != config.object.end() && !partial->is_null() && !(partial->is_number() && partial->get<double>() == 1.0))
    throw Error(config.source + ": partial_rotary_factor " + partial->dump() +
                " is not supported for this family (transformers rotates whole heads here)");
  rotary_embedding(config, head_dim);  // every rope_scaling error
}

RotaryEmbedding rotary_embedding(const ModelConfig& config, int64_t head_dim) {
  RotaryEmbedding rope;
  rope.base = config.number("rope_theta");
  rope.dim = head_dim;
  rope.max_position_embeddings = config.max_position_embeddings;
  // _compute_default_rope_parameters
  rope.inv_freq =
      1.0 / torch::pow(rope.base, torch::arange(0, head_dim, 2, torch::kLong).to(torch::kFloat) / static_cast<double>(head_dim));
  const nlohmann::json* scaling = rope_scaling_of(config);
  if (scaling == nullptr) return rope;
  const std::string type = rope_type_of(config, *scaling);
  if (type == "default") return rope;
  if (type == "linear") {
    rope.inv_freq /= scaling_number(config, *scaling, "factor");
  } else if (type == "dynamic") {
    // Within max_position_embeddings (the longest window allowed) the frequencies are the default ones.
    rope.dynamic = true;
    rope.factor = scaling_number(config, *scaling, "factor");
  } else if (type == "llama3") {
    const double factor = scaling_number(config, *scaling, "factor");
    const double low_freq_factor = scaling_number(config, *scaling, "low_freq_factor");
    const double high_freq_factor = scaling_number(config, *scaling, "high_freq_factor");
    const double old_context_len = scaling_number(config, *scaling, "original_max_position_embeddings");
    if (!(high_freq_factor > low_freq_factor))
      throw Error(config.source + ": rope_scaling's high_freq_factor must exceed its low_freq_factor");
    const double low_freq_wavelen = old_context_len / low_freq_factor;
    const double high_freq_wavelen = old_context_len / high_freq_factor;
    const auto& inv_freq = rope.inv_freq;
    const auto wavelen = 2 * M_PI / inv_freq;
    auto inv_freq_llama = torch::where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq);
    const auto smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
    const auto smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama;
    const auto is_medium_freq = (wavelen < high_freq_wavelen).logical_not() * (wavelen > low_freq_wavelen).logical_not();
    rope.inv_freq = torch::where(is_medium_freq, smoothed_inv_freq, inv_freq_llama);
  } else {
    throw Error(config.source + ": rope_scaling type '" + type +
                "' is not supported (supported: default, linear, dynamic, llama3)");
  }
  return rope;
}

std::pair<torch::Tensor, torch::Tensor> RotaryEmbedding::tables(int64_t length, const torch::Device& device) const {
  torch::Tensor frequencies = inv_freq;
  if (dynamic && length > max_position_embeddings) {  // _compute_dynamic_ntk_parameters for seq_len = length
    const double scaled = base * std::pow(factor * static_cast<double>(length) / static_cast<double>(max_position_embeddings) -
                                              (factor - 1),
                                          static_cast<double>(dim) / static_cast<double>(dim - 2));
    frequencies = 1.0 / torch::pow(scaled, torch::arange(0, dim, 2, torch::kLong).to(torch::kFloat) / static_cast<double>(dim));
  }
  const auto positions = torch::arange(length, torch::kLong).to(torch::kFloat);
  const auto freqs = torch::outer(positions, frequencies);
  const auto emb = torch::cat({freqs, freqs}, -1);
  auto cos = emb.cos(), sin = emb.sin();
  if (attention_scaling != 1.0) {
    cos = cos * attention_scaling;
    sin = sin * attention_scaling;
  }
  return {cos.to(device), sin.to(device)};
}

torch::Tensor causal_attention_mask(const torch::Tensor& attention_mask, int64_t window) {
  const int64_t length = attention_mask.size(1);
  const auto options = torch::TensorOptions().device(attention_mask.device());
  const auto query = torch::arange(length, options.dtype(torch::kLong)).unsqueeze(1);
  const auto key = torch::arange(length, options.dtype(torch::kLong)).unsqueeze(0);
  auto allowed = key.le(query);
  if (window > 0) allowed = allowed.logical_and(query - key < window);
  allowed = allowed.unsqueeze(0).logical_and(attention_mask.ne(0).unsqueeze(1)).unsqueeze(1);  // [B,1,T,T]
  return torch::zeros(allowed.sizes(), options.dtype(torch::kFloat))
      .masked_fill_(allowed.logical_not(), std::numeric_limits<float>::lowest());
}

// --- the layer, reference ops ----------------------------------------------------------

namespace {

torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

// ACT2FN of transformers 4.57.5: "silu"/"swish" is F.silu there (2.5.1's swish was x * sigmoid(x)).
torch::Tensor mlp_activation(const torch::Tensor& x, Activation activation) {
  return activation == Activation::Swish ? torch::silu(x) : apply_activation(x, activation);
}

}  // namespace

torch::Tensor DecoderLayerKernel::reference_forward(const torch::Tensor& hidden, const DecoderInputs& inputs,
                                                    bool training) {
  const int64_t batch = hidden.size(0), length = hidden.size(1);
  const int64_t heads = style_.heads, kv_heads = style_.kv_heads, d = style_.head_dim;
  auto split_heads = [&](const torch::Tensor& x, int64_t count) {
    return x.view({batch, length, count, d}).transpose(1, 2);
  };
  const torch::Tensor residual = hidden;
  const torch::Tensor x = parts_.attention_norm(hidden);
  torch::Tensor q, k, v;
  if (parts_.qkv) {
    auto qkv = parts_.qkv(x).split(heads * d, 2);
    q = split_heads(qkv[0], heads), k = split_heads(qkv[1], heads), v = split_heads(qkv[2], heads);
  } else {
    q = split_heads(parts_.query(x), heads), k = split_heads(parts_.key(x), kv_heads),
    v = split_heads(parts_.value(x), kv_heads);
  }
  if (style_.rope) {
    const auto cos = inputs.cos.to(q.scalar_type()).unsqueeze(0).unsqueeze(0);
    const auto sin = inputs.sin.to(q.scalar_type()).unsqueeze(0).unsqueeze(0);
    q = q * cos + rotate_half(q) * sin;
    k = k * cos + rotate_half(k) * sin;
  }
  if (kv_heads != heads) {  // repeat_kv
    const int64_t group = heads / kv_heads;
    k = k.unsqueeze(2).expand({batch, kv_heads, group, length, d}).reshape({batch, heads, length, d});
    v = v.unsqueeze(2).expand({batch, kv_heads, group, length, d}).reshape({batch, heads, length, d});
  }
  const torch::Tensor& mask = style_.sliding && inputs.sliding_mask.defined() ? inputs.sliding_mask : inputs.additive_mask;
  auto scores = torch::matmul(q, k.transpose(-1, -2)) * style_.attention_scale + mask.to(q.scalar_type());
  auto probabilities = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());
  probabilities = torch::dropout(probabilities, style_.attention_dropout, training);
  auto context = torch::matmul(probabilities, v).transpose(1, 2).reshape({batch, length, heads * d});
  auto attended = residual + torch::dropout(parts_.attention_output(context), style_.residual_dropout, training);
  const torch::Tensor y = parts_.mlp_norm(attended);
  torch::Tensor inner = parts_.mlp_in ? mlp_activation(parts_.mlp_in(y), style_.activation)
                                      : mlp_activation(parts_.gate(y), style_.activation) * parts_.up(y);
  return attended + torch::dropout(parts_.mlp_out(inner), style_.residual_dropout, training);
}

// --- the layer, fast path --------------------------------------------------------------

torch::Tensor fast_norm(const torch::Tensor& x_in, const NormImpl& norm) {
  if (!norm.rms) return layer_norm(x_in, norm.weight, norm.bias, norm.eps);
  RECORD_FUNCTION("decoder::rms_norm", std::vector<c10::IValue>());
  const torch::Tensor x = x_in.contiguous();
  const int64_t rows = x.size(0), width = x.size(1);
  auto output = torch::empty_like(x);
  const auto weight = norm.weight.to(torch::kFloat).contiguous();
  const float* w = weight.data_ptr<float>();
  const float eps = static_cast<float>(norm.eps);
  auto run = [&](auto* in, auto* out) {
    using T = std::remove_pointer_t<decltype(in)>;
    at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const T* row = in + r * width;
        T* dst = out + r * width;
        float sum = 0.f;
        for (int64_t i = 0; i < width; ++i) {
          const float v = static_cast<float>(row[i]);
          sum += v * v;
        }
        const float scale = 1.0f / std::sqrt(sum / static_cast<float>(width) + eps);
        for (int64_t i = 0; i < width; ++i) {
          // HF: weight * (x * rsqrt(variance + eps)).to(input dtype): in bf16 both products round to bf16.
          const T normed = static_cast<T>(static_cast<float>(row[i]) * scale);
          dst[i] = static_cast<T>(static_cast<float>(normed) * w[i]);
        }
      }
    });
  };
  if (x.scalar_type() == torch::kFloat)
    run(x.data_ptr<float>(), output.data_ptr<float>());
  else
    run(x.data_ptr<at::BFloat16>(), output.data_ptr<at::BFloat16>());
  return output;
}

void rotate_in_place(torch::Tensor& x, int64_t column, int64_t count, int64_t head_dim, int64_t length,
                     const torch::Tensor& cos_in, const torch::Tensor& sin_in) {
  RECORD_FUNCTION("decoder::rope", std::vector<c10::IValue>());
  const int64_t rows = x.size(0), width = x.size(1), half = head_dim / 2;
  const auto cos = cos_in.to(torch::kFloat).contiguous(), sin = sin_in.to(torch::kFloat).contiguous();
  const float* c = cos.data_ptr<float>();
  const float* s = sin.data_ptr<float>();
  auto run = [&](auto* data) {
    using T = std::remove_pointer_t<decltype(data)>;
    at::parallel_for(0, rows, 32, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t t = r % length;
        const float* ct = c + t * head_dim;
        const float* st = s + t * head_dim;
        for (int64_t h = 0; h < count; ++h) {
          T* v = data + r * width + column + h * head_dim;
          for (int64_t i = 0; i < half; ++i) {
            // q * cos + rotate_half(q) * sin, rotate_half(q) = [-q2, q1]
            const float a = static_cast<float>(v[i]), b = static_cast<float>(v[i + half]);
            v[i] = static_cast<T>(a * ct[i] + (-b) * st[i]);
            v[i + half] = static_cast<T>(b * ct[i + half] + a * st[i + half]);
          }
        }
      }
    });
  };
  if (x.scalar_type() == torch::kFloat)
    run(x.data_ptr<float>());
  else
    run(x.data_ptr<at::BFloat16>());
}

const torch::Tensor& DecoderLayerKernel::weight_in(const Dense& dense, torch::ScalarType dtype) {
  if (dense->weight.scalar_type() == dtype) return dense->weight;
  Converted& converted = converted_[dense.get()];
  const void* source = dense->weight.data_ptr();
  const auto version = static_cast<uint32_t>(dense->weight._version());
  if (!converted.weight.defined() || converted.source != source || converted.version != version ||
      converted.weight.scalar_type() != dtype) {
    converted.weight = dense->weight.to(dtype).contiguous();
    converted.source = source;
    converted.version = version;
  }
  return converted.weight;
}

torch::Tensor DecoderLayerKernel::fast_forward(const torch::Tensor& hidden, const DecoderInputs& inputs) {
  // bf16 weights compute in bf16; float32 ones in the precision scope's dtype.
  const torch::ScalarType dtype =
      parts_.attention_output->weight.scalar_type() == torch::kBFloat16 ? torch::kBFloat16 : cpu_compute_dtype();
  const int64_t batch = hidden.size(0), length = hidden.size(1), width = hidden.size(2);
  const int64_t heads = style_.heads, kv_heads = style_.kv_heads, d = style_.head_dim;
  auto dense = [&](const Dense& module, const torch::Tensor& x, FusedActivation activation = FusedActivation::None,
                   const torch::Tensor& multiply = {}, const torch::Tensor& residual = {}) {
    return onednn_dense(x, weight_in(module, dtype), module->in_out, module->bias, activation, multiply, residual);
  };
  const torch::Tensor flat = hidden.to(dtype).reshape({batch * length, width}).contiguous();
  const torch::Tensor x = fast_norm(flat, *parts_.attention_norm);
  HeadColumns q, k, v;
  if (parts_.qkv) {
    const auto qkv = dense(parts_.qkv, x);
    q = {qkv, 0}, k = {qkv, heads * d}, v = {qkv, 2 * heads * d};
  } else {
    q = {dense(parts_.query, x), 0}, k = {dense(parts_.key, x), 0}, v = {dense(parts_.value, x), 0};
  }
  if (style_.rope) {
    rotate_in_place(q.data, q.column, heads, d, length, inputs.cos, inputs.sin);
    rotate_in_place(k.data, k.column, kv_heads, d, length, inputs.cos, inputs.sin);
  }
  const torch::Tensor& mask = style_.sliding && inputs.sliding_mask.defined() ? inputs.sliding_mask : inputs.additive_mask;
  const auto context =
      onednn_grouped_attention(q, k, v, mask, batch, length, heads, kv_heads, d, style_.attention_scale);
  const auto attended = dense(parts_.attention_output, context, FusedActivation::None, {}, flat);
  const auto y = fast_norm(attended, *parts_.mlp_norm);
  const auto activation = fused_activation(style_.activation);
  torch::Tensor inner;
  if (parts_.mlp_in) {
    inner = dense(parts_.mlp_in, y, activation);
  } else {  // act(gate(y)) * up(y): the product fused into up's matmul
    inner = dense(parts_.up, y, FusedActivation::None, dense(parts_.gate, y, activation));
  }
  return dense(parts_.mlp_out, inner, FusedActivation::None, {}, attended).view({batch, length, width});
}

torch::Tensor DecoderLayerKernel::forward(const torch::Tensor& hidden, const DecoderInputs& inputs, bool training) {
  const auto dtype = hidden.scalar_type();
  const bool fast = fast_cpu_path_enabled() && !training && !torch::GradMode::is_enabled() && at::hasMKLDNN() &&
                    hidden.device().is_cpu() && (dtype == torch::kFloat32 || dtype == torch::kBFloat16) &&
                    hidden.numel() > 0;
  return fast ? fast_forward(hidden, inputs) : reference_forward(hidden, inputs, training);
}

// --- the QA model -----------------------------------------------------------------------

std::unique_ptr<LayerInputs> DecoderQaModel::layer_inputs(const EncoderBatch& batch) {
  auto inputs = std::make_unique<DecoderInputs>();
  inputs->additive_mask = causal_attention_mask(batch.attention_mask);
  if (sliding_window_ > 0 && batch.length() > sliding_window_)
    inputs->sliding_mask = causal_attention_mask(batch.attention_mask, sliding_window_);
  if (rope_) std::tie(inputs->cos, inputs->sin) = rope_->tables(batch.length(), batch.input_ids.device());
  return inputs;
}

torch::Tensor DecoderQaModel::final_norm(const torch::Tensor& hidden) {
  const bool fast = fast_cpu_path_enabled() && !is_training() && !torch::GradMode::is_enabled() && hidden.is_cpu() &&
                    (hidden.scalar_type() == torch::kFloat || hidden.scalar_type() == torch::kBFloat16) &&
                    hidden.numel() > 0;
  if (!fast) return final_norm_(hidden);
  return fast_norm(hidden.reshape({-1, hidden.size(-1)}), *final_norm_).view(hidden.sizes());
}

bool DecoderQaModel::init_module(const std::string& /*name*/, torch::nn::Module& module) {
  return init_decoder_module(module, config().initializer_range);
}

void DecoderQaModel::init_weights_unless_loading() {
  if (ModelCreation::initialise()) init_weights();
}

// --- sizes -----------------------------------------------------------------------------

double decoder_layer_parameters(const DecoderShape& s) {
  const double q = s.heads * s.head_dim, kv = s.kv_heads * s.head_dim, H = s.hidden, I = s.intermediate;
  const double attention = H * (q + 2 * kv) + s.qkv_bias * (q + 2 * kv) + q * H + s.output_bias * H;
  const double mlp = s.gated ? 3 * H * I + s.mlp_bias * (2 * I + H) : 2 * H * I + s.mlp_bias * (I + H);
  const double norms = 2 * H * (1 + s.norm_bias);
  return attention + mlp + norms;
}

double decoder_layer_flops(const DecoderShape& s, int64_t tokens) {
  const double T = static_cast<double>(tokens), H = s.hidden, I = s.intermediate;
  const double q = s.heads * s.head_dim, kv = s.kv_heads * s.head_dim;
  const double linears = T * (H * (q + 2 * kv) + q * H + (s.gated ? 3 : 2) * H * I);
  const double attention = 2 * T * T * q;  // q k^T and p v over every head, whole T x T
  return 2 * (linears + attention);
}

}  // namespace layerprobe
