#include "layerprobe/text/tokenizer_registry.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>
#include <vector>

#include "layerprobe/core/common.hpp"
#include "text/albert_tokenizer.hpp"
#include "text/bpe_tokenizer.hpp"
#include "text/deberta_v2_tokenizer.hpp"
#include "text/gpt2_tokenizer.hpp"
#include "text/json_file.hpp"
#include "text/tokenizer_json/tokenizer_json.hpp"
#include "text/wordpiece_tokenizer.hpp"
#include "text/xlm_roberta_tokenizer.hpp"

namespace layerprobe {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using Paths = std::vector<fs::path>;

struct TokenizerKind {
  std::string name;
  std::vector<std::string> files;  // as a model directory holds them
  std::string families;            // for messages
  std::string tokenizer_class;     // HF's class, written by save_tokenizer for the 4.x kinds
  std::string model_type;          // config.json's model_type that tells kinds with the same files apart
  std::function<std::unique_ptr<Tokenizer>(const Paths&, TokenizerSettings)> make;
};

const char* const kTokenizerJson = "tokenizer.json";

// One line per tokenizer kind. Kinds with the same files (bpe, gpt2) are told
// apart by the family, or by tokenizer_config.json's tokenizer_class.
const std::vector<TokenizerKind>& tokenizer_kinds() {
  static const std::vector<TokenizerKind> kinds{
      {"sentencepiece", {"spiece.model"}, "ALBERT", "", "albert",
       [](const Paths& p, TokenizerSettings s) { return std::make_unique<AlbertTokenizer>(p[0], std::move(s)); }},
      {"wordpiece", {"vocab.txt"}, "BERT, DistilBERT, ELECTRA", "", "bert",
       [](const Paths& p, TokenizerSettings s) { return std::make_unique<WordPieceTokenizer>(p[0], std::move(s)); }},
      {"bpe", {"vocab.json", "merges.txt"}, "RoBERTa", "", "roberta",
       [](const Paths& p, TokenizerSettings s) {
         return std::make_unique<ByteLevelBpeTokenizer>(p[0], p[1], std::move(s));
       }},
      {"xlm-roberta", {"sentencepiece.bpe.model"}, "XLM-RoBERTa", "XLMRobertaTokenizer", "xlm-roberta",
       [](const Paths& p, TokenizerSettings s) { return std::make_unique<XlmRobertaTokenizer>(p[0], std::move(s)); }},
      {"deberta-v2", {"spm.model"}, "DeBERTa-v2/v3", "DebertaV2Tokenizer", "deberta-v2",
       [](const Paths& p, TokenizerSettings s) { return std::make_unique<DebertaV2Tokenizer>(p[0], std::move(s)); }},
      {"gpt2", {"vocab.json", "merges.txt"}, "GPT-2", "GPT2Tokenizer", "gpt2",
       [](const Paths& p, TokenizerSettings s) { return std::make_unique<Gpt2Tokenizer>(p[0], p[1], std::move(s)); }},
      {kTokenizerJson, {kTokenizerJson}, "the tokenizers library's format: ModernBERT, Llama, Qwen2, ...", "", "",
       [](const Paths& p, TokenizerSettings s) { return std::make_unique<TokenizerJson>(p[0], std::move(s)); }},
  };
  return kinds;
}

std::string kind_names() {
  std::string names;
  for (const auto& kind : tokenizer_kinds()) names += (names.empty() ? "" : ", ") + kind.name;
  return names;
}

const TokenizerKind& kind_named(const std::string& name) {
  for (const auto& kind : tokenizer_kinds())
    if (kind.name == name) return kind;
  throw Error("unknown tokenizer kind '" + name + "' (known: " + kind_names() + ")");
}

std::string files_of(const TokenizerKind& kind) {
  std::string files;
  for (const auto& file : kind.files) files += (files.empty() ? "" : " + ") + file;
  return files;
}

std::string expected_files(bool with_json = true) {
  std::string text;
  for (const auto& kind : tokenizer_kinds())
    if (with_json || kind.name != kTokenizerJson)
      text += (text.empty() ? "" : ", ") + files_of(kind) + " (" + kind.families + ")";
  return text;
}

bool holds(const fs::path& dir, const TokenizerKind& kind) {
  return std::all_of(kind.files.begin(), kind.files.end(),
                     [&](const std::string& file) { return fs::is_regular_file(dir / file); });
}

json read_json_object(const fs::path& path) {
  json object = read_json_file(path);
  if (!object.is_object())
    throw Error(path.string() + ": the top level is " + std::string(object.type_name()) +
                ", not a JSON object {\"key\": value, ...}");
  return object;
}

// tokenizer_config.json's tokenizer_class ("" when there is none).
std::string tokenizer_class_in(const fs::path& dir) {
  const fs::path config = dir / "tokenizer_config.json";
  if (!fs::is_regular_file(config)) return "";
  const json object = read_json_object(config);
  auto it = object.find("tokenizer_class");
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

// config.json's model_type ("" when there is none or it cannot be read).
std::string model_type_in(const fs::path& dir) {
  const fs::path config = dir / "config.json";
  if (!fs::is_regular_file(config)) return "";
  json object = json::parse(read_file(config), nullptr, /*allow_exceptions=*/false);
  if (!object.is_object() || !object.contains("model_type") || !object["model_type"].is_string()) return "";
  return object["model_type"].get<std::string>();
}

// Of kinds with the same files, the one `dir`'s tokenizer_class names, else
// the one of its config.json's model_type, else the first.
std::string pick_among(const std::vector<std::string>& same_files, const fs::path& dir) {
  std::string cls = tokenizer_class_in(dir);
  if (cls.size() > 4 && cls.compare(cls.size() - 4, 4, "Fast") == 0) cls.resize(cls.size() - 4);
  for (const auto& name : same_files)
    if (!cls.empty() && kind_named(name).tokenizer_class == cls) return name;
  const std::string model_type = model_type_in(dir);
  for (const auto& name : same_files)
    if (!model_type.empty() && kind_named(name).model_type == model_type) return name;
  return same_files.front();
}

bool read_bool(const json& value, const fs::path& file, const std::string& key) {
  if (!value.is_boolean()) throw Error(file.string() + ": key '" + key + "' must be true or false");
  return value.get<bool>();
}

// An AddedToken as HF files spell it: {"content": ..., "lstrip": ..., ...} (4.x
// also tags it "__type": "AddedToken").
AddedToken added_token(const json& value, const fs::path& file, const std::string& key) {
  if (!value.contains("content") || !value["content"].is_string())
    throw Error(file.string() + ": key '" + key + "' must be a string or an object with a string \"content\"");
  AddedToken token;
  token.content = value["content"].get<std::string>();
  const std::pair<const char*, bool*> flags[] = {{"single_word", &token.single_word}, {"lstrip", &token.lstrip},
                                                 {"rstrip", &token.rstrip}, {"normalized", &token.normalized},
                                                 {"special", &token.special}};
  for (const auto& [name, flag] : flags) {
    auto it = value.find(name);
    if (it != value.end() && !it->is_null()) *flag = read_bool(*it, file, key + "." + name);
  }
  return token;
}

void read_special_tokens(const json& object, const fs::path& file, TokenizerSettings& settings) {
  static const char* keys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                               "pad_token", "cls_token", "mask_token"};
  for (const char* key : keys) {
    auto it = object.find(key);
    if (it == object.end() || it->is_null() || settings.special_tokens.count(key)) continue;
    if (it->is_string()) {
      settings.special_tokens[key] = it->get<std::string>();
    } else if (it->is_object()) {
      AddedToken token = added_token(*it, file, key);
      token.special = true;
      settings.special_tokens[key] = token.content;
      settings.added_tokens.emplace_back(-1, token);
    } else {
      throw Error(file.string() + ": key '" + key + "' must be a string");
    }
  }
}

// 4.x's added_tokens_decoder: {"<id>": {AddedToken}, ...}.
void read_added_tokens_decoder(const json& object, const fs::path& file, TokenizerSettings& settings) {
  auto it = object.find("added_tokens_decoder");
  if (it == object.end() || it->is_null()) return;
  if (!it->is_object()) throw Error(file.string() + ": key 'added_tokens_decoder' must be an object {\"id\": {...}}");
  for (const auto& [id_text, value] : it->items()) {
    const std::string key = "added_tokens_decoder." + id_text;
    size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(id_text, &used);
    } catch (const std::exception&) {
    }
    if (used != id_text.size() || id < 0)
      throw Error(file.string() + ": key '" + key + "': the keys of added_tokens_decoder are token ids (0, 1, ...)");
    if (!value.is_object()) throw Error(file.string() + ": key '" + key + "' must be an object with \"content\"");
    settings.added_tokens.emplace_back(id, added_token(value, file, key));
  }
}

