// What every layerprobe executable does around its own work: parse the
// command line with CLI11, set up logging, and turn errors into a message on
// stderr and an exit status (1 = failure, 2 = usage).
#pragma once

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <exception>
#include <functional>
#include <iostream>

#include "layerprobe/common.hpp"

namespace layerprobe::tools {

// Adds --verbose/--quiet to `app`; call before parsing.
inline void add_logging_flags(CLI::App& app, bool& verbose, bool& quiet) {
  app.add_flag("-v,--verbose", verbose, "Log debug messages");
  app.add_flag("-q,--quiet", quiet, "Log only warnings and errors");
}

inline void configure_logging(bool verbose, bool quiet) {
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  spdlog::set_level(verbose ? spdlog::level::debug : quiet ? spdlog::level::warn : spdlog::level::info);
}

// Parses argv into `app`, then runs `body` (which returns the exit status).
inline int run_tool(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return body();
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}

}  // namespace layerprobe::tools
