// tokenizer.json models, as the Rust library's models/{bpe,wordpiece,unigram,wordlevel}.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <queue>
#include <shared_mutex>
#include <unordered_map>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"
#include "text/tokenizer_json/components.hpp"

namespace layerprobe::tokenizer_json {

namespace {

constexpr size_t kModelCacheEntries = 1 << 18;
constexpr size_t kModelCacheMaxBytes = 256;  // the library's MAX_LENGTH

// Pieces already tokenised (the library's model caches): readers share the
// lock; a full cache stops growing.
class PieceCache {
 public:
  bool get(const std::string& piece, std::vector<Token>& out) const {
    std::shared_lock<std::shared_mutex> read(mutex_);
    auto hit = entries_.find(piece);
    if (hit == entries_.end()) return false;
    out.insert(out.end(), hit->second.begin(), hit->second.end());
    return true;
  }
  void put(const std::string& piece, std::vector<Token> tokens) const {
    if (piece.size() >= kModelCacheMaxBytes) return;
    std::unique_lock<std::shared_mutex> write(mutex_);
    if (entries_.size() < kModelCacheEntries) entries_.emplace(piece, std::move(tokens));
  }

 private:
  mutable std::shared_mutex mutex_;
  mutable std::unordered_map<std::string, std::vector<Token>> entries_;
};

// Open addressing over a power-of-two table: node-based hash maps cost most of
// the load time of a 128k-token vocabulary with 280k merges.
inline size_t table_size_for(size_t entries) {
  size_t size = 16;
  while (size < 2 * entries) size <<= 1;
  return size;
}

// token -> id (a repeated token keeps its last id, as serde's map does) and id -> token.
struct VocabMaps {
  std::vector<std::pair<std::string, int64_t>> entries;  // the file's, in order
  std::vector<uint32_t> slots;                           // entry index + 1; 0 = empty
  std::vector<const std::string*> tokens;                // by id; nullptr where no token has the id
  size_t distinct = 0;

  VocabMaps(std::vector<std::pair<std::string, int64_t>> vocab, const Where& where) : entries(std::move(vocab)) {
    if (entries.size() >= UINT32_MAX) throw Error(where() + ": too many tokens");
    int64_t max_id = -1;
    slots.assign(table_size_for(entries.size()), 0);
    for (size_t i = 0; i < entries.size(); ++i) {
      const auto& [token, id] = entries[i];
      if (id < 0) throw Error(where() + ": token '" + token + "' has the negative id " + std::to_string(id));
      max_id = std::max(max_id, id);
      uint32_t& slot = probe(token);
      if (slot == 0) ++distinct;
      slot = static_cast<uint32_t>(i + 1);
    }
    if (max_id >= static_cast<int64_t>(4 * entries.size() + 1024))
      throw Error(where() + ": the ids run up to " + std::to_string(max_id) + " for " + std::to_string(entries.size()) +
                  " tokens; a vocabulary numbers its tokens from 0");
    tokens.assign(static_cast<size_t>(max_id + 1), nullptr);
    for (uint32_t slot : slots)
      if (slot != 0) tokens[static_cast<size_t>(entries[slot - 1].second)] = &entries[slot - 1].first;
  }
  int64_t find(std::string_view token) const {
    const uint32_t slot = const_cast<VocabMaps*>(this)->probe(token);
    return slot == 0 ? -1 : entries[slot - 1].second;
  }
  const std::string* token(int64_t id) const {
    return id < 0 || id >= static_cast<int64_t>(tokens.size()) ? nullptr : tokens[static_cast<size_t>(id)];
  }
  size_t size() const { return distinct; }

 private:
  uint32_t& probe(std::string_view token) {
    const size_t mask = slots.size() - 1;
    for (size_t i = std::hash<std::string_view>()(token) & mask;; i = (i + 1) & mask) {
      if (slots[i] == 0 || entries[slots[i] - 1].first == token) return slots[i];
    }
  }
};

// (first, second) token ids -> (rank, merged id), by open addressing.
class MergeMap {
 public:
  struct Target {
    int32_t rank;
    int64_t id;
  };
  explicit MergeMap(size_t merges) : keys_(table_size_for(merges), kEmpty), targets_(keys_.size()) {}
  // A later duplicate takes the later rank, as collecting into a map does.
  void set(uint64_t key, Target target) {
    const size_t i = slot(key);
    keys_[i] = key;
    targets_[i] = target;
  }
  const Target* find(uint64_t key) const {
    const size_t i = slot(key);
    return keys_[i] == key ? &targets_[i] : nullptr;
  }

