// Finding the model directories and data files a command needs — the one
// resolver every command uses — with errors that say where they were looked
// for and how to get them; and opening a model directory once, at the edge of
// a command, into one value (OpenedModel) that everything below it takes.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/model/config.hpp"
#include "layerprobe/text/tokenizer.hpp"
#include "layerprobe/text/tokenizer_registry.hpp"

namespace layerprobe {

struct ModelFamily;

// A local directory with config.json as given; otherwise a hub name
// (bert-base-uncased, twmkn9/albert-base-v2-squad2) looked up as
// $LAYERPROBE_MODELS_DIR/<name>, else models/<name>; else a local directory
// as given (whose missing config.json open_model_dir then names). Error naming the option and tools/download_models.sh
// when neither exists.
std::filesystem::path resolve_model_dir(const std::string& name_or_path, const std::string& option_name);

// A model directory opened once: config.json read and validated, its family,
// its tokenizer built (from `vocab` when given) and its weights file found.
// A command opens each directory at its edge and passes this value down;
// nothing below reads config.json or builds the tokenizer again.
struct OpenedModel {
  std::filesystem::path dir;
  ModelConfig config;
  const ModelFamily* family = nullptr;
  std::filesystem::path vocab;                 // the --vocab override; empty: the directory's own files
  std::shared_ptr<const Tokenizer> tokenizer;  // built once, shared by every user
  std::filesystem::path weights_file;          // model.safetensors, else pytorch_model.bin; empty when neither
};

// Error unless `dir` holds config.json and the tokenizer files its family
// reads (or `vocab` names one), naming the missing file and the download
// command (tools/download_models.sh <hub_name>); else `dir` read once: the
// tokenizer is config.json's family's kind, read as from_pretrained reads it,
// from `vocab` (a vocabulary file or directory) when given. The weights are
// found, not read: load_checkpoint reads them.
OpenedModel open_model_dir(const std::filesystem::path& dir, const std::string& option_name,
                           const std::filesystem::path& vocab = {}, TokenizerRequest request = {});

// The opened model's weights over its config (Error as find_weights_file
// when the directory has none).
LoadedModel load_checkpoint(const OpenedModel& model, const LoadOptions& options = {});

// Error unless `path` is a file; the message names the option and tools/download_squad.sh.
void require_squad_file(const std::filesystem::path& path, const std::string& option_name);

// $SQUAD_DIR, else "data/squad".
std::filesystem::path squad_dir();

}  // namespace layerprobe
