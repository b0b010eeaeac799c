// The first-run demo's data: a synthetic SQuAD 2.0 task that a tiny ALBERT
// learns in minutes on a CPU, and a SentencePiece vocabulary for any SQuAD
// files (the synthetic ones or the real ones).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace layerprobe {

// Paragraphs of templated facts about invented people ("Nora Silva was born in
// Tarville in 1953. Nora Silva works as a pilot at Kestrel Bank."), answerable
// questions whose answers are spans of them, and unanswerable ones that ask
// about a person or organisation absent from the paragraph or a fact the
// paragraph does not state.
struct SynthOptions {
  std::uint64_t seed = 42;
  int train_questions = 4000;
  int dev_questions = 1000;
  int people_per_paragraph = 2;
  int questions_per_paragraph = 4;
  int paragraphs_per_article = 10;
  double unanswerable_fraction = 0.5;
  // Chance that each of a person's four facts (birth, work, home, possession)
  // is stated; a person always has at least one.
  double fact_probability = 0.75;
  // Share of the unanswerable questions that ask about a person absent from
  // the paragraph (telling them apart takes matching names); the others ask
  // for a fact the paragraph does not state about a person it describes.
  // When one kind runs out in a paragraph the other is asked.
  double absent_person_share = 0.5;
};

// Error (exit code 2) naming the option when one is out of range.
void validate(const SynthOptions& options);

// One split in the official SQuAD 2.0 JSON layout. `split` prefixes the
// question ids and titles, and selects the split's own random stream, so
// "train" and "dev" differ under one seed. Dev-style splits (any but "train")
// give answerable questions 1-3 gold answers, as SQuAD's dev set has.
nlohmann::json generate_synthetic_squad(const std::string& split, int questions, const SynthOptions& options);

// Writes <output_dir>/train-v2.0.json and <output_dir>/dev-v2.0.json.
void write_synthetic_squad(const std::filesystem::path& output_dir, const SynthOptions& options);

// Trains an ALBERT-style SentencePiece unigram model (<pad>=0, <unk>=1,
// [CLS]=2, [SEP]=3, [MASK]=4, then ALBERT's punctuation pieces
// ( ) " - . – £ € at 5-12; no <s>/</s>) on the questions and contexts of
// `squad_files`, lower-cased and accent-stripped as AlbertTokenizer feeds
// text to SentencePiece, and writes it to `output_model` (e.g.
// models/demo/spiece.model). `vocab_size` is an upper bound: a small corpus
// yields fewer pieces. Deterministic for given inputs.
void train_squad_vocabulary(const std::vector<std::filesystem::path>& squad_files, int vocab_size,
                            const std::filesystem::path& output_model);

}  // namespace layerprobe
