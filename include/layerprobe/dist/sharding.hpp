// What each rank of a data-parallel run works on: its rows of every global
// batch (probe_train, run_squad) and its questions (probe_predict, run_squad's
// evaluation), and how rank 0 puts the answers back in order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "layerprobe/probe/probes.hpp"
#include "layerprobe/squad/features.hpp"
#include "layerprobe/squad/prediction.hpp"
#include "layerprobe/squad/squad.hpp"

namespace layerprobe::dist {

// Rank r of W takes rows [B*r/W, B*(r+1)/W) of each global batch of B rows, so
// the ranks together see the same batches, in the same order, as one process.
// A rank may get no row of a small batch.
struct RankBatches {
  std::vector<std::vector<size_t>> local;  // this rank's feature indices, per global batch
  std::vector<int64_t> row_offset;         // global row of local[b]'s first row
  std::vector<int64_t> global_rows;        // rows of global batch b
};
RankBatches rank_batches(const std::vector<std::vector<size_t>>& batches, int rank, int world_size);

// The ProbeBatchShard of global batch `number`, summing over the process group
// when there is one.
ProbeBatchShard probe_batch_shard(const RankBatches& batches, size_t number);

// Error naming `what` unless every rank holds the same value (e.g. the epochs
// found saved: every rank must see the same --output-dir).
void require_same_on_every_rank(int64_t value, const std::string& what);

// Rank r of W answers the questions i with i % W == r, with all their windows.
struct QuestionShard {
  std::vector<SquadExample> examples;
  std::vector<SquadFeature> features;  // example_index renumbered into `examples`
};
QuestionShard question_shard(const std::vector<SquadExample>& examples, const std::vector<SquadFeature>& features,
                             int rank, int world_size);

// Rank 0 gets every rank's predictions of its question_shard merged back into
// question order (`total` questions); the other ranks get an empty vector.
std::vector<QuestionPrediction> gather_predictions(const std::vector<QuestionPrediction>& mine, size_t total);

}  // namespace layerprobe::dist
