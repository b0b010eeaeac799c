// ByteLevelBpeTokenizer (RoBERTa): parity with transformers 2.5.1's slow
// RobertaTokenizer on the dev set, GPT-2's pre-tokenisation regex, bpe()'s
// merge order, decoding, and the errors for malformed vocabulary files.
#include "text/bpe_tokenizer.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"
#include "layerprobe/io/gzip.hpp"
#include "text/onig_regex.hpp"
#include "test_support.hpp"

using namespace layerprobe;
using Pieces = std::vector<std::string>;
using Ids = std::vector<int64_t>;
namespace fs = std::filesystem;

namespace {

constexpr const char* kVocab = "data/roberta/vocab.json";
constexpr const char* kMerges = "data/roberta/merges.txt";

const std::string G = "\u0120";  // the byte symbol of a space

ByteLevelBpeTokenizer roberta(TokenizerSettings settings = {}) {
  return ByteLevelBpeTokenizer(test_support::shared_path(kVocab), test_support::shared_path(kMerges),
                               std::move(settings));
}

TokenizerSettings lower_case() {
  TokenizerSettings settings;
  settings.do_lower_case = true;
  return settings;
}

std::vector<std::string> pretokenize(const std::string& text) {
  std::vector<std::string> matches;
  for (const auto& match : gpt2_pretokenize(utf8_to_u32(text))) matches.push_back(u32_to_utf8(match));
  return matches;
}

void write(const fs::path& path, const std::string& content) { std::ofstream(path, std::ios::binary) << content; }

// The message of the Error `load` throws ("" when it throws none).
template <typename Load>
std::string error_of(Load&& load) {
  try {
    load();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const std::string kSpecialsJson = R"("<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4)";

// A tokenizer over a small vocabulary (the specials, then `tokens`) and the
// given merges.txt content, written to a scratch directory.
ByteLevelBpeTokenizer small_tokenizer(const std::string& name, const std::vector<std::string>& tokens,
                                      const std::string& merges) {
  auto dir = test_support::scratch_dir("bpe_" + name);
  std::string vocab = "{" + kSpecialsJson;
  for (size_t i = 0; i < tokens.size(); ++i) vocab += ", \"" + tokens[i] + "\": " + std::to_string(5 + i);
  write(dir / "vocab.json", vocab + "}");
  write(dir / "merges.txt", merges);
  return ByteLevelBpeTokenizer(dir / "vocab.json", dir / "merges.txt");
}

// Lines of a golden JSONL file whose pieces or ids differ from the tokenizer's.
size_t golden_mismatches(const ByteLevelBpeTokenizer& tokenizer, const std::string& file, size_t& lines) {
  std::istringstream in(read_gzip_file(test_support::shared_path(file)));
  size_t mismatches = 0;
  lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    auto golden = nlohmann::json::parse(line);
    auto pieces = tokenizer.tokenize(golden["text"].get<std::string>());
    auto ids = tokenizer.convert_tokens_to_ids(pieces);
    if (pieces != golden["pieces"].get<Pieces>() || ids != golden["ids"].get<Ids>()) {
      if (++mismatches <= 5) ADD_FAILURE() << file << " line " << lines + 1 << ": " << golden["text"];
    }
  }
  return mismatches;
}

}  // namespace

TEST(BpeTokenizer, MatchesHuggingFaceOnEveryDevQuestionAndContext) {
  REQUIRE_SHARED("golden/tokenizer/roberta_dev.jsonl.gz");
  REQUIRE_SHARED(kVocab);
  size_t lines = 0;
  EXPECT_EQ(golden_mismatches(roberta(), "golden/tokenizer/roberta_dev.jsonl.gz", lines), 0u);
  EXPECT_EQ(lines, 6724u);
}

TEST(BpeTokenizer, MatchesHuggingFaceLowerCasedOnEveryDevQuestionAndContext) {
  REQUIRE_SHARED("golden/tokenizer/roberta_lower_dev.jsonl.gz");
  REQUIRE_SHARED(kVocab);
  size_t lines = 0;
  EXPECT_EQ(golden_mismatches(roberta(lower_case()), "golden/tokenizer/roberta_lower_dev.jsonl.gz", lines), 0u);
  EXPECT_EQ(lines, 6724u);
}

