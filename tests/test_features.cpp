#include "layerprobe/squad/features.hpp"

#include <nlohmann/json.hpp>
#include <zlib.h>

#include <map>
#include <sstream>

#include "layerprobe/core/common.hpp"
#include "layerprobe/io/gzip.hpp"
#include "layerprobe/text/tokenizer_registry.hpp"
#include "text/albert_tokenizer.hpp"
#include "test_support.hpp"

using namespace layerprobe;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {


AlbertTokenizer dev_tokenizer() { return AlbertTokenizer(test_support::shared_path(test_support::kSpieceModel)); }

FeatureOptions options(int max_seq, int stride, int max_query, bool training, int threads = 0) {
  FeatureOptions o;
  o.window.max_seq_length = max_seq;
  o.window.doc_stride = stride;
  o.window.max_query_length = max_query;
  o.is_training = training;
  o.threads = threads;
  return o;
}

// A one-paragraph dataset whose context is `words` numbered words.
SquadDataset numbered_context(int words, const std::string& answer, int answer_word, bool impossible = false) {
  std::string context;
  int answer_start = 0;
  for (int i = 0; i < words; ++i) {
    if (i == answer_word) answer_start = static_cast<int>(context.size());
    context += (i == answer_word ? answer : "word" + std::to_string(i)) + " ";
  }
  json qa = {{"id", "q"}, {"question", "Which word?"}, {"is_impossible", impossible}, {"answers", json::array()}};
  if (!impossible) qa["answers"].push_back({{"text", answer}, {"answer_start", answer_start}});
  json file = {{"data", json::array({{{"title", "T"}, {"paragraphs", json::array({{{"context", context}, {"qas", json::array({qa})}}})}}})}};
  return parse_squad(file.dump(), "numbered.json", {true});
}

}  // namespace

// One family's tokenizer (a vocabulary file under ../shared/data, with
// do_lower_case as from_pretrained passes it) and its golden feature file.
struct GoldenFeatures {
  const char* vocab;
  const char* golden;
  bool lower_case;
  size_t features;
};

class FeaturesGolden : public ::testing::TestWithParam<GoldenFeatures> {};

