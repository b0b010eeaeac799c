// run_squad: transformers 2.5.1's examples/run_squad.py for every registered family — fine-tune
// on a SQuAD 2.0 train file and/or evaluate on a predict file — with its flags
// and defaults.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "layerprobe/text/tokenizer_registry.hpp"
#include "layerprobe/train/finetune.hpp"

namespace layerprobe {

struct RunSquadOptions {
  std::string model_type = "albert";  // a registered family (model/family.hpp)
  std::string model_name_or_path;
  std::string tokenizer_name;  // directory (or hub name) with the family's tokenizer files; default: the model's
  std::filesystem::path output_dir;
  std::filesystem::path data_dir;  // train-v2.0.json / dev-v2.0.json when the files are not given
  std::filesystem::path train_file, predict_file;
  bool do_train = false, do_eval = false, do_lower_case = false, version_2_with_negative = false;
  double null_score_diff_threshold = 0.0;
  WindowOptions window;
  int64_t per_gpu_eval_batch_size = 8;
  int n_best_size = 20, max_answer_length = 30;
  bool no_cuda = false, overwrite_output_dir = false, fp16 = false;
  bool bf16 = false;  // bf16 autocast in training (CUDA, or a CPU with native bf16) and evaluation
  // The evaluation encoder's precision (core/precision.hpp): fp32, bf16 (CUDA,
  // or a CPU with native bf16) or fp16 (CUDA). fp32 with --fp16 on CUDA is
  // fp16, with --bf16 bf16.
  std::string precision = "fp32";
  int threads = 1;  // feature-conversion workers
  bool skip_unlabeled = false;  // score only labeled questions of an unlabeled/mixed predict file
  // Training settings; its output_dir, tokenizer and max_seq_length are
  // filled in from the fields above.
  FineTuneOptions train;
};

// The tokenizer run_squad loads from `tokenizer_dir` for a `model_type` model with --do_lower_case
// given or not: for the study's families (2.5.1) the flag sets the casing over what the directory's
// tokenizer_config.json states, as from_pretrained's do_lower_case kwarg does; for the newer families
// (4.57.5) a stated do_lower_case wins and the flag sets only an unstated one.
TokenizerRequest run_squad_tokenizer_request(const std::string& model_type, const std::filesystem::path& tokenizer_dir,
                                             bool do_lower_case);

// Runs what the options ask for and returns the evaluation results (the keys
// of 2.5.1's squad_evaluate; empty without do_eval). Evaluation writes
// predictions.json, nbest_predictions.json, null_odds.json and
// eval_results.json into output_dir.
nlohmann::ordered_json run_squad(RunSquadOptions options);

}  // namespace layerprobe
