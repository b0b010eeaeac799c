// ALBERT (transformers 2.5.1's modeling_albert.py): factorised embeddings
// projected to the hidden size, and num_hidden_groups groups of
// inner_group_num layers whose parameters the num_hidden_layers steps share.
// Modules carry HF's names: albert.embeddings.*, albert.encoder.
// embedding_hidden_mapping_in, albert.encoder.albert_layer_groups.<g>.
// albert_layers.<j>.{attention.{query,key,value,dense,LayerNorm},ffn,ffn_output,
// full_layer_layer_norm}, albert.pooler, qa_outputs.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "layerprobe/model/qa_model.hpp"
#include "model/layers.hpp"

namespace layerprobe {

// HF's assignment of layer `layer` to a parameter group:
// int(layer / (num_layers / num_groups)), in floating point as Python does.
int64_t layer_group_index(int64_t layer, int64_t num_layers, int64_t num_groups);

class AlbertEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit AlbertEmbeddingsImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids);

  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
  double dropout;
};
TORCH_MODULE(AlbertEmbeddings);

// Self-attention's parameters (HF's AlbertAttention); AlbertLayer computes it.
class AlbertAttentionImpl : public torch::nn::Module {
 public:
  explicit AlbertAttentionImpl(const ModelConfig& config);
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, dense{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
};
TORCH_MODULE(AlbertAttention);

class AlbertLayerImpl : public torch::nn::Module {
 public:
  explicit AlbertLayerImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& hidden_states, const torch::Tensor& additive_mask);

  torch::nn::LayerNorm full_layer_layer_norm{nullptr};
  AlbertAttention attention{nullptr};
  torch::nn::Linear ffn{nullptr}, ffn_output{nullptr};

 private:
  std::unique_ptr<TransformerLayerKernel> kernel_;
};
TORCH_MODULE(AlbertLayer);

// inner_group_num layers run one after another.
class AlbertLayerGroupImpl : public torch::nn::Module {
 public:
  explicit AlbertLayerGroupImpl(const ModelConfig& config);
  torch::Tensor forward(torch::Tensor hidden_states, const torch::Tensor& additive_mask);
  std::vector<AlbertLayer> layers;  // registered as albert_layers.<j>
};
TORCH_MODULE(AlbertLayerGroup);

class AlbertTransformerImpl : public torch::nn::Module {
 public:
  explicit AlbertTransformerImpl(const ModelConfig& config);
  // Step `index` of the num_hidden_layers: a whole group (all its inner layers).
  torch::Tensor step(int64_t index, const torch::Tensor& hidden, const torch::Tensor& additive_mask);

  torch::nn::Linear embedding_hidden_mapping_in{nullptr};
  std::vector<AlbertLayerGroup> groups;  // registered as albert_layer_groups.<g>
  int64_t num_layers;
};
TORCH_MODULE(AlbertTransformer);

class AlbertModelImpl : public torch::nn::Module {
 public:
  explicit AlbertModelImpl(const ModelConfig& config);

  AlbertEmbeddings embeddings{nullptr};
  AlbertTransformer encoder{nullptr};
  torch::nn::Linear pooler{nullptr};  // kept for checkpoint round trips; the QA head does not use it
};
TORCH_MODULE(AlbertModel);

class AlbertForQuestionAnswering : public QaModel {
 public:
  explicit AlbertForQuestionAnswering(const ModelConfig& config);
  std::string pooler_prefix() const override { return "albert.pooler."; }

  AlbertModel albert{nullptr};

 protected:
  std::unique_ptr<LayerInputs> layer_inputs(const EncoderBatch& batch) override;
  // The embeddings projected to the hidden size (embedding_hidden_mapping_in): HF's hidden_states[0].
  torch::Tensor embed(const EncoderBatch& batch, const LayerInputs& inputs) override;
  torch::Tensor layer(int64_t index, const torch::Tensor& hidden, const LayerInputs& inputs) override;
};

}  // namespace layerprobe
