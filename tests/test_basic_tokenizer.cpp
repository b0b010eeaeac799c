#include "layerprobe/text/basic_tokenizer.hpp"
#include "layerprobe/core/python_str.hpp"
#include "test_support.hpp"

using namespace layerprobe;

namespace {
std::string tokenize(const std::string& text, bool lower) { return u32_to_utf8(join_words(bert_basic_tokenize(utf8_to_u32(text), lower))); }
}  // namespace

TEST(BasicTokenizer, SplitsPunctuationAndLowercases) {
  EXPECT_EQ(tokenize("Steve Smith's (1066) $5^2", true), "steve smith ' s ( 1066 ) $ 5 ^ 2");
  EXPECT_EQ(tokenize("Steve Smith's", false), "Steve Smith ' s");
}

TEST(BasicTokenizer, StripsAccentsOnlyWhenLowercasing) {
  EXPECT_EQ(tokenize("Caf\xC3\xA9 Zo\xC3\xAB", true), "cafe zoe");
  EXPECT_EQ(tokenize("Caf\xC3\xA9", false), "Caf\xC3\xA9");
  // A word of nothing but a combining mark disappears.
  EXPECT_EQ(tokenize("a \xCC\x81 b", true), "a b");
}

TEST(BasicTokenizer, CleansControlsAndIsolatesCjk) {
  // U+200B is a format character (Cf): dropped; NBSP (Zs) becomes a space;
  // U+00AD soft hyphen (Cf) dropped; CJK ideographs stand alone.
  EXPECT_EQ(tokenize("a\xE2\x80\x8B" "b\xC2\xA0" "c\xC2\xAD" "d \xE4\xB8\xAD\xE5\x9B\xBD" "x", true),
            "ab cd \xE4\xB8\xAD \xE5\x9B\xBD x");
  EXPECT_EQ(tokenize("tab\there\r\nnew", true), "tab here new");
  // Unicode punctuation (em dash, Pd) splits; a currency sign (Sc) does not.
  EXPECT_EQ(tokenize("a\xE2\x80\x94" "b \xE2\x82\xAC" "5", true), "a \xE2\x80\x94 b \xE2\x82\xAC" "5");
}
