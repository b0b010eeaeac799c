// Llama (transformers 4.57.5's modeling_llama.py), which also serves Mistral
// and, with q/k/v biases, Qwen2 (src/model/qwen2/): token embeddings, pre-RMSNorm
// decoder layers with rotary positions (rope_scaling included), grouped-query
// attention and a SwiGLU MLP, a final RMSNorm. The QA class keeps the base model
// under "transformer." (Mistral's under "model."), *ForCausalLM checkpoints
// under "model." (and an lm_head the QA model ignores). Modules carry HF's names:
// <prefix>.embed_tokens, <prefix>.layers.<i>.{input_layernorm,post_attention_layernorm},
// <prefix>.layers.<i>.self_attn.{q,k,v,o}_proj, <prefix>.layers.<i>.mlp.{gate,up,down}_proj,
// <prefix>.norm, qa_outputs. hidden_states[L] is after the final norm, as HF's.
#pragma once

#include <string>

#include "layerprobe/model/family.hpp"
#include "model/decoder.hpp"

namespace layerprobe {

// Where the variants differ.
struct LlamaVariant {
  std::string base_prefix = "transformer";
  bool qkv_bias = false, output_bias = false, mlp_bias = false;
};

// Llama's variant as its config says (attention_bias on all four projections, mlp_bias).
LlamaVariant llama_variant(const ModelConfig& config);

// head_dim, or hidden_size / num_attention_heads where the config has none.
int64_t llama_head_dim(const ModelConfig& config);
// num_key_value_heads, or num_attention_heads where null.
int64_t llama_kv_heads(const ModelConfig& config);
// The sliding-window size of layer `index`, 0 where it attends to all before it:
// layer_types when given, else Qwen2's use_sliding_window / max_window_layers, else
// Mistral's sliding_window on every layer (families without those keys: 0).
int64_t llama_layer_window(const ModelConfig& config, int64_t index);

std::shared_ptr<QaModel> create_llama_model(const ModelConfig& config, const LlamaVariant& variant);

// The checks, parameter and FLOP counts of every Llama-style config (the families' entries use them).
void validate_llama(const ModelConfig& config);
double llama_parameters(const ModelConfig& config, const LlamaVariant& variant);
double llama_forward_flops(const ModelConfig& config, int64_t tokens);

// Llama's registry entry, which Qwen2's and Mistral's start from.
const ModelFamily& llama_family();

}  // namespace layerprobe
