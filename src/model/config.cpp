#include "layerprobe/model/config.hpp"

#include "layerprobe/core/common.hpp"

namespace layerprobe {

using nlohmann::json;

namespace {

template <typename T>
void read_field(const json& object, const char* key, T& field, const std::string& source) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return;  // HF falls back to the default too
  try {
    if constexpr (std::is_same_v<T, int64_t>) {
      if (!it->is_number_integer()) throw Error("not an integer");
    } else if constexpr (std::is_same_v<T, double>) {
      if (!it->is_number()) throw Error("not a number");
    } else {
      if (!it->is_string()) throw Error("not a string");
    }
    field = it->get<T>();
  } catch (const std::exception& e) {
    throw Error(source + ": key '" + key + "' has invalid value " + it->dump() + " (" + e.what() + ")");
  }
}

// The keys AlbertConfig owns; all others go to `extra`.
constexpr const char* kKnownKeys[] = {
    "vocab_size",          "embedding_size",      "hidden_size",
    "num_hidden_layers",   "num_hidden_groups",   "num_attention_heads",
    "intermediate_size",   "inner_group_num",     "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
    "type_vocab_size",     "initializer_range",   "layer_norm_eps"};

}  // namespace

AlbertConfig AlbertConfig::albert_base_v2() {
  AlbertConfig config;
  config.hidden_size = 768;
  config.num_attention_heads = 12;
  config.intermediate_size = 3072;
  config.extra = {{"architectures", {"AlbertForMaskedLM"}}, {"model_type", "albert"},
                  {"bos_token_id", 2}, {"eos_token_id", 3}, {"pad_token_id", 0},
                  {"classifier_dropout_prob", 0.1}};
  return config;
}

bool is_supported_activation(const std::string& name) {
  return name == "gelu" || name == "gelu_new" || name == "relu";
}

void AlbertConfig::validate(const std::string& source) const {
  auto require_positive = [&](const char* key, int64_t value) {
    if (value <= 0) throw Error(source + ": key '" + key + "' must be positive, found " + std::to_string(value));
  };
  require_positive("vocab_size", vocab_size);
  require_positive("embedding_size", embedding_size);
  require_positive("hidden_size", hidden_size);
  require_positive("num_hidden_layers", num_hidden_layers);
  require_positive("num_hidden_groups", num_hidden_groups);
  require_positive("num_attention_heads", num_attention_heads);
  require_positive("intermediate_size", intermediate_size);
  require_positive("inner_group_num", inner_group_num);
  require_positive("max_position_embeddings", max_position_embeddings);
  require_positive("type_vocab_size", type_vocab_size);
  if (hidden_size % num_attention_heads != 0)
    throw Error(source + ": hidden_size " + std::to_string(hidden_size) +
                " is not a multiple of num_attention_heads " + std::to_string(num_attention_heads));
  if (!is_supported_activation(hidden_act))
    throw Error(source + ": key 'hidden_act' has unknown activation '" + hidden_act +
                "' (supported: gelu, gelu_new, relu)");
  auto require_probability = [&](const char* key, double value) {
    if (!(value >= 0.0 && value < 1.0))
      throw Error(source + ": key '" + key + "' must be in [0, 1), found " + std::to_string(value));
  };
  require_probability("hidden_dropout_prob", hidden_dropout_prob);
  require_probability("attention_probs_dropout_prob", attention_probs_dropout_prob);
  if (!(layer_norm_eps > 0.0)) throw Error(source + ": key 'layer_norm_eps' must be positive");
  if (!(initializer_range >= 0.0)) throw Error(source + ": key 'initializer_range' must not be negative");
}

AlbertConfig config_from_json(const json& object, const std::string& source) {
  if (!object.is_object()) throw Error(source + ": expected a JSON object, found " + std::string(object.type_name()));
  AlbertConfig config;
  read_field(object, "vocab_size", config.vocab_size, source);
  read_field(object, "embedding_size", config.embedding_size, source);
  read_field(object, "hidden_size", config.hidden_size, source);
  read_field(object, "num_hidden_layers", config.num_hidden_layers, source);
  read_field(object, "num_hidden_groups", config.num_hidden_groups, source);
  read_field(object, "num_attention_heads", config.num_attention_heads, source);
  read_field(object, "intermediate_size", config.intermediate_size, source);
  read_field(object, "inner_group_num", config.inner_group_num, source);
  read_field(object, "hidden_act", config.hidden_act, source);
  read_field(object, "hidden_dropout_prob", config.hidden_dropout_prob, source);
  read_field(object, "attention_probs_dropout_prob", config.attention_probs_dropout_prob, source);
  read_field(object, "max_position_embeddings", config.max_position_embeddings, source);
  read_field(object, "type_vocab_size", config.type_vocab_size, source);
  read_field(object, "initializer_range", config.initializer_range, source);
  read_field(object, "layer_norm_eps", config.layer_norm_eps, source);
  config.extra = object;
  for (const char* key : kKnownKeys) config.extra.erase(key);
  config.validate(source);
  return config;
}

json AlbertConfig::to_json() const {
  json object = extra;
  object["vocab_size"] = vocab_size;
  object["embedding_size"] = embedding_size;
  object["hidden_size"] = hidden_size;
  object["num_hidden_layers"] = num_hidden_layers;
  object["num_hidden_groups"] = num_hidden_groups;
  object["num_attention_heads"] = num_attention_heads;
  object["intermediate_size"] = intermediate_size;
  object["inner_group_num"] = inner_group_num;
  object["hidden_act"] = hidden_act;
  object["hidden_dropout_prob"] = hidden_dropout_prob;
  object["attention_probs_dropout_prob"] = attention_probs_dropout_prob;
  object["max_position_embeddings"] = max_position_embeddings;
  object["type_vocab_size"] = type_vocab_size;
  object["initializer_range"] = initializer_range;
  object["layer_norm_eps"] = layer_norm_eps;
  if (!object.contains("model_type")) object["model_type"] = "albert";
  return object;
}

AlbertConfig load_config(const std::filesystem::path& path) {
  std::string text = read_file(path);
  json object = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded()) throw Error(path.string() + ": not valid JSON");
  return config_from_json(object, path.string());
}

void save_config(const AlbertConfig& config, const std::filesystem::path& path) {
  write_file_atomically(path, config.to_json().dump(2) + "\n");
}

}  // namespace layerprobe
