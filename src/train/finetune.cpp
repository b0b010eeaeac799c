#include "layerprobe/train/finetune.hpp"

#include <spdlog/spdlog.h>

#include <cmath>

#include "layerprobe/squad/batch.hpp"
#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/core/finite.hpp"
#include "layerprobe/core/json.hpp"
#include "layerprobe/core/hash.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/core/progress.hpp"
#include "layerprobe/dist/dist.hpp"
#include "layerprobe/dist/sharding.hpp"
#include "layerprobe/io/safetensors.hpp"
#include "layerprobe/text/tokenizer_registry.hpp"

namespace layerprobe {

namespace fs = std::filesystem;

torch::Tensor qa_loss(const torch::Tensor& start_logits, const torch::Tensor& end_logits,
                      const torch::Tensor& start_positions, const torch::Tensor& end_positions) {
  // Targets outside the window (never produced by our features, but possible
  // in HF) are clamped onto the ignored index.
  const int64_t ignored_index = start_logits.size(1);
  auto options = torch::nn::functional::CrossEntropyFuncOptions().ignore_index(ignored_index);
  auto start_loss = torch::nn::functional::cross_entropy(start_logits, start_positions.clamp(0, ignored_index), options);
  auto end_loss = torch::nn::functional::cross_entropy(end_logits, end_positions.clamp(0, ignored_index), options);
  return (start_loss + end_loss) / 2;
}

double linear_schedule_factor(int64_t step, int64_t warmup_steps, double total_steps) {
  if (step < warmup_steps) return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  return std::max(0.0, (total_steps - static_cast<double>(step)) /
                           std::max(1.0, total_steps - static_cast<double>(warmup_steps)));
}

bool excluded_from_weight_decay(const std::string& parameter_name) {
  return parameter_name.find("bias") != std::string::npos ||
         parameter_name.find("LayerNorm.weight") != std::string::npos;
}

// --- AdamW -------------------------------------------------------------------------

AdamW::AdamW(const torch::OrderedDict<std::string, torch::Tensor>& named_parameters, double weight_decay,
             double epsilon, double beta1, double beta2)
    : epsilon_(epsilon), beta1_(beta1), beta2_(beta2) {
  for (const auto& item : named_parameters) {
    if (!item.value().requires_grad()) continue;
    slots_.push_back(Slot{item.key(), item.value(), excluded_from_weight_decay(item.key()) ? 0.0 : weight_decay,
                          torch::Tensor(), torch::Tensor(), 0});
  }
}

void AdamW::step(double learning_rate) {
  torch::NoGradGuard no_grad;
  for (Slot& slot : slots_) {
    const torch::Tensor& grad = slot.parameter.grad();
    if (!grad.defined()) continue;
    if (!slot.exp_avg.defined()) {
      slot.exp_avg = torch::zeros_like(slot.parameter);
      slot.exp_avg_sq = torch::zeros_like(slot.parameter);
    }
    ++slot.steps;
    slot.exp_avg.mul_(beta1_).add_(grad, 1.0 - beta1_);
    slot.exp_avg_sq.mul_(beta2_).addcmul_(grad, grad, 1.0 - beta2_);
    torch::Tensor denom = slot.exp_avg_sq.sqrt().add_(epsilon_);
    const double bias_correction1 = 1.0 - std::pow(beta1_, static_cast<double>(slot.steps));
    const double bias_correction2 = 1.0 - std::pow(beta2_, static_cast<double>(slot.steps));
    const double step_size = learning_rate * std::sqrt(bias_correction2) / bias_correction1;
    slot.parameter.addcdiv_(slot.exp_avg, denom, -step_size);
    if (slot.weight_decay > 0.0) slot.parameter.add_(slot.parameter, -learning_rate * slot.weight_decay);
  }
}

std::map<std::string, torch::Tensor> AdamW::state_tensors() const {
  std::map<std::string, torch::Tensor> tensors;
  for (const Slot& slot : slots_) {
    if (!slot.exp_avg.defined()) continue;
    tensors["exp_avg." + slot.name] = slot.exp_avg.detach().to(torch::kCPU);
    tensors["exp_avg_sq." + slot.name] = slot.exp_avg_sq.detach().to(torch::kCPU);
    tensors["step." + slot.name] = torch::tensor(slot.steps, torch::kInt64);
  }
  return tensors;
}

void AdamW::load_state_tensors(const std::map<std::string, torch::Tensor>& tensors, const std::string& source) {
  for (Slot& slot : slots_) {
    auto avg = tensors.find("exp_avg." + slot.name);
    auto avg_sq = tensors.find("exp_avg_sq." + slot.name);
    auto steps = tensors.find("step." + slot.name);
    if (avg == tensors.end() && avg_sq == tensors.end() && steps == tensors.end()) {
      slot.exp_avg = slot.exp_avg_sq = torch::Tensor();  // never updated (no gradient yet)
      slot.steps = 0;
      continue;
    }
    if (avg == tensors.end() || avg_sq == tensors.end() || steps == tensors.end())
      throw Error(source + ": optimizer state of '" + slot.name + "' is incomplete");
    if (avg->second.sizes() != slot.parameter.sizes() || avg_sq->second.sizes() != slot.parameter.sizes())
      throw Error(source + ": optimizer state of '" + slot.name + "' has shape " + c10::str(avg->second.sizes()) +
                  ", the parameter " + c10::str(slot.parameter.sizes()));
    check_finite(avg->second, avg->first, source);
    check_finite(avg_sq->second, avg_sq->first, source);
    if (steps->second.numel() != 1 || steps->second.item<int64_t>() < 0)
      throw Error(source + ": '" + steps->first + "' is not one step count >= 0");
    auto options = slot.parameter.options().requires_grad(false);
    slot.exp_avg = avg->second.to(options).clone();
    slot.exp_avg_sq = avg_sq->second.to(options).clone();
    slot.steps = steps->second.item<int64_t>();
  }
}

int64_t AdamW::most_steps() const {
  int64_t most = 0;
  for (const Slot& slot : slots_) most = std::max(most, slot.steps);
  return most;
}

void check_train_epochs(double epochs) {
  if (!std::isfinite(epochs) || epochs <= 0 || epochs > kMostTrainEpochs)
    throw Error("--num_train_epochs " + fmt::format("{}", epochs) + " is not a number of epochs in (0, " +
                    fmt::format("{:g}", kMostTrainEpochs) + "]",
                2);
  if (epochs < 1)
    throw Error("--num_train_epochs " + fmt::format("{}", epochs) +
                    " trains int(num_train_epochs) = 0 epochs, as run_squad.py does: no step would run; give at "
                    "least 1 (or --max_steps N)",
                2);
}

// --- checkpoints ------------------------------------------------------------------------

namespace {

constexpr const char* kStateFile = "trainer_state.json";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr double kInitialLossScale = 65536.0;
constexpr int64_t kLossScaleGrowthInterval = 2000;

nlohmann::json state_to_json(const TrainerState& state) {
  return {{"global_step", state.global_step}, {"epoch", state.epoch},
          {"next_batch", state.next_batch},   {"loss_sum", state.loss_sum},
          {"loss_scale", state.loss_scale},   {"scale_good_steps", state.scale_good_steps},
          {"fingerprint", state.fingerprint}};
}

TrainerState read_trainer_state(const fs::path& path) {
  const auto json = parse_json(read_file(path), path.string());
  try {
    TrainerState state;
    state.global_step = json.at("global_step").get<int64_t>();
    state.epoch = json.at("epoch").get<int64_t>();
    state.next_batch = json.at("next_batch").get<int64_t>();
    state.loss_sum = json.at("loss_sum").get<double>();
    state.loss_scale = json.at("loss_scale").get<double>();
    state.scale_good_steps = json.at("scale_good_steps").get<int64_t>();
    state.fingerprint = json.at("fingerprint");
    return state;
  } catch (const nlohmann::json::exception& e) {
    throw Error(path.string() + ": not a valid trainer state (" + e.what() + "); delete that checkpoint directory");
  }
}

// FNV-1a over the training targets and token ids, so a resume notices other data.
uint64_t features_checksum(const std::vector<SquadFeature>& features) {
  Fnv1a64 hash;
  auto mix = [&hash](int64_t value) { hash.add_word(static_cast<uint64_t>(value)); };
  for (const SquadFeature& feature : features) {
    for (int64_t id : feature.input_ids) mix(id);
    for (int64_t type : feature.token_type_ids) mix(type);
    mix(feature.start_position);
    mix(feature.end_position);
  }
  return hash.value();
}

// Checkpoints are numbered by updates; the epoch-<e> directories hold the same kind of state.
int64_t checkpoint_step(const fs::path& dir) {
  const fs::path state = dir / kStateFile;
  if (!fs::is_regular_file(state) || !fs::is_regular_file(dir / kOptimizerFile) ||
      !fs::is_regular_file(dir / "model.safetensors"))
    return -1;
  const TrainerState stored = read_trainer_state(state);
  // checkpoint-<step> is saved at that step, epoch-<e> at the start of epoch e (0-based: after e epochs).
  const std::string name = dir.filename().string();
  const bool by_step = name.rfind("checkpoint-", 0) == 0;
  const std::string number = name.substr(by_step ? 11 : 6);
  const bool numbered = !number.empty() && number.size() < 19 && number.find_first_not_of("0123456789") == std::string::npos;
  if (numbered && (by_step ? stored.global_step != std::stoll(number)
                           : stored.epoch != std::stoll(number) || stored.next_batch != 0))
    throw Error(state.string() + ": global_step " + std::to_string(stored.global_step) + ", epoch " +
                std::to_string(stored.epoch) + ", next_batch " + std::to_string(stored.next_batch) +
                " do not describe '" + name + "' (edited or damaged); delete that directory to resume from the one before");
  return stored.global_step;
}

}  // namespace

std::optional<fs::path> latest_checkpoint(const fs::path& output_dir) {
  if (!fs::is_directory(output_dir)) return std::nullopt;
  std::optional<fs::path> best;
  int64_t best_step = -1;
  for (const auto& entry : fs::directory_iterator(output_dir)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || (name.rfind("checkpoint-", 0) != 0 && name.rfind("epoch-", 0) != 0)) continue;
    const int64_t step = checkpoint_step(entry.path());
    // Ties (an epoch end that is also a save step) hold identical state.
    if (step > best_step) {
      best_step = step;
      best = entry.path();
    }
  }
  return best;
}

