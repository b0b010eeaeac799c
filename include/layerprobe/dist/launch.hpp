// `--nproc N`: one command starts N local ranks of itself, as torchrun
// --nproc_per_node N does, and ends them all when one fails.
#pragma once

#include <string>
#include <vector>

namespace layerprobe::dist {

// Runs argv[0] with `args` N times with WORLD_SIZE=N, RANK=LOCAL_RANK=i,
// MASTER_ADDR (127.0.0.1 unless set) and MASTER_PORT (a free port unless set).
// Waits for all; when one fails (or a stop is requested) the others get
// SIGTERM, then SIGKILL after `grace_s`. Returns 0, or the first failing
// rank's exit status (128 + signal when killed).
int spawn_local_ranks(int nproc, int argc, char** argv, int grace_s = 10);

// A TCP port on 127.0.0.1 that was free a moment ago.
int free_local_port();

}  // namespace layerprobe::dist
