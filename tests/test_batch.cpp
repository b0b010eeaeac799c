#include <torch/torch.h>

#include "layerprobe/batch.hpp"
#include "layerprobe/common.hpp"
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
