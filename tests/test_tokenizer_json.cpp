// The tokenizer.json reader: the goldens of @huggingface/tokenizers (roberta-base's
// and Llama-2's tokenizer.json on every dev text), the small cases in
// tests/tokenizer_json_cases (made with the same JS port: see its README), the
// components the JS port does not model as the Rust library does (expected
// values worked out from the library's source), post-processor layouts, and
// the errors for files layerprobe cannot read.
#include "text/tokenizer_json/tokenizer_json.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "layerprobe/core/common.hpp"
#include "layerprobe/text/tokenizer_registry.hpp"
#include "test_support.hpp"
#include "tokenizer_golden.hpp"

using namespace layerprobe;
using nlohmann::json;
using Pieces = std::vector<std::string>;
using Ids = std::vector<int64_t>;
namespace fs = std::filesystem;

namespace {

const fs::path kCases = fs::path(LAYERPROBE_SOURCE_DIR) / "tests" / "tokenizer_json_cases";

template <typename Make>
std::string json_error_of(Make make) {
  try {
    make();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool has_text(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The model of a recipe, its vocabulary named by "@gpt2" / "@bert" filled in from the test data.
void resolve_vocabulary(json& model) {
  if (model["vocab"] == "@gpt2") model["vocab"] = json::parse(read_file(test_support::shared_path("golden/gpt2-tiny/vocab.json")));
  if (model["vocab"] == "@bert") {
    json vocab = json::object();
    std::istringstream lines(read_file(test_support::shared_path("data/bert/vocab.txt")));
    int64_t id = 0;
    for (std::string line; std::getline(lines, line); ++id) vocab[line] = id;
    model["vocab"] = vocab;
  }
  if (model.contains("merges") && model["merges"] == "@gpt2") {
    json merges = json::array();
    std::istringstream lines(read_file(test_support::shared_path("golden/gpt2-tiny/merges.txt")));
    std::string line;
    std::getline(lines, line);  // #version
    while (std::getline(lines, line))
      if (!line.empty()) merges.push_back({line.substr(0, line.find(' ')), line.substr(line.find(' ') + 1)});
    model["merges"] = merges;
  }
}

// Writes tokenizer.json (and tokenizer_config.json when given) into a scratch directory.
fs::path write_tokenizer(const std::string& name, const json& tokenizer, const json& config = nullptr) {
  auto dir = test_support::scratch_dir("tokenizer_json_" + name);
  write_file_atomically(dir / "tokenizer.json", tokenizer.dump());
  if (!config.is_null()) write_file_atomically(dir / "tokenizer_config.json", config.dump());
  return dir;
}

// A recipe of tests/tokenizer_json_cases as the tokenizer.json it describes.
json recipe(const std::string& name) {
  json tokenizer = json::parse(read_file(kCases / (name + ".recipe.json")));
  for (const char* key : {"_texts", "_config", "_note"}) tokenizer.erase(key);
  resolve_vocabulary(tokenizer["model"]);
  return tokenizer;
}

// A tokenizer.json around `model`, with the given normalizer and pre-tokenizer.
json small_tokenizer(json model, json normalizer = nullptr, json pre_tokenizer = nullptr, json added = json::array()) {
  return {{"version", "1.0"},       {"truncation", nullptr},         {"padding", nullptr},
          {"added_tokens", added},  {"normalizer", normalizer},      {"pre_tokenizer", pre_tokenizer},
          {"post_processor", nullptr}, {"decoder", nullptr},          {"model", model}};
}

json word_level(const Pieces& words) {
  json vocab = json::object();
  vocab["<unk>"] = 0;
  for (const auto& word : words) vocab[word] = vocab.size();
  return {{"type", "WordLevel"}, {"vocab", vocab}, {"unk_token", "<unk>"}};
}

std::unique_ptr<Tokenizer> load_json_tokenizer(const fs::path& dir) {
  TokenizerRequest request;
  request.kind = "tokenizer.json";
  return load_tokenizer(dir, request);
}

}  // namespace

TEST(TokenizerJson, RobertaBaseMatchesTheJsPortOnEveryDevText) {
  REQUIRE_SHARED("golden/tokenizer/tokenizer_json_roberta_dev.jsonl.gz");
  REQUIRE_SHARED("data/roberta-base-tokenizer-json/tokenizer.json");
  auto tokenizer = load_tokenizer(test_support::shared_path("data/roberta-base-tokenizer-json"));
  EXPECT_EQ(tokenizer->kind(), "tokenizer.json");
  auto result = test_support::compare_tokenizer_golden(*tokenizer, "golden/tokenizer/tokenizer_json_roberta_dev.jsonl.gz");
  EXPECT_EQ(result.lines, 6724u);
  EXPECT_EQ(result.mismatches, 0u);
}

TEST(TokenizerJson, Llama2MatchesTheJsPortOnEveryDevText) {
  REQUIRE_SHARED("golden/tokenizer/tokenizer_json_llama2_dev.jsonl.gz");
  REQUIRE_SHARED("golden/llama-tiny/tokenizer.json");
  auto tokenizer = load_tokenizer(test_support::shared_path("golden/llama-tiny"));
  EXPECT_EQ(tokenizer->kind(), "tokenizer.json");
  auto result = test_support::compare_tokenizer_golden(*tokenizer, "golden/tokenizer/tokenizer_json_llama2_dev.jsonl.gz");
  EXPECT_EQ(result.lines, 6724u);
  EXPECT_EQ(result.mismatches, 0u);
}

// Each recipe in tests/tokenizer_json_cases against what the JS port made of it.
class TokenizerJsonCase : public ::testing::TestWithParam<const char*> {};

TEST_P(TokenizerJsonCase, MatchesTheJsPort) {
  REQUIRE_SHARED("golden/gpt2-tiny/vocab.json");
  REQUIRE_SHARED("data/bert/vocab.txt");
  const std::string name = GetParam();
  const json raw = json::parse(read_file(kCases / (name + ".recipe.json")));
  auto tokenizer = load_json_tokenizer(write_tokenizer(name, recipe(name), raw.value("_config", json(nullptr))));
  std::istringstream expected(read_file(kCases / (name + ".expected.jsonl")));
  size_t lines = 0, mismatches = 0;
  for (std::string line; std::getline(expected, line); ++lines) {
    const json golden = json::parse(line);
    const std::string text = golden["text"];
    const auto pieces = tokenizer->tokenize(text);
    const auto ids = tokenizer->convert_tokens_to_ids(pieces);
    const std::string decoded = ids.empty() ? "" : tokenizer->convert_tokens_to_string(tokenizer->convert_ids_to_tokens(ids));
    if (pieces != golden["pieces"].get<Pieces>() || ids != golden["ids"].get<Ids>() ||
        tokenizer->encode_with_special_tokens(text) != golden["ids_with_special"].get<Ids>() ||
        decoded != golden["decoded"].get<std::string>()) {
      ++mismatches;
      ADD_FAILURE() << name << ": " << golden["text"] << "\n  expected " << golden["pieces"].dump() << " -> "
                    << golden["decoded"] << "\n  got      " << json(pieces).dump() << " -> " << json(decoded).dump();
    }
  }
  EXPECT_GT(lines, 5u);
  EXPECT_EQ(mismatches, 0u);
}

INSTANTIATE_TEST_SUITE_P(Cases, TokenizerJsonCase,
                         ::testing::Values("qwen2_style", "llama3_style", "bert_wordpiece", "unigram_metaspace",
                                           "added_flags", "digits_punctuation"));

TEST(TokenizerJson, BertAsTokenizerJsonEqualsTheSlowBertOnTheDevSet) {
  REQUIRE_SHARED("golden/tokenizer/bert_dev.jsonl.gz");
  REQUIRE_SHARED("data/bert/vocab.txt");
  json bert = recipe("bert_wordpiece");
  bert["post_processor"] = nullptr;  // the golden has no ids_with_special
  auto tokenizer = load_json_tokenizer(write_tokenizer("bert_dev", bert));
  auto result = test_support::compare_tokenizer_golden(*tokenizer, "golden/tokenizer/bert_dev.jsonl.gz");
  EXPECT_EQ(result.lines, 6724u);
  EXPECT_EQ(result.mismatches, 0u);
}

// The Rust library's own test of SplitDelimiterBehavior (normalizer.rs), through a Split pre-tokenizer.
TEST(TokenizerJson, SplitBehavioursCutAsTheLibraryDoes) {
  const Pieces words = {"The", "final", "countdown", "-", "--", "The-", "final-", "-final", "-countdown"};
  auto split = [&](const std::string& behavior, bool invert = false) {
    json pre = {{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior}, {"invert", invert}};
    return load_json_tokenizer(write_tokenizer("split_" + behavior, small_tokenizer(word_level(words), nullptr, pre)))
        ->tokenize("The-final--countdown");
  };
  EXPECT_EQ(split("Removed"), (Pieces{"The", "final", "countdown"}));
  EXPECT_EQ(split("Isolated"), (Pieces{"The", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(split("MergedWithPrevious"), (Pieces{"The-", "final-", "-", "countdown"}));
  EXPECT_EQ(split("MergedWithNext"), (Pieces{"The", "-final", "-", "-countdown"}));
  EXPECT_EQ(split("Contiguous"), (Pieces{"The", "-", "final", "--", "countdown"}));
  EXPECT_EQ(split("Removed", true), (Pieces{"-", "-", "-"}));
  // A regex pattern, Oniguruma's \p{...} classes included.
  json regex = {{"type", "Split"}, {"pattern", {{"Regex", "\\p{Lu}\\p{Ll}+"}}}, {"behavior", "Isolated"}, {"invert", false}};
  EXPECT_EQ(load_json_tokenizer(write_tokenizer("split_regex", small_tokenizer(word_level({"Ab", "Cd", "1"}), nullptr, regex)))
                ->tokenize("Ab1Cd"),
            (Pieces{"Ab", "1", "Cd"}));
  // Punctuation (Isolated, its default) cuts every mark alone; the JS port keeps runs together.
  json punctuation = {{"type", "Punctuation"}};
  EXPECT_EQ(load_json_tokenizer(write_tokenizer("punctuation", small_tokenizer(word_level({"a", ".", "b"}), nullptr, punctuation)))
                ->tokenize("a...b"),
            (Pieces{"a", ".", ".", ".", "b"}));
}

TEST(TokenizerJson, MetaspaceSplitsBeforeEachSpaceAndPrependsPerScheme) {
  const Pieces words = {"\u2581Hey", "\u2581friend!", "Hey", "\u2581", "friend!"};
  auto meta = [&](const std::string& scheme, bool split) {
    json pre = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", scheme}, {"split", split}};
    return load_json_tokenizer(write_tokenizer("metaspace_" + scheme, small_tokenizer(word_level(words), nullptr, pre)));
  };
  EXPECT_EQ(meta("always", true)->tokenize("Hey friend!"), (Pieces{"\u2581Hey", "\u2581friend!"}));
  EXPECT_EQ(meta("never", true)->tokenize("Hey friend!"), (Pieces{"Hey", "\u2581friend!"}));
  EXPECT_EQ(meta("always", false)->tokenize("Hey friend!"), (Pieces{"<unk>"}));  // "▁Hey▁friend!" whole
  // "first": only where the text begins (not after an added token).
  json added = json::array({{{"id", 9}, {"content", "<s>"}, {"special", true}, {"normalized", false}}});
  json pre = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}, {"split", true}};
  auto first = load_json_tokenizer(write_tokenizer("metaspace_first", small_tokenizer(word_level(words), nullptr, pre, added)));
  EXPECT_EQ(first->tokenize("Hey friend!"), (Pieces{"\u2581Hey", "\u2581friend!"}));
  EXPECT_EQ(first->tokenize("<s>Hey"), (Pieces{"<s>", "Hey"}));
}

TEST(TokenizerJson, SingleWordAddedTokensMatchOnlyWholeWords) {
  // AddedVocabulary::find_matches: no word character may touch a single_word token.
  json added = json::array({{{"id", 5}, {"content", "ab"}, {"special", false}, {"normalized", false}, {"single_word", true}}});
  json pre = {{"type", "WhitespaceSplit"}};
  auto tokenizer = load_json_tokenizer(write_tokenizer("single_word", small_tokenizer(word_level({"abc", "xab", "."}), nullptr, pre, added)));
  EXPECT_EQ(tokenizer->tokenize("ab abc xab ab."), (Pieces{"ab", "abc", "xab", "ab", "."}));
  EXPECT_EQ(tokenizer->convert_tokens_to_ids({"ab", "abc"}), (Ids{5, 1}));
}

TEST(TokenizerJson, BpeModelOptions) {
  auto bpe = [](json vocab, json merges, json options = json::object()) {
    json model = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"dropout", nullptr}, {"unk_token", "<unk>"}};
    model.update(options);
    return model;
  };
  // continuing_subword_prefix: the merge of "a" and "##b" is "ab".
  json prefixed = bpe({{"<unk>", 0}, {"a", 1}, {"##b", 2}, {"ab", 3}}, json::array({json::array({"a", "##b"})}),
                      {{"continuing_subword_prefix", "##"}});
  EXPECT_EQ(load_json_tokenizer(write_tokenizer("bpe_prefix", small_tokenizer(prefixed)))->tokenize("ab"), (Pieces{"ab"}));
  // end_of_word_suffix on the last character; merges may be "A B" strings.
  json suffixed = bpe({{"<unk>", 0}, {"a", 1}, {"b</w>", 2}, {"ab</w>", 3}}, json::array({"a b</w>"}),
                      {{"end_of_word_suffix", "</w>"}});
  EXPECT_EQ(load_json_tokenizer(write_tokenizer("bpe_suffix", small_tokenizer(suffixed)))->tokenize("ab"), (Pieces{"ab</w>"}));
  // Unknown characters: one <unk> each, or one for a run with fuse_unk.
  json unk = bpe({{"<unk>", 0}, {"a", 1}}, json::array());
  EXPECT_EQ(load_json_tokenizer(write_tokenizer("bpe_unk", small_tokenizer(unk)))->tokenize("xya"), (Pieces{"<unk>", "<unk>", "a"}));
  unk["fuse_unk"] = true;
  EXPECT_EQ(load_json_tokenizer(write_tokenizer("bpe_fuse", small_tokenizer(unk)))->tokenize("xya"), (Pieces{"<unk>", "a"}));
  // byte_fallback: <0xXX> tokens for a character outside the vocabulary.
  json bytes = bpe({{"<unk>", 0}, {"a", 1}, {"<0xC3>", 2}, {"<0xA9>", 3}}, json::array(), {{"byte_fallback", true}});
  EXPECT_EQ(load_json_tokenizer(write_tokenizer("bpe_bytes", small_tokenizer(bytes)))->tokenize("a\u00e9"), (Pieces{"a", "<0xC3>", "<0xA9>"}));
  // ignore_merges: a word in the vocabulary is one token, whatever the merges would make.
  json ignore = bpe({{"<unk>", 0}, {"a", 1}, {"b", 2}, {"c", 3}, {"ab", 4}, {"abc", 5}}, json::array({"a b"}));
  EXPECT_EQ(load_json_tokenizer(write_tokenizer("bpe_merges", small_tokenizer(ignore)))->tokenize("abc"), (Pieces{"ab", "c"}));
  ignore["ignore_merges"] = true;
  EXPECT_EQ(load_json_tokenizer(write_tokenizer("bpe_ignore", small_tokenizer(ignore)))->tokenize("abc"), (Pieces{"abc"}));
}

TEST(TokenizerJson, UnigramFallsBackToBytes) {
  json model = {{"type", "Unigram"}, {"unk_id", 0}, {"byte_fallback", true},
                {"vocab", json::array({json::array({"<unk>", 0.0}), json::array({"a", -1.0}),
                                       json::array({"<0xC3>", -5.0}), json::array({"<0xA9>", -5.0})})}};
  auto tokenizer = load_json_tokenizer(write_tokenizer("unigram_bytes", small_tokenizer(model)));
  EXPECT_EQ(tokenizer->tokenize("a\u00e9"), (Pieces{"a", "<0xC3>", "<0xA9>"}));
  EXPECT_EQ(tokenizer->encode("a\u00e9"), (Ids{1, 2, 3}));
  model["byte_fallback"] = false;
  auto plain = load_json_tokenizer(write_tokenizer("unigram_unk", small_tokenizer(model)));
  EXPECT_EQ(plain->tokenize("a\u00e9\u00e9"), (Pieces{"a", "\u00e9\u00e9"}));  // unknown run fused
  EXPECT_EQ(plain->encode("a\u00e9\u00e9"), (Ids{1, 0}));
}

TEST(TokenizerJson, NormalizersAsTheLibrary) {
  auto normalized = [](const json& normalizer, const std::string& text) {
    // A Unigram model that knows nothing gives the whole normalised text as one (unknown) piece.
    json model = {{"type", "Unigram"}, {"unk_id", 0}, {"vocab", json::array({json::array({"<unk>", 0.0})})}};
    auto tokenizer = load_json_tokenizer(write_tokenizer("normalizer", small_tokenizer(model, normalizer)));
    std::string joined;
    for (const auto& piece : tokenizer->tokenize(text)) joined += piece;
    return joined;
  };
  // Lowercase is per character: a word-final capital sigma becomes σ, not ς.
  EXPECT_EQ(normalized({{"type", "Lowercase"}}, "\u039f\u0394\u039f\u03a3 \u0130"), "\u03bf\u03b4\u03bf\u03c3 i\u0307");
  EXPECT_EQ(normalized({{"type", "NFKC"}}, "\ufb01\u2460"), "fi1");
  EXPECT_EQ(normalized({{"type", "NFD"}}, "\u00e9"), "e\u0301");
  EXPECT_EQ(normalized({{"type", "Sequence"}, {"normalizers", {{{"type", "NFD"}}, {{"type", "StripAccents"}}}}}, "caf\u00e9"),
            "cafe");
  EXPECT_EQ(normalized({{"type", "Strip"}, {"strip_left", true}, {"strip_right", false}}, " \u3000x "), "x ");
  EXPECT_EQ(normalized({{"type", "Prepend"}, {"prepend", "\u2581"}}, "x"), "\u2581x");
  EXPECT_EQ(normalized({{"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", "bb"}}, "aXa"), "bbXbb");
  EXPECT_EQ(normalized({{"type", "BertNormalizer"}, {"lowercase", true}}, "A\tB\u4e2d\u00c9\x01"), "a b \u4e2d e");
}

TEST(TokenizerJson, PairLayoutComesFromThePostProcessor) {
  REQUIRE_SHARED("golden/llama-tiny/tokenizer.json");
  REQUIRE_SHARED("data/roberta-base-tokenizer-json/tokenizer.json");
  auto llama = load_tokenizer(test_support::shared_path("golden/llama-tiny"));
  PairLayout layout = llama->pair_layout();
  EXPECT_EQ(layout.before_query, (Ids{1}));
  EXPECT_EQ(layout.between, (Ids{1}));
  EXPECT_TRUE(layout.after_context.empty());
  EXPECT_EQ(layout.between_token_type, 1);
  EXPECT_EQ(layout.context_token_type, 1);
  EXPECT_EQ(layout.legacy_tokens_before_context(), 1);
  EXPECT_EQ(llama->special_tokens().bos, "<s>");  // tokenizer_config.json
  EXPECT_EQ(llama->unk_id(), 0);
  auto roberta = load_tokenizer(test_support::shared_path("data/roberta-base-tokenizer-json"));
  layout = roberta->pair_layout();
  EXPECT_EQ(layout.before_query, (Ids{0}));
  EXPECT_EQ(layout.between, (Ids{2, 2}));
  EXPECT_EQ(layout.after_context, (Ids{2}));
  EXPECT_EQ(layout.context_token_type, 0);
  EXPECT_EQ(layout.legacy_tokens_before_context(), 2);
  EXPECT_EQ(roberta->cls_id(), 0);  // from RobertaProcessing
  EXPECT_EQ(roberta->sep_id(), 2);
  EXPECT_EQ(roberta->vocab_size(), 50265);
}

TEST(TokenizerJson, DecodersGiveTheAnswerText) {
  REQUIRE_SHARED("golden/llama-tiny/tokenizer.json");
  auto llama = load_tokenizer(test_support::shared_path("golden/llama-tiny"));
  const std::string text = "The Normans' caf\u00e9 \U0001F600 in 911";
  EXPECT_EQ(llama->convert_tokens_to_string(llama->tokenize(text)), text);
  auto roberta = load_tokenizer(test_support::shared_path("data/roberta-base-tokenizer-json"));
  EXPECT_EQ(roberta->convert_tokens_to_string(roberta->tokenize(text)), text);
}

TEST(TokenizerJson, UnsupportedOrMalformedFilesAreErrorsNamingFileAndComponent) {
  json model = word_level({"a"});
  auto message = json_error_of([&] {
    load_json_tokenizer(write_tokenizer("bad_normalizer", small_tokenizer(model, {{"type", "Precompiled"}, {"precompiled_charsmap", "x"}})));
  });
  EXPECT_TRUE(has_text(message, "tokenizer.json: normalizer: normalizer type 'Precompiled' is not supported")) << message;
  message = json_error_of([&] { load_json_tokenizer(write_tokenizer("bad_pre", small_tokenizer(model, nullptr, {{"type", "UnicodeScripts"}}))); });
  EXPECT_TRUE(has_text(message, "pre_tokenizer: pre-tokenizer type 'UnicodeScripts' is not supported")) << message;
  json dropout = {{"type", "BPE"}, {"vocab", {{"a", 0}}}, {"merges", json::array()}, {"dropout", 0.1}};
  message = json_error_of([&] { load_json_tokenizer(write_tokenizer("bad_dropout", small_tokenizer(dropout))); });
  EXPECT_TRUE(has_text(message, "model.dropout is 0.1")) << message;
  json merges = {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}}}, {"merges", json::array({"a b"})}};
  message = json_error_of([&] { load_json_tokenizer(write_tokenizer("bad_merge", small_tokenizer(merges))); });
  EXPECT_TRUE(has_text(message, "model.merges[0]: 'ab' is not in the vocabulary")) << message;
  json regex = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}, {"invert", false}};
  message = json_error_of([&] { load_json_tokenizer(write_tokenizer("bad_regex", small_tokenizer(model, nullptr, regex))); });
  EXPECT_TRUE(has_text(message, "pre_tokenizer.pattern: regular expression '(unclosed' does not compile")) << message;
  json processor = small_tokenizer(model);
  processor["post_processor"] = {{"type", "TemplateProcessing"}, {"single", json::array({{{"SpecialToken", {{"id", "<x>"}}}}})},
                                 {"pair", json::array()}, {"special_tokens", json::object()}};
  message = json_error_of([&] { load_json_tokenizer(write_tokenizer("bad_template", processor)); });
  EXPECT_TRUE(has_text(message, "special token '<x>' is not in the template's special_tokens")) << message;
  // A syntax error names its line and column.
  auto dir = test_support::scratch_dir("tokenizer_json_syntax");
  write_file_atomically(dir / "tokenizer.json", "{\n  \"model\": {\n    \"type\": \"BPE\",,\n  }\n}\n");
  message = json_error_of([&] { load_json_tokenizer(dir); });
  EXPECT_TRUE(has_text(message, "tokenizer.json: not valid JSON at line 3, column 19")) << message;
  write_file_atomically(dir / "tokenizer.json", "[1, 2]");
  message = json_error_of([&] { load_json_tokenizer(dir); });
  EXPECT_TRUE(has_text(message, "the top level is array, not an object")) << message;
  write_file_atomically(dir / "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}");
  message = json_error_of([&] { load_json_tokenizer(dir); });
  EXPECT_TRUE(has_text(message, "model.vocab: token 'a' has a string for its id")) << message;
}

