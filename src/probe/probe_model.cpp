#include "layerprobe/probe/probe_model.hpp"

#include <cmath>
#include <limits>

#include "layerprobe/core/common.hpp"

#ifdef LAYERPROBE_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace layerprobe {

// Named (not anonymous) so that a unity build's neighbours cannot collide with these helpers.
namespace probe_model_detail {

#ifdef LAYERPROBE_WITH_ONEDNN
dnnl::engine& probe_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::memory::desc strided_desc(const torch::Tensor& t) {
  return dnnl::memory::desc({t.size(0), t.size(1), t.size(2)}, dnnl::memory::data_type::f32,
                            {t.stride(0), t.stride(1), t.stride(2)});
}
#endif

// AdamW without bias correction (transformers' correct_bias=False), as LayerProbes applies it.
void adamw(torch::Tensor& param, torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq, const torch::Tensor& grad,
           const ProbeOptions& o) {
  exp_avg.mul_(o.beta1).add_(grad, 1.0 - o.beta1);
  exp_avg_sq.mul_(o.beta2).addcmul_(grad, grad, 1.0 - o.beta2);
  param.addcdiv_(exp_avg, exp_avg_sq.sqrt().add_(o.eps), -o.learning_rate);
  if (o.weight_decay > 0) param.add_(param, -o.learning_rate * o.weight_decay);
}

// One trained tensor and its two moments.
struct Parameter {
  std::string name;
  torch::Tensor value, exp_avg, exp_avg_sq;
};

Parameter fresh(const std::string& name, torch::Tensor value) {
  return {name, value, torch::zeros_like(value), torch::zeros_like(value)};
}

const torch::Tensor& required(const std::map<std::string, torch::Tensor>& tensors, const std::string& name,
                              const std::string& source) {
  auto it = tensors.find(name);
  if (it == tensors.end()) throw Error("probes file '" + source + "' lacks tensor '" + name + "'");
  return it->second;
}

Parameter loaded(const std::map<std::string, torch::Tensor>& tensors, const std::string& name,
                 const std::vector<int64_t>& shape, const std::string& source) {
  Parameter p;
  p.name = name;
  for (auto [slot, key] : {std::pair{&p.value, name}, std::pair{&p.exp_avg, "optimizer.exp_avg." + name},
                           std::pair{&p.exp_avg_sq, "optimizer.exp_avg_sq." + name}}) {
    const auto& t = required(tensors, key, source);
    if (t.sizes() != c10::IntArrayRef(shape))
      throw Error("probes file '" + source + "': tensor '" + key + "' has shape " + c10::str(t.sizes()) +
                  ", expected " + c10::str(c10::IntArrayRef(shape)));
    *slot = t.to(torch::kFloat32).contiguous();
  }
  return p;
}

// Sum of the singular values of each [2, H] matrix of w [L,2,H], from the 2x2 Gram matrix w w^T:
// sigma_1,2 = sqrt of its eigenvalues, so sigma_1 + sigma_2 = sqrt(trace + 2 sqrt(det)).
std::vector<double> nuclear_norms_of(const torch::Tensor& w) {
  const auto g = torch::bmm(w, w.transpose(1, 2)).to(torch::kCPU, torch::kDouble);
  std::vector<double> out;
  for (int64_t l = 0; l < g.size(0); ++l) {
    const double a = g[l][0][0].item<double>(), b = g[l][0][1].item<double>(), d = g[l][1][1].item<double>();
    const double det = std::max(0.0, a * d - b * b);
    out.push_back(std::sqrt(std::max(0.0, a + d + 2 * std::sqrt(det))));
  }
  return out;
}

// The probes' gradient-norm clipping per layer over all of a layer's parameters' gradients.
void clip_per_layer(std::vector<torch::Tensor>& grads, double max_norm) {
  auto squares = torch::zeros({grads.front().size(0)}, grads.front().options());
  for (const auto& g : grads) squares += g.pow(2).reshape({g.size(0), -1}).sum(1);
  auto coef = (max_norm / (squares.sqrt() + 1e-6)).clamp_max(1.0);
  for (auto& g : grads) {
    std::vector<int64_t> shape(static_cast<size_t>(g.dim()), 1);
    shape[0] = g.size(0);
    g = g * coef.view(shape);
  }
}

class LinearModel : public ProbeModel {
 public:
  explicit LinearModel(LayerProbes probes) : probes_(std::move(probes)) {}
  ProbeArch arch() const override { return {}; }
  int64_t layers() const override { return probes_.layers(); }
  int64_t input_size() const override { return probes_.hidden_size(); }
  torch::Tensor score(const torch::Tensor& hidden) const override { return probes_.score(hidden); }
  ProbeStepResult train_step(const torch::Tensor& hidden, const torch::Tensor& mask, const torch::Tensor& start,
                             const torch::Tensor& end, uint64_t seed, const ProbeBatchShard& shard) override {
    return probes_.train_step(hidden, mask, start, end, seed, shard);
  }
  std::map<std::string, torch::Tensor> tensors() const override {
    return {{"weight", probes_.weight()},
            {"bias", probes_.bias()},
            {"optimizer.exp_avg.weight", probes_.exp_avg_weight()},
            {"optimizer.exp_avg_sq.weight", probes_.exp_avg_sq_weight()},
            {"optimizer.exp_avg.bias", probes_.exp_avg_bias()},
            {"optimizer.exp_avg_sq.bias", probes_.exp_avg_sq_bias()}};
  }
  void to(torch::Device device) override { probes_.to(device); }
  std::vector<double> nuclear_norms() const override { return nuclear_norms_of(probes_.weight()); }
  const LayerProbes* linear() const override { return &probes_; }