TEST(BpeTokenizer, SpecialTokenIdsComeFromTheVocabulary) {
  REQUIRE_SHARED(kVocab);
  auto tokenizer = roberta();
  EXPECT_EQ(tokenizer.convert_tokens_to_ids({"<s>", "<pad>", "</s>", "<unk>", "<mask>"}), (Ids{0, 1, 2, 3, 50264}));
  EXPECT_EQ(tokenizer.cls_id(), 0);
  EXPECT_EQ(tokenizer.sep_id(), 2);
  EXPECT_EQ(tokenizer.pad_id(), 1);
  EXPECT_EQ(tokenizer.unk_id(), 3);
  EXPECT_EQ(tokenizer.vocab_size(), 50265);
  EXPECT_EQ(tokenizer.kind(), "bpe");
  EXPECT_EQ(tokenizer.files(), (std::vector<fs::path>{test_support::shared_path(kVocab),
                                                      test_support::shared_path(kMerges)}));
}

TEST(BpeTokenizer, PairLayoutIsRobertas) {
  REQUIRE_SHARED(kVocab);
  auto layout = roberta().pair_layout();
  EXPECT_EQ(layout.before_query, (Ids{0}));
  EXPECT_EQ(layout.between, (Ids{2, 2}));
  EXPECT_EQ(layout.after_context, (Ids{2}));
  EXPECT_EQ(layout.context_token_type, 0);
  EXPECT_EQ(layout.tokens_before_context(), 3);
  EXPECT_EQ(layout.added_tokens(), 4);
}

// Expected values: transformers 2.5.1's RobertaTokenizer.
TEST(BpeTokenizer, ContractionsAndNumbersSplitAsGpt2Does) {
  REQUIRE_SHARED(kVocab);
  auto tokenizer = roberta();
  EXPECT_EQ(tokenizer.tokenize("He's here; isn't it? They'll say I'M fine"),
            (Pieces{"He", "'s", G + "here", ";", G + "isn", "'t", G + "it", "?", G + "They", "'ll", G + "say", G + "I",
                    "'", "M", G + "fine"}));
  EXPECT_EQ(tokenizer.tokenize("in 1,000 years, 2019's 3rd"),
            (Pieces{"in", G + "1", ",", "000", G + "years", ",", G + "2019", "'s", G + "3", "rd"}));
  EXPECT_EQ(tokenizer.encode("in 1,000 years"), (Ids{179, 112, 6, 151, 107}));
}

TEST(BpeTokenizer, WhitespaceBeforeAWordStaysWithThePrecedingRun) {
  REQUIRE_SHARED(kVocab);
  auto tokenizer = roberta();
  EXPECT_EQ(tokenizer.tokenize("Hello  world\tand\n\nmore"),
            (Pieces{"Hello", G, G + "world", "\u0109", "and", "\u010A", "\u010A", "more"}));
  EXPECT_EQ(tokenizer.tokenize("a\u00A0b"), (Pieces{"a", "\u00C2\u0142", "b"}));
  EXPECT_EQ(tokenizer.encode("x \u3000y"), (Ids{1178, 1437, 48516, 7471, 219}));
  // No prefix space is added (2.5.1's add_prefix_space defaults to false).
  EXPECT_EQ(tokenizer.tokenize("Hello"), (Pieces{"Hello"}));
}

TEST(BpeTokenizer, PretokenizationIsGpt2sRegex) {
  // Expected values: regex.findall with GPT-2's pattern.
  EXPECT_EQ(pretokenize("a  b"), (Pieces{"a", " ", " b"}));
  EXPECT_EQ(pretokenize("a\n\n b"), (Pieces{"a", "\n\n", " b"}));
  EXPECT_EQ(pretokenize("\n\nhi"), (Pieces{"\n", "\n", "hi"}));
  EXPECT_EQ(pretokenize("x   "), (Pieces{"x", "   "}));  // \s+(?!\S) takes a final run whole
  EXPECT_EQ(pretokenize("a \u00A0b"), (Pieces{"a", " ", "\u00A0", "b"}));
  EXPECT_EQ(pretokenize("a\u2028 b"), (Pieces{"a", "\u2028", " b"}));
  // U+001C is str.isspace() but not White_Space: the regex sees punctuation.
  EXPECT_EQ(pretokenize("a\x1c\x1c" "b"), (Pieces{"a", "\x1c\x1c", "b"}));
  EXPECT_EQ(pretokenize(" 's"), (Pieces{" '", "s"}));
  EXPECT_EQ(pretokenize("'S'st"), (Pieces{"'", "S", "'s", "t"}));
  EXPECT_EQ(pretokenize("1 23\u00BD"), (Pieces{"1", " 23\u00BD"}));  // ½ is \p{N}
  EXPECT_TRUE(pretokenize("").empty());
}

