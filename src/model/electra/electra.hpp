// ELECTRA's discriminator (transformers 4.57.5's modeling_electra.py): BERT's
// post-LayerNorm layers (src/model/bert/) over embeddings of width
// embedding_size, projected to hidden_size by embeddings_project when the two
// differ; hidden_states[0] is after that projection, as HF returns it. No
// pooler. Modules carry HF's names: electra.embeddings.{word,position,token_type}_embeddings,
// electra.embeddings.LayerNorm, electra.embeddings_project, electra.encoder.layer.<i>.*
// (BERT's), qa_outputs.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "layerprobe/model/qa_model.hpp"
#include "model/bert/bert.hpp"

namespace layerprobe {

class ElectraEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit ElectraEmbeddingsImpl(const ModelConfig& config);
  // (word + token type) + position, LayerNorm, dropout: 4.57.5's order of the sums.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids);

  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(ElectraEmbeddings);

class ElectraModelImpl : public torch::nn::Module {
 public:
  explicit ElectraModelImpl(const ModelConfig& config);

  ElectraEmbeddings embeddings{nullptr};
  torch::nn::Linear embeddings_project{nullptr};  // only when embedding_size != hidden_size
  std::vector<BertLayer> layers;                  // registered as encoder.layer.<i>
};
TORCH_MODULE(ElectraModel);

class ElectraForQuestionAnswering : public QaModel {
 public:
  explicit ElectraForQuestionAnswering(const ModelConfig& config);

  ElectraModel electra{nullptr};

 protected:
  std::unique_ptr<LayerInputs> layer_inputs(const EncoderBatch& batch) override;
  torch::Tensor embed(const EncoderBatch& batch, const LayerInputs& inputs) override;
  torch::Tensor layer(int64_t index, const torch::Tensor& hidden, const LayerInputs& inputs) override;
  // 4.x's _init_weights: embeddings' padding rows zeroed.
  bool init_module(const std::string& name, torch::nn::Module& module) override;
};

}  // namespace layerprobe
