#include "layerprobe/core/common.hpp"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <fstream>
#include <malloc.h>
#include <mutex>
#include <sched.h>
#include <signal.h>
#include <sstream>
#include <thread>
#include <unistd.h>

namespace layerprobe {

namespace fs = std::filesystem;

int available_cores() {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  const int cores = ::sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 0;
  return cores > 0 ? cores : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

int max_threads() { return std::min(4096, std::max(8, 4 * available_cores())); }

std::string openblas_core() {
  using Name = char* (*)();
  auto corename = reinterpret_cast<Name>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return corename ? corename() : "";
}

namespace {

// OpenBLAS's kernels for this CPU. Debian's OpenBLAS 0.3.21 (LibTorch's BLAS) is built with
// DYNAMIC_ARCH and takes CPUs newer than it knows (the AVX-512 Xeons these tools meet) for Prescott:
// SSE3 kernels, 3-4x slower on the batched products run_squad's backward still sends it. Where
// OPENBLAS_CORETYPE does not say otherwise, a Prescott pick on a CPU with AVX-512 (F, BW, VL, DQ) is
// replaced by SkylakeX's kernels, with AVX2 and FMA by Haswell's: OpenBLAS read the variable when it
// loaded, so it is set and OpenBLAS's own selection (gotoblas_dynamic_init, exported) run again, before
// any BLAS call. The core in use: openblas_core().
void pick_openblas_core() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (std::getenv("OPENBLAS_CORETYPE")) return;  // the user's choice
    using Call = void (*)();
    auto quit = reinterpret_cast<Call>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit"));
    auto init = reinterpret_cast<Call>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init"));
    if (!quit || !init || openblas_core() != "Prescott") return;
    __builtin_cpu_init();
    const char* core = nullptr;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
      core = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      core = "Haswell";
    if (!core) return;
    setenv("OPENBLAS_CORETYPE", core, 0);  // child processes (dist ranks) pick it at load
    quit();
    init();
    spdlog::debug("OpenBLAS took this CPU for Prescott; now {} (OPENBLAS_CORETYPE overrides)", openblas_core());
  });
}

}  // namespace

int configure_threads(int requested) {
  pick_openblas_core();
  int threads = requested;
  const int most = max_threads();
  if (threads > most)
    throw Error("--threads " + std::to_string(threads) + " is more than " + std::to_string(most) +
                    " (4 per available core); more threads only oversubscribe the cores",
                2);
  if (threads <= 0) {
    if (const char* env = std::getenv("LAYERPROBE_THREADS"); env && *env) {
      char* end = nullptr;
      errno = 0;
      long parsed = std::strtol(env, &end, 10);
      if (*end != '\0' || errno == ERANGE || parsed <= 0 || parsed > most)
        throw Error(std::string("LAYERPROBE_THREADS='") + env + "' is not a thread count in [1, " +
                        std::to_string(most) + "] (at most 4 per available core)",
                    2);
      threads = static_cast<int>(parsed);
    }
  }
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  torch::set_num_threads(threads);
  // Debian's libtorch multiplies matrices through the system BLAS; OpenBLAS
  // otherwise starts a spinning thread per core of its own on top of
  // LibTorch's, and the two pools fight over the cores. One BLAS thread: the
  // heavy inference matrices go through oneDNN on LibTorch's pool, and what
  // remains for BLAS (bmm, which LibTorch 1.13 splits into one small GEMM per
  // batch and head) ran ten times slower with two BLAS threads than with one.
  using SetThreads = void (*)(int);
  if (auto set_blas_threads = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
    set_blas_threads(1);
  // Activations of tens of MB are allocated and freed every layer; glibc
  // would mmap and unmap each one, and the page faults of re-touching fresh
  // pages cost more than the arithmetic on them. Keep them all on the heap:
  // the largest mmap threshold glibc accepts (32 MiB) is below the attention
  // scores of a batch of 32 windows of 384 (75 MB), whose page faults halved
  // the speed of run_squad's evaluation.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  return threads;
}

int64_t available_memory_bytes() {
  int64_t available = 0;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    int64_t kib = 0;
    meminfo >> kib;
    if (key == "MemAvailable:") available = kib * 1024;
    meminfo.ignore(1 << 10, '\n');
  }
  // cgroup v2, then v1: the limit less what the group already uses.
  for (const auto& [limit_file, usage_file] :
       {std::pair<const char*, const char*>{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
        {"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
    std::ifstream limit_in(limit_file), usage_in(usage_file);
    int64_t limit = 0, usage = 0;
    if (!(limit_in >> limit) || !(usage_in >> usage) || limit <= 0 || limit >= (int64_t{1} << 60)) continue;
    const int64_t left = std::max<int64_t>(0, limit - usage);
    available = available > 0 ? std::min(available, left) : left;
    break;
  }
  return available;
}

std::string describe_exception(const std::exception& error) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&error)) {
    std::string text = c10_error->what_without_backtrace();
    // LibTorch 1.13 appends "Exception raised from <function> at <file>" to the message itself.
    const auto raised = text.find("\nException raised from ");
    return raised == std::string::npos ? text : text.substr(0, raised);
  }
  if (dynamic_cast<const std::bad_alloc*>(&error))
    return "out of memory (a size given in the options or read from a file needs more memory than this machine has)";
  std::string text = error.what();
  // Messages of other exceptions that wrap a c10::Error's what() (its backtrace starts on this line).
  for (const char* marker : {"\nException raised from ", "\nframe #0"})
    if (auto at = text.find(marker); at != std::string::npos) text.erase(at);
  return text;
}