// --- training loop -------------------------------------------------------------------------

namespace {

class Trainer {
 public:
  Trainer(QaModel& model, const std::vector<SquadFeature>& features, const FineTuneOptions& options,
          const torch::Device& device)
      : model_(model),
        features_(features),
        options_(options),
        device_(device),
        autocast_(options.fp16 && device.is_cuda() ? "fp16" : options.bf16 ? "bf16" : "fp32"),
        optimizer_(model.named_parameters(), options.weight_decay, options.adam_epsilon) {
    validate();
    // Data parallel: each of the W ranks takes its --per_gpu_train_batch_size rows of a global batch W times that.
    global_batch_ = options.batch_size * dist::world_size();
    batches_per_epoch_ = (static_cast<int64_t>(features.size()) + global_batch_ - 1) / global_batch_;
    updates_per_epoch_ = batches_per_epoch_ / options.gradient_accumulation_steps;
    if (updates_per_epoch_ == 0)
      throw Error("only " + std::to_string(batches_per_epoch_) + " batches of training data, fewer than " +
                      "--gradient_accumulation_steps " + std::to_string(options.gradient_accumulation_steps),
                  2);
    if (options.max_steps > 0) {
      total_steps_ = static_cast<double>(options.max_steps);
      epochs_ = options.max_steps / updates_per_epoch_ + 1;
    } else {
      total_steps_ = static_cast<double>(updates_per_epoch_) * options.num_train_epochs;
      epochs_ = static_cast<int64_t>(options.num_train_epochs);
    }
    state_.loss_scale = kInitialLossScale;
    state_.fingerprint = fingerprint();
    if (options.fp16 && !device.is_cuda()) spdlog::warn("--fp16 needs CUDA; training in fp32 on the CPU");
    check_precision(autocast_, device);  // --bf16 on a CPU without native bf16
  }

