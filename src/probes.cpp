#include "layerprobe/probes.hpp"

#include "layerprobe/common.hpp"

namespace layerprobe {

LayerProbes::LayerProbes(int64_t layers, int64_t hidden, const ProbeOptions& options, uint64_t seed)
    : options_(options) {
  auto generator = torch::make_generator<torch::CPUGeneratorImpl>(seed);
  weight_ = torch::empty({layers, 2, hidden}, torch::kFloat32);
  weight_.normal_(0.0, options.init_std, generator);
  bias_ = torch::zeros({layers, 2}, torch::kFloat32);
  set_optimizer_state(torch::zeros_like(weight_), torch::zeros_like(weight_), torch::zeros_like(bias_),
                      torch::zeros_like(bias_));
}

LayerProbes::LayerProbes(torch::Tensor weight, torch::Tensor bias, const ProbeOptions& options)
    : options_(options), weight_(weight.to(torch::kFloat32).contiguous()), bias_(bias.to(torch::kFloat32).contiguous()) {
  if (weight_.dim() != 3 || weight_.size(1) != 2 || bias_.dim() != 2 || bias_.size(0) != weight_.size(0) ||
      bias_.size(1) != 2)
    throw Error("probe tensors have the wrong shapes: weight " + c10::str(weight_.sizes()) + ", bias " +
                c10::str(bias_.sizes()) + " (expected [L,2,H] and [L,2])");
  set_optimizer_state(torch::zeros_like(weight_), torch::zeros_like(weight_), torch::zeros_like(bias_),
                      torch::zeros_like(bias_));
}

void LayerProbes::set_optimizer_state(torch::Tensor exp_avg_w, torch::Tensor exp_avg_sq_w, torch::Tensor exp_avg_b,
                                      torch::Tensor exp_avg_sq_b) {
  auto check = [](const torch::Tensor& t, const torch::Tensor& like, const char* name) {
    if (t.sizes() != like.sizes())
      throw Error(std::string("probe optimiser state '") + name + "' has shape " + c10::str(t.sizes()) +
                  ", expected " + c10::str(like.sizes()));
  };
  check(exp_avg_w, weight_, "exp_avg_weight");
  check(exp_avg_sq_w, weight_, "exp_avg_sq_weight");
  check(exp_avg_b, bias_, "exp_avg_bias");
  check(exp_avg_sq_b, bias_, "exp_avg_sq_bias");
  auto like = [&](const torch::Tensor& t) { return t.to(weight_.device(), torch::kFloat32).contiguous(); };
  exp_avg_w_ = like(exp_avg_w);
  exp_avg_sq_w_ = like(exp_avg_sq_w);
  exp_avg_b_ = like(exp_avg_b);
  exp_avg_sq_b_ = like(exp_avg_sq_b);
}

void LayerProbes::to(torch::Device device) {
  for (auto* t : {&weight_, &bias_, &exp_avg_w_, &exp_avg_sq_w_, &exp_avg_b_, &exp_avg_sq_b_}) *t = t->to(device);
}

namespace {
// hidden [L,B,T,H], weight [L,2,H], bias [L,2] -> [L,B,T,2]
torch::Tensor probe_logits(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& bias) {
  auto L = hidden.size(0), B = hidden.size(1), T = hidden.size(2), H = hidden.size(3);
  auto flat = hidden.reshape({L, B * T, H});
  auto logits = torch::baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2));
  return logits.view({L, B, T, 2});
}
}  // namespace

torch::Tensor LayerProbes::score(const torch::Tensor& hidden) const {
  return probe_logits(hidden.to(torch::kFloat32), weight_, bias_);
}

torch::Tensor masked_cross_entropy(const torch::Tensor& logits, const torch::Tensor& attention_mask,
                                   const torch::Tensor& targets) {
  auto padding = attention_mask.eq(0);
  auto masked = logits.masked_fill(padding, -std::numeric_limits<float>::infinity());
  auto log_probs = torch::log_softmax(masked, -1);
  // Gather each row's target position: targets [B] broadcast over leading dims.
  std::vector<int64_t> index_shape(log_probs.dim(), 1);
  index_shape[log_probs.dim() - 2] = targets.size(0);
  auto index = targets.view(index_shape).expand(
      [&] {
        auto sizes = log_probs.sizes().vec();
        sizes.back() = 1;
        return sizes;
      }());
  return -log_probs.gather(-1, index).squeeze(-1).mean(-1);
}

ProbeStepResult LayerProbes::train_step(const torch::Tensor& hidden, const torch::Tensor& attention_mask,
                                        const torch::Tensor& start_positions, const torch::Tensor& end_positions,
                                        c10::optional<torch::Generator> dropout_generator) {
  torch::Tensor dropped = hidden.to(torch::kFloat32);
  if (options_.dropout > 0) {
    auto keep = torch::empty_like(dropped).bernoulli_(1.0 - options_.dropout, dropout_generator);
    dropped = dropped * keep / (1.0 - options_.dropout);
  } else if (dropped.is_inference()) {
    dropped = dropped.clone();  // inference tensors cannot be saved for backward
  }
  auto weight = weight_.detach().requires_grad_(true);
  auto bias = bias_.detach().requires_grad_(true);
  torch::Tensor loss;
  {
    torch::AutoGradMode enable(true);
    auto logits = probe_logits(dropped, weight, bias);  // [L,B,T,2]
    auto start = masked_cross_entropy(logits.select(-1, 0), attention_mask, start_positions);
    auto end = masked_cross_entropy(logits.select(-1, 1), attention_mask, end_positions);
    loss = (start + end) / 2;  // [L]
    // Layers are independent, so the sum's gradient is each layer's own.
    loss.sum().backward();
  }
  torch::NoGradGuard no_grad;
  auto grad_w = weight.grad();
  auto grad_b = bias.grad();
  // clip_grad_norm_ per (layer, head) over that head's weight and bias.
  auto norm = (grad_w.pow(2).sum(-1) + grad_b.pow(2)).sqrt();  // [L,2]
  auto coef = (options_.max_grad_norm / (norm + 1e-6)).clamp_max(1.0);
  grad_w = grad_w * coef.unsqueeze(-1);
  grad_b = grad_b * coef;
  apply_adamw(grad_w, grad_b);
  return {loss.detach()};
}

void LayerProbes::apply_adamw(const torch::Tensor& grad_w, const torch::Tensor& grad_b) {
  // transformers' AdamW with correct_bias=False, as the original study used.
  auto update = [&](torch::Tensor& param, torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq, const torch::Tensor& grad) {
    exp_avg.mul_(options_.beta1).add_(grad, 1.0 - options_.beta1);
    exp_avg_sq.mul_(options_.beta2).addcmul_(grad, grad, 1.0 - options_.beta2);
    auto denom = exp_avg_sq.sqrt().add_(options_.eps);
    param.addcdiv_(exp_avg, denom, -options_.learning_rate);
    if (options_.weight_decay > 0) param.add_(param, -options_.learning_rate * options_.weight_decay);
  };
  update(weight_, exp_avg_w_, exp_avg_sq_w_, grad_w);
  update(bias_, exp_avg_b_, exp_avg_sq_b_, grad_b);
}

}  // namespace layerprobe