namespace {
[[noreturn]] void throw_errno(const std::string& what, const fs::path& path) {
  throw Error(what + " '" + path.string() + "': " + std::strerror(errno));
}

bool process_is_gone(const std::string& pid_text) {
  if (pid_text.empty() || pid_text.size() > 9 || pid_text.find_first_not_of("0123456789") != std::string::npos)
    return false;
  const auto pid = static_cast<pid_t>(std::stol(pid_text));
  return pid == ::getpid() || (::kill(pid, 0) != 0 && errno == ESRCH);
}

// A process killed between creating its temporary file and the rename leaves
// '<name>.tmp.<pid>' behind. Removing those of processes that no longer
// exist keeps a killed and rerun job from piling up partial copies.
void remove_stale_temporaries(const fs::path& path) {
  const std::string prefix = path.filename().string() + ".tmp.";
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0 || !process_is_gone(name.substr(prefix.size()))) continue;
    std::error_code ignored;
    if (fs::remove(it->path(), ignored)) spdlog::debug("removed '{}', left by a stopped process", it->path().string());
  }
}
}  // namespace

void write_file_atomically(const fs::path& path, const std::string& content) {
  if (path.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    if (ec) throw Error("cannot create directory '" + path.parent_path().string() + "': " + ec.message());
  }
  remove_stale_temporaries(path);
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw_errno("cannot create", tmp);
  const char* data = content.data();
  size_t left = content.size();
  while (left > 0) {
    ssize_t n = ::write(fd, data, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      int saved = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      errno = saved;
      throw_errno("cannot write (disk full?)", path);
    }
    data += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int saved = errno;
    ::unlink(tmp.c_str());
    errno = saved;
    throw_errno("cannot write (disk full?)", path);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int saved = errno;
    ::unlink(tmp.c_str());
    errno = saved;
    throw_errno("cannot rename into place", path);
  }
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open '" + path.string() + "': " + std::strerror(errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw Error("cannot read '" + path.string() + "'");
  return buffer.str();
}

namespace {
std::atomic<bool> g_stop_requested{false};

extern "C" void on_stop_signal(int signal_number) {
  if (g_stop_requested.exchange(true)) {
    std::signal(signal_number, SIG_DFL);
    std::raise(signal_number);
  }
}
}  // namespace

void install_stop_handlers() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}

bool stop_requested() { return g_stop_requested.load(); }

void throw_if_stop_requested(const std::string& how_to_resume) {
  if (stop_requested()) throw Error("stopped by signal; finished work is saved. " + how_to_resume, 130);
}

std::vector<std::shared_ptr<void>>& kept_until_exit() {
  static auto* kept = new std::vector<std::shared_ptr<void>>();  // never destroyed: see the header
  return *kept;
}

}  // namespace layerprobe