TEST_P(FeaturesGolden, MatchTheGoldenDevFeatures) {
  const auto& param = GetParam();
  REQUIRE_SHARED(param.golden);
  REQUIRE_SHARED(param.vocab);
  REQUIRE_SHARED(test_support::kDevFile);
  TokenizerRequest request;
  if (param.lower_case) request.do_lower_case = true;
  auto tokenizer = load_tokenizer(test_support::shared_path(param.vocab), request);
  auto data = load_squad(test_support::shared_path(test_support::kDevFile), {true});
  auto features = convert_examples_to_features(data.examples, *tokenizer, options(384, 128, 64, true));
  std::istringstream golden(read_gzip_file(test_support::shared_path(param.golden)));
  size_t lines = 0, mismatches = 0;
  for (std::string line; std::getline(golden, line); ++lines) {
    if (lines >= features.size()) continue;
    const auto& f = features[lines];
    if (feature_to_json_line(f, data.examples[static_cast<size_t>(f.example_index)].qas_id) != line &&
        ++mismatches <= 5)
      ADD_FAILURE() << "feature " << lines << " differs from golden: " << line.substr(0, 160);
  }
  EXPECT_EQ(lines, param.features);
  EXPECT_EQ(features.size(), param.features);
  EXPECT_EQ(mismatches, 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Tokenizers, FeaturesGolden,
    ::testing::Values(GoldenFeatures{test_support::kSpieceModel, "golden/features/dev_train_384_128_64.jsonl.gz", false, 6398},
                      GoldenFeatures{"data/bert/vocab.txt", "golden/features/bert_dev_train_384_128_64.jsonl.gz", true, 6372},
                      GoldenFeatures{"data/roberta/vocab.json", "golden/features/roberta_dev_train_384_128_64.jsonl.gz", false, 6687}),
    [](const ::testing::TestParamInfo<GoldenFeatures>& info) {
      // The vocabulary's folder: albert, bert or roberta.
      return fs::path(info.param.vocab).parent_path().filename().string();
    });

// The transformers 4.57.5 feature goldens, made with the golden tiny models'
// tokenizers (their directories hold the tokenizer files and configs).
struct Transformers4Features {
  const char* model_dir;
  const char* golden;
  size_t features;
  const char* name;
};

namespace {

// Features of the dev file (train mode, 384/128/64) with `window_offsets` as the legacy setting.
std::vector<SquadFeature> dev_features(const Tokenizer& tokenizer, const SquadDataset& data, bool legacy_offsets) {
  auto o = options(384, 128, 64, true);
  o.window.hf_legacy_offsets = legacy_offsets;
  return convert_examples_to_features(data.examples, tokenizer, o);
}

// A golden line with its labels and token -> word map moved `shift` positions
// (the feature's ids and token types stay): where a layout that does not
// shift them puts what HF's legacy offset put before the context.
json shifted_golden(const std::string& line, int shift) {
  json golden = json::parse(line);
  if (golden["start_position"] != 0 || golden["end_position"] != 0) {
    golden["start_position"] = golden["start_position"].get<int>() + shift;
    golden["end_position"] = golden["end_position"].get<int>() + shift;
  }
  json map = json::object();
  for (const auto& [key, value] : golden["token_to_orig_map"].items()) map[std::to_string(std::stoi(key) + shift)] = value;
  golden["token_to_orig_map"] = map;
  return golden;
}

}  // namespace

class Transformers4FeaturesGolden : public ::testing::TestWithParam<Transformers4Features> {};

// With hf_legacy_offsets, the golden as HF wrote it; without, the same golden
// with the labels and maps moved to the context tokens they describe
// (tokens_before_context - legacy offset: 1 for XLM-R, 0 for DeBERTa).
TEST_P(Transformers4FeaturesGolden, MatchTheGoldenDevFeaturesBothWays) {
  const auto& param = GetParam();
  REQUIRE_SHARED(param.golden);
  REQUIRE_SHARED(param.model_dir);
  REQUIRE_SHARED(test_support::kDevFile);
  auto tokenizer = load_tokenizer(test_support::shared_path(param.model_dir));
  const PairLayout layout = tokenizer->pair_layout();
  const int shift = layout.tokens_before_context() - layout.legacy_tokens_before_context();
  auto data = load_squad(test_support::shared_path(test_support::kDevFile), {true});
  const auto legacy = dev_features(*tokenizer, data, true);
  const auto corrected = dev_features(*tokenizer, data, false);
  std::istringstream golden(read_gzip_file(test_support::shared_path(param.golden)));
  size_t lines = 0, legacy_mismatches = 0, corrected_mismatches = 0, moved = 0;
  for (std::string line; std::getline(golden, line); ++lines) {
    if (lines >= legacy.size() || lines >= corrected.size()) continue;
    const std::string& qas_id = data.examples[static_cast<size_t>(legacy[lines].example_index)].qas_id;
    if (feature_to_json_line(legacy[lines], qas_id) != line && ++legacy_mismatches <= 3)
      ADD_FAILURE() << "legacy offsets: feature " << lines << " differs from golden: " << line.substr(0, 160);
    const json expected = shifted_golden(line, shift);
    moved += expected != json::parse(line);
    if (json::parse(feature_to_json_line(corrected[lines], qas_id)) != expected && ++corrected_mismatches <= 3)
      ADD_FAILURE() << "corrected offsets: feature " << lines << " differs from the golden moved by " << shift;
  }
  EXPECT_EQ(lines, param.features);
  EXPECT_EQ(legacy.size(), param.features);
  EXPECT_EQ(corrected.size(), param.features);
  EXPECT_EQ(legacy_mismatches, 0u);
  EXPECT_EQ(corrected_mismatches, 0u);
  EXPECT_EQ(moved > 0, shift != 0);
}

INSTANTIATE_TEST_SUITE_P(
    Tokenizers, Transformers4FeaturesGolden,
    ::testing::Values(Transformers4Features{"golden/xlm-roberta-tiny", "golden/features/xlm_roberta_dev_train_384_128_64.jsonl.gz", 7236, "xlm_roberta"},
                      Transformers4Features{"golden/deberta-v3-tiny", "golden/features/deberta_v3_dev_train_384_128_64.jsonl.gz", 7226, "deberta_v3"},
                      // 4.57.5's ElectraTokenizer gives BERT's 2.5.1 features.
                      Transformers4Features{"golden/electra-tiny", "golden/features/bert_dev_train_384_128_64.jsonl.gz", 6372, "electra"}),
    [](const ::testing::TestParamInfo<Transformers4Features>& info) { return std::string(info.param.name); });

TEST(Features, LayoutsWithoutAClassifierTokenFeaturise) {
  REQUIRE_SHARED("golden/gpt2-tiny/merges.txt");
  TokenizerRequest request;
  request.kind = "gpt2";
  auto gpt2 = load_tokenizer(test_support::shared_path("golden/gpt2-tiny"), request);
  auto data = numbered_context(40, "target", 30);
  auto features = convert_examples_to_features(data.examples, *gpt2, options(32, 8, 8, true));
  ASSERT_FALSE(features.empty());
  for (const auto& f : features) {
    EXPECT_EQ(f.p_mask.size(), f.input_ids.size());
    // question then context, no special tokens: the context has token type 1
    EXPECT_EQ(f.token_type_ids.front(), 0);
    EXPECT_EQ(f.token_type_ids.back(), 1);
  }
}

TEST(Features, ThreadCountDoesNotChangeTheResult) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  REQUIRE_SHARED(test_support::kDevFile);
  auto tokenizer = dev_tokenizer();
  auto data = load_squad(test_support::shared_path(test_support::kDevFile));
  data.examples.resize(400);
  auto one = convert_examples_to_features(data.examples, tokenizer, options(128, 64, 32, false, 1));
  auto three = convert_examples_to_features(data.examples, tokenizer, options(128, 64, 32, false, 3));
  ASSERT_EQ(one.size(), three.size());
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(one[i].unique_id, 1000000000 + static_cast<int>(i));
    EXPECT_EQ(one[i].example_index, three[i].example_index);
    EXPECT_EQ(one[i].input_ids, three[i].input_ids);
    EXPECT_EQ(one[i].token_is_max_context, three[i].token_is_max_context);
  }
}

