// SQuAD-format JSON, read in both evaluation and training mode.
#include "fuzz_support.hpp"
#include "layerprobe/squad/squad.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace layerprobe::fuzz;
  std::string text(as_bytes(data, size));
  for (bool is_training : {false, true})
    refuse_only_with_error([&] { layerprobe::parse_squad(text, "fuzz input", {is_training}); });
  return 0;
}
