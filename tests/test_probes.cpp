#include "layerprobe/probe/probes.hpp"

#include "layerprobe/core/common.hpp"

#include "test_support.hpp"

#include <condition_variable>
#include <mutex>
#include <thread>

using namespace layerprobe;

namespace {

struct RandomBatch {
  torch::Tensor hidden, mask, start, end;
};

RandomBatch random_batch(int64_t L, int64_t B, int64_t T, int64_t H, uint64_t seed) {
  torch::manual_seed(seed);
  RandomBatch batch;
  batch.hidden = torch::randn({L, B, T, H});
  auto lengths = torch::randint(T / 2, T + 1, {B});
  batch.mask = (torch::arange(T).unsqueeze(0) < lengths.unsqueeze(1)).to(torch::kInt64);
  batch.start = (torch::rand({B}) * lengths.to(torch::kFloat)).to(torch::kInt64);
  batch.end = torch::minimum(batch.start + 2, lengths - 1);
  return batch;
}

// The per-layer, per-head reference: what the original study did with one
// nn.Linear, one clip_grad_norm_ and one AdamW (no bias correction) per head.
struct ReferenceHead {
  torch::Tensor w, b, m_w, v_w, m_b, v_b;
};

void reference_step(std::vector<std::array<ReferenceHead, 2>>& heads, const torch::Tensor& dropped,
                    const RandomBatch& batch, const ProbeOptions& o) {
  for (size_t l = 0; l < heads.size(); ++l) {
    for (int k = 0; k < 2; ++k) {
      auto& head = heads[l][k];
      auto w = head.w.detach().requires_grad_(true);
      auto b = head.b.detach().requires_grad_(true);
      auto logits = torch::matmul(dropped[l], w) + b;  // [B,T]
      logits = logits.masked_fill(batch.mask.eq(0), -1e30);
      auto targets = k == 0 ? batch.start : batch.end;
      auto loss = torch::nll_loss(torch::log_softmax(logits, -1), targets) / 2;
      loss.backward();
      torch::nn::utils::clip_grad_norm_(std::vector<torch::Tensor>{w, b}, o.max_grad_norm);
      torch::NoGradGuard no_grad;
      for (auto [p, g, m, v] : {std::tuple{&head.w, w.grad(), &head.m_w, &head.v_w},
                                std::tuple{&head.b, b.grad(), &head.m_b, &head.v_b}}) {
        m->mul_(o.beta1).add_(g, 1 - o.beta1);
        v->mul_(o.beta2).addcmul_(g, g, 1 - o.beta2);
        p->addcdiv_(*m, v->sqrt() + o.eps, -o.learning_rate);
      }
    }
  }
}

}  // namespace

TEST(LayerProbes, FusedStepEqualsPerLayerLoop) {
  const int64_t L = 3, B = 4, T = 12, H = 16;
  ProbeOptions options;
  options.learning_rate = 1e-2;  // large enough that clipping and moments matter
  options.max_grad_norm = 0.05;
  LayerProbes probes(L, H, options, 7);
  std::vector<std::array<ReferenceHead, 2>> heads(L);
  for (int64_t l = 0; l < L; ++l)
    for (int k = 0; k < 2; ++k) {
      auto w = probes.weight()[l][k].clone();
      auto b = probes.bias()[l][k].clone();
      heads[l][k] = {w, b, torch::zeros_like(w), torch::zeros_like(w), torch::zeros_like(b), torch::zeros_like(b)};
    }
  for (int step = 0; step < 5; ++step) {
    auto batch = random_batch(L, B, T, H, 100 + step);
    auto keep = dropout_keep_mask(batch.hidden.sizes(), options.dropout, step);
    auto dropped = batch.hidden * keep / (1 - options.dropout);
    probes.train_step(batch.hidden, batch.mask, batch.start, batch.end, step);
    reference_step(heads, dropped, batch, options);
  }
  // A softmax over positions is shift-invariant, so a head's bias gradient is
  // zero up to rounding and Adam turns that rounding into steps of at most lr:
  // the biases can only be compared to within steps * lr. The weights carry
  // the whole function and must agree tightly.
  const int steps = 5;
  for (int64_t l = 0; l < L; ++l)
    for (int k = 0; k < 2; ++k) {
      EXPECT_TRUE(torch::allclose(probes.weight()[l][k], heads[l][k].w, 1e-5, 1e-7)) << "layer " << l << " head " << k;
      EXPECT_LE((probes.bias()[l][k] - heads[l][k].b).abs().item<double>(), steps * options.learning_rate * 1.01);
    }
}

