// ALBERT model configuration as Hugging Face stores it in config.json.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>

namespace layerprobe {

// The fields transformers 2.5.1's AlbertConfig reads, with its defaults.
// Keys the encoder does not use (id2label, architectures, ...) are kept in
// `extra` so that re-saving a config loses nothing.
struct AlbertConfig {
  int64_t vocab_size = 30000;
  int64_t embedding_size = 128;
  int64_t hidden_size = 4096;
  int64_t num_hidden_layers = 12;
  int64_t num_hidden_groups = 1;
  int64_t num_attention_heads = 64;
  int64_t intermediate_size = 16384;
  int64_t inner_group_num = 1;
  std::string hidden_act = "gelu_new";
  double hidden_dropout_prob = 0.0;
  double attention_probs_dropout_prob = 0.0;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  double initializer_range = 0.02;
  double layer_norm_eps = 1e-12;
  nlohmann::json extra = nlohmann::json::object();

  // The published albert-base-v2 shape.
  static AlbertConfig albert_base_v2();

  // Throws Error naming `source` and the offending key when the values cannot
  // describe a model (sizes not positive, hidden size not divisible by the
  // head count, unknown activation, ...).
  void validate(const std::string& source) const;

  nlohmann::json to_json() const;
};

// Activations transformers 2.5.1 maps in ACT2FN and this encoder implements.
bool is_supported_activation(const std::string& name);

// Parses a config object; `source` names where it came from in errors.
AlbertConfig config_from_json(const nlohmann::json& json, const std::string& source);

// Reads and validates config.json (or any file in that format).
AlbertConfig load_config(const std::filesystem::path& path);

// Writes `config` as pretty-printed JSON, atomically.
void save_config(const AlbertConfig& config, const std::filesystem::path& path);

}  // namespace layerprobe
