#include "layerprobe/squad/squad.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <utf8proc.h>

#include <algorithm>
#include <unordered_map>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"

namespace layerprobe {

using nlohmann::json;

namespace {

// HF's squad.py _is_whitespace: the only separators of context words.
bool is_squad_whitespace(char32_t c) { return c == U' ' || c == U'\t' || c == U'\r' || c == U'\n' || c == 0x202F; }

void require_utf8(const std::string& text, const std::string& source) {
  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  utf8proc_ssize_t size = static_cast<utf8proc_ssize_t>(text.size());
  for (utf8proc_ssize_t pos = 0; pos < size;) {
    utf8proc_int32_t cp = 0;
    auto n = utf8proc_iterate(bytes + pos, size - pos, &cp);
    if (n <= 0)
      throw Error(source + ": not UTF-8 text (invalid byte at offset " + std::to_string(pos) +
                  "); SQuAD files must be UTF-8 encoded JSON");
    pos += n;
  }
}

// Where in the file a problem is, for error messages.
struct Location {
  const std::string& source;
  std::string path;        // e.g. data[2].paragraphs[5]
  std::string question_id;  // empty before the id is known

  [[noreturn]] void fail(const std::string& problem) const {
    std::string where = source + ": " + path;
    if (!question_id.empty()) where += " (question id '" + question_id + "')";
    throw Error(where + ": " + problem);
  }
  Location child(const std::string& suffix) const { return {source, path + suffix, question_id}; }
};

const json& member(const json& object, const char* key, json::value_t type, const char* type_name,
                   const Location& at) {
  auto it = object.find(key);
  if (it == object.end()) at.fail(std::string("missing '") + key + "'; every SQuAD entry needs it");
  bool ok = it->type() == type ||
            (type == json::value_t::number_integer && it->type() == json::value_t::number_unsigned);
  if (!ok) at.fail(std::string("'") + key + "' must be " + type_name + ", not " + it->type_name());
  return *it;
}

const json& array_member(const json& object, const char* key, const Location& at) {
  return member(object, key, json::value_t::array, "an array", at);
}
std::string string_member(const json& object, const char* key, const Location& at) {
  return member(object, key, json::value_t::string, "a string", at).get<std::string>();
}

void require_object(const json& value, const Location& at) {
  if (!value.is_object()) at.fail(std::string("must be a JSON object, not ") + value.type_name());
}

}  // namespace

// As HF's SquadExample splits a context.
SplitContext split_context(const std::string& context) {
  SplitContext split;
  bool previous_is_whitespace = true;
  for (char32_t c : utf8_to_u32(context)) {
    if (is_squad_whitespace(c)) {
      previous_is_whitespace = true;
    } else {
      if (previous_is_whitespace) split.words.emplace_back();
      split.words.back() += u32_to_utf8(std::u32string_view(&c, 1));
      previous_is_whitespace = false;
    }
    split.char_to_word.push_back(static_cast<int>(split.words.size()) - 1);
  }
  return split;
}

namespace {

// Python's sequence[index] for -len <= index < len.
int python_at(const std::vector<int>& values, long index) {
  if (index < 0) index += static_cast<long>(values.size());
  return values.at(static_cast<size_t>(index));
}

// " ".join(words[begin:end]) with Python slice semantics.
std::string join_slice(const std::vector<std::string>& words, long begin, long end) {
  long size = static_cast<long>(words.size());
  auto clamp = [size](long i) { return std::clamp(i < 0 ? i + size : i, 0L, size); };
  return join_words(std::vector<std::string>(words.begin() + clamp(begin), words.begin() + std::max(clamp(begin), clamp(end))));
}

struct Answer {
  std::string text;
  long start = 0;  // code points
};

std::vector<Answer> read_answers(const json& qa, size_t context_chars, const Location& at) {
  std::vector<Answer> answers;
  if (!qa.contains("answers")) return answers;  // an unlabeled question
  const auto& list = array_member(qa, "answers", at);
  for (size_t i = 0; i < list.size(); ++i) {
    auto answer_at = at.child(".answers[" + std::to_string(i) + "]");
    require_object(list[i], answer_at);
    Answer answer;
    answer.text = string_member(list[i], "text", answer_at);
    answer.start = member(list[i], "answer_start", json::value_t::number_integer, "an integer", answer_at).get<long>();
    if (answer.start < 0 || static_cast<size_t>(answer.start) >= context_chars)
      answer_at.fail("answer_start " + std::to_string(answer.start) + " is outside the context (" +
                     std::to_string(context_chars) + " characters); fix the offset in the file");
    answers.push_back(std::move(answer));
  }
  return answers;
}

// Word span of the first answer, as SquadExample computes it.
void set_target(SquadExample& example, const SplitContext& split, const Answer& first) {
  example.answer_text = first.text;
  long length = static_cast<long>(utf8_to_u32(first.text).size());
  long last_char = std::min(first.start + length - 1, static_cast<long>(split.char_to_word.size()) - 1);
  example.start_position = python_at(split.char_to_word, first.start);
  example.end_position = python_at(split.char_to_word, last_char);
}

// HF skips a training example whose answer text is not inside the words its
// answer_start points at (squad_convert_example_to_features).
bool answer_found(const SquadExample& example) {
  auto actual = join_slice(example.doc_tokens(), example.start_position, static_cast<long>(example.end_position) + 1);
  auto cleaned = join_words(python_split(std::string_view(example.answer_text)));
  return actual.find(cleaned) != std::string::npos;
}

class Reader {
 public:
  Reader(const std::string& source, const SquadLoadOptions& options) : source_(source), options_(options) {}

