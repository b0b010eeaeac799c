// Probe architectures beyond the study's linear probe (probe_model.hpp): what a
// low-rank probe can express, the rank and MLP steps against autograd, sharded
// steps against one process, conditional probing's input, variant names and
// the probes file round trip.
#include <condition_variable>
#include <mutex>
#include <thread>

#include "layerprobe/core/common.hpp"
#include "layerprobe/probe/probe_model.hpp"
#include "layerprobe/probe/probe_store.hpp"
#include "layerprobe/probe/probe_variant.hpp"
#include "test_support.hpp"

using namespace layerprobe;

namespace {

struct ArchBatch {
  torch::Tensor hidden, mask, start, end;
};

ArchBatch arch_batch(int64_t L, int64_t B, int64_t T, int64_t H, uint64_t seed) {
  torch::manual_seed(seed);
  ArchBatch batch;
  batch.hidden = torch::randn({L, B, T, H});
  auto lengths = torch::randint(T / 2, T + 1, {B});
  batch.mask = (torch::arange(T).unsqueeze(0) < lengths.unsqueeze(1)).to(torch::kInt64);
  batch.start = (torch::rand({B}) * lengths.to(torch::kFloat)).to(torch::kInt64);
  batch.end = torch::minimum(batch.start + 1, lengths - 1);
  return batch;
}

// The probes' loss, (CE(start) + CE(end)) / 2 summed over layers, of scores [L,B,T,2] with autograd.
torch::Tensor reference_loss(const torch::Tensor& logits, const ArchBatch& batch) {
  auto masked = logits.masked_fill(batch.mask.eq(0).unsqueeze(0).unsqueeze(-1), -1e30);
  torch::Tensor total = torch::zeros({});
  for (int64_t l = 0; l < logits.size(0); ++l)
    for (int k = 0; k < 2; ++k)
      total = total + torch::nll_loss(torch::log_softmax(masked[l].select(-1, k), -1), k == 0 ? batch.start : batch.end) / 2;
  return total;
}

// One step of AdamW without bias correction after per-layer clipping, on reference tensors.
void reference_update(std::vector<torch::Tensor>& params, std::vector<torch::Tensor>& m, std::vector<torch::Tensor>& v,
                      const ProbeOptions& o) {
  torch::NoGradGuard no_grad;
  auto squares = torch::zeros({params.front().size(0)});
  for (auto& p : params) squares += p.grad().pow(2).reshape({p.size(0), -1}).sum(1);
  auto coef = (o.max_grad_norm / (squares.sqrt() + 1e-6)).clamp_max(1.0);
  for (size_t i = 0; i < params.size(); ++i) {
    std::vector<int64_t> shape(static_cast<size_t>(params[i].dim()), 1);
    shape[0] = params[i].size(0);
    auto g = params[i].grad() * coef.view(shape);
    m[i].mul_(o.beta1).add_(g, 1 - o.beta1);
    v[i].mul_(o.beta2).addcmul_(g, g, 1 - o.beta2);
    params[i].addcdiv_(m[i], v[i].sqrt() + o.eps, -o.learning_rate);
  }
}

// Steps `model` and an autograd reference of `forward` (over the model's own initial tensors) on the same
// batches, dropout included, and compares every parameter.
void expect_steps_match_autograd(ProbeModel& model, const std::vector<std::string>& names,
                                 const std::function<torch::Tensor(const std::vector<torch::Tensor>&, const torch::Tensor&)>& forward,
                                 const ProbeOptions& options, int64_t L, int64_t H) {
  std::vector<torch::Tensor> params, m, v;
  for (const auto& name : names) {
    params.push_back(model.tensors().at(name).clone().requires_grad_(true));
    m.push_back(torch::zeros_like(params.back()));
    v.push_back(torch::zeros_like(params.back()));
  }
  for (int step = 0; step < 4; ++step) {
    auto batch = arch_batch(L, 3, 9, H, 40 + step);
    auto dropped = batch.hidden * dropout_keep_mask(batch.hidden.sizes(), options.dropout, step) / (1 - options.dropout);
    auto loss = model.train_step(batch.hidden, batch.mask, batch.start, batch.end, step).loss;
    for (auto& p : params) p.mutable_grad() = torch::Tensor();
    auto expected = reference_loss(forward(params, dropped), batch);
    expected.backward();
    EXPECT_NEAR(loss.sum().item<double>(), expected.item<double>(), 1e-4) << "step " << step;
    reference_update(params, m, v, options);
  }
  // The heads' output biases shift a softmax over positions, which ignores them: their gradient is rounding
  // noise that Adam turns into steps of up to the learning rate, so they agree only to steps x lr (as in
  // LayerProbes.FusedStepEqualsPerLayerLoop). Everything else carries the function and must agree tightly.
  for (size_t i = 0; i < names.size(); ++i)
    EXPECT_LE(test_support::max_diff(model.tensors().at(names[i]), params[i].detach()),
              names[i] == "bias" ? 4 * options.learning_rate * 1.01 : 2e-5)
        << names[i];
}

}  // namespace

