#include "layerprobe/synth/synth.hpp"

#include <sys/wait.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <iterator>
#include <set>
#include <sstream>

#include "layerprobe/core/common.hpp"
#include "layerprobe/text/sentencepiece.hpp"
#include "layerprobe/squad/squad.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using layerprobe::SynthOptions;
using nlohmann::json;

namespace {

// The byte offset of each code point of `text`, plus text.size() at the end.
std::vector<std::size_t> code_point_offsets(const std::string& text) {
  std::vector<std::size_t> offsets;
  for (std::size_t i = 0; i < text.size(); ++i)
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) offsets.push_back(i);
  offsets.push_back(text.size());
  return offsets;
}

// The `length`-byte answer that starts `start` code points into `context`, or
// "<out of range>".
std::string text_at(const std::string& context, std::size_t start, std::size_t length) {
  auto offsets = code_point_offsets(context);
  if (start >= offsets.size()) return "<out of range>";
  return context.substr(offsets[start], length);
}

std::vector<json> questions_of(const json& dataset) {
  std::vector<json> questions;
  for (const auto& article : dataset.at("data"))
    for (const auto& paragraph : article.at("paragraphs"))
      for (const auto& qa : paragraph.at("qas")) questions.push_back(qa);
  return questions;
}

std::size_t word_count(const std::string& text) {
  std::istringstream words(text);
  return std::distance(std::istream_iterator<std::string>(words), std::istream_iterator<std::string>());
}

// The person or employer a question is about: its capitalised words after
// the first ("What is Nora Silva's job?" -> "Nora Silva").
std::string subject_of(const std::string& question) {
  std::istringstream words(question);
  std::string word, subject;
  words >> word;
  while (words >> word) {
    if (!std::isupper(static_cast<unsigned char>(word[0]))) continue;
    for (const std::string suffix : {"?", "'s"})
      if (word.size() > suffix.size() && word.compare(word.size() - suffix.size(), suffix.size(), suffix) == 0)
        word.resize(word.size() - suffix.size());
    subject += (subject.empty() ? "" : " ") + word;
  }
  return subject;
}

SynthOptions small_options() {
  SynthOptions options;
  options.train_questions = 600;
  options.dev_questions = 200;
  return options;
}

}  // namespace

TEST(Synth, SameSeedSameDataOtherSeedOrSplitOtherData) {
  auto options = small_options();
  auto a = layerprobe::generate_synthetic_squad("train", 300, options);
  EXPECT_EQ(a, layerprobe::generate_synthetic_squad("train", 300, options));
  EXPECT_NE(a.at("data")[0]["paragraphs"][0]["context"],
            layerprobe::generate_synthetic_squad("dev", 300, options).at("data")[0]["paragraphs"][0]["context"]);
  options.seed = 7;
  EXPECT_NE(a, layerprobe::generate_synthetic_squad("train", 300, options));
}

TEST(Synth, AnswersAreExactSpansAndHalfTheQuestionsAreUnanswerable) {
  auto options = small_options();
  for (const std::string split : {"train", "dev"}) {
    auto dataset = layerprobe::generate_synthetic_squad(split, 2000, options);
    EXPECT_EQ(dataset.at("version"), "v2.0");
    std::set<std::string> ids;
    int impossible = 0, questions = 0;
    for (const auto& article : dataset.at("data")) {
      EXPECT_LE(article.at("paragraphs").size(), static_cast<std::size_t>(options.paragraphs_per_article));
      for (const auto& paragraph : article.at("paragraphs")) {
        std::string context = paragraph.at("context");
        EXPECT_GE(word_count(context), 5u) << context;
        EXPECT_LE(word_count(context), 100u) << context;
        EXPECT_LE(paragraph.at("qas").size(), static_cast<std::size_t>(options.questions_per_paragraph));
        for (const auto& qa : paragraph.at("qas")) {
          ++questions;
          EXPECT_TRUE(ids.insert(qa.at("id").get<std::string>()).second) << qa.at("id");
          bool is_impossible = qa.at("is_impossible");
          impossible += is_impossible;
          const auto& answers = qa.at("answers");
          if (is_impossible) {
            EXPECT_TRUE(answers.empty()) << qa.dump();
          } else if (split == "train") {
            EXPECT_EQ(answers.size(), 1u) << qa.dump();
          } else {
            EXPECT_TRUE(answers.size() >= 1 && answers.size() <= 3) << qa.dump();
          }
          for (const auto& answer : answers) {
            std::string text = answer.at("text");
            EXPECT_EQ(text_at(context, answer.at("answer_start"), text.size()), text) << qa.dump();
          }
          for (const auto& answer : qa.value("plausible_answers", json::array())) {
            std::string text = answer.at("text");
            EXPECT_EQ(text_at(context, answer.at("answer_start"), text.size()), text) << qa.dump();
          }
        }
      }
    }
    EXPECT_EQ(questions, 2000);
    EXPECT_NEAR(impossible / 2000.0, options.unanswerable_fraction, 0.05) << split;
  }
}

