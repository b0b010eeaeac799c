#include "layerprobe/squad/squad.hpp"

#include <nlohmann/json.hpp>

#include "layerprobe/core/common.hpp"
#include "test_support.hpp"

using namespace layerprobe;
using nlohmann::json;

namespace {

json question(const std::string& id, const std::string& text, json answers, bool impossible = false) {
  return {{"id", id}, {"question", text}, {"answers", std::move(answers)}, {"is_impossible", impossible}};
}

json answer(const std::string& text, int start) { return {{"text", text}, {"answer_start", start}}; }

json squad(const std::string& context, json qas) {
  return {{"version", "v2.0"},
          {"data", json::array({{{"title", "T"}, {"paragraphs", json::array({{{"context", context}, {"qas", qas}}})}}})}};
}

SquadDataset parse(const json& file, bool training = false) {
  SquadLoadOptions options;
  options.is_training = training;
  return parse_squad(file.dump(), "mem.json", options);
}

// The Error message of parsing `text`, which must fail.
std::string error_of(const std::string& text, bool training = false) {
  SquadLoadOptions options;
  options.is_training = training;
  try {
    parse_squad(text, "bad.json", options);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an Error for " << text;
  return "";
}

void expect_contains(const std::string& message, const std::vector<std::string>& parts) {
  for (const auto& part : parts) EXPECT_NE(message.find(part), std::string::npos) << message << " lacks " << part;
}

const json kGoodQuestion = question("q1", "Who?", json::array({answer("Bob", 0)}));

}  // namespace

TEST(SquadLoader, SplitsTheContextOnHfWhitespaceAndMapsCodePoints) {
  // U+202F splits words; U+00A0 does not. "é" is one character of answer_start.
  auto data = parse(squad(" Caf\u00e9  au\u202flait\u00a0chaud\nend",
                          json::array({question("q1", "What?", json::array({answer("au", 7), answer("end", 21)}))})));
  ASSERT_EQ(data.examples.size(), 1u);
  const auto& ex = data.examples[0];
  EXPECT_EQ(ex.doc_tokens(), (std::vector<std::string>{"Caf\u00e9", "au", "lait\u00a0chaud", "end"}));
  EXPECT_EQ(split_context(" Caf\u00e9  au\u202flait\u00a0chaud\nend").char_to_word,
            (std::vector<int>{-1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3}));
  EXPECT_EQ(ex.start_position, 1);
  EXPECT_EQ(ex.end_position, 1);
  EXPECT_EQ(ex.answer_text, "au");
  EXPECT_EQ(ex.answers, (std::vector<std::string>{"au", "end"}));
  EXPECT_EQ(ex.title, "T");
  EXPECT_FALSE(ex.is_impossible);
}

TEST(SquadLoader, ImpossibleQuestionsIgnorePlausibleAnswers) {
  auto q = question("q2", "Why?", json::array(), true);
  q["plausible_answers"] = json::array({answer("Bob", 0)});
  auto data = parse(squad("Bob ran.", json::array({q})), true);
  ASSERT_EQ(data.examples.size(), 1u);
  EXPECT_TRUE(data.examples[0].is_impossible);
  EXPECT_TRUE(data.examples[0].answers.empty());
  EXPECT_EQ(data.examples[0].start_position, 0);
  EXPECT_EQ(data.examples[0].end_position, 0);
}

TEST(SquadLoader, MissingIsImpossibleMeansAnswerable) {
  json q = {{"id", "q1"}, {"question", "Who?"}, {"answers", json::array({answer("Bob", 0)})}};
  auto data = parse(squad("Bob ran.", json::array({q})));
  ASSERT_EQ(data.examples.size(), 1u);
  EXPECT_FALSE(data.examples[0].is_impossible);
}

TEST(SquadLoader, TrainingSkipsAnswersNotFoundAtTheirOffsetAndCountsThem) {
  auto file = squad("Bob ran to Alice.", json::array({question("q1", "Who?", json::array({answer("Carol", 0)})),
                                                       question("q2", "Whom?", json::array({answer("Alice", 11)}))}));
  auto train = parse(file, true);
  EXPECT_EQ(train.skipped, 1u);
  ASSERT_EQ(train.examples.size(), 1u);
  EXPECT_EQ(train.examples[0].qas_id, "q2");
  EXPECT_EQ(train.examples[0].start_position, 3);
  auto eval = parse(file, false);  // evaluation keeps every question
  EXPECT_EQ(eval.skipped, 0u);
  EXPECT_EQ(eval.examples.size(), 2u);
}

TEST(SquadLoader, DuplicateIdsAreReported) {
  auto data = parse(squad("Bob ran.", json::array({kGoodQuestion, kGoodQuestion, kGoodQuestion})));
  EXPECT_EQ(data.examples.size(), 3u);
  EXPECT_EQ(data.duplicate_ids, (std::vector<std::string>{"q1"}));
}

TEST(SquadLoaderErrors, NotJson) { expect_contains(error_of("{\"data\": ["), {"bad.json", "not valid JSON"}); }

// Found by fuzz_squad: a number too large for a double escaped as nlohmann's out_of_range.
TEST(SquadLoaderErrors, NumberOverflowIsNotValidJson) {
  expect_contains(error_of("{\"data\": [], \"answer_start\": 68e568}"), {"bad.json", "not valid JSON", "68e568"});
}

TEST(SquadLoaderErrors, NotUtf8) {
  expect_contains(error_of("{\"data\": [], \"x\": \"\xff\xfe\"}"), {"bad.json", "not UTF-8", "offset 19"});
}

TEST(SquadLoaderErrors, MissingData) { expect_contains(error_of("{\"version\": \"v2.0\"}"), {"bad.json", "'data'"}); }

TEST(SquadLoaderErrors, MissingParagraphs) {
  expect_contains(error_of(R"({"data": [{"title": "T"}]})"), {"bad.json", "data[0]", "'paragraphs'"});
}

TEST(SquadLoaderErrors, MissingContext) {
  json file = squad("x", json::array());
  file["data"][0]["paragraphs"][0].erase("context");
  expect_contains(error_of(file.dump()), {"bad.json", "data[0].paragraphs[0]", "'context'"});
}

TEST(SquadLoaderErrors, MissingQas) {
  json file = squad("x", json::array());
  file["data"][0]["paragraphs"][0].erase("qas");
  expect_contains(error_of(file.dump()), {"bad.json", "data[0].paragraphs[0]", "'qas'"});
}

TEST(SquadLoaderErrors, MissingId) {
  json q = kGoodQuestion;
  q.erase("id");
  expect_contains(error_of(squad("Bob ran.", json::array({kGoodQuestion, q})).dump()),
                  {"bad.json", "data[0].paragraphs[0].qas[1]", "'id'"});
}

TEST(SquadLoaderErrors, MissingQuestion) {
  json q = kGoodQuestion;
  q.erase("question");
  expect_contains(error_of(squad("Bob ran.", json::array({q})).dump()), {"bad.json", "'q1'", "'question'"});
}

TEST(SquadLoaderErrors, AnswerStartOutsideTheContext) {
  for (int start : {8, -1, 1000}) {
    auto q = question("q7", "Who?", json::array({answer("Bob", start)}));
    expect_contains(error_of(squad("Bob ran.", json::array({q})).dump()),
                    {"bad.json", "'q7'", "answer_start " + std::to_string(start), "outside the context"});
  }
}

TEST(SquadLoaderErrors, AnswerableWithoutAnswersIsATrainingError) {
  auto q = question("q9", "Who?", json::array());
  expect_contains(error_of(squad("Bob ran.", json::array({q})).dump(), true), {"bad.json", "'q9'", "no answers"});
  // In evaluation mode it is an unlabeled question (tests/test_unlabeled.cpp).
  const auto dataset = parse_squad(squad("Bob ran.", json::array({q})).dump(), "unlabeled.json");
  ASSERT_EQ(dataset.examples.size(), 1u);
  EXPECT_FALSE(dataset.examples[0].labeled);
}

TEST(SquadLoaderErrors, MissingFileIsNamed) {
  try {
    load_squad("/nonexistent/dev-v2.0.json");
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dev-v2.0.json"), std::string::npos) << e.what();
  }
}

TEST(SquadLoader, ReadsTheDevFile) {
  REQUIRE_SHARED(test_support::kDevFile);
  auto data = load_squad(test_support::shared_path(test_support::kDevFile));
  ASSERT_EQ(data.examples.size(), 6078u);
  size_t impossible = 0;
  for (const auto& ex : data.examples) impossible += ex.is_impossible;
  EXPECT_EQ(impossible, 3168u);
  EXPECT_TRUE(data.duplicate_ids.empty());
  auto train = load_squad(test_support::shared_path(test_support::kDevFile), {true});
  EXPECT_EQ(train.examples.size(), 6078u);  // the golden features hold all 6078 questions
  EXPECT_EQ(train.skipped, 0u);
}
