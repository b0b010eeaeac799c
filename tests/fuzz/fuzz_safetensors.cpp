// safetensors: model weights and probes files (header JSON, offsets, dtypes).
#include "fuzz_support.hpp"
#include "layerprobe/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  layerprobe::fuzz::refuse_only_with_error(
      [&] { layerprobe::parse_safetensors(layerprobe::fuzz::as_bytes(data, size), "fuzz input"); });
  return 0;
}
