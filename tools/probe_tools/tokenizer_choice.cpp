// The --vocab/--model tokenizer options shared by tokenize, features and encode.
#include "commands.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/text/tokenizer_registry.hpp"

namespace layerprobe::tools {

void add_tokenizer_options(CLI::App& command, TokenizerChoice& choice) {
  command.add_option("--vocab", choice.vocab,
                     "Vocabulary file: *.model (SentencePiece: ALBERT's; sentencepiece.bpe.model XLM-R's; spm.model "
                     "DeBERTa's), vocab.txt (WordPiece), vocab.json with merges.txt beside it (byte-level BPE: "
                     "RoBERTa's, or GPT-2's) or tokenizer.json");
  command.add_option("--model", choice.model,
                     "Model directory: its tokenizer read as from_pretrained reads it (tokenizer_config.json, "
                     "special_tokens_map.json)");
  command.add_option("--tokenizer", choice.source,
                     "With --model: auto (the family's own tokenizer files when the directory has them, else "
                     "tokenizer.json), slow (the family's own files only) or json (tokenizer.json only)")
      ->capture_default_str();
  command.add_flag("--cased", choice.cased, "Keep letter case (do_lower_case=False)");
  command.add_flag("--lower-case", choice.lower_case,
                   "do_lower_case=True as from_pretrained passes it: text outside special tokens lower-cased first");
  command.add_flag("--keep-accents", choice.keep_accents, "ALBERT: keep accents (no NFKD / combining-mark removal)");
}

std::unique_ptr<Tokenizer> open_tokenizer(const TokenizerChoice& choice) {
  if (choice.vocab.empty() == choice.model.empty())
    throw Error("pass exactly one of --vocab FILE and --model DIR", 2);
  if (choice.cased && choice.lower_case) throw Error("--cased and --lower-case contradict each other", 2);
  TokenizerRequest request;
  if (choice.cased) request.do_lower_case = false;
  if (choice.lower_case) request.do_lower_case = true;
  if (choice.keep_accents) request.keep_accents = true;
  request.source = parse_tokenizer_source(choice.source);
  return load_tokenizer(choice.vocab.empty() ? choice.model : choice.vocab, request);
}

}  // namespace layerprobe::tools
