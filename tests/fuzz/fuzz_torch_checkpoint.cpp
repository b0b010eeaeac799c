// pytorch_model.bin: the zip format and the legacy pickle stream.
#include "fuzz_support.hpp"
#include "layerprobe/io/torch_pickle.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  layerprobe::fuzz::refuse_only_with_error(
      [&] { layerprobe::parse_torch_checkpoint(layerprobe::fuzz::as_bytes(data, size), "fuzz input"); });
  return 0;
}