TEST(TokenizerJson, ConcurrentTokenisationAgrees) {
  REQUIRE_SHARED("golden/llama-tiny/tokenizer.json");
  auto llama = load_tokenizer(test_support::shared_path("golden/llama-tiny"));
  test_support::expect_concurrent_tokenisation_agrees(*llama, "Normandy, 1,000 <s> d\u00e9j\u00e0 vu \U0001F600 x  ");
  // Oniguruma searches from several threads at once (ByteLevel's regex).
  auto roberta = load_tokenizer(test_support::shared_path("data/roberta-base-tokenizer-json"));
  test_support::expect_concurrent_tokenisation_agrees(*roberta, "He's here <mask> 1,000 d\u00e9j\u00e0  vu \n\n x");
}

TEST(TokenizerJson, FamilysOwnFilesWinUnlessAskedOtherwise) {
  REQUIRE_SHARED("data/roberta-base-tokenizer-json/tokenizer.json");
  REQUIRE_SHARED("data/roberta/vocab.json");
  auto dir = test_support::scratch_dir("tokenizer_json_both");
  for (const char* file : {"data/roberta/vocab.json", "data/roberta/merges.txt", "data/roberta-base-tokenizer-json/tokenizer.json"})
    fs::copy_file(test_support::shared_path(file), dir / fs::path(file).filename());
  TokenizerRequest request;
  request.kind = "bpe";
  EXPECT_EQ(load_tokenizer(dir, request)->kind(), "bpe");  // auto: the slow files
  request.source = TokenizerSource::json;
  EXPECT_EQ(load_tokenizer(dir, request)->kind(), "tokenizer.json");
  // Without the slow files, auto reads tokenizer.json; slow refuses.
  fs::remove(dir / "merges.txt");
  request.source = TokenizerSource::automatic;
  EXPECT_EQ(load_tokenizer(dir, request)->kind(), "tokenizer.json");
  request.source = TokenizerSource::slow;
  const std::string message = json_error_of([&] { load_tokenizer(dir, request); });
  EXPECT_TRUE(has_text(message, "has no bpe tokenizer: expected vocab.json + merges.txt")) << message;
  EXPECT_EQ(parse_tokenizer_source("json"), TokenizerSource::json);
  EXPECT_NE(json_error_of([] { parse_tokenizer_source("fast"); }).find("unknown tokenizer source 'fast'"), std::string::npos);
}
