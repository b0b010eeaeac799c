// probe_tools: utilities over the layerprobe library (feature extraction,
// tokenisation, featurisation, synthetic data, benchmarks).
#include "../tool_main.hpp"
#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"layerprobe utilities"};
  app.require_subcommand(1);
  bool verbose = false, quiet = false;
  layerprobe::tools::add_logging_flags(app, verbose, quiet);
  app.parse_complete_callback([&] { layerprobe::tools::configure_logging(verbose, quiet); });
  // Subcommands (one per file in tools/probe_tools/):
  return layerprobe::tools::run_tool(app, argc, argv, [] { return 0; });
}
