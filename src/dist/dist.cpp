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

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>

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
                std::to_string(s.timeout.count()) + " s (" + e.what() +
                "); every rank stops. Rerun the same command to resume from the last saved epoch or checkpoint.");
  }
}

void wait(const c10::intrusive_ptr<c10d::Work>& work) {
  work->wait(std::chrono::duration_cast<std::chrono::milliseconds>(state().timeout));
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
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<std::uint16_t>(s.env.master_port);
    // Rank 0 hosts the store, unless torchrun's agent already hosts it on MASTER_PORT (PyTorch 2.x).
    const char* agent_store = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
    store_options.isServer = s.env.rank == 0 && !(agent_store && std::string(agent_store) == "True");
    store_options.numWorkers = static_cast<size_t>(s.env.world_size);
    store_options.waitWorkers = true;
    store_options.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(s.timeout);
    auto store = c10::make_intrusive<c10d::TCPStore>(s.env.master_addr, store_options);
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("layerprobe", store);
    s.group = make_group(prefixed, s);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    const std::string what = e.what();
    throw Error("rank " + std::to_string(s.env.rank) + "/" + std::to_string(s.env.world_size) +
                ": cannot join the process group at " + s.env.master_addr + ":" + std::to_string(s.env.master_port) +
                " within --dist-timeout " + std::to_string(s.timeout.count()) +
                " s (every rank must start with the same WORLD_SIZE, MASTER_ADDR and MASTER_PORT; rank 0 hosts the "
                "rendezvous): " + what.substr(0, what.find('\n')));
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
