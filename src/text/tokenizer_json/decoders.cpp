// tokenizer.json decoders (decoders/*.rs): tokens -> the text they stand for,
// which decoding shows as an answer (convert_tokens_to_string).
#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"
#include "text/byte_level_bpe.hpp"
#include "text/text_helpers.hpp"
#include "text/tokenizer_json/components.hpp"

namespace layerprobe::tokenizer_json {

namespace {

// ByteLevel: each token's characters as the bytes they stand for (a token with
// any other character as its own UTF-8), all bytes decoded lossily as one text.
class DecByteLevel : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string bytes;
    for (const auto& token : tokens) {
      std::string own;
      bool byte_level = true;
      for (char32_t c : utf8_to_u32(token)) {
        const int byte = char_to_byte(c);
        if (byte < 0) {
          byte_level = false;
          break;
        }
        own += static_cast<char>(byte);
      }
      bytes += byte_level ? own : token;
    }
    return {decode_utf8_replace(bytes)};
  }
};

class DecMetaspace : public Decoder {
 public:
  DecMetaspace(const json& config, const Where& where) {
    const std::string replacement = string_member(config, "replacement", where);
    const auto chars = utf8_to_u32(replacement);
    if (chars.size() != 1) throw Error(where.at("replacement")() + " must be one character");
    replacement_ = chars[0];
    const json* legacy = member(config, "add_prefix_space", where);
    const json* scheme = member(config, "prepend_scheme", where);
    prepend_ = !(legacy && legacy->is_boolean() && !legacy->get<bool>()) &&
               !(scheme && scheme->is_string() && scheme->get<std::string>() == "never");
  }
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::u32string out;
      for (char32_t c : utf8_to_u32(tokens[i])) {
        if (c != replacement_)
          out.push_back(c);
        else if (!(i == 0 && prepend_))
          out.push_back(U' ');
      }
      tokens[i] = u32_to_utf8(out);
    }
    return tokens;
  }

 private:
  char32_t replacement_ = U'\u2581';
  bool prepend_ = true;
};

class DecWordPiece : public Decoder {
 public:
  DecWordPiece(const json& config, const Where& where) {
    const std::string prefix = "##";
    prefix_ = string_member(config, "prefix", where, &prefix);
    cleanup_ = bool_member(config, "cleanup", where, true);
  }
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string& token = tokens[i];
      if (i != 0) {
        if (token.compare(0, prefix_.size(), prefix_) == 0)
          token.erase(0, prefix_.size());
        else
          token.insert(0, " ");
      }
      if (cleanup_) token = cleanup(token);
    }
    return tokens;
  }

  static std::string cleanup(std::string text) {
    static const std::pair<const char*, const char*> replacements[] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
        {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (const auto& [from, to] : replacements) text = replace_all(text, from, to);
    return text;
  }

 private:
  std::string prefix_;
  bool cleanup_ = true;
};

class DecBpe : public Decoder {
 public:
  DecBpe(const json& config, const Where& where) {
    const std::string suffix = "</w>";
    suffix_ = string_member(config, "suffix", where, &suffix);
  }
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = replace_all(tokens[i], suffix_, i + 1 == tokens.size() ? "" : " ");
    return tokens;
  }

 private:
  std::string suffix_;
};

// Runs of <0xXX> tokens become the text their bytes spell, or one U+FFFD per byte when invalid.
class DecByteFallback : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    auto flush = [&] {
      if (bytes.empty()) return;
      if (valid_utf8(bytes) == bytes)
        out.push_back(bytes);
      else
        for (size_t i = 0; i < bytes.size(); ++i) out.push_back("\xEF\xBF\xBD");
      bytes.clear();
    };
    for (auto& token : tokens) {
      int byte = -1;
      if (token.size() == 6 && token.compare(0, 3, "<0x") == 0 && token.back() == '>') {
        try {
          size_t used = 0;
          const int value = std::stoi(token.substr(3, 2), &used, 16);
          if (used == 2) byte = value;
        } catch (const std::exception&) {
        }
      }
      if (byte >= 0) {
        bytes += static_cast<char>(byte);
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    return out;
  }
};

class DecFuse : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string joined;
    for (const auto& token : tokens) joined += token;
    return {joined};
  }
};

class DecStrip : public Decoder {
 public:
  DecStrip(const json& config, const Where& where) {
    const std::string content = string_member(config, "content", where);
    const auto chars = utf8_to_u32(content);
    if (chars.size() != 1) throw Error(where.at("content")() + " must be one character");
    content_ = chars[0];
    for (const auto& [key, value] : {std::pair<const char*, size_t*>{"start", &start_}, {"stop", &stop_}}) {
      const json* count = member(config, key, where);
      if (!count || !count->is_number_unsigned()) throw Error(where.at(key)() + " must be a count");
      *value = count->get<size_t>();
    }
  }
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (auto& token : tokens) {
      const auto chars = utf8_to_u32(token);
      size_t start_cut = 0;
      for (size_t i = 0; i < chars.size() && i < start_; ++i) {
        if (chars[i] != content_) break;
        start_cut = i + 1;
      }
      size_t stop_cut = chars.size();
      for (size_t i = 0; i < stop_ && i < chars.size(); ++i) {
        const size_t index = chars.size() - i - 1;
        if (chars[index] != content_) break;
        stop_cut = index;
      }
      token = start_cut < stop_cut ? u32_to_utf8(std::u32string_view(chars).substr(start_cut, stop_cut - start_cut)) : "";
    }
    return tokens;
  }

 private:
  char32_t content_ = U' ';
  size_t start_ = 0, stop_ = 0;
};

class DecReplace : public Decoder {
 public:
  DecReplace(const json& config, const Where& where)
      : pattern_(pattern_member(config, where)), content_(string_member(config, "content", where)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (auto& token : tokens) token = pattern_.replace(token, content_);
    return tokens;
  }

 private:
  SplitPattern pattern_;
  std::string content_;
};

class DecSequence : public Decoder {
 public:
  DecSequence(const json& config, const Where& where) {
    const json* list = member(config, "decoders", where);
    if (!list || !list->is_array()) throw Error(where.at("decoders")() + " must be a list of decoders");
    for (size_t i = 0; i < list->size(); ++i)
      if (auto part = make_decoder((*list)[i], where.at("decoders").at(i))) parts_.push_back(std::move(part));
  }
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (const auto& part : parts_) tokens = part->decode_chain(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& config, const Where& where) {
  if (config.is_null()) return nullptr;
  if (!config.is_object()) throw Error(where() + " must be an object with a \"type\"");
  const std::string type = string_member(config, "type", where);
  if (type == "ByteLevel") return std::make_unique<DecByteLevel>();
  if (type == "Metaspace") return std::make_unique<DecMetaspace>(config, where);
  if (type == "WordPiece") return std::make_unique<DecWordPiece>(config, where);
  if (type == "BPEDecoder") return std::make_unique<DecBpe>(config, where);
  if (type == "ByteFallback") return std::make_unique<DecByteFallback>();
  if (type == "Fuse") return std::make_unique<DecFuse>();
  if (type == "Strip") return std::make_unique<DecStrip>(config, where);
  if (type == "Replace") return std::make_unique<DecReplace>(config, where);
  if (type == "Sequence") return std::make_unique<DecSequence>(config, where);
  throw Error(where() + ": decoder type '" + type +
              "' is not supported (supported: ByteLevel, Metaspace, WordPiece, BPEDecoder, ByteFallback, Fuse, "
              "Strip, Replace, Sequence)");
}

}  // namespace layerprobe::tokenizer_json
