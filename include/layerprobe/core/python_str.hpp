// Python 3 `str` semantics on UTF-8 text, for code that must reproduce a
// Python script's string handling exactly: code-point indexing, str.lower(),
// str.split()/strip() whitespace, and repr() of floats.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace layerprobe {

// UTF-8 <-> code points. Invalid UTF-8 bytes decode to U+FFFD.
std::u32string utf8_to_u32(std::string_view text);
std::string u32_to_utf8(std::u32string_view text);

// Python's str.isspace() for one code point (the set str.split() splits on).
bool python_isspace(char32_t c);

// str.lower(): full Unicode lowercase mapping, including U+0130 -> "i\u0307"
// and the final-sigma rule.
std::u32string python_lower(std::u32string_view text);

// str.split() with no argument: runs of Unicode whitespace separate words,
// leading/trailing whitespace yields no empty words.
std::vector<std::u32string> python_split(std::u32string_view text);
std::vector<std::string> python_split(std::string_view utf8_text);

// " ".join(words)
std::u32string join_words(const std::vector<std::u32string>& words);
std::string join_words(const std::vector<std::string>& words);

// repr(float) as Python 3 prints it: shortest round-trip digits, fixed
// notation ("52.1", "100.0") for 1e-4 <= |x| < 1e16, else "1e-05"/"1.5e+16";
// "nan", "inf", "-inf" for non-finite values.
std::string python_float_repr(double value);

}  // namespace layerprobe
