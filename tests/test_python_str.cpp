#include <cmath>
#include <limits>

#include "layerprobe/core/python_str.hpp"
#include "test_support.hpp"

using namespace layerprobe;

TEST(PythonStr, Utf8RoundTripAndInvalidBytes) {
  const std::string text = "caf\xC3\xA9 \xE2\x80\x94 \xF0\x9F\x98\x80";
  EXPECT_EQ(utf8_to_u32(text), U"caf\u00E9 \u2014 \U0001F600");
  EXPECT_EQ(u32_to_utf8(utf8_to_u32(text)), text);
  EXPECT_EQ(utf8_to_u32("a\xFF" "b"), U"a\uFFFDb");
}

TEST(PythonStr, LowerFollowsPythonSpecialCases) {
  EXPECT_EQ(python_lower(U"The CAT \u00C9T\u00C9"), U"the cat \u00E9t\u00E9");
  EXPECT_EQ(python_lower(U"\u0130"), U"i\u0307");  // 'İ'.lower() == 'i̇'
  // Final sigma: 'ΟΔΟΣ ΣΑ'.lower() == 'οδος σα'
  EXPECT_EQ(python_lower(U"\u039F\u0394\u039F\u03A3 \u03A3\u0391"), U"\u03BF\u03B4\u03BF\u03C2 \u03C3\u03B1");
}

TEST(PythonStr, SplitOnUnicodeWhitespace) {
  auto words = python_split(std::string_view("  a\xC2\xA0" "b\tc\xE2\x80\x83" "d\xE2\x80\x8B" "e  "));
  // NBSP and EM SPACE separate words; ZERO WIDTH SPACE does not.
  EXPECT_EQ(words, (std::vector<std::string>{"a", "b", "c", "d\xE2\x80\x8B" "e"}));
  EXPECT_TRUE(python_split(std::string_view(" \n\x0b ")).empty());
  EXPECT_EQ(join_words(std::vector<std::string>{"a", "b"}), "a b");
}

TEST(PythonStr, FloatReprMatchesPython) {
  EXPECT_EQ(python_float_repr(52.122408687068116), "52.122408687068116");
  EXPECT_EQ(python_float_repr(100.0), "100.0");
  EXPECT_EQ(python_float_repr(0.0), "0.0");
  EXPECT_EQ(python_float_repr(-0.0), "-0.0");
  EXPECT_EQ(python_float_repr(0.1), "0.1");
  EXPECT_EQ(python_float_repr(-2.5), "-2.5");
  EXPECT_EQ(python_float_repr(0.0001), "0.0001");
  EXPECT_EQ(python_float_repr(0.00001), "1e-05");
  EXPECT_EQ(python_float_repr(1.5e-7), "1.5e-07");
  EXPECT_EQ(python_float_repr(1234567890123456.0), "1234567890123456.0");
  EXPECT_EQ(python_float_repr(1e16), "1e+16");
  EXPECT_EQ(python_float_repr(1.25e300), "1.25e+300");
  EXPECT_EQ(python_float_repr(0.41237113402061853), "0.41237113402061853");
  EXPECT_EQ(python_float_repr(std::numeric_limits<double>::quiet_NaN()), "nan");
  EXPECT_EQ(python_float_repr(-std::numeric_limits<double>::infinity()), "-inf");
}