TEST(ProbeArchitectures, SpecsParseAndCountParameters) {
  EXPECT_EQ(ProbeArch::parse("linear").parameters(768), 2 * 768 + 2);
  EXPECT_EQ(ProbeArch::parse("rank:8").parameters(768), 8 * (768 + 2) + 2);
  EXPECT_EQ(ProbeArch::parse("mlp:256").parameters(768), 256 * 769 + 2 * 256 + 2);
  EXPECT_EQ(ProbeArch::parse("mlp:256").name(), "mlp_256");
  for (const char* bad : {"", "rank", "rank:0", "mlp:-1", "linear:2", "cnn:3", "rank:1x"}) {
    try {
      ProbeArch::parse(bad);
      FAIL() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.exit_code(), 2);
    }
  }
  EXPECT_THROW(parse_probe_archs({"linear", "rank:2", "linear"}), Error);
}

TEST(ProbeArchitectures, VariantNamesRoundTripAndTheStudysProbeHasNone) {
  EXPECT_EQ(ProbeVariant{}.name(), "");
  EXPECT_FALSE(ProbeVariant::from_name("").has_value());
  EXPECT_FALSE(ProbeVariant::from_name("linear").has_value());  // the default has no directory
  EXPECT_FALSE(ProbeVariant::from_name("seed_1").has_value());
  EXPECT_FALSE(ProbeVariant::from_name("rank_0").has_value());
  const auto variants = probe_variants({ProbeArch::parse("rank:1"), ProbeArch{}}, true, true);
  ASSERT_EQ(variants.size(), 2u * 4);
  for (const auto& v : variants) {
    if (v.is_default()) continue;
    auto back = ProbeVariant::from_name(v.name());
    ASSERT_TRUE(back.has_value()) << v.name();
    EXPECT_TRUE(*back == v) << v.name();
    nlohmann::json options;
    v.add_to(options);
    EXPECT_TRUE(ProbeVariant::from_training_options(options, "x") == v) << options.dump();
  }
  EXPECT_EQ(ProbeVariant::from_name("linear.control_task")->task, ProbeTask::control_task);
  EXPECT_EQ(ProbeVariant::from_name("mlp_4.embeddings")->first_layer(), 0);
  nlohmann::json study;
  ProbeVariant{}.add_to(study);
  EXPECT_TRUE(study.is_null());  // the study's probes record nothing new
}

TEST(ProbeArchitectures, AFullRankLowRankProbeExpressesExactlyTheLinearProbe) {
  const int64_t L = 3, H = 10;
  ProbeOptions options;
  auto linear = make_probe_model(ProbeArch{}, L, H, options, 5);
  auto hidden = torch::randn({L, 2, 7, H});
  // Any linear probe W [2,H] is a rank-2 probe: D = W, U = I (saved tensors of a rank:2 model).
  auto tensors = linear->tensors();
  std::map<std::string, torch::Tensor> rank2 = {{"down", tensors.at("weight")},
                                                {"weight", torch::eye(2).expand({L, 2, 2}).contiguous()},
                                                {"bias", tensors.at("bias")}};
  for (auto [name, like] : std::vector<std::pair<std::string, std::string>>{{"down", "down"}, {"weight", "weight"}, {"bias", "bias"}}) {
    rank2["optimizer.exp_avg." + name] = torch::zeros_like(rank2.at(like));
    rank2["optimizer.exp_avg_sq." + name] = torch::zeros_like(rank2.at(like));
  }
  auto as_rank = probe_model_from_tensors(ProbeArch::parse("rank:2"), rank2, options, "test");
  EXPECT_LE(test_support::max_diff(as_rank->score(hidden), linear->score(hidden)), 1e-5);
  // ... and every rank-R probe's scores are a linear probe's: W = U D.
  auto rank8 = make_probe_model(ProbeArch::parse("rank:8"), L, H, options, 6);
  auto r = rank8->tensors();
  LayerProbes equivalent(torch::bmm(r.at("weight"), r.at("down")), r.at("bias"), options);
  EXPECT_LE(test_support::max_diff(rank8->score(hidden), equivalent.score(hidden)), 1e-5);
  EXPECT_NEAR(rank8->nuclear_norms()[1],
              at::linalg_svdvals(torch::bmm(r.at("weight"), r.at("down"))[1]).sum().item<double>(), 1e-5);
  // rank:1 ties the heads: its 2 x H map has one non-zero singular value.
  auto rank1 = make_probe_model(ProbeArch::parse("rank:1"), L, H, options, 7);
  auto t = rank1->tensors();
  auto singular = at::linalg_svdvals(torch::bmm(t.at("weight"), t.at("down")));
  EXPECT_LE(singular.select(1, 1).abs().max().item<double>(), 1e-5 * singular.select(1, 0).min().item<double>());
  // The linear probe's nuclear norm is the sum of its singular values.
  EXPECT_NEAR(linear->nuclear_norms()[2], at::linalg_svdvals(tensors.at("weight")[2]).sum().item<double>(), 1e-6);
}

