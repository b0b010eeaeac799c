// SQuAD 2.0 JSON -> examples, as transformers 2.5.1's SquadV2Processor reads them.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace layerprobe {

struct SquadExample {
  std::string qas_id;
  std::string question_text;
  std::string context_text;
  std::string title;
  // HF's whitespace split of the context, and for each context character
  // (Unicode code point, the unit answer_start counts) the word it belongs to.
  std::vector<std::string> doc_tokens;
  std::vector<int> char_to_word_offset;
  // Target: the first answer, as word indices into doc_tokens (0/0 and empty
  // text when impossible). Filled in both modes; HF uses it only for training.
  // Python index semantics: -1 when answer_start falls on leading whitespace.
  std::string answer_text;
  int start_position = 0;
  int end_position = 0;
  bool is_impossible = false;
  // Every gold answer text, for evaluation.
  std::vector<std::string> answers;
};

struct SquadLoadOptions {
  // Training mode: the first answer becomes the target, and an example whose
  // answer text is not found at answer_start is skipped (as HF does).
  bool is_training = false;
};

struct SquadDataset {
  std::vector<SquadExample> examples;
  size_t skipped = 0;  // training examples dropped because the answer did not match the context
  std::vector<std::string> duplicate_ids;  // question ids seen more than once (a warning is logged)
};

// Loads a SQuAD 2.0 file; Error naming the file (and question id) on malformed input.
SquadDataset load_squad(const std::filesystem::path& path, const SquadLoadOptions& options = {});
// Same, from JSON text already in memory; `source` names it in errors.
SquadDataset parse_squad(const std::string& json_text, const std::string& source,
                         const SquadLoadOptions& options = {});

}  // namespace layerprobe
