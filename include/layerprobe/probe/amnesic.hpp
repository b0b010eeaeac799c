// Amnesic probing (Elazar et al. 2021) with LEACE (Belrose et al. 2023): does
// the fine-tuned model *use* what layer l's probe finds? For each layer l, a
// LEACE eraser of the answer-start and answer-end indicators is fitted on the
// train features' tokens (layer l's hidden states; rank <= 2), applied to
// layer l's output inside the forward pass, and the remaining layers and the
// model's own QA head answer the dev questions. The control erases a random
// subspace of the same rank from the same data. Intact, erased and
// random-erased dev scores per layer go to amnesic.csv; amnesic.md and
// amnesic.svg report them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "layerprobe/squad/features.hpp"

namespace layerprobe {

struct AmnesicOptions {
  std::filesystem::path experiment_dir;  // where amnesic.csv, .md and .svg go
  // The fine-tuned model and the train file; default: those the experiment's fine_tuned probes record.
  std::filesystem::path model_dir, train_file;
  std::filesystem::path dev_file;  // default: the one the fine_tuned probes were predicted on, else $SQUAD_DIR
  std::string device = "cpu";
  // Windows; default: the fine_tuned probes' (run_squad's defaults without probes).
  std::optional<WindowOptions> window;
  int64_t train_features = 1000;  // train features whose tokens the erasers are fitted on (0 = all)
  std::vector<int> layers;        // default: every layer
  int batch_size = 8;             // dev batches, padded to max_seq_length as run_squad evaluates
  uint64_t seed = 1;              // of the random control subspaces
};

// One row of amnesic.csv: the dev scores (in %) with the model intact, with layer l's start/end
// information erased (LEACE), and with a random subspace of the same rank erased.
struct AmnesicRow {
  int layer = 0;
  int64_t rank = 0;  // of the LEACE eraser (and the random one)
  double f1[3] = {}, exact[3] = {}, has_ans_f1[3] = {}, no_ans_f1[3] = {};  // intact, erased, random
};

// Fits, erases, evaluates, and writes amnesic.csv, amnesic.md and amnesic.svg (atomically); returns the rows.
std::vector<AmnesicRow> run_amnesic(const AmnesicOptions& options);

// layer,rank,f1_intact,f1_erased,f1_random_erased, then exact_*, has_ans_f1_*, no_ans_f1_* the same way.
std::string amnesic_csv(const std::vector<AmnesicRow>& rows);

}  // namespace layerprobe