TEST(ProbeArchitectures, RankStepEqualsAutogradThroughTheFactorisation) {
  const int64_t L = 2, H = 12;
  ProbeOptions options;
  options.learning_rate = 1e-2;
  options.max_grad_norm = 0.05;  // small enough that clipping acts
  auto model = make_probe_model(ProbeArch::parse("rank:3"), L, H, options, 11);
  expect_steps_match_autograd(
      *model, {"down", "weight", "bias"},
      [](const std::vector<torch::Tensor>& p, const torch::Tensor& x) {
        auto w = torch::bmm(p[1], p[0]);  // [L,2,H]
        return torch::einsum("lbth,lkh->lbtk", {x, w}) + p[2].unsqueeze(1).unsqueeze(1);
      },
      options, L, H);
}

TEST(ProbeArchitectures, MlpStepEqualsAutograd) {
  const int64_t L = 2, H = 12;
  ProbeOptions options;
  options.learning_rate = 1e-2;
  options.max_grad_norm = 0.05;
  auto model = make_probe_model(ProbeArch::parse("mlp:5"), L, H, options, 12);
  expect_steps_match_autograd(
      *model, {"hidden.weight", "hidden.bias", "weight", "bias"},
      [](const std::vector<torch::Tensor>& p, const torch::Tensor& x) {
        auto a = torch::relu(torch::einsum("lbth,lwh->lbtw", {x, p[0]}) + p[1].unsqueeze(1).unsqueeze(1));
        return torch::einsum("lbtw,lkw->lbtk", {a, p[2]}) + p[3].unsqueeze(1).unsqueeze(1);
      },
      options, L, H);
}

