#include "layerprobe/text/tokenizer_registry.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>
#include <vector>

#include "layerprobe/core/common.hpp"
#include "text/albert_tokenizer.hpp"
#include "text/bpe_tokenizer.hpp"
#include "text/wordpiece_tokenizer.hpp"

namespace layerprobe {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using Paths = std::vector<fs::path>;

struct TokenizerKind {
  std::string name;
  std::vector<std::string> files;  // as a model directory holds them
  std::string families;            // for messages
  std::function<std::unique_ptr<Tokenizer>(const Paths&, TokenizerSettings)> make;
};

// One line per tokenizer kind.
const std::vector<TokenizerKind>& tokenizer_kinds() {
  static const std::vector<TokenizerKind> kinds{
      {"sentencepiece", {"spiece.model"}, "ALBERT",
       [](const Paths& p, TokenizerSettings s) { return std::make_unique<AlbertTokenizer>(p[0], std::move(s)); }},
      {"wordpiece", {"vocab.txt"}, "BERT, DistilBERT",
       [](const Paths& p, TokenizerSettings s) { return std::make_unique<WordPieceTokenizer>(p[0], std::move(s)); }},
      {"bpe", {"vocab.json", "merges.txt"}, "RoBERTa",
       [](const Paths& p, TokenizerSettings s) {
         return std::make_unique<ByteLevelBpeTokenizer>(p[0], p[1], std::move(s));
       }},
  };
  return kinds;
}

const TokenizerKind& kind_named(const std::string& name) {
  for (const auto& kind : tokenizer_kinds())
    if (kind.name == name) return kind;
  throw Error("unknown tokenizer kind '" + name + "'");
}

std::string expected_files() {
  std::string text;
  for (const auto& kind : tokenizer_kinds()) {
    std::string files;
    for (const auto& file : kind.files) files += (files.empty() ? "" : " + ") + file;
    text += (text.empty() ? "" : ", ") + files + " (" + kind.families + ")";
  }
  return text;
}

bool holds(const fs::path& dir, const TokenizerKind& kind) {
  return std::all_of(kind.files.begin(), kind.files.end(),
                     [&](const std::string& file) { return fs::is_regular_file(dir / file); });
}

json read_json_object(const fs::path& path) {
  json object = json::parse(read_file(path), nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded() || !object.is_object()) throw Error(path.string() + ": not a JSON object");
  return object;
}

// A special token as 2.x files spell it: a string, or {"content": "..."}.
std::optional<std::string> token_text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string())
    return value["content"].get<std::string>();
  return std::nullopt;
}

void read_special_tokens(const json& object, const fs::path& file, TokenizerSettings& settings) {
  static const char* keys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                               "pad_token", "cls_token", "mask_token"};
  for (const char* key : keys) {
    auto it = object.find(key);
    if (it == object.end() || it->is_null() || settings.special_tokens.count(key)) continue;
    auto text = token_text(*it);
    if (!text) throw Error(file.string() + ": key '" + key + "' must be a string");
    settings.special_tokens[key] = *text;
  }
}

void read_flag(const json& object, const fs::path& file, const char* key, bool& flag) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return;
  if (!it->is_boolean()) throw Error(file.string() + ": key '" + std::string(key) + "' must be true or false");
  flag = it->get<bool>();
}

const TokenizerKind& kind_of_file(const fs::path& file, const std::string& requested) {
  std::string name = file.extension() == ".model" ? "sentencepiece" : file.extension() == ".json" ? "bpe" : "wordpiece";
  if (!requested.empty() && requested != name)
    throw Error("'" + file.string() + "' is not a " + requested + " vocabulary (expected " +
                kind_named(requested).files.front() + ")");
  return kind_named(name);
}

// The files a vocabulary file comes with (BPE's merges.txt beside vocab.json).
Paths kind_files(const TokenizerKind& kind, const fs::path& first) {
  Paths paths{first};
  for (size_t i = 1; i < kind.files.size(); ++i) paths.push_back(first.parent_path() / kind.files[i]);
  for (const auto& path : paths)
    if (!fs::is_regular_file(path))
      throw Error("tokenizer file '" + path.string() + "' does not exist (a " + kind.name + " tokenizer needs " +
                  expected_files() + ")");
  return paths;
}

}  // namespace