TEST(LayerProbes, DropoutMaskKeepsAtTheRateAndDependsOnlyOnTheSeed) {
  const std::vector<int64_t> sizes{3, 1001, 333};  // odd width: the last draw of a row decides one element
  auto mask = dropout_keep_mask(sizes, 0.1, 17);
  EXPECT_EQ(mask.sizes(), sizes);
  const double n = static_cast<double>(mask.numel());
  const double kept = mask.sum().item<double>() / n;
  EXPECT_NEAR(kept, 0.9, 4 * std::sqrt(0.09 / n));  // four standard deviations
  EXPECT_TRUE(torch::equal(mask, dropout_keep_mask(sizes, 0.1, 17)));
  const int threads = torch::get_num_threads();
  torch::set_num_threads(2);
  EXPECT_TRUE(torch::equal(mask, dropout_keep_mask(sizes, 0.1, 17))) << "depends on the thread count";
  torch::set_num_threads(threads);
  const double same = mask.eq(dropout_keep_mask(sizes, 0.1, 18)).sum().item<double>() / n;
  EXPECT_NEAR(same, 0.82, 0.01);  // independent masks agree with probability 0.9^2 + 0.1^2
  // Neighbouring elements (two halves of one draw) are independent too.
  auto flat = mask.flatten();
  auto pairs = flat.slice(0, 0, -1, 2).logical_and(flat.slice(0, 1, flat.size(0), 2)).to(torch::kDouble).mean();
  EXPECT_NEAR(pairs.item<double>(), 0.81, 0.01);
  EXPECT_EQ(dropout_keep_mask({1000}, 0.0, 1).sum().item<int64_t>(), 1000);
}

TEST(LayerProbes, DropoutMaskFollowsGlobalRowsNotPaddingOrSharding) {
  const std::vector<int64_t> sizes{2, 6, 10, 7};  // [L,B,T,H]
  auto whole = dropout_keep_mask(sizes, 0.3, 5);
  // Rows 2..4 of the batch, as a rank holding them would draw them, padded to 4 positions only.
  auto shard = dropout_keep_mask({2, 3, 4, 7}, 0.3, 5, 2);
  EXPECT_TRUE(torch::equal(shard, whole.slice(1, 2, 5).slice(2, 0, 4)));
  // Longer padding keeps the decisions of the positions both have.
  auto padded = dropout_keep_mask({2, 6, 16, 7}, 0.3, 5);
  EXPECT_TRUE(torch::equal(padded.slice(2, 0, 10), whole));
  EXPECT_FALSE(torch::equal(dropout_keep_mask(sizes, 0.3, 5, 1), whole));
  // The tensor-op form a GPU uses gives the same decisions (here on the CPU), odd widths included.
  EXPECT_TRUE(torch::equal(dropout_keep_mask_on(torch::kCPU, sizes, 0.3, 5), whole));
  EXPECT_TRUE(torch::equal(dropout_keep_mask_on(torch::kCPU, {2, 3, 4, 7}, 0.3, 5, 2), shard));
  EXPECT_TRUE(torch::equal(dropout_keep_mask_on(torch::kCPU, {3, 101, 333}, 0.1, 17), dropout_keep_mask({3, 101, 333}, 0.1, 17)));
}

namespace {

// Sums tensors over the threads that call it together, as an all-reduce over ranks would.
class ThreadSumReducer {
 public:
  explicit ThreadSumReducer(int parties) : parties_(parties) {}
  void sum(torch::Tensor& tensor) {
    std::unique_lock<std::mutex> lock(mutex_);
    const int64_t generation = generation_;
    total_ = arrived_ == 0 ? tensor.clone() : total_ + tensor;
    if (++arrived_ == parties_) {
      result_ = total_;
      arrived_ = 0;
      ++generation_;
      changed_.notify_all();
    } else {
      changed_.wait(lock, [&] { return generation_ != generation; });
    }
    tensor.copy_(result_);
  }

 private:
  int parties_, arrived_ = 0;
  int64_t generation_ = 0;
  torch::Tensor total_, result_;
  std::mutex mutex_;
  std::condition_variable changed_;
};

}  // namespace

TEST(LayerProbes, ShardedStepsEqualOneProcessStep) {
  const int64_t L = 3, B = 5, T = 9, H = 12;
  ProbeOptions options;
  options.learning_rate = 1e-2;
  LayerProbes whole(L, H, options, 4);
  std::vector<LayerProbes> ranks;  // copies of their own (a LayerProbes copy shares its tensors)
  for (int r = 0; r < 2; ++r) ranks.emplace_back(whole.weight().clone(), whole.bias().clone(), options);
  ThreadSumReducer reducer(2);
  for (int step = 0; step < 4; ++step) {
    auto batch = random_batch(L, B, T, H, 200 + step);
    auto expected = whole.train_step(batch.hidden, batch.mask, batch.start, batch.end, step);
    // Rank 0 holds rows 0..1 padded to their own length, rank 1 rows 2..4; on the last step rank 0 holds none.
    const int64_t split = step == 3 ? 0 : 2;
    std::vector<torch::Tensor> losses(2);
    std::vector<std::thread> threads;
    for (int r = 0; r < 2; ++r)
      threads.emplace_back([&, r] {
        const int64_t begin = r == 0 ? 0 : split, end = r == 0 ? split : B;
        const int64_t length = end > begin ? batch.mask.slice(0, begin, end).sum(1).max().item<int64_t>() : 0;
        ProbeBatchShard shard;
        shard.row_offset = begin;
        shard.global_rows = B;
        shard.all_reduce_sum = [&](torch::Tensor& t) { reducer.sum(t); };
        losses[r] = ranks[r].train_step(batch.hidden.slice(1, begin, end).slice(2, 0, length),
                                        batch.mask.slice(0, begin, end).slice(1, 0, length),
                                        batch.start.slice(0, begin, end), batch.end.slice(0, begin, end), step, shard)
                        .loss;
      });
    for (auto& thread : threads) thread.join();
    for (int r = 0; r < 2; ++r) {
      EXPECT_TRUE(torch::allclose(losses[r], expected.loss, 1e-5, 1e-6)) << "step " << step << " rank " << r;
      EXPECT_TRUE(torch::allclose(ranks[r].weight(), whole.weight(), 1e-5, 1e-6)) << "step " << step << " rank " << r;
      EXPECT_TRUE(torch::equal(ranks[0].weight(), ranks[1].weight())) << "ranks diverged at step " << step;
    }
  }
}

