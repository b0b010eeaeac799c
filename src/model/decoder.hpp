// Building blocks of the decoder-only families (GPT-2, Llama, Qwen2; private to
// src/model/): weight-holding modules that allocate as ModelCreation says,
// the causal mask, rotary position tables, and the pre-norm decoder layer —
// norm, self-attention (grouped-query heads, optional RoPE), residual, norm,
// MLP (GELU or SwiGLU), residual — with its oneDNN inference path. Each
// family's modules register their parameters under HF's names and hand them
// to a DecoderLayerKernel by role, as the encoders do with TransformerLayerKernel.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "layerprobe/model/config.hpp"
#include "layerprobe/model/qa_model.hpp"
#include "model/layers.hpp"

namespace layerprobe {

// A linear layer: "weight" [out, in] as nn.Linear stores it, or [in, out] as GPT-2's Conv1D
// does (`in_out`), and an optional "bias" [out]; allocated uninitialised in ModelCreation::dtype().
class DenseImpl : public torch::nn::Module {
 public:
  DenseImpl(int64_t in, int64_t out, bool bias, bool in_out = false);
  // HF's op: F.linear, or Conv1D's addmm over the [in, out] weight.
  torch::Tensor forward(const torch::Tensor& x);
  // N(0, std) weight, zero bias.
  void init(double std);

  torch::Tensor weight, bias;
  bool in_out = false;
};
TORCH_MODULE(Dense);

// An embedding table "weight" [rows, dim]; `padding_idx` (< 0: none) gets no gradient and starts at 0.
class TokenEmbeddingImpl : public torch::nn::Module {
 public:
  TokenEmbeddingImpl(int64_t rows, int64_t dim, int64_t padding_idx = -1);
  torch::Tensor forward(const torch::Tensor& ids);
  void init(double std);

  torch::Tensor weight;
  int64_t padding_idx = -1;
};
TORCH_MODULE(TokenEmbedding);

// LayerNorm ("weight", "bias") or RMSNorm ("weight" only, T5/Llama style: x / rms(x) in float32,
// cast back, times the weight).
class NormImpl : public torch::nn::Module {
 public:
  NormImpl(int64_t size, double eps, bool rms);
  torch::Tensor forward(const torch::Tensor& x);
  void init();

  torch::Tensor weight, bias;
  double eps;
  bool rms;
};
TORCH_MODULE(Norm);

// HF _init_weights for these modules (what QaModel::init_module dispatches to); false for others.
bool init_decoder_module(torch::nn::Module& module, double std);

// Rotary position embedding as transformers 4.57.5's ROPE_INIT_FUNCTIONS compute inv_freq:
// rope_theta and rope_scaling (rope_type/type "default", "linear", "dynamic", "llama3", "yarn").
struct RotaryEmbedding {
  torch::Tensor inv_freq;           // [rotary_dim / 2] float32
  double attention_scaling = 1.0;   // yarn's factor on cos and sin
  // Dynamic NTK: past max_position_embeddings, inv_freq is recomputed for the sequence length.
  bool dynamic = false;
  double base = 10000.0, factor = 1.0;
  int64_t max_position_embeddings = 0, dim = 0;

