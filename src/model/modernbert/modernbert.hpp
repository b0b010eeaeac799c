// ModernBERT (transformers 4.57.5's modeling_modernbert.py, eager attention):
// token embeddings and a LayerNorm (no positions), then pre-LayerNorm layers —
// x + Wo(attention(RoPE(Wqkv(attn_norm(x))))), then + Wo(act(input) * gate) of
// Wi(mlp_norm(x)) split in two (GeGLU) — with rotary positions of θ
// global_rope_theta in the global layers (every global_attn_every_n_layers-th,
// from layer 0) and local_rope_theta in the others, which attend only to keys
// within local_attention / 2 positions; the first layer has no attn_norm; no
// biases where the config says so (attention_bias, mlp_bias, norm_bias,
// classifier_bias); then final_norm. HF's hidden_states tuple ends *before*
// final_norm, and the QA head reads after it: classifier(drop(head.norm(act(head.dense(x))))).
// Modules carry HF's names: model.embeddings.{tok_embeddings,norm},
// model.layers.<i>.{attn_norm,attn.Wqkv,attn.Wo,mlp_norm,mlp.Wi,mlp.Wo},
// model.final_norm, head.{dense,norm}, classifier.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "layerprobe/model/qa_model.hpp"
#include "model/layers.hpp"

namespace layerprobe {

// nn.LayerNorm(size, eps, bias=norm_bias): a weight, and a bias only when norm_bias.
class ModernBertNormImpl : public torch::nn::Module {
 public:
  ModernBertNormImpl(int64_t size, double eps, bool bias);
  // In the weight's dtype (a CPU bf16 state is widened first).
  torch::Tensor forward(const torch::Tensor& x);
  void reset_parameters();  // 1 and 0, as HF's _init_weights