 private:
  static constexpr uint64_t kEmpty = UINT64_MAX;
  size_t slot(uint64_t key) const {
    const size_t mask = keys_.size() - 1;
    for (size_t i = (key * 0x9E3779B97F4A7C15ull) >> 20 & mask;; i = (i + 1) & mask)
      if (keys_[i] == kEmpty || keys_[i] == key) return i;
  }
  std::vector<uint64_t> keys_;
  std::vector<Target> targets_;
};

const json& model_vocab_check(const ModelTables& tables, const Where& where, bool list) {
  static const json none;
  if (!tables.has_vocab) throw Error(where.at("vocab")() + " is missing");
  if (tables.vocab_is_list != list)
    throw Error(where.at("vocab")() + (list ? " must be a list of [piece, score] pairs" : " must be an object {token: id}"));
  return none;
}

std::string optional_string(const json& config, const char* key, const Where& where) {
  const json* value = member(config, key, where);
  if (!value || value->is_null()) return "";
  if (!value->is_string()) throw Error(where.at(key)() + " must be a string or null");
  return value->get<std::string>();
}

// "<0x0A>": the byte-fallback token of a byte.
std::string byte_token(unsigned char byte) {
  char text[8];
  std::snprintf(text, sizeof text, "<0x%02X>", byte);
  return text;
}

// ---------------------------------------------------------------------------
// BPE (models/bpe/model.rs and word.rs).

class BpeModel : public Model {
 public:
  BpeModel(const json& config, ModelTables tables, const Where& where)
      : vocab_((model_vocab_check(tables, where, false), std::move(tables.vocab)), where.at("vocab")),
        merges_(tables.merges.size()) {
    unk_token_ = optional_string(config, "unk_token", where);
    prefix_ = optional_string(config, "continuing_subword_prefix", where);
    suffix_ = optional_string(config, "end_of_word_suffix", where);
    fuse_unk_ = bool_member(config, "fuse_unk", where, false);
    byte_fallback_ = bool_member(config, "byte_fallback", where, false);
    ignore_merges_ = bool_member(config, "ignore_merges", where, false);
    const json* dropout = member(config, "dropout", where);
    if (dropout && !dropout->is_null() && !(dropout->is_number() && dropout->get<double>() == 0.0))
      throw Error(where.at("dropout")() + " is " + dropout->dump() +
                  ": BPE dropout samples a different split on every call; layerprobe reads tokenizers with "
                  "\"dropout\": null only (set it to null)");
    if (!tables.has_merges) throw Error(where.at("merges")() + " is missing");
    if (!tables.merge_errors.empty())
      throw Error(where.at("merges")() + ": " + tables.merge_errors.front() +
                  "; a merge is \"A B\" (one space) or [\"A\", \"B\"]");
    if (tables.skipped_merge_count > 0) {
      std::string examples;
      for (const auto& example : tables.skipped_merges) examples += (examples.empty() ? "" : ", ") + example;
      spdlog::warn("{}: {} merges are not two tokens around one space ({}): they can never apply and are skipped",
                   where.at("merges")(), tables.skipped_merge_count, examples);
    }
    std::string merged;
    for (size_t rank = 0; rank < tables.merges.size(); ++rank) {
      const auto& [a, b] = tables.merges[rank];
      if (a.empty() && b.empty()) continue;  // a skipped line
      const int64_t a_id = merge_part(a, rank, where), b_id = merge_part(b, rank, where);
      const size_t prefix = std::min(prefix_.size(), b.size());
      merged.assign(a).append(b, prefix, std::string::npos);
      const int64_t new_id = merge_part(merged, rank, where);
      merges_.set(key(a_id, b_id), {static_cast<int32_t>(rank), new_id});
    }
    merge_count_ = tables.merges.size();
  }

  void tokenize(const std::string& piece, std::vector<Token>& out) const override {
    if (piece.empty()) return;
    if (ignore_merges_) {
      const int64_t id = vocab_.find(piece);
      if (id >= 0) {
        out.push_back({id, piece});
        return;
      }
    }
    if (cache_.get(piece, out)) return;
    std::vector<Token> tokens;
    for (int64_t id : merge_word(piece)) tokens.push_back({id, *vocab_.token(id)});
    out.insert(out.end(), tokens.begin(), tokens.end());
    cache_.put(piece, std::move(tokens));
  }
  int64_t token_to_id(const std::string& token) const override { return vocab_.find(token); }
  const std::string* id_to_token(int64_t id) const override { return vocab_.token(id); }
  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.size()); }
  std::string unk_token() const override { return unk_token_; }
  std::string describe() const override {
    return "BPE with " + std::to_string(vocab_.size()) + " tokens and " + std::to_string(merge_count_) + " merges";
  }

