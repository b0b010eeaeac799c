#include "layerprobe/model/config.hpp"

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/json.hpp"
#include "layerprobe/model/family.hpp"

namespace layerprobe {

using nlohmann::json;

namespace {

const json& value_of(const ModelConfig& config, const std::string& key) {
  auto it = config.object.find(key);
  if (it == config.object.end() || it->is_null())
    throw Error(config.source + ": key '" + key + "' is missing (the " + config.model_type + " family needs it)");
  return *it;
}

[[noreturn]] void wrong_type(const ModelConfig& config, const std::string& key, const char* expected) {
  throw Error(config.source + ": key '" + key + "' has invalid value " + value_of(config, key).dump() + " (" +
              expected + " expected)");
}

// Reads a shared field under the family's key; an empty key leaves the fixed value.
template <typename T>
void read_shared(ModelConfig& config, const std::string& key, T& field) {
  if (key.empty()) return;
  if constexpr (std::is_same_v<T, int64_t>) {
    field = config.integer(key);
  } else if constexpr (std::is_same_v<T, double>) {
    field = config.number(key);
  } else {
    field = config.string(key);
  }
}

template <typename T>
void write_shared(json& object, const std::string& key, const T& field) {
  if (!key.empty()) object[key] = field;
}

// transformers 2.5.1's AutoConfig without a model_type: the first family
// whose name the model's path contains, in CONFIG_MAPPING's order.
std::string infer_model_type(const json& object, const std::string& name_hint) {
  for (const char* pattern : {"distilbert", "albert", "roberta", "bert"})
    if (name_hint.find(pattern) != std::string::npos) return pattern;
  // Beyond 2.5.1 (which gives up here): the architecture names the family.
  auto architectures = object.find("architectures");
  if (architectures != object.end() && architectures->is_array() && !architectures->empty() &&
      architectures->front().is_string()) {
    const std::string name = architectures->front().get<std::string>();
    for (const auto* family : model_families()) {
      std::string prefix = family->base_prefix;
      if (name.size() > prefix.size() && std::equal(prefix.begin(), prefix.end(), name.begin(), [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
          }))
        return family->model_type;
    }
  }
  return "";
}

}  // namespace

int64_t ModelConfig::integer(const std::string& key) const {
  const json& value = value_of(*this, key);
  if (!value.is_number_integer()) wrong_type(*this, key, "an integer");
  return value.get<int64_t>();
}

double ModelConfig::number(const std::string& key) const {
  const json& value = value_of(*this, key);
  if (!value.is_number()) wrong_type(*this, key, "a number");
  return value.get<double>();
}

double ModelConfig::probability(const std::string& key) const {
  const double p = number(key);
  if (!(p >= 0.0 && p < 1.0)) throw Error(source + ": key '" + key + "' must be in [0, 1), found " + std::to_string(p));
  return p;
}

bool ModelConfig::boolean(const std::string& key) const {
  const json& value = value_of(*this, key);
  if (!value.is_boolean()) wrong_type(*this, key, "true or false");
  return value.get<bool>();
}

std::string ModelConfig::string(const std::string& key) const {
  const json& value = value_of(*this, key);
  if (!value.is_string()) wrong_type(*this, key, "a string");
  return value.get<std::string>();
}

json ModelConfig::to_json() const {
  const ConfigKeys& k = model_family(model_type).keys;
  json result = object;
  result["model_type"] = model_type;
  write_shared(result, k.vocab_size, vocab_size);
  write_shared(result, k.hidden_size, hidden_size);
  write_shared(result, k.num_hidden_layers, num_hidden_layers);
  write_shared(result, k.num_attention_heads, num_attention_heads);
  write_shared(result, k.intermediate_size, intermediate_size);
  write_shared(result, k.max_position_embeddings, max_position_embeddings);
  write_shared(result, k.type_vocab_size, type_vocab_size);
  write_shared(result, k.hidden_act, hidden_act);
  write_shared(result, k.layer_norm_eps, layer_norm_eps);
  write_shared(result, k.initializer_range, initializer_range);
  return result;
}

void ModelConfig::validate() const {
  const ConfigKeys& k = model_family(model_type).keys;
  auto require_positive = [&](const std::string& key, int64_t value) {
    if (value <= 0) throw Error(source + ": key '" + key + "' must be positive, found " + std::to_string(value));
  };
  require_positive(k.vocab_size, vocab_size);
  require_positive(k.hidden_size, hidden_size);
  require_positive(k.num_hidden_layers, num_hidden_layers);
  require_positive(k.num_attention_heads, num_attention_heads);
  require_positive(k.intermediate_size, intermediate_size);
  require_positive(k.max_position_embeddings, max_position_embeddings);
  if (!k.type_vocab_size.empty() && !(model_family(model_type).token_types_optional && type_vocab_size == 0))
    require_positive(k.type_vocab_size, type_vocab_size);
  if (hidden_size % num_attention_heads != 0)
    throw Error(source + ": " + k.hidden_size + " " + std::to_string(hidden_size) + " is not a multiple of " +
                k.num_attention_heads + " " + std::to_string(num_attention_heads));
  if (!is_supported_activation(hidden_act))
    throw Error(source + ": key '" + k.hidden_act + "' has unknown activation '" + hidden_act +
                "' (supported: gelu, gelu_new, relu, swish, silu, mish)");
  if (!(layer_norm_eps > 0.0)) throw Error(source + ": key '" + k.layer_norm_eps + "' must be positive");
  if (!(initializer_range >= 0.0)) throw Error(source + ": key '" + k.initializer_range + "' must not be negative");
  const ModelFamily& family = model_family(model_type);
  if (family.validate) family.validate(*this);
}

ModelConfig config_from_json(const json& object, const std::string& source, const std::string& name_hint) {
  if (!object.is_object()) throw Error(source + ": expected a JSON object, found " + std::string(object.type_name()));
  ModelConfig config;
  config.source = source;
  auto type = object.find("model_type");
  if (type != object.end() && !type->is_string()) throw Error(source + ": key 'model_type' must be a string");
  config.model_type = type != object.end() ? type->get<std::string>() : infer_model_type(object, name_hint);
  if (config.model_type.empty())
    throw Error(source + ": no 'model_type' key, and neither the path nor 'architectures' names a model family; "
                "add e.g. \"model_type\": \"bert\"");
  const ModelFamily& family = model_family(config.model_type);
  const ConfigKeys& k = family.keys;
  ModelConfig fixed = family.fixed;
  config.object = family.defaults;
  for (const auto& [key, value] : object.items())
    if (!value.is_null()) config.object[key] = value;  // HF falls back to the default for null too
  config.object["model_type"] = config.model_type;
  config.type_vocab_size = fixed.type_vocab_size;
  config.layer_norm_eps = fixed.layer_norm_eps;
  read_shared(config, k.vocab_size, config.vocab_size);
  read_shared(config, k.hidden_size, config.hidden_size);
  read_shared(config, k.num_hidden_layers, config.num_hidden_layers);
  read_shared(config, k.num_attention_heads, config.num_attention_heads);
  read_shared(config, k.intermediate_size, config.intermediate_size);
  read_shared(config, k.max_position_embeddings, config.max_position_embeddings);
  read_shared(config, k.type_vocab_size, config.type_vocab_size);
  read_shared(config, k.hidden_act, config.hidden_act);
  read_shared(config, k.layer_norm_eps, config.layer_norm_eps);
  read_shared(config, k.initializer_range, config.initializer_range);
  if (family.derive) family.derive(config);
  config.validate();
  return config;
}

ModelConfig load_config(const std::filesystem::path& path) {
  const json object = parse_json(read_file(path), path.string());
  return config_from_json(object, path.string(), std::filesystem::absolute(path).parent_path().string());
}

void save_config(const ModelConfig& config, const std::filesystem::path& path) {
  write_file_atomically(path, config.to_json().dump(2) + "\n");
}

}  // namespace layerprobe