 private:
  LayerProbes probes_;
};

// The parameters of a rank or mlp model, in save order, with the shared update.
class FactorModel : public ProbeModel {
 public:
  FactorModel(ProbeArch arch, const ProbeOptions& options, std::vector<Parameter> parameters)
      : arch_(arch), options_(options), parameters_(std::move(parameters)) {}
  ProbeArch arch() const override { return arch_; }
  std::map<std::string, torch::Tensor> tensors() const override {
    std::map<std::string, torch::Tensor> out;
    for (const auto& p : parameters_) {
      out[p.name] = p.value;
      out["optimizer.exp_avg." + p.name] = p.exp_avg;
      out["optimizer.exp_avg_sq." + p.name] = p.exp_avg_sq;
    }
    return out;
  }
  void to(torch::Device device) override {
    for (auto& p : parameters_)
      for (auto* t : {&p.value, &p.exp_avg, &p.exp_avg_sq}) *t = t->to(device);
  }

 protected:
  const torch::Tensor& value(size_t i) const { return parameters_[i].value; }
  // Clips the gradients (in parameter order) per layer and applies AdamW.
  void update(std::vector<torch::Tensor> grads) {
    clip_per_layer(grads, options_.max_grad_norm);
    for (size_t i = 0; i < parameters_.size(); ++i)
      adamw(parameters_[i].value, parameters_[i].exp_avg, parameters_[i].exp_avg_sq, grads[i], options_);
  }
  const ProbeOptions& options() const { return options_; }

