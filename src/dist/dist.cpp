#include "layerprobe/dist/dist.hpp"

// LibTorch's c10d headers declare Gloo's process group only under this macro (Debian builds LibTorch with
// Gloo, and libgloo-dev has the headers they include).
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef LAYERPROBE_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "layerprobe/core/common.hpp"

namespace layerprobe::dist {

namespace {

// LibTorch 2.x's process groups are c10d::Backend objects; 1.13's are c10d::ProcessGroup (same collectives).
#if TORCH_VERSION_MAJOR >= 2
using Group = c10d::Backend;
#else
using Group = c10d::ProcessGroup;
#endif

struct State {
  Environment env;
  std::string backend = "none";
  std::chrono::seconds timeout{300};
  c10::intrusive_ptr<Group> group;
  double collective_seconds = 0.0;
};

State& state() {
  static State s;
  return s;
}

int int_variable(const char* name, int fallback, int minimum) {
  const char* value = std::getenv(name);
  if (!value || !*value) return fallback;
  char* end = nullptr;
  const long parsed = std::strtol(value, &end, 10);
  if (*end != '\0' || parsed < minimum || parsed > 65535 * 16)
    throw Error(std::string("environment variable ") + name + "='" + value + "' is not an integer >= " +
                    std::to_string(minimum),
                2);
  return static_cast<int>(parsed);
}

bool is_loopback(const std::string& address) {
  return address == "localhost" || address.rfind("127.", 0) == 0 || address == "::1";
}

// Gloo's pairs listen on the address of this device: loopback when the rendezvous is
// local (tests, --nproc), GLOO_SOCKET_IFNAME's interface when set, else the hostname's.
std::shared_ptr<::gloo::transport::Device> gloo_device(const Environment& env) {
  if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"); interface && *interface)
    return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
  if (is_loopback(env.master_addr)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

c10::intrusive_ptr<Group> make_group(const c10::intrusive_ptr<c10d::Store>& store, const State& s) {
  const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(s.timeout);
  if (s.backend == "gloo") {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(gloo_device(s.env));
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, s.env.rank, s.env.world_size, options);
  }
#ifdef LAYERPROBE_WITH_NCCL
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, s.env.rank, s.env.world_size, options);
#else
  throw Error("--dist-backend nccl: this build has no NCCL (it needs a CUDA LibTorch and nccl.h); use gloo", 2);
#endif
}

// Runs one collective; a failure (a rank died, or none answered within the timeout) becomes an Error
// that says which rank saw it and what to do.
template <typename Body>
void collective(const char* what, Body body) {
  const auto start = std::chrono::steady_clock::now();
  try {
    body();
    state().collective_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } catch (const std::exception& e) {
    const State& s = state();
    throw Error("rank " + std::to_string(s.env.rank) + "/" + std::to_string(s.env.world_size) + ": " + what +
                " failed: another rank stopped, or none answered within --dist-timeout " +
                std::to_string(s.timeout.count()) + " s (" + describe_exception(e) +
                "); every rank stops. Rerun the same command to resume from the last saved epoch or checkpoint.");
  }
}

void wait(const c10::intrusive_ptr<c10d::Work>& work) {
  work->wait(std::chrono::duration_cast<std::chrono::milliseconds>(state().timeout));
}

// --- joining safely -------------------------------------------------------------------------
// LibTorch's TCPStore client trusts whatever answers on MASTER_PORT: bytes that are not a c10d
// store's make it allocate what a length field claims, or throw on a background thread (so
// std::terminate, SIGABRT), and a peer that never answers (an HTTP server waiting for a request
// line) makes it wait forever. Here the client first runs in a child process that must store a
// key and read it back, bounded in time and memory; a watchdog ends a join that outlives the
// timeout; and a failure on a LibTorch thread ends the process with a message, not an abort.

std::string rank_text(const State& s) {
  return "rank " + std::to_string(s.env.rank) + "/" + std::to_string(s.env.world_size);
}

std::string address_text(const State& s) { return s.env.master_addr + ":" + std::to_string(s.env.master_port); }

// "rank R/W: cannot join the process group at ADDR within --dist-timeout N s (...): detail"
std::string join_error(const State& s, const std::string& detail) {
  return rank_text(s) + ": cannot join the process group at " + address_text(s) + " within --dist-timeout " +
         std::to_string(s.timeout.count()) + " s (every rank must start with the same WORLD_SIZE, MASTER_ADDR and " +
         "MASTER_PORT; rank 0 hosts the rendezvous): " + detail;
}

// Writes one error line and leaves with status 1; for LibTorch's threads and the watchdog, where the
// logger may be held by the thread that is stuck.
[[noreturn]] void leave_with_error(const std::string& message) {
  const std::string line = "error: " + message + "\n";
  [[maybe_unused]] ssize_t written = ::write(2, line.data(), line.size());
  std::_Exit(1);
}

// What std::terminate was called for: the exception in flight, if any.
std::string terminate_reason() {
  if (auto error = std::current_exception()) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      return describe_exception(e);
    } catch (...) {
    }
  }
  return "an unknown failure";
}

