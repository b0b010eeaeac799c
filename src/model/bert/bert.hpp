// BERT (transformers 2.5.1's modeling_bert.py): word + position + token type
// embeddings, then post-LayerNorm layers. RoBERTa (src/model/roberta/) is the
// same module tree under "roberta." with positions counted from the padding id.
// Modules carry HF's names: bert.embeddings.{word,position,token_type}_embeddings,
// bert.embeddings.LayerNorm, bert.encoder.layer.<i>.attention.self.{query,key,value},
// bert.encoder.layer.<i>.attention.output.{dense,LayerNorm},
// bert.encoder.layer.<i>.intermediate.dense, bert.encoder.layer.<i>.output.{dense,LayerNorm},
// bert.pooler.dense, qa_outputs.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "layerprobe/model/qa_model.hpp"
#include "model/layers.hpp"

namespace layerprobe {

// Where position ids come from: 0..T-1 (BERT), or RoBERTa's
// cumsum(input_ids != padding_idx) * mask + padding_idx.
struct BertPositions {
  bool from_padding = false;
  int64_t padding_idx = 0;  // also the word embeddings' padding_idx
};

// create_position_ids_from_input_ids of 2.5.1's modeling_utils.
torch::Tensor position_ids_from_input_ids(const torch::Tensor& input_ids, int64_t padding_idx);

class BertEmbeddingsImpl : public torch::nn::Module {
 public:
  BertEmbeddingsImpl(const ModelConfig& config, BertPositions positions);
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids);

  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};

 private:
  BertPositions positions_;
  double dropout_;
};
TORCH_MODULE(BertEmbeddings);

// Parameter holders named as HF's BertSelfAttention, BertSelfOutput, BertAttention,
// BertIntermediate and BertOutput; BertLayer computes the layer from them.
struct BertSelfAttentionImpl : torch::nn::Module {
  explicit BertSelfAttentionImpl(const ModelConfig& config);
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr};
};
TORCH_MODULE(BertSelfAttention);

// BertSelfOutput and BertOutput: a dense projection and the residual's LayerNorm.
struct BertDenseNormImpl : torch::nn::Module {
  BertDenseNormImpl(const ModelConfig& config, int64_t in_features);
  torch::nn::Linear dense{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
};
TORCH_MODULE(BertDenseNorm);

struct BertAttentionImpl : torch::nn::Module {
  explicit BertAttentionImpl(const ModelConfig& config);
  BertSelfAttention self{nullptr};
  BertDenseNorm output{nullptr};
};
TORCH_MODULE(BertAttention);

struct BertIntermediateImpl : torch::nn::Module {
  explicit BertIntermediateImpl(const ModelConfig& config);
  torch::nn::Linear dense{nullptr};
};
TORCH_MODULE(BertIntermediate);

class BertLayerImpl : public torch::nn::Module {
 public:
  explicit BertLayerImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& hidden_states, const torch::Tensor& additive_mask);

  BertAttention attention{nullptr};
  BertIntermediate intermediate{nullptr};
  BertDenseNorm output{nullptr};

 private:
  std::unique_ptr<TransformerLayerKernel> kernel_;
};
TORCH_MODULE(BertLayer);

class BertModelImpl : public torch::nn::Module {
 public:
  BertModelImpl(const ModelConfig& config, BertPositions positions);

  BertEmbeddings embeddings{nullptr};
  std::vector<BertLayer> layers;  // registered as encoder.layer.<i>
  torch::nn::Linear pooler_dense{nullptr};  // pooler.dense: kept for round trips; the QA head does not use it
};
TORCH_MODULE(BertModel);

// BertForQuestionAnswering, and RobertaForQuestionAnswering with
// base_prefix "roberta" and positions from the padding id.
class BertForQuestionAnswering : public QaModel {
 public:
  BertForQuestionAnswering(const ModelConfig& config, const std::string& base_prefix = "bert",
                           BertPositions positions = {});
  std::string pooler_prefix() const override { return prefix_ + ".pooler."; }

  BertModel bert{nullptr};

 protected:
  std::unique_ptr<LayerInputs> layer_inputs(const EncoderBatch& batch) override;
  torch::Tensor embed(const EncoderBatch& batch, const LayerInputs& inputs) override;
  torch::Tensor layer(int64_t index, const torch::Tensor& hidden, const LayerInputs& inputs) override;

 private:
  std::string prefix_;
};

// BERT's registry entry (2.5.1's BertConfig defaults, checks, parameters,
// FLOPs), which RoBERTa's starts from.
const ModelFamily& bert_family();

}  // namespace layerprobe