 private:
  using MergeTarget = MergeMap::Target;
  struct Symbol {
    int64_t id;
    int64_t prev, next;
    size_t length;
  };
  struct Candidate {
    size_t pos;
    int32_t rank;
    int64_t id;
    // The heap's top is the lowest rank, then the leftmost position.
    bool operator<(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : pos > other.pos;
    }
  };

  static uint64_t key(int64_t a, int64_t b) { return static_cast<uint64_t>(a) << 32 | static_cast<uint32_t>(b); }

  int64_t merge_part(const std::string& token, size_t rank, const Where& where) const {
    const int64_t id = vocab_.find(token);
    if (id < 0)
      throw Error(where.at("merges").at(rank)() + ": '" + token +
                  "' is not in the vocabulary (every part of a merge and its result must be)");
    if (id > UINT32_MAX) throw Error(where.at("vocab")() + ": id " + std::to_string(id) + " is too large");
    return id;
  }

  const MergeTarget* merge_of(int64_t a, int64_t b) const {
    return merges_.find(key(a, b));
  }

  int64_t unk_id() const {
    const int64_t id = vocab_.find(unk_token_);
    if (id < 0) throw Error("the BPE model's unk_token '" + unk_token_ + "' is not in its vocabulary");
    return id;
  }

  // BPE::merge_word: one symbol per character (with the prefix/suffix), byte
  // fallback or the unknown token for characters outside the vocabulary, then merge_all.
  std::vector<int64_t> merge_word(const std::string& word) const {
    std::vector<Symbol> symbols;
    bool have_unk = false;
    Symbol unk{};
    auto add = [&](int64_t id, size_t length) {
      const int64_t index = static_cast<int64_t>(symbols.size());
      symbols.push_back({id, index - 1, -1, length});
      if (index > 0) symbols[static_cast<size_t>(index - 1)].next = index;
    };
    std::string text;
    for (size_t i = 0; i < word.size();) {
      size_t length = 1;
      const auto lead = static_cast<unsigned char>(word[i]);
      if (lead >= 0xF0) length = 4;
      else if (lead >= 0xE0) length = 3;
      else if (lead >= 0xC0) length = 2;
      length = std::min(length, word.size() - i);
      const bool first = i == 0, last = i + length == word.size();
      text.assign(first ? "" : prefix_).append(word, i, length);
      if (last) text += suffix_;
      const int64_t id = vocab_.find(text);
      if (id >= 0) {
        if (have_unk) {
          add(unk.id, unk.length);
          have_unk = false;
        }
        add(id, length);
      } else if (!(byte_fallback_ && add_bytes(text, add, have_unk, unk)) && !unk_token_.empty()) {
        if (have_unk && fuse_unk_) {
          unk.length += length;
        } else {
          if (have_unk) add(unk.id, unk.length);
          unk = {unk_id(), 0, 0, length};
          have_unk = true;
        }
      }
      i += length;
    }
    if (have_unk) add(unk.id, unk.length);
    merge_all(symbols);
    std::vector<int64_t> ids;
    for (const auto& symbol : symbols)
      if (symbol.length > 0) ids.push_back(symbol.id);
    return ids;
  }

  // Byte fallback: every byte of `text` as <0xXX>, when the vocabulary has them all.
  template <typename Add>
  bool add_bytes(const std::string& text, Add& add, bool& have_unk, Symbol& unk) const {
    std::vector<int64_t> ids;
    for (unsigned char byte : text) {
      const int64_t id = vocab_.find(byte_token(byte));
      if (id < 0) return false;
      ids.push_back(id);
    }
    // The library adds the byte tokens without flushing a pending unknown token.
    (void)have_unk;
    (void)unk;
    for (int64_t id : ids) add(id, 1);
    return true;
  }