 private:
  ProbeArch arch_;
  ProbeOptions options_;
  std::vector<Parameter> parameters_;
};

// rank:R: parameters down [L,R,H], weight [L,2,R], bias [L,2]; the scores are (weight down) h + bias.
class RankModel : public FactorModel {
 public:
  using FactorModel::FactorModel;
  int64_t layers() const override { return value(0).size(0); }
  int64_t input_size() const override { return value(0).size(2); }
  torch::Tensor effective_weight() const { return torch::bmm(value(1), value(0)); }  // [L,2,H]
  torch::Tensor score(const torch::Tensor& hidden) const override {
    return LayerProbes(effective_weight(), value(2), options()).score(hidden);
  }
  ProbeStepResult train_step(const torch::Tensor& hidden, const torch::Tensor& mask, const torch::Tensor& start,
                             const torch::Tensor& end, uint64_t seed, const ProbeBatchShard& shard) override {
    torch::InferenceMode inference;
    const auto w = effective_weight().contiguous();
    auto step = linear_probe_gradients(hidden, mask, start, end, w, value(2), options().dropout, seed, shard);
    // W = U D: dL/dU = dL/dW D^T, dL/dD = U^T dL/dW.
    auto grad_down = torch::bmm(value(1).transpose(1, 2), step.grad_w);
    auto grad_up = torch::bmm(step.grad_w, value(0).transpose(1, 2));
    update({grad_down, grad_up, step.grad_b});
    return {step.loss};
  }
  std::vector<double> nuclear_norms() const override { return nuclear_norms_of(effective_weight()); }
};

// mlp:W: parameters hidden.weight [L,W,H], hidden.bias [L,W], weight [L,2,W], bias [L,2].
class MlpModel : public FactorModel {
 public:
  using FactorModel::FactorModel;
  int64_t layers() const override { return value(0).size(0); }
  int64_t input_size() const override { return value(0).size(2); }
  torch::Tensor score(const torch::Tensor& hidden) const override {
    torch::InferenceMode inference;
    const int64_t L = hidden.size(0), B = hidden.size(1), T = hidden.size(2);
    auto x = hidden.to(torch::kFloat32).reshape({L, B * T, hidden.size(3)});
    auto r = pre_activation(x).relu_();
    return output(r).view({L, B, T, 2});
  }
  ProbeStepResult train_step(const torch::Tensor& hidden, const torch::Tensor& mask, const torch::Tensor& start,
                             const torch::Tensor& end, uint64_t seed, const ProbeBatchShard& shard) override {
    torch::InferenceMode inference;
    const int64_t L = layers(), B = hidden.size(1), W = value(0).size(1);
    const int64_t global_rows = shard.global_rows > 0 ? shard.global_rows : B;
    std::vector<torch::Tensor> grads;
    torch::Tensor loss;
    if (B == 0) {  // a rank holding none of the global batch adds nothing
      for (size_t i = 0; i < 4; ++i) grads.push_back(torch::zeros_like(value(i)));
      loss = torch::zeros({L}, value(0).options());
    } else {
      const int64_t T = hidden.size(2), N = B * T;
      auto x = dropped_out(hidden, options().dropout, seed, shard.row_offset).reshape({L, N, hidden.size(3)});
      auto a = pre_activation(x);  // [L,N,W]
      auto r = torch::relu(a);
      auto logits = output(r).view({L, B, T, 2});
      auto lg = probe_loss_gradient(logits, mask, start, end, global_rows);
      auto g = lg.gradient.view({L, N, 2});
      auto grad_w2 = torch::bmm(g.transpose(1, 2), r);                // [L,2,W]
      auto grad_b2 = g.sum(1);                                          // [L,2]
      auto grad_a = torch::bmm(g, value(2)).mul_(a.gt(0));              // [L,N,W]
      auto grad_w1 = probe_bmm(grad_a.transpose(1, 2), x);              // [L,W,H]
      auto grad_b1 = grad_a.sum(1);                                     // [L,W]
      grads = {grad_w1, grad_b1, grad_w2, grad_b2};
      loss = lg.loss;
      (void)W;
    }
    std::vector<torch::Tensor*> reduced = {&grads[0], &grads[1], &grads[2], &grads[3], &loss};
    sum_over_ranks(reduced, shard.all_reduce_sum);
    update(grads);
    return {loss};
  }
  std::vector<double> nuclear_norms() const override { return {}; }

