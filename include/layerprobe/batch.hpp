// Padding features into the [B,T] tensors the encoder takes.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "layerprobe/features.hpp"

namespace layerprobe {

struct EncoderBatch {
  torch::Tensor input_ids, token_type_ids, attention_mask;  // [B,T] int64

  EncoderBatch to(const torch::Device& device) const;
  int64_t size() const { return input_ids.size(0); }
  int64_t length() const { return input_ids.size(1); }
};

struct BatchOptions {
  // 0: pad to the longest feature; otherwise pad every row to this length
  // (Error when a feature is longer).
  int64_t pad_to = 0;
  int64_t pad_id = 0;
};

// Rows in the order given; padding has id pad_id, token type 0, mask 0.
EncoderBatch make_batch(const std::vector<const SquadFeature*>& features, const BatchOptions& options = {});
EncoderBatch make_batch(const std::vector<SquadFeature>& features, const BatchOptions& options = {});

// Batches of at most `batch_size` features (indices into `features`) in
// length order, so padding each to its longest wastes little work.
std::vector<std::vector<size_t>> length_bucketed_batches(const std::vector<SquadFeature>& features,
                                                         size_t batch_size);

}  // namespace layerprobe