TEST(BpeTokenizer, LiteralSpecialTokensStayWhole) {
  REQUIRE_SHARED(kVocab);
  auto tokenizer = roberta();
  EXPECT_EQ(tokenizer.tokenize("Hello</s>world"), (Pieces{"Hello", "</s>", "world"}));
  EXPECT_EQ(tokenizer.encode("a <mask> b<s>"), (Ids{102, 50264, 741, 0}));
  EXPECT_EQ(tokenizer.tokenize("</S>"), (Pieces{"</", "S", ">"}));
}

TEST(BpeTokenizer, LowerCasingFollowsTheSetting) {
  REQUIRE_SHARED(kVocab);
  EXPECT_FALSE(roberta().lowercases());
  EXPECT_TRUE(roberta(lower_case()).lowercases());
  EXPECT_EQ(roberta().tokenize("Hello WORLD"), (Pieces{"Hello", G + "WORLD"}));
  EXPECT_EQ(roberta(lower_case()).tokenize("Hello WORLD <mask>"), (Pieces{"hello", G + "world", "<mask>"}));
}

TEST(BpeTokenizer, TokensTurnBackIntoTheText) {
  REQUIRE_SHARED(kVocab);
  auto tokenizer = roberta();
  const std::string text = "Caf\u00E9 \u2013 \u6771\u4EAC";
  auto pieces = tokenizer.tokenize(text);
  EXPECT_EQ(pieces, (Pieces{"C", "af", "\u00C3\u00A9", G + "\u00E2\u0122\u0135", G + "\u00E6", "\u013F", "\u00B1",
                            "\u00E4\u00BA", "\u00AC"}));
  EXPECT_EQ(tokenizer.convert_tokens_to_string(pieces), text);
  EXPECT_EQ(tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(pieces)), pieces);
  // A character cut between tokens decodes as errors="replace" does.
  EXPECT_EQ(tokenizer.convert_tokens_to_string({G + "\u00E6", "\u013F"}), " \uFFFD");
  EXPECT_EQ(tokenizer.convert_tokens_to_string({"\u013F", "\u00B1"}), "\uFFFD\uFFFD");
  EXPECT_THROW(tokenizer.convert_tokens_to_string({"\u6771"}), Error);  // no byte's symbol
}

TEST(BpeTokenizer, UnknownTokensAndIdsOutOfRange) {
  REQUIRE_SHARED(kVocab);
  auto tokenizer = roberta();
  EXPECT_EQ(tokenizer.convert_tokens_to_ids({"no-such-token"}), (Ids{3}));
  EXPECT_EQ(tokenizer.id_to_token(50264), "<mask>");
  for (int64_t id : {int64_t{50265}, int64_t{-1}}) {
    auto message = error_of([&] { tokenizer.id_to_token(id); });
    EXPECT_NE(message.find(std::to_string(id)), std::string::npos) << message;
    EXPECT_NE(message.find("50265"), std::string::npos) << message;
  }
}

TEST(BpeTokenizer, BlankTextHasNoTokens) {
  REQUIRE_SHARED(kVocab);
  EXPECT_TRUE(roberta().tokenize(" \t\u3000\n").empty());
  EXPECT_TRUE(roberta().tokenize("").empty());
}

TEST(BpeTokenizer, ConcurrentTokenisationAgrees) {
  REQUIRE_SHARED(kVocab);
  auto tokenizer = roberta();
  const std::string text = "Normandy's 1,000 d\u00E9j\u00E0 vu </s> \u6771\u4EAC  done\n\n";
  test_support::expect_concurrent_tokenisation_agrees(tokenizer, text);
}

// bpe(): the lowest-ranked pair first, every occurrence left to right.
TEST(BpeMerges, LowestRankMergesFirstLeftToRight) {
  auto tokenizer = small_tokenizer("ranks", {"a", "aa", "b", "c", "ab", "bc"}, "#version: 0.2\na a\nb c\na b\n");
  EXPECT_EQ(tokenizer.tokenize("aaa"), (Pieces{"aa", "a"}));
  EXPECT_EQ(tokenizer.tokenize("aaaa"), (Pieces{"aa", "aa"}));
  EXPECT_EQ(tokenizer.tokenize("abc"), (Pieces{"a", "bc"}));
  EXPECT_EQ(tokenizer.encode("abc d"), (Ids{5, 10, 3, 3}));  // "d" and the space symbol are unknown
  // Every "a b" merges before the lower-ranked "ab a" can take the second "a".
  EXPECT_EQ(small_tokenizer("all", {}, "#version: 0.2\nab a\na b\n").tokenize("abab"), (Pieces{"ab", "ab"}));
}

