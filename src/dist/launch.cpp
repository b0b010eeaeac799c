#include "layerprobe/dist/launch.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "layerprobe/core/common.hpp"

namespace layerprobe::dist {

namespace {

// The exit status a shell would report for a waitpid status.
int exit_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

pid_t start_rank(int rank, int nproc, const std::string& addr, const std::string& port, char** argv) {
  const pid_t pid = ::fork();
  if (pid < 0) throw Error("--nproc: fork failed for rank " + std::to_string(rank));
  if (pid > 0) return pid;
  ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
  ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
  ::setenv("RANK", std::to_string(rank).c_str(), 1);
  ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
  ::setenv("MASTER_ADDR", addr.c_str(), 1);
  ::setenv("MASTER_PORT", port.c_str(), 1);
  ::execv("/proc/self/exe", argv);
  ::execvp(argv[0], argv);
  std::perror("--nproc: exec");
  ::_exit(127);
}

void signal_all(const std::vector<pid_t>& pids, int signal) {
  for (pid_t pid : pids)
    if (pid > 0) ::kill(pid, signal);
}

}  // namespace

int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error("--nproc: cannot open a socket to find a free port");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    ::close(fd);
    throw Error("--nproc: cannot bind a port on 127.0.0.1");
  }
  const int port = ntohs(address.sin_port);
  ::close(fd);
  return port;
}

int spawn_local_ranks(int nproc, int argc, char** argv, int grace_s) {
  if (nproc < 1) throw Error("--nproc must be at least 1", 2);
  (void)argc;
  const char* addr_env = std::getenv("MASTER_ADDR");
  const char* port_env = std::getenv("MASTER_PORT");
  const std::string addr = addr_env && *addr_env ? addr_env : "127.0.0.1";
  const std::string port = port_env && *port_env ? port_env : std::to_string(free_local_port());
  spdlog::info("--nproc {}: starting ranks 0..{} (MASTER_ADDR={} MASTER_PORT={})", nproc, nproc - 1, addr, port);
  std::vector<pid_t> pids;
  for (int rank = 0; rank < nproc; ++rank) pids.push_back(start_rank(rank, nproc, addr, port, argv));
  int result = 0, running = nproc;
  std::chrono::steady_clock::time_point kill_at{};
  bool stopping = false;
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (int rank = 0; rank < nproc; ++rank) {
        if (pids[rank] != pid) continue;
        pids[rank] = -1;
        --running;
        const int code = exit_status(status);
        if (code != 0 && result == 0) {
          result = code;
          if (running > 0) spdlog::error("--nproc: rank {} exited with status {}; stopping the other ranks", rank, code);
        }
      }
      continue;
    }
    if (!stopping && (result != 0 || stop_requested())) {
      stopping = true;
      signal_all(pids, SIGTERM);
      kill_at = std::chrono::steady_clock::now() + std::chrono::seconds(grace_s);
    }
    if (stopping && std::chrono::steady_clock::now() > kill_at) signal_all(pids, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (result == 0 && stop_requested()) result = 130;
  return result;
}

}  // namespace layerprobe::dist
