// Reads a tokenizer.json in one streaming pass: a JSON tree of everything but
// model.vocab and model.merges, which go straight into flat tables (they are
// most of the file, and a tree of them would cost most of the load time).
#include "text/tokenizer_json/reader.hpp"

#include "layerprobe/core/common.hpp"
#include "text/json_file.hpp"

namespace layerprobe::tokenizer_json {

namespace {

class TokenizerJsonSax : public nlohmann::json_sax<json> {
 public:
  explicit TokenizerJsonSax(const std::string& text) : text_(text) {}

  json root;
  ModelTables tables;
  std::string problem;

  bool null() override { return value(json(nullptr), "null"); }
  bool boolean(bool v) override { return value(json(v), v ? "true" : "false"); }
  bool number_integer(number_integer_t v) override {
    if (mode_ == Mode::vocab_map) return vocab_entry(v);
    if (mode_ == Mode::vocab_list) return score(static_cast<double>(v));
    return value(json(v), "a number");
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (mode_ == Mode::vocab_map)
      return vocab_entry(v > static_cast<number_unsigned_t>(INT64_MAX) ? -1 : static_cast<int64_t>(v));
    if (mode_ == Mode::vocab_list) return score(static_cast<double>(v));
    return value(json(v), "a number");
  }
  bool number_float(number_float_t v, const string_t&) override {
    if (mode_ == Mode::vocab_list) return score(v);
    return value(json(v), "a number");
  }
  bool string(string_t& v) override {
    switch (mode_) {
      case Mode::vocab_list:
        if (depth_ != 1 || have_piece_) return fail("model.vocab: each entry is [\"piece\", score]");
        piece_ = std::move(v);
        have_piece_ = true;
        return true;
      case Mode::merges:
        if (depth_ == 0) return legacy_merge(v);
        if (depth_ != 1) return fail("model.merges: a merge is \"A B\" or [\"A\", \"B\"]");
        parts_.push_back(std::move(v));
        return true;
      case Mode::vocab_map:
        return fail("model.vocab: token '" + key_ + "' has a string for its id; ids are integers");
      case Mode::dom:
        break;
    }
    return value(json(std::move(v)), "a string");
  }
  bool binary(binary_t&) override { return fail("binary values are not JSON"); }

  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }

  bool start_object(std::size_t) override {
    if (mode_ != Mode::dom) return fail(mode_name() + ": unexpected object");
    if (at_model_key("vocab")) {
      mode_ = Mode::vocab_map;
      tables.has_vocab = true;
      return true;
    }
    return open(json::object());
  }
  bool end_object() override {
    if (mode_ == Mode::vocab_map) {
      mode_ = Mode::dom;
      return true;
    }
    stack_.pop_back();
    keys_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    if (mode_ == Mode::vocab_list || mode_ == Mode::merges) {
      if (++depth_ > 1) return fail(mode_name() + ": nested lists");
      have_piece_ = have_score_ = false;
      parts_.clear();
      return true;
    }
    if (mode_ == Mode::vocab_map) return fail("model.vocab: token '" + key_ + "' has a list for its id");
    if (at_model_key("vocab")) {
      mode_ = Mode::vocab_list;
      tables.has_vocab = tables.vocab_is_list = true;
      depth_ = 0;
      return true;
    }
    if (at_model_key("merges")) {
      mode_ = Mode::merges;
      tables.has_merges = true;
      depth_ = 0;
      return true;
    }
    return open(json::array());
  }
  bool end_array() override {
    if (mode_ == Mode::vocab_list || mode_ == Mode::merges) {
      if (depth_ == 0) {
        mode_ = Mode::dom;
        return true;
      }
      --depth_;
      if (mode_ == Mode::vocab_list) {
        if (!have_piece_ || !have_score_) return fail("model.vocab: each entry is [\"piece\", score]");
        tables.scored_vocab.emplace_back(std::move(piece_), score_);
        return true;
      }
      if (parts_.size() != 2) return merge_error("a merge is [\"A\", \"B\"], two strings");
      tables.merges.emplace_back(std::move(parts_[0]), std::move(parts_[1]));
      return true;
    }
    stack_.pop_back();
    keys_.pop_back();
    return true;
  }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) override {
    std::string what = e.what();
    if (auto colon = what.find(": "); colon != std::string::npos && what.find("parse error") < colon)
      what = what.substr(colon + 2);
    problem = "not valid JSON at " + text_position(text_, std::max<size_t>(position, 1)) + ": " + what;
    return false;
  }

