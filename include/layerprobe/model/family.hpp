// The encoder families: one entry per transformers model_type (2.5.1's for the
// study's four, 4.57.5's for the newer ones), saying
// how its config.json names the shared fields, how to build its
// ...ForQuestionAnswering module, which tokenizer and model inputs it uses,
// and how many FLOPs a forward pass costs. A new family is a folder under
// src/model/<family>/ defining its entry, plus one line in src/model/registry.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "layerprobe/model/config.hpp"

namespace layerprobe {

class QaModel;

// The config.json key of each shared ModelConfig field; an empty key = the
// family has no such key (the field keeps the value in `fixed`).
struct ConfigKeys {
  std::string vocab_size = "vocab_size";
  std::string hidden_size = "hidden_size";
  std::string num_hidden_layers = "num_hidden_layers";
  std::string num_attention_heads = "num_attention_heads";
  std::string intermediate_size = "intermediate_size";
  std::string max_position_embeddings = "max_position_embeddings";
  std::string type_vocab_size = "type_vocab_size";
  std::string hidden_act = "hidden_act";
  std::string layer_norm_eps = "layer_norm_eps";
  std::string initializer_range = "initializer_range";
};

struct ModelFamily {
  std::string model_type;   // config.json's "model_type"
  std::string base_prefix;  // HF's base_model_prefix: weights are "<prefix>.embeddings..."
  // Where checkpoints of the family's other classes keep the base model (Llama's and Qwen2's
  // *ForCausalLM: "model"); load_state_dict reads it under base_prefix, one of these, or bare.
  std::vector<std::string> checkpoint_prefixes;
  std::string tokenizer;    // a tokenizer kind of src/text/tokenizer_registry.cpp ("wordpiece", "tokenizer.json", ...)
  std::string example;      // a published model of the family, for messages
  std::string architecture; // the QA class name saved in config.json's "architectures"
  ConfigKeys keys;
  // The reference version's config class defaults (keys as the family spells them); keys
  // absent from a config.json take these.
  nlohmann::json defaults;
  // Values of shared fields the family has no key for (DistilBERT's layer_norm_eps).
  ModelConfig fixed;
  // Published shapes for `init-model --like NAME`: name -> config.json.
  std::map<std::string, nlohmann::json> published;
  // Parameter-name prefixes of the QA head's modules: what a pretrained
  // checkpoint lacks and loading initialises fresh (ModernBERT: "head.", "classifier.").
  std::vector<std::string> head_prefixes{"qa_outputs."};
  // The key whose presence marks a checkpoint fine-tuned for QA (its last projection).
  std::string head_output = "qa_outputs.weight";
  // Whether run_squad 2.5.1 passes token_type_ids to the model (it drops them
  // for distilbert and roberta, which then embed type 0 everywhere, or none).
  bool takes_token_type_ids = true;
  // Where a window's "no answer" score is read unless --null-position says otherwise
  // (WindowOptions::null_position): "first", the classifier token at index 0 (the encoders' [CLS]
  // or <s>, as HF's run_squad), or "last", the window's final token (an end token appended after
  // the context): a causal model's first token sees nothing of the window, its last sees all of it.
  std::string null_position = "first";
  // Whether run_squad's --do_lower_case (given or not) sets the tokenizer's casing over what its
  // tokenizer_config.json states, as 2.5.1's run_squad.py does (do_lower_case is a from_pretrained
  // kwarg, which overrides the file): the study's families. The newer families' goldens (4.57.5)
  // tokenize with the tokenizer as stored and apply the flag to get_final_text only, so for them a
  // stated do_lower_case wins and the flag lower-cases only tokenizers that state nothing.
  bool run_squad_flag_sets_casing = false;
  // Whether type_vocab_size may be 0: the model then has no token type embeddings and ignores the ids
  // run_squad passes (DeBERTa-v2).
  bool token_types_optional = false;
  // Position ids start here (RoBERTa: padding_idx + 1 = 2), so a window holds
  // at most max_position_embeddings - position_offset tokens.
  int64_t position_offset = 0;
  // Shared fields the family derives rather than reads (GPT-2's intermediate size from
  // n_inner, or 4 x n_embd where it is null), set after the keys are read and before validate.
  std::function<void(ModelConfig&)> derive;
  // Family-only checks after the shared ones; Error naming config.source and the key.
  std::function<void(const ModelConfig&)> validate;
  // Whether `create` allocates the weights in ModelCreation's dtype (the decoders: a bf16 model
  // never exists in float32); the others build float32 and convert. Memory checks count on it.
  bool creates_in_weights_dtype = false;
  // Whether the family's layers run --precision int8 (core/precision.hpp): those that compute through
  // TransformerLayerKernel's oneDNN path (src/model/layers.hpp). Others refuse it (check_precision_for_family).
  bool int8_encoder = false;
  // A ...ForQuestionAnswering with HF's initialisation (_init_weights).
  std::function<std::shared_ptr<QaModel>(const ModelConfig&)> create;
  // Parameters the config describes (as a double: a hostile config may
  // overflow integers), QA head and pooler included.
  std::function<double(const ModelConfig&)> parameters;
  // Multiply-adds x 2 of one eval forward pass over one feature of `tokens`
  // tokens, QA head included (lookups, norms and activations not counted).
  std::function<double(const ModelConfig&, int64_t tokens)> forward_flops;
};

// The family of `model_type`; Error listing the known ones otherwise.
const ModelFamily& model_family(const std::string& model_type);
// Every family, in registry order.
const std::vector<const ModelFamily*>& model_families();
// Error (exit 2) when `precision` is int8 and the family's layers have no int8 path (naming the
// families that have one); nothing otherwise.
void check_precision_for_family(const std::string& precision, const ModelFamily& family);
// The family that publishes `name` (for --like), or Error listing the known names.
const ModelFamily& family_publishing(const std::string& name);

// Multiply-adds x 2 of the linears and attention products of one
// BERT-style encoder layer over a feature of `tokens` tokens.
double transformer_layer_flops(const ModelConfig& config, int64_t tokens);
// Parameters of one such layer (weights, biases and both LayerNorms).
double transformer_layer_parameters(const ModelConfig& config);

}  // namespace layerprobe
