#include "layerprobe/predictions_io.hpp"

#include <nlohmann/json.hpp>

#include "layerprobe/common.hpp"

namespace layerprobe {

namespace fs = std::filesystem;
using ordered_json = nlohmann::ordered_json;

namespace {

// HF writes json.dumps(obj, indent=4) + "\n"; Python escapes non-ASCII.
void write_json(const fs::path& path, const ordered_json& value) {
  write_file_atomically(path, value.dump(4, ' ', true) + "\n");
}

ordered_json parse_json_object(const fs::path& path) {
  ordered_json value;
  try {
    value = ordered_json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error("'" + path.string() + "' is not valid JSON: " + e.what());
  }
  if (!value.is_object()) throw Error("'" + path.string() + "' must hold a JSON object {\"question id\": ...}");
  return value;
}

}  // namespace

void write_predictions_json(const fs::path& path, const std::vector<QuestionPrediction>& predictions) {
  ordered_json out = ordered_json::object();
  for (const auto& p : predictions) out[p.qas_id] = p.text;
  write_json(path, out);
}

void write_nbest_json(const fs::path& path, const std::vector<QuestionPrediction>& predictions) {
  ordered_json out = ordered_json::object();
  for (const auto& p : predictions) {
    ordered_json entries = ordered_json::array();
    for (const auto& e : p.nbest)
      entries.push_back({{"text", e.text}, {"probability", e.probability}, {"start_logit", e.start_logit},
                         {"end_logit", e.end_logit}});
    out[p.qas_id] = std::move(entries);
  }
  write_json(path, out);
}

void write_null_odds_json(const fs::path& path, const std::vector<QuestionPrediction>& predictions) {
  ordered_json out = ordered_json::object();
  for (const auto& p : predictions) out[p.qas_id] = p.null_odds;
  write_json(path, out);
}

std::string csv_field(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string quoted = "\"";
  for (char c : field) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

void write_predictions_csv(const fs::path& path, const std::vector<QuestionPrediction>& predictions) {
  std::string out = "Id,Predicted\n";
  for (const auto& p : predictions) out += csv_field(p.qas_id) + "," + csv_field(p.text) + "\n";
  write_file_atomically(path, out);
}

PredictionMap load_predictions_json(const fs::path& path) {
  PredictionMap predictions;
  const ordered_json object = parse_json_object(path);
  for (const auto& [id, answer] : object.items()) {
    if (!answer.is_string())
      throw Error("'" + path.string() + "': the prediction for question '" + id + "' is " + answer.dump() +
                  "; predictions must be strings (\"\" for no answer)");
    predictions.set(id, answer.get<std::string>());
  }
  return predictions;
}

NaProbMap load_na_probs(const fs::path& path) {
  NaProbMap probs;
  const ordered_json object = parse_json_object(path);
  for (const auto& [id, value] : object.items()) {
    if (!value.is_number())
      throw Error("'" + path.string() + "': the no-answer probability of question '" + id + "' is " + value.dump() +
                  "; it must be a number");
    probs.set(id, value.get<double>());
  }
  return probs;
}

namespace {

// Splits CSV text into records of fields (quotes may span lines, "" is a quote).
std::vector<std::vector<std::string>> parse_csv(const std::string& text, const fs::path& path) {
  std::vector<std::vector<std::string>> records;
  std::vector<std::string> record;
  std::string field;
  bool in_quotes = false;
  size_t line = 1;
  auto end_record = [&] {
    record.push_back(std::move(field));
    field.clear();
    records.push_back(std::move(record));
    record.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_quotes) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        in_quotes = false;
      } else {
        if (c == '\n') ++line;
        field += c;
      }
    } else if (c == '"') {
      in_quotes = true;
    } else if (c == ',') {
      record.push_back(std::move(field));
      field.clear();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      end_record();
      ++line;
    } else {
      field += c;
    }
  }
  if (in_quotes) throw Error("'" + path.string() + "' line " + std::to_string(line) + ": unterminated quoted field");
  if (!field.empty() || !record.empty()) end_record();
  return records;
}

}  // namespace

PredictionMap load_predictions_csv(const fs::path& path) {
  auto records = parse_csv(read_file(path), path);
  if (records.empty() || records[0] != std::vector<std::string>{"Id", "Predicted"})
    throw Error("'" + path.string() + "' must start with the header line 'Id,Predicted'");
  PredictionMap predictions;
  for (size_t r = 1; r < records.size(); ++r) {
    if (records[r].size() != 2)
      throw Error("'" + path.string() + "' record " + std::to_string(r + 1) + " has " +
                  std::to_string(records[r].size()) + " fields; expected Id,Predicted");
    predictions.set(records[r][0], records[r][1]);
  }
  return predictions;
}

}  // namespace layerprobe