 private:
  torch::Tensor pre_activation(const torch::Tensor& x) const {  // [L,N,H] -> W1 x + b1, [L,N,W]
    return probe_bmm(x, value(0).transpose(1, 2)).add_(value(1).unsqueeze(1));
  }
  torch::Tensor output(const torch::Tensor& r) const {  // [L,N,W] -> w2 r + b2, [L,N,2]
    return torch::baddbmm(value(3).unsqueeze(1), r, value(2).transpose(1, 2));
  }
};

// tuned_lens: parameters translator.weight [L,H,H] (A) and translator.bias [L,H] (b).
class TunedLensModel : public FactorModel {
 public:
  using FactorModel::FactorModel;
  int64_t layers() const override { return value(0).size(0); }
  int64_t input_size() const override { return value(0).size(2); }
  void attach_model(QaModel* model) override { model_ = model; }
  torch::Tensor score(const torch::Tensor& hidden) const override {
    torch::InferenceMode inference;
    const auto x = translated(hidden.to(torch::kFloat32));
    std::vector<torch::Tensor> scores;
    for (int64_t l = 0; l < layers(); ++l) {
      auto [start, end] = lens_model().head_logits_at(x[l], l + 1);
      scores.push_back(torch::stack({start.to(torch::kFloat32), end.to(torch::kFloat32)}, -1));
    }
    return torch::stack(scores);  // [L,B,T,2]
  }
  ProbeStepResult train_step(const torch::Tensor& hidden, const torch::Tensor& mask, const torch::Tensor& /*start*/,
                             const torch::Tensor& /*end*/, uint64_t /*seed*/, const ProbeBatchShard& shard) override {
    const int64_t L = layers(), B = hidden.size(1), H = input_size();
    const int64_t global_rows = shard.global_rows > 0 ? shard.global_rows : B;
    torch::Tensor grad_a = torch::zeros_like(value(0)), grad_b = torch::zeros_like(value(1)),
                  loss = torch::zeros({L}, value(0).options());
    if (B > 0) {
      const int64_t T = hidden.size(2);
      torch::Tensor h, x, target_start, target_end;
      {
        torch::InferenceMode inference;
        h = hidden.to(torch::kFloat32);
        x = translated(h);
        // The targets: the model's own last-layer distributions (its answers' scores).
        auto [start, end] = lens_model().head_logits_at(h[L - 1], L);
        target_start = masked_log_distribution(start.to(torch::kFloat32), mask);
        target_end = masked_log_distribution(end.to(torch::kFloat32), mask);
      }
      // The head (and the final norm, where the family has one) under autograd, for d KL / d x.
      auto leaf = x.clone().requires_grad_(true);
      const auto keep = mask.ne(0).unsqueeze(0);
      auto total = torch::zeros({}, leaf.options());
      std::vector<torch::Tensor> per_layer;
      for (int64_t l = 0; l < L; ++l) {
        auto [start, end] = lens_model().head_logits_at(leaf[l], l + 1);
        auto kl = [&](const torch::Tensor& target, const torch::Tensor& logits) {
          const auto log_q = masked_log_distribution(logits.to(torch::kFloat32), mask);
          const auto terms = torch::where(keep[0], target.exp() * (target - log_q), torch::zeros_like(log_q));
          return terms.sum() / static_cast<double>(global_rows);
        };
        auto layer_loss = (kl(target_start, start) + kl(target_end, end)) / 2;
        per_layer.push_back(layer_loss.detach());
        total = total + layer_loss;
      }
      // The gradient with respect to the translated states only: nothing accumulates in the (frozen) model.
      const auto grad_leaf = torch::autograd::grad({total}, {leaf})[0];
      torch::InferenceMode inference;
      const auto grad_x = grad_leaf.reshape({L, B * T, H});
      grad_a = probe_bmm(grad_x.transpose(1, 2), h.reshape({L, B * T, H}));  // d/dA of A h: g h^T
      grad_b = grad_x.sum(1);
      loss = torch::stack(per_layer);
    }
    std::vector<torch::Tensor*> reduced = {&grad_a, &grad_b, &loss};
    sum_over_ranks(reduced, shard.all_reduce_sum);
    torch::InferenceMode inference;
    update({grad_a, grad_b});
    return {loss};
  }
  std::vector<double> nuclear_norms() const override { return {}; }

