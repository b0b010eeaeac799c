// Data parallelism (issue #18): probe_train, probe_predict and run_squad as
// 2-3 Gloo ranks of local processes against one process, and ranks that never
// arrive or die. Rendezvous and traffic stay on 127.0.0.1 (MASTER_ADDR is set
// explicitly, ports are picked free, Gloo binds the loopback device); models
// and data are tiny and made here.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "layerprobe/core/common.hpp"
#include "layerprobe/dist/launch.hpp"
#include "layerprobe/probe/experiment.hpp"
#include "layerprobe/probe/probe_store.hpp"
#include "test_support.hpp"

using namespace layerprobe;
namespace fs = std::filesystem;

namespace {

using test_support::tool;
using DistClock = std::chrono::steady_clock;

// One command run by sh in the background, its output in `log`.
class DistProcess {
 public:
  DistProcess(const std::string& command, const fs::path& log) {
    pid_ = ::fork();
    if (pid_ == 0) {
      const std::string line = "exec " + command + " >" + log.string() + " 2>&1";
      ::execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  DistProcess(const DistProcess&) = delete;
  DistProcess& operator=(const DistProcess&) = delete;
  ~DistProcess() {
    if (status_ < 0) {
      ::kill(pid_, SIGKILL);
      wait_for(std::chrono::seconds(10));
    }
  }
  void kill(int signal) { ::kill(pid_, signal); }
  // Exit code (128 + signal when killed), or -1 when still running after `limit`.
  int wait_for(std::chrono::seconds limit) {
    const auto deadline = DistClock::now() + limit;
    while (status_ < 0 && DistClock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_)
        status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return status_;
  }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

int run_logged(const std::string& command, const fs::path& log) {
  const int status = std::system((command + " >" + log.string() + " 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// torchrun's variables for one rank of a local group.
std::string rank_env(int rank, int world, int port) {
  return "env WORLD_SIZE=" + std::to_string(world) + " RANK=" + std::to_string(rank) + " LOCAL_RANK=" +
         std::to_string(rank) + " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) + " ";
}

fs::path probes_path(const fs::path& exper, const std::string& kind, int epoch) {
  return exper / (kind + "_epoch_" + std::to_string(epoch)) / (kind + "_probes") / "probes.safetensors";
}

// Weights within `tolerance`. A head's softmax over positions ignores its bias, whose gradient is rounding
// noise that Adam turns into steps of up to the learning rate: biases agree only to steps x lr, and do not
// change any answer.
void expect_probes_close(const fs::path& a, const fs::path& b, double tolerance) {
  auto x = load_probes(a), y = load_probes(b);
  EXPECT_LE(test_support::max_diff(x.probes.weight(), y.probes.weight()), tolerance) << a << " vs " << b;
  const double steps = static_cast<double>(x.metadata.features_seen);  // at least one feature per step
  EXPECT_LE(test_support::max_diff(x.probes.bias(), y.probes.bias()), steps * 5e-5) << a << " vs " << b;
  EXPECT_EQ(x.metadata.features_seen, y.metadata.features_seen) << a;
  ASSERT_EQ(x.metadata.mean_loss.size(), y.metadata.mean_loss.size());
  for (size_t l = 0; l < x.metadata.mean_loss.size(); ++l)
    EXPECT_NEAR(x.metadata.mean_loss[l], y.metadata.mean_loss[l], 1e-5) << a << " layer " << l + 1;
}

std::vector<fs::path> files_under(const fs::path& root) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(root))
    if (entry.is_regular_file()) files.push_back(fs::relative(entry.path(), root));
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

class Dist : public ::testing::Test {
 protected:
  static constexpr int kEpochs = 3;

  static void SetUpTestSuite() {
    ::setenv("LAYERPROBE_THREADS", "1", 1);
    ::setenv("MASTER_ADDR", "127.0.0.1", 1);  // never anything but loopback, even for --nproc
    for (const char* name : {"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT"}) ::unsetenv(name);
    root_ = fs::path(LAYERPROBE_BINARY_DIR) / "test-scratch" / "dist";
    test_support::make_shared_fixture(root_, make_fixture);
  }

  static void must(const std::string& command) {
    ASSERT_EQ(run_logged(command, root_ / "fixture.log"), 0) << command << "\n" << read_file(root_ / "fixture.log");
  }

  static void make_fixture() {
    must(tool("probe_tools") + " synth --train-questions 160 --dev-questions 30 --output-dir " + data_dir().string());
    must(tool("probe_tools") + " train-vocab --vocab-size 300 --input " + train_file() + " " + dev_file() +
         " --output " + (root_ / "spiece.model").string());
    for (int seed : {1, 2})
      must(tool("probe_tools") + " init-model --vocab " + (root_ / "spiece.model").string() +
           " --layers 2 --hidden-size 32 --embedding-size 16 --heads 2 --intermediate-size 64 --max-positions 128"
           " --seed " + std::to_string(seed) + " --output " + (root_ / (seed == 1 ? "pretrained" : "fine_tuned")).string());
    must(probe_train(one_process()));
  }

  static fs::path data_dir() { return root_ / "data"; }
  static std::string train_file() { return (data_dir() / "train-v2.0.json").string(); }
  static std::string dev_file() { return (data_dir() / "dev-v2.0.json").string(); }
  static fs::path one_process() { return root_ / "one_process"; }

  static std::string probe_train(const fs::path& exper, const std::string& extra = "") {
    return tool("probe_train") + " both cpu " + std::to_string(kEpochs) + " --pretrained-model " +
           (root_ / "pretrained").string() + " --fine-tuned-model " + (root_ / "fine_tuned").string() +
           " --train-file " + train_file() + " --max-seq-length 96 --doc-stride 48 --batch-size 5 --output-dir " +
           exper.string() + extra;
  }

  static fs::path root_;
};

fs::path Dist::root_;

TEST_F(Dist, TwoRanksTrainTheSameProbesAsOneProcess) {
  const fs::path exper = root_ / "two_ranks";
  fs::remove_all(exper);
  ASSERT_EQ(run_logged(probe_train(exper, " --nproc 2"), root_ / "two_ranks.log"), 0) << read_file(root_ / "two_ranks.log");
  for (const char* kind : {"pretrained", "fine_tuned"})
    for (int epoch = 1; epoch <= kEpochs; ++epoch)
      expect_probes_close(probes_path(exper, kind, epoch), probes_path(one_process(), kind, epoch), 1e-5);
  // Rank 0 alone writes the log; rank 1 stays quiet but for warnings.
  const std::string log = read_file(exper / "probe_train.log");
  EXPECT_NE(log.find("2 ranks over gloo"), std::string::npos) << log;
  EXPECT_EQ(read_file(root_ / "two_ranks.log").find("[rank 1] info"), std::string::npos);

  // The probes answer alike: per-layer EM/F1 identical.
  for (const fs::path& e : {exper, one_process()}) {
    ASSERT_EQ(run_logged(tool("probe_predict") + " exper " + e.string() + " cpu --dev-file " + dev_file() +
                             " && " + tool("probe_evaluate") + " exper " + e.string(),
                         root_ / "two_ranks_eval.log"),
              0)
        << read_file(root_ / "two_ranks_eval.log");
  }
  EXPECT_EQ(read_file(exper / "summary.csv"), read_file(one_process() / "summary.csv"));
}

TEST_F(Dist, TwoRanksTrainTheSameSeedsControlAndCodelengthAsOneProcess) {
  const std::string extra = " --control --seeds 1,2";
  std::vector<fs::path> expers;
  for (const std::string name : {"seeds_one", "seeds_two"}) {
    const fs::path exper = root_ / name;
    fs::remove_all(exper);
    const std::string ranks = name == "seeds_two" ? " --nproc 2" : "";
    ASSERT_EQ(run_logged(probe_train(exper, extra + ranks), root_ / (name + ".log")), 0) << read_file(root_ / (name + ".log"));
    expers.push_back(exper);
  }
  for (const std::string kind : {"pretrained", "fine_tuned", "control"})
    for (const std::string seed : {"seed_1", "seed_2"}) {
      const auto in = [&](const fs::path& exper) {
        return exper / (kind + "_epoch_1") / (kind + "_probes") / seed / "probes.safetensors";
      };
      expect_probes_close(in(expers[1]), in(expers[0]), 1e-5);
      const auto one = load_probes(in(expers[0])).metadata.codelength, two = load_probes(in(expers[1])).metadata.codelength;
      ASSERT_TRUE(one && two) << in(expers[1]);
      EXPECT_EQ(one->features, two->features);
      EXPECT_DOUBLE_EQ(one->uniform_bits, two->uniform_bits);
      for (size_t l = 0; l < one->online_bits.size(); ++l)
        EXPECT_NEAR(one->online_bits[l], two->online_bits[l], 1e-4 * one->online_bits[l]) << kind << seed << l;
    }
  EXPECT_TRUE(fs::exists(expers[1] / "control_epoch_1" / "codelength.csv"));
}

TEST_F(Dist, ThreeRanksPredictTheSameFilesAsOneProcess) {
  std::vector<fs::path> expers;
  for (const std::string name : {"predict_one", "predict_three"}) {
    const fs::path exper = root_ / name;
    fs::remove_all(exper);
    for (const char* kind : {"pretrained", "fine_tuned"}) {
      const std::string epoch_dir = std::string(kind) + "_epoch_" + std::to_string(kEpochs);
      fs::create_directories(exper / epoch_dir);
      fs::copy(one_process() / epoch_dir / (std::string(kind) + "_probes"), exper / epoch_dir / (std::string(kind) + "_probes"));
    }
    const std::string ranks = name == "predict_three" ? " --nproc 3" : "";
    ASSERT_EQ(run_logged(tool("probe_predict") + " exper " + exper.string() + " cpu --dev-file " + dev_file() + ranks,
                         root_ / (name + ".log")),
              0)
        << read_file(root_ / (name + ".log"));
    expers.push_back(exper);
  }
  const auto files = files_under(expers[0]);
  ASSERT_EQ(files, files_under(expers[1]));
  size_t predictions = 0;
  for (const auto& file : files) {
    if (file.filename() == "probes.safetensors") continue;
    if (file.filename() == "preds_meta.json") {  // names its own experiment's probes
      auto one = nlohmann::json::parse(read_file(expers[0] / file)), three = nlohmann::json::parse(read_file(expers[1] / file));
      one.erase("probes");
      three.erase("probes");
      EXPECT_EQ(one, three) << file;
    } else {
      EXPECT_EQ(read_file(expers[0] / file), read_file(expers[1] / file)) << file;
    }
    predictions += file.extension() == ".json";
  }
  EXPECT_EQ(predictions, 2u * (2 * 2 + 1));  // per kind: 2 layers x (answers, null odds) + preds_meta.json
}

TEST_F(Dist, ARankThatNeverArrivesEndsWithinTheTimeout) {
  // Rank 0 waits for a rank 1 that is never started; rank 1 alone finds no rank 0.
  for (int rank : {0, 1}) {
    const int port = dist::free_local_port();
    const fs::path log = root_ / ("alone_" + std::to_string(rank) + ".log");
    const auto start = DistClock::now();
    DistProcess process(rank_env(rank, 2, port) + probe_train(root_ / "alone", " --dist-timeout 3"), log);
    const int status = process.wait_for(std::chrono::seconds(60));
    const double seconds = std::chrono::duration<double>(DistClock::now() - start).count();
    EXPECT_EQ(status, 1) << read_file(log);
    // The timeout bounds the whole join (rank 0 took 12 s under --dist-timeout 5: TCPStore's wait for the
    // workers ran a second past the timeout, then Gloo's rendezvous waited a second timeout).
    EXPECT_LT(seconds, 3.0 + 3.0) << "rank " << rank << " took " << seconds << " s to give up";
    EXPECT_NE(read_file(log).find("cannot join the process group at 127.0.0.1:" + std::to_string(port)),
              std::string::npos)
        << read_file(log);
  }
}

namespace {

// A listener on 127.0.0.1 that is not a c10d store: it answers each connection as `answer` says and
// stops by itself after `lifetime` (or when destroyed), closing every connection.
class FakePeer {
 public:
  // What to send on a connection: once at accept (`greeting`), and once after the client has sent a newline.
  struct Answer {
    std::string greeting;
    std::string after_newline;
  };

  FakePeer(Answer answer, std::chrono::seconds lifetime) : answer_(std::move(answer)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        ::listen(listener_, 16) != 0 || ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0)
      throw std::runtime_error("fake peer: cannot listen on 127.0.0.1");
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this, deadline = DistClock::now() + lifetime] { serve(deadline); });
  }
  FakePeer(const FakePeer&) = delete;
  FakePeer& operator=(const FakePeer&) = delete;
  ~FakePeer() {
    stop_ = true;
    thread_.join();
  }
  int port() const { return port_; }

 private:
  void serve(DistClock::time_point deadline) {
    std::vector<pollfd> fds{{listener_, POLLIN, 0}};
    std::vector<bool> answered{false};
    while (!stop_ && DistClock::now() < deadline) {
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      for (size_t i = 0; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
        if (i == 0) {
          const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
          if (client < 0) continue;
          send_all(client, answer_.greeting);
          fds.push_back({client, POLLIN, 0});
          answered.push_back(false);
          continue;
        }
        char buffer[4096];
        const ssize_t n = ::recv(fds[i].fd, buffer, sizeof buffer, 0);
        if (n <= 0) {
          fds[i].events = 0;  // closed by the client
          continue;
        }
        if (!answered[i] && std::memchr(buffer, '\n', static_cast<size_t>(n))) {
          send_all(fds[i].fd, answer_.after_newline);
          answered[i] = true;
        }
      }
    }
    for (const auto& fd : fds) ::close(fd.fd);
  }

  static void send_all(int fd, const std::string& data) {
    for (size_t sent = 0; sent < data.size();) {
      const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
  }

  Answer answer_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::string random_bytes(uint64_t seed, size_t size) {
  std::mt19937_64 random(seed);
  std::string bytes(size, '\0');
  for (auto& byte : bytes) byte = static_cast<char>(random());
  return bytes;
}

}  // namespace

TEST_F(Dist, SomethingElseOnMasterPortIsAnErrorWithinTheTimeout) {
  // Random bytes made LibTorch's store client throw on a background thread (SIGABRT); an HTTP server
  // kept it waiting past 120 s under --dist-timeout 5. Each is now an error naming the address.
  std::vector<std::pair<std::string, FakePeer::Answer>> peers;
  for (uint64_t seed = 1; seed <= 6; ++seed) peers.push_back({"random bytes " + std::to_string(seed), {random_bytes(seed, 1 << 16), ""}});
  peers.push_back({"an HTTP server", {"", "HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n"}});
  peers.push_back({"a silent listener", {"", ""}});
  peers.push_back({"an SSH banner", {"SSH-2.0-OpenSSH_9.2\r\n", ""}});
  peers.push_back({"0xff bytes", {std::string(4096, '\xff'), ""}});
  for (const auto& [what, answer] : peers) {
    FakePeer peer(answer, std::chrono::seconds(20));
    const fs::path log = root_ / "impostor.log";
    const auto start = DistClock::now();
    DistProcess process(rank_env(1, 2, peer.port()) + probe_train(root_ / "impostor", " --dist-timeout 3"), log);
    const int status = process.wait_for(std::chrono::seconds(30));
    const double seconds = std::chrono::duration<double>(DistClock::now() - start).count();
    const std::string output = read_file(log);
    EXPECT_EQ(status, 1) << what << ": " << output;
    EXPECT_LT(seconds, 3.0 + 4.0) << what;
    EXPECT_NE(output.find("cannot join the process group at 127.0.0.1:" + std::to_string(peer.port())), std::string::npos)
        << what << ": " << output;
    for (const char* crash : {"terminate called", "frame #", "Exception raised from"})
      EXPECT_EQ(output.find(crash), std::string::npos) << what << ": " << output;
  }
  EXPECT_FALSE(fs::exists(root_ / "impostor" / "pretrained_epoch_1"));
}

TEST_F(Dist, AKilledRankStopsTheOthersAndARerunResumes) {
  const fs::path exper = root_ / "killed";
  fs::remove_all(exper);
  const int port = dist::free_local_port();
  const std::string command = probe_train(exper, " --dist-timeout 60");
  DistProcess rank0(rank_env(0, 2, port) + command, root_ / "killed_0.log");
  DistProcess rank1(rank_env(1, 2, port) + command, root_ / "killed_1.log");
  const auto deadline = DistClock::now() + std::chrono::seconds(120);
  while (!fs::exists(probes_path(exper, "fine_tuned", 1)) && DistClock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(fs::exists(probes_path(exper, "fine_tuned", 1))) << read_file(root_ / "killed_0.log");
  rank1.kill(SIGKILL);
  const auto killed = DistClock::now();
  EXPECT_EQ(rank1.wait_for(std::chrono::seconds(10)), 128 + SIGKILL);
  // Rank 0 stops with an error well before the timeout: the dead rank's connections close.
  const int status = rank0.wait_for(std::chrono::seconds(90));
  const double seconds = std::chrono::duration<double>(DistClock::now() - killed).count();
  EXPECT_EQ(status, 1) << read_file(root_ / "killed_0.log");
  EXPECT_LT(seconds, 60.0);
  EXPECT_NE(read_file(root_ / "killed_0.log").find("another rank stopped"), std::string::npos)
      << read_file(root_ / "killed_0.log");
  EXPECT_FALSE(fs::exists(probes_path(exper, "fine_tuned", kEpochs)));

  // The same command, now as --nproc 2, resumes after the last saved epoch and ends as an uninterrupted run.
  ASSERT_EQ(run_logged(command + " --nproc 2", root_ / "killed_rerun.log"), 0) << read_file(root_ / "killed_rerun.log");
  EXPECT_NE(read_file(root_ / "killed_rerun.log").find("resuming after epoch"), std::string::npos);
  for (const char* kind : {"pretrained", "fine_tuned"})
    expect_probes_close(probes_path(exper, kind, kEpochs), probes_path(one_process(), kind, kEpochs), 1e-5);
}

namespace {

// run_squad's "step N: mean loss X" lines (--logging_steps 1), in order.
std::vector<double> logged_losses(const std::string& log) {
  std::vector<double> losses;
  const std::string marker = ": mean loss ";
  for (size_t at = log.find(marker); at != std::string::npos; at = log.find(marker, at + 1))
    losses.push_back(std::stod(log.substr(at + marker.size())));
  return losses;
}

}  // namespace

TEST_F(Dist, TwoRanksFineTuneAlongTheSameLossCurveAsOneProcess) {
  const auto run_squad = [&](const std::string& name, int per_rank_batch, const std::string& extra) {
    const fs::path out = root_ / name;
    fs::remove_all(out);
    const std::string command =
        tool("run_squad") + " --model_type albert --model_name_or_path " + (root_ / "pretrained").string() +
        " --do_train --do_eval --do_lower_case --version_2_with_negative --train_file " + train_file() +
        " --predict_file " + dev_file() + " --per_gpu_train_batch_size " + std::to_string(per_rank_batch) +
        " --max_steps 8 --learning_rate 1e-3 --max_seq_length 96 --doc_stride 48 --save_steps 4 --logging_steps 1"
        " --seed 3 --output_dir " + out.string() + extra;
    EXPECT_EQ(run_logged(command, root_ / (name + ".log")), 0) << read_file(root_ / (name + ".log"));
    return read_file(root_ / (name + ".log"));
  };
  // The same global batch of 8: one process of 8 rows, two ranks of 4.
  const auto one = logged_losses(run_squad("squad_one", 8, ""));
  const auto two = logged_losses(run_squad("squad_two", 4, " --nproc 2"));
  ASSERT_EQ(one.size(), 8u);
  ASSERT_EQ(two.size(), 8u);
  for (size_t step = 0; step < one.size(); ++step) EXPECT_NEAR(one[step], two[step], 1e-4) << "step " << step + 1;
  EXPECT_TRUE(fs::exists(root_ / "squad_two" / "checkpoint-8" / "trainer_state.json"));
  // Distributed evaluation: rank 0 writes every answer, as one process does.
  const auto predictions = nlohmann::json::parse(read_file(root_ / "squad_two" / "predictions.json"));
  EXPECT_EQ(predictions, nlohmann::json::parse(read_file(root_ / "squad_one" / "predictions.json")));
  const auto results = nlohmann::json::parse(read_file(root_ / "squad_two" / "eval_results.json"));
  const auto expected = nlohmann::json::parse(read_file(root_ / "squad_one" / "eval_results.json"));
  EXPECT_NEAR(results.at("f1").get<double>(), expected.at("f1").get<double>(), 1e-9);
  EXPECT_EQ(results.at("total"), expected.at("total"));
}