TEST(BpeMerges, RanksFollowHuggingFacesReading) {
  // A repeated merge takes its later rank (dict(zip(merges, range(...)))).
  EXPECT_EQ(small_tokenizer("repeat", {}, "#version: 0.2\na b\nb c\na b\n").tokenize("abc"), (Pieces{"a", "bc"}));
  // split("\n")[1:-1]: text after the last newline is no merge.
  EXPECT_EQ(small_tokenizer("last", {}, "#version: 0.2\nx y\na b").tokenize("abc"), (Pieces{"a", "b", "c"}));
  // Blank lines are no merges; text-mode reading: a lone "\r" ends a line too.
  EXPECT_EQ(small_tokenizer("blank", {}, "#version: 0.2\n\na b\n \t\n").tokenize("abc"), (Pieces{"ab", "c"}));
  EXPECT_EQ(small_tokenizer("cr", {}, "#version: 0.2\ra b\rb c\r").tokenize("abc"), (Pieces{"ab", "c"}));
}

TEST(BpeMerges, MalformedLineIsAnErrorNamingTheLine) {
  auto message = error_of([] { small_tokenizer("bad_line", {}, "#version: 0.2\na b\nabc\nb c\n"); });
  EXPECT_NE(message.find("merges.txt' line 3"), std::string::npos) << message;
  EXPECT_NE(message.find("'abc'"), std::string::npos) << message;
}

TEST(BpeVocab, MalformedVocabularyIsAnErrorNamingTheFile) {
  auto dir = test_support::scratch_dir("bpe_bad_vocab");
  write(dir / "merges.txt", "#version: 0.2\na b\n");
  auto load = [&](const std::string& vocab) {
    write(dir / "vocab.json", vocab);
    return error_of([&] { ByteLevelBpeTokenizer(dir / "vocab.json", dir / "merges.txt"); });
  };
  const std::string path = (dir / "vocab.json").string();
  auto truncated = load("{" + kSpecialsJson + ",\n \"a\": ");
  EXPECT_NE(truncated.find(path), std::string::npos) << truncated;
  EXPECT_NE(truncated.find("line 2, column"), std::string::npos) << truncated;
  auto not_integer = load("{" + kSpecialsJson + ", \"a\": \"5\"}");
  EXPECT_NE(not_integer.find("token 'a'"), std::string::npos) << not_integer;
  auto gap = load("{" + kSpecialsJson + ", \"a\": 6}");
  EXPECT_NE(gap.find("token 'a' has id 6"), std::string::npos) << gap;
  EXPECT_NE(load("[1, 2]").find("not an object"), std::string::npos);
  auto missing = error_of([] { ByteLevelBpeTokenizer("/nonexistent/vocab.json", "/nonexistent/merges.txt"); });
  EXPECT_NE(missing.find("/nonexistent/vocab.json"), std::string::npos) << missing;
}

TEST(BpeVocab, SpecialTokensMustBeInTheVocabulary) {
  auto dir = test_support::scratch_dir("bpe_no_mask");
  write(dir / "vocab.json", R"({"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "[MASK]": 4})");
  write(dir / "merges.txt", "#version: 0.2\na b\n");
  auto message = error_of([&] { ByteLevelBpeTokenizer(dir / "vocab.json", dir / "merges.txt"); });
  EXPECT_NE(message.find("'<mask>'"), std::string::npos) << message;
  EXPECT_NE(message.find("special_tokens_map.json"), std::string::npos) << message;
  TokenizerSettings settings;
  settings.special_tokens["mask_token"] = "[MASK]";
  ByteLevelBpeTokenizer tokenizer(dir / "vocab.json", dir / "merges.txt", settings);
  EXPECT_EQ(tokenizer.encode("a [MASK]"), (Ids{3, 4}));
}

