// Building blocks the encoder families share (private to src/model/): the
// activations of 2.5.1's ACT2FN, the additive attention mask, linears that run
// through oneDNN on the CPU, and the post-LayerNorm transformer layer that
// ALBERT, BERT, RoBERTa and DistilBERT all compute — with its oneDNN inference
// path. Each family's layer module registers its parameters under its own HF
// names and hands them to a TransformerLayerKernel by role.
#pragma once

#include <torch/torch.h>

#include "model/onednn.hpp"

#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

namespace layerprobe {

enum class Activation { Gelu, GeluNew, Relu, Swish, Mish };
// Error naming `source` for a name 2.5.1's ACT2FN does not hold.
Activation parse_activation(const std::string& name, const std::string& source = "activation");
// As transformers 2.5.1 computes it (F.gelu for "gelu" on PyTorch >= 1.4).
torch::Tensor apply_activation(const torch::Tensor& x, Activation activation);
// The activation as a oneDNN post-op.
FusedActivation fused_activation(Activation activation);

// [B,T] 0/1 mask -> [B,1,1,T] of `dtype`: 0 where attended, `masked_value`
// at padding (-10000 for BERT-style models, -inf for DistilBERT's masked_fill).
torch::Tensor additive_attention_mask(const torch::Tensor& attention_mask, torch::Dtype dtype, double masked_value);

// layer(x), through a oneDNN inner product (with oneDNN backward) when
// autograd records on the CPU in float32 and the fast path is on; Debian's
// LibTorch would run it through BLAS.
torch::Tensor linear(torch::nn::Linear& layer, const torch::Tensor& x);
// The same for a weight [out, in] and an optional bias (undefined: none).
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

// N(0, std) weight, zero bias (HF _init_weights for a Linear).
void init_linear(torch::nn::LinearImpl& linear, double std);
// N(0, std) weight with the padding_idx row zeroed (transformers 4.x's _init_weights for an
// Embedding; 2.5.1 left that row random).
void init_embedding_zero_padding(torch::nn::EmbeddingImpl& embedding, double std);
torch::nn::LayerNorm make_layer_norm(int64_t size, double eps);

// The parameters of one layer by role.
struct LayerParts {
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, attention_output{nullptr};
  torch::nn::LayerNorm attention_norm{nullptr};
  torch::nn::Linear intermediate{nullptr}, output{nullptr};
  torch::nn::LayerNorm output_norm{nullptr};
};

// How a family computes the layer.
struct LayerStyle {
  Activation activation = Activation::Gelu;
  int64_t heads = 1;
  // DistilBERT divides q by sqrt(d) before q k^T; the others divide the product.
  bool scale_query_first = false;
  double attention_dropout = 0;         // on the attention probabilities
  double attention_output_dropout = 0;  // on the attention's output projection
  double output_dropout = 0;            // on the feed-forward output
};

// attention_norm(x + dropout(attention_output(attention(x)))) then
// output_norm(a + dropout(output(act(intermediate(a))))), op for op as 2.5.1.
// In eval mode without autograd on the CPU (fast path on) it runs Q, K and V
// as one oneDNN inner product over a [3H,H] weight, the other linears through
// oneDNN too with the activation and the residual adds fused into them, and the
// attention as oneDNN batched matmuls (model/onednn.hpp), in float32 or, inside a CPU bf16
// PrecisionScope, in bf16 (core/precision.hpp; the layer's output is then
// bf16), or inside a CPU int8 scope with the four products in u8 x s8 (weights
// quantised per output channel once, activations per tensor per call) and the
// attention, softmax and LayerNorm in float32 (the output float32); the prepared
// weights are rebuilt whenever a parameter or the dtype changes.
class TransformerLayerKernel {
 public:
  TransformerLayerKernel(LayerParts parts, LayerStyle style) : parts_(std::move(parts)), style_(style) {}
  // hidden [B,T,H]; additive_mask [B,1,1,T].
  torch::Tensor forward(const torch::Tensor& hidden, const torch::Tensor& additive_mask, bool training);

 private:
  // The linears packed for oneDNN in the dtype the fast path computes in (float32, bf16 under
  // --precision bf16, or kChar: s8 under --precision int8); LayerNorm reads the parameters as they are.
  struct Prepared {
    std::vector<std::pair<const void*, uint32_t>> source;  // data pointer and version of each linear parameter
    torch::ScalarType dtype = torch::kFloat;
    PackedLinear qkv, attention_output, intermediate, output;
  };
  bool use_fast_path(const torch::Tensor& hidden, bool training) const;
  const Prepared& prepared(torch::ScalarType dtype);
  torch::Tensor attention_context(torch::Tensor q, torch::Tensor k, torch::Tensor v,
                                  const torch::Tensor& additive_mask, bool training) const;
  torch::Tensor reference_forward(const torch::Tensor& hidden, const torch::Tensor& additive_mask, bool training);
  torch::Tensor fast_forward(const torch::Tensor& hidden, const torch::Tensor& additive_mask);

  LayerParts parts_;
  LayerStyle style_;
  std::deque<Prepared> prepared_;  // by dtype; a deque keeps references to its elements valid
};

// How a model constructed on this thread while the scope lives is made (load_checkpoint sets it,
// as it loads every weight next): families that honour it (the decoders) allocate their weights
// uninitialised in dtype() and run HF's initialisation only when initialise(); the others build
// float32 models initialised as always. Outside any scope: float32, initialised.
class ModelCreation {
 public:
  ModelCreation(torch::Dtype dtype, bool initialise);
  ~ModelCreation();
  ModelCreation(const ModelCreation&) = delete;
  ModelCreation& operator=(const ModelCreation&) = delete;
  static torch::Dtype dtype();
  static bool initialise();

 private:
  torch::Dtype saved_dtype_;
  bool saved_initialise_;
};

// The token type ids to embed: as given, or all 0 when none were passed (HF's default).
torch::Tensor token_types_or_zeros(const torch::Tensor& token_type_ids, const torch::Tensor& input_ids);

}  // namespace layerprobe