  FineTuneResult run() {
    if (options_.resume) resume();
    log_plan();
    ProgressMeter progress("fine-tuning", remaining_steps(), "steps");
    double logged_loss = state_.loss_sum;
    while (state_.epoch < epochs_ && !finished()) {
      const auto order = epoch_order(features_.size(), options_.seed, state_.epoch);
      const int64_t usable_batches = updates_per_epoch_ * options_.gradient_accumulation_steps;
      for (int64_t b = state_.next_batch; b < usable_batches && !finished(); ++b) {
        if (b % options_.gradient_accumulation_steps == 0) stop_if_requested();
        state_.loss_sum += train_batch(order, b);
        state_.next_batch = b + 1;
        if ((b + 1) % options_.gradient_accumulation_steps != 0) continue;
        const double lr = update();
        progress.advance(1, fmt::format("loss {:.4f}, lr {:.3g}", last_loss_, lr));
        if (options_.logging_steps > 0 && state_.global_step % options_.logging_steps == 0) {
          spdlog::info("step {}: mean loss {:.4f} over the last {} steps, lr {:.4g}", state_.global_step,
                       (state_.loss_sum - logged_loss) / static_cast<double>(options_.logging_steps),
                       options_.logging_steps, lr);
          logged_loss = state_.loss_sum;
        }
        if (options_.save_steps > 0 && state_.global_step % options_.save_steps == 0)
          save("checkpoint-" + std::to_string(state_.global_step));
      }
      if (finished() && state_.next_batch < usable_batches) break;
      ++state_.epoch;
      state_.next_batch = 0;
      if (options_.save_every_epoch) save("epoch-" + std::to_string(state_.epoch));
    }
    progress.finish();
    model_.eval();
    if (dist::is_main()) save_model(options_.output_dir);
    spdlog::info("saved the fine-tuned model to {}", options_.output_dir.string());
    if (dist::enabled())
      spdlog::info("{} ranks: gradient all-reduce took {:.1f} s of {:.1f} s of training", dist::world_size(),
                   reduce_seconds_, progress.seconds());
    FineTuneResult result;
    result.global_step = state_.global_step;
    result.mean_loss = state_.global_step > 0 ? state_.loss_sum / static_cast<double>(state_.global_step) : 0.0;
    return result;
  }