TEST(Features, TrainingOnlyFeaturesKeepIdsAndTargetsAndDropTheRest) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  REQUIRE_SHARED(test_support::kDevFile);
  auto tokenizer = dev_tokenizer();
  auto data = load_squad(test_support::shared_path(test_support::kDevFile), {true});
  data.examples.resize(300);
  auto full = convert_examples_to_features(data.examples, tokenizer, options(128, 64, 32, true));
  auto lean_options = options(128, 64, 32, true);
  lean_options.decoding_fields = false;
  auto lean = convert_examples_to_features(data.examples, tokenizer, lean_options);
  ASSERT_EQ(full.size(), lean.size());
  for (size_t i = 0; i < full.size(); ++i) {
    EXPECT_EQ(lean[i].unique_id, full[i].unique_id);
    EXPECT_EQ(lean[i].example_index, full[i].example_index);
    EXPECT_EQ(lean[i].input_ids, full[i].input_ids);
    EXPECT_EQ(lean[i].token_type_ids, full[i].token_type_ids);
    EXPECT_EQ(lean[i].start_position, full[i].start_position);
    EXPECT_EQ(lean[i].end_position, full[i].end_position);
    EXPECT_EQ(lean[i].is_impossible, full[i].is_impossible);
    EXPECT_TRUE(lean[i].tokens.empty() && lean[i].token_to_orig_map.empty() && lean[i].p_mask.empty() &&
                lean[i].token_is_max_context.empty());
  }
}