namespace {

// Sums tensors over the threads that call it together, as an all-reduce over ranks would.
class ArchThreadSum {
 public:
  explicit ArchThreadSum(int parties) : parties_(parties) {}
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

TEST(ProbeArchitectures, ShardedStepsEqualOneProcessForEveryArchitecture) {
  const int64_t L = 2, B = 5, T = 8, H = 10;
  ProbeOptions options;
  options.learning_rate = 1e-2;
  for (const char* spec : {"rank:2", "mlp:6"}) {
    const auto arch = ProbeArch::parse(spec);
    auto whole = make_probe_model(arch, L, H, options, 3);
    std::vector<std::unique_ptr<ProbeModel>> ranks;
    for (int r = 0; r < 2; ++r) {
      std::map<std::string, torch::Tensor> copy;
      for (const auto& [name, t] : whole->tensors()) copy[name] = t.clone();
      ranks.push_back(probe_model_from_tensors(arch, copy, options, "rank"));
    }
    ArchThreadSum reducer(2);
    for (int step = 0; step < 3; ++step) {
      auto batch = arch_batch(L, B, T, H, 70 + step);
      auto expected = whole->train_step(batch.hidden, batch.mask, batch.start, batch.end, step);
      const int64_t split = step == 2 ? 0 : 2;  // on the last step rank 0 holds no rows
      std::vector<torch::Tensor> losses(2);
      std::vector<std::thread> threads;
      for (int r = 0; r < 2; ++r)
        threads.emplace_back([&, r] {
          const int64_t begin = r == 0 ? 0 : split, end = r == 0 ? split : B;
          ProbeBatchShard shard;
          shard.row_offset = begin;
          shard.global_rows = B;
          shard.all_reduce_sum = [&](torch::Tensor& t) { reducer.sum(t); };
          losses[r] = ranks[r]->train_step(batch.hidden.slice(1, begin, end), batch.mask.slice(0, begin, end),
                                           batch.start.slice(0, begin, end), batch.end.slice(0, begin, end), step, shard)
                          .loss;
        });
      for (auto& thread : threads) thread.join();
      for (int r = 0; r < 2; ++r) {
        EXPECT_TRUE(torch::allclose(losses[r], expected.loss, 1e-5, 1e-6)) << spec << " step " << step;
        for (const auto& [name, t] : whole->tensors())  // the output bias: steps x lr (see above)
          if (name.find("exp_avg") == std::string::npos)
            EXPECT_LE(test_support::max_diff(ranks[r]->tensors().at(name), t),
                      name == "bias" ? (step + 1) * options.learning_rate * 1.01 : 1e-5)
                << spec << " " << name;
      }
    }
  }
}

TEST(ProbeArchitectures, ConditionalInputIsEachLayerBesideLayerZero) {
  auto layers = torch::arange(2 * 1 * 2 * 3, torch::kFloat).view({2, 1, 2, 3});
  auto layer0 = torch::full({1, 1, 2, 3}, -1.0f);
  layer0[0][0][1] = -2.0f;
  auto input = conditional_input(layers, layer0);
  ASSERT_EQ(input.sizes(), (std::vector<int64_t>{2, 1, 2, 6}));
  // Row (layer 1, position 1): layer 1's state at position 1, then layer 0's at position 1.
  EXPECT_TRUE(torch::equal(input[1][0][1], torch::tensor({9.0f, 10.0f, 11.0f, -2.0f, -2.0f, -2.0f})));
  EXPECT_TRUE(torch::equal(input[0][0][0], torch::tensor({0.0f, 1.0f, 2.0f, -1.0f, -1.0f, -1.0f})));
  EXPECT_THROW(conditional_input(layers, torch::zeros({1, 1, 3, 3})), Error);
  // A conditional linear probe on [h_l ; h_0] scores w_l . h_l + w_0 . h_0 + b.
  ProbeOptions options;
  auto probe = make_probe_model(ProbeArch{}, 2, 6, options, 4);
  const auto w = probe->tensors().at("weight"), b = probe->tensors().at("bias");
  const auto expected = torch::einsum("lbth,lkh->lbtk", {layers, w.slice(2, 0, 3)}) +
                        torch::einsum("bth,lkh->lbtk", {layer0[0], w.slice(2, 3, 6)}) + b.unsqueeze(1).unsqueeze(1);
  EXPECT_LE(test_support::max_diff(probe->score(input), expected), 1e-5);
}

TEST(ProbeArchitectures, ProbesFilesRoundTripAndTheLinearFormatIsUnchanged) {
  const auto dir = test_support::scratch_dir("probe_architectures");
  ProbeMetadata metadata;
  metadata.kind = "fine_tuned";
  metadata.model_path = "/m";
  metadata.model_config = nlohmann::json::object();
  metadata.epoch = 1;
  metadata.mean_loss = {1.0, 2.0};
  ProbeOptions options;
  // A linear model saves exactly what save_probes writes.
  LayerProbes linear(2, 4, options, 9);
  save_probes(dir / "a.safetensors", linear, metadata);
  save_probe_model(dir / "b.safetensors", *linear_probe_model(linear), metadata);
  EXPECT_EQ(read_file(dir / "a.safetensors"), read_file(dir / "b.safetensors"));
  for (const char* spec : {"rank:3", "mlp:5"}) {
    const auto arch = ProbeArch::parse(spec);
    auto model = make_probe_model(arch, 2, 4, options, 10);
    auto batch = arch_batch(2, 2, 5, 4, 1);
    model->train_step(batch.hidden, batch.mask, batch.start, batch.end, 1);  // moments become non-zero
    auto meta = metadata;
    ProbeVariant{arch, ProbeTask::control_task, ProbeInput::layer}.add_to(meta.training_options);
    const auto path = dir / (arch.name() + ".safetensors");
    save_probe_model(path, *model, meta);
    auto stored = load_probe_model(path);
    EXPECT_EQ(stored.probes->arch().spec(), spec);
    EXPECT_EQ(stored.variant.task, ProbeTask::control_task);
    for (const auto& [name, t] : model->tensors()) EXPECT_TRUE(torch::equal(stored.probes->tensors().at(name), t)) << name;
    EXPECT_THROW(load_probes(path), Error);  // not linear probes
  }
}
