// Small pieces every part of layerprobe shares: the error type, thread and
// device set-up, and atomic file output.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace layerprobe {

// Every user-facing failure is an Error whose message names the file, key or
// line at fault and, where there is one, the fix. Executables print it and
// exit with status 1 (2 for usage errors such as an unavailable device).
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, int exit_code = 1)
      : std::runtime_error(message), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

// Sets LibTorch's intra-op thread count: `requested` if > 0, else
// $LAYERPROBE_THREADS if set, else the number of available cores.
// Returns the count used. Error (status 2) for a count outside [1, max_threads()].
// The first call also gives OpenBLAS its kernels for this CPU where it took it for
// Prescott and OPENBLAS_CORETYPE is unset (SkylakeX on AVX-512, Haswell on AVX2).
int configure_threads(int requested = 0);

// The kernels OpenBLAS runs ("SkylakeX", "Haswell", "Prescott", ...); "" where LibTorch's BLAS is not OpenBLAS.
std::string openblas_core();

// The cores this process may run on (its CPU affinity).
int available_cores();

// The most threads --threads or LAYERPROBE_THREADS may ask for: 4 per core
// this process may run on (at least 8). More only oversubscribe the cores:
// thousands of spinning threads kept a 2-core machine from honouring SIGTERM.
int max_threads();

// Bytes this process may still allocate: /proc/meminfo's MemAvailable, or less
// under a cgroup memory limit; 0 when neither can be read.
int64_t available_memory_bytes();

// An exception's message for a user: LibTorch's c10::Error without the C++
// backtrace its what() appends, std::bad_alloc as running out of memory.
std::string describe_exception(const std::exception& error);

// Writes `content` to `path` through a temporary file in the same directory
// and a rename, so a reader never sees a partial file under its final name.
void write_file_atomically(const std::filesystem::path& path, const std::string& content);

// Reads a whole file; Error naming the file when it cannot be read.
std::string read_file(const std::filesystem::path& path);

// SIGINT/SIGTERM set a flag instead of killing the process, so long jobs can
// stop between steps with everything finished so far saved. A second signal
// kills the process as usual.
void install_stop_handlers();
bool stop_requested();
// Throws Error (exit status 130) saying `how_to_resume` when a stop was requested.
void throw_if_stop_requested(const std::string& how_to_resume);

// Holders of what a stopped process leaves unfreed: a dataset's millions of
// small allocations would take seconds to free on the way out after Ctrl-C
// or SIGTERM, past the promised second. Held from a global, so still reachable
// (no leak report), and never destroyed.
std::vector<std::shared_ptr<void>>& kept_until_exit();
template <typename T>
void keep_until_exit(T&& data) {
  kept_until_exit().push_back(std::make_shared<std::decay_t<T>>(std::forward<T>(data)));
}

// Runs `body`; when a signal stops it (Error with status 130), moves each of
// `held` into keep_until_exit before the error goes on, so that unwinding
// frees none of it. The executables then leave with _Exit (tools/tool_main.hpp).
template <typename Body, typename... Held>
decltype(auto) keep_on_stop(Body&& body, Held&... held) {
  try {
    return body();
  } catch (const Error& e) {
    if (e.exit_code() == 130) (keep_until_exit(std::move(held)), ...);
    throw;
  }
}

}  // namespace layerprobe
