#include "layerprobe/probe/codelength.hpp"

#include <cmath>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"

namespace layerprobe {

void Codelength::add_batch(const torch::Tensor& loss, const std::vector<int64_t>& positions) {
  auto nats = loss.to(torch::kCPU, torch::kDouble).contiguous();
  const auto layers = static_cast<size_t>(nats.numel());
  if (online_bits.empty()) online_bits.assign(layers, 0.0);
  if (online_bits.size() != layers)
    throw Error("codelength: a batch of " + std::to_string(layers) + " layers after " +
                std::to_string(online_bits.size()));
  // Each feature's code for (start, end) is 2 x its mean loss.
  const double scale = 2.0 * static_cast<double>(positions.size()) / std::log(2.0);
  for (size_t l = 0; l < layers; ++l) online_bits[l] += nats.data_ptr<double>()[l] * scale;
  for (int64_t n : positions) uniform_bits += 2.0 * std::log2(static_cast<double>(n));
  features += static_cast<int64_t>(positions.size());
}

nlohmann::json Codelength::to_json() const {
  return {{"online_bits", online_bits}, {"uniform_bits", uniform_bits}, {"features", features}};
}

Codelength Codelength::from_json(const nlohmann::json& json, const std::string& source) {
  Codelength c;
  try {
    c.online_bits = json.at("online_bits").get<std::vector<double>>();
    c.uniform_bits = json.at("uniform_bits").get<double>();
    c.features = json.at("features").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": 'codelength' is not {online_bits: [..], uniform_bits, features}: " + e.what());
  }
  return c;
}

std::string codelength_csv(const std::vector<SeedCodelength>& sets) {
  std::string out = "seed,layer,features,online_bits,uniform_bits,compression\n";
  for (const auto& set : sets)
    for (size_t l = 0; l < set.codelength.online_bits.size(); ++l)
      out += (set.seed ? std::to_string(*set.seed) : "") + "," + std::to_string(l + 1) + "," +
             std::to_string(set.codelength.features) + "," + python_float_repr(set.codelength.online_bits[l]) + "," +
             python_float_repr(set.codelength.uniform_bits) + "," + python_float_repr(set.codelength.compression(l)) +
             "\n";
  return out;
}

}  // namespace layerprobe