TEST(Synth, AnswerOffsetsCountCodePointsNotBytes) {
  // Accented names ("José", "Zoë", "Núñez", ...) make byte and code-point
  // offsets differ; some answer must come after one.
  auto dataset = layerprobe::generate_synthetic_squad("train", 2000, small_options());
  int after_multibyte = 0;
  for (const auto& article : dataset.at("data"))
    for (const auto& paragraph : article.at("paragraphs")) {
      std::string context = paragraph.at("context");
      for (const auto& qa : paragraph.at("qas"))
        for (const auto& answer : qa.at("answers")) {
          std::size_t start = answer.at("answer_start");
          after_multibyte += code_point_offsets(context)[start] != start;
        }
    }
  EXPECT_GT(after_multibyte, 0);
}

namespace {
struct UnanswerableKinds {
  int absent = 0, unstated = 0;
};

// An answerable question's subject is in its context; an unanswerable one's
// is absent (an unknown person or employer) or lacks the fact asked about.
UnanswerableKinds count_unanswerable_kinds(const SynthOptions& options) {
  auto dataset = layerprobe::generate_synthetic_squad("train", 1000, options);
  UnanswerableKinds kinds;
  int& absent = kinds.absent;
  int& unstated = kinds.unstated;
  for (const auto& article : dataset.at("data"))
    for (const auto& paragraph : article.at("paragraphs")) {
      std::string context = paragraph.at("context");
      for (const auto& qa : paragraph.at("qas")) {
        auto subject = subject_of(qa.at("question"));
        EXPECT_FALSE(subject.empty()) << qa.at("question");
        bool mentioned = context.find(subject) != std::string::npos;
        if (!qa.at("is_impossible"))
          EXPECT_TRUE(mentioned) << qa.at("question") << " | " << context;
        else
          (mentioned ? unstated : absent) += 1;
      }
    }
  return kinds;
}
}  // namespace

TEST(Synth, UnanswerableQuestionsAskAboutAbsentEntitiesOrUnstatedFacts) {
  auto kinds = count_unanswerable_kinds(small_options());
  EXPECT_GT(kinds.absent, 100);
  EXPECT_GT(kinds.unstated, 20);
}

TEST(Synth, AbsentPersonShareSetsTheMixOfUnanswerableKinds) {
  auto options = small_options();
  options.people_per_paragraph = 1;
  options.fact_probability = 0.5;
  options.absent_person_share = 0.2;
  auto mostly_unstated = count_unanswerable_kinds(options);
  options.absent_person_share = 0.8;
  auto mostly_absent = count_unanswerable_kinds(options);
  const double low = static_cast<double>(mostly_unstated.absent) / (mostly_unstated.absent + mostly_unstated.unstated);
  const double high = static_cast<double>(mostly_absent.absent) / (mostly_absent.absent + mostly_absent.unstated);
  // Employer questions ("Who works at ...?") about an unstated job count as
  // absent here, so the shares sit a little above the settings.
  EXPECT_LT(low, 0.4) << mostly_unstated.absent << " absent, " << mostly_unstated.unstated << " unstated";
  EXPECT_GT(high, 0.7) << mostly_absent.absent << " absent, " << mostly_absent.unstated << " unstated";
}

TEST(Synth, InvalidOptionsAreUsageErrors) {
  for (auto change : std::vector<void (*)(SynthOptions&)>{
           [](SynthOptions& o) { o.train_questions = 0; }, [](SynthOptions& o) { o.people_per_paragraph = 9; },
           [](SynthOptions& o) { o.unanswerable_fraction = 1.5; },
           [](SynthOptions& o) { o.fact_probability = 0; }, [](SynthOptions& o) { o.absent_person_share = -0.1; }}) {
    auto options = small_options();
    change(options);
    try {
      layerprobe::validate(options);
      ADD_FAILURE() << "accepted invalid options";
    } catch (const layerprobe::Error& e) {
      EXPECT_EQ(e.exit_code(), 2) << e.what();
    }
  }
}