 private:
  QaModel& lens_model() const {
    if (!model_) throw Error("the tuned lens has no model attached (attach_model)");
    return *model_;
  }
  // h [L,B,T,H] -> h + A h + b per layer.
  torch::Tensor translated(const torch::Tensor& h) const {
    const int64_t L = h.size(0), B = h.size(1), T = h.size(2), H = h.size(3);
    const auto flat = h.reshape({L, B * T, H});
    return (flat + probe_bmm(flat, value(0).transpose(1, 2)) + value(1).unsqueeze(1)).view({L, B, T, H});
  }
  // log softmax over each row's unmasked positions ([B,T]; -inf at padding).
  static torch::Tensor masked_log_distribution(const torch::Tensor& logits, const torch::Tensor& mask) {
    return torch::log_softmax(logits.masked_fill(mask.eq(0), -std::numeric_limits<float>::infinity()), -1);
  }

  QaModel* model_ = nullptr;
};

}  // namespace probe_model_detail

namespace pmd = probe_model_detail;

torch::Tensor probe_bmm(const torch::Tensor& a_in, const torch::Tensor& b_in) {
#ifdef LAYERPROBE_WITH_ONEDNN
  if (a_in.is_cpu() && b_in.is_cpu() && a_in.size(0) > 0 && a_in.size(1) > 0 && a_in.size(2) > 0 && b_in.size(2) > 0) {
    const auto a = a_in.to(torch::kFloat32), b = b_in.to(torch::kFloat32);
    auto c = torch::empty({a.size(0), a.size(1), b.size(2)}, a.options());
    const auto dst = pmd::strided_desc(c);
    const dnnl::matmul::primitive_desc primitive(dnnl::matmul::desc(pmd::strided_desc(a), pmd::strided_desc(b), dst),
                                                 pmd::probe_engine());
    dnnl::stream stream(pmd::probe_engine());
    dnnl::matmul(primitive).execute(
        stream, {{DNNL_ARG_SRC, dnnl::memory(pmd::strided_desc(a), pmd::probe_engine(), a.data_ptr())},
                 {DNNL_ARG_WEIGHTS, dnnl::memory(pmd::strided_desc(b), pmd::probe_engine(), b.data_ptr())},
                 {DNNL_ARG_DST, dnnl::memory(dst, pmd::probe_engine(), c.data_ptr())}});
    stream.wait();
    return c;
  }
#endif
  return torch::bmm(a_in.to(torch::kFloat32), b_in.to(torch::kFloat32));
}

torch::Tensor conditional_input(const torch::Tensor& layers, const torch::Tensor& layer0) {
  if (layers.dim() != 4 || layer0.dim() != 4 || layer0.size(0) != 1 || layers.sizes().slice(1) != layer0.sizes().slice(1))
    throw Error("conditional probing needs layers [L,B,T,H] and layer 0 [1,B,T,H], got " + c10::str(layers.sizes()) +
                " and " + c10::str(layer0.sizes()));
  return torch::cat({layers, layer0.expand({layers.size(0), -1, -1, -1}).to(layers.scalar_type())}, -1);
}

std::unique_ptr<ProbeModel> linear_probe_model(const LayerProbes& probes) {
  return std::make_unique<pmd::LinearModel>(probes);
}

