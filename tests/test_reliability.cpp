// Reliability (issue #8): the tools killed and rerun, stopped by signals,
// out of disk space, given mismatched or stray files, and given hostile
// sizes. Everything runs the built executables on a small model and a small
// synthetic dataset made here, so no ../shared data is needed.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <regex>
#include <thread>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/io/safetensors.hpp"
#include "layerprobe/probe/experiment.hpp"
#include "layerprobe/probe/probe_store.hpp"
#include "test_support.hpp"

using namespace layerprobe;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

using test_support::tool;

// What a child does to itself between fork and exec.
struct Limits {
  std::optional<uint64_t> file_size;  // RLIMIT_FSIZE in bytes
  bool ignore_sigxfsz = false;        // writes past the limit fail with EFBIG instead of killing
};

// One run of a tool: `sh -c 'exec COMMAND'` with stdout and stderr captured
// through a pipe (a file would itself be subject to the file size limit).
class Process {
 public:
  explicit Process(const std::string& command, const Limits& limits = {}) {
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      ::dup2(fds[1], 2);
      ::close(fds[0]);
      ::close(fds[1]);
      rlimit no_core{0, 0};
      ::setrlimit(RLIMIT_CORE, &no_core);
      if (limits.file_size) {
        rlimit fsize{*limits.file_size, *limits.file_size};
        ::setrlimit(RLIMIT_FSIZE, &fsize);
      }
      ::signal(SIGXFSZ, limits.ignore_sigxfsz ? SIG_IGN : SIG_DFL);
      const std::string line = "exec " + command;
      ::execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(fds[1]);
    reader_ = std::thread([this, fd = fds[0]] {
      char buffer[4096];
      for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) != 0;) {
        if (n < 0) {
          if (errno == EINTR) continue;
          break;
        }
        std::lock_guard<std::mutex> lock(output_mutex_);
        output_.append(buffer, static_cast<size_t>(n));
      }
      ::close(fd);
    });
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process() {
    if (!waited_) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }

  void signal(int number) { ::kill(pid_, number); }

  // The raw wait status; also records the child's peak resident memory.
  int wait() {
    if (!waited_) {
      rusage usage{};
      while (::wait4(pid_, &status_, 0, &usage) < 0 && errno == EINTR) {
      }
      max_rss_kib_ = usage.ru_maxrss;
      reader_.join();
      waited_ = true;
    }
    return status_;
  }
  // True until the child exits (it is left unreaped for wait()).
  bool running() {
    if (waited_) return false;
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) return false;
    return info.si_pid == 0;
  }
  // Exit code, or 128 + signal for a killed child.
  int exit_code() {
    int status = wait();
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  const std::string& output() {
    wait();
    return output_;
  }
  // What the child has printed so far, while it runs.
  std::string output_so_far() {
    std::lock_guard<std::mutex> lock(output_mutex_);
    return output_;
  }
  long max_rss_kib() {
    wait();
    return max_rss_kib_;
  }

 private:
  pid_t pid_ = -1;
  std::thread reader_;
  std::mutex output_mutex_;
  std::string output_;
  int status_ = 0;
  long max_rss_kib_ = 0;
  bool waited_ = false;
};

// Runs to the end; returns the exit code and the output.
std::pair<int, std::string> run(const std::string& command, const Limits& limits = {}) {
  Process process(command, limits);
  int code = process.exit_code();
  return {code, process.output()};
}

// Polls until `ready` holds or the child ends; false on timeout or end.
bool wait_until(Process& process, const std::function<bool()>& ready, double timeout_s = 120) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  while (Clock::now() < deadline) {
    if (ready()) return true;
    if (!process.running()) return ready();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

bool contains(const std::string& text, const std::string& piece) { return text.find(piece) != std::string::npos; }

std::vector<fs::path> files_matching(const fs::path& root, const std::regex& pattern) {
  std::vector<fs::path> found;
  if (!fs::exists(root)) return found;
  for (const auto& entry : fs::recursive_directory_iterator(root))
    if (entry.is_regular_file() && std::regex_match(entry.path().filename().string(), pattern))
      found.push_back(entry.path());
  return found;
}

std::vector<fs::path> temporaries(const fs::path& root) { return files_matching(root, std::regex(".*\\.tmp\\.[0-9]+")); }

// Every file under a final name is complete: each probes file loads.
void expect_only_complete_probes(const fs::path& exper) {
  for (const auto& path : files_matching(exper, std::regex("probes\\.safetensors")))
    EXPECT_NO_THROW(load_probes(path)) << path;
}

void expect_same_bytes(const fs::path& a, const fs::path& b) {
  ASSERT_TRUE(fs::exists(a)) << a;
  ASSERT_TRUE(fs::exists(b)) << b;
  EXPECT_TRUE(read_file(a) == read_file(b)) << a << " and " << b << " differ";
}

std::string kind_probes(const fs::path& exper, const std::string& kind, int epoch) {
  return (exper / (kind + "_epoch_" + std::to_string(epoch)) / (kind + "_probes") / "probes.safetensors").string();
}

}  // namespace

// Data, vocabulary and models shared by every test: made once, in seconds.
class Reliability : public ::testing::Test {
 protected:
  static constexpr int kEpochs = 3;

  // Each test runs in its own process under ctest: the data, models and
  // uninterrupted reference runs are made once (under a lock, for ctest -j)
  // and remade whenever the executables change.
  static void SetUpTestSuite() {
    ::setenv("LAYERPROBE_THREADS", "1", 1);  // one thread: bit-identical reruns, light on shared CPUs
    root_ = fs::path(LAYERPROBE_BINARY_DIR) / "test-scratch" / "reliability";
    test_support::make_shared_fixture(root_, make_fixture);
  }

  static void make_fixture() {
    auto must = [](const std::string& command) {
      auto [code, output] = run(command);
      ASSERT_EQ(code, 0) << command << "\n" << output;
    };
    const std::string synth = tool("probe_tools") + " synth --train-questions 240 --dev-questions 40 --output-dir ";
    must(synth + (root_ / "data").string());
    must(synth + (root_ / "other").string() + " --seed 7");
    must(tool("probe_tools") + " train-vocab --vocab-size 400 --input " + (root_ / "data/train-v2.0.json").string() +
         " " + (root_ / "data/dev-v2.0.json").string() + " --output " + (root_ / "spiece.model").string());
    auto init = [&](const std::string& name, int layers, int hidden, int seed) {
      must(tool("probe_tools") + " init-model --vocab " + (root_ / "spiece.model").string() + " --layers " +
           std::to_string(layers) + " --hidden-size " + std::to_string(hidden) +
           " --embedding-size 16 --heads 2 --intermediate-size 64 --max-positions 128 --seed " + std::to_string(seed) +
           " --output " + (root_ / name).string());
    };
    init("pretrained", 2, 32, 1);
    init("fine_tuned", 2, 32, 2);
    init("deeper", 3, 32, 3);
    init("wider", 2, 48, 4);
    must(probe_train(reference_exper()));
    must(run_squad(reference_finetune()));
  }

  static std::string train_file() { return (root_ / "data/train-v2.0.json").string(); }
  static std::string dev_file() { return (root_ / "data/dev-v2.0.json").string(); }

  static std::string probe_train(const fs::path& exper, const std::string& which = "both", int epochs = kEpochs) {
    return tool("probe_train") + " " + which + " cpu " + std::to_string(epochs) + " --pretrained-model " +
           (root_ / "pretrained").string() + " --fine-tuned-model " + (root_ / "fine_tuned").string() +
           " --train-file " + train_file() + " --max-seq-length 96 --doc-stride 48 --batch-size 4 --output-dir " +
           exper.string();
  }

  static std::string run_squad(const fs::path& out) {
    return tool("run_squad") + " --model_type albert --model_name_or_path " + (root_ / "pretrained").string() +
           " --do_train --do_lower_case --version_2_with_negative --train_file " + train_file() +
           " --per_gpu_train_batch_size 8 --num_train_epochs 2 --learning_rate 1e-3 --max_seq_length 96"
           " --doc_stride 48 --save_steps 6 --logging_steps 1000 --seed 3 --resume --output_dir " +
           out.string();
  }

  // Uninterrupted runs of the same commands.
  static fs::path reference_exper() { return root_ / "reference_exper"; }
  static fs::path reference_finetune() { return root_ / "reference_finetune"; }

  static void expect_same_probes(const fs::path& exper) {
    for (const char* kind : {"pretrained", "fine_tuned"})
      for (int epoch = 1; epoch <= kEpochs; ++epoch)
        expect_same_bytes(kind_probes(exper, kind, epoch), kind_probes(reference_exper(), kind, epoch));
  }

