// Reading and writing tokenizers the way from_pretrained / save_pretrained do:
// a vocabulary kind per file layout, settings from tokenizer_config.json and
// special_tokens_map.json, overrides from the caller. A new tokenizer kind is
// one file under src/text/ plus one line in src/text/tokenizer_registry.cpp.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "layerprobe/text/tokenizer.hpp"

namespace layerprobe {

// What a caller passes to from_pretrained besides the path (its kwargs win
// over the directory's files).
struct TokenizerRequest {
  // "sentencepiece", "wordpiece" or "bpe"; empty = recognise it from the files.
  std::string kind;
  // run_squad's do_lower_case=args.do_lower_case.
  std::optional<bool> do_lower_case;
  // ALBERT's keep_accents (other kinds ignore it).
  std::optional<bool> keep_accents;
};

// The tokenizer of `path`: a model directory (spiece.model, vocab.txt, or
// vocab.json + merges.txt, read with its tokenizer_config.json and
// special_tokens_map.json), or a vocabulary file (*.model: SentencePiece;
// *.json with merges.txt beside it: BPE; other files: WordPiece vocab.txt),
// whose directory's config files are read too. Error naming the path, what
// was looked for and what to pass instead.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path, const TokenizerRequest& request = {});

// The kind of tokenizer files `dir` holds ("" when none; Error when it holds
// files of two kinds and `preferred` does not pick one).
std::string tokenizer_kind_in(const std::filesystem::path& dir, const std::string& preferred = "");

// The settings from_pretrained would read for `dir` (tokenizer_config.json,
// then special_tokens_map.json for keys the first lacks); Error naming the
// file and key for malformed content.
TokenizerSettings read_tokenizer_settings(const std::filesystem::path& dir);

// As save_pretrained: copies the vocabulary files into `dir` (unless they are
// already there) and writes tokenizer_config.json (the settings given, e.g.
// {"do_lower_case": true}) and special_tokens_map.json, each atomically.
void save_tokenizer(const Tokenizer& tokenizer, const std::filesystem::path& dir);

}  // namespace layerprobe
