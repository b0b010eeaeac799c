// Files probe_evaluate reads from other systems: predictions (JSON and CSV)
// and no-answer probabilities.
#include "fuzz_support.hpp"
#include "layerprobe/squad/predictions_io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace layerprobe::fuzz;
  auto bytes = as_bytes(data, size);
  auto json = scratch().write("predictions.json", bytes);
  auto csv = scratch().write("predictions.csv", bytes);
  refuse_only_with_error([&] { layerprobe::load_predictions_json(json); });
  refuse_only_with_error([&] { layerprobe::load_na_probs(json); });
  refuse_only_with_error([&] { layerprobe::load_predictions_csv(csv); });
  return 0;
}