 private:
  enum class Mode { dom, vocab_map, vocab_list, merges };

  std::string mode_name() const {
    return mode_ == Mode::merges ? "model.merges" : "model.vocab";
  }

  bool fail(const std::string& why) {
    problem = why;
    return false;
  }

  // Inside the top-level object's "model" object, at its key `name`.
  bool at_model_key(const char* name) const {
    return stack_.size() == 2 && keys_[1] == "model" && stack_.back()->is_object() && key_ == name;
  }

  json* insert(json v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    json& parent = *stack_.back();
    if (parent.is_object()) {
      json& slot = parent[key_];
      slot = std::move(v);
      return &slot;
    }
    parent.push_back(std::move(v));
    return &parent.back();
  }

  bool open(json container) {
    const std::string reached_by = !stack_.empty() && stack_.back()->is_object() ? key_ : "";
    stack_.push_back(insert(std::move(container)));
    keys_.push_back(reached_by);
    return true;
  }

  bool value(json v, const char* what) {
    if (mode_ != Mode::dom) return fail(mode_name() + ": unexpected " + what);
    insert(std::move(v));
    return true;
  }

  bool vocab_entry(int64_t id) {
    if (id < 0) return fail("model.vocab: token '" + key_ + "' has id " + std::to_string(id));
    tables.vocab.emplace_back(std::move(key_), id);
    return true;
  }

  bool score(double v) {
    if (depth_ != 1 || !have_piece_ || have_score_) return fail("model.vocab: each entry is [\"piece\", score]");
    score_ = v;
    have_score_ = true;
    return true;
  }

  // "A B" (lines beginning "#version" are skipped, as merges.txt's header).
  // A line that is not two tokens around one space (Llama-2's files have
  // "   " and "▁  ", merges of tokens made of spaces) can never apply: it keeps
  // its rank and is skipped, as the JS port skips it (the Rust library refuses
  // the file).
  bool legacy_merge(const std::string& line) {
    if (line.compare(0, 8, "#version") == 0) return true;
    const size_t space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string::npos) {
      if (tables.skipped_merges.size() < 3)
        tables.skipped_merges.push_back("'" + line + "' (merge " + std::to_string(tables.merges.size()) + ")");
      ++tables.skipped_merge_count;
      tables.merges.emplace_back();
      return true;
    }
    tables.merges.emplace_back(line.substr(0, space), line.substr(space + 1));
    return true;
  }

  bool merge_error(const std::string& why) {
    if (tables.merge_errors.size() < 3)
      tables.merge_errors.push_back("merge " + std::to_string(tables.merges.size()) + ": " + why);
    tables.merges.emplace_back();  // keeps the ranks of those that follow
    return true;
  }

  const std::string& text_;
  std::vector<json*> stack_;
  std::vector<std::string> keys_;
  std::string key_;
  Mode mode_ = Mode::dom;
  int depth_ = 0;
  std::string piece_;
  double score_ = 0.0;
  bool have_piece_ = false, have_score_ = false;
  std::vector<std::string> parts_;
};

}  // namespace

ParsedTokenizerJson read_tokenizer_json(const std::filesystem::path& path) {
  const std::string text = read_file(path);
  TokenizerJsonSax sax(text);
  const std::string fix = "; a tokenizer.json is what the tokenizers library (or save_pretrained of a fast tokenizer) "
                          "writes";
  if (!nlohmann::json::sax_parse(text, &sax)) throw Error(path.string() + ": " + sax.problem + fix);
  if (!sax.root.is_object())
    throw Error(path.string() + ": the top level is " + std::string(sax.root.type_name()) + ", not an object" + fix);
  return {std::move(sax.root), std::move(sax.tables)};
}

}  // namespace layerprobe::tokenizer_json
