#include "layerprobe/squad/predictions_io.hpp"

#include <unordered_map>

#include <nlohmann/json.hpp>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

namespace fs = std::filesystem;
using ordered_json = nlohmann::ordered_json;

namespace {

// HF writes json.dumps(obj, indent=4) + "\n"; Python escapes non-ASCII.
void write_json(const fs::path& path, const ordered_json& value) {
  write_file_atomically(path, value.dump(4, ' ', true) + "\n");
}

// A flat JSON object {"id": value} read straight into an OrderedMap, in file
// order. (ordered_json looks keys up linearly: quadratic over 100k questions.)
// Values are kept as JSON for the caller to check; nested ones are refused.
class FlatObjectReader : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit FlatObjectReader(const fs::path& path) : path_(path) {}
  OrderedMap<nlohmann::json> entries;

  bool null() override { return value(nullptr); }
  bool boolean(bool v) override { return value(v); }
  bool number_integer(number_integer_t v) override { return value(v); }
  bool number_unsigned(number_unsigned_t v) override { return value(v); }
  bool number_float(number_float_t v, const string_t&) override { return value(v); }
  bool string(string_t& v) override { return value(v); }
  bool binary(binary_t&) override { return value(nullptr); }
  bool start_object(std::size_t) override { return nest("an object"); }
  bool key(string_t& k) override {
    key_ = k;
    return true;
  }
  bool end_object() override {
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override { return nest("a list"); }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    throw Error("'" + path_.string() + "' is not valid JSON: " + e.what());
  }

 private:
  bool value(nlohmann::json v) {
    if (depth_ != 1) throw Error("'" + path_.string() + "' must hold a JSON object {\"question id\": ...}");
    entries.set(key_, std::move(v));
    return true;
  }
  bool nest(const char* what) {
    if (depth_ == 0 && std::string(what) == "an object") {
      ++depth_;
      return true;
    }
    if (depth_ == 0) throw Error("'" + path_.string() + "' must hold a JSON object {\"question id\": ...}");
    throw Error("'" + path_.string() + "': the value for question '" + key_ + "' is " + what +
                "; expected a string or a number");
  }

  fs::path path_;
  std::string key_;
  int depth_ = 0;
};

OrderedMap<nlohmann::json> parse_json_object(const fs::path& path) {
  const std::string text = read_file(path);
  FlatObjectReader reader(path);
  nlohmann::json::sax_parse(text, &reader);
  return std::move(reader.entries);
}

}  // namespace

namespace {
// {id: value} in first-seen order with the last value of a repeated id (a
// Python dict's behaviour), built without ordered_json's linear key lookup,
// which made writing 100k predictions quadratic.
template <typename Value>
ordered_json object_by_id(const std::vector<QuestionPrediction>& predictions, Value value) {
  std::unordered_map<std::string, size_t> last;
  for (size_t i = 0; i < predictions.size(); ++i) last[predictions[i].qas_id] = i;
  ordered_json out = ordered_json::object();
  auto& members = out.get_ref<ordered_json::object_t&>();
  for (const auto& p : predictions) {
    auto it = last.find(p.qas_id);
    if (it == last.end()) continue;  // a repeated id, already written
    members.emplace_back(p.qas_id, value(predictions[it->second]));
    last.erase(it);
  }
  return out;
}
}  // namespace

void write_predictions_json(const fs::path& path, const std::vector<QuestionPrediction>& predictions) {
  write_json(path, object_by_id(predictions, [](const QuestionPrediction& p) { return ordered_json(p.text); }));
}

void write_nbest_json(const fs::path& path, const std::vector<QuestionPrediction>& predictions) {
  write_json(path, object_by_id(predictions, [](const QuestionPrediction& p) {
               ordered_json entries = ordered_json::array();
               for (const auto& e : p.nbest)
                 entries.push_back({{"text", e.text}, {"probability", e.probability}, {"start_logit", e.start_logit},
                                    {"end_logit", e.end_logit}});
               return entries;
             }));
}

void write_null_odds_json(const fs::path& path, const std::vector<QuestionPrediction>& predictions) {
  write_json(path, object_by_id(predictions, [](const QuestionPrediction& p) { return ordered_json(p.null_odds); }));
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
  for (const auto& [id, answer] : parse_json_object(path).items) {
    if (!answer.is_string())
      throw Error("'" + path.string() + "': the prediction for question '" + id + "' is " + answer.dump() +
                  "; predictions must be strings (\"\" for no answer)");
    predictions.set(id, answer.get<std::string>());
  }
  return predictions;
}

NaProbMap load_na_probs(const fs::path& path) {
  NaProbMap probs;
  for (const auto& [id, value] : parse_json_object(path).items) {
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
