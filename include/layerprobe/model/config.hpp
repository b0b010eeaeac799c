// A model's configuration as Hugging Face stores it in config.json, for every
// encoder family: the fields all families share (read under each family's own
// key names, e.g. DistilBERT's "dim" for hidden_size) plus the whole JSON
// object, from which a family reads the keys only it has.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>

namespace layerprobe {

struct ModelConfig {
  std::string model_type;  // "albert", "bert", "distilbert", "roberta" (model/family.hpp)
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t intermediate_size = 0;
  int64_t max_position_embeddings = 0;
  int64_t type_vocab_size = 0;  // 0: the family takes no token type ids (DistilBERT)
  std::string hidden_act;
  double layer_norm_eps = 1e-12;
  double initializer_range = 0.02;
  // Every key: the file's, over the family's 2.5.1 defaults. to_json() writes
  // the shared fields back into it under the family's key names.
  nlohmann::json object = nlohmann::json::object();
  std::string source = "model configuration";  // where it came from, for errors

  // A family-only key of `object`; Error naming the key and source when it is
  // missing or of the wrong type.
  int64_t integer(const std::string& key) const;
  double number(const std::string& key) const;
  // number(key), and Error unless it lies in [0, 1) (a dropout probability).
  double probability(const std::string& key) const;
  bool boolean(const std::string& key) const;
  std::string string(const std::string& key) const;

  // The config as the family's config.json spells it.
  nlohmann::json to_json() const;
  // Checks shared and family constraints again (after fields were changed in
  // code); Error naming `source` and the key at fault.
  void validate() const;
};

// Parses a config object: picks the family by "model_type" (Error listing the
// known ones), fills in its defaults and validates. `source` names it in errors.
// Without a model_type, 2.5.1's AutoConfig takes the first family named in
// the model's path (`name_hint`), then (beyond 2.5.1) in "architectures".
ModelConfig config_from_json(const nlohmann::json& json, const std::string& source,
                             const std::string& name_hint = "");

// Reads and validates config.json (or any file in that format).
ModelConfig load_config(const std::filesystem::path& path);

// Writes the config as pretty-printed JSON, atomically.
void save_config(const ModelConfig& config, const std::filesystem::path& path);

// The activations transformers 2.5.1 maps in ACT2FN and the encoders implement.
bool is_supported_activation(const std::string& name);

}  // namespace layerprobe