std::unique_ptr<ProbeModel> make_probe_model(const ProbeArch& arch, int64_t layers, int64_t input,
                                             const ProbeOptions& options, uint64_t seed) {
  if (arch.kind == ProbeArch::Kind::linear) return linear_probe_model(LayerProbes(layers, input, options, seed));
  auto generator = torch::make_generator<torch::CPUGeneratorImpl>(seed);
  auto normal = [&](std::vector<int64_t> shape, double std) {
    auto t = torch::empty(shape, torch::kFloat32);
    t.normal_(0.0, std, generator);
    return t;
  };
  const int64_t width = arch.width;
  if (arch.kind == ProbeArch::Kind::tuned_lens)
    return std::make_unique<pmd::TunedLensModel>(
        arch, options,
        std::vector<pmd::Parameter>{pmd::fresh("translator.weight", torch::zeros({layers, input, input})),
                                    pmd::fresh("translator.bias", torch::zeros({layers, input}))});
  if (arch.kind == ProbeArch::Kind::rank) {
    auto down = normal({layers, width, input}, options.init_std);
    auto up = normal({layers, 2, width}, 1.0 / std::sqrt(static_cast<double>(width)));
    return std::make_unique<pmd::RankModel>(
        arch, options, std::vector<pmd::Parameter>{pmd::fresh("down", down), pmd::fresh("weight", up), pmd::fresh("bias", torch::zeros({layers, 2}))});
  }
  auto w1 = normal({layers, width, input}, 1.0 / std::sqrt(static_cast<double>(input)));
  auto w2 = normal({layers, 2, width}, options.init_std);
  return std::make_unique<pmd::MlpModel>(arch, options,
                                    std::vector<pmd::Parameter>{pmd::fresh("hidden.weight", w1), pmd::fresh("hidden.bias", torch::zeros({layers, width})),
                                                           pmd::fresh("weight", w2), pmd::fresh("bias", torch::zeros({layers, 2}))});
}

std::unique_ptr<ProbeModel> probe_model_from_tensors(const ProbeArch& arch,
                                                     const std::map<std::string, torch::Tensor>& tensors,
                                                     const ProbeOptions& options, const std::string& source) {
  if (arch.kind == ProbeArch::Kind::linear) {
    LayerProbes probes(pmd::required(tensors, "weight", source), pmd::required(tensors, "bias", source), options);
    probes.set_optimizer_state(pmd::required(tensors, "optimizer.exp_avg.weight", source),
                               pmd::required(tensors, "optimizer.exp_avg_sq.weight", source),
                               pmd::required(tensors, "optimizer.exp_avg.bias", source),
                               pmd::required(tensors, "optimizer.exp_avg_sq.bias", source));
    return linear_probe_model(probes);
  }
  if (arch.kind == ProbeArch::Kind::tuned_lens) {
    const auto& weight = pmd::required(tensors, "translator.weight", source);
    if (weight.dim() != 3 || weight.size(1) != weight.size(2))
      throw Error("probes file '" + source + "': tensor 'translator.weight' has shape " + c10::str(weight.sizes()) +
                  " (expected [L,H,H])");
    const int64_t L = weight.size(0), H = weight.size(1);
    return std::make_unique<pmd::TunedLensModel>(
        arch, options,
        std::vector<pmd::Parameter>{pmd::loaded(tensors, "translator.weight", {L, H, H}, source),
                                    pmd::loaded(tensors, "translator.bias", {L, H}, source)});
  }
  const std::string first = arch.kind == ProbeArch::Kind::rank ? "down" : "hidden.weight";
  const auto& shape_source = pmd::required(tensors, first, source);
  if (shape_source.dim() != 3 || shape_source.size(1) != arch.width)
    throw Error("probes file '" + source + "': tensor '" + first + "' has shape " + c10::str(shape_source.sizes()) +
                " but the probes are " + arch.spec() + " (expected [L," + std::to_string(arch.width) + ",H])");
  const int64_t L = shape_source.size(0), W = arch.width, H = shape_source.size(2);
  if (arch.kind == ProbeArch::Kind::rank)
    return std::make_unique<pmd::RankModel>(arch, options,
                                       std::vector<pmd::Parameter>{pmd::loaded(tensors, "down", {L, W, H}, source),
                                                              pmd::loaded(tensors, "weight", {L, 2, W}, source),
                                                              pmd::loaded(tensors, "bias", {L, 2}, source)});
  return std::make_unique<pmd::MlpModel>(arch, options,
                                    std::vector<pmd::Parameter>{pmd::loaded(tensors, "hidden.weight", {L, W, H}, source),
                                                           pmd::loaded(tensors, "hidden.bias", {L, W}, source),
                                                           pmd::loaded(tensors, "weight", {L, 2, W}, source),
                                                           pmd::loaded(tensors, "bias", {L, 2}, source)});
}

}  // namespace layerprobe
