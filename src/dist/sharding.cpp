#include "layerprobe/dist/sharding.hpp"

#include <nlohmann/json.hpp>

#include "layerprobe/core/common.hpp"
#include "layerprobe/dist/dist.hpp"

namespace layerprobe::dist {

RankBatches rank_batches(const std::vector<std::vector<size_t>>& batches, int rank, int world_size) {
  RankBatches out;
  const auto r = static_cast<size_t>(rank), w = static_cast<size_t>(world_size);
  for (const auto& batch : batches) {
    const size_t begin = batch.size() * r / w, end = batch.size() * (r + 1) / w;
    out.local.emplace_back(batch.begin() + static_cast<std::ptrdiff_t>(begin),
                           batch.begin() + static_cast<std::ptrdiff_t>(end));
    out.row_offset.push_back(static_cast<int64_t>(begin));
    out.global_rows.push_back(static_cast<int64_t>(batch.size()));
  }
  return out;
}

ProbeBatchShard probe_batch_shard(const RankBatches& batches, size_t number) {
  ProbeBatchShard shard;
  shard.row_offset = batches.row_offset.at(number);
  shard.global_rows = batches.global_rows.at(number);
  if (enabled()) shard.all_reduce_sum = [](torch::Tensor& t) { all_reduce_sum(t); };
  return shard;
}

void require_same_on_every_rank(int64_t value, const std::string& what) {
  const auto values = all_gather_int(value);
  for (size_t r = 0; r < values.size(); ++r)
    if (values[r] != value)
      throw Error("ranks disagree on " + what + ": rank " + std::to_string(rank()) + " has " + std::to_string(value) +
                  ", rank " + std::to_string(r) + " has " + std::to_string(values[r]) +
                  " (every rank must see the same files: use a shared directory)");
}

QuestionShard question_shard(const std::vector<SquadExample>& examples, const std::vector<SquadFeature>& features,
                             int rank, int world_size) {
  QuestionShard shard;
  for (size_t i = static_cast<size_t>(rank); i < examples.size(); i += static_cast<size_t>(world_size))
    shard.examples.push_back(examples[i]);
  for (const auto& feature : features) {
    if (feature.example_index % world_size != rank) continue;
    shard.features.push_back(feature);
    shard.features.back().example_index = feature.example_index / world_size;
  }
  return shard;
}

namespace {

nlohmann::json to_json(const std::vector<QuestionPrediction>& predictions) {
  auto json = nlohmann::json::array();
  for (const auto& p : predictions) {
    auto nbest = nlohmann::json::array();
    for (const auto& e : p.nbest) nbest.push_back({e.text, e.probability, e.start_logit, e.end_logit});
    json.push_back({p.qas_id, p.text, p.null_odds, nbest});
  }
  return json;
}

std::vector<QuestionPrediction> from_json(const nlohmann::json& json) {
  std::vector<QuestionPrediction> predictions;
  for (const auto& item : json) {
    QuestionPrediction p;
    p.qas_id = item.at(0).get<std::string>();
    p.text = item.at(1).get<std::string>();
    p.null_odds = item.at(2).get<double>();
    for (const auto& e : item.at(3))
      p.nbest.push_back({e.at(0).get<std::string>(), e.at(1).get<double>(), e.at(2).get<double>(),
                         e.at(3).get<double>()});
    predictions.push_back(std::move(p));
  }
  return predictions;
}

}  // namespace

std::vector<QuestionPrediction> gather_predictions(const std::vector<QuestionPrediction>& mine, size_t total) {
  if (!enabled()) return mine;
  const auto parts = gather_strings(to_json(mine).dump());
  if (!is_main()) return {};
  std::vector<std::vector<QuestionPrediction>> by_rank;
  for (const auto& part : parts) by_rank.push_back(from_json(nlohmann::json::parse(part)));
  std::vector<QuestionPrediction> merged;
  const auto w = by_rank.size();
  for (size_t i = 0; i < total; ++i) {
    auto& from = by_rank[i % w];
    if (i / w >= from.size()) throw Error("rank " + std::to_string(i % w) + " sent too few predictions");
    merged.push_back(std::move(from[i / w]));
  }
  return merged;
}

}  // namespace layerprobe::dist
