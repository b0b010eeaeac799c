// Helpers shared by the test files: where the golden data lives, and the rule
// that golden tests fail (never skip) under CI when ../shared is missing.
#pragma once

#include <gtest/gtest.h>
#include <torch/types.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace layerprobe::test_support {

inline std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("LAYERPROBE_SHARED"); env && *env) return env;
  return LAYERPROBE_SHARED_DIR;
}

inline std::filesystem::path shared_path(const std::string& relative) { return shared_dir() / relative; }

// Files of ../shared that many tests read.
constexpr const char* kSpieceModel = "data/albert/spiece.model";
constexpr const char* kDevFile = "data/squad/dev-v2.0.json";

// Path of a layerprobe executable of this build.
inline std::string tool(const std::string& name) { return std::string(LAYERPROBE_BINARY_DIR) + "/bin/" + name; }

// Largest absolute difference, in double; the shapes must agree.
inline double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

inline bool running_in_ci() {
  const char* ci = std::getenv("CI");
  return ci && *ci && std::string(ci) != "0" && std::string(ci) != "false";
}

// A fresh, empty directory under the build tree for one test.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto dir = std::filesystem::path(LAYERPROBE_BINARY_DIR) / "test-scratch" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace layerprobe::test_support

// Use at the top of a test that reads ../shared/<relative>.
#define REQUIRE_SHARED(relative)                                                            \
  do {                                                                                      \
    auto lp_required_path = ::layerprobe::test_support::shared_path(relative);                   \
    if (!std::filesystem::exists(lp_required_path)) {                                       \
      if (::layerprobe::test_support::running_in_ci())                                           \
        FAIL() << "golden data missing under CI: " << lp_required_path                      \
               << " (the project's ../shared directory must be present)";                   \
      GTEST_SKIP() << "golden data not found at " << lp_required_path                       \
                   << "; it ships in the project's shared/ directory (set LAYERPROBE_SHARED)"; \
    }                                                                                       \
  } while (0)