  // A predicted experiment on the pretrained model: one epoch, two layers.
  static fs::path predicted_exper(const std::string& name) {
    fs::path exper = root_ / name;
    fs::remove_all(exper);
    fs::create_directories(exper / "pretrained_epoch_1");
    fs::copy(reference_exper() / "pretrained_epoch_1" / "pretrained_probes", exper / "pretrained_epoch_1" / "pretrained_probes");
    auto [code, output] = run(tool("probe_predict") + " exper " + exper.string() + " cpu --dev-file " + dev_file());
    EXPECT_EQ(code, 0) << output;
    return exper;
  }

  static fs::path root_;
};

fs::path Reliability::root_;

// --- interruption -------------------------------------------------------------------------

TEST_F(Reliability, ProbeTrainKilledAnywhereResumesToTheSameProbes) {
  const fs::path exper = root_ / "killed_exper";
  fs::remove_all(exper);
  const fs::path first = kind_probes(exper, "pretrained", 1);

  // 1. Killed while writing epoch 1 (SIGXFSZ as the temporary file outgrows
  //    the file size limit): a partial temporary, nothing under the final name.
  {
    Limits limits;
    limits.file_size = fs::file_size(kind_probes(reference_exper(), "pretrained", 1)) / 2;
    Process process(probe_train(exper), limits);
    EXPECT_EQ(process.exit_code(), 128 + SIGXFSZ) << process.output();
    EXPECT_FALSE(fs::exists(first));
    ASSERT_EQ(temporaries(exper).size(), 1u) << "expected the partial temporary of epoch 1's probes";
    expect_only_complete_probes(exper);
  }
  const fs::path partial = temporaries(exper).front();
  // 2. Killed as soon as the pretrained probes of epoch 2 appear, likely
  //    before the fine-tuned ones: a resume where the two models are at
  //    different epochs.
  {
    Process process(probe_train(exper));
    ASSERT_TRUE(wait_until(process, [&] { return fs::exists(kind_probes(exper, "pretrained", 2)); })) << process.output();
    process.signal(SIGKILL);
    EXPECT_EQ(process.exit_code(), 128 + SIGKILL) << process.output();
    EXPECT_FALSE(fs::exists(partial)) << "the rerun should have removed the dead run's temporary";
    expect_only_complete_probes(exper);
  }
  // 3. Killed in the middle of epoch 3.
  {
    Process process(probe_train(exper));
    ASSERT_TRUE(wait_until(process, [&] { return fs::exists(kind_probes(exper, "fine_tuned", 2)); })) << process.output();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const bool finished = fs::exists(kind_probes(exper, "fine_tuned", 3));
    process.signal(SIGKILL);
    process.wait();
    if (finished) GTEST_LOG_(INFO) << "epoch 3 finished before the kill; the mid-epoch point was not hit";
    expect_only_complete_probes(exper);
  }
  // 4. The same command, run to the end.
  auto [code, output] = run(probe_train(exper));
  ASSERT_EQ(code, 0) << output;
  expect_same_probes(exper);
  EXPECT_TRUE(temporaries(exper).empty());
}

TEST_F(Reliability, RunSquadKilledAnywhereResumesToTheSameModel) {
  const fs::path out = root_ / "killed_finetune";
  fs::remove_all(out);
  const auto state = [&](int step) { return out / ("checkpoint-" + std::to_string(step)) / "trainer_state.json"; };
  // 1. Killed while writing the first checkpoint's weights.
  {
    Limits limits;
    limits.file_size = fs::file_size(reference_finetune() / "model.safetensors") / 2;
    Process process(run_squad(out), limits);
    EXPECT_EQ(process.exit_code(), 128 + SIGXFSZ) << process.output();
    EXPECT_FALSE(fs::exists(state(6)));
    EXPECT_FALSE(fs::exists(out / "checkpoint-6" / "model.safetensors"));
    EXPECT_FALSE(temporaries(out).empty());
  }
  // 2. Killed right after a checkpoint is complete, and 3. between checkpoints.
  for (int step : {12, 24}) {
    Process process(run_squad(out));
    ASSERT_TRUE(wait_until(process, [&] { return fs::exists(state(step)); })) << process.output();
    if (step == 24) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    process.signal(SIGKILL);
    process.wait();
    EXPECT_TRUE(temporaries(out / "checkpoint-6").empty());
  }
  auto [code, output] = run(run_squad(out));
  ASSERT_EQ(code, 0) << output;
  EXPECT_TRUE(contains(output, "resuming from")) << output;
  expect_same_bytes(out / "model.safetensors", reference_finetune() / "model.safetensors");
  EXPECT_TRUE(temporaries(out).empty());
}

TEST_F(Reliability, SigtermStopsProbeTrainCleanlyAndSaysHowToResume) {
  const fs::path exper = root_ / "sigterm_exper";
  fs::remove_all(exper);
  Process process(probe_train(exper));
  ASSERT_TRUE(wait_until(process, [&] { return fs::exists(kind_probes(exper, "fine_tuned", 1)); })) << process.output();
  process.signal(SIGTERM);
  ASSERT_EQ(process.exit_code(), 130) << process.output();
  for (const std::string& text : {process.output(), read_file(exper / "probe_train.log")}) {
    EXPECT_TRUE(contains(text, "stopped by signal")) << text;
    EXPECT_TRUE(contains(text, "Rerun the same command to resume after epoch")) << text;
  }
  expect_only_complete_probes(exper);
  auto [code, output] = run(probe_train(exper));
  ASSERT_EQ(code, 0) << output;
  EXPECT_TRUE(contains(output, "resuming after epoch")) << output;
  expect_same_probes(exper);
}

TEST_F(Reliability, SigintStopsRunSquadWithACheckpointAndSaysHowToResume) {
  const fs::path out = root_ / "sigint_finetune";
  fs::remove_all(out);
  Process process(run_squad(out));
  ASSERT_TRUE(wait_until(process, [&] { return fs::exists(out / "checkpoint-6" / "trainer_state.json"); }))
      << process.output();
  process.signal(SIGINT);
  ASSERT_EQ(process.exit_code(), 130) << process.output();
  EXPECT_TRUE(contains(process.output(), "stopped by signal")) << process.output();
  EXPECT_TRUE(contains(process.output(), "with --resume to continue from step")) << process.output();
  auto [code, output] = run(run_squad(out));
  ASSERT_EQ(code, 0) << output;
  expect_same_bytes(out / "model.safetensors", reference_finetune() / "model.safetensors");
}

// --- the first SIGTERM ends every long phase promptly ------------------------------------------

namespace {

// "About a second" from SIGTERM to exit; sanitizer builds run several times slower.
#if defined(__SANITIZE_ADDRESS__) || (defined(__has_feature) && __has_feature(address_sanitizer))
constexpr double kStopSeconds = 8.0;
#else
constexpr double kStopSeconds = 2.0;
#endif

// The dev file `copies` times over (question ids made unique): a long phase for every tool.
fs::path big_dev_file(const fs::path& dir, int copies = 4) {
  auto json = nlohmann::json::parse(read_file(test_support::shared_path(test_support::kDevFile)));
  nlohmann::json data = nlohmann::json::array();
  for (int copy = 0; copy < copies; ++copy)
    for (auto article : json["data"]) {
      for (auto& paragraph : article["paragraphs"])
        for (auto& qa : paragraph["qas"]) qa["id"] = qa["id"].get<std::string>() + "_" + std::to_string(copy);
      data.push_back(article);
    }
  json["data"] = data;
  const fs::path path = dir / ("dev-x" + std::to_string(copies) + ".json");
  write_file_atomically(path, json.dump());
  return path;
}

// Sends SIGTERM once `ready` holds, then expects exit 130 with the stop
// message within kStopSeconds.
void expect_prompt_stop(Process& process, const std::function<bool()>& ready) {
  ASSERT_TRUE(wait_until(process, ready, 300)) << process.output();
  ASSERT_TRUE(process.running()) << "finished before the signal: " << process.output();
  const auto sent = Clock::now();
  process.signal(SIGTERM);
  const int code = process.exit_code();
  const double seconds = std::chrono::duration<double>(Clock::now() - sent).count();
  EXPECT_EQ(code, 130) << process.output();
  EXPECT_LE(seconds, kStopSeconds) << process.output();
  EXPECT_TRUE(contains(process.output(), "stopped by signal")) << process.output();
}

}  // namespace

