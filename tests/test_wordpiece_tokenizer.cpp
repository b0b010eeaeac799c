// WordPieceTokenizer against transformers 2.5.1's BertTokenizer: the golden
// pieces and ids of every dev question and context, then the rules one at a
// time (small vocabularies written here where bert-base-uncased's cannot show them).
#include "text/wordpiece_tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
#include <thread>

#include "layerprobe/core/common.hpp"
#include "layerprobe/io/gzip.hpp"
#include "test_support.hpp"

using namespace layerprobe;
using Pieces = std::vector<std::string>;
using Ids = std::vector<int64_t>;

namespace {

constexpr const char* kBertVocab = "data/bert/vocab.txt";
constexpr const char* kBertGolden = "golden/tokenizer/bert_dev.jsonl.gz";

TokenizerSettings lower_case(bool on) {
  TokenizerSettings settings;
  settings.do_lower_case = on;
  return settings;
}

// As from_pretrained builds it for bert-base-uncased (init_kwargs do_lower_case=True).
WordPieceTokenizer bert(TokenizerSettings settings = lower_case(true)) {
  return WordPieceTokenizer(test_support::shared_path(kBertVocab), std::move(settings));
}

// A vocabulary file with exactly `content`, in a fresh scratch folder.
std::filesystem::path vocab_file(const std::string& test, const std::string& content) {
  auto path = test_support::scratch_dir("wordpiece_" + test) / "vocab.txt";
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

const std::string kSpecials = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";

// The Error message `make` throws ("" when it throws none).
template <typename Make>
std::string error_of(Make make) {
  try {
    make();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST(WordPieceTokenizer, MatchesHuggingFaceOnEveryDevQuestionAndContext) {
  REQUIRE_SHARED(kBertGolden);
  REQUIRE_SHARED(kBertVocab);
  auto tokenizer = bert();
  std::istringstream in(read_gzip_file(test_support::shared_path(kBertGolden)));
  size_t lines = 0, mismatches = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    auto golden = nlohmann::json::parse(line);
    auto pieces = tokenizer.tokenize(golden["text"].get<std::string>());
    auto ids = tokenizer.convert_tokens_to_ids(pieces);
    if (pieces != golden["pieces"].get<Pieces>() || ids != golden["ids"].get<Ids>()) {
      if (++mismatches <= 5) ADD_FAILURE() << "line " << lines + 1 << ": " << golden["text"];
    }
  }
  EXPECT_EQ(lines, 6724u);
  EXPECT_EQ(mismatches, 0u);
}

TEST(WordPieceTokenizer, SpecialTokenIdsComeFromTheVocabulary) {
  REQUIRE_SHARED(kBertVocab);
  auto tokenizer = bert();
  EXPECT_EQ(tokenizer.kind(), "wordpiece");
  EXPECT_EQ(tokenizer.vocab_size(), 30522);
  EXPECT_EQ(tokenizer.cls_id(), 101);
  EXPECT_EQ(tokenizer.sep_id(), 102);
  EXPECT_EQ(tokenizer.pad_id(), 0);
  EXPECT_EQ(tokenizer.unk_id(), 100);
  EXPECT_EQ(tokenizer.token_to_id("[MASK]"), 103);
  auto layout = tokenizer.pair_layout();
  EXPECT_EQ(layout.before_query, Ids{101});
  EXPECT_EQ(layout.between, Ids{102});
  EXPECT_EQ(layout.after_context, Ids{102});
  EXPECT_EQ(layout.context_token_type, 1);
  EXPECT_EQ(tokenizer.files(), std::vector<std::filesystem::path>{test_support::shared_path(kBertVocab)});
}

TEST(WordPieceTokenizer, LowercasingStripsAccents) {
  REQUIRE_SHARED(kBertVocab);
  EXPECT_EQ(bert().tokenize("Caf\u00e9 NA\u00cfVE Paris"), (Pieces{"cafe", "naive", "paris"}));
  // Without do_lower_case in the settings BertTokenizer still lower-cases.
  EXPECT_TRUE(bert({}).lowercases());
  EXPECT_EQ(bert({}).tokenize("Caf\u00e9 NA\u00cfVE Paris"), (Pieces{"cafe", "naive", "paris"}));
}

TEST(WordPieceTokenizer, CasedModeKeepsCaseAndAccents) {
  auto path = vocab_file("cased", kSpecials + "hello\nH\n##\u00e9\n##ll\n##llo\n");
  WordPieceTokenizer cased(path, lower_case(false));
  EXPECT_FALSE(cased.lowercases());
  EXPECT_EQ(cased.tokenize("H\u00e9llo hello"), (Pieces{"H", "##\u00e9", "##llo", "hello"}));
  EXPECT_EQ(cased.tokenize("HELLO"), (Pieces{"[UNK]"}));
  EXPECT_EQ(WordPieceTokenizer(path).tokenize("H\u00e9llo HELLO"), (Pieces{"hello", "hello"}));
}

TEST(WordPieceTokenizer, LiteralSpecialTokensStayWhole) {
  REQUIRE_SHARED(kBertVocab);
  for (const auto& settings : {lower_case(true), TokenizerSettings{}}) {
    auto tokenizer = bert(settings);
    EXPECT_EQ(tokenizer.tokenize("[CLS] Who? [SEP]Normandy[MASK]"),
              (Pieces{"[CLS]", "who", "?", "[SEP]", "normandy", "[MASK]"}));
    EXPECT_EQ(tokenizer.encode("[CLS][SEP][PAD][UNK]"), (Ids{101, 102, 0, 100}));
    // Matching is case-sensitive: "[cls]" is ordinary text.
    EXPECT_EQ(tokenizer.tokenize("[cls]"), (Pieces{"[", "cl", "##s", "]"}));
  }
}

TEST(WordPieceTokenizer, GreedyLongestMatchFirstOrUnknownWord) {
  auto path = vocab_file("greedy", kSpecials + "un\n##a\n##aff\n##able\n##ble\n!\n");
  WordPieceTokenizer tokenizer(path);
  EXPECT_EQ(tokenizer.tokenize("unaffable!"), (Pieces{"un", "##aff", "##able", "!"}));
  // A word with a part that matches nothing is one unknown token, not a partial split.
  EXPECT_EQ(tokenizer.tokenize("unaffx un"), (Pieces{"[UNK]", "un"}));
  EXPECT_EQ(tokenizer.tokenize("aff"), (Pieces{"[UNK]"}));  // "##" pieces only continue a word
}

TEST(WordPieceTokenizer, WordsOverOneHundredCodePointsAreUnknown) {
  REQUIRE_SHARED(kBertVocab);
  auto tokenizer = bert();
  auto pieces = tokenizer.tokenize(std::string(100, 'a'));
  EXPECT_NE(pieces, Pieces{"[UNK]"});
  EXPECT_EQ(tokenizer.convert_tokens_to_string(pieces), std::string(100, 'a'));
  EXPECT_EQ(tokenizer.tokenize(std::string(101, 'a') + " b"), (Pieces{"[UNK]", "b"}));
  std::string sharp_s;  // 100 code points, 200 bytes: the limit counts code points
  for (int i = 0; i < 100; ++i) sharp_s += "\u00df";
  EXPECT_EQ(tokenizer.convert_tokens_to_string(tokenizer.tokenize(sharp_s)), sharp_s);
  EXPECT_EQ(tokenizer.tokenize(sharp_s + "\u00df"), Pieces{"[UNK]"});
}

TEST(WordPieceTokenizer, ConvertTokensToStringJoinsContinuations) {
  REQUIRE_SHARED(kBertVocab);
  auto tokenizer = bert();
  EXPECT_EQ(tokenizer.convert_tokens_to_string({"the", "norman", "##s", "'", "un", "##able"}), "the normans ' unable");
  EXPECT_EQ(tokenizer.convert_tokens_to_string({"[CLS]", "who", "##m", "[SEP]"}), "[CLS] whom [SEP]");
  EXPECT_EQ(tokenizer.convert_tokens_to_string({"##s", "a", "##"}), "##s a");  // only " ##" is removed
  EXPECT_EQ(tokenizer.convert_tokens_to_string({" ", "x", "\u3000"}), "x");     // Python's strip()
  EXPECT_EQ(tokenizer.convert_tokens_to_string({}), "");
}

TEST(WordPieceTokenizer, IdsAndTokensRoundTrip) {
  REQUIRE_SHARED(kBertVocab);
  auto tokenizer = bert();
  auto pieces = tokenizer.tokenize("When were the Normans in Normandy?");
  EXPECT_EQ(pieces, (Pieces{"when", "were", "the", "norman", "##s", "in", "normandy", "?"}));
  EXPECT_EQ(tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(pieces)), pieces);
  EXPECT_EQ(tokenizer.convert_tokens_to_string(pieces), "when were the normans in normandy ?");
  EXPECT_EQ(tokenizer.token_to_id("no-such-token"), 100);
  EXPECT_EQ(tokenizer.id_to_token(30521), "##\uff5e");  // the last line
}

TEST(WordPieceTokenizer, IdOutsideVocabularyIsAnErrorNamingIdAndRange) {
  REQUIRE_SHARED(kBertVocab);
  auto tokenizer = bert();
  for (int64_t id : {int64_t{30522}, int64_t{-1}}) {
    auto message = error_of([&] { tokenizer.id_to_token(id); });
    EXPECT_TRUE(contains(message, "token id " + std::to_string(id) + " ")) << message;
    EXPECT_TRUE(contains(message, "ids 0 to 30521")) << message;
  }
}

TEST(WordPieceTokenizer, BlankTextHasNoPieces) {
  REQUIRE_SHARED(kBertVocab);
  EXPECT_TRUE(bert().tokenize(" \t\u3000\n").empty());
  EXPECT_TRUE(bert().tokenize("").empty());
  EXPECT_TRUE(bert().tokenize("\u200b\x01").empty());  // control characters are dropped
}

TEST(WordPieceTokenizer, VocabularyIsReadLikeLoadVocab) {
  // Universal newlines; other whitespace stays part of the token; a repeated
  // token keeps its last line, and the earlier id reads back as unknown.
  auto path = vocab_file("load_vocab", "[PAD]\r\n[UNK]\r[CLS]\n[SEP]\nword \nword\nx\nx");
  WordPieceTokenizer tokenizer(path);
  EXPECT_EQ(tokenizer.convert_tokens_to_ids({"[PAD]", "[UNK]", "[CLS]", "[SEP]"}), (Ids{0, 1, 2, 3}));
  EXPECT_EQ(tokenizer.convert_tokens_to_ids({"word ", "word", "x", "[MASK]"}), (Ids{4, 5, 7, 1}));
  EXPECT_EQ(tokenizer.vocab_size(), 7);
  EXPECT_EQ(tokenizer.convert_ids_to_tokens({4, 5, 6, 7}), (Pieces{"word ", "word", "[UNK]", "x"}));
  EXPECT_THROW(tokenizer.id_to_token(8), Error);
  EXPECT_EQ(tokenizer.tokenize("Word X"), (Pieces{"word", "x"}));
}

TEST(WordPieceTokenizer, SpecialTokensCanBeRenamed) {
  auto path = vocab_file("renamed", "<pad>\n<unk>\n<cls>\n<sep>\nhi\n[\n]\n");
  TokenizerSettings settings;
  settings.special_tokens = {{"pad_token", "<pad>"}, {"unk_token", "<unk>"}, {"cls_token", "<cls>"},
                             {"sep_token", "<sep>"}};
  WordPieceTokenizer tokenizer(path, settings);
  EXPECT_EQ(tokenizer.tokenize("<cls> hi ho [CLS]<sep>"), (Pieces{"<cls>", "hi", "<unk>", "[", "<unk>", "]", "<sep>"}));
  EXPECT_EQ((Ids{tokenizer.pad_id(), tokenizer.unk_id(), tokenizer.cls_id(), tokenizer.sep_id()}), (Ids{0, 1, 2, 3}));
  settings.special_tokens["oops_token"] = "x";
  EXPECT_TRUE(contains(error_of([&] { WordPieceTokenizer bad(path, settings); }), path.string()));
}

TEST(WordPieceTokenizer, MissingVocabularyIsAnErrorNamingIt) {
  auto message = error_of([] { WordPieceTokenizer tokenizer("/nonexistent/vocab.txt"); });
  EXPECT_TRUE(contains(message, "'/nonexistent/vocab.txt' does not exist")) << message;
  EXPECT_TRUE(contains(message, "pass the vocab.txt of a BERT")) << message;
  auto dir = test_support::scratch_dir("wordpiece_dir");
  EXPECT_TRUE(contains(error_of([&] { WordPieceTokenizer tokenizer(dir); }), dir.string()));
}

TEST(WordPieceTokenizer, BadVocabulariesAreErrorsNamingTheFile) {
  auto empty = vocab_file("empty", "");
  auto message = error_of([&] { WordPieceTokenizer tokenizer(empty); });
  EXPECT_TRUE(contains(message, empty.string() + "' is empty")) << message;

  auto no_sep = vocab_file("no_sep", "[PAD]\n[UNK]\n[CLS]\n[SEP] \n");
  message = error_of([&] { WordPieceTokenizer tokenizer(no_sep); });
  EXPECT_TRUE(contains(message, no_sep.string() + "' lacks the sep_token '[SEP]'")) << message;

  auto not_utf8 = vocab_file("not_utf8", kSpecials + "ok\nbad\xff\n");
  message = error_of([&] { WordPieceTokenizer tokenizer(not_utf8); });
  EXPECT_TRUE(contains(message, not_utf8.string() + " line 7 is not valid UTF-8")) << message;
}

TEST(WordPieceTokenizer, ConcurrentTokenisationAgrees) {
  REQUIRE_SHARED(kBertVocab);
  auto tokenizer = bert();
  const std::string text = "The Normans' d\u00e9j\u00e0 vu [SEP] \u4e2d\u6587 unaffable 1,000 [CLS] done";
  test_support::expect_concurrent_tokenisation_agrees(tokenizer, text);
}

// Issue 25's unseen case: a Greek word ending in a capital sigma. transformers
// 2.5.1's from_pretrained (do_lower_case in init_kwargs, as for every uncased
// BERT it loads) lower-cases the text one character at a time before
// BasicTokenizer, so the final Σ becomes σ, not the word-final ς that
// BasicTokenizer's whole-word str.lower() would give. Expected pieces: 2.5.1's
// BertTokenizer.from_pretrained on a directory with vocab.txt and
// tokenizer_config.json {"do_lower_case": true}, run in Python 3.11.
TEST(WordPieceTokenizer, FinalCapitalSigmaIsLowerCasedAsFromPretrainedDoes) {
  REQUIRE_SHARED(kBertVocab);
  const std::pair<const char*, Pieces> cases[] = {
      {"\u039f\u0394\u039f\u03a3", {"\u03bf", "##\u03b4", "##\u03bf", "##\u03c3"}},
      {"\u0397 \u039f\u0394\u039f\u03a3 \u0395\u0399\u039d\u0391\u0399",
       {"\u03b7", "\u03bf", "##\u03b4", "##\u03bf", "##\u03c3", "\u03b5", "##\u03b9", "##\u03bd", "##\u03b1", "##\u03b9"}},
      {"Odysseus (\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3) went",
       {"o", "##dy", "##sse", "##us", "(", "\u03bf", "##\u03b4", "##\u03c5", "##\u03c3", "##\u03c3", "##\u03b5",
        "##\u03c5", "##\u03c3", ")", "went"}},
  };
  TokenizerSettings unset;
  for (const auto& [text, pieces] : cases) {
    EXPECT_EQ(bert().tokenize(text), pieces) << text;
    // A vocabulary without tokenizer_config.json lower-cases the same way.
    EXPECT_EQ(bert(unset).tokenize(text), pieces) << text;
  }
  // Cased: no lower-casing at all.
  EXPECT_EQ(bert(lower_case(false)).tokenize("\u039f\u0394\u039f\u03a3"), (Pieces{"[UNK]"}));
}
