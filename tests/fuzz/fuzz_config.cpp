// config.json of a model directory.
#include "fuzz_support.hpp"
#include "layerprobe/model/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace layerprobe::fuzz;
  auto path = scratch().write("config.json", as_bytes(data, size));
  refuse_only_with_error([&] { layerprobe::load_config(path); });
  return 0;
}