// Issue 25's check of RoBERTa's path: with do_lower_case (twmkn9/distilroberta-base-squad2's
// tokenizer_config.json) 2.5.1 lower-cases one character at a time, so a word-final Σ
// becomes σ (bytes CF 83: "Ïĥ"), not ς ("ÏĤ"). Expected pieces: 2.5.1's
// RobertaTokenizer.from_pretrained with {"do_lower_case": true}, run in Python 3.11.
TEST(BpeTokenizer, FinalCapitalSigmaIsLowerCasedOneCharacterAtATime) {
  REQUIRE_SHARED(kMerges);
  EXPECT_EQ(roberta(lower_case()).tokenize("\u039f\u0394\u039f\u03a3"),
            (Pieces{"\u00ce\u00bf", "\u00ce", "\u00b4", "\u00ce\u00bf", "\u00cf\u0125"}));
  EXPECT_EQ(roberta(lower_case()).tokenize("Odysseus (\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3) went"),
            (Pieces{"od", "ys", "se", "us", G + "(", "\u00ce\u00bf", "\u00ce", "\u00b4", "\u00cf", "\u0127",
                    "\u00cf\u0125", "\u00cf\u0125", "\u00ce\u00b5", "\u00cf", "\u0127", "\u00cf\u0125", ")",
                    G + "went"}));
}

// Issue 29, item 12: an empty merges.txt is refused, naming the file; one
// without a '#version' line still loses its first line (as transformers
// does), with a warning.
TEST(BpeMerges, EmptyFileIsAnErrorAndAMissingHeaderAWarning) {
  auto empty = error_of([] { small_tokenizer("empty_merges", {}, ""); });
  EXPECT_NE(empty.find("merges.txt' holds no merges (0 bytes)"), std::string::npos) << empty;
  auto header_only = error_of([] { small_tokenizer("header_only", {}, "#version: 0.2\n"); });
  EXPECT_NE(header_only.find("holds no merges"), std::string::npos) << header_only;
  // No header: "a b" is taken for one and dropped; "b c" is the first merge.
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(
      std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(log)));
  EXPECT_EQ(small_tokenizer("no_header", {}, "a b\nb c\n").tokenize("abc"), (Pieces{"a", "bc"}));
  spdlog::set_default_logger(previous);
  EXPECT_NE(log.str().find("does not start with a '#version' line: its first line ('a b') is skipped"),
            std::string::npos)
      << log.str();
}

// The hand-written GPT-2 pre-tokenizer reads the regex as Oniguruma (the
// tokenizers library's engine) does: the same pieces on every dev text and on
// texts made of every kind of character the regex tells apart. (It stays
// hand-written: on the dev texts it took 0.24-0.26 s against Oniguruma's
// 0.57-0.67 s for the same 842,060 pieces; see docs/families.md.)
TEST(BpeTokenizer, HandWrittenPretokenizerAgreesWithOniguruma) {
  REQUIRE_SHARED("golden/tokenizer/roberta_dev.jsonl.gz");
  const OnigRegex regex(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
  auto onig = [&](const std::string& text) {
    std::vector<std::string> pieces;
    for (const auto& [start, end] : regex.find_all(text)) pieces.push_back(text.substr(start, end - start));
    return pieces;
  };
  std::vector<std::string> texts;
  std::istringstream in(read_gzip_file(test_support::shared_path("golden/tokenizer/roberta_dev.jsonl.gz")));
  for (std::string line; std::getline(in, line);) texts.push_back(nlohmann::json::parse(line)["text"]);
  // Every White_Space character, the ones Python's isspace adds (U+001C..U+001F), contractions in
  // odd places, numbers of other scripts, marks, symbols and surrogate-free astral characters.
  const std::vector<std::string> alphabet = {" ", "\t", "\n", "\r", "\x0b", "\x0c", "\u0085", "\u00a0", "\u1680", "\u2000",
                                             "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\x1c", "\x1f",
                                             "'", "s", "t", "re", "ve", "m", "ll", "d", "S", "a", "\u00e9", "\u0301", "\u4e2d",
                                             "1", "\u0663", "\u2460", "\u00bd", ".", "$", "\U0001F600", "\u200b", "-"};
  uint64_t state = 12345;
  for (int i = 0; i < 3000; ++i) {
    std::string text;
    const int length = 1 + static_cast<int>(state % 12);
    for (int k = 0; k < length; ++k) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      text += alphabet[(state >> 33) % alphabet.size()];
    }
    texts.push_back(text);
  }
  size_t mismatches = 0;
  for (const auto& text : texts)
    if (pretokenize(text) != onig(text) && ++mismatches <= 5) ADD_FAILURE() << nlohmann::json(text).dump();
  EXPECT_EQ(mismatches, 0u);
}
