// probe_tools subcommands: each file in tools/probe_tools/ adds one with an
// add_<name>_command function, listed here and called from main.cpp.
#pragma once

#include <CLI/CLI.hpp>

#include <filesystem>
#include <memory>

#include "layerprobe/text/tokenizer.hpp"

namespace layerprobe::tools {

// Each registers its subcommand on `app`; the subcommand's callback does the work.
// (Add new subcommands here and in main.cpp.)
void add_synth_command(CLI::App& app);
void add_train_vocab_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_features_command(CLI::App& app);
void add_encode_command(CLI::App& app);
void add_init_model_command(CLI::App& app);
void add_bench_command(CLI::App& app);

// Where a subcommand's tokenizer comes from: a vocabulary file (--vocab) or a
// model directory (--model), with the case and accent overrides.
struct TokenizerChoice {
  std::filesystem::path vocab, model;
  bool cased = false, lower_case = false, keep_accents = false;
  std::string source = "auto";  // --tokenizer auto|slow|json
};
void add_tokenizer_options(CLI::App& command, TokenizerChoice& choice);
// The tokenizer chosen; usage Error (status 2) when neither or both sources are given.
std::unique_ptr<Tokenizer> open_tokenizer(const TokenizerChoice& choice);

}  // namespace layerprobe::tools
