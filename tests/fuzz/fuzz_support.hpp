// What every fuzz target shares: the input as bytes or as a file, and the rule
// that a layerprobe::Error (a clear refusal) is the only acceptable failure;
// any other exception escapes, and libFuzzer reports it as a crash.
#pragma once

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "layerprobe/core/common.hpp"

namespace layerprobe::fuzz {

inline std::string_view as_bytes(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A folder of this process, removed at exit, for readers that take a path.
class ScratchDir {
 public:
  ScratchDir()
      : path_(std::filesystem::temp_directory_path() / ("layerprobe-fuzz-" + std::to_string(getpid()))) {
    std::filesystem::create_directories(path_);
    spdlog::set_level(spdlog::level::off);  // warnings about bad input are expected, millions of times
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::filesystem::path write(const std::string& name, std::string_view bytes) const {
    auto path = path_ / name;
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), bytes.size());
    return path;
  }

 private:
  std::filesystem::path path_;
};

inline const ScratchDir& scratch() {
  static const ScratchDir dir;
  return dir;
}

template <typename Body>
void refuse_only_with_error(Body&& body) {
  try {
    body();
  } catch (const Error&) {
  }
}

}  // namespace layerprobe::fuzz
