// Regular expressions with Oniguruma, the engine (and its default syntax,
// Ruby-like with Unicode properties) the tokenizers library compiles
// tokenizer.json patterns with. Private to src/text/.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace layerprobe {

class OnigRegex {
 public:
  // Error quoting the pattern and Oniguruma's message when it does not compile.
  explicit OnigRegex(const std::string& pattern);
  ~OnigRegex();
  OnigRegex(const OnigRegex&) = delete;
  OnigRegex& operator=(const OnigRegex&) = delete;

  // Every match in valid UTF-8 `text`, left to right, as byte ranges: the onig
  // crate's find_iter (an empty match right where the previous match ended is
  // skipped by one character). Thread-safe.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* regex_ = nullptr;  // OnigRegex (regex_t*)
};

// `text` with every regular-expression metacharacter escaped (the regex
// crate's escape(), which the tokenizers library applies to string patterns).
std::string regex_escape(const std::string& text);

}  // namespace layerprobe