TEST(LayerProbes, LossIsIndependentOfPadding) {
  const int64_t L = 2, B = 3, T = 10, H = 8;
  auto batch = random_batch(L, B, T, H, 1);
  LayerProbes probes(L, H, ProbeOptions{}, 3);
  auto logits = probes.score(batch.hidden);
  auto loss = masked_cross_entropy(logits.select(-1, 0), batch.mask, batch.start);
  // Pad every row with 5 more positions holding garbage.
  auto padded_hidden = torch::cat({batch.hidden, torch::randn({L, B, 5, H}) * 100}, 2);
  auto padded_mask = torch::cat({batch.mask, torch::zeros({B, 5}, torch::kInt64)}, 1);
  auto padded_loss = masked_cross_entropy(probes.score(padded_hidden).select(-1, 0), padded_mask, batch.start);
  EXPECT_TRUE(torch::allclose(loss, padded_loss, 1e-6, 1e-6)) << loss << padded_loss;
}

TEST(LayerProbes, Bf16HiddenStatesTrainAsTheirExactFloatValues) {
  // A CPU bf16 encoder hands the probes bf16 states; they must train exactly as the same values in float32.
  const int64_t L = 3, B = 4, T = 12, H = 20;  // H not a multiple of the vector width
  ProbeOptions options;
  options.learning_rate = 1e-2;
  LayerProbes from_bf16(L, H, options, 5), from_float(L, H, options, 5);
  for (int step = 0; step < 3; ++step) {
    auto batch = random_batch(L, B, T, H, 300 + step);
    const auto bf16 = batch.hidden.to(torch::kBFloat16);
    auto a = from_bf16.train_step(bf16, batch.mask, batch.start, batch.end, step);
    auto b = from_float.train_step(bf16.to(torch::kFloat), batch.mask, batch.start, batch.end, step);
    EXPECT_TRUE(torch::equal(a.loss, b.loss)) << "step " << step;
  }
  EXPECT_TRUE(torch::equal(from_bf16.weight(), from_float.weight()));
  EXPECT_TRUE(torch::equal(from_bf16.bias(), from_float.bias()));
  EXPECT_TRUE(torch::equal(from_bf16.exp_avg_sq_weight(), from_float.exp_avg_sq_weight()));
}

TEST(LayerProbes, TargetsOutsideTheBatchAreErrors) {
  const int64_t L = 1, B = 2, T = 6, H = 4;
  auto batch = random_batch(L, B, T, H, 9);
  LayerProbes probes(L, H, ProbeOptions{}, 1);
  EXPECT_THROW(probes.train_step(batch.hidden, batch.mask, torch::tensor({int64_t{0}, T}), batch.end, 1), Error);
  EXPECT_THROW(probes.train_step(batch.hidden, batch.mask, batch.start, torch::tensor({int64_t{-1}, int64_t{0}}), 1), Error);
}

TEST(LayerProbes, LossFallsOnALearnableProblem) {
  // The answer start is the position whose hidden state carries a marker in
  // dimension 0; a linear probe can learn that.
  const int64_t L = 2, B = 16, T = 20, H = 8;
  ProbeOptions options;
  options.learning_rate = 5e-2;
  LayerProbes probes(L, H, options, 11);
  torch::manual_seed(0);
  double first = 0, last = 0;
  for (int step = 0; step < 200; ++step) {
    auto hidden = torch::randn({L, B, T, H});
    auto start = torch::randint(0, T, {B});
    hidden.select(-1, 0).scatter_(2, start.view({1, B, 1}).expand({L, B, 1}), 6.0);
    auto mask = torch::ones({B, T}, torch::kInt64);
    double loss = probes.train_step(hidden, mask, start, start, step).loss.mean().item<double>();
    if (step == 0) first = loss;
    last = loss;
  }
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
}

TEST(LayerProbes, ScoreShapeAndBadShapesAreErrors) {
  LayerProbes probes(4, 8, ProbeOptions{}, 1);
  EXPECT_EQ(probes.score(torch::randn({4, 2, 5, 8})).sizes(), (std::vector<int64_t>{4, 2, 5, 2}));
  EXPECT_THROW(LayerProbes(torch::zeros({4, 3, 8}), torch::zeros({4, 2}), ProbeOptions{}), Error);
}
