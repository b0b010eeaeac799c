// The tokenizer golden files' comparison, shared by the tokenizer test files:
// every line {"text", "pieces", "ids"[, "ids_with_special"]} of a JSONL file
// (gzip or plain) of the test data, against a tokenizer.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sstream>
#include <string>

#include "layerprobe/io/gzip.hpp"
#include "layerprobe/text/tokenizer.hpp"
#include "test_support.hpp"

namespace layerprobe::test_support {

struct GoldenComparison {
  size_t lines = 0, mismatches = 0;
};

// Reports the first few differing lines as failures; ids_with_special is
// compared when the file has it.
inline GoldenComparison compare_tokenizer_golden(const Tokenizer& tokenizer, const std::string& relative) {
  const auto path = shared_path(relative);
  std::istringstream in(relative.size() > 3 && relative.compare(relative.size() - 3, 3, ".gz") == 0
                            ? read_gzip_file(path)
                            : layerprobe::read_file(path));
  GoldenComparison result;
  for (std::string line; std::getline(in, line); ++result.lines) {
    const auto golden = nlohmann::json::parse(line);
    const std::string text = golden.at("text").get<std::string>();
    const auto pieces = tokenizer.tokenize(text);
    const auto ids = tokenizer.convert_tokens_to_ids(pieces);
    bool same = pieces == golden.at("pieces").get<std::vector<std::string>>() &&
                ids == golden.at("ids").get<std::vector<int64_t>>();
    if (golden.contains("ids_with_special"))
      same = same && tokenizer.encode_with_special_tokens(text) == golden["ids_with_special"].get<std::vector<int64_t>>();
    if (!same && ++result.mismatches <= 5)
      ADD_FAILURE() << relative << " line " << result.lines + 1 << ": " << golden["text"] << "\n  expected "
                    << golden["pieces"].dump() << "\n  got      " << nlohmann::json(pieces).dump();
  }
  return result;
}

}  // namespace layerprobe::test_support
