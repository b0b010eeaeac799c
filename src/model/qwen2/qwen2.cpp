// Qwen2 (transformers 4.57.5's modeling_qwen2.py): Llama's module tree
// (src/model/llama/) with biases on q_proj, k_proj and v_proj (none on o_proj or
// the MLP), RoPE theta 1e6 in the published models, and sliding-window
// attention only where use_sliding_window (or layer_types) says. The QA class
// keeps the base model under "transformer.", Qwen2ForCausalLM under "model.".
#include "model/llama/llama.hpp"

namespace layerprobe {

namespace {

const LlamaVariant kQwen2Variant{"transformer", /*qkv_bias=*/true, /*output_bias=*/false, /*mlp_bias=*/false};

ModelFamily make_qwen2_family() {
  ModelFamily f = llama_family();
  f.model_type = "qwen2";
  f.example = "Qwen/Qwen2.5-0.5B";
  f.architecture = "Qwen2ForQuestionAnswering";
  // transformers 4.57.5's Qwen2Config defaults.
  f.defaults = {{"vocab_size", 151936},
                {"hidden_size", 4096},
                {"intermediate_size", 22016},
                {"num_hidden_layers", 32},
                {"num_attention_heads", 32},
                {"num_key_value_heads", 32},
                {"hidden_act", "silu"},
                {"max_position_embeddings", 32768},
                {"initializer_range", 0.02},
                {"rms_norm_eps", 1e-6},
                {"tie_word_embeddings", false},
                {"rope_theta", 10000.0},
                {"rope_scaling", nullptr},
                {"use_sliding_window", false},
                {"sliding_window", 4096},
                {"max_window_layers", 28},
                {"layer_types", nullptr},
                {"attention_dropout", 0.0}};
  auto shape = [](int64_t hidden, int64_t inner, int64_t layers, int64_t heads, int64_t kv, int64_t positions,
                  bool tied, int64_t vocab) {
    return nlohmann::json{{"model_type", "qwen2"},
                          {"architectures", {"Qwen2ForCausalLM"}},
                          {"hidden_size", hidden},
                          {"intermediate_size", inner},
                          {"num_hidden_layers", layers},
                          {"num_attention_heads", heads},
                          {"num_key_value_heads", kv},
                          {"max_position_embeddings", positions},
                          {"max_window_layers", layers},
                          {"rope_theta", 1000000.0},
                          {"rms_norm_eps", 1e-6},
                          {"sliding_window", positions},
                          {"use_sliding_window", false},
                          {"tie_word_embeddings", tied},
                          {"vocab_size", vocab},
                          {"bos_token_id", 151643},
                          {"eos_token_id", 151643}};
  };
  f.published = {{"Qwen/Qwen2.5-0.5B", shape(896, 4864, 24, 14, 2, 32768, true, 151936)},
                 {"Qwen/Qwen2.5-1.5B", shape(1536, 8960, 28, 12, 2, 131072, true, 151936)},
                 {"Qwen/Qwen2.5-7B", shape(3584, 18944, 28, 28, 4, 131072, false, 152064)}};
  f.create = [](const ModelConfig& config) { return create_llama_model(config, kQwen2Variant); };
  f.parameters = [](const ModelConfig& config) { return llama_parameters(config, kQwen2Variant); };
  return f;
}

}  // namespace

const ModelFamily& qwen2_family() {
  static const ModelFamily family = make_qwen2_family();
  return family;
}

}  // namespace layerprobe