 private:
  // fp16 autocast with dynamic loss scaling (--fp16 on CUDA).
  bool fp16() const { return autocast_ == "fp16"; }

  void validate() const {
    if (features_.empty()) throw Error("no training features");
    if (options_.batch_size < 1) throw Error("--per_gpu_train_batch_size must be at least 1", 2);
    if (options_.gradient_accumulation_steps < 1) throw Error("--gradient_accumulation_steps must be at least 1", 2);
    if (options_.max_steps <= 0) check_train_epochs(options_.num_train_epochs);
    if (options_.fp16 && options_.bf16) throw Error("--fp16 and --bf16 exclude each other: pick one", 2);
  }

  nlohmann::json fingerprint() const {
    const auto& o = options_;
    nlohmann::json json = {{"seed", o.seed},
            {"per_gpu_train_batch_size", o.batch_size},
            {"learning_rate", o.learning_rate},
            {"gradient_accumulation_steps", o.gradient_accumulation_steps},
            {"weight_decay", o.weight_decay},
            {"adam_epsilon", o.adam_epsilon},
            {"max_grad_norm", o.max_grad_norm},
            {"num_train_epochs", o.num_train_epochs},
            {"max_steps", o.max_steps},
            {"warmup_steps", o.warmup_steps},
            {"max_seq_length", o.max_seq_length},
            {"pad_to_longest", o.pad_to_longest},
            {"fp16", fp16()},
            {"train_features", features_.size()},
            {"features_checksum", features_checksum(features_)}};
    // Recorded only for several ranks (bf16 only with --bf16), so earlier checkpoints still resume.
    if (dist::enabled()) json["world_size"] = dist::world_size();
    if (autocast_ == "bf16") json["bf16"] = true;
    return json;
  }

