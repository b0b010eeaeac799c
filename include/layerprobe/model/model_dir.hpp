// Finding the model and data files a command needs, with errors that say
// where they were looked for and how to get them.
#pragma once

#include <filesystem>
#include <string>

namespace layerprobe {

// The SentencePiece model that tokenises for `model_dir`: `vocab` when
// given, else the model's own spiece.model.
std::filesystem::path tokenizer_file(const std::filesystem::path& model_dir, const std::filesystem::path& vocab = {});

// Error unless `dir` holds config.json and a tokenizer (tokenizer_file); the
// message names the missing file and the download command
// (tools/download_models.sh <hub_name>).
void require_model_dir(const std::filesystem::path& dir, const std::string& option_name,
                       const std::filesystem::path& vocab = {});

// Error unless `path` is a file; the message names the option and
// tools/download_squad.sh.
void require_squad_file(const std::filesystem::path& path, const std::string& option_name);

// $SQUAD_DIR, else "data/squad".
std::filesystem::path squad_dir();

}  // namespace layerprobe