TEST_F(Reliability, SigtermStopsRunSquadEvaluationPromptly) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  const fs::path dir = root_ / "sigterm_eval";
  fs::remove_all(dir);
  fs::create_directories(dir / "model");
  for (const char* name : {"config.json", "model.safetensors"})
    fs::copy_file(test_support::shared_path(std::string("golden/albert-tiny/") + name), dir / "model" / name);
  fs::copy_file(test_support::shared_path(test_support::kSpieceModel), dir / "model" / "spiece.model");
  Process process(tool("run_squad") + " --model_type albert --model_name_or_path " + (dir / "model").string() +
                  " --do_eval --do_lower_case --version_2_with_negative --predict_file " + big_dev_file(dir).string() +
                  " --output_dir " + (dir / "out").string());
  expect_prompt_stop(process, [&] { return contains(process.output_so_far(), "evaluating with batch size"); });
  EXPECT_FALSE(fs::exists(dir / "out" / "predictions.json"));
  EXPECT_TRUE(temporaries(dir).empty());
}

TEST_F(Reliability, SigtermStopsProbePredictsEncoderPassPromptly) {
  const fs::path exper = root_ / "sigterm_predict";
  fs::remove_all(exper);
  fs::create_directories(exper / "pretrained_epoch_1");
  fs::copy(reference_exper() / "pretrained_epoch_1" / "pretrained_probes",
           exper / "pretrained_epoch_1" / "pretrained_probes");
  Process process(tool("probe_predict") + " exper " + exper.string() + " cpu --dev-file " +
                  big_dev_file(root_ / "sigterm_predict").string());
  expect_prompt_stop(process, [&] { return contains(process.output_so_far(), "scoring with"); });
  EXPECT_FALSE(fs::exists(exper / "pretrained_epoch_1" / "pretrained_preds" / "preds_meta.json"));
  EXPECT_TRUE(temporaries(exper).empty());
}

TEST_F(Reliability, SigtermStopsFeaturisationPromptly) {
  const fs::path dir = root_ / "sigterm_features";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path data = big_dev_file(dir, 12);
  Process process(tool("probe_tools") + " features --vocab " + (root_ / "spiece.model").string() + " --data " +
                  data.string() + " --mode eval --threads 1 --output " + (dir / "features.jsonl").string());
  expect_prompt_stop(process, [&] { return contains(process.output_so_far(), "featurising on"); });
  EXPECT_FALSE(fs::exists(dir / "features.jsonl"));
  EXPECT_TRUE(temporaries(dir).empty());
}

TEST_F(Reliability, SigtermStopsProbeEvaluateScoringPromptly) {
  // Sixty layers of predictions over the dev file: seconds of scoring.
  const fs::path exper = root_ / "sigterm_evaluate";
  fs::remove_all(exper);
  const fs::path preds = exper / "pretrained_epoch_1" / "pretrained_preds";
  fs::create_directories(preds);
  const fs::path dev = test_support::shared_path(test_support::kDevFile);
  nlohmann::ordered_json predictions = nlohmann::ordered_json::object();
  const auto gold = nlohmann::json::parse(read_file(dev));
  for (const auto& article : gold["data"])
    for (const auto& paragraph : article["paragraphs"])
      for (const auto& qa : paragraph["qas"]) predictions[qa["id"].get<std::string>()] = "the Normans";
  const int layers = 60;
  for (int layer = 1; layer <= layers; ++layer)
    write_file_atomically(preds / ("pred_layer_" + std::to_string(layer) + ".json"), predictions.dump());
  nlohmann::json meta = {{"dev_file", dev.string()}, {"dev_file_fingerprint", file_fingerprint(dev)},
                         {"layers", layers}, {"kind", "pretrained"}, {"epoch", 1}};
  write_file_atomically(preds / "preds_meta.json", meta.dump());
  Process process(tool("probe_evaluate") + " exper " + exper.string());
  expect_prompt_stop(process, [&] { return contains(process.output_so_far(), "scoring 60 layer(s)"); });
  EXPECT_FALSE(fs::exists(exper / "pretrained_epoch_1" / "results.csv"));
  EXPECT_FALSE(fs::exists(exper / "summary.csv"));
}

TEST_F(Reliability, SigtermStopsTheBenchPromptly) {
  const fs::path dir = root_ / "sigterm_bench";
  fs::remove_all(dir);
  fs::create_directories(dir);
  Process process(tool("probe_tools") + " bench --model " + (root_ / "pretrained").string() + " --data " +
                  big_dev_file(dir).string() + " --features 0 --train-features 0 --max-seq-length 96 --doc-stride 48");
  expect_prompt_stop(process, [&] { return contains(process.output_so_far(), "tokens on average"); });
}

// --- disk full ------------------------------------------------------------------------------

TEST_F(Reliability, FileSizeLimitWhileSavingFailsClearlyAndKeepsThePreviousEpoch) {
  const fs::path exper = root_ / "fsize_exper";
  fs::remove_all(exper);
  auto [first_code, first_output] = run(probe_train(exper, "pretrained", 1));
  ASSERT_EQ(first_code, 0) << first_output;
  const std::string epoch1 = read_file(kind_probes(exper, "pretrained", 1));
  Limits limits;
  limits.file_size = epoch1.size() / 2;
  limits.ignore_sigxfsz = true;  // write() fails with EFBIG, as on a full disk
  auto [code, output] = run(probe_train(exper, "pretrained", 2), limits);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(contains(output, "cannot write (disk full?) '" + kind_probes(exper, "pretrained", 2) + "'")) << output;
  EXPECT_TRUE(read_file(kind_probes(exper, "pretrained", 1)) == epoch1);
  EXPECT_FALSE(fs::exists(kind_probes(exper, "pretrained", 2)));
  EXPECT_TRUE(temporaries(exper).empty());
}

TEST_F(Reliability, FullTmpfsWhileSavingFailsClearlyAndKeepsThePreviousEpoch) {
  const fs::path mount_point = root_ / "small_tmpfs";
  fs::create_directories(mount_point);
  if (::geteuid() != 0 || ::mount("tmpfs", mount_point.c_str(), "tmpfs", 0, "size=1m") != 0)
    GTEST_SKIP() << "needs root and tmpfs mounts; FileSizeLimitWhileSaving covers the same path portably";
  struct Unmount {
    fs::path dir;
    ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
  } unmount{mount_point};
  const fs::path exper = mount_point / "exper";
  auto [first_code, first_output] = run(probe_train(exper, "pretrained", 1));
  ASSERT_EQ(first_code, 0) << first_output;
  const std::string epoch1 = read_file(kind_probes(exper, "pretrained", 1));
  // Fill the file system but for less than one probes file.
  struct statvfs fs_stats {};
  ASSERT_EQ(::statvfs(mount_point.c_str(), &fs_stats), 0);
  const uint64_t free_bytes = static_cast<uint64_t>(fs_stats.f_bavail) * fs_stats.f_frsize;
  {
    std::ofstream filler(mount_point / "filler", std::ios::binary);
    filler << std::string(free_bytes - std::min<uint64_t>(free_bytes, epoch1.size() / 2), 'x');
  }
  auto [code, output] = run(probe_train(exper, "pretrained", 2));
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(contains(output, "cannot write (disk full?) '" + kind_probes(exper, "pretrained", 2) + "'") ||
              contains(output, "cannot create")) << output;
  EXPECT_TRUE(contains(output, "No space left on device")) << output;
  EXPECT_TRUE(read_file(kind_probes(exper, "pretrained", 1)) == epoch1);
  EXPECT_FALSE(fs::exists(kind_probes(exper, "pretrained", 2)));
  EXPECT_TRUE(temporaries(exper).empty());
}

TEST_F(Reliability, FileSizeLimitWhileCheckpointingFailsClearlyAndKeepsTheLastCheckpoint) {
  const fs::path out = root_ / "fsize_finetune";
  fs::remove_all(out);
  fs::create_directories(out);
  fs::copy(reference_finetune() / "checkpoint-6", out / "checkpoint-6");
  Limits limits;
  limits.file_size = fs::file_size(out / "checkpoint-6" / "model.safetensors") / 2;
  limits.ignore_sigxfsz = true;
  auto [code, output] = run(run_squad(out), limits);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(contains(output, "cannot write (disk full?) '" + (out / "checkpoint-12").string())) << output;
  EXPECT_TRUE(read_file(out / "checkpoint-6" / "model.safetensors") ==
              read_file(reference_finetune() / "checkpoint-6" / "model.safetensors"));
  EXPECT_FALSE(fs::exists(out / "checkpoint-12" / "trainer_state.json"));
  EXPECT_TRUE(temporaries(out).empty());
}

// --- mismatched and stray files --------------------------------------------------------------

