// The ALBERT encoder with a SQuAD head, following transformers 2.5.1's
// AlbertModel / AlbertForQuestionAnswering operation for operation. Module
// and parameter names are HF's, so named_parameters() yields HF keys
// ("albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight", ...).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "layerprobe/model/config.hpp"

namespace layerprobe {

enum class Activation { Gelu, GeluNew, Relu };
Activation parse_activation(const std::string& name);  // Error for unknown names
torch::Tensor apply_activation(const torch::Tensor& x, Activation activation);

// HF's assignment of layer `layer` to a parameter group:
// int(layer / (num_layers / num_groups)), in floating point as Python does.
int64_t layer_group_index(int64_t layer, int64_t num_layers, int64_t num_groups);

// [B,T] 0/1 mask -> additive [B,1,1,T] mask: 0 to attend, -10000 at padding.
torch::Tensor additive_attention_mask(const torch::Tensor& attention_mask, torch::Dtype dtype);

class AlbertEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit AlbertEmbeddingsImpl(const AlbertConfig& config);
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids);

  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(AlbertEmbeddings);

// Self-attention plus its output projection, residual and LayerNorm
// (HF's AlbertAttention).
class AlbertAttentionImpl : public torch::nn::Module {
 public:
  explicit AlbertAttentionImpl(const AlbertConfig& config);
  torch::Tensor forward(const torch::Tensor& hidden_states, const torch::Tensor& additive_mask);

  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, dense{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
  torch::nn::Dropout dropout{nullptr};  // HF uses attention_probs_dropout_prob for both dropouts here
  int64_t num_heads, head_size;
};
TORCH_MODULE(AlbertAttention);

// The oneDNN CPU paths are on by default: AlbertLayer's inference path
// (linears over prepared, fused weights) and, when autograd records, the
// encoder's linears as oneDNN inner products with oneDNN backward passes.
// Turning them off runs the reference ops everywhere, which the bench and the
// parity tests use for comparison.
void set_fast_cpu_path(bool enabled);
bool fast_cpu_path_enabled();

// One transformer layer: every linear/attention op of the layer runs in
// forward(), so a faster implementation can replace this one method.
// In eval mode without autograd on CPU float32 (and with the fast path
// enabled) forward() runs fast_forward(): Q, K and V in one oneDNN linear
// over a [3H,H] weight, the other linears through oneDNN too, and the
// activation as one fused kernel. Its prepared weights are derived from the
// parameters and rebuilt whenever a parameter changes (in place or replaced).
class AlbertLayerImpl : public torch::nn::Module {
 public:
  explicit AlbertLayerImpl(const AlbertConfig& config);
  torch::Tensor forward(const torch::Tensor& hidden_states, const torch::Tensor& additive_mask);

  torch::nn::LayerNorm full_layer_layer_norm{nullptr};
  AlbertAttention attention{nullptr};
  torch::nn::Linear ffn{nullptr}, ffn_output{nullptr};
  Activation activation;

 private:
  struct PreparedWeights {
    std::vector<std::pair<const void*, uint32_t>> source;  // data pointer and version of each parameter
    torch::Tensor qkv_weight, qkv_bias, dense_weight, ffn_weight, ffn_output_weight;
  };
  bool use_fast_path(const torch::Tensor& hidden_states) const;
  const PreparedWeights& prepared_weights();
  torch::Tensor fast_forward(const torch::Tensor& hidden_states, const torch::Tensor& additive_mask);

  PreparedWeights prepared_;
};
TORCH_MODULE(AlbertLayer);

// inner_group_num layers run one after another.
class AlbertLayerGroupImpl : public torch::nn::Module {
 public:
  explicit AlbertLayerGroupImpl(const AlbertConfig& config);
  torch::Tensor forward(torch::Tensor hidden_states, const torch::Tensor& additive_mask);

  std::vector<AlbertLayer> layers;  // registered as albert_layers.<j>
};
TORCH_MODULE(AlbertLayerGroup);

class AlbertTransformerImpl : public torch::nn::Module {
 public:
  explicit AlbertTransformerImpl(const AlbertConfig& config);
  // Returns the hidden states after the embedding projection and after each
  // of the num_hidden_layers layers, or only the last when !collect.
  std::vector<torch::Tensor> forward(const torch::Tensor& embeddings, const torch::Tensor& additive_mask,
                                     bool collect);

  torch::nn::Linear embedding_hidden_mapping_in{nullptr};
  std::vector<AlbertLayerGroup> groups;  // registered as albert_layer_groups.<g>
  int64_t num_layers;
};
TORCH_MODULE(AlbertTransformer);

class AlbertModelImpl : public torch::nn::Module {
 public:
  explicit AlbertModelImpl(const AlbertConfig& config);
  std::vector<torch::Tensor> forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                                     const torch::Tensor& attention_mask, bool collect);

  AlbertEmbeddings embeddings{nullptr};
  AlbertTransformer encoder{nullptr};
  torch::nn::Linear pooler{nullptr};  // kept for checkpoint round trips; the QA head does not use it
};
TORCH_MODULE(AlbertModel);

struct EncoderOutput {
  // num_hidden_layers + 1 entries of [B,T,H] (index 0 = projected
  // embeddings, i = output of layer i); only the last when not collected.
  std::vector<torch::Tensor> hidden_states;
  torch::Tensor start_logits, end_logits;  // [B,T]
  const torch::Tensor& last_hidden_state() const { return hidden_states.back(); }
};

class AlbertForQuestionAnsweringImpl : public torch::nn::Module {
 public:
  explicit AlbertForQuestionAnsweringImpl(const AlbertConfig& config);
  // input_ids, token_type_ids, attention_mask: [B,T] int64 on the module's device.
  EncoderOutput forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                        const torch::Tensor& attention_mask, bool collect_hidden_states = true);

  // HF _init_weights: N(0, initializer_range) for Linear and Embedding
  // weights, zero biases, LayerNorm 1/0.
  void init_weights();
  void init_qa_head();
  void init_pooler();

  const AlbertConfig& config() const { return config_; }

  AlbertModel albert{nullptr};
  torch::nn::Linear qa_outputs{nullptr};

 private:
  AlbertConfig config_;
};
TORCH_MODULE(AlbertForQuestionAnswering);

// Error (naming the problem) unless the tensors are [B,T] integer tensors
// of one shape with ids, token types and mask values the config allows.
void validate_encoder_inputs(const AlbertConfig& config, const torch::Tensor& input_ids,
                             const torch::Tensor& token_type_ids, const torch::Tensor& attention_mask);

}  // namespace layerprobe
