// probe_tools init-model: a randomly initialised model of any registered
// family (HF _init_weights) written in the Hugging Face layout, with its
// tokenizer when given, e.g. for demos and tests.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../tool_main.hpp"
#include "commands.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/io/safetensors.hpp"
#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/model/family.hpp"
#include "layerprobe/text/tokenizer_registry.hpp"

namespace layerprobe::tools {

namespace {

struct InitArgs {
  std::string like = "albert-base-v2", config_file, vocab, output;
  uint64_t seed = 42;
  bool lower_case = false, no_qa_head = false;
  std::optional<int64_t> hidden_size, layers, heads, intermediate_size, vocab_size, max_positions;
  std::optional<int64_t> embedding_size, groups, inner_groups;  // ALBERT only
  std::optional<std::string> activation;
};

template <typename T>
void set_key(nlohmann::json& object, const std::string& key, const std::optional<T>& value, const std::string& flag,
             const std::string& model_type) {
  if (!value) return;
  if (key.empty()) throw Error(flag + " does not apply to " + model_type + " models", 2);
  object[key] = *value;
}

// The starting config.json object: --config's file, else the published shape.
nlohmann::json starting_config(const InitArgs& args) {
  if (!args.config_file.empty()) return load_config(args.config_file).to_json();
  const ModelFamily& family = family_publishing(args.like);
  nlohmann::json object = family.published.at(args.like);
  object["model_type"] = family.model_type;
  return object;
}

void apply_size_flags(const InitArgs& args, nlohmann::json& object) {
  const std::string type = object.value("model_type", "");
  const ConfigKeys& keys = model_family(type).keys;
  const bool albert = type == "albert";
  set_key(object, keys.hidden_size, args.hidden_size, "--hidden-size", type);
  set_key(object, keys.num_hidden_layers, args.layers, "--layers", type);
  set_key(object, keys.num_attention_heads, args.heads, "--heads", type);
  set_key(object, keys.intermediate_size, args.intermediate_size, "--intermediate-size", type);
  set_key(object, keys.vocab_size, args.vocab_size, "--vocab-size", type);
  set_key(object, keys.max_position_embeddings, args.max_positions, "--max-positions", type);
  set_key(object, keys.hidden_act, args.activation, "--activation", type);
  set_key(object, albert ? "embedding_size" : "", args.embedding_size, "--embedding-size", type);
  set_key(object, albert ? "num_hidden_groups" : "", args.groups, "--groups", type);
  set_key(object, albert ? "inner_group_num" : "", args.inner_groups, "--inner-groups", type);
}

// As a pretrained hub checkpoint holds it: the base model without its QA head.
void drop_qa_head(const std::filesystem::path& dir, const ModelFamily& family) {
  const auto file = dir / "model.safetensors";
  TensorMap tensors = read_safetensors(file).tensors;
  for (auto it = tensors.begin(); it != tensors.end();) {
    bool head = false;
    for (const auto& prefix : family.head_prefixes) head = head || it->first.rfind(prefix, 0) == 0;
    it = head ? tensors.erase(it) : std::next(it);
  }
  write_safetensors(file, tensors, {{"format", "pt"}});
}

void run_init_model(const InitArgs& args) {
  nlohmann::json object = starting_config(args);
  apply_size_flags(args, object);
  std::unique_ptr<Tokenizer> tokenizer;
  if (!args.vocab.empty()) {
    if (args.vocab_size) throw Error("--vocab and --vocab-size both set the vocabulary size; give one", 2);
    TokenizerRequest request;
    if (args.lower_case) request.do_lower_case = true;
    tokenizer = load_tokenizer(args.vocab, request);
    object[model_family(object.value("model_type", "")).keys.vocab_size] = tokenizer->vocab_size();
  } else if (args.lower_case) {
    throw Error("--lower-case describes the tokenizer: give it with --vocab", 2);
  }
  const ModelConfig config = config_from_json(object, "init-model options");
  if (tokenizer && tokenizer->kind() != model_family(config.model_type).tokenizer)
    throw Error("--vocab '" + args.vocab + "' is a " + tokenizer->kind() + " vocabulary but " + config.model_type +
                    " models use " + model_family(config.model_type).tokenizer,
                2);
  // The weights are held twice on the way out (the model and the file's bytes): both must fit.
  const double bytes = 8.0 * model_family(config.model_type).parameters(config);
  const auto available = static_cast<double>(available_memory_bytes());
  if (available > 0 && bytes > available)
    throw Error(fmt::format("init-model: a {} of {:.3g} parameters needs {:.1f} GiB to create and write, but {:.1f} "
                            "GiB of memory are available; choose smaller sizes",
                            config.model_type, bytes / 8, bytes / (1 << 30), available / (1 << 30)),
                2);
  torch::manual_seed(args.seed);
  auto model = create_model(config);
  model->eval();
  save_checkpoint(*model, args.output);
  if (args.no_qa_head) drop_qa_head(args.output, model->family());
  if (tokenizer) save_tokenizer(*tokenizer, args.output);
  spdlog::info("wrote a random {} ({} layers, hidden {}, vocab {}) to {}", config.model_type,
               config.num_hidden_layers, config.hidden_size, config.vocab_size, args.output);
}

std::string published_names() {
  std::string names;
  for (const auto* family : model_families())
    for (const auto& entry : family->published) names += (names.empty() ? "" : ", ") + entry.first;
  return names;
}

}  // namespace

void add_init_model_command(CLI::App& app) {
  auto* command = app.add_subcommand(
      "init-model",
      "Write a randomly initialised model with a QA head (config.json + model.safetensors, Hugging Face layout) "
      "of any family. Starts from a published shape (--like) or --config; size flags override single fields");
  auto args = std::make_shared<InitArgs>();
  command->add_option("--output", args->output, "Output model directory")->required();
  command->add_option("--like", args->like, "Published shape to start from: " + published_names())
      ->capture_default_str();
  command->add_option("--config", args->config_file, "Start from this config.json instead");
  command->add_option("--vocab", args->vocab,
                      "Tokenizer vocabulary (spiece.model, vocab.txt, or vocab.json with merges.txt): copied in, "
                      "sets vocab_size");
  command->add_flag("--lower-case", args->lower_case,
                    "Record do_lower_case=true in tokenizer_config.json (as uncased hub models have)");
  command->add_flag("--no-qa-head", args->no_qa_head,
                    "Leave qa_outputs out of the weights, as a pretrained checkpoint (bert-base-uncased) has it");
  command->add_option("--seed", args->seed, "Random seed for the weights")->capture_default_str();
  // Each size within what any model has; the product (the parameter count) is checked against memory.
  const auto size = [](int64_t most) { return integer_in(1, most); };
  command->add_option("--hidden-size", args->hidden_size, "hidden_size (DistilBERT: dim)")->check(size(1 << 16));
  command->add_option("--layers", args->layers, "num_hidden_layers (DistilBERT: n_layers)")->check(size(10000));
  command->add_option("--heads", args->heads, "num_attention_heads (DistilBERT: n_heads)")->check(size(1 << 16));
  command->add_option("--intermediate-size", args->intermediate_size, "intermediate_size (DistilBERT: hidden_dim)")
      ->check(size(1 << 20));
  command->add_option("--vocab-size", args->vocab_size, "vocab_size")->check(size(1 << 24));
  command->add_option("--max-positions", args->max_positions, "max_position_embeddings")->check(size(1 << 20));
  command->add_option("--activation", args->activation, "hidden_act: gelu, gelu_new, relu, swish, ...");
  command->add_option("--embedding-size", args->embedding_size, "ALBERT: embedding_size")->check(size(1 << 16));
  command->add_option("--groups", args->groups, "ALBERT: num_hidden_groups")->check(size(10000));
  command->add_option("--inner-groups", args->inner_groups, "ALBERT: inner_group_num")->check(size(10000));
  command->callback([args] { run_init_model(*args); });
}

}  // namespace layerprobe::tools
