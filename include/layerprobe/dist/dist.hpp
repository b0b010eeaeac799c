// Data parallelism over LibTorch's torch.distributed core (c10d): joining the
// process group that torchrun's environment describes (WORLD_SIZE, RANK,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT), rank accessors, and the few
// collectives probe_train, probe_predict and run_squad need. With WORLD_SIZE
// unset or 1 nothing is joined and every collective is the identity.
#pragma once

#include <torch/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace layerprobe::dist {

// torchrun's variables; Error (exit 2) naming the variable when one is malformed.
struct Environment {
  int world_size = 1;
  int rank = 0;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};
Environment read_environment();

struct InitOptions {
  // "auto" (NCCL for a CUDA run, else Gloo), "gloo" or "nccl".
  std::string backend = "auto";
  bool cuda = false;
  // Rendezvous and every collective fail with an Error after this long.
  std::chrono::seconds timeout{300};
  // --local_rank as transformers 2.5.1 passed it (-1: LOCAL_RANK or 0).
  int local_rank = -1;
};

// Joins the process group when WORLD_SIZE > 1 (TCPStore on MASTER_ADDR:MASTER_PORT,
// hosted by rank 0). Error (exit 1) when a rank does not arrive within the timeout.
void init(const InitOptions& options);
// Waits for every rank, then leaves the group (call once the work is done).
void shutdown();

bool enabled();  // world_size() > 1
int rank();
int world_size();
int local_rank();
bool is_main();  // rank 0
std::string backend_name();  // "gloo", "nccl", or "none"
// Wall time this rank spent in collectives so far: the traffic and the wait for slower ranks.
double collective_seconds();

// Sums `tensor` over all ranks in place (every rank gets the sum).
void all_reduce_sum(torch::Tensor& tensor);
// Sums each tensor of `tensors` over all ranks in place, in one flat buffer per dtype and device.
void all_reduce_sum(std::vector<torch::Tensor>& tensors);
// Sums `tensors` over all ranks in place in buckets of about `bucket_bytes`
// (DDP's default is 25 MiB): every bucket's all-reduce is started before the
// first is waited for, so packing and unpacking overlap the traffic. Returns
// the seconds spent (for the share of a step that communication takes).
double all_reduce_sum_bucketed(std::vector<torch::Tensor>& tensors, int64_t bucket_bytes = 25 << 20);
// Rank 0 receives every rank's string in rank order; the other ranks get an empty vector.
std::vector<std::string> gather_strings(const std::string& mine);
// Every rank receives every rank's value in rank order.
std::vector<int64_t> all_gather_int(int64_t mine);
void barrier();

}  // namespace layerprobe::dist
