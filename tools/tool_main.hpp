// What every layerprobe executable does around its own work: parse the
// command line with CLI11, set up logging, and turn errors into a message on
// stderr and an exit status (1 = failure, 2 = usage).
#pragma once

#include <CLI/CLI.hpp>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "layerprobe/core/common.hpp"
#include "layerprobe/dist/dist.hpp"
#include "layerprobe/dist/launch.hpp"
#include "layerprobe/squad/features.hpp"

namespace layerprobe::tools {

// Bounds of the options every tool shares: tokens of a window or an answer, features per batch,
// epochs, and probe sets per run (each bound far above any real use, far below runaway memory).
constexpr int kMostTokens = 1 << 20;
constexpr int kMostBatch = 1 << 16;
constexpr int kMostEpochs = 100000;
constexpr int kMostSeeds = 1000;

// The most local ranks (--local_rank below it), and the longest --dist-timeout (a week). --nproc starts
// at most one rank per available core (at least 8): each rank is a whole process with its own LibTorch.
constexpr int kMostLocalRanks = 256;
constexpr int kMostDistTimeoutSeconds = 7 * 24 * 3600;

// --- numeric options ------------------------------------------------------------------------
// CLI11 2.1 reads integers with strtoll/strtoull in base 0: "99999999999999999999" saturates to
// INT64_MAX, "-1" becomes 2^64 - 1 for an unsigned option, "010" is octal 8. Every integer option
// is therefore read here first: decimal digits only, and within the option's bounds.

namespace detail {

// A decimal integer ("-" for negatives; no "+", spaces or leading zeros), if `text` is one that fits 128 bits.
inline std::optional<__int128> decimal_integer(const std::string& text) {
  const bool negative = !text.empty() && text[0] == '-';
  const std::string digits = text.substr(negative ? 1 : 0);
  if (digits.empty() || digits.size() > 30 || digits.find_first_not_of("0123456789") != std::string::npos ||
      (digits.size() > 1 && digits[0] == '0'))
    return std::nullopt;
  __int128 value = 0;
  for (char c : digits) value = value * 10 + (c - '0');
  return negative ? -value : value;
}

inline std::string int128_text(__int128 value) {
  if (value == 0) return "0";
  const bool negative = value < 0;
  unsigned __int128 magnitude = negative ? static_cast<unsigned __int128>(-(value + 1)) + 1 : static_cast<unsigned __int128>(value);
  std::string text;
  for (; magnitude > 0; magnitude /= 10) text.insert(text.begin(), static_cast<char>('0' + static_cast<int>(magnitude % 10)));
  return negative ? "-" + text : text;
}

}  // namespace detail

// An integer option's value must be a decimal integer in [low, high].
inline CLI::Validator integer_in(__int128 low, __int128 high) {
  const std::string range = "[" + detail::int128_text(low) + ", " + detail::int128_text(high) + "]";
  return CLI::Validator(
      [low, high, range](std::string& text) -> std::string {
        const auto value = detail::decimal_integer(text);
        if (!value) return "'" + text + "' is not a decimal integer (expected one in " + range + ")";
        if (*value < low || *value > high) return text + " is outside " + range;
        return {};
      },
      "", "integer in " + range);
}

// A floating-point option's value must be a finite number in [low, high].
inline CLI::Validator number_in(double low, double high) {
  const std::string range = "[" + fmt::format("{:g}", low) + ", " + fmt::format("{:g}", high) + "]";
  return CLI::Validator(
      [low, high, range](std::string& text) -> std::string {
        char* end = nullptr;
        const double value = text.empty() ? 0.0 : std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0' || !std::isfinite(value)) return "'" + text + "' is not a finite number";
        if (value < low || value > high) return text + " is outside " + range;
        return {};
      },
      "", "number in " + range);
}

// Seeds are unsigned 64-bit integers.
inline CLI::Validator seed_value() { return integer_in(0, static_cast<__int128>(UINT64_MAX)); }

// A --seeds list: not empty when given, each seed once, at most kMostSeeds (usage errors).
inline void check_seed_list(const std::vector<uint64_t>& seeds, const std::string& option) {
  if (seeds.size() > static_cast<size_t>(kMostSeeds))
    throw Error(option + " lists " + std::to_string(seeds.size()) + " seeds; at most " + std::to_string(kMostSeeds), 2);
  std::vector<uint64_t> sorted = seeds;
  std::sort(sorted.begin(), sorted.end());
  if (auto repeated = std::adjacent_find(sorted.begin(), sorted.end()); repeated != sorted.end())
    throw Error(option + " lists seed " + std::to_string(*repeated) + " twice; give each seed once", 2);
}

// Gives every integer option of `app` and its subcommands the decimal check within its C++ type's
// range, and every floating-point option a finiteness check (NaN and Inf are never meant).
// Options with their own bounds (integer_in, number_in) are checked by those as well.
inline void check_numeric_options(CLI::App& app) {
  for (CLI::Option* option : app.get_options()) {
    const std::string type = option->get_type_name().substr(0, option->get_type_name().find(':'));
    if (type == "INT") option->check(integer_in(INT64_MIN, INT64_MAX));
    if (type == "UINT") option->check(integer_in(0, static_cast<__int128>(UINT64_MAX)));
    if (type == "FLOAT") option->check(number_in(-HUGE_VAL, HUGE_VAL));
  }
  for (CLI::App* command : app.get_subcommands([](CLI::App*) { return true; })) check_numeric_options(*command);
}

// --threads N, 0 = $LAYERPROBE_THREADS or all cores; at most max_threads().
inline CLI::Option* add_threads_option(CLI::App& app, int& threads,
                                       const std::string& what = "CPU threads") {
  return app.add_option("--threads", threads, what + " (0: $LAYERPROBE_THREADS or all cores; at most " +
                                                   std::to_string(max_threads()) + ", 4 per available core)")
      ->check(integer_in(0, max_threads()));
}

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
      ->check(integer_in(1, kMostTokens))
      ->capture_default_str();
  app.add_option(name("doc stride"), window.doc_stride, "Context tokens between window starts")
      ->check(integer_in(1, kMostTokens))
      ->capture_default_str();
  app.add_option(name("max query length"), window.max_query_length, "Question tokens kept")
      ->check(integer_in(1, kMostTokens))
      ->capture_default_str();
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
  // The system's reason (a read-only file system, no permission), not the "No such file or directory"
  // that opening a file in the missing directory would give.
  if (ec) throw Error("cannot create directory '" + path.parent_path().string() + "': " + ec.message());
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
      ->check(integer_in(1, std::min(kMostLocalRanks, std::max(8, available_cores()))));
  app.add_option("--dist-backend", flags.backend, "Process group backend: auto (nccl on a GPU, else gloo), gloo, nccl")
      ->check(CLI::IsMember({"auto", "gloo", "nccl"}))
      ->capture_default_str();
  app.add_option("--dist-timeout", flags.timeout_s,
                 "Seconds a rank waits for the others (rendezvous and every collective) before all stop")
      ->check(integer_in(1, kMostDistTimeoutSeconds))
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
    check_numeric_options(app);
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
    // LibTorch's errors carry a C++ backtrace in what(): the user gets the message only.
    spdlog::error("{}", describe_exception(e));
    return leave(1);
  }
}

}  // namespace layerprobe::tools