// The files a vocabulary file comes with (BPE's merges.txt beside vocab.json).
Paths kind_files(const TokenizerKind& kind, const fs::path& first) {
  Paths paths{first};
  for (size_t i = 1; i < kind.files.size(); ++i) paths.push_back(first.parent_path() / kind.files[i]);
  for (const auto& path : paths)
    if (!fs::is_regular_file(path))
      throw Error("tokenizer file '" + path.string() + "' does not exist (a " + kind.name + " tokenizer needs " +
                  files_of(kind) + ")");
  return paths;
}

// The kind of a vocabulary file: its name, then the requested kind within the files' group.
const TokenizerKind& kind_of_file(const fs::path& file, const std::string& requested) {
  if (file.filename() == kTokenizerJson) return kind_named(kTokenizerJson);
  std::vector<std::string> group;
  std::string fallback;
  if (file.extension() == ".model") {
    group = {"sentencepiece", "xlm-roberta", "deberta-v2"};
    fallback = file.filename() == "sentencepiece.bpe.model" ? "xlm-roberta"
               : file.filename() == "spm.model"             ? "deberta-v2"
                                                            : "sentencepiece";
  } else if (file.extension() == ".json") {
    group = {"bpe", "gpt2"};
    fallback = pick_among(group, file.parent_path());
  } else {
    group = {"wordpiece"};
    fallback = "wordpiece";
  }
  if (requested.empty() || requested == kTokenizerJson) return kind_named(fallback);
  if (std::find(group.begin(), group.end(), requested) == group.end())
    throw Error("'" + file.string() + "' is not a " + requested + " vocabulary (expected " +
                files_of(kind_named(requested)) + ", or " + kTokenizerJson + ")");
  return kind_named(requested);
}

}  // namespace

