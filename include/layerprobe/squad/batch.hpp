// Padding features into the [B,T] tensors the encoder takes.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "layerprobe/model/qa_model.hpp"
#include "layerprobe/squad/features.hpp"

namespace layerprobe {

struct BatchOptions {
  // 0: pad to the longest feature; otherwise pad every row to this length
  // (Error when a feature is longer).
  int64_t pad_to = 0;
  int64_t pad_id = 0;  // the tokenizer's pad_id()
};

// Rows in the order given; padding has id pad_id, token type 0, mask 0.
EncoderBatch make_batch(const std::vector<const SquadFeature*>& features, const BatchOptions& options = {});
EncoderBatch make_batch(const std::vector<SquadFeature>& features, const BatchOptions& options = {});

// Batches of at most `batch_size` features (indices into `features`) in
// length order, so padding each to its longest wastes little work.
std::vector<std::vector<size_t>> length_bucketed_batches(const std::vector<SquadFeature>& features,
                                                         size_t batch_size);

// Fisher-Yates over 0..n-1 with mt19937_64 and an explicit reduction, so the
// order depends only on (seed, epoch), on every standard library.
std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch);

// One epoch of training batches, a function of (seed, epoch): the features
// in epoch_order, cut into pools of `pool_batches` batches; each pool sorted
// by length and cut into batches; then all batches in a seeded order. Each
// batch is a random draw of features of similar length, so padding each to
// its longest wastes little work.
std::vector<std::vector<size_t>> shuffled_length_pooled_batches(const std::vector<SquadFeature>& features,
                                                                size_t batch_size, uint64_t seed, int64_t epoch,
                                                                size_t pool_batches = 32);

}  // namespace layerprobe