  // Word::merge_all: the lowest-ranked pair first (leftmost among equals),
  // each merge making new candidate pairs with its neighbours.
  void merge_all(std::vector<Symbol>& symbols) const {
    std::priority_queue<Candidate> queue;
    for (size_t i = 0; i + 1 < symbols.size(); ++i)
      if (const MergeTarget* m = merge_of(symbols[i].id, symbols[i + 1].id)) queue.push({i, m->rank, m->id});
    while (!queue.empty()) {
      const Candidate top = queue.top();
      queue.pop();
      Symbol& current = symbols[top.pos];
      if (current.length == 0 || current.next == -1) continue;
      const size_t next_pos = static_cast<size_t>(current.next);
      const Symbol right = symbols[next_pos];
      const MergeTarget* target = merge_of(current.id, right.id);
      if (!target || target->id != top.id) continue;
      current.id = top.id;
      current.length += right.length;
      current.next = right.next;
      symbols[next_pos].length = 0;
      if (right.next > -1 && static_cast<size_t>(right.next) < symbols.size())
        symbols[static_cast<size_t>(right.next)].prev = static_cast<int64_t>(top.pos);
      if (current.prev >= 0) {
        const size_t prev = static_cast<size_t>(current.prev);
        if (const MergeTarget* m = merge_of(symbols[prev].id, current.id)) queue.push({prev, m->rank, m->id});
      }
      if (current.next >= 0 && static_cast<size_t>(current.next) < symbols.size()) {
        if (const MergeTarget* m = merge_of(current.id, symbols[static_cast<size_t>(current.next)].id))
          queue.push({top.pos, m->rank, m->id});
      }
    }
    // Unlink the merged-away symbols in order: keep those with a length.
  }

  VocabMaps vocab_;
  MergeMap merges_;
  size_t merge_count_ = 0;
  std::string unk_token_, prefix_, suffix_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  PieceCache cache_;
};

// ---------------------------------------------------------------------------
// WordPiece (models/wordpiece/mod.rs).

class WordPieceModel : public Model {
 public:
  WordPieceModel(const json& config, ModelTables tables, const Where& where)
      : vocab_((model_vocab_check(tables, where, false), std::move(tables.vocab)), where.at("vocab")) {
    const std::string unk = "[UNK]", prefix = "##";
    unk_token_ = string_member(config, "unk_token", where, &unk);
    prefix_ = string_member(config, "continuing_subword_prefix", where, &prefix);
    const json* max_chars = member(config, "max_input_chars_per_word", where);
    if (max_chars && !max_chars->is_null()) {
      if (!max_chars->is_number_unsigned()) throw Error(where.at("max_input_chars_per_word")() + " must be a count");
      max_chars_ = max_chars->get<size_t>();
    }
  }

  void tokenize(const std::string& word, std::vector<Token>& out) const override {
    if (utf8_to_u32(word).size() > max_chars_) {
      out.push_back(unknown());
      return;
    }
    const size_t first = out.size();
    std::string candidate;
    for (size_t start = 0; start < word.size();) {
      size_t end = word.size();
      int64_t id = -1;
      while (start < end) {
        candidate.assign(start > 0 ? prefix_ : "").append(word, start, end - start);
        id = vocab_.find(candidate);
        if (id >= 0) break;
        do --end;  // back off one character
        while (end > start && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80);
      }
      if (id < 0) {
        out.resize(first);
        out.push_back(unknown());
        return;
      }
      out.push_back({id, candidate});
      start = end;
    }
  }
  int64_t token_to_id(const std::string& token) const override { return vocab_.find(token); }
  const std::string* id_to_token(int64_t id) const override { return vocab_.token(id); }
  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.size()); }
  std::string unk_token() const override { return unk_token_; }
  std::string describe() const override { return "WordPiece with " + std::to_string(vocab_.size()) + " tokens"; }

 private:
  Token unknown() const {
    const int64_t id = vocab_.find(unk_token_);
    if (id < 0) throw Error("the WordPiece model's unk_token '" + unk_token_ + "' is not in its vocabulary");
    return {id, unk_token_};
  }

  VocabMaps vocab_;
  std::string unk_token_, prefix_;
  size_t max_chars_ = 100;
};

// ---------------------------------------------------------------------------
// WordLevel (models/wordlevel): each piece whole, or the unknown token.