TEST(Synth, FilesLoadThroughTheSquadLoaderWithoutErrors) {
  auto dir = layerprobe::test_support::scratch_dir("synth_load");
  auto options = small_options();
  layerprobe::write_synthetic_squad(dir, options);
  for (const auto& [file, count] : {std::pair<std::string, int>{"train-v2.0.json", options.train_questions},
                                    std::pair<std::string, int>{"dev-v2.0.json", options.dev_questions}}) {
    for (bool is_training : {true, false}) {
      auto dataset = layerprobe::load_squad(dir / file, layerprobe::SquadLoadOptions{is_training});
      EXPECT_EQ(dataset.skipped, 0u) << file;
      ASSERT_EQ(dataset.examples.size(), static_cast<std::size_t>(count)) << file;
      for (const auto& example : dataset.examples) {
        if (example.is_impossible || !is_training) continue;
        // The target words hold the answer, as HF's training-example check requires.
        std::string words;
        for (int w = example.start_position; w <= example.end_position; ++w)
          words += (words.empty() ? "" : " ") + example.doc_tokens().at(w);
        EXPECT_NE(words.find(example.answer_text), std::string::npos) << example.qas_id;
      }
    }
  }
}

TEST(Synth, VocabularyHasAlbertsSpecialPiecesAndCoversTheText) {
  auto dir = layerprobe::test_support::scratch_dir("synth_vocab");
  layerprobe::write_synthetic_squad(dir, small_options());
  std::vector<fs::path> inputs = {dir / "train-v2.0.json", dir / "dev-v2.0.json"};
  auto started = std::chrono::steady_clock::now();
  layerprobe::train_squad_vocabulary(inputs, 2000, dir / "model" / "spiece.model");
  auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_LT(seconds, 10.0);

  layerprobe::SentencePieceModel model(dir / "model" / "spiece.model");
  std::vector<std::string> expected = {"<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"};
  for (int id = 0; id < 5; ++id) EXPECT_EQ(model.id_to_piece(id), expected[id]);
  EXPECT_EQ(model.unk_id(), 1);
  EXPECT_GT(model.size(), 100);
  EXPECT_LE(model.size(), 2000);
  // As AlbertTokenizer would hand it over: lower case, accents stripped.
  for (const auto& piece : model.encode("where was jose nunez born? zoe muller works as an optician at orbit labs."))
    EXPECT_NE(model.piece_to_id(piece), model.unk_id()) << piece;

  layerprobe::train_squad_vocabulary(inputs, 2000, dir / "again" / "spiece.model");
  EXPECT_EQ(layerprobe::read_file(dir / "model" / "spiece.model"), layerprobe::read_file(dir / "again" / "spiece.model"))
      << "training is not deterministic";
}

TEST(Synth, VocabularyRejectsBadArguments) {
  auto dir = layerprobe::test_support::scratch_dir("synth_vocab_bad");
  EXPECT_THROW(layerprobe::train_squad_vocabulary({}, 2000, dir / "spiece.model"), layerprobe::Error);
  EXPECT_THROW(layerprobe::train_squad_vocabulary({dir / "missing.json"}, 2000, dir / "spiece.model"),
               layerprobe::Error);
  EXPECT_FALSE(fs::exists(dir / "spiece.model"));
}

TEST(Synth, CommandLineWritesTheDatasetAndVocabulary) {
  const fs::path tool = layerprobe::test_support::tool("probe_tools");
  ASSERT_TRUE(fs::exists(tool)) << "build probe_tools first";
  auto dir = layerprobe::test_support::scratch_dir("synth_cli");
  auto run = [&](const std::string& args) {
    int status = std::system((tool.string() + " -q " + args + " 2>" + (dir / "stderr.txt").string()).c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  ASSERT_EQ(run("synth --output-dir " + (dir / "data").string() + " --train-questions 120 --dev-questions 40 --seed 3"),
            0);
  auto train = json::parse(layerprobe::read_file(dir / "data" / "train-v2.0.json"));
  EXPECT_EQ(questions_of(train).size(), 120u);
  SynthOptions options;
  options.seed = 3;
  EXPECT_EQ(train, layerprobe::generate_synthetic_squad("train", 120, options));
  EXPECT_EQ(questions_of(json::parse(layerprobe::read_file(dir / "data" / "dev-v2.0.json"))).size(), 40u);

  ASSERT_EQ(run("train-vocab --input " + (dir / "data" / "train-v2.0.json").string() + " " +
                (dir / "data" / "dev-v2.0.json").string() + " --vocab-size 300 --output " +
                (dir / "model" / "spiece.model").string()),
            0);
  layerprobe::SentencePieceModel model(dir / "model" / "spiece.model");
  EXPECT_LE(model.size(), 300);
  EXPECT_EQ(model.id_to_piece(2), "[CLS]");

  EXPECT_EQ(run("synth --output-dir " + (dir / "bad").string() + " --people-per-paragraph 0"), 2);
  EXPECT_NE(layerprobe::read_file(dir / "stderr.txt").find("--people-per-paragraph"), std::string::npos);
}