// Installed while this process is in a process group: an uncaught exception on a LibTorch thread
// (the store's listener, Gloo's) ends it with a message naming the rendezvous, status 1.
void on_terminate_in_group() {
  const State& s = state();
  leave_with_error(rank_text(s) + ": the process group at " + address_text(s) +
                   " failed on a background thread (" + terminate_reason() +
                   "); another rank stopped, or what answers at MASTER_ADDR:MASTER_PORT is not this run's rank 0. "
                   "Every rank stops; rerun the same command to resume from the last saved epoch or checkpoint.");
}

// Ends the process with join_error when the join has not finished by `deadline`.
class JoinWatchdog {
 public:
  JoinWatchdog(std::chrono::steady_clock::time_point deadline, std::string message)
      : thread_([this, deadline, message = std::move(message)] {
          std::unique_lock<std::mutex> lock(mutex_);
          if (!done_changed_.wait_until(lock, deadline, [this] { return done_; })) leave_with_error(message);
        }) {}
  JoinWatchdog(const JoinWatchdog&) = delete;
  JoinWatchdog& operator=(const JoinWatchdog&) = delete;
  ~JoinWatchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
    }
    done_changed_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_changed_;
  bool done_ = false;
  std::thread thread_;
};

// The pipe the store probe's child reports on, for its terminate handler.
int g_probe_report_fd = -1;

void report_to_parent(const std::string& text) {
  [[maybe_unused]] ssize_t written = ::write(g_probe_report_fd, text.data(), std::min<size_t>(text.size(), 4000));
}

// The probe's exit codes: how the store client failed.
constexpr int kProbeThrew = 3, kProbeTerminated = 4, kProbeWrongAnswer = 5;

// In the child: LibTorch's client stores a random value under a key of its own and reads it back.
[[noreturn]] void run_store_probe(const State& s, std::chrono::milliseconds timeout) {
  // Bounded memory: a length field of garbage then fails to allocate instead of growing for minutes.
  long pages = 0;
  std::ifstream("/proc/self/statm") >> pages;
  const rlim_t limit = static_cast<rlim_t>(pages) * static_cast<rlim_t>(::sysconf(_SC_PAGESIZE)) + (rlim_t{1} << 30);
  const rlimit address_space{limit, limit};
  ::setrlimit(RLIMIT_AS, &address_space);
  std::set_terminate([] {
    report_to_parent(terminate_reason());
    ::_exit(kProbeTerminated);
  });
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(s.env.master_port);
    options.isServer = false;
    options.waitWorkers = false;
    options.timeout = timeout;
    c10d::TCPStore store(s.env.master_addr, options);
    std::mt19937_64 random(std::random_device{}());
    const std::string key = "layerprobe/probe/" + std::to_string(::getpid()) + "/" + std::to_string(random());
    std::vector<uint8_t> value(16);
    for (auto& byte : value) byte = static_cast<uint8_t>(random());
    store.set(key, value);
    if (store.get(key) != value) {
      report_to_parent("it did not give back the value stored");
      ::_exit(kProbeWrongAnswer);
    }
    store.deleteKey(key);
    ::_exit(0);
  } catch (const std::exception& e) {
    report_to_parent(describe_exception(e));
    ::_exit(kProbeThrew);
  } catch (...) {
    ::_exit(kProbeThrew);
  }
}

