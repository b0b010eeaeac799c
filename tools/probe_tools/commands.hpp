// probe_tools subcommands: each file in tools/probe_tools/ adds one with an
// add_<name>_command function, listed here and called from main.cpp.
#pragma once

#include <CLI/CLI.hpp>

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

}  // namespace layerprobe::tools
