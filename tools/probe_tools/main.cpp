// probe_tools: utilities over the layerprobe library (feature extraction,
// tokenisation, featurisation, synthetic data, benchmarks).
#include "../tool_main.hpp"
#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"layerprobe utilities"};
  app.require_subcommand(1);
  bool verbose = false, quiet = false;
  layerprobe::tools::add_logging_flags(app, verbose, quiet);
  app.parse_complete_callback([&] {
    layerprobe::tools::configure_logging(verbose, quiet);
    layerprobe::install_stop_handlers();  // long subcommands stop at their next step, exit 130
  });
  // Subcommands (one per file in tools/probe_tools/):
  layerprobe::tools::add_synth_command(app);
  layerprobe::tools::add_train_vocab_command(app);
  layerprobe::tools::add_tokenize_command(app);
  layerprobe::tools::add_features_command(app);
  layerprobe::tools::add_encode_command(app);
  layerprobe::tools::add_init_model_command(app);
  layerprobe::tools::add_bench_command(app);
  layerprobe::tools::add_amnesic_command(app);
  return layerprobe::tools::run_tool(app, argc, argv, [] { return 0; });
}