TokenizerSource parse_tokenizer_source(const std::string& text) {
  if (text == "auto") return TokenizerSource::automatic;
  if (text == "slow") return TokenizerSource::slow;
  if (text == "json") return TokenizerSource::json;
  throw Error("unknown tokenizer source '" + text + "': use auto (the family's own files when present, else " +
                  kTokenizerJson + "), slow (the family's own files) or json (" + kTokenizerJson + ")",
              2);
}

std::string tokenizer_kind_in(const fs::path& dir, const std::string& preferred, TokenizerSource source) {
  const bool json_there = source != TokenizerSource::slow && fs::is_regular_file(dir / kTokenizerJson);
  if (source == TokenizerSource::json) return json_there ? kTokenizerJson : "";
  if (!preferred.empty()) {
    const TokenizerKind& kind = kind_named(preferred);
    if (kind.name != kTokenizerJson && holds(dir, kind)) return preferred;
    return json_there ? kTokenizerJson : "";
  }
  std::vector<std::string> found;
  std::vector<std::vector<std::string>> file_sets;
  for (const auto& kind : tokenizer_kinds()) {
    if (kind.name == kTokenizerJson || !holds(dir, kind)) continue;
    auto same = std::find(file_sets.begin(), file_sets.end(), kind.files);
    if (same != file_sets.end()) {  // bpe and gpt2: one set of files
      std::vector<std::string> candidates;
      for (const auto& name : found)
        if (kind_named(name).files == kind.files) candidates.push_back(name);
      candidates.push_back(kind.name);
      found[static_cast<size_t>(same - file_sets.begin())] = pick_among(candidates, dir);
      continue;
    }
    found.push_back(kind.name);
    file_sets.push_back(kind.files);
  }
  if (found.size() > 1)
    throw Error("'" + dir.string() + "' holds the files of several tokenizers (" + found[0] + ", " + found[1] +
                "); pass the vocabulary file to use");
  if (!found.empty()) return found.front();
  return json_there ? kTokenizerJson : "";
}

TokenizerSettings read_tokenizer_settings(const fs::path& dir) {
  TokenizerSettings settings;
  const fs::path config_file = dir / "tokenizer_config.json";
  if (fs::is_regular_file(config_file)) {
    const json config = read_json_object(config_file);
    auto lower = config.find("do_lower_case");
    if (lower != config.end() && !lower->is_null())
      settings.do_lower_case = read_bool(*lower, config_file, "do_lower_case");
    const std::pair<const char*, bool*> flags[] = {{"remove_space", &settings.remove_space},
                                                   {"keep_accents", &settings.keep_accents},
                                                   {"split_by_punct", &settings.split_by_punct},
                                                   {"add_prefix_space", &settings.add_prefix_space},
                                                   {"add_bos_token", &settings.add_bos_token}};
    for (const auto& [key, flag] : flags) {
      auto it = config.find(key);
      if (it != config.end() && !it->is_null()) *flag = read_bool(*it, config_file, key);
    }
    read_added_tokens_decoder(config, config_file, settings);
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
  Paths files;
  const TokenizerKind* kind = nullptr;
  fs::path settings_dir;
  if (fs::is_directory(path)) {
    const std::string name = tokenizer_kind_in(path, request.kind, request.source);
    if (name.empty()) {
      const std::string wanted =
          request.source == TokenizerSource::json ? std::string(kTokenizerJson)
          : request.kind.empty()                  ? expected_files(request.source != TokenizerSource::slow)
          : request.source == TokenizerSource::slow
              ? files_of(kind_named(request.kind))
              : files_of(kind_named(request.kind)) + (request.kind == kTokenizerJson ? "" : " or tokenizer.json");
      throw Error("'" + path.string() + "' has no " + (request.kind.empty() ? "" : request.kind + " ") +
                  "tokenizer: expected " + wanted +
                  ". Download the model with tools/download_models.sh, or pass the vocabulary file (--vocab FILE)");
    }
    kind = &kind_named(name);
    files = kind_files(*kind, path / kind->files.front());
    settings_dir = path;
  } else {
    kind = &kind_of_file(path, request.kind);
    files = kind_files(*kind, path);
    settings_dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  }
  TokenizerSettings settings = read_tokenizer_settings(settings_dir);
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
  if (kind.name == "deberta-v2") config["split_by_punct"] = s.split_by_punct;
  if (kind.name == "gpt2") {
    config["add_prefix_space"] = s.add_prefix_space;
    config["add_bos_token"] = s.add_bos_token;
  }
  if (!kind.tokenizer_class.empty()) config["tokenizer_class"] = kind.tokenizer_class;
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