  bool finished() const { return options_.max_steps > 0 && state_.global_step >= options_.max_steps; }

  int64_t remaining_steps() const {
    int64_t planned = options_.max_steps > 0 ? options_.max_steps : epochs_ * updates_per_epoch_;
    return std::max<int64_t>(0, planned - state_.global_step);
  }

  void log_plan() const {
    spdlog::info("training on {} features: {} epochs of {} batches of {} (accumulating {}), {} optimizer steps",
                 features_.size(), epochs_, batches_per_epoch_, global_batch_,
                 options_.gradient_accumulation_steps, remaining_steps() + state_.global_step);
  }

  void resume() {
    auto dir = latest_checkpoint(options_.output_dir);
    if (!dir) {
      dist::require_same_on_every_rank(0, "the step resumed from in '" + options_.output_dir.string() + "'");
      spdlog::info("--resume: no checkpoint with a trainer state in '{}'; starting from the beginning",
                   options_.output_dir.string());
      return;
    }
    TrainerState stored = read_trainer_state(*dir / kStateFile);
    if (stored.fingerprint != state_.fingerprint)
      throw Error("cannot resume from '" + dir->string() + "': it was trained with other settings or data (" +
                      stored.fingerprint.dump() + " vs now " + state_.fingerprint.dump() +
                      "); rerun with its settings, or drop --resume and pass --overwrite_output_dir",
                  2);
    const fs::path weights = *dir / "model.safetensors";
    load_state_dict(model_, read_weights(weights), weights.string());
    const fs::path optimizer_file = *dir / kOptimizerFile;
    optimizer_.load_state_tensors(read_safetensors(optimizer_file).tensors, optimizer_file.string());
    check_resumed_state(stored, *dir);
    state_ = stored;
    dist::require_same_on_every_rank(state_.global_step, "the step resumed from in '" + options_.output_dir.string() + "'");
    spdlog::info("resuming from {} (step {}, epoch {}, batch {})", dir->string(), state_.global_step,
                 state_.epoch + 1, state_.next_batch);
  }

  // A trainer state must describe a point of this run: a step reached by its epochs and batches, within
  // the planned steps, and counters the optimizer state agrees with. An edited or damaged one would
  // otherwise end training at once with an earlier checkpoint's weights saved as the fine-tuned model.
  void check_resumed_state(const TrainerState& s, const fs::path& dir) const {
    const fs::path file = dir / kStateFile;
    auto fail = [&](const std::string& what) {
      throw Error(file.string() + ": " + what + "; it does not describe a checkpoint of this run (edited or " +
                  "damaged): delete '" + dir.string() + "' to resume from the checkpoint before it");
    };
    const int64_t usable_batches = updates_per_epoch_ * options_.gradient_accumulation_steps;
    const int64_t planned = options_.max_steps > 0 ? options_.max_steps : epochs_ * updates_per_epoch_;
    if (s.global_step < 0 || s.epoch < 0 || s.next_batch < 0) fail("global_step, epoch and next_batch must not be negative");
    if (s.epoch > epochs_)
      fail("epoch " + std::to_string(s.epoch) + " is past the run's " + std::to_string(epochs_) + " epochs");
    if (s.next_batch > usable_batches)
      fail("next_batch " + std::to_string(s.next_batch) + " is past the " + std::to_string(usable_batches) +
           " batches of an epoch");
    if (s.global_step > planned)
      fail("global_step " + std::to_string(s.global_step) + " is past the run's " + std::to_string(planned) + " steps");
    if (s.global_step != s.epoch * updates_per_epoch_ + s.next_batch / options_.gradient_accumulation_steps)
      fail("global_step " + std::to_string(s.global_step) + " does not follow from epoch " + std::to_string(s.epoch) +
           " and next_batch " + std::to_string(s.next_batch) + " (" + std::to_string(updates_per_epoch_) +
           " steps per epoch)");
    if (!std::isfinite(s.loss_sum)) fail("loss_sum is not a finite number");
    if (!(s.loss_scale > 0) || !std::isfinite(s.loss_scale) || s.scale_good_steps < 0 ||
        s.scale_good_steps >= kLossScaleGrowthInterval)
      fail("loss_scale or scale_good_steps is out of range");
    if (optimizer_.most_steps() > s.global_step)
      fail("the optimizer state in '" + (dir / kOptimizerFile).string() + "' counts " +
           std::to_string(optimizer_.most_steps()) + " updates but global_step is " + std::to_string(s.global_step));
  }