constexpr const char* kNothingAnswered =
    "something accepted the connection but nothing answered as a c10d store (rank 0 of this run hosts one; is "
    "another program, such as an HTTP server, listening on MASTER_PORT?)";

// Checks that a c10d store answers at MASTER_ADDR:MASTER_PORT before this process's own client is
// made: Error (join_error) when nothing answers as one by `deadline` or what answers is something else.
void probe_store(const State& s, std::chrono::steady_clock::time_point deadline) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw Error(join_error(s, "cannot create a pipe to probe the store"));
  const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  const pid_t pid = ::fork();
  if (pid < 0) throw Error(join_error(s, "cannot fork to probe the store"));
  if (pid == 0) {
    ::close(fds[0]);
    g_probe_report_fd = fds[1];
    run_store_probe(s, std::max(timeout, std::chrono::milliseconds(1)));
  }
  ::close(fds[1]);
  std::string report;
  int status = 0;
  bool exited = false;
  // The child's own timeout ends a refused or silent connection; a peer that accepts and never answers
  // leaves it waiting, and is given one second more.
  const auto kill_at = deadline + std::chrono::seconds(1);
  while (!exited) {
    pollfd readable{fds[0], POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(kill_at - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      ::close(fds[0]);
      throw Error(join_error(s, kNothingAnswered));
    }
    if (::poll(&readable, 1, static_cast<int>(std::min<int64_t>(left.count(), 20))) > 0) {
      char buffer[1024];
      const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
      if (n > 0 && report.size() < 4000) report.append(buffer, static_cast<size_t>(n));
    }
    exited = ::waitpid(pid, &status, WNOHANG) == pid;
  }
  for (char buffer[1024]; ;) {  // what the child wrote just before it exited
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n <= 0 || report.size() >= 4000) break;
    report.append(buffer, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  report = report.substr(0, report.find('\n'));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
  if (WIFEXITED(status) && WEXITSTATUS(status) == kProbeThrew) {
    // No connection (rank 0 not up in time) is reported as LibTorch words it; a connection that never
    // answers, or answers something else, is not a store.
    if (report.find("connect") != std::string::npos) throw Error(join_error(s, report));
    if (report.find("Timeout") != std::string::npos || report.find("timed out") != std::string::npos)
      throw Error(join_error(s, kNothingAnswered));
  }
  throw Error(join_error(s, "what answers there is not a c10d store (" +
                                (report.empty() ? "its client was killed by signal " +
                                                      std::to_string(WIFSIGNALED(status) ? WTERMSIG(status) : 0)
                                                : report) +
                                "); check MASTER_ADDR and MASTER_PORT"));
}

// A key that counts the ranks arrived, unique to this launch (torchrun's agent store outlives restarts).
std::string arrival_key() {
  std::string key = "layerprobe/arrived";
  for (const char* name : {"TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT"})
    if (const char* value = std::getenv(name); value && *value) key += std::string("/") + value;
  return key;
}

// Every rank adds itself, then waits until all have: Error naming how many came by `deadline`.
// (TCPStore's own wait let rank 0 give up only a second past the timeout and then start Gloo,
// which waited a second timeout: 12 s under --dist-timeout 5.)
void wait_for_ranks(c10d::Store& store, const State& s, std::chrono::steady_clock::time_point deadline) {
  const std::string key = arrival_key();
  int64_t arrived = store.add(key, 1);
  while (arrived < s.env.world_size) {
    if (std::chrono::steady_clock::now() >= deadline)
      throw Error(join_error(s, "only " + std::to_string(arrived) + " of " + std::to_string(s.env.world_size) +
                                    " ranks arrived"));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    arrived = store.add(key, 0);
  }
}

}  // namespace