  // cos and sin [T, dim] float32 for positions 0..T-1 (HF: cat(freqs, freqs) then cos, sin).
  std::pair<torch::Tensor, torch::Tensor> tables(int64_t length, const torch::Device& device) const;
};
// Error naming config.source and the key for a rope_scaling it cannot compute.
RotaryEmbedding rotary_embedding(const ModelConfig& config, int64_t head_dim);
// Checks rope_theta and rope_scaling (the family's validate calls it).
void validate_rope(const ModelConfig& config, int64_t head_dim);

// [B,T] 0/1 mask -> [B,1,T,T] float32: 0 where query i may attend key j (j <= i, j not padding, and
// i - j < window when window > 0), the lowest float elsewhere (HF's min_dtype).
torch::Tensor causal_attention_mask(const torch::Tensor& attention_mask, int64_t window = 0);

// What the decoder layers share for a batch: the causal+padding mask (LayerInputs::additive_mask),
// the sliding-window one for layers that use it, and RoPE's tables.
struct DecoderInputs : LayerInputs {
  torch::Tensor sliding_mask;  // undefined: no layer slides (or the batch fits the window)
  torch::Tensor cos, sin;      // [T, rotary dim] float32; undefined without RoPE
};

// The parameters of one decoder layer by role (undefined modules are absent).
struct DecoderLayerParts {
  Norm attention_norm{nullptr};   // ln_1 / input_layernorm
  Dense qkv{nullptr};             // GPT-2's fused c_attn ([H, 3H] Conv1D)
  Dense query{nullptr}, key{nullptr}, value{nullptr};  // q_proj, k_proj, v_proj
  Dense attention_output{nullptr};  // attn.c_proj / o_proj
  Norm mlp_norm{nullptr};         // ln_2 / post_attention_layernorm
  Dense mlp_in{nullptr};          // c_fc (GELU MLP)
  Dense gate{nullptr}, up{nullptr};  // gate_proj, up_proj (SwiGLU: act(gate) * up)
  Dense mlp_out{nullptr};         // mlp.c_proj / down_proj
};

struct DecoderLayerStyle {
  int64_t heads = 1, kv_heads = 1, head_dim = 1;
  // Multiplies q k^T (1/sqrt(d); GPT-2's scale_attn_by_inverse_layer_idx divides by layer + 1 too).
  double attention_scale = 1.0;
  bool rope = false;
  bool sliding = false;  // this layer attends within the sliding window
  Activation activation = Activation::GeluNew;
  double attention_dropout = 0, residual_dropout = 0;
};

// h + attn(norm1(h)), then that + mlp(norm2(that)), op for op as transformers 4.57.5 (eager
// attention). In eval mode without autograd on the CPU (fast path on) it runs on oneDNN: the
// linears as matmuls over the weights as stored (model/onednn.hpp: onednn_dense), with the
// activation, SwiGLU's product and the residual adds fused; RoPE in place on q and k; the
// attention as batched matmuls reading each key/value head once for its group of query heads;
// norms in one pass with float32 statistics. It computes in bf16 when the weights are bf16 or
// inside a CPU bf16 PrecisionScope, else float32.
class DecoderLayerKernel {
 public:
  DecoderLayerKernel(DecoderLayerParts parts, DecoderLayerStyle style) : parts_(std::move(parts)), style_(style) {}
  torch::Tensor forward(const torch::Tensor& hidden, const DecoderInputs& inputs, bool training);

 private:
  torch::Tensor reference_forward(const torch::Tensor& hidden, const DecoderInputs& inputs, bool training);
  torch::Tensor fast_forward(const torch::Tensor& hidden, const DecoderInputs& inputs);
  // The layer's linear `dense` as the fast path reads it: its own weight, or a copy converted to
  // `dtype` (kept while the parameter is unchanged).
  const torch::Tensor& weight_in(const Dense& dense, torch::ScalarType dtype);

  DecoderLayerParts parts_;
  DecoderLayerStyle style_;
  struct Converted {
    const void* source = nullptr;
    uint32_t version = 0;
    torch::Tensor weight;
  };
  std::map<const DenseImpl*, Converted> converted_;
};

// The float32/bf16 norm of the fast path: x [N, H] -> [N, H] in x's dtype, statistics in float32.
torch::Tensor fast_norm(const torch::Tensor& x, const NormImpl& norm);

// q or k [N, width] (N = B*T rows, token t = row % T) rotated in place over heads
// [column, column + count*head_dim) with cos, sin [T, head_dim] (RoPE's rotate_half form).
void rotate_in_place(torch::Tensor& x, int64_t column, int64_t count, int64_t head_dim, int64_t length,
                     const torch::Tensor& cos, const torch::Tensor& sin);

// What GPT-2, Llama and Qwen2's QA models share: the causal mask (and the sliding one) and RoPE's
// tables made once per batch, the final norm, HF's _init_weights for the decoder modules, and
// the base model's parameters allocated as ModelCreation says. A family sets the members below
// in its constructor, registering its modules in HF's order.
class DecoderQaModel : public QaModel {
 protected:
  explicit DecoderQaModel(const ModelConfig& config) : QaModel(config) {}
  std::unique_ptr<LayerInputs> layer_inputs(const EncoderBatch& batch) override;
  torch::Tensor final_norm(const torch::Tensor& hidden) override;
  bool init_module(const std::string& name, torch::nn::Module& module) override;
  // HF's _init_weights when creating (not when load_checkpoint fills every weight next).
  void init_weights_unless_loading();

  std::optional<RotaryEmbedding> rope_;
  int64_t sliding_window_ = 0;  // > 0: the window of the layers that slide
  Norm final_norm_{nullptr};    // ln_f / norm
};

// Shared parameter and FLOP counts of a decoder layer, for the families' formulas.
struct DecoderShape {
  double hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, intermediate = 0;
  bool gated = false;  // SwiGLU (three MLP matrices) rather than two
  double qkv_bias = 0, output_bias = 0, mlp_bias = 0;  // 1 where present
  double norm_bias = 0;                                 // 1 for LayerNorm, 0 for RMSNorm
};
double decoder_layer_parameters(const DecoderShape& shape);
double decoder_layer_flops(const DecoderShape& shape, int64_t tokens);

}  // namespace layerprobe
