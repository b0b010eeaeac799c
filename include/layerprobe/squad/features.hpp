// Examples -> sliding-window features, as transformers 2.5.1's
// squad_convert_examples_to_features builds them (kept unpadded), for any
// tokenizer: the pair layout ([CLS] q [SEP] c [SEP], <s> q </s></s> c </s>, ...)
// and token types come from Tokenizer::pair_layout().
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "layerprobe/squad/squad.hpp"

namespace layerprobe {

class Tokenizer;

// The sliding-window settings (HF's max_seq_length, doc_stride,
// max_query_length): one struct for every command that featurises.
struct WindowOptions {
  int max_seq_length = 384;
  int doc_stride = 128;
  int max_query_length = 64;
  // Place the labels and the token -> word map where transformers' legacy
  // squad.py does (PairLayout::legacy_context_offset): for a tokenizer whose
  // class it does not know to double the separator (XLM-RoBERTa under 4.57.5,
  // tokenizer.json pair templates with more specials than a single text has)
  // they sit one or more tokens before the context tokens they describe. Off
  // (the default): at the context tokens themselves. Only parity with HF's
  // run_squad for those tokenizers needs it on.
  bool hf_legacy_offsets = false;

  // Error (exit code 2) naming the setting when one is out of range for `layout_tokens` special tokens.
  void validate(int layout_tokens = 3) const;
  nlohmann::json to_json() const;
  // The keys to_json writes, each falling back to this struct's default.
  static WindowOptions from_json(const nlohmann::json& json);
};

struct FeatureOptions {
  WindowOptions window;
  bool is_training = false;
  int threads = 0;  // worker threads; 0 = all available cores
  // false: drop what only decoding reads (tokens, token_to_orig_map,
  // token_is_max_context, p_mask) as each feature is made; training needs
  // only the ids and targets, and a SQuAD train set's features then take a
  // third of the memory.
  bool decoding_fields = true;
};

// One window of the tokenizer's pair layout (`[CLS] question [SEP] context
// [SEP]` for BERT-style tokenizers), unpadded (attention mask is all ones over
// input_ids.size() tokens).
struct SquadFeature {
  // Index into the examples vector it came from (HF renumbers only over
  // examples that produced features; they differ only for empty contexts).
  int example_index = 0;
  int unique_id = 0;
  std::vector<int64_t> input_ids;
  std::vector<int64_t> token_type_ids;
  std::vector<uint8_t> p_mask;  // 1 = cannot be part of an answer
  // Pieces of input_ids up to the first <pad> id, as HF builds them.
  std::vector<std::string> tokens;
  // Per token: whitespace-word index in the context, or -1 outside the context.
  std::vector<int> token_to_orig_map;
  // Per token: 1 when this window gives the token its maximal context.
  std::vector<uint8_t> token_is_max_context;
  int paragraph_len = 0;
  // Training targets (token indices; 0/0 = the first token, [CLS] or <s>).
  int start_position = 0;
  int end_position = 0;
  bool is_impossible = false;

  size_t length() const { return input_ids.size(); }
};

// Features of every example, in example order (unique_id from 1000000000),
// computed on `options.threads` threads with a deterministic result. An
// example with an empty context yields none. Error naming the question when
// its tokens cannot fit a window (HF's assertion) or it has no tokens.
std::vector<SquadFeature> convert_examples_to_features(const std::vector<SquadExample>& examples,
                                                       const Tokenizer& tokenizer,
                                                       const FeatureOptions& options);

// One line (no newline) in the schema of the golden features files, as
// Python's json.dumps writes it: qas_id, input_ids, token_type_ids,
// start_position, end_position, is_impossible, token_to_orig_map.
std::string feature_to_json_line(const SquadFeature& feature, const std::string& qas_id);

}  // namespace layerprobe
