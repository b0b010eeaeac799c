// probes.safetensors written by probe_train: tensors, shapes and JSON metadata.
#include "fuzz_support.hpp"
#include "layerprobe/probe/probe_store.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace layerprobe::fuzz;
  auto path = scratch().write("probes.safetensors", as_bytes(data, size));
  refuse_only_with_error([&] { layerprobe::load_probes(path); });
  return 0;
}
