// The model interface every encoder family implements: transformers 2.5.1's
// <Family>ForQuestionAnswering with all hidden states. The probe, predict,
// run_squad, bench and encode code sees only this type; families live in
// src/model/<family>/ and are chosen by config.json's model_type
// (model/family.hpp). Module and parameter names are HF's, so
// named_parameters() yields HF keys ("bert.encoder.layer.0.attention.self.query.weight").
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "layerprobe/model/config.hpp"

namespace layerprobe {

struct ModelFamily;

// The inputs of one forward pass. input_ids and attention_mask: [B,T] int64.
// token_type_ids: [B,T] int64, or undefined where a family takes none or
// run_squad passes none (the family then embeds type 0, as HF does).
struct EncoderBatch {
  torch::Tensor input_ids, token_type_ids, attention_mask;

  EncoderBatch to(const torch::Device& device) const;
  int64_t size() const { return input_ids.size(0); }
  int64_t length() const { return input_ids.size(1); }
};

struct EncoderOutput {
  // num_hidden_layers + 1 entries of [B,T,H] (HF's hidden_states: index 0 =
  // the embedding output as the first layer sees it, i = output of layer i);
  // only the last when not collected.
  std::vector<torch::Tensor> hidden_states;
  torch::Tensor start_logits, end_logits;  // [B,T]
  const torch::Tensor& last_hidden_state() const { return hidden_states.back(); }
};

class QaModel : public torch::nn::Module {
 public:
  // Checks the batch (validate_encoder_inputs' shape rules), runs the encoder
  // and the QA head. Dropout follows is_training(), as in HF. token_type_ids
  // are dropped for a family that takes none (run_squad 2.5.1 deletes them).
  EncoderOutput forward(const EncoderBatch& batch, bool collect_hidden_states = true);

  const ModelConfig& config() const { return config_; }
  const ModelFamily& family() const;

  // HF's _init_weights over every module: N(0, initializer_range) for Linear
  // and Embedding weights, zero biases, LayerNorm 1/0 (and what the family
  // adds, e.g. DistilBERT's sinusoidal positions).
  void init_weights();
  void init_qa_head();
  // The pooler, where the family has one (HF keeps it; the QA head does not use it).
  void init_pooler();
  // HF key prefix of the pooler's parameters ("bert.pooler."), or "" when the family has none.
  virtual std::string pooler_prefix() const { return ""; }

  torch::nn::Linear qa_outputs{nullptr};

 protected:
  explicit QaModel(const ModelConfig& config);
  // Registers qa_outputs; families call it after their base module, so the
  // parameters come in HF's order.
  void register_qa_head();
  // The family's base model: hidden states as EncoderOutput::hidden_states.
  virtual std::vector<torch::Tensor> encode(const EncoderBatch& batch, bool collect) = 0;
  // Family-specific initialisation after the generic one.
  virtual void init_family_weights() {}

  // Dropout on the last hidden state before qa_outputs in training (DistilBERT's qa_dropout).
  double qa_dropout = 0.0;

 private:
  ModelConfig config_;
};

// A fresh model of the config's family, HF-initialised from the global seed, in train mode.
std::shared_ptr<QaModel> create_model(const ModelConfig& config);

// Error (naming the problem) unless the tensors are [B,T] integer tensors of
// one shape with ids, token types and mask values the config allows (an
// undefined token_type_ids is allowed; a family that takes none ignores them).
// At most max_position_embeddings - the family's position_offset tokens.
void validate_encoder_inputs(const ModelConfig& config, const EncoderBatch& batch);

// The oneDNN CPU paths are on by default: the layers' inference path (linears
// over prepared, fused weights) and, when autograd records, the linears as
// oneDNN inner products with oneDNN backward passes. Turning them off runs the
// reference ops everywhere, which the bench and the parity tests use for comparison.
void set_fast_cpu_path(bool enabled);
bool fast_cpu_path_enabled();

}  // namespace layerprobe