  SquadDataset read(const json& root) {
    Location at{source_, "top level", ""};
    require_object(root, at);
    const auto& data = array_member(root, "data", at);
    for (size_t a = 0; a < data.size(); ++a) read_article(data[a], Location{source_, "data[" + std::to_string(a) + "]", ""});
    report();
    return std::move(dataset_);
  }

 private:
  void read_article(const json& article, const Location& at) {
    require_object(article, at);
    auto title_it = article.find("title");
    std::string title = title_it != article.end() && title_it->is_string() ? title_it->get<std::string>() : "";
    const auto& paragraphs = array_member(article, "paragraphs", at);
    for (size_t p = 0; p < paragraphs.size(); ++p)
      read_paragraph(paragraphs[p], title, at.child(".paragraphs[" + std::to_string(p) + "]"));
  }

  void read_paragraph(const json& paragraph, const std::string& title, const Location& at) {
    require_object(paragraph, at);
    auto context = string_member(paragraph, "context", at);
    const auto& qas = array_member(paragraph, "qas", at);
    auto split = split_context(context);
    auto shared = std::make_shared<const SquadContext>(SquadContext{std::move(context), split.words});
    for (size_t q = 0; q < qas.size(); ++q)
      read_question(qas[q], shared, title, split, at.child(".qas[" + std::to_string(q) + "]"));
  }

  void read_question(const json& qa, const std::shared_ptr<const SquadContext>& context, const std::string& title,
                     const SplitContext& split, Location at) {
    require_object(qa, at);
    SquadExample example;
    example.qas_id = string_member(qa, "id", at);
    at.question_id = example.qas_id;
    example.question_text = string_member(qa, "question", at);
    example.context = context;
    example.title = title;
    auto impossible = qa.find("is_impossible");
    if (impossible != qa.end()) {
      if (!impossible->is_boolean()) at.fail("'is_impossible' must be true or false");
      example.is_impossible = impossible->get<bool>();
    }
    if (!example.is_impossible) {
      auto answers = read_answers(qa, split.char_to_word.size(), at);
      if (answers.empty()) {
        // Unlabeled (test split, leaderboard or a user's questions): fine to
        // featurise and predict, as HF's evaluation mode does; training needs a target.
        if (options_.is_training)
          at.fail("marked answerable (is_impossible false) but has no answers; training needs one: add it or "
                  "set is_impossible");
        example.labeled = false;
        ++dataset_.unlabeled;
        if (++id_counts_[example.qas_id] == 2) dataset_.duplicate_ids.push_back(example.qas_id);
        dataset_.examples.push_back(std::move(example));
        return;
      }
      for (const auto& answer : answers) example.answers.push_back(answer.text);
      set_target(example, split, answers.front());
      if (options_.is_training && !answer_found(example)) {
        spdlog::warn("{}: skipping training question '{}': answer '{}' not found at answer_start {}", source_,
                     example.qas_id, example.answer_text, answers.front().start);
        ++dataset_.skipped;
        return;
      }
    }
    if (++id_counts_[example.qas_id] == 2) dataset_.duplicate_ids.push_back(example.qas_id);
    dataset_.examples.push_back(std::move(example));
  }

  void report() const {
    if (dataset_.unlabeled > 0)
      spdlog::info("{}: {} unlabeled question(s) (no answers, not marked is_impossible): predicted, never scored",
                   source_, dataset_.unlabeled);
    if (dataset_.skipped > 0)
      spdlog::warn("{}: skipped {} training question(s) whose answer text is not at answer_start (as HF does)",
                   source_, dataset_.skipped);
    if (!dataset_.duplicate_ids.empty()) {
      std::string ids;
      for (const auto& id : dataset_.duplicate_ids) ids += (ids.empty() ? "" : ", ") + id;
      spdlog::warn("{}: {} question id(s) occur more than once: {}", source_, dataset_.duplicate_ids.size(), ids);
    }
  }

  const std::string& source_;
  const SquadLoadOptions& options_;
  SquadDataset dataset_;
  std::unordered_map<std::string, int> id_counts_;
};

}  // namespace

SquadDataset parse_squad(const std::string& json_text, const std::string& source, const SquadLoadOptions& options) {
  require_utf8(json_text, source);
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number such as 1e999
    throw Error(source + ": not valid JSON (" + e.what() + "); expected a SQuAD 2.0 file");
  }
  return Reader(source, options).read(root);
}

SquadDataset load_squad(const std::filesystem::path& path, const SquadLoadOptions& options) {
  return parse_squad(read_file(path), path.string(), options);
}

}  // namespace layerprobe
