// The model interface every family implements: transformers'
// <Family>ForQuestionAnswering with all hidden states, split into the steps a
// probing study needs to reach one at a time — embeddings, layer i, the final
// norm, the QA head — so that the probe, predict, run_squad, bench, encode,
// head-lens and amnesic code sees only this type. Families live in
// src/model/<family>/ and are chosen by config.json's model_type
// (model/family.hpp). Module and parameter names are HF's, so
// named_parameters() yields HF keys ("bert.encoder.layer.0.attention.self.query.weight").
//
// What "layer l" means: hidden_states[l] is entry l of HF's output_hidden_states
// tuple (0 = the embedding output as the first layer sees it, l = the output of
// layer l). Its last entry is before the final norm in some families (ModernBERT)
// and after it in others (GPT-2, Llama); last_hidden_state is what the head reads.
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
  // only the last when not collected. forward_from(l, ...) gives entries l..L.
  std::vector<torch::Tensor> hidden_states;
  // [B,T,H]: the base model's output, which the QA head reads (HF's
  // last_hidden_state): hidden_states.back(), or the final norm of it where the
  // family's last hidden_states entry precedes that norm.
  torch::Tensor last_hidden_state;
  torch::Tensor start_logits, end_logits;  // [B,T]
};

// What a family's layers read besides the hidden states, made once per
// forward pass from the batch: the additive attention mask ([B,1,1,T] or
// [B,1,T,T]: padding, plus causal or sliding-window masking where the family
// has it) and, in a family's subclass, whatever else its layers share (RoPE
// tables, relative-position embeddings).
struct LayerInputs {
  virtual ~LayerInputs() = default;
  torch::Tensor additive_mask;
};

class QaModel : public torch::nn::Module {
 public:
  // Checks the batch (validate_encoder_inputs' shape rules), runs the encoder
  // and the QA head. Dropout follows is_training(), as in HF. token_type_ids
  // are dropped for a family that takes none (run_squad 2.5.1 deletes them).
  EncoderOutput forward(const EncoderBatch& batch, bool collect_hidden_states = true);
  // The same forward pass continued from hidden_states[layer] given as `hidden`
  // (say, edited by an eraser): layers layer+1..L, the final norm and the head.
  // hidden_states then holds entries layer..L (only L when not collected), the
  // first being `hidden` itself. layer = L runs only the head (and the final
  // norm where hidden_states[L] precedes it). Error for a layer outside [0, L]
  // or a `hidden` not [B,T,H] for the batch.
  EncoderOutput forward_from(const EncoderBatch& batch, int64_t layer, const torch::Tensor& hidden,
                             bool collect_hidden_states = false);
  // The model's own QA head applied to hidden_states[layer] as if no layer
  // followed (the head lens): the final norm unless hidden_states[layer] is
  // already past it (the last entry of GPT-2/Llama), then head(). At layer L it
  // gives forward()'s logits. Returns start and end logits, [B,T] each.
  std::pair<torch::Tensor, torch::Tensor> head_logits_at(const torch::Tensor& hidden_state, int64_t layer);

  int64_t num_layers() const { return config_.num_hidden_layers; }
  const ModelConfig& config() const { return config_; }
  const ModelFamily& family() const;

  // HF's _init_weights over every module: N(0, initializer_range) for Linear
  // and Embedding weights, zero biases, LayerNorm 1/0 (and what the family
  // adds, e.g. DistilBERT's sinusoidal positions).
  void init_weights();
  // Initialises every module of the QA head (the family's head_prefixes) as
  // HF's _init_weights would.
  void init_qa_head();
  // The pooler, where the family has one (HF keeps it; the QA head does not use it).
  void init_pooler();
  // HF key prefix of the pooler's parameters ("bert.pooler."), or "" when the family has none.
  virtual std::string pooler_prefix() const { return ""; }

  // The QA head of every family but those that override head() (ModernBERT).
  torch::nn::Linear qa_outputs{nullptr};

 protected:
  explicit QaModel(const ModelConfig& config);
  // Registers qa_outputs; families call it after their base module, so the
  // parameters come in HF's order.
  void register_qa_head();

  // The steps of the family's base model, which forward() and forward_from() run:
  // what the layers share for this batch (at least the additive mask) ...
  virtual std::unique_ptr<LayerInputs> layer_inputs(const EncoderBatch& batch) = 0;
  // ... hidden_states[0] ...
  virtual torch::Tensor embed(const EncoderBatch& batch, const LayerInputs& inputs) = 0;
  // ... layer `index` (0-based) on hidden_states[index], giving hidden_states[index + 1] ...
  virtual torch::Tensor layer(int64_t index, const torch::Tensor& hidden, const LayerInputs& inputs) = 0;
  // ... the norm between the last layer and the head (none for post-LayerNorm encoders) ...
  virtual torch::Tensor final_norm(const torch::Tensor& hidden) { return hidden; }
  // ... whether HF's last hidden_states entry is after final_norm (GPT-2, Llama)
  // rather than before it (ModernBERT) ...
  virtual bool last_state_is_normed() const { return true; }
  // ... and the QA head: last_hidden_state [B,T,H] -> logits [B,T,2]. The
  // default is dropout(qa_dropout) then qa_outputs, in qa_outputs' dtype.
  virtual torch::Tensor head(const torch::Tensor& last_hidden_state);

  // Family-specific initialisation after the generic one.
  virtual void init_family_weights() {}
  // HF's _init_weights for one module, `name` its path ("model.layers.0.attn.Wqkv"),
  // called first for every module init_weights and init_qa_head reach; true when
  // it initialised the module. The default initialisation (N(0, initializer_range)
  // Linear and Embedding weights, zero biases, LayerNorm 1/0) applies otherwise:
  // families override this where their HF class initialises differently
  // (ModernBERT's truncated normals, 4.x's zeroed padding rows) or has modules of its own kinds.
  virtual bool init_module(const std::string& /*name*/, torch::nn::Module& /*module*/) { return false; }

  // Dropout on the last hidden state before qa_outputs in training (DistilBERT's qa_dropout).
  double qa_dropout = 0.0;

 private:
  // Drops what the family does not take and checks shapes and length.
  EncoderBatch checked(const EncoderBatch& batch) const;
  // Layers first..L-1 on `hidden` (= hidden_states[first]), the final norm and the head.
  EncoderOutput run_from(int64_t first, torch::Tensor hidden, const LayerInputs& inputs, bool collect);
  void init_modules(const std::string& prefix);

  ModelConfig config_;
};

// Error (naming config.source and its sizes) when `parameters` weights of `dtype`, those a model
// allocates rather than maps from its file, would take more memory than is available.
void check_model_fits_memory(const ModelConfig& config, double parameters, torch::Dtype dtype);

// A fresh model of the config's family, HF-initialised from the global seed, in train mode.
// Families that can compute in a half dtype (the decoders) allocate and initialise their base
// model's weights in `weights_dtype`; the others build float32 models whatever it says.
std::shared_ptr<QaModel> create_model(const ModelConfig& config, torch::Dtype weights_dtype = torch::kFloat32);

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
