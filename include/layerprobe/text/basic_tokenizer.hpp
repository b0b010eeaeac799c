// BERT's BasicTokenizer (transformers 2.5.1, tokenization_bert.py), which HF's
// SQuAD post-processing (get_final_text) runs on the original answer text.
#pragma once

#include <string>
#include <vector>

namespace layerprobe {

// BERT's _is_punctuation: every non-alphanumeric ASCII character, and the
// Unicode punctuation categories (P*).
bool is_bert_punctuation(char32_t c);

// Cleans control characters, isolates CJK ideographs, lowercases and strips
// accents (NFD, drop Mn) when `do_lower_case`, and splits off punctuation.
// Words in `never_split` (as they stand after cleaning) keep their case and
// accents: HF's never_split, which BertTokenizer sets to its special tokens.
std::vector<std::u32string> bert_basic_tokenize(const std::u32string& text, bool do_lower_case,
                                                const std::vector<std::u32string>& never_split = {});

}  // namespace layerprobe
