// Fine-tuning a QaModel (any family) on SQuAD features, as transformers
// 2.5.1's run_squad.py train() does: HF's QA loss, AdamW with its parameter
// groups, a linear warmup/decay schedule, gradient accumulation and clipping,
// with checkpoints that a stopped run resumes from bit for bit (on the CPU).
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "layerprobe/model/config.hpp"
#include "layerprobe/model/qa_model.hpp"
#include "layerprobe/text/tokenizer.hpp"
#include "layerprobe/squad/features.hpp"

namespace layerprobe {

// The <Family>ForQuestionAnswering 2.5.1 loss: targets clamped to [0, T], T (the
// sequence length) ignored, mean of the start and end cross-entropies.
torch::Tensor qa_loss(const torch::Tensor& start_logits, const torch::Tensor& end_logits,
                      const torch::Tensor& start_positions, const torch::Tensor& end_positions);

// get_linear_schedule_with_warmup's multiplier of the base learning rate for
// the update with index `step` (0-based). `total_steps` may be fractional, as
// run_squad's t_total is with a float --num_train_epochs.
double linear_schedule_factor(int64_t step, int64_t warmup_steps, double total_steps);

// HF's no_decay rule: names containing "bias" or "LayerNorm.weight".
bool excluded_from_weight_decay(const std::string& parameter_name);

// transformers.AdamW (betas 0.9/0.999, correct_bias=True): decoupled weight
// decay applied after the Adam update, scaled by the learning rate only.
// Parameters whose gradient is undefined are skipped and get no state, as in HF.
class AdamW {
 public:
  AdamW(const torch::OrderedDict<std::string, torch::Tensor>& named_parameters, double weight_decay,
        double epsilon, double beta1 = 0.9, double beta2 = 0.999);
  void step(double learning_rate);

  // "exp_avg.<name>", "exp_avg_sq.<name>" (on the CPU) and "step.<name>" (I64 scalar).
  std::map<std::string, torch::Tensor> state_tensors() const;
  // Error naming `source` when a tensor is missing or has the wrong shape.
  void load_state_tensors(const std::map<std::string, torch::Tensor>& tensors, const std::string& source);
  // The most updates any parameter's state has counted.
  int64_t most_steps() const;

 private:
  struct Slot {
    std::string name;
    torch::Tensor parameter;
    double weight_decay;
    torch::Tensor exp_avg, exp_avg_sq;  // undefined until the first update
    int64_t steps = 0;
  };
  std::vector<Slot> slots_;
  double epsilon_, beta1_, beta2_;
};

// --num_train_epochs at most this: a bound that keeps the step count an exact integer.
constexpr double kMostTrainEpochs = 1e6;
// Error (status 2) unless `epochs` is a finite number in [1, kMostTrainEpochs]. run_squad.py trains
// int(num_train_epochs) epochs, so below 1 no step would run; a fraction above 1 only lengthens the
// learning-rate schedule (t_total), as there.
void check_train_epochs(double epochs);

struct FineTuneOptions {
  std::filesystem::path output_dir;
  // Saved (save_tokenizer) into every saved model directory, when set; it
  // also gives the padding id (0 without it).
  const Tokenizer* tokenizer = nullptr;
  int64_t batch_size = 8;  // --per_gpu_train_batch_size
  double learning_rate = 5e-5;
  int64_t gradient_accumulation_steps = 1;
  double weight_decay = 0.0;
  double adam_epsilon = 1e-8;
  double max_grad_norm = 1.0;
  double num_train_epochs = 3.0;
  int64_t max_steps = -1;  // > 0: overrides num_train_epochs
  int64_t warmup_steps = 0;
  int64_t logging_steps = 500;
  int64_t save_steps = 500;
  bool save_every_epoch = false;
  uint64_t seed = 42;
  // Rows are padded to max_seq_length as HF does (padding positions take
  // part in the loss's softmax); pad_to_longest pads to the batch's longest.
  int64_t max_seq_length = 384;
  bool pad_to_longest = false;
  bool resume = false;  // continue from the newest checkpoint in output_dir
  bool fp16 = false;    // CUDA autocast with dynamic loss scaling
  bool bf16 = false;    // bf16 autocast (CUDA, or a CPU with native bf16), no loss scaling
};

struct FineTuneResult {
  int64_t global_step = 0;  // optimizer updates done
  double mean_loss = 0.0;   // run_squad's tr_loss / global_step
};

// What a checkpoint's trainer_state.json holds.
struct TrainerState {
  int64_t global_step = 0;
  int64_t epoch = 0;           // epoch to continue in
  int64_t next_batch = 0;      // first batch of that epoch not yet trained
  double loss_sum = 0.0;       // tr_loss
  double loss_scale = 65536.0; // fp16 loss scale
  int64_t scale_good_steps = 0;
  nlohmann::json fingerprint;  // the options and data a resume must share
};

// The newest directory in `output_dir` (checkpoint-<step> or epoch-<e>) with a
// trainer state, if any.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& output_dir);

// Trains `model` in place on `device` (where it must already be) and saves
// checkpoint-<step>/, epoch-<e>/ and, at the end, the final model in
// output_dir, each an HF model directory plus optimizer.safetensors and
// trainer_state.json. Stops with Error (status 130) on SIGINT/SIGTERM.
FineTuneResult fine_tune(QaModel& model, const std::vector<SquadFeature>& features, const FineTuneOptions& options,
                         const torch::Device& device);

}  // namespace layerprobe
