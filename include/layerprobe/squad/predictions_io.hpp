// Prediction files: HF run_squad's predictions.json, nbest_predictions.json and
// null_odds.json, and the original study's pred_layer_<L>.csv (Id,Predicted).
#pragma once

#include <filesystem>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "layerprobe/squad/prediction.hpp"

namespace layerprobe {

// Question id -> value in file order, with Python dict semantics for a
// repeated id (first position, last value).
template <typename Value>
struct OrderedMap {
  std::vector<std::pair<std::string, Value>> items;
  std::unordered_map<std::string, size_t> index;

  void set(const std::string& key, Value value) {
    auto [it, inserted] = index.emplace(key, items.size());
    if (inserted) items.emplace_back(key, std::move(value));
    else items[it->second].second = std::move(value);
  }
  const Value* find(const std::string& key) const {
    auto it = index.find(key);
    return it == index.end() ? nullptr : &items[it->second].second;
  }
  size_t size() const { return items.size(); }
};

using PredictionMap = OrderedMap<std::string>;  // id -> answer text ("" = no answer)
using NaProbMap = OrderedMap<double>;           // id -> no-answer probability / null odds

// Writers: keys in prediction order, floats round-trip, JSON laid out as HF's
// json.dumps(indent=4) (non-ASCII escaped). Written atomically.
void write_predictions_json(const std::filesystem::path& path, const std::vector<QuestionPrediction>& predictions);
void write_nbest_json(const std::filesystem::path& path, const std::vector<QuestionPrediction>& predictions);
void write_null_odds_json(const std::filesystem::path& path, const std::vector<QuestionPrediction>& predictions);
// `Id,Predicted` rows, quoted as Python's csv module does (QUOTE_MINIMAL).
void write_predictions_csv(const std::filesystem::path& path, const std::vector<QuestionPrediction>& predictions);

// Readers; Error naming the file and the offending id or line.
PredictionMap load_predictions_json(const std::filesystem::path& path);  // {"id": "answer", ...}
PredictionMap load_predictions_csv(const std::filesystem::path& path);   // Id,Predicted
NaProbMap load_na_probs(const std::filesystem::path& path);              // {"id": number, ...}

// One CSV field as Python's csv.writer writes it: quoted when it holds a
// comma, quote, CR or LF, with embedded quotes doubled.
std::string csv_field(const std::string& field);

}  // namespace layerprobe