TEST_F(Reliability, ProbesOfAnotherModelShapeAreRefused) {
  const fs::path probes = reference_exper() / "pretrained_epoch_1" / "pretrained_probes";
  for (const char* model : {"deeper", "wider"}) {
    auto [code, output] = run(tool("probe_predict") + " probes " + probes.string() + " cpu --dev-file " + dev_file() +
                              " --pretrained-model " + (root_ / model).string());
    EXPECT_EQ(code, 1) << output;
    EXPECT_TRUE(contains(output, "have 2 layers of width 32 but model")) << output;
    EXPECT_TRUE(contains(output, std::string(model) == "deeper" ? "has 3 of width 32" : "has 2 of width 48")) << output;
  }
  EXPECT_FALSE(fs::exists(probes.parent_path() / "pretrained_preds"));
}

TEST_F(Reliability, PredictionsAreNotScoredAgainstAnotherDevFile) {
  const fs::path exper = predicted_exper("devmismatch_exper");
  const fs::path preds = exper / "pretrained_epoch_1" / "pretrained_preds";
  // Another dataset altogether.
  auto [code, output] = run(tool("probe_evaluate") + " preds " + preds.string() + " --dev-file " +
                            (root_ / "other/dev-v2.0.json").string());
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(contains(output, "has other content")) << output;
  // The same ids with edited content: a copy of the dev file with one answer changed.
  const fs::path edited = root_ / "edited-dev.json";
  auto dev = nlohmann::json::parse(read_file(dev_file()));
  for (auto& article : dev["data"])
    for (auto& paragraph : article["paragraphs"])
      for (auto& qa : paragraph["qas"])
        if (!qa["answers"].empty()) qa["answers"] = nlohmann::json::array();
  write_file_atomically(edited, dev.dump());
  std::tie(code, output) = run(tool("probe_evaluate") + " preds " + preds.string() + " --dev-file " + edited.string());
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(contains(output, "were made on '" + fs::absolute(dev_file()).lexically_normal().string())) << output;
  // Predictions from before dev files were fingerprinted: the ids give it away.
  auto meta = nlohmann::json::parse(read_file(preds / "preds_meta.json"));
  meta.erase("dev_file_fingerprint");
  write_file_atomically(preds / "preds_meta.json", meta.dump());
  std::tie(code, output) =
      run(tool("probe_evaluate") + " preds " + preds.string() + " --allow-missing --dev-file " + train_file());
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(contains(output, "predicted question ids")) << output;
  EXPECT_TRUE(contains(output, "were made on another dev file")) << output;
  // An identical copy under another name is fine.
  const fs::path copy = root_ / "copy-of-dev.json";
  fs::copy_file(dev_file(), copy, fs::copy_options::overwrite_existing);
  std::tie(code, output) = run(tool("probe_evaluate") + " preds " + preds.string() + " --dev-file " + copy.string());
  EXPECT_EQ(code, 0) << output;
}

TEST_F(Reliability, StrayFilesInAnExperimentAreReportedNeverTabled) {
  const fs::path exper = predicted_exper("stray_exper");
  const fs::path epoch = exper / "pretrained_epoch_1";
  const fs::path preds = epoch / "pretrained_preds";
  // Harmless strays: a dead run's temporary, a note, an unrelated directory.
  write_file_atomically(preds / "pred_layer_1.json.tmp.999999", "{\"partial");
  write_file_atomically(exper / "notes.txt", "x");
  fs::create_directories(exper / "pretrained_epoch_2 (copy)");
  // A prediction file of a layer the probes do not have (an earlier, deeper model).
  fs::copy_file(preds / "pred_layer_1.json", preds / "pred_layer_9.json");
  auto [code, output] = run(tool("probe_evaluate") + " exper " + exper.string());
  ASSERT_EQ(code, 0) << output;
  EXPECT_TRUE(contains(output, "ignoring '" + (preds / "pred_layer_9.json").string() + "'")) << output;
  EXPECT_EQ(read_file(exper / "summary.csv").find(",9,"), std::string::npos) << read_file(exper / "summary.csv");
  std::tie(code, output) = run(tool("probe_predict") + " exper " + exper.string() + " cpu --dev-file " + dev_file());
  ASSERT_EQ(code, 0) << output;
  EXPECT_TRUE(contains(output, "ignoring '" + (exper / "pretrained_epoch_2 (copy)").string() + "'")) << output;

  // A missing layer is an error, not a shorter table.
  fs::remove(preds / "pred_layer_2.json");
  fs::remove(preds / "pred_layer_2.csv");
  std::tie(code, output) = run(tool("probe_evaluate") + " preds " + preds.string());
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(contains(output, "has no pred_layer_2.json or .csv but preds_meta.json says 2 layers")) << output;

  // A second copy of the same epoch would give every layer two rows.
  fs::copy(epoch, exper / "pretrained_epoch_01", fs::copy_options::recursive);
  std::tie(code, output) = run(tool("probe_predict") + " exper " + exper.string() + " cpu --dev-file " + dev_file());
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(contains(output, "are both pretrained epoch 1")) << output;
  std::tie(code, output) = run(tool("probe_evaluate") + " exper " + exper.string());
  EXPECT_NE(code, 0) << output;
  fs::remove_all(exper / "pretrained_epoch_01");

  // Probes of one kind filed under the other.
  const fs::path misfiled = exper / "fine_tuned_epoch_1" / "fine_tuned_probes";
  fs::create_directories(misfiled);
  fs::copy_file(epoch / "pretrained_probes" / "probes.safetensors", misfiled / "probes.safetensors");
  std::tie(code, output) = run(tool("probe_predict") + " exper " + exper.string() + " cpu --dev-file " + dev_file());
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(contains(output, "holds pretrained probes but lies in a fine_tuned_probes directory")) << output;
}

// --- limits -----------------------------------------------------------------------------------

namespace {

nlohmann::json squad_file(nlohmann::json paragraphs) {
  return {{"version", "v2.0"}, {"data", {{{"title", "t"}, {"paragraphs", std::move(paragraphs)}}}}};
}

nlohmann::json squad_question(const std::string& id, const std::string& text, const std::string& answer, size_t start) {
  nlohmann::json answers = nlohmann::json::array();
  if (!answer.empty()) answers.push_back({{"text", answer}, {"answer_start", start}});
  return {{"id", id}, {"question", text}, {"answers", answers}, {"is_impossible", answer.empty()}};
}

// "w0 w1 w2 ..." up to `bytes` characters.
std::string words(size_t bytes) {
  std::string text;
  for (size_t i = 0; text.size() < bytes; ++i) text += "w" + std::to_string(i % 9973) + " ";
  return text;
}

size_t lines(const std::string& text) { return static_cast<size_t>(std::count(text.begin(), text.end(), '\n')); }

}  // namespace

TEST_F(Reliability, OneMegabyteContextTakesTimeAndMemoryInProportion) {
  const fs::path dir = test_support::scratch_dir("reliability_big_context");
  const std::string context = words(1 << 20);
  write_file_atomically(dir / "big.json",
                        squad_file({{{"context", context}, {"qas", {squad_question("q1", "which word?", "w5", 10)}}}}).dump());
  // Linear work is a few seconds on one thread; the deadline catches
  // anything quadratic in the context (a 4x longer context, 16x the time).
  Process process(tool("probe_tools") + " features --vocab " + (root_ / "spiece.model").string() + " --data " +
                  (dir / "big.json").string() + " --mode eval --max-seq-length 128 --doc-stride 64 --output " +
                  (dir / "features.jsonl").string());
  wait_until(process, [] { return false; }, 15.0);
  const bool finished = !process.running();
  if (!finished) process.signal(SIGKILL);
  ASSERT_TRUE(finished) << "featurising one 1 MB context took over 15 s";
  ASSERT_EQ(process.exit_code(), 0) << process.output();
  // ~175k words of ~5 pieces, windows of ~120 tokens every 64: over 10k features.
  EXPECT_GT(lines(read_file(dir / "features.jsonl")), 10000u);
  EXPECT_LT(process.max_rss_kib(), 1L << 20) << "peak memory over 1 GiB for a 1 MB context";
}

TEST_F(Reliability, TenThousandTokenQuestionIsTruncatedToMaxQueryLength) {
  const fs::path dir = test_support::scratch_dir("reliability_long_question");
  const std::string context = "Ada was born in Paris in 1815.";
  write_file_atomically(dir / "long.json",
                        squad_file({{{"context", context},
                                     {"qas", {squad_question("q1", words(60000) + "?", "Paris", 16)}}}})
                            .dump());
  Process process(tool("probe_tools") + " features --vocab " + (root_ / "spiece.model").string() + " --data " +
                  (dir / "long.json").string() + " --mode eval --max-seq-length 128 --max-query-length 64 --output " +
                  (dir / "features.jsonl").string());
  ASSERT_EQ(process.exit_code(), 0) << process.output();
  const std::string text = read_file(dir / "features.jsonl");
  ASSERT_EQ(lines(text), 1u) << text.substr(0, 500);
  const auto feature = nlohmann::json::parse(text.substr(0, text.find('\n')));
  EXPECT_LE(feature.at("input_ids").size(), 128u);
}