class WordLevelModel : public Model {
 public:
  WordLevelModel(const json& config, ModelTables tables, const Where& where)
      : vocab_((model_vocab_check(tables, where, false), std::move(tables.vocab)), where.at("vocab")) {
    const std::string unk = "<unk>";
    unk_token_ = string_member(config, "unk_token", where, &unk);
  }
  void tokenize(const std::string& piece, std::vector<Token>& out) const override {
    int64_t id = vocab_.find(piece);
    if (id >= 0) {
      out.push_back({id, piece});
      return;
    }
    id = vocab_.find(unk_token_);
    if (id < 0) throw Error("the WordLevel model's unk_token '" + unk_token_ + "' is not in its vocabulary");
    out.push_back({id, unk_token_});
  }
  int64_t token_to_id(const std::string& token) const override { return vocab_.find(token); }
  const std::string* id_to_token(int64_t id) const override { return vocab_.token(id); }
  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.size()); }
  std::string unk_token() const override { return unk_token_; }
  std::string describe() const override { return "WordLevel with " + std::to_string(vocab_.size()) + " tokens"; }

 private:
  VocabMaps vocab_;
  std::string unk_token_;
};

// ---------------------------------------------------------------------------
// Unigram (models/unigram/model.rs, encode_optimized).

class UnigramModel : public Model {
 public:
  UnigramModel(const json& config, ModelTables tables, const Where& where) {
    model_vocab_check(tables, where, true);
    pieces_ = std::move(tables.scored_vocab);
    if (pieces_.empty()) throw Error(where.at("vocab")() + " is empty (a Unigram model needs at least <unk>)");
    const json* unk = member(config, "unk_id", where);
    if (unk && !unk->is_null()) {
      if (!unk->is_number_unsigned() || unk->get<uint64_t>() >= pieces_.size())
        throw Error(where.at("unk_id")() + " must be the index of a piece (0.." + std::to_string(pieces_.size() - 1) + ")");
      unk_id_ = unk->get<int64_t>();
    }
    byte_fallback_ = bool_member(config, "byte_fallback", where, false);
    ids_.reserve(pieces_.size());
    min_score_ = pieces_.front().second;
    for (size_t id = 0; id < pieces_.size(); ++id) {
      ids_[pieces_[id].first] = static_cast<int64_t>(id);
      min_score_ = std::min(min_score_, pieces_[id].second);
    }
    for (const auto& [piece, id] : ids_) sorted_.emplace_back(piece, id);
    std::sort(sorted_.begin(), sorted_.end());
  }

  void tokenize(const std::string& sentence, std::vector<Token>& out) const override {
    if (sentence.empty()) return;
    if (cache_.get(sentence, out)) return;
    std::vector<Token> tokens;
    for (const auto& piece : encode(sentence)) {
      auto it = ids_.find(piece);
      if (it != ids_.end()) {
        tokens.push_back({it->second, piece});
        continue;
      }
      if (byte_fallback_ && add_bytes(piece, tokens)) continue;
      if (unk_id_ < 0) throw Error("the Unigram model met an unknown piece but has no unk_id");
      tokens.push_back({unk_id_, piece});
    }
    out.insert(out.end(), tokens.begin(), tokens.end());
    cache_.put(sentence, std::move(tokens));
  }
  int64_t token_to_id(const std::string& token) const override {
    auto it = ids_.find(token);
    return it == ids_.end() ? -1 : it->second;
  }
  const std::string* id_to_token(int64_t id) const override {
    return id >= 0 && id < static_cast<int64_t>(pieces_.size()) ? &pieces_[static_cast<size_t>(id)].first : nullptr;
  }
  int64_t vocab_size() const override { return static_cast<int64_t>(pieces_.size()); }
  std::string unk_token() const override { return unk_id_ >= 0 ? pieces_[static_cast<size_t>(unk_id_)].first : ""; }
  std::string describe() const override { return "Unigram with " + std::to_string(pieces_.size()) + " pieces"; }

 private:
  static constexpr double kUnkPenalty = 10.0;

  bool add_bytes(const std::string& piece, std::vector<Token>& tokens) const {
    std::vector<Token> bytes;
    for (unsigned char byte : piece) {
      auto it = ids_.find(byte_token(byte));
      if (it == ids_.end()) return false;
      bytes.push_back({it->second, it->first});
    }
    tokens.insert(tokens.end(), bytes.begin(), bytes.end());
    return true;
  }