TEST(Features, WindowsSlideByDocStrideAndEachTokenHasOneMaxContextWindow) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto tokenizer = dev_tokenizer();
  auto data = numbered_context(40, "target", 30);
  auto context_ids = tokenizer.encode(data.examples[0].context_text());
  auto query_length = tokenizer.encode("Which word?").size();
  auto features = convert_examples_to_features(data.examples, tokenizer, options(48, 16, 64, true));
  int room = 48 - static_cast<int>(query_length) - 3;
  ASSERT_GT(static_cast<int>(context_ids.size()), room);
  std::vector<int> max_context_count(context_ids.size(), 0);
  for (size_t w = 0; w < features.size(); ++w) {
    const auto& f = features[w];
    int offset = static_cast<int>(query_length) + 2;
    EXPECT_EQ(f.input_ids.front(), 2);
    EXPECT_EQ(f.input_ids.back(), 3);
    EXPECT_EQ(f.input_ids[static_cast<size_t>(offset - 1)], 3);
    EXPECT_LE(f.length(), 48u);
    EXPECT_EQ(f.paragraph_len, static_cast<int>(f.length()) - offset - 1);
    EXPECT_EQ(f.tokens.size(), f.length());
    for (int i = 0; i < f.paragraph_len; ++i) {
      size_t t = static_cast<size_t>(offset + i), c = w * 16 + static_cast<size_t>(i);
      EXPECT_EQ(f.input_ids[t], context_ids[c]);
      EXPECT_EQ(f.p_mask[t], 0);
      EXPECT_GE(f.token_to_orig_map[t], 0);
      max_context_count[c] += f.token_is_max_context[t];
    }
    EXPECT_EQ(f.p_mask[0], 0);
    EXPECT_EQ(f.p_mask[1], 1);
    EXPECT_EQ(f.p_mask.back(), 1);
    EXPECT_EQ(f.token_to_orig_map[0], -1);
    EXPECT_EQ(f.token_to_orig_map.back(), -1);
  }
  EXPECT_EQ(features.back().paragraph_len + 16 * static_cast<int>(features.size() - 1),
            static_cast<int>(context_ids.size()));
  EXPECT_EQ(max_context_count, std::vector<int>(context_ids.size(), 1));
  // The answer is only inside some windows; the others point at [CLS].
  int with_answer = 0;
  for (const auto& f : features) {
    if (f.is_impossible) {
      EXPECT_EQ(f.start_position, 0);
      EXPECT_EQ(f.end_position, 0);
      continue;
    }
    ++with_answer;
    EXPECT_EQ(f.token_to_orig_map[static_cast<size_t>(f.start_position)], 30);
    EXPECT_EQ(f.token_to_orig_map[static_cast<size_t>(f.end_position)], 30);
  }
  EXPECT_GT(with_answer, 0);
  EXPECT_LT(with_answer, static_cast<int>(features.size()));
}

TEST(Features, AnswerSpanIsImprovedToTheTokenisedAnswer) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto tokenizer = dev_tokenizer();
  // The answer "Normans" is inside the word "Normans."; HF narrows the span
  // from all the word's tokens to the answer's.
  auto data = numbered_context(5, "Normans.", 2);
  data.examples[0].answer_text = "Normans";
  ASSERT_GT(tokenizer.tokenize("Normans.").size(), tokenizer.tokenize("Normans").size());
  auto f = convert_examples_to_features(data.examples, tokenizer, options(384, 128, 64, true)).at(0);
  std::vector<std::string> span(f.tokens.begin() + f.start_position, f.tokens.begin() + f.end_position + 1);
  EXPECT_EQ(span, tokenizer.tokenize("Normans"));
}

TEST(Features, EvalModeHasNoTargets) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto tokenizer = dev_tokenizer();
  auto data = numbered_context(40, "target", 30);
  for (const auto& f : convert_examples_to_features(data.examples, tokenizer, options(48, 16, 64, false))) {
    EXPECT_EQ(f.start_position, 0);
    EXPECT_EQ(f.end_position, 0);
    EXPECT_FALSE(f.is_impossible);
  }
}