TEST_F(Reliability, HundredThousandQuestionsEvaluateInBoundedTime) {
  const fs::path dir = test_support::scratch_dir("reliability_many_questions");
  nlohmann::json paragraphs = nlohmann::json::array();
  nlohmann::json predictions = nlohmann::json::object();
  const std::string context = "Ada was born in Paris in 1815.";
  for (int p = 0; p < 10000; ++p) {
    nlohmann::json qas = nlohmann::json::array();
    for (int q = 0; q < 10; ++q) {
      const std::string id = "q" + std::to_string(p * 10 + q);
      qas.push_back(squad_question(id, "Where was Ada born?", q % 2 ? "Paris" : "", 16));
      predictions[id] = q % 3 ? "Paris" : "";
    }
    paragraphs.push_back({{"context", context}, {"qas", qas}});
  }
  write_file_atomically(dir / "dev.json", squad_file(paragraphs).dump());
  write_file_atomically(dir / "pred.json", predictions.dump());
  const auto start = Clock::now();
  Process process(tool("probe_evaluate") + " file " + (dir / "dev.json").string() + " " + (dir / "pred.json").string());
  ASSERT_EQ(process.exit_code(), 0) << process.output();
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 30.0);
  const auto result = nlohmann::json::parse(process.output().substr(process.output().find('{')));
  EXPECT_EQ(result.at("total"), 100000);
}

