// Reading tokenizers as from_pretrained does: the kind from the files, the
// settings from tokenizer_config.json and special_tokens_map.json, the
// caller's overrides, and saving them back (text/tokenizer_registry.hpp).
#include <nlohmann/json.hpp>

#include "layerprobe/core/common.hpp"
#include "layerprobe/text/tokenizer_registry.hpp"
#include "test_support.hpp"

using namespace layerprobe;
namespace fs = std::filesystem;

namespace {

constexpr const char* kRegistryBertVocab = "data/bert/vocab.txt";
constexpr const char* kRegistryRobertaVocab = "data/roberta/vocab.json";
constexpr const char* kRegistryRobertaMerges = "data/roberta/merges.txt";

std::string load_error(const fs::path& path, TokenizerRequest request = {}) {
  try {
    load_tokenizer(path, request);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void copy_shared(const char* relative, const fs::path& dir) {
  fs::copy_file(test_support::shared_path(relative), dir / fs::path(relative).filename());
}

}  // namespace

TEST(TokenizerRegistry, TheKindFollowsTheFile) {
  REQUIRE_SHARED(kRegistryBertVocab);
  REQUIRE_SHARED(kRegistryRobertaMerges);
  REQUIRE_SHARED(test_support::kSpieceModel);
  EXPECT_EQ(load_tokenizer(test_support::shared_path(test_support::kSpieceModel))->kind(), "sentencepiece");
  EXPECT_EQ(load_tokenizer(test_support::shared_path(kRegistryBertVocab))->kind(), "wordpiece");
  auto bpe = load_tokenizer(test_support::shared_path(kRegistryRobertaVocab));
  EXPECT_EQ(bpe->kind(), "bpe");
  EXPECT_EQ(bpe->files().size(), 2u);  // merges.txt found beside vocab.json
  EXPECT_EQ(bpe->pair_layout().added_tokens(), 4);
  EXPECT_EQ(load_tokenizer(test_support::shared_path(kRegistryBertVocab))->pair_layout().added_tokens(), 3);
}

TEST(TokenizerRegistry, ModelDirectoriesAreReadAsFromPretrainedReadsThem) {
  REQUIRE_SHARED(kRegistryBertVocab);
  auto dir = test_support::scratch_dir("tokreg_bert_dir");
  copy_shared(kRegistryBertVocab, dir);
  // Without tokenizer_config.json: BertTokenizer's default lower-casing, no lowercase_text step.
  auto plain = load_tokenizer(dir);
  EXPECT_FALSE(plain->settings().do_lower_case.has_value());
  EXPECT_TRUE(plain->lowercases());
  write_file_atomically(dir / "tokenizer_config.json", R"({"do_lower_case": false, "max_len": 512})");
  write_file_atomically(dir / "special_tokens_map.json", R"({"unk_token": "[UNK]", "cls_token": {"content": "[CLS]"}})");
  auto cased = load_tokenizer(dir);
  EXPECT_FALSE(cased->lowercases());
  EXPECT_EQ(cased->tokenize("Hello"), (std::vector<std::string>{"[UNK]"}));  // uncased vocabulary
  // The caller's do_lower_case (run_squad's --do_lower_case) wins over the file.
  TokenizerRequest lower;
  lower.do_lower_case = true;
  EXPECT_EQ(load_tokenizer(dir, lower)->tokenize("Hello"), (std::vector<std::string>{"hello"}));
}

TEST(TokenizerRegistry, BadSettingsFilesNameTheFileAndKey) {
  REQUIRE_SHARED(kRegistryBertVocab);
  auto dir = test_support::scratch_dir("tokreg_bad_settings");
  copy_shared(kRegistryBertVocab, dir);
  write_file_atomically(dir / "tokenizer_config.json", R"({"do_lower_case": "yes"})");
  EXPECT_NE(load_error(dir).find("tokenizer_config.json: key 'do_lower_case' must be true or false"), std::string::npos)
      << load_error(dir);
  // Issue 29: a syntax error names the file, line and column.
  write_file_atomically(dir / "tokenizer_config.json", "{oops");
  EXPECT_NE(load_error(dir).find("tokenizer_config.json: not valid JSON at line 1, column 2: syntax error"),
            std::string::npos)
      << load_error(dir);
  write_file_atomically(dir / "tokenizer_config.json", "{\n  \"do_lower_case\": true,\n  \"max_len\": 512,\n}\n");
  EXPECT_NE(load_error(dir).find("tokenizer_config.json: not valid JSON at line 4, column 1"), std::string::npos)
      << load_error(dir);
  write_file_atomically(dir / "tokenizer_config.json", "[true]");
  EXPECT_NE(load_error(dir).find("tokenizer_config.json: the top level is array, not a JSON object"), std::string::npos)
      << load_error(dir);
  write_file_atomically(dir / "tokenizer_config.json", R"({"cls_token": 7})");
  EXPECT_NE(load_error(dir).find("key 'cls_token' must be a string"), std::string::npos) << load_error(dir);
}

TEST(TokenizerRegistry, MissingOrAmbiguousFilesAreErrorsThatSayWhatToPass) {
  REQUIRE_SHARED(kRegistryBertVocab);
  REQUIRE_SHARED(kRegistryRobertaMerges);
  auto empty = test_support::scratch_dir("tokreg_empty");
  std::string message = load_error(empty);
  EXPECT_NE(message.find("spiece.model (ALBERT)"), std::string::npos) << message;
  EXPECT_NE(message.find("vocab.txt (BERT, DistilBERT, ELECTRA)"), std::string::npos) << message;
  EXPECT_NE(message.find("tokenizer.json"), std::string::npos) << message;
  EXPECT_NE(message.find("vocab.json + merges.txt (RoBERTa)"), std::string::npos) << message;
  EXPECT_NE(load_error(empty / "nope.txt").find("does not exist"), std::string::npos);
  auto both = test_support::scratch_dir("tokreg_both");
  copy_shared(kRegistryBertVocab, both);
  copy_shared(kRegistryRobertaVocab, both);
  copy_shared(kRegistryRobertaMerges, both);
  EXPECT_NE(load_error(both).find("holds the files of several tokenizers"), std::string::npos) << load_error(both);
  TokenizerRequest wordpiece;
  wordpiece.kind = "wordpiece";
  EXPECT_EQ(load_tokenizer(both, wordpiece)->kind(), "wordpiece");
  // vocab.json without merges.txt beside it.
  auto lonely = test_support::scratch_dir("tokreg_lonely_bpe");
  copy_shared(kRegistryRobertaVocab, lonely);
  EXPECT_NE(load_error(lonely / "vocab.json").find("merges.txt' does not exist"), std::string::npos)
      << load_error(lonely / "vocab.json");
}

TEST(TokenizerRegistry, SaveThenLoadKeepsKindSettingsAndSpecialTokens) {
  REQUIRE_SHARED(kRegistryRobertaMerges);
  TokenizerRequest lower;
  lower.do_lower_case = true;
  auto original = load_tokenizer(test_support::shared_path(kRegistryRobertaVocab), lower);
  auto dir = test_support::scratch_dir("tokreg_save");
  save_tokenizer(*original, dir);
  auto reread = load_tokenizer(dir);
  EXPECT_EQ(reread->kind(), "bpe");
  EXPECT_TRUE(reread->lowercases());
  EXPECT_EQ(reread->special_tokens().cls, "<s>");
  EXPECT_EQ(reread->special_tokens().sep, "</s>");
  const std::string text = "Who Founded the Normans? </s> In 911";
  EXPECT_EQ(reread->tokenize(text), original->tokenize(text));
  EXPECT_EQ(nlohmann::json::parse(read_file(dir / "special_tokens_map.json")).at("pad_token"), "<pad>");
}