TEST(Features, LiteralPadTokenCutsTheTokensAsHfDoes) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto tokenizer = dev_tokenizer();
  auto data = numbered_context(6, "<pad>", 3, true);
  auto f = convert_examples_to_features(data.examples, tokenizer, options(384, 128, 64, false)).at(0);
  auto pad = std::find(f.input_ids.begin(), f.input_ids.end(), 0);
  ASSERT_NE(pad, f.input_ids.end());
  EXPECT_EQ(f.tokens.size(), static_cast<size_t>(pad - f.input_ids.begin()));
  EXPECT_EQ(f.p_mask[static_cast<size_t>(pad - f.input_ids.begin())], 0);
}

TEST(Features, QuestionTooLongForTheWindowIsAnError) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  auto tokenizer = dev_tokenizer();
  auto data = numbered_context(6, "x", 1);
  data.examples[0].question_text = std::string(200, 'a') + " b c d e f g h i j k l m n o p";
  try {
    convert_examples_to_features(data.examples, tokenizer, options(16, 8, 64, false));
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'q'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(convert_examples_to_features(data.examples, tokenizer, options(384, 0, 64, false)), Error);
}

TEST(Features, JsonLineHasTheGoldenSchema) {
  SquadFeature f;
  f.input_ids = {2, 10, 3, 11, 3};
  f.token_type_ids = {0, 0, 0, 1, 1};
  f.token_to_orig_map = {-1, -1, -1, 4, -1};
  f.start_position = 3;
  f.end_position = 3;
  EXPECT_EQ(feature_to_json_line(f, "id\u00e9"),
            "{\"qas_id\": \"id\\u00e9\", \"input_ids\": [2, 10, 3, 11, 3], \"token_type_ids\": [0, 0, 0, 1, 1], "
            "\"start_position\": 3, \"end_position\": 3, \"is_impossible\": false, \"token_to_orig_map\": {\"3\": 4}}");
}

namespace {
// `text` as one gzip member, written by zlib.
std::string gzip_member(const std::filesystem::path& scratch, const std::string& text) {
  gzFile file = gzopen(scratch.c_str(), "wb");
  EXPECT_EQ(gzwrite(file, text.data(), static_cast<unsigned>(text.size())), static_cast<int>(text.size()));
  EXPECT_EQ(gzclose(file), Z_OK);
  return read_file(scratch);
}

std::string numbered_lines(int count) {
  std::string text;
  for (int i = 0; i < count; ++i) text += "line " + std::to_string(i) + " of the file\n";
  return text;
}
}  // namespace

TEST(Gzip, ReadsMembersOneAfterAnotherAndPlainFilesAsTheyAre) {
  auto dir = test_support::scratch_dir("features_gzip_ok");
  const std::string first = numbered_lines(20000), second = "and a second member\n";
  write_file_atomically(dir / "two.gz", gzip_member(dir / "a.gz", first) + gzip_member(dir / "b.gz", second));
  EXPECT_EQ(read_gzip_file(dir / "two.gz"), first + second);
  write_file_atomically(dir / "plain.txt", "not compressed\n");
  EXPECT_EQ(read_gzip_file(dir / "plain.txt"), "not compressed\n");
}

// Each must be an error whatever the zlib version (1.3.2's gzread reports none of them).
TEST(Gzip, CorruptOrMissingFilesAreErrors) {
  EXPECT_THROW(read_gzip_file("/nonexistent/x.gz"), Error);
  auto dir = test_support::scratch_dir("features_gzip");
  const std::string valid = gzip_member(dir / "valid.gz", numbered_lines(20000));
  const std::map<std::string, std::string> damaged = {
      {"undecodable", std::string("\x1f\x8b\x08\x00garbage-not-deflate")},
      {"truncated", valid.substr(0, valid.size() / 2)},
      {"without its trailer", valid.substr(0, valid.size() - 4)},
      {"with a flipped byte", valid.substr(0, valid.size() / 2) + char(valid[valid.size() / 2] ^ 0x55) +
                                  valid.substr(valid.size() / 2 + 1)},
      {"with trailing garbage", valid + "garbage"},
  };
  for (const auto& [what, bytes] : damaged) {
    write_file_atomically(dir / "bad.gz", bytes);
    try {
      read_gzip_file(dir / "bad.gz");
      ADD_FAILURE() << "no error for a file " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("bad.gz"), std::string::npos) << e.what();
    }
  }
}