TEST_F(Reliability, CheckpointHeaderClaimingTwoGigabytesIsRefusedWithoutAllocating) {
  const fs::path model = root_ / "huge_header";
  fs::remove_all(model);
  fs::create_directories(model);
  fs::copy_file(root_ / "pretrained" / "config.json", model / "config.json");
  fs::copy_file(root_ / "pretrained" / "spiece.model", model / "spiece.model");
  auto write_claim = [&](const std::string& header, uint64_t claimed_length) {
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((claimed_length >> (8 * i)) & 0xff);
    write_file_atomically(model / "model.safetensors", bytes + header + std::string(64, '\0'));
  };
  const std::string predict = tool("probe_predict") + " probes " +
                              (reference_exper() / "pretrained_epoch_1" / "pretrained_probes").string() +
                              " cpu --dev-file " + dev_file() + " --pretrained-model " + model.string();
  // The header length itself claims 2 GB.
  write_claim("{}", 2'000'000'000ULL);
  Process length_claim(predict);
  EXPECT_EQ(length_claim.exit_code(), 1) << length_claim.output();
  EXPECT_TRUE(contains(length_claim.output(), "header length 2000000000 runs past the end of the file"))
      << length_claim.output();
  EXPECT_LT(length_claim.max_rss_kib(), 1L << 20);
  // A well-formed header whose one tensor claims 2 GB of data.
  const std::string header =
      R"({"albert.embeddings.word_embeddings.weight":{"dtype":"F32","shape":[500000000],"data_offsets":[0,2000000000]}})";
  write_claim(header, header.size());
  Process tensor_claim(predict);
  EXPECT_EQ(tensor_claim.exit_code(), 1) << tensor_claim.output();
  EXPECT_TRUE(contains(tensor_claim.output(), "run past the end of the data area")) << tensor_claim.output();
  EXPECT_LT(tensor_claim.max_rss_kib(), 1L << 20);
}

// --- hostile inputs, round 3 (issue #29) --------------------------------------------------------

namespace {

// A command's wall time in seconds; its result.
struct Timed {
  int code = 0;
  std::string output;
  double seconds = 0;
  long max_rss_kib = 0;
};

Timed timed(const std::string& command) {
  const auto start = Clock::now();
  Process process(command);
  Timed result;
  result.code = process.exit_code();
  result.output = process.output();
  result.max_rss_kib = process.max_rss_kib();
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

// Neither a C++ backtrace nor an uncaught exception reaches the user.
void expect_clean_message(const std::string& output) {
  for (const char* trace : {"frame #", "Exception raised from", "terminate called", "(most recent call first)"})
    EXPECT_FALSE(contains(output, trace)) << output;
}

// Rewrites one tensor of a safetensors file in place (metadata kept).
void edit_tensor(const fs::path& file, const std::string& name, const std::function<torch::Tensor(torch::Tensor)>& edit) {
  auto stored = read_safetensors(file);
  ASSERT_TRUE(stored.tensors.count(name)) << name << " not in " << file;
  stored.tensors[name] = edit(stored.tensors[name].clone());
  write_safetensors(file, stored.tensors, stored.metadata);
}

std::string first_key_containing(const fs::path& file, const std::string& piece) {
  for (const auto& [name, tensor] : read_safetensors(file).tensors)
    if (contains(name, piece)) return name;
  return "";
}

// A WordPiece vocabulary for the synthetic data's words (enough to load a BERT tokenizer).
void write_wordpiece_vocab(const fs::path& path) {
  std::string vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
  for (char c = 'a'; c <= 'z'; ++c) vocab += std::string(1, c) + "\n##" + std::string(1, c) + "\n";
  for (char c = '0'; c <= '9'; ++c) vocab += std::string(1, c) + "\n";
  vocab += ".\n,\n?\n";
  write_file_atomically(path, vocab);
}

}  // namespace

class ReliabilityRound3 : public Reliability {
 protected:
  // A copy of one of the fixture's models, to be damaged.
  static fs::path copy_model(const std::string& from, const std::string& name) {
    const fs::path dir = root_ / "round3" / name;
    fs::remove_all(dir);
    fs::create_directories(dir.parent_path());
    fs::copy(root_ / from, dir, fs::copy_options::recursive);
    return dir;
  }

  static std::string probe_train_on(const fs::path& model, const fs::path& exper, int epochs = 1,
                                    const std::string& extra = "") {
    return tool("probe_train") + " pretrained cpu " + std::to_string(epochs) + " --pretrained-model " + model.string() +
           " --train-file " + train_file() + " --max-seq-length 96 --doc-stride 48 --batch-size 4 --output-dir " +
           exper.string() + extra;
  }

  static std::string run_squad_eval(const fs::path& model, const fs::path& out, const std::string& extra = "") {
    return tool("run_squad") + " --model_type albert --model_name_or_path " + model.string() +
           " --do_eval --do_lower_case --version_2_with_negative --predict_file " + dev_file() +
           " --max_seq_length 96 --doc_stride 48 --output_dir " + out.string() + extra;
  }

  // A random BERT of the fixture models' shape (2 layers of width 32), with a WordPiece vocabulary.
  static fs::path bert_model(const std::string& name, int layers = 2) {
    const fs::path dir = root_ / "round3" / name;
    fs::remove_all(dir);
    const fs::path vocab = root_ / "round3" / "vocab.txt";
    write_wordpiece_vocab(vocab);
    auto [code, output] = run(tool("probe_tools") + " init-model --like bert-base-uncased --vocab " + vocab.string() +
                              " --layers " + std::to_string(layers) +
                              " --hidden-size 32 --heads 2 --intermediate-size 64 --max-positions 128 --output " +
                              dir.string());
    EXPECT_EQ(code, 0) << output;
    return dir;
  }
};

TEST_F(ReliabilityRound3, ThreadCountsAreBoundedAtParseTime) {
  // --threads 100000 held 10,000 threads for minutes; 2000 took 66 s to honour SIGTERM; -3 meant all cores.
  const fs::path exper = root_ / "round3" / "threads";
  for (const std::string& threads : {"100000", "2000", "-3"}) {
    const Timed result = timed(probe_train(exper) + " --threads " + threads);
    EXPECT_EQ(result.code, 2) << threads << ": " << result.output;
    EXPECT_TRUE(contains(result.output, "--threads")) << result.output;
    EXPECT_LT(result.seconds, 10.0) << threads;
  }
  EXPECT_FALSE(fs::exists(exper));
  for (const std::string& command :
       {tool("run_squad") + " --model_type albert --model_name_or_path " + (root_ / "pretrained").string() +
            " --do_eval --version_2_with_negative --output_dir " + exper.string() + " --threads 100000",
        tool("probe_tools") + " features --vocab " + (root_ / "spiece.model").string() + " --data " + dev_file() +
            " --mode eval --threads -1 --output " + (exper / "f.jsonl").string()}) {
    const Timed result = timed(command);
    EXPECT_EQ(result.code, 2) << command << "\n" << result.output;
  }
  // --nproc starts whole processes: at most one per available core (at least 8).
  const Timed ranks = timed(probe_train(exper) + " --nproc 100000");
  EXPECT_EQ(ranks.code, 2) << ranks.output;
  EXPECT_TRUE(contains(ranks.output, "--nproc")) << ranks.output;
  const Timed env = timed("env LAYERPROBE_THREADS=100000 " + probe_train(exper));
  EXPECT_EQ(env.code, 2) << env.output;
  EXPECT_TRUE(contains(env.output, "LAYERPROBE_THREADS='100000' is not a thread count")) << env.output;
  EXPECT_FALSE(fs::exists(exper));
}

TEST_F(ReliabilityRound3, BootstrapResamplesAreBoundedAtParseTime) {
  // 2e9 resamples grew to 7.7 GB in 60 s; a count past INT64_MAX was read as INT64_MAX.
  const fs::path exper = predicted_exper("round3_bootstrap");
  for (const std::string& count : {"2000000000", "99999999999999999999"}) {
    const Timed result = timed(tool("probe_evaluate") + " exper " + exper.string() + " --bootstrap " + count);
    EXPECT_EQ(result.code, 2) << count << ": " << result.output;
    EXPECT_TRUE(contains(result.output, "--bootstrap")) << result.output;
    EXPECT_LT(result.seconds, 10.0);
    EXPECT_LT(result.max_rss_kib, 1L << 20);
  }
  EXPECT_FALSE(fs::exists(exper / "summary.csv"));
  const Timed ok = timed(tool("probe_evaluate") + " exper " + exper.string() + " --bootstrap 200");
  EXPECT_EQ(ok.code, 0) << ok.output;
}

TEST_F(ReliabilityRound3, InitModelSizesAreCheckedUpFront) {
  // --layers 1000000 grew to 5.3 GB; --vocab-size 2e9 and --hidden-size 2^20 ended in an allocator error
  // with a 25-frame stack trace.
  const std::string init = tool("probe_tools") + " init-model --like bert-base-uncased --output " +
                           (root_ / "round3" / "huge").string();
  const std::string too_big = " --hidden-size 65536 --heads 64 --intermediate-size 1048576 --layers 1000";
  for (const std::string& sizes : {std::string(" --layers 1000000"), std::string(" --vocab-size 2000000000"), std::string(" --hidden-size 1048576"),
                                   // every size allowed, their product far beyond memory
                                   too_big}) {
    const Timed result = timed(init + sizes);
    EXPECT_EQ(result.code, 2) << sizes << ": " << result.output;
    expect_clean_message(result.output);
    EXPECT_LT(result.seconds, 10.0) << sizes;
    EXPECT_LT(result.max_rss_kib, 1L << 20) << sizes;
    if (sizes == too_big) EXPECT_TRUE(contains(result.output, "GiB of memory are available")) << result.output;
  }
  EXPECT_FALSE(fs::exists(root_ / "round3" / "huge" / "model.safetensors"));
}

TEST_F(ReliabilityRound3, NonFiniteWeightsAreNamedWhereTheyAreLoaded) {
  // One NaN in a dense weight: probe_train saved null losses and later resumed from them; probe_predict
  // and run_squad answered "The" everywhere with exit 0.
  const fs::path model = copy_model("pretrained", "nan_model");
  const std::string tensor = first_key_containing(model / "model.safetensors", "ffn.weight");
  ASSERT_FALSE(tensor.empty());
  edit_tensor(model / "model.safetensors", tensor, [](torch::Tensor t) {
    t.view({-1})[5] = std::numeric_limits<float>::quiet_NaN();
    return t;
  });
  const fs::path exper = root_ / "round3" / "nan_exper";
  fs::remove_all(exper);
  auto expect_named = [&](const Timed& result) {
    EXPECT_EQ(result.code, 1) << result.output;
    EXPECT_TRUE(contains(result.output, "tensor '" + tensor + "' holds 1 non-finite value")) << result.output;
    EXPECT_TRUE(contains(result.output, (model / "model.safetensors").string())) << result.output;
    expect_clean_message(result.output);
  };
  expect_named(timed(probe_train_on(model, exper)));
  EXPECT_TRUE(files_matching(exper, std::regex("probes\\.safetensors")).empty());
  expect_named(timed(tool("probe_predict") + " probes " +
                     (reference_exper() / "pretrained_epoch_1" / "pretrained_probes").string() + " cpu --dev-file " +
                     dev_file() + " --pretrained-model " + model.string()));
  expect_named(timed(run_squad_eval(model, root_ / "round3" / "nan_eval")));
  EXPECT_FALSE(fs::exists(root_ / "round3" / "nan_eval" / "predictions.json"));

  // A NaN in a probe's weight: probe_predict named nothing and exited 0.
  const fs::path probes = root_ / "round3" / "nan_probes" / "pretrained_epoch_1" / "pretrained_probes";
  fs::remove_all(probes.parent_path().parent_path());
  fs::create_directories(probes.parent_path());
  fs::copy(reference_exper() / "pretrained_epoch_1" / "pretrained_probes", probes);
  edit_tensor(probes / "probes.safetensors", "weight", [](torch::Tensor t) {
    t[1][0][3] = std::numeric_limits<float>::infinity();
    return t;
  });
  Timed predicted = timed(tool("probe_predict") + " probes " + probes.string() + " cpu --dev-file " + dev_file());
  EXPECT_EQ(predicted.code, 1) << predicted.output;
  EXPECT_TRUE(contains(predicted.output, "probes file '" + (probes / "probes.safetensors").string() +
                                             "': tensor 'weight' holds 1 non-finite value")) << predicted.output;
  EXPECT_TRUE(contains(predicted.output, "inf at [1, 0, 3]")) << predicted.output;
  EXPECT_FALSE(fs::exists(probes.parent_path() / "pretrained_preds"));
  // ... and a run that would resume from that epoch refuses to, saying how to go on.
  const Timed resumed = timed(probe_train_on(root_ / "pretrained", probes.parent_path().parent_path(), 2));
  EXPECT_EQ(resumed.code, 1) << resumed.output;
  EXPECT_TRUE(contains(resumed.output, "pass --overwrite")) << resumed.output;
  EXPECT_FALSE(fs::exists(probes.parent_path().parent_path() / "pretrained_epoch_2"));
}

TEST_F(ReliabilityRound3, ProbesOfAnotherFamilyAreRefused) {
  // ALBERT probes on a BERT encoder of the same depth and width were applied (only layers and width compared).
  const fs::path bert = bert_model("bert_same_shape");
  const fs::path probes = reference_exper() / "pretrained_epoch_1" / "pretrained_probes";
  const Timed result = timed(tool("probe_predict") + " probes " + probes.string() + " cpu --dev-file " + dev_file() +
                             " --pretrained-model " + bert.string());
  EXPECT_EQ(result.code, 1) << result.output;
  EXPECT_TRUE(contains(result.output, "were trained on a albert (layers 2, hidden 32")) << result.output;
  EXPECT_TRUE(contains(result.output, "is a bert (layers 2, hidden 32")) << result.output;
  EXPECT_FALSE(fs::exists(probes.parent_path() / "pretrained_preds"));
}

TEST_F(ReliabilityRound3, RunSquadEpochsAndDecodingOptionsAreCheckedAtParseTime) {
  // nan, inf and 1e300 epochs ran 0 steps ("-9223372036854775808 epochs") and saved the untouched model;
  // so did 1e-9. --max_answer_length 0 failed in the decoder after the encoder pass.
  const fs::path out = root_ / "round3" / "epochs";
  fs::remove_all(out);
  const std::string train = tool("run_squad") + " --model_type albert --model_name_or_path " +
                            (root_ / "pretrained").string() + " --do_train --do_lower_case --version_2_with_negative "
                            "--train_file " + train_file() + " --max_seq_length 96 --doc_stride 48 --output_dir " +
                            out.string();
  for (const std::string& flag : {" --num_train_epochs nan", " --num_train_epochs inf", " --num_train_epochs 1e300",
                                  " --num_train_epochs 1e-9", " --max_answer_length 0", " --save_steps -5"}) {
    const Timed result = timed(train + flag);
    EXPECT_EQ(result.code, 2) << flag << ": " << result.output;
    EXPECT_TRUE(contains(result.output, flag.substr(1, flag.find(' ', 1) - 1))) << result.output;
    if (contains(flag, "1e-9")) EXPECT_TRUE(contains(result.output, "= 0 epochs")) << result.output;
    EXPECT_LT(result.seconds, 10.0) << flag;
  }
  EXPECT_FALSE(fs::exists(out / "model.safetensors"));
  const Timed predict = timed(tool("probe_predict") + " probes " +
                              (reference_exper() / "pretrained_epoch_1" / "pretrained_probes").string() +
                              " cpu --max-answer-length 0 --dev-file " + dev_file());
  EXPECT_EQ(predict.code, 2) << predict.output;
  EXPECT_TRUE(contains(predict.output, "--max-answer-length")) << predict.output;
  EXPECT_LT(predict.seconds, 10.0);
}

TEST_F(ReliabilityRound3, SeedsAreValidatedAtParseTime) {
  // --seeds 1,-2 made seed_18446744073709551614/; --seed -1 and 2^64 both became 2^64 - 1; --seeds "" made seed_0.
  const fs::path exper = root_ / "round3" / "seeds";
  fs::remove_all(exper);
  for (const std::string& flag : {" --seeds 1,-2", " --seed -1", " --seed 18446744073709551616", " --seeds ''",
                                  " --seeds 3,1,3", " --seed 010"}) {
    const Timed result = timed(probe_train(exper) + flag);
    EXPECT_EQ(result.code, 2) << flag << ": " << result.output;
    EXPECT_LT(result.seconds, 10.0) << flag;
  }
  EXPECT_FALSE(fs::exists(exper));
  const Timed top = timed(probe_train(exper, "pretrained", 1) + " --seeds 18446744073709551615 --max-train-features 8");
  EXPECT_EQ(top.code, 0) << top.output;
  EXPECT_TRUE(fs::exists(exper / "pretrained_epoch_1" / "pretrained_probes" / "seed_18446744073709551615"));
}

TEST_F(ReliabilityRound3, RunSquadResumeChecksTheTrainerState) {
  // global_step 10^12 or next_batch 10^6 in trainer_state.json gave a finished-looking run with an
  // earlier checkpoint's weights.
  const fs::path out = root_ / "round3" / "resume";
  const fs::path state = out / "checkpoint-6" / "trainer_state.json";
  for (const auto& [key, value] : std::vector<std::pair<std::string, int64_t>>{
           {"global_step", 1000000000000}, {"next_batch", 1000000}, {"epoch", 5}, {"global_step", 12}}) {
    fs::remove_all(out);
    fs::create_directories(out);
    fs::copy(reference_finetune() / "checkpoint-6", out / "checkpoint-6");
    auto json = nlohmann::json::parse(read_file(state));
    json[key] = value;
    write_file_atomically(state, json.dump(2));
    const Timed result = timed(run_squad(out));
    EXPECT_EQ(result.code, 1) << key << "=" << value << ": " << result.output;
    EXPECT_TRUE(contains(result.output, state.string())) << result.output;
    EXPECT_TRUE(contains(result.output, "delete")) << result.output;
    EXPECT_FALSE(fs::exists(out / "model.safetensors")) << key;
  }
}

TEST_F(ReliabilityRound3, ProbeTrainRefusesToResumeOntoAChangedTrainingFile) {
  // 21 -> 1494 questions in the training file: the rerun resumed without a word.
  const fs::path dir = root_ / "round3" / "changed_train";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path train = dir / "train.json";
  fs::copy_file(train_file(), train);
  const auto command = [&](int epochs) {
    return tool("probe_train") + " pretrained cpu " + std::to_string(epochs) + " --pretrained-model " +
           (root_ / "pretrained").string() + " --train-file " + train.string() +
           " --max-seq-length 96 --doc-stride 48 --batch-size 4 --max-train-features 16 --output-dir " +
           (dir / "exper").string();
  };
  auto [first_code, first_output] = run(command(1));
  ASSERT_EQ(first_code, 0) << first_output;
  fs::copy_file(root_ / "other" / "train-v2.0.json", train, fs::copy_options::overwrite_existing);
  const Timed result = timed(command(2));
  EXPECT_EQ(result.code, 1) << result.output;
  EXPECT_TRUE(contains(result.output, "'" + train.string() + "' now has other content")) << result.output;
  EXPECT_FALSE(fs::exists(dir / "exper" / "pretrained_epoch_2"));
}

TEST_F(ReliabilityRound3, ProbeTrainRefusesToResumeAcrossEncoderPrecisions) {
  // Probes trained on int8 hidden states resumed on fp32 ones (or back) would mix two encoders: the
  // precision is one of the recorded training options, as bf16's is.
  if (!cpu_has_int8_dot()) GTEST_SKIP() << "this CPU has no 8-bit dot products: --precision int8 is refused";
  const fs::path exper = root_ / "round3" / "precision_exper";
  fs::remove_all(exper);
  const std::string small = " --max-train-features 16";
  auto [first_code, first_output] = run(probe_train_on(root_ / "pretrained", exper, 1, small + " --precision int8"));
  ASSERT_EQ(first_code, 0) << first_output;
  const Timed fp32 = timed(probe_train_on(root_ / "pretrained", exper, 2, small));
  EXPECT_EQ(fp32.code, 1) << fp32.output;
  EXPECT_TRUE(contains(fp32.output, "was trained with other settings")) << fp32.output;
  EXPECT_TRUE(contains(fp32.output, "\"precision\":\"int8\"")) << fp32.output;
  EXPECT_FALSE(fs::exists(exper / "pretrained_epoch_2"));
  // The same precision resumes.
  const Timed int8 = timed(probe_train_on(root_ / "pretrained", exper, 2, small + " --precision int8"));
  EXPECT_EQ(int8.code, 0) << int8.output;
  EXPECT_TRUE(contains(int8.output, "resuming after epoch 1")) << int8.output;
  EXPECT_TRUE(fs::exists(exper / "pretrained_epoch_2"));
}

TEST_F(ReliabilityRound3, ConfigAndCheckpointMustAgreeOnTheLayers) {
  // A config.json with fewer layers than its checkpoint (or num_hidden_layers given twice) probed the
  // first layers and said so at debug level only.
  const fs::path bert = bert_model("bert_three_layers", 3);
  auto config = nlohmann::json::parse(read_file(bert / "config.json"));
  config["num_hidden_layers"] = 2;
  write_file_atomically(bert / "config.json", config.dump(2));
  const fs::path exper = root_ / "round3" / "layers_exper";
  fs::remove_all(exper);
  Timed result = timed(probe_train_on(bert, exper));
  EXPECT_EQ(result.code, 1) << result.output;
  EXPECT_TRUE(contains(result.output, "belong to layers the model's config.json does not have (first 'bert.encoder.layer.2."))
      << result.output;
  // ALBERT's layers share weights: its groups are what the checkpoint holds.
  const fs::path albert = root_ / "round3" / "albert_two_groups";
  fs::remove_all(albert);
  ASSERT_EQ(run(tool("probe_tools") + " init-model --vocab " + (root_ / "spiece.model").string() +
                " --layers 2 --groups 2 --hidden-size 32 --embedding-size 16 --heads 2 --intermediate-size 64"
                " --max-positions 128 --output " + albert.string()).first, 0);
  config = nlohmann::json::parse(read_file(albert / "config.json"));
  config["num_hidden_groups"] = 1;
  write_file_atomically(albert / "config.json", config.dump(2));
  result = timed(probe_train_on(albert, exper));
  EXPECT_EQ(result.code, 1) << result.output;
  EXPECT_TRUE(contains(result.output, "albert_layer_groups.1.")) << result.output;

  // A key given twice, a syntax error and a NaN literal: each named with its place.
  const fs::path model = copy_model("pretrained", "bad_config");
  const std::string text = read_file(root_ / "pretrained" / "config.json");
  const auto expect_config_error = [&](const std::string& content, const std::string& message) {
    write_file_atomically(model / "config.json", content);
    const Timed bad = timed(probe_train_on(model, exper));
    EXPECT_EQ(bad.code, 1) << bad.output;
    EXPECT_TRUE(contains(bad.output, (model / "config.json").string() + ": " + message)) << bad.output;
  };
  expect_config_error("{\"num_hidden_layers\": 1,\n" + text.substr(text.find('{') + 1),
                      "key 'num_hidden_layers' appears twice in the top-level object");
  expect_config_error("{\n  \"hidden_size\": 32,\n  \"vocab_size\" 400\n}", "not valid JSON at line 3, column ");
  expect_config_error("{\n  \"hidden_size\": NaN\n}", "not valid JSON at line 2, column 18");
  EXPECT_FALSE(fs::exists(exper / "pretrained_epoch_1"));
}

TEST_F(ReliabilityRound3, IncompletePredictionSetsAreRefused) {
  // After a disk-full failure left pred_layer_1.* of a multi-layer set, probe_evaluate scored layer 1, exit 0.
  const fs::path exper = predicted_exper("round3_incomplete");
  const fs::path preds = exper / "pretrained_epoch_1" / "pretrained_preds";
  fs::remove(preds / "preds_meta.json");  // probe_predict writes it last
  for (const char* extension : {".json", ".csv"}) fs::remove(preds / (std::string("pred_layer_2") + extension));
  Timed result = timed(tool("probe_evaluate") + " exper " + exper.string() + " --dev-file " + dev_file());
  EXPECT_EQ(result.code, 1) << result.output;
  EXPECT_TRUE(contains(result.output, "has no preds_meta.json")) << result.output;
  EXPECT_TRUE(contains(result.output, "some of the 2 layers")) << result.output;
  EXPECT_FALSE(fs::exists(exper / "summary.csv"));
  result = timed(tool("probe_evaluate") + " exper " + exper.string() + " --dev-file " + dev_file() + " --allow-incomplete");
  EXPECT_EQ(result.code, 0) << result.output;
  EXPECT_TRUE(contains(result.output, "(--allow-incomplete)")) << result.output;
  // A rerun of probe_predict that stops part-way leaves no preds_meta.json from the earlier run behind.
  result = timed(tool("probe_predict") + " exper " + exper.string() + " cpu --dev-file " + dev_file());
  ASSERT_EQ(result.code, 0) << result.output;
  ASSERT_TRUE(fs::exists(preds / "preds_meta.json"));
  Limits limits;
  limits.file_size = 100;  // the first prediction file fails
  limits.ignore_sigxfsz = true;
  result.code = run(tool("probe_predict") + " exper " + exper.string() + " cpu --dev-file " + dev_file(), limits).first;
  EXPECT_EQ(result.code, 1);
  EXPECT_FALSE(fs::exists(preds / "preds_meta.json"));
}

TEST_F(ReliabilityRound3, MessagesNameTheFileAndTheCause) {
  // Token ids beyond the model's vocabulary: "index out of range in self" and a stack trace.
  const fs::path small_vocab = copy_model("pretrained", "small_vocab");
  auto config = nlohmann::json::parse(read_file(small_vocab / "config.json"));
  config["vocab_size"] = 100;
  write_file_atomically(small_vocab / "config.json", config.dump(2));
  const std::string embeddings = first_key_containing(small_vocab / "model.safetensors", "word_embeddings");
  edit_tensor(small_vocab / "model.safetensors", embeddings, [](torch::Tensor t) { return t.slice(0, 0, 100).clone(); });
  const fs::path exper = root_ / "round3" / "messages";
  fs::remove_all(exper);
  for (const std::string& command : {probe_train_on(small_vocab, exper),
                                     tool("run_squad") + " --model_type albert --model_name_or_path " +
                                         small_vocab.string() + " --do_train --do_lower_case --version_2_with_negative"
                                         " --train_file " + train_file() + " --max_seq_length 96 --doc_stride 48"
                                         " --output_dir " + (exper / "finetune").string()}) {
    const Timed result = timed(command);
    EXPECT_EQ(result.code, 1) << result.output;
    EXPECT_TRUE(std::regex_search(result.output, std::regex("token id [0-9]+ is outside the model's vocabulary "
                                                            "\\(vocab_size 100 in [^)]*config.json\\)")))
        << result.output;
    expect_clean_message(result.output);
  }

  // A probes weight of the wrong shape blamed the optimiser state and named no file.
  const fs::path probes = exper / "pretrained_epoch_1" / "pretrained_probes";
  fs::create_directories(probes.parent_path());
  fs::copy(reference_exper() / "pretrained_epoch_1" / "pretrained_probes", probes);
  edit_tensor(probes / "probes.safetensors", "weight", [](torch::Tensor t) { return t.slice(2, 0, 31).clone(); });
  Timed result = timed(tool("probe_predict") + " probes " + probes.string() + " cpu --dev-file " + dev_file());
  EXPECT_EQ(result.code, 1) << result.output;
  EXPECT_TRUE(contains(result.output, "probes file '" + (probes / "probes.safetensors").string() +
                                          "': tensor 'weight' has shape [2, 2, 31], expected [2, 2, 32]"))
      << result.output;
  // An unknown probe kind in the metadata: exit 2 and no file.
  fs::copy_file(reference_exper() / "pretrained_epoch_1" / "pretrained_probes" / "probes.safetensors",
                probes / "probes.safetensors", fs::copy_options::overwrite_existing);
  auto stored = read_safetensors(probes / "probes.safetensors");
  stored.metadata["kind"] = "mystery";
  write_safetensors(probes / "probes.safetensors", stored.tensors, stored.metadata);
  result = timed(tool("probe_predict") + " probes " + probes.string() + " cpu --dev-file " + dev_file());
  EXPECT_EQ(result.code, 1) << result.output;
  EXPECT_TRUE(contains(result.output, "probes file '" + (probes / "probes.safetensors").string() +
                                          "': unknown model kind 'mystery'")) << result.output;

  // encode with a [1, 0] input: a raw reshape error.
  const fs::path inputs = exper / "empty_rows.safetensors";
  write_safetensors(inputs, {{"input_ids", torch::zeros({1, 0}, torch::kInt64)},
                             {"attention_mask", torch::zeros({1, 0}, torch::kInt64)}});
  result = timed(tool("probe_tools") + " encode --model " + (root_ / "pretrained").string() + " --inputs " +
                 inputs.string() + " --output " + (exper / "out.safetensors").string());
  EXPECT_EQ(result.code, 1) << result.output;
  EXPECT_TRUE(contains(result.output, "rows of no tokens")) << result.output;
  expect_clean_message(result.output);
}

TEST_F(ReliabilityRound3, AReadOnlyOutputIsReportedWithTheSystemsReason) {
  // A read-only output file system was reported as "No such file or directory".
  const fs::path mount_point = root_ / "round3" / "read_only";
  fs::create_directories(mount_point);
  struct Restore {
    fs::path dir;
    bool mounted = false;
    ~Restore() {
      if (mounted) ::umount2(dir.c_str(), MNT_DETACH);
      fs::permissions(dir, fs::perms::owner_all, fs::perm_options::add);
    }
  } restore{mount_point};
  std::string reason;
  if (::geteuid() == 0) {
    ASSERT_EQ(::mount("tmpfs", mount_point.c_str(), "tmpfs", MS_RDONLY, "size=1m"), 0) << std::strerror(errno);
    restore.mounted = true;
    reason = "Read-only file system";
  } else {
    fs::permissions(mount_point, fs::perms::owner_read | fs::perms::owner_exec, fs::perm_options::replace);
    reason = "Permission denied";
  }
  for (const std::string& command :
       {probe_train_on(root_ / "pretrained", mount_point / "exper"),
        run_squad_eval(root_ / "pretrained", mount_point / "eval"),
        tool("probe_tools") + " synth --train-questions 10 --dev-questions 10 --output-dir " + (mount_point / "data").string()}) {
    const Timed result = timed(command);
    EXPECT_EQ(result.code, 1) << command << "\n" << result.output;
    EXPECT_TRUE(contains(result.output, reason)) << result.output;
    EXPECT_FALSE(contains(result.output, "No such file or directory")) << result.output;
  }
}

TEST_F(ReliabilityRound3, BatchesBeyondTheAvailableMemoryAreRefusedBeforeEncoding) {
  // Every option is bounded alone, but a batch's hidden states grow with batch size x tokens x layers:
  // an ALBERT config of 20000 (shared) layers and --batch-size 65536 would hold ~190 GB at once.
  const fs::path model = copy_model("pretrained", "deep_albert");
  auto config = nlohmann::json::parse(read_file(model / "config.json"));
  config["num_hidden_layers"] = 20000;
  write_file_atomically(model / "config.json", config.dump(2));
  const fs::path exper = root_ / "round3" / "big_batch";
  fs::remove_all(exper);
  std::string command = probe_train_on(model, exper);
  command.replace(command.find("--batch-size 4"), 14, "--batch-size 65536");
  const Timed result = timed(command);
  EXPECT_EQ(result.code, 2) << result.output;
  EXPECT_TRUE(contains(result.output, "GiB of hidden states, more than the")) << result.output;
  EXPECT_TRUE(contains(result.output, "lower --batch-size")) << result.output;
  EXPECT_LT(result.seconds, 30.0);
  EXPECT_LT(result.max_rss_kib, 2L << 20);
}
