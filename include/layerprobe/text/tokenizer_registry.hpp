// Reading and writing tokenizers the way from_pretrained / save_pretrained do:
// a vocabulary kind per file layout, settings from tokenizer_config.json and
// special_tokens_map.json, overrides from the caller. A new tokenizer kind is
// one file under src/text/ plus one line in src/text/tokenizer_registry.cpp.
//
// Which files a model directory's tokenizer comes from (`source`):
// - auto (default): the family's own slow files when the directory has them
//   (spiece.model, vocab.txt, vocab.json + merges.txt, sentencepiece.bpe.model,
//   spm.model), else tokenizer.json. Every parity reference of the slow kinds is
//   a slow tokenizer, and tokenizer.json can differ from it (roberta-base's
//   keeps trailing whitespace as a token on 234 of the 6724 dev texts, which
//   transformers 2.5.1 strips). HF's AutoTokenizer prefers tokenizer.json.
// - slow: the family's own files only; json: tokenizer.json only.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "layerprobe/text/tokenizer.hpp"

namespace layerprobe {

enum class TokenizerSource { automatic, slow, json };

// "auto", "slow" or "json" -> the source; Error (exit code 2) for anything else.
TokenizerSource parse_tokenizer_source(const std::string& text);

// What a caller passes to from_pretrained besides the path (its kwargs win
// over the directory's files).
struct TokenizerRequest {
  // A kind name ("sentencepiece", "wordpiece", "bpe", "xlm-roberta",
  // "deberta-v2", "gpt2", "tokenizer.json"), usually the model family's; empty =
  // recognise it from the files.
  std::string kind;
  // Which files to read when a directory holds both (see above).
  TokenizerSource source = TokenizerSource::automatic;
  // run_squad's do_lower_case=args.do_lower_case.
  std::optional<bool> do_lower_case;
  // ALBERT's keep_accents (other kinds ignore it).
  std::optional<bool> keep_accents;
};

// The tokenizer of `path`: a model directory (its slow files or tokenizer.json,
// as `request.source` says, read with its tokenizer_config.json and
// special_tokens_map.json), or a file: tokenizer.json; *.model (SentencePiece:
// ALBERT's, or XLM-R's / DeBERTa's when named so or requested); *.json with
// merges.txt beside it (byte-level BPE); other files WordPiece vocab.txt. A
// file's directory's config files are read too. Error naming the path, what
// was looked for and what to pass instead.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path, const TokenizerRequest& request = {});

// The kind of tokenizer `dir` would give for `preferred` (a kind name, or ""
// to recognise it) and `source`: "" when it holds no such files; Error when it
// holds the files of two kinds and `preferred` does not pick one.
std::string tokenizer_kind_in(const std::filesystem::path& dir, const std::string& preferred = "",
                              TokenizerSource source = TokenizerSource::automatic);

// The settings from_pretrained would read for `dir` (tokenizer_config.json,
// then special_tokens_map.json for keys the first lacks); Error naming the
// file and key for malformed content, or the line and column of a JSON
// syntax error.
TokenizerSettings read_tokenizer_settings(const std::filesystem::path& dir);

// As save_pretrained: copies the vocabulary files into `dir` (unless they are
// already there) and writes tokenizer_config.json (the settings given, e.g.
// {"do_lower_case": true}) and special_tokens_map.json, each atomically.
void save_tokenizer(const Tokenizer& tokenizer, const std::filesystem::path& dir);

}  // namespace layerprobe
