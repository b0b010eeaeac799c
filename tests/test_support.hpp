// Helpers shared by the test files: where the test data lives (tests/data, expanded by
// CMake into <build>/test-data), and the rule that a test whose data is missing fails,
// never skips.
#pragma once

#include <gtest/gtest.h>
#include <torch/types.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "layerprobe/core/common.hpp"

namespace layerprobe::test_support {

// The test data: data/ and golden/ as tests/data/README.md describes them. The environment
// variable LAYERPROBE_SHARED overrides the build's LAYERPROBE_SHARED_DIR (default <build>/test-data).
inline std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("LAYERPROBE_SHARED"); env && *env) return env;
  return LAYERPROBE_SHARED_DIR;
}

inline std::filesystem::path shared_path(const std::string& relative) { return shared_dir() / relative; }

// Files of the test data that many tests read.
constexpr const char* kSpieceModel = "data/albert/spiece.model";
constexpr const char* kDevFile = "data/squad/dev-v2.0.json";

// Path of a layerprobe executable of this build.
inline std::string tool(const std::string& name) { return std::string(LAYERPROBE_BINARY_DIR) + "/bin/" + name; }

// A tokenizer directory for models that read a tokenizer.json (ModernBERT, Qwen2 through init-model --vocab):
// roberta-base's tokenizer.json under `dir`, with a tokenizer_config.json naming its special tokens (its
// tokenizer.json names no pad token, as ModernBERT's tokenizer_config.json does "[PAD]"), so that the model pads
// with an id of its vocabulary.
inline std::filesystem::path roberta_tokenizer_json_dir(const std::filesystem::path& dir) {
  const std::filesystem::path tokenizer_dir = dir / "tokenizer-json";
  std::filesystem::create_directories(tokenizer_dir);
  std::filesystem::copy_file(shared_path("data/roberta-base-tokenizer-json/tokenizer.json"),
                             tokenizer_dir / "tokenizer.json", std::filesystem::copy_options::overwrite_existing);
  write_file_atomically(tokenizer_dir / "tokenizer_config.json",
                        R"({"bos_token": "<s>", "eos_token": "</s>", "cls_token": "<s>", "sep_token": "</s>", )"
                        R"("unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"})");
  return tokenizer_dir;
}

// Runs a shell command with 2 LibTorch threads, stdout and stderr to `log`;
// its exit status (-1 when it did not exit normally).
inline int run_logged(const std::string& command, const std::filesystem::path& log) {
  const std::string full = "LAYERPROBE_THREADS=2 " + command + " >" + log.string() + " 2>&1";
  const int status = std::system(full.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Makes the directory `root` with `make` once per build of the executables
// the fixture runs: under a lock (for ctest -j, where each test is its own
// process), and again whenever probe_tools, probe_train or run_squad change.
// A fixture whose making failed (a gtest failure) is made again next time.
inline void make_shared_fixture(const std::filesystem::path& root, const std::function<void()>& make) {
  std::filesystem::create_directories(root.parent_path());
  const int lock = ::open((root.string() + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(lock, 0);
  ::flock(lock, LOCK_EX);
  std::string stamp;
  for (const char* name : {"probe_tools", "probe_train", "run_squad"})
    stamp += std::to_string(std::filesystem::last_write_time(tool(name)).time_since_epoch().count()) + "\n";
  const std::filesystem::path marker = root / "ready";
  if (!std::filesystem::exists(marker) || layerprobe::read_file(marker) != stamp) {
    std::filesystem::remove_all(root);
    std::filesystem::create_directories(root);
    make();
    if (!::testing::Test::HasFailure()) layerprobe::write_file_atomically(marker, stamp);
  }
  ::flock(lock, LOCK_UN);
  ::close(lock);
}

// Largest absolute difference, in double; the shapes must agree.
inline double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// A fresh, empty directory under the build tree for one test.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto dir = std::filesystem::path(LAYERPROBE_BINARY_DIR) / "test-scratch" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Four threads tokenise `text` 200 times each; every result must equal a
// single-threaded one (tokenizers are shared across featurisation workers).
template <typename TokenizerT>
void expect_concurrent_tokenisation_agrees(const TokenizerT& tokenizer, const std::string& text) {
  const auto expected = tokenizer.tokenize(text);
  std::vector<int> agreed(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) agreed[t] += tokenizer.tokenize(text) == expected;
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(agreed, std::vector<int>(4, 200));
}

}  // namespace layerprobe::test_support

// Use at the top of a test that reads <test data>/<relative>: a missing file fails the test
// (with CI or without); it never skips.
#define REQUIRE_SHARED(relative)                                                                     \
  do {                                                                                               \
    auto lp_required_path = ::layerprobe::test_support::shared_path(relative);                       \
    if (!std::filesystem::exists(lp_required_path))                                                  \
      FAIL() << "test data missing: " << lp_required_path                                            \
             << " (the test data ships in tests/data and CMake expands it into <build>/test-data"    \
                " at configure time: rerun cmake; LAYERPROBE_SHARED overrides the directory)";       \
  } while (0)