  // The ids of the vocabulary pieces that begin `text` at `start` (the trie's common_prefix_search).
  template <typename Visit>
  void prefixes(const std::string& text, size_t start, Visit visit) const {
    size_t lo = 0, hi = sorted_.size();
    for (size_t length = 1; start + length <= text.size() && lo < hi; ++length) {
      const char c = text[start + length - 1];
      const size_t k = length - 1;
      auto char_at = [&](const std::string& s) { return s.size() > k ? static_cast<unsigned char>(s[k]) : -1; };
      const int target = static_cast<unsigned char>(c);
      lo = static_cast<size_t>(std::partition_point(sorted_.begin() + static_cast<long>(lo), sorted_.begin() + static_cast<long>(hi),
                                                    [&](const auto& e) { return char_at(e.first) < target; }) -
                               sorted_.begin());
      hi = static_cast<size_t>(std::partition_point(sorted_.begin() + static_cast<long>(lo), sorted_.begin() + static_cast<long>(hi),
                                                    [&](const auto& e) { return char_at(e.first) <= target; }) -
                               sorted_.begin());
      if (lo < hi && sorted_[lo].first.size() == length) visit(length, sorted_[lo].second);
    }
  }

  std::vector<std::string> encode(const std::string& sentence) const {
    struct Node {
      int64_t id = 0;
      double score = 0.0;
      int64_t starts_at = -1;
    };
    const size_t size = sentence.size();
    const double unk_score = min_score_ - kUnkPenalty;
    std::vector<Node> best(size + 1);
    for (size_t start = 0; start < size;) {
      const double till_here = best[start].score;
      bool single = false;
      size_t char_length = 1;
      const auto lead = static_cast<unsigned char>(sentence[start]);
      if (lead >= 0xF0) char_length = 4;
      else if (lead >= 0xE0) char_length = 3;
      else if (lead >= 0xC0) char_length = 2;
      char_length = std::min(char_length, size - start);
      prefixes(sentence, start, [&](size_t length, int64_t id) {
        Node& target = best[start + length];
        const double candidate = pieces_[static_cast<size_t>(id)].second + till_here;
        if (target.starts_at < 0 || candidate > target.score) target = {id, candidate, static_cast<int64_t>(start)};
        if (length == char_length) single = true;
      });
      if (!single) {
        Node& target = best[start + char_length];
        const double candidate = unk_score + till_here;
        if (target.starts_at < 0 || candidate > target.score) {
          if (unk_id_ < 0) throw Error("the Unigram model met an unknown character but has no unk_id");
          target = {unk_id_, candidate, static_cast<int64_t>(start)};
        }
      }
      start += char_length;
    }
    std::vector<std::string> results;
    std::vector<std::string> unknown;
    for (size_t end = size; end > 0;) {
      const Node& node = best[end];
      const size_t start = static_cast<size_t>(node.starts_at);
      if (node.id == unk_id_) {
        unknown.push_back(sentence.substr(start, end - start));
      } else {
        if (!unknown.empty()) {
          std::string fused;
          for (auto it = unknown.rbegin(); it != unknown.rend(); ++it) fused += *it;
          results.push_back(fused);
          unknown.clear();
        }
        results.push_back(sentence.substr(start, end - start));
      }
      end = start;
    }
    if (!unknown.empty()) {
      std::string fused;
      for (auto it = unknown.rbegin(); it != unknown.rend(); ++it) fused += *it;
      results.push_back(fused);
    }
    std::reverse(results.begin(), results.end());
    return results;
  }

  std::vector<std::pair<std::string, double>> pieces_;
  std::unordered_map<std::string, int64_t> ids_;
  std::vector<std::pair<std::string, int64_t>> sorted_;
  int64_t unk_id_ = -1;
  double min_score_ = 0.0;
  bool byte_fallback_ = false;
  PieceCache cache_;
};

}  // namespace

std::unique_ptr<Model> make_model(const json& config, ModelTables tables, const Where& where) {
  if (!config.is_object()) throw Error(where() + " must be an object");
  std::string type;
  const json* given = member(config, "type", where);
  if (given && !given->is_null()) {
    type = string_member(config, "type", where);
  } else if (tables.has_merges) {  // files written before models carried their type
    type = "BPE";
  } else if (member(config, "max_input_chars_per_word", where)) {
    type = "WordPiece";
  } else if (tables.vocab_is_list) {
    type = "Unigram";
  } else {
    type = "WordLevel";
  }
  if (type == "BPE") return std::make_unique<BpeModel>(config, std::move(tables), where);
  if (type == "WordPiece") return std::make_unique<WordPieceModel>(config, std::move(tables), where);
  if (type == "Unigram") return std::make_unique<UnigramModel>(config, std::move(tables), where);
  if (type == "WordLevel") return std::make_unique<WordLevelModel>(config, std::move(tables), where);
  throw Error(where() + ": model type '" + type + "' is not supported (supported: BPE, WordPiece, Unigram, WordLevel)");
}

}  // namespace layerprobe::tokenizer_json
