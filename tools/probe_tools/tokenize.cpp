// probe_tools tokenize: JSONL texts -> ALBERT pieces and ids (HF AlbertTokenizer).
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "commands.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/text/albert_tokenizer.hpp"

namespace layerprobe::tools {

namespace {

struct TokenizeArgs {
  std::filesystem::path vocab, input, output;
  bool cased = false;
  bool keep_accents = false;
};

// A JSON array of strings as Python's json.dumps(..., ensure_ascii=False) writes it.
std::string python_json(const std::vector<std::string>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + nlohmann::json(values[i]).dump();
  return out + "]";
}

std::string python_json(const std::vector<int64_t>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + std::to_string(values[i]);
  return out + "]";
}

std::string tokenize_line(const AlbertTokenizer& tokenizer, const std::string& line, const std::string& where) {
  nlohmann::json record;
  try {
    record = nlohmann::json::parse(line);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(where + ": not a JSON object (" + e.what() + "); expected {\"text\": ...}");
  }
  auto text = record.find("text");
  if (!record.is_object() || text == record.end() || !text->is_string())
    throw Error(where + ": expected an object with a string \"text\"");
  auto pieces = tokenizer.tokenize(text->get<std::string>());
  return "{\"text\": " + text->dump() + ", \"pieces\": " + python_json(pieces) +
         ", \"ids\": " + python_json(tokenizer.convert_tokens_to_ids(pieces)) + "}\n";
}

void run_tokenize(const TokenizeArgs& args) {
  TokenizerOptions options;
  options.do_lower_case = !args.cased;
  options.keep_accents = args.keep_accents;
  AlbertTokenizer tokenizer(args.vocab, options);
  std::ifstream file;
  if (!args.input.empty()) {
    file.open(args.input);
    if (!file) throw Error("cannot open input '" + args.input.string() + "'");
  }
  std::istream& in = args.input.empty() ? std::cin : file;
  std::string source = args.input.empty() ? "<stdin>" : args.input.string();
  std::ostringstream out;
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    out << tokenize_line(tokenizer, line, source + " line " + std::to_string(number));
  }
  if (args.output.empty())
    std::cout << out.str() << std::flush;
  else
    write_file_atomically(args.output, out.str());
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto* command = app.add_subcommand(
      "tokenize", "Tokenise JSONL lines {\"text\": ...} with ALBERT's tokenizer (HF AlbertTokenizer, "
                  "transformers 2.5.1) into {\"text\", \"pieces\", \"ids\"} lines");
  auto args = std::make_shared<TokenizeArgs>();
  command->add_option("--vocab", args->vocab, "SentencePiece model, e.g. spiece.model of albert-base-v2")
      ->required();
  command->add_option("--input", args->input, "JSONL input (default: standard input)");
  command->add_option("--output", args->output, "JSONL output (default: standard output)");
  command->add_flag("--cased", args->cased, "Keep letter case (do_lower_case=False)");
  command->add_flag("--keep-accents", args->keep_accents, "Keep accents (no NFKD / combining-mark removal)");
  command->callback([args] { run_tokenize(*args); });
}

}  // namespace layerprobe::tools