  // Forward and backward over batch `b` of the epoch; returns the loss as
  // run_squad adds it to tr_loss (divided by the accumulation steps).
  double train_batch(const std::vector<size_t>& order, int64_t b) {
    std::vector<const SquadFeature*> rows;
    std::vector<int64_t> starts, ends;
    const auto global_begin = static_cast<size_t>(b * global_batch_);
    const size_t global_rows = std::min(order.size(), global_begin + static_cast<size_t>(global_batch_)) - global_begin;
    const auto world = static_cast<size_t>(dist::world_size()), rank = static_cast<size_t>(dist::rank());
    const size_t begin = global_begin + global_rows * rank / world, end = global_begin + global_rows * (rank + 1) / world;
    for (size_t i = begin; i < end; ++i) {
      rows.push_back(&features_[order[i]]);
      starts.push_back(rows.back()->start_position);
      ends.push_back(rows.back()->end_position);
    }
    BatchOptions batch_options;
    batch_options.pad_to = options_.pad_to_longest ? 0 : options_.max_seq_length;
    if (options_.tokenizer) batch_options.pad_id = options_.tokenizer->pad_id();
    const EncoderBatch batch = make_batch(rows, batch_options).to(device_);
    // Dropout masks depend only on (seed, batch number), so a resumed run draws the same ones.
    // (and on the rank: ranks draw different masks for their different rows).
    torch::manual_seed(options_.seed * 1000003ULL + 7919ULL * static_cast<uint64_t>(state_.epoch * batches_per_epoch_ + b) +
                       0x9e3779b97f4a7c15ULL * rank);
    model_.train();
    if (rows.empty()) return reduced_loss(0.0);  // a small last batch: no rows for this rank
    torch::Tensor loss;
    {
      // Autocast for the forward pass only, as torch.cuda.amp.autocast is used.
      Autocast autocast(autocast_, device_);
      auto output = model_.forward(batch, false);
      loss = qa_loss(output.start_logits.to(torch::kFloat), output.end_logits.to(torch::kFloat),
                     torch::tensor(starts, torch::kInt64).to(device_), torch::tensor(ends, torch::kInt64).to(device_));
    }
    if (options_.gradient_accumulation_steps > 1) loss = loss / static_cast<double>(options_.gradient_accumulation_steps);
    // This rank's share of the global batch's mean: the ranks' gradients are summed.
    if (world > 1) loss = loss * (static_cast<double>(rows.size()) / static_cast<double>(global_rows));
    (fp16() ? loss * state_.loss_scale : loss).backward();
    const double value = reduced_loss(loss.item<double>());
    last_loss_ = value * static_cast<double>(options_.gradient_accumulation_steps);
    if (!std::isfinite(value) && !fp16())
      throw Error("the training loss became " + std::to_string(value) + " at step " +
                  std::to_string(state_.global_step + 1) + "; lower --learning_rate");
    return value;
  }

  // The global batch's loss from this rank's share of it.
  double reduced_loss(double local) {
    if (!dist::enabled()) return local;
    auto total = torch::tensor({local}, torch::kDouble);
    dist::all_reduce_sum(total);
    return total.item<double>();
  }

