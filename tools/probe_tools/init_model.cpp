// probe_tools init-model: a randomly initialised ALBERT (HF _init_weights)
// written in the Hugging Face layout, e.g. for demos and tests.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>

#include "commands.hpp"
#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/text/sentencepiece.hpp"

namespace layerprobe::tools {

namespace {

struct InitArgs {
  std::string like = "albert-base-v2", config_file, vocab, output;
  uint64_t seed = 42;
  std::optional<int64_t> hidden_size, layers, heads, intermediate_size, embedding_size, vocab_size, groups,
      inner_groups, max_positions;
  std::optional<std::string> activation;
};

void override_if_set(int64_t& field, const std::optional<int64_t>& value) {
  if (value) field = *value;
}

void run_init_model(const InitArgs& args) {
  if (args.like != "albert-base-v2")
    throw Error("--like '" + args.like + "' is not known (only albert-base-v2; use --config for others)", 2);
  AlbertConfig config = args.config_file.empty() ? AlbertConfig::albert_base_v2() : load_config(args.config_file);
  override_if_set(config.hidden_size, args.hidden_size);
  override_if_set(config.num_hidden_layers, args.layers);
  override_if_set(config.num_attention_heads, args.heads);
  override_if_set(config.intermediate_size, args.intermediate_size);
  override_if_set(config.embedding_size, args.embedding_size);
  override_if_set(config.vocab_size, args.vocab_size);
  override_if_set(config.num_hidden_groups, args.groups);
  override_if_set(config.inner_group_num, args.inner_groups);
  override_if_set(config.max_position_embeddings, args.max_positions);
  if (args.activation) config.hidden_act = *args.activation;
  if (!args.vocab.empty()) {
    if (args.vocab_size) throw Error("--vocab and --vocab-size both set the vocabulary size; give one", 2);
    config.vocab_size = SentencePieceModel(args.vocab).size();
  }
  config.validate("init-model options");

  torch::manual_seed(args.seed);
  AlbertForQuestionAnswering model(config);
  save_checkpoint(model, config, args.output);
  if (!args.vocab.empty()) write_file_atomically(std::filesystem::path(args.output) / "spiece.model", read_file(args.vocab));
  spdlog::info("wrote a random ALBERT ({} layers, hidden {}, vocab {}) to {}", config.num_hidden_layers,
               config.hidden_size, config.vocab_size, args.output);
}

}  // namespace

void add_init_model_command(CLI::App& app) {
  auto* command = app.add_subcommand(
      "init-model",
      "Write a randomly initialised ALBERT with a QA head (config.json + model.safetensors, Hugging Face layout). "
      "Starts from the albert-base-v2 shape or --config; size flags override single fields");
  auto args = std::make_shared<InitArgs>();
  command->add_option("--output", args->output, "Output model directory")->required();
  command->add_option("--like", args->like, "Published shape to start from")->capture_default_str();
  command->add_option("--config", args->config_file, "Start from this config.json instead");
  command->add_option("--vocab", args->vocab, "SentencePiece model: copied in as spiece.model, sets vocab_size");
  command->add_option("--seed", args->seed, "Random seed for the weights")->capture_default_str();
  command->add_option("--hidden-size", args->hidden_size, "hidden_size");
  command->add_option("--layers", args->layers, "num_hidden_layers");
  command->add_option("--heads", args->heads, "num_attention_heads");
  command->add_option("--intermediate-size", args->intermediate_size, "intermediate_size");
  command->add_option("--embedding-size", args->embedding_size, "embedding_size");
  command->add_option("--vocab-size", args->vocab_size, "vocab_size");
  command->add_option("--groups", args->groups, "num_hidden_groups");
  command->add_option("--inner-groups", args->inner_groups, "inner_group_num");
  command->add_option("--max-positions", args->max_positions, "max_position_embeddings");
  command->add_option("--activation", args->activation, "hidden_act: gelu, gelu_new or relu");
  command->callback([args] { run_init_model(*args); });
}

}  // namespace layerprobe::tools
