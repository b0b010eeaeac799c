// DistilBERT (transformers 2.5.1's modeling_distilbert.py): word + position
// embeddings (learned, or fixed sinusoids when sinusoidal_pos_embds), no token
// types, and post-LayerNorm blocks that scale q before q k^T and mask with -inf.
// Its config.json says dim, n_layers, n_heads, hidden_dim, activation, dropout,
// attention_dropout, qa_dropout; LayerNorm eps is fixed at 1e-12.
// Modules carry HF's names: distilbert.embeddings.{word,position}_embeddings,
// distilbert.embeddings.LayerNorm, distilbert.transformer.layer.<i>.attention.
// {q_lin,k_lin,v_lin,out_lin}, ...sa_layer_norm, ...ffn.{lin1,lin2},
// ...output_layer_norm, qa_outputs.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "layerprobe/model/qa_model.hpp"
#include "model/layers.hpp"

namespace layerprobe {

// create_sinusoidal_embeddings: [n_pos, dim] of sin (even columns) and cos
// (odd columns) of pos / 10000^(2*(j//2)/dim), computed in double as NumPy does.
torch::Tensor sinusoidal_position_table(int64_t positions, int64_t dim);

class DistilBertEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit DistilBertEmbeddingsImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& input_ids);
  // Writes the sinusoid table (when configured) and freezes it, as HF does.
  void init_sinusoids();

  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};

 private:
  bool sinusoidal_;
  double dropout_;
};
TORCH_MODULE(DistilBertEmbeddings);

struct MultiHeadSelfAttentionImpl : torch::nn::Module {
  explicit MultiHeadSelfAttentionImpl(const ModelConfig& config);
  torch::nn::Linear q_lin{nullptr}, k_lin{nullptr}, v_lin{nullptr}, out_lin{nullptr};
};
TORCH_MODULE(MultiHeadSelfAttention);

struct DistilFfnImpl : torch::nn::Module {
  explicit DistilFfnImpl(const ModelConfig& config);
  torch::nn::Linear lin1{nullptr}, lin2{nullptr};
};
TORCH_MODULE(DistilFfn);

class TransformerBlockImpl : public torch::nn::Module {
 public:
  explicit TransformerBlockImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& hidden_states, const torch::Tensor& additive_mask);

  MultiHeadSelfAttention attention{nullptr};
  torch::nn::LayerNorm sa_layer_norm{nullptr};
  DistilFfn ffn{nullptr};
  torch::nn::LayerNorm output_layer_norm{nullptr};

 private:
  std::unique_ptr<TransformerLayerKernel> kernel_;
};
TORCH_MODULE(TransformerBlock);

class DistilBertModelImpl : public torch::nn::Module {
 public:
  explicit DistilBertModelImpl(const ModelConfig& config);

  DistilBertEmbeddings embeddings{nullptr};
  std::vector<TransformerBlock> layers;  // registered as transformer.layer.<i>
};
TORCH_MODULE(DistilBertModel);

class DistilBertForQuestionAnswering : public QaModel {
 public:
  explicit DistilBertForQuestionAnswering(const ModelConfig& config);

  DistilBertModel distilbert{nullptr};

 protected:
  std::unique_ptr<LayerInputs> layer_inputs(const EncoderBatch& batch) override;
  torch::Tensor embed(const EncoderBatch& batch, const LayerInputs& inputs) override;
  torch::Tensor layer(int64_t index, const torch::Tensor& hidden, const LayerInputs& inputs) override;
  void init_family_weights() override;
};

}  // namespace layerprobe
