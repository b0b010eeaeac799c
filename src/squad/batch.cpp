#include "layerprobe/squad/batch.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <random>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

EncoderBatch make_batch(const std::vector<const SquadFeature*>& features, const BatchOptions& options) {
  int64_t longest = 0;
  for (const SquadFeature* feature : features) {
    if (feature->token_type_ids.size() != feature->input_ids.size())
      throw Error("feature " + std::to_string(feature->unique_id) + " has " +
                  std::to_string(feature->input_ids.size()) + " input ids but " +
                  std::to_string(feature->token_type_ids.size()) + " token type ids");
    longest = std::max(longest, static_cast<int64_t>(feature->length()));
  }
  if (options.pad_to > 0 && longest > options.pad_to)
    throw Error("a feature has " + std::to_string(longest) + " tokens, more than pad_to " +
                std::to_string(options.pad_to));
  const int64_t length = options.pad_to > 0 ? options.pad_to : longest;
  const auto rows = static_cast<int64_t>(features.size());
  EncoderBatch batch;
  batch.input_ids = torch::full({rows, length}, options.pad_id, torch::kLong);
  batch.token_type_ids = torch::zeros({rows, length}, torch::kLong);
  batch.attention_mask = torch::zeros({rows, length}, torch::kLong);
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto types = batch.token_type_ids.accessor<int64_t, 2>();
  auto mask = batch.attention_mask.accessor<int64_t, 2>();
  for (int64_t row = 0; row < rows; ++row) {
    const SquadFeature& feature = *features[row];
    for (size_t t = 0; t < feature.length(); ++t) {
      ids[row][t] = feature.input_ids[t];
      types[row][t] = feature.token_type_ids[t];
      mask[row][t] = 1;
    }
  }
  return batch;
}

EncoderBatch make_batch(const std::vector<SquadFeature>& features, const BatchOptions& options) {
  std::vector<const SquadFeature*> pointers;
  pointers.reserve(features.size());
  for (const SquadFeature& feature : features) pointers.push_back(&feature);
  return make_batch(pointers, options);
}

namespace {

void shuffle(std::vector<size_t>& items, std::mt19937_64& rng) {
  for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[rng() % i]);
}

// Sorts order[begin, end) by feature length and appends it cut into batches.
void append_sorted_batches(const std::vector<SquadFeature>& features, std::vector<size_t>& order, size_t begin,
                           size_t end, size_t batch_size, std::vector<std::vector<size_t>>& batches) {
  auto first = order.begin() + static_cast<std::ptrdiff_t>(begin);
  auto last = order.begin() + static_cast<std::ptrdiff_t>(end);
  std::stable_sort(first, last, [&](size_t a, size_t b) { return features[a].length() < features[b].length(); });
  for (size_t b = begin; b < end; b += batch_size)
    batches.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(b),
                         order.begin() + static_cast<std::ptrdiff_t>(std::min(end, b + batch_size)));
}

}  // namespace

std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 rng(seed * 1000003ULL + static_cast<uint64_t>(epoch));
  shuffle(order, rng);
  return order;
}

std::vector<std::vector<size_t>> length_bucketed_batches(const std::vector<SquadFeature>& features,
                                                         size_t batch_size) {
  if (batch_size == 0) throw Error("batch size must be at least 1", 2);
  std::vector<size_t> order(features.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::vector<std::vector<size_t>> batches;
  append_sorted_batches(features, order, 0, order.size(), batch_size, batches);
  return batches;
}

std::vector<std::vector<size_t>> shuffled_length_pooled_batches(const std::vector<SquadFeature>& features,
                                                                size_t batch_size, uint64_t seed, int64_t epoch,
                                                                size_t pool_batches) {
  if (batch_size == 0 || pool_batches == 0) throw Error("batch and pool sizes must be at least 1", 2);
  auto order = epoch_order(features.size(), seed, epoch);
  const size_t pool = batch_size * pool_batches;
  std::vector<std::vector<size_t>> batches;
  for (size_t begin = 0; begin < order.size(); begin += pool)
    append_sorted_batches(features, order, begin, std::min(order.size(), begin + pool), batch_size, batches);
  // A second stream, so the batch order is not a function of the first.
  std::mt19937_64 rng(~(seed * 1000003ULL + static_cast<uint64_t>(epoch)));
  std::vector<size_t> batch_order(batches.size());
  for (size_t i = 0; i < batch_order.size(); ++i) batch_order[i] = i;
  shuffle(batch_order, rng);
  std::vector<std::vector<size_t>> shuffled;
  shuffled.reserve(batches.size());
  for (size_t i : batch_order) shuffled.push_back(std::move(batches[i]));
  return shuffled;
}

}  // namespace layerprobe