Environment read_environment() {
  Environment env;
  env.world_size = int_variable("WORLD_SIZE", 1, 1);
  env.rank = int_variable("RANK", 0, 0);
  env.local_rank = int_variable("LOCAL_RANK", env.rank, 0);
  env.master_port = int_variable("MASTER_PORT", 29500, 1);
  if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr) env.master_addr = addr;
  if (env.rank >= env.world_size)
    throw Error("RANK=" + std::to_string(env.rank) + " is not below WORLD_SIZE=" + std::to_string(env.world_size), 2);
  if (env.master_port > 65535) throw Error("MASTER_PORT=" + std::to_string(env.master_port) + " is not a port", 2);
  return env;
}

void init(const InitOptions& options) {
  State& s = state();
  if (s.group) throw Error("dist::init called twice");
  s.env = read_environment();
  if (options.local_rank >= 0) s.env.local_rank = options.local_rank;
  s.timeout = options.timeout;
  if (options.backend != "auto" && options.backend != "gloo" && options.backend != "nccl")
    throw Error("--dist-backend '" + options.backend + "' is not one of: auto, gloo, nccl", 2);
  if (s.env.world_size == 1) return;
  s.backend = options.backend == "auto" ? (options.cuda ? "nccl" : "gloo") : options.backend;
  if (s.backend == "nccl" && !options.cuda) throw Error("--dist-backend nccl needs a CUDA run; use gloo on the CPU", 2);
  spdlog::debug("rank {}/{}: joining {} at {}:{} (timeout {} s)", s.env.rank, s.env.world_size, s.backend,
                s.env.master_addr, s.env.master_port, s.timeout.count());
  // The whole join ends within the timeout: an Error by then (or a second later, when a probe must be
  // killed), at the latest by the watchdog two seconds later.
  const auto deadline = std::chrono::steady_clock::now() + s.timeout;
  JoinWatchdog watchdog(deadline + std::chrono::seconds(2),
                        join_error(s, "it did not complete (the watchdog ended it)"));
  std::set_terminate(on_terminate_in_group);
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<std::uint16_t>(s.env.master_port);
    // Rank 0 hosts the store, unless torchrun's agent already hosts it on MASTER_PORT (PyTorch 2.x).
    const char* agent_store = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
    store_options.isServer = s.env.rank == 0 && !(agent_store && std::string(agent_store) == "True");
    if (!store_options.isServer) probe_store(s, deadline);
    store_options.numWorkers = static_cast<size_t>(s.env.world_size);
    store_options.waitWorkers = false;  // wait_for_ranks, within the deadline
    store_options.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(s.timeout);
    auto store = c10::make_intrusive<c10d::TCPStore>(s.env.master_addr, store_options);
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("layerprobe", store);
    wait_for_ranks(*prefixed, s, deadline);
    s.group = make_group(prefixed, s);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    const std::string what = describe_exception(e);
    throw Error(join_error(s, what.substr(0, what.find('\n'))));
  }
  spdlog::debug("rank {}/{}: joined", s.env.rank, s.env.world_size);
}

void shutdown() {
  State& s = state();
  if (!s.group) return;
  barrier();
  s.group.reset();
}

bool enabled() { return static_cast<bool>(state().group); }
int rank() { return state().env.rank; }
int world_size() { return enabled() ? state().env.world_size : 1; }
int local_rank() { return state().env.local_rank; }
bool is_main() { return rank() == 0; }
std::string backend_name() { return state().backend; }
double collective_seconds() { return state().collective_seconds; }

void all_reduce_sum(torch::Tensor& tensor) {
  if (!enabled()) return;
  collective("all-reduce", [&] {
    std::vector<torch::Tensor> tensors{tensor};
    wait(state().group->allreduce(tensors));
  });
}

