#include <torch/torch.h>

#include <algorithm>

#include "layerprobe/squad/batch.hpp"
#include "layerprobe/core/common.hpp"
#include "test_support.hpp"

using namespace layerprobe;

namespace {

SquadFeature feature(std::vector<int64_t> ids, std::vector<int64_t> types) {
  SquadFeature f;
  f.input_ids = std::move(ids);
  f.token_type_ids = std::move(types);
  return f;
}

}  // namespace

TEST(Batch, PadsToTheLongestFeature) {
  std::vector<SquadFeature> features = {feature({2, 10, 3}, {0, 0, 1}), feature({2, 11, 12, 3, 13}, {0, 0, 1, 1, 1})};
  EncoderBatch batch = make_batch(features);
  EXPECT_EQ(batch.size(), 2);
  EXPECT_EQ(batch.length(), 5);
  EXPECT_TRUE(torch::equal(batch.input_ids, torch::tensor({{2, 10, 3, 0, 0}, {2, 11, 12, 3, 13}}, torch::kLong)));
  EXPECT_TRUE(torch::equal(batch.token_type_ids, torch::tensor({{0, 0, 1, 0, 0}, {0, 0, 1, 1, 1}}, torch::kLong)));
  EXPECT_TRUE(torch::equal(batch.attention_mask, torch::tensor({{1, 1, 1, 0, 0}, {1, 1, 1, 1, 1}}, torch::kLong)));
}

TEST(Batch, PadToAFixedLengthAndRowOrder) {
  std::vector<SquadFeature> features = {feature({5}, {0}), feature({6, 7}, {0, 1})};
  EncoderBatch batch = make_batch(std::vector<const SquadFeature*>{&features[1], &features[0]}, BatchOptions{4});
  EXPECT_TRUE(torch::equal(batch.input_ids, torch::tensor({{6, 7, 0, 0}, {5, 0, 0, 0}}, torch::kLong)));
  EXPECT_EQ(batch.attention_mask.sum().item<int64_t>(), 3);
  EXPECT_THROW(make_batch(features, BatchOptions{1}), Error);
}

TEST(Batch, MismatchedTokenTypesAreAnError) {
  std::vector<SquadFeature> features = {feature({1, 2}, {0})};
  EXPECT_THROW(make_batch(features), Error);
}

TEST(EpochOrder, IsAPermutationFixedBySeedAndEpoch) {
  auto a = epoch_order(100, 42, 0), b = epoch_order(100, 42, 0), c = epoch_order(100, 42, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::sort(c.begin(), c.end());
  for (size_t i = 0; i < c.size(); ++i) EXPECT_EQ(c[i], i);
}

TEST(ShuffledLengthPooledBatches, CoverEveryFeatureOnceWithLittlePaddingAndDependOnTheEpoch) {
  std::vector<SquadFeature> features(1000);
  for (size_t i = 0; i < features.size(); ++i) features[i].input_ids.assign(1 + (i * 7919) % 300, 1);
  auto batches = shuffled_length_pooled_batches(features, 8, 42, 1, 10);
  std::vector<size_t> seen;
  size_t padded = 0, real = 0;
  for (const auto& batch : batches) {
    EXPECT_LE(batch.size(), 8u);
    size_t longest = 0;
    for (size_t i : batch) longest = std::max(longest, features[i].length());
    for (size_t i : batch) real += features[i].length(), padded += longest;
    seen.insert(seen.end(), batch.begin(), batch.end());
  }
  std::sort(seen.begin(), seen.end());
  for (size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], i);
  EXPECT_EQ(seen.size(), features.size());
  // Random batches of these lengths pad ~2x; pools of 80 sorted features ~1.05x.
  EXPECT_LT(static_cast<double>(padded) / static_cast<double>(real), 1.15);
  EXPECT_EQ(batches, shuffled_length_pooled_batches(features, 8, 42, 1, 10));
  EXPECT_NE(batches, shuffled_length_pooled_batches(features, 8, 42, 2, 10));
  // Batches are not in length order: the first ten do not ascend.
  std::vector<size_t> first_lengths;
  for (size_t b = 0; b < 10; ++b) first_lengths.push_back(features[batches[b][0]].length());
  EXPECT_FALSE(std::is_sorted(first_lengths.begin(), first_lengths.end()));
}
