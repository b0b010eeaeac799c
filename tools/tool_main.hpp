// What every layerprobe executable does around its own work: parse the
// command line with CLI11, set up logging, and turn errors into a message on
// stderr and an exit status (1 = failure, 2 = usage).
#pragma once

#include <CLI/CLI.hpp>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>

#include "layerprobe/core/common.hpp"
#include "layerprobe/dist/dist.hpp"
#include "layerprobe/dist/launch.hpp"
#include "layerprobe/squad/features.hpp"

namespace layerprobe::tools {

// Adds --verbose/--quiet to `app`; call before parsing.
inline void add_logging_flags(CLI::App& app, bool& verbose, bool& quiet) {
  app.add_flag("-v,--verbose", verbose, "Log debug messages");
  app.add_flag("-q,--quiet", quiet, "Log only warnings and errors");
}

// The window options (--max-seq-length, --doc-stride, --max-query-length);
// `separator` "_" gives run_squad.py's spelling (--max_seq_length).
inline void add_window_options(CLI::App& app, WindowOptions& window, const std::string& separator = "-") {
  auto name = [&](std::string words) {
    for (char& c : words)
      if (c == ' ') c = separator[0];
    return "--" + words;
  };
  app.add_option(name("max seq length"), window.max_seq_length, "Tokens per window (question, context, specials)")
      ->capture_default_str();
  app.add_option(name("doc stride"), window.doc_stride, "Context tokens between window starts")
      ->capture_default_str();
  app.add_option(name("max query length"), window.max_query_length, "Question tokens kept")->capture_default_str();
  app.add_flag(name("hf legacy offsets"), window.hf_legacy_offsets,
               "Labels and token->word maps where transformers' legacy squad.py puts them: one token before the "
               "context for XLM-RoBERTa (and tokenizer.json templates with extra separators), as HF's run_squad; "
               "default: at the context tokens");
}

inline void configure_logging(bool verbose, bool quiet) {
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  spdlog::set_level(verbose ? spdlog::level::debug : quiet ? spdlog::level::warn : spdlog::level::info);
}

// Also appends every log line to `path` (created with its directory).
inline void add_log_file(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  try {
    auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path.string());
    sink->set_pattern("[%Y-%m-%d %H:%M:%S] %l %v");
    spdlog::default_logger()->sinks().push_back(sink);
    // A job killed hours in (SIGKILL, power) keeps its log up to the last line.
    spdlog::default_logger()->flush_on(spdlog::level::info);
  } catch (const spdlog::spdlog_ex& e) {
    throw Error("cannot open log file '" + path.string() + "': " + e.what());
  }
}

// Data-parallel runs: torchrun's environment, or --nproc N local ranks.
struct DistFlags {
  int nproc = 0;
  std::string backend = "auto";
  int timeout_s = 300;
  int local_rank = -1;  // run_squad's --local_rank
};

inline void add_dist_options(CLI::App& app, DistFlags& flags) {
  app.add_option("--nproc", flags.nproc,
                 "Start N local ranks of this command (data parallel; or launch ranks yourself with torchrun's "
                 "WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)")
      ->check(CLI::PositiveNumber);
  app.add_option("--dist-backend", flags.backend, "Process group backend: auto (nccl on a GPU, else gloo), gloo, nccl")
      ->check(CLI::IsMember({"auto", "gloo", "nccl"}))
      ->capture_default_str();
  app.add_option("--dist-timeout", flags.timeout_s,
                 "Seconds a rank waits for the others (rendezvous and every collective) before all stop")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

// With --nproc N > 1 and no WORLD_SIZE set, starts N ranks of this command
// and returns their exit status; otherwise joins the process group (when
// WORLD_SIZE > 1) and returns nothing. Ranks other than 0 log warnings and
// errors only, every line tagged with its rank.
inline std::optional<int> start_distributed(const DistFlags& flags, int argc, char** argv, bool cuda) {
  const char* world = std::getenv("WORLD_SIZE");
  if (flags.nproc > 1 && !(world && *world)) return dist::spawn_local_ranks(flags.nproc, argc, argv);
  dist::InitOptions options;
  options.backend = flags.backend;
  options.cuda = cuda;
  options.timeout = std::chrono::seconds(flags.timeout_s);
  options.local_rank = flags.local_rank;
  dist::init(options);
  if (dist::enabled()) {
    spdlog::set_pattern("[%H:%M:%S] [rank " + std::to_string(dist::rank()) + "] %^%l%$ %v");
    if (!dist::is_main()) spdlog::set_level(spdlog::level::warn);
  }
  return std::nullopt;
}

// Parses argv into `app`, then runs `body` (which returns the exit status).
inline int run_tool(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  // Logs go to stderr so that stdout carries only a command's output.
  if (!spdlog::get("layerprobe")) spdlog::set_default_logger(spdlog::stderr_color_mt("layerprobe"));
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  // Subcommand callbacks run inside parse(), so errors are caught around both.
  // A rank that fails leaves at once: its process group's threads may wait on ranks that are gone.
  // So does a stopped run (status 130): what it finished is saved, and what it still holds (a dataset's
  // millions of small allocations, kept unfreed by keep_until_exit) is not walked again on the way out
  // (LeakSanitizer's exit scan of it took 24 s under load).
  auto leave = [](int status) {
    if (dist::enabled() || status == 130) {
      spdlog::default_logger()->flush();
      std::cout.flush();
      std::fflush(nullptr);
      std::_Exit(status);
    }
    return status;
  };
  try {
    app.parse(argc, argv);
    const int status = body();
    if (status == 0) dist::shutdown();
    return leave(status);
  } catch (const CLI::ParseError& e) {
    int status = app.exit(e);
    return status == 0 ? 0 : 2;
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return leave(e.exit_code());
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return leave(1);
  }
}

}  // namespace layerprobe::tools