void all_reduce_sum(std::vector<torch::Tensor>& tensors) {
  if (!enabled() || tensors.empty()) return;
  // One flat buffer per (dtype, device): one collective instead of one per tensor.
  std::map<std::string, std::vector<size_t>> groups;
  for (size_t i = 0; i < tensors.size(); ++i)
    groups[std::string(c10::toString(tensors[i].scalar_type())) + tensors[i].device().str()].push_back(i);
  for (const auto& entry : groups) {
    const std::vector<size_t>& members = entry.second;
    std::vector<torch::Tensor> flat;
    for (size_t i : members) flat.push_back(tensors[i].reshape({-1}));
    auto buffer = torch::cat(flat);
    all_reduce_sum(buffer);
    int64_t offset = 0;
    for (size_t i : members) {
      const int64_t n = tensors[i].numel();
      tensors[i].copy_(buffer.slice(0, offset, offset + n).view(tensors[i].sizes()));
      offset += n;
    }
  }
}

double all_reduce_sum_bucketed(std::vector<torch::Tensor>& tensors, int64_t bucket_bytes) {
  if (!enabled() || tensors.empty()) return 0.0;
  const auto start = std::chrono::steady_clock::now();
  struct Bucket {
    std::vector<size_t> members;
    torch::Tensor buffer;
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::vector<Bucket> buckets;
  int64_t bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    const bool fits = !buckets.empty() && bytes + static_cast<int64_t>(t.nbytes()) <= bucket_bytes &&
                      tensors[buckets.back().members.front()].scalar_type() == t.scalar_type() &&
                      tensors[buckets.back().members.front()].device() == t.device();
    if (!fits) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().members.push_back(i);
    bytes += static_cast<int64_t>(t.nbytes());
  }
  collective("all-reduce", [&] {
    for (auto& bucket : buckets) {
      std::vector<torch::Tensor> flat;
      for (size_t i : bucket.members) flat.push_back(tensors[i].reshape({-1}));
      std::vector<torch::Tensor> one{torch::cat(flat)};
      bucket.buffer = one[0];
      bucket.work = state().group->allreduce(one);
    }
    for (auto& bucket : buckets) {
      wait(bucket.work);
      int64_t offset = 0;
      for (size_t i : bucket.members) {
        const int64_t n = tensors[i].numel();
        tensors[i].copy_(bucket.buffer.slice(0, offset, offset + n).view(tensors[i].sizes()));
        offset += n;
      }
    }
  });
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::vector<int64_t> all_gather_int(int64_t mine) {
  if (!enabled()) return {mine};
  auto input = torch::full({1}, mine, torch::kInt64);
  std::vector<std::vector<torch::Tensor>> outputs(1);
  for (int r = 0; r < world_size(); ++r) outputs[0].push_back(torch::empty({1}, torch::kInt64));
  std::vector<torch::Tensor> inputs{input};
  collective("all-gather", [&] { wait(state().group->allgather(outputs, inputs)); });
  std::vector<int64_t> values;
  for (const auto& t : outputs[0]) values.push_back(t.item<int64_t>());
  return values;
}

std::vector<std::string> gather_strings(const std::string& mine) {
  if (!enabled()) return {mine};
  const auto sizes = all_gather_int(static_cast<int64_t>(mine.size()));
  const int64_t longest = std::max<int64_t>(1, *std::max_element(sizes.begin(), sizes.end()));
  auto input = torch::zeros({longest}, torch::kUInt8);
  std::memcpy(input.data_ptr<uint8_t>(), mine.data(), mine.size());
  std::vector<std::vector<torch::Tensor>> outputs(1);
  for (int r = 0; r < world_size(); ++r) outputs[0].push_back(torch::empty({longest}, torch::kUInt8));
  std::vector<torch::Tensor> inputs{input};
  collective("gather", [&] { wait(state().group->allgather(outputs, inputs)); });
  if (!is_main()) return {};
  std::vector<std::string> strings;
  for (int r = 0; r < world_size(); ++r) {
    const auto* data = reinterpret_cast<const char*>(outputs[0][static_cast<size_t>(r)].data_ptr<uint8_t>());
    strings.emplace_back(data, static_cast<size_t>(sizes[static_cast<size_t>(r)]));
  }
  return strings;
}

void barrier() {
  if (!enabled()) return;
  // A small all-reduce rather than ProcessGroup::barrier, whose wait ignores the timeout on some backends.
  auto token = torch::zeros({1});
  all_reduce_sum(token);
}

}  // namespace layerprobe::dist