  // Sums the gradients over the ranks (bucketed, as DDP does), once per
  // update. A parameter with a gradient on some rank gets one on all.
  void reduce_gradients(std::vector<torch::Tensor>& parameters) {
    if (!dist::enabled()) return;
    torch::NoGradGuard no_grad;
    auto defined = torch::zeros({static_cast<int64_t>(parameters.size())});
    for (size_t i = 0; i < parameters.size(); ++i) defined[static_cast<int64_t>(i)] = parameters[i].grad().defined() ? 1.0 : 0.0;
    dist::all_reduce_sum(defined);
    std::vector<torch::Tensor> grads;
    for (size_t i = 0; i < parameters.size(); ++i) {
      if (defined[static_cast<int64_t>(i)].item<double>() == 0.0) continue;
      if (!parameters[i].grad().defined()) parameters[i].mutable_grad() = torch::zeros_like(parameters[i]);
      grads.push_back(parameters[i].grad());
    }
    reduce_seconds_ += dist::all_reduce_sum_bucketed(grads);
  }

  // Clip, AdamW step, schedule; returns the learning rate used. With fp16 an
  // overflowing step is skipped and the loss scale halved (the schedule
  // still advances, as with apex amp).
  double update() {
    const double lr = options_.learning_rate *
                      linear_schedule_factor(state_.global_step, options_.warmup_steps, total_steps_);
    auto parameters = model_.parameters();
    reduce_gradients(parameters);
    if (fp16()) {
      torch::NoGradGuard no_grad;
      for (auto& p : parameters)
        if (p.grad().defined()) p.grad().mul_(1.0 / state_.loss_scale);
    }
    const double norm = torch::nn::utils::clip_grad_norm_(parameters, options_.max_grad_norm);
    if (fp16() && !std::isfinite(norm)) {
      state_.loss_scale /= 2.0;
      state_.scale_good_steps = 0;
      spdlog::debug("fp16 overflow at step {}; loss scale now {}", state_.global_step + 1, state_.loss_scale);
    } else {
      optimizer_.step(lr);
      if (fp16() && ++state_.scale_good_steps == kLossScaleGrowthInterval) {
        state_.loss_scale *= 2.0;
        state_.scale_good_steps = 0;
      }
    }
    model_.zero_grad();
    ++state_.global_step;
    return lr;
  }

  void save(const std::string& name) {
    if (!dist::is_main()) {  // every rank holds the same model; rank 0 writes it
      last_saved_step_ = state_.global_step;
      return;
    }
    const fs::path dir = options_.output_dir / name;
    save_model(dir);
    write_safetensors(dir / kOptimizerFile, optimizer_.state_tensors());
    // Written last: a directory without it is never resumed from.
    write_file_atomically(dir / kStateFile, state_to_json(state_).dump(2) + "\n");
    last_saved_step_ = state_.global_step;
    spdlog::info("saved {}", dir.string());
  }

  // An HF model directory: config, weights and (when known) the tokenizer.
  void save_model(const fs::path& dir) const {
    fs::create_directories(dir);
    save_checkpoint(model_, dir);
    if (options_.tokenizer) save_tokenizer(*options_.tokenizer, dir);
  }

  // On SIGINT/SIGTERM: save where we are (between updates), then stop.
  void stop_if_requested() {
    if (!stop_requested()) return;
    if (state_.global_step > 0 && last_saved_step_ != state_.global_step)
      save("checkpoint-" + std::to_string(state_.global_step));
    throw_if_stop_requested("Rerun the same command with --resume to continue from step " +
                            std::to_string(state_.global_step) + ".");
  }

  QaModel& model_;
  const std::vector<SquadFeature>& features_;
  const FineTuneOptions& options_;
  torch::Device device_;
  std::string autocast_;  // the training forward pass's precision: fp32, fp16 (CUDA, loss-scaled) or bf16
  AdamW optimizer_;
  TrainerState state_;
  int64_t global_batch_ = 0, batches_per_epoch_ = 0, updates_per_epoch_ = 0, epochs_ = 0;
  double reduce_seconds_ = 0.0;
  double total_steps_ = 0.0;
  double last_loss_ = 0.0;
  int64_t last_saved_step_ = -1;
};

}  // namespace

FineTuneResult fine_tune(QaModel& model, const std::vector<SquadFeature>& features, const FineTuneOptions& options,
                         const torch::Device& device) {
  return Trainer(model, features, options, device).run();
}

}  // namespace layerprobe