std::string tokenizer_kind_in(const fs::path& dir, const std::string& preferred) {
  if (!preferred.empty()) return holds(dir, kind_named(preferred)) ? preferred : "";
  std::vector<std::string> found;
  for (const auto& kind : tokenizer_kinds())
    if (holds(dir, kind)) found.push_back(kind.name);
  if (found.size() > 1)
    throw Error("'" + dir.string() + "' holds the files of several tokenizers (" + found[0] + ", " + found[1] +
                "); pass the vocabulary file to use");
  return found.empty() ? "" : found.front();
}

TokenizerSettings read_tokenizer_settings(const fs::path& dir) {
  TokenizerSettings settings;
  const fs::path config_file = dir / "tokenizer_config.json";
  if (fs::is_regular_file(config_file)) {
    const json config = read_json_object(config_file);
    auto lower = config.find("do_lower_case");
    if (lower != config.end() && !lower->is_null()) {
      if (!lower->is_boolean()) throw Error(config_file.string() + ": key 'do_lower_case' must be true or false");
      settings.do_lower_case = lower->get<bool>();
    }
    read_flag(config, config_file, "remove_space", settings.remove_space);
    read_flag(config, config_file, "keep_accents", settings.keep_accents);
    read_special_tokens(config, config_file, settings);
  }
  const fs::path map_file = dir / "special_tokens_map.json";
  if (fs::is_regular_file(map_file)) read_special_tokens(read_json_object(map_file), map_file, settings);
  return settings;
}

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& path, const TokenizerRequest& request) {
  if (!fs::exists(path))
    throw Error("tokenizer not found: '" + path.string() + "' does not exist (expected a model directory with " +
                expected_files() + ", or one of those files)");
  TokenizerSettings settings;
  Paths files;
  const TokenizerKind* kind = nullptr;
  if (fs::is_directory(path)) {
    const std::string name = tokenizer_kind_in(path, request.kind);
    if (name.empty())
      throw Error("'" + path.string() + "' has no " + (request.kind.empty() ? "" : request.kind + " ") +
                  "tokenizer: expected " +
                  (request.kind.empty() ? expected_files() : kind_named(request.kind).files.front()) +
                  ". Download the model with tools/download_models.sh, or pass the vocabulary file (--vocab FILE)");
    kind = &kind_named(name);
    files = kind_files(*kind, path / kind->files.front());
    settings = read_tokenizer_settings(path);
  } else {
    kind = &kind_of_file(path, request.kind);
    files = kind_files(*kind, path);
  }
  if (request.do_lower_case) settings.do_lower_case = request.do_lower_case;
  if (request.keep_accents) settings.keep_accents = *request.keep_accents;
  return kind->make(files, std::move(settings));
}

void save_tokenizer(const Tokenizer& tokenizer, const fs::path& dir) {
  const auto& kind = kind_named(tokenizer.kind());
  const auto sources = tokenizer.files();
  for (size_t i = 0; i < sources.size() && i < kind.files.size(); ++i) {
    std::error_code ec;
    const fs::path target = dir / kind.files[i];
    if (!fs::equivalent(sources[i], target, ec)) write_file_atomically(target, read_file(sources[i]));
  }
  const TokenizerSettings& s = tokenizer.settings();
  json config = json::object();
  if (s.do_lower_case) config["do_lower_case"] = *s.do_lower_case;
  if (kind.name == "sentencepiece") {
    config["remove_space"] = s.remove_space;
    config["keep_accents"] = s.keep_accents;
  }
  write_file_atomically(dir / "tokenizer_config.json", config.dump() + "\n");
  const SpecialTokens& t = tokenizer.special_tokens();
  json map = json::object();
  const std::pair<const char*, const std::string*> named[] = {{"bos_token", &t.bos}, {"eos_token", &t.eos},
                                                              {"unk_token", &t.unk}, {"sep_token", &t.sep},
                                                              {"pad_token", &t.pad}, {"cls_token", &t.cls},
                                                              {"mask_token", &t.mask}};
  for (const auto& [key, value] : named)
    if (!value->empty()) map[key] = *value;
  write_file_atomically(dir / "special_tokens_map.json", map.dump() + "\n");
}

}  // namespace layerprobe
