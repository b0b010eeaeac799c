// probe_tools tokenize: JSONL texts -> pieces and ids with any family's tokenizer (HF 2.5.1 semantics).
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "commands.hpp"
#include "layerprobe/core/common.hpp"

namespace layerprobe::tools {

namespace {

struct TokenizeArgs {
  TokenizerChoice tokenizer;
  std::filesystem::path input, output;
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

std::string tokenize_line(const Tokenizer& tokenizer, const std::string& line, const std::string& where) {
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
  const auto tokenizer = open_tokenizer(args.tokenizer);
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
    out << tokenize_line(*tokenizer, line, source + " line " + std::to_string(number));
  }
  if (args.output.empty())
    std::cout << out.str() << std::flush;
  else
    write_file_atomically(args.output, out.str());
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto* command = app.add_subcommand(
      "tokenize", "Tokenise JSONL lines {\"text\": ...} with a model's tokenizer (transformers 2.5.1's "
                  "AlbertTokenizer, BertTokenizer or RobertaTokenizer; 4.57.5's XLMRobertaTokenizer, "
                  "DebertaV2Tokenizer or GPT2Tokenizer; or a tokenizer.json) into {\"text\", \"pieces\", \"ids\"} lines");
  auto args = std::make_shared<TokenizeArgs>();
  add_tokenizer_options(*command, args->tokenizer);
  command->add_option("--input", args->input, "JSONL input (default: standard input)");
  command->add_option("--output", args->output, "JSONL output (default: standard output)");
  command->callback([args] { run_tokenize(*args); });
}

}  // namespace layerprobe::tools
