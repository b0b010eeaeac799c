// Finding the model directories and data files a command needs — the one
// resolver every command uses — with errors that say where they were looked
// for and how to get them.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "layerprobe/text/tokenizer.hpp"
#include "layerprobe/text/tokenizer_registry.hpp"

namespace layerprobe {

// A local directory with config.json as given; otherwise a hub name
// (bert-base-uncased, twmkn9/albert-base-v2-squad2) looked up as
// $LAYERPROBE_MODELS_DIR/<name>, else models/<name>; else a local directory
// as given (whose missing config.json require_model_dir then names). Error naming the option and tools/download_models.sh
// when neither exists.
std::filesystem::path resolve_model_dir(const std::string& name_or_path, const std::string& option_name);

// Error unless `dir` holds config.json and the tokenizer its family reads (or
// `vocab` names one); the message names the missing file and the download
// command (tools/download_models.sh <hub_name>).
void require_model_dir(const std::filesystem::path& dir, const std::string& option_name,
                       const std::filesystem::path& vocab = {});

// The tokenizer of a model directory, of the kind its family uses (config.json's
// model_type), read as from_pretrained reads it; `vocab` (a vocabulary file or
// directory) replaces the model's own when given.
std::unique_ptr<Tokenizer> load_model_tokenizer(const std::filesystem::path& model_dir,
                                                const std::filesystem::path& vocab = {},
                                                TokenizerRequest request = {});

// Error unless `path` is a file; the message names the option and tools/download_squad.sh.
void require_squad_file(const std::filesystem::path& path, const std::string& option_name);

// $SQUAD_DIR, else "data/squad".
std::filesystem::path squad_dir();

}  // namespace layerprobe
