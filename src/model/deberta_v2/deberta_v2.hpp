// DeBERTa-v2/v3 (transformers 4.57.5's modeling_deberta_v2.py): word embeddings (absolute positions only
// when position_biased_input, token types only when type_vocab_size > 0) times the attention mask, then
// post-LayerNorm layers whose attention adds content-to-position (c2p) and position-to-content (p2c) terms
// over log-bucketed relative positions (disentangled attention; its kernels in disentangled_attention.hpp),
// and, where conv_kernel_size > 0, a convolution beside the first layer. Modules carry HF's names:
// deberta.embeddings.{word_embeddings,position_embeddings,token_type_embeddings,embed_proj,LayerNorm},
// deberta.encoder.layer.<i>.attention.self.{query_proj,key_proj,value_proj,pos_key_proj,pos_query_proj},
// deberta.encoder.layer.<i>.attention.output.{dense,LayerNorm}, deberta.encoder.layer.<i>.intermediate.dense,
// deberta.encoder.layer.<i>.output.{dense,LayerNorm}, deberta.encoder.rel_embeddings, deberta.encoder.LayerNorm,
// deberta.encoder.conv.{conv,LayerNorm}, qa_outputs (no pooler in the QA model).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "layerprobe/model/qa_model.hpp"
#include "model/deberta_v2/disentangled_attention.hpp"
#include "model/layers.hpp"

namespace layerprobe {

// The config keys only DeBERTa-v2 has, read once (HF's getattr defaults where config.json lacks them).
struct DebertaV2Settings {
  int64_t embedding_size = 0;  // embedding_size, default hidden_size
  int64_t pad_token_id = 0;
  bool position_biased_input = true;
  RelativeAttention relative;  // relative_attention, position_buckets, max_relative_positions, pos_att_type, ...
  bool share_att_key = false;
  bool norm_rel_ebd = false;  // "layer_norm" in norm_rel_ebd's '|'-separated list
  int64_t conv_kernel_size = 0, conv_groups = 1;
  std::string conv_act = "tanh";
  double hidden_dropout = 0.1, attention_dropout = 0.1;

  // Error naming config.source and the key for a value HF would refuse or this port does not implement.
  explicit DebertaV2Settings(const ModelConfig& config);
};

class DebertaV2EmbeddingsImpl : public torch::nn::Module {
 public:
  DebertaV2EmbeddingsImpl(const ModelConfig& config, const DebertaV2Settings& settings);
  // LayerNorm(word [+ position] [+ token type], projected where embedding_size != hidden_size) * mask.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                        const torch::Tensor& attention_mask);

  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  torch::nn::Linear embed_proj{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(DebertaV2Embeddings);

// DisentangledSelfAttention's parameters (the computation is DisentangledLayerKernel's).
struct DisentangledSelfAttentionImpl : torch::nn::Module {
  DisentangledSelfAttentionImpl(const ModelConfig& config, const DebertaV2Settings& settings);
  torch::nn::Linear query_proj{nullptr}, key_proj{nullptr}, value_proj{nullptr};
  torch::nn::Linear pos_key_proj{nullptr}, pos_query_proj{nullptr};  // without share_att_key only
};
TORCH_MODULE(DisentangledSelfAttention);

// DebertaV2SelfOutput and DebertaV2Output: a dense projection and the residual's LayerNorm.
struct DebertaV2DenseNormImpl : torch::nn::Module {
  DebertaV2DenseNormImpl(const ModelConfig& config, int64_t in_features);
  torch::nn::Linear dense{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
};
TORCH_MODULE(DebertaV2DenseNorm);

struct DebertaV2AttentionImpl : torch::nn::Module {
  DebertaV2AttentionImpl(const ModelConfig& config, const DebertaV2Settings& settings);
  DisentangledSelfAttention self{nullptr};
  DebertaV2DenseNorm output{nullptr};
};
TORCH_MODULE(DebertaV2Attention);

struct DebertaV2IntermediateImpl : torch::nn::Module {
  explicit DebertaV2IntermediateImpl(const ModelConfig& config);
  torch::nn::Linear dense{nullptr};
};
TORCH_MODULE(DebertaV2Intermediate);

// ConvLayer: LayerNorm(residual + act(conv(hidden) masked)) * mask, after the first layer.
class DebertaV2ConvLayerImpl : public torch::nn::Module {
 public:
  DebertaV2ConvLayerImpl(const ModelConfig& config, const DebertaV2Settings& settings);
  torch::Tensor forward(const torch::Tensor& hidden, const torch::Tensor& residual, const torch::Tensor& mask);

  torch::nn::Conv1d conv{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};

 private:
  std::string activation_;
  double dropout_;
};
TORCH_MODULE(DebertaV2ConvLayer);

class DebertaV2LayerImpl : public torch::nn::Module {
 public:
  DebertaV2LayerImpl(const ModelConfig& config, const DebertaV2Settings& settings);
  // Gives the layer the encoder's shared relative embeddings (and their norm) it projects.
  void share_relative_embeddings(torch::nn::Embedding rel_embeddings, torch::nn::LayerNorm norm);
  torch::Tensor forward(const torch::Tensor& hidden_states, const DisentangledInputs& inputs);

  DebertaV2Attention attention{nullptr};
  DebertaV2Intermediate intermediate{nullptr};
  DebertaV2DenseNorm output{nullptr};

 private:
  std::unique_ptr<DisentangledLayerKernel> kernel_;
};
TORCH_MODULE(DebertaV2Layer);

class DebertaV2ModelImpl : public torch::nn::Module {
 public:
  DebertaV2ModelImpl(const ModelConfig& config, const DebertaV2Settings& settings);

  DebertaV2Embeddings embeddings{nullptr};
  std::vector<DebertaV2Layer> layers;               // encoder.layer.<i>
  torch::nn::Embedding rel_embeddings{nullptr};     // encoder.rel_embeddings (relative_attention)
  torch::nn::LayerNorm rel_norm{nullptr};           // encoder.LayerNorm (norm_rel_ebd layer_norm)
  DebertaV2ConvLayer conv{nullptr};                 // encoder.conv (conv_kernel_size > 0)
};
TORCH_MODULE(DebertaV2Model);

class DebertaV2ForQuestionAnswering : public QaModel {
 public:
  explicit DebertaV2ForQuestionAnswering(const ModelConfig& config);

  DebertaV2Model deberta{nullptr};

 protected:
  std::unique_ptr<LayerInputs> layer_inputs(const EncoderBatch& batch) override;
  torch::Tensor embed(const EncoderBatch& batch, const LayerInputs& inputs) override;
  torch::Tensor layer(int64_t index, const torch::Tensor& hidden, const LayerInputs& inputs) override;
  // 4.57.5's _init_weights also zeroes the word embeddings' padding row.
  void init_family_weights() override;

 private:
  DebertaV2Settings settings_;
  // The relative-position tables of each window length seen (a pass builds them once per length).
  std::mutex positions_mutex_;
  std::map<int64_t, std::shared_ptr<const RelativePositions>> positions_;
};

// The relative-attention columns a window of `tokens` tokens reaches (what the CPU kernel's c2p and p2c
// products compute): the number of distinct rel_embeddings rows its bucketed positions index.
int64_t deberta_v2_relative_columns(const ModelConfig& config, int64_t tokens);

}  // namespace layerprobe