  torch::Tensor weight, bias;
  double eps;
};
TORCH_MODULE(ModernBertNorm);

class ModernBertEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit ModernBertEmbeddingsImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& input_ids);

  torch::nn::Embedding tok_embeddings{nullptr};
  ModernBertNorm norm{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(ModernBertEmbeddings);

// Parameter holders named as HF's ModernBertAttention and ModernBertMLP; the layer computes them.
struct ModernBertAttentionImpl : torch::nn::Module {
  explicit ModernBertAttentionImpl(const ModelConfig& config);
  torch::nn::Linear Wqkv{nullptr}, Wo{nullptr};
};
TORCH_MODULE(ModernBertAttention);

struct ModernBertMLPImpl : torch::nn::Module {
  explicit ModernBertMLPImpl(const ModelConfig& config);
  torch::nn::Linear Wi{nullptr}, Wo{nullptr};
};
TORCH_MODULE(ModernBertMLP);

// What the layers share for one batch: the global additive mask (LayerInputs::additive_mask,
// [B,1,1,T]: 0, or finfo(float32).min at padding), the sliding-window mask ([B,1,T,T]: the same
// with every key further than local_attention / 2 from the query set to finfo.min, as HF's
// masked_fill) and the RoPE tables of both thetas ([T, head_dim / 2], float32: positions 0..T-1,
// so their size follows the batch, not max_position_embeddings).
struct ModernBertInputs : LayerInputs {
  torch::Tensor sliding_mask;
  torch::Tensor global_cos, global_sin, local_cos, local_sin;
};

// [T, dim / 2] cos and sin of positions 0..T-1 times HF's inverse frequencies 1 / theta^(2i/dim), in float32.
std::pair<torch::Tensor, torch::Tensor> rope_tables(int64_t length, int64_t dim, double theta,
                                                    const torch::Device& device);

// How one layer computes, from the config.
struct ModernBertLayerStyle {
  Activation activation = Activation::Gelu;  // hidden_activation
  int64_t heads = 1;
  bool local = false;              // sliding-window attention and local_rope_theta
  double attention_dropout = 0;    // on the probabilities and on Wo's output
  double mlp_dropout = 0;          // on act(input) * gate
};

// One ModernBertEncoderLayer's computation. The reference path is HF's op sequence (training,
// autograd, the fast path off); in eval mode without autograd on the CPU it runs on oneDNN:
// Wqkv, Wo, the GeGLU's two halves (the activation fused into the input half) and the MLP's Wo as
// packed inner products (residuals fused as sums), RoPE applied in place on the fused QKV output,
// attention as batched matmuls with the global or sliding-window mask, in float32 or, inside a CPU
// bf16 PrecisionScope, bf16.
class ModernBertLayerKernel {
 public:
  struct Parts {
    ModernBertNorm attn_norm{nullptr};  // none in layer 0
    torch::nn::Linear Wqkv{nullptr}, attn_Wo{nullptr};
    ModernBertNorm mlp_norm{nullptr};
    torch::nn::Linear Wi{nullptr}, mlp_Wo{nullptr};
  };
  ModernBertLayerKernel(Parts parts, ModernBertLayerStyle style) : parts_(std::move(parts)), style_(style) {}
  torch::Tensor forward(const torch::Tensor& hidden, const ModernBertInputs& inputs, bool training);

 private:
  struct Prepared {
    std::vector<std::pair<const void*, uint32_t>> source;  // data pointer and version of each linear parameter
    torch::ScalarType dtype = torch::kFloat;
    PackedLinear qkv, attention_output, gelu_input, gate, mlp_output;
    torch::Tensor zero_bias;  // [H] float32, for norms without a bias
  };
  const Prepared& prepared(torch::ScalarType dtype);
  torch::Tensor reference_forward(const torch::Tensor& hidden, const ModernBertInputs& inputs, bool training);
  torch::Tensor fast_forward(const torch::Tensor& hidden, const ModernBertInputs& inputs);

  Parts parts_;
  ModernBertLayerStyle style_;
  Prepared prepared_;
};

class ModernBertEncoderLayerImpl : public torch::nn::Module {
 public:
  ModernBertEncoderLayerImpl(const ModelConfig& config, int64_t layer_id);
  torch::Tensor forward(const torch::Tensor& hidden_states, const ModernBertInputs& inputs);

  ModernBertNorm attn_norm{nullptr};  // layer 0: none (HF's nn.Identity)
  ModernBertAttention attn{nullptr};
  ModernBertNorm mlp_norm{nullptr};
  ModernBertMLP mlp{nullptr};

 private:
  std::unique_ptr<ModernBertLayerKernel> kernel_;
};
TORCH_MODULE(ModernBertEncoderLayer);

class ModernBertModelImpl : public torch::nn::Module {
 public:
  explicit ModernBertModelImpl(const ModelConfig& config);

  ModernBertEmbeddings embeddings{nullptr};
  std::vector<ModernBertEncoderLayer> layers;  // registered as layers.<i>
  ModernBertNorm final_norm{nullptr};
};
TORCH_MODULE(ModernBertModel);

// ModernBertPredictionHead: norm(act(dense(x))).
class ModernBertPredictionHeadImpl : public torch::nn::Module {
 public:
  explicit ModernBertPredictionHeadImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear dense{nullptr};
  ModernBertNorm norm{nullptr};

 private:
  Activation activation_;
};
TORCH_MODULE(ModernBertPredictionHead);

class ModernBertForQuestionAnswering : public QaModel {
 public:
  explicit ModernBertForQuestionAnswering(const ModelConfig& config);

  ModernBertModel model{nullptr};
  ModernBertPredictionHead head_module{nullptr};  // registered as "head"
  torch::nn::Linear classifier{nullptr};

 protected:
  std::unique_ptr<LayerInputs> layer_inputs(const EncoderBatch& batch) override;
  torch::Tensor embed(const EncoderBatch& batch, const LayerInputs& inputs) override;
  torch::Tensor layer(int64_t index, const torch::Tensor& hidden, const LayerInputs& inputs) override;
  torch::Tensor final_norm(const torch::Tensor& hidden) override;
  bool last_state_is_normed() const override { return false; }
  // classifier(drop(head(last_hidden_state))), in float32.
  torch::Tensor head(const torch::Tensor& last_hidden_state) override;
  // HF's _init_weights: truncated normals (cutoff initializer_cutoff_factor x std) of std
  // initializer_range for Wqkv, Wi and the embeddings, initializer_range / sqrt(2 x layers) for the
  // Wo's and head.dense, hidden_size^-0.5 for the classifier; zero biases; norms 1/0.
  bool init_module(const std::string& name, torch::nn::Module& module) override;

 private:
  double classifier_dropout_;
};

}  // namespace layerprobe
