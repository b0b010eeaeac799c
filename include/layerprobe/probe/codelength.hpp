// Online (prequential) codelength of the probes' targets, per layer (Blier &
// Ollivier 2018; Voita & Titov 2020's online code): during the first epoch
// each batch is coded with the probe as it stands just before it trains on
// that batch, so the code length is the sum of those pre-update losses. It
// reuses the training step's own loss (dropout included: the dropped probe is
// still a distribution fixed before the labels are seen), so it costs nothing.
// The uniform code names each target among the positions the probe's softmax
// ranges over (the feature's unmasked tokens); compression = uniform / online.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/types.h>

namespace layerprobe {

struct Codelength {
  std::vector<double> online_bits;  // [L]: sum over features of -log2 p(start) - log2 p(end)
  double uniform_bits = 0.0;        // sum over features of 2 log2(unmasked positions)
  int64_t features = 0;

  // Adds one batch: loss [L], the batch mean of (CE(start) + CE(end)) / 2 in
  // nats (ProbeStepResult::loss); positions, each feature's unmasked tokens.
  void add_batch(const torch::Tensor& loss, const std::vector<int64_t>& positions);
  double compression(size_t layer) const { return uniform_bits / online_bits.at(layer); }

  nlohmann::json to_json() const;
  // Error naming `source` when the JSON is not one to_json wrote.
  static Codelength from_json(const nlohmann::json& json, const std::string& source);
};

// One probe set's codelength and the seed directory it came from (none for
// probes trained without --seeds).
struct SeedCodelength {
  std::optional<uint64_t> seed;
  Codelength codelength;
};

// seed,layer,features,online_bits,uniform_bits,compression; one row per seed
// and layer (seed empty for probes trained without --seeds).
std::string codelength_csv(const std::vector<SeedCodelength>& sets);

}  // namespace layerprobe
