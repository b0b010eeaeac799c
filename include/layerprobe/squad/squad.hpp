// SQuAD 2.0 JSON -> examples, as transformers 2.5.1's SquadV2Processor reads them.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace layerprobe {

// A paragraph's text and HF's whitespace split of it (split_context's
// words), shared by all its questions: a SQuAD train set holds each
// paragraph once instead of once per question.
struct SquadContext {
  std::string text;
  std::vector<std::string> words;
};

struct SquadExample {
  std::string qas_id;
  std::string question_text;
  std::string title;
  std::shared_ptr<const SquadContext> context;  // set for every loaded example
  const std::string& context_text() const { return context->text; }
  const std::vector<std::string>& doc_tokens() const { return context->words; }
  // Target: the first answer, as word indices into doc_tokens (0/0 and empty
  // text when impossible). Filled in both modes; HF uses it only for training.
  // Python index semantics: -1 when answer_start falls on leading whitespace.
  std::string answer_text;
  int start_position = 0;
  int end_position = 0;
  bool is_impossible = false;
  // Every gold answer text, for evaluation.
  std::vector<std::string> answers;
  // False for a question without answers that is not marked is_impossible
  // (accepted in evaluation mode only; its features are HF's all the same).
  bool labeled = true;
};

// HF's whitespace split of a context, and for each character (Unicode code
// point, the unit answer_start counts) the word it belongs to (-1 before the
// first word).
struct SplitContext {
  std::vector<std::string> words;
  std::vector<int> char_to_word;
};
SplitContext split_context(const std::string& context);

struct SquadLoadOptions {
  // Training mode: the first answer becomes the target, and an example whose
  // answer text is not found at answer_start is skipped (as HF does).
  bool is_training = false;
};

struct SquadDataset {
  std::vector<SquadExample> examples;
  size_t skipped = 0;  // training examples dropped because the answer did not match the context
  size_t unlabeled = 0;  // questions without answers, not marked is_impossible (evaluation mode only)
  std::vector<std::string> duplicate_ids;  // question ids seen more than once (a warning is logged)
};

// Loads a SQuAD 2.0 file; Error naming the file (and question id) on malformed input.
SquadDataset load_squad(const std::filesystem::path& path, const SquadLoadOptions& options = {});
// Same, from JSON text already in memory; `source` names it in errors.
SquadDataset parse_squad(const std::string& json_text, const std::string& source,
                         const SquadLoadOptions& options = {});

}  // namespace layerprobe
