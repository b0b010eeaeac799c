// tokenizer.json post-processors (processors/*.rs), reduced to what they add:
// the special tokens and type ids around one sequence and around a pair.
#include "layerprobe/core/common.hpp"
#include "text/tokenizer_json/components.hpp"

namespace layerprobe::tokenizer_json {

bool Template::adds_tokens() const {
  for (const auto* items : {&single, &pair})
    for (const auto& item : *items)
      if (!item.is_sequence) return true;
  return false;
}

namespace {

TemplateItem sequence_item(int sequence, int64_t type_id) {
  TemplateItem item;
  item.is_sequence = true;
  item.sequence = sequence;
  item.type_id = type_id;
  return item;
}

TemplateItem special_item(const std::string& token, int64_t id, int64_t type_id) {
  TemplateItem item;
  item.ids = {id};
  item.tokens = {token};
  item.type_id = type_id;
  return item;
}

// ["</s>", 2]
std::pair<std::string, int64_t> token_and_id(const json& config, const char* key, const Where& where) {
  const json* value = member(config, key, where);
  if (!value || !value->is_array() || value->size() != 2 || !(*value)[0].is_string() ||
      !(*value)[1].is_number_unsigned())
    throw Error(where.at(key)() + " must be [\"token\", id]");
  return {(*value)[0].get<std::string>(), (*value)[1].get<int64_t>()};
}

int64_t type_id_of(const json& item, const Where& where) {
  const json* type = member(item, "type_id", where);
  if (!type || type->is_null()) return 0;
  if (!type->is_number_unsigned()) throw Error(where.at("type_id")() + " must be a type id (0, 1, ...)");
  return type->get<int64_t>();
}

std::vector<TemplateItem> template_items(const json& config, const char* key, const json& specials, const Where& where) {
  const json* list = member(config, key, where);
  if (!list || !list->is_array()) throw Error(where.at(key)() + " must be a list of pieces");
  std::vector<TemplateItem> items;
  for (size_t i = 0; i < list->size(); ++i) {
    const Where at = where.at(key).at(i);
    const json& piece = (*list)[i];
    if (!piece.is_object() || piece.size() != 1)
      throw Error(at() + " must be {\"Sequence\": {...}} or {\"SpecialToken\": {...}}");
    const std::string kind = piece.begin().key();
    const json& body = piece.begin().value();
    if (!body.is_object()) throw Error(at.at(kind)() + " must be an object");
    const std::string id = string_member(body, "id", at.at(kind));
    if (kind == "Sequence") {
      if (id != "A" && id != "B") throw Error(at.at(kind).at("id")() + " must be \"A\" or \"B\"");
      items.push_back(sequence_item(id == "A" ? 0 : 1, type_id_of(body, at.at(kind))));
    } else if (kind == "SpecialToken") {
      auto special = specials.find(id);
      if (special == specials.end() || !special->is_object())
        throw Error(at.at(kind)() + ": special token '" + id + "' is not in the template's special_tokens");
      TemplateItem item;
      const Where where_special = where.at("special_tokens").at(id);
      const json* ids = member(*special, "ids", where_special);
      const json* tokens = member(*special, "tokens", where_special);
      if (!ids || !ids->is_array() || !tokens || !tokens->is_array() || ids->size() != tokens->size())
        throw Error(where_special() + " must have \"ids\" and \"tokens\" lists of one length");
      for (size_t k = 0; k < ids->size(); ++k) {
        if (!(*ids)[k].is_number_unsigned() || !(*tokens)[k].is_string())
          throw Error(where_special() + ": ids must be numbers and tokens strings");
        item.ids.push_back((*ids)[k].get<int64_t>());
        item.tokens.push_back((*tokens)[k].get<std::string>());
      }
      item.type_id = type_id_of(body, at.at(kind));
      items.push_back(item);
    } else {
      throw Error(at() + ": piece kind '" + kind + "' is not Sequence or SpecialToken");
    }
  }
  return items;
}

Template template_processing(const json& config, const Where& where) {
  const json* specials = member(config, "special_tokens", where);
  static const json none = json::object();
  if (specials && !specials->is_object() && !specials->is_null())
    throw Error(where.at("special_tokens")() + " must be an object");
  const json& table = specials && specials->is_object() ? *specials : none;
  Template result;
  result.single = template_items(config, "single", table, where);
  result.pair = template_items(config, "pair", table, where);
  return result;
}

// RobertaProcessing: <s> A </s> and <s> A </s></s> B </s>, every type id 0.
Template roberta_processing(const json& config, const Where& where) {
  const auto [sep, sep_id] = token_and_id(config, "sep", where);
  const auto [cls, cls_id] = token_and_id(config, "cls", where);
  Template result;
  result.single = {special_item(cls, cls_id, 0), sequence_item(0, 0), special_item(sep, sep_id, 0)};
  result.pair = {special_item(cls, cls_id, 0), sequence_item(0, 0), special_item(sep, sep_id, 0),
                 special_item(sep, sep_id, 0), sequence_item(1, 0), special_item(sep, sep_id, 0)};
  result.cls = cls;
  result.sep = sep;
  return result;
}

// BertProcessing: [CLS] A [SEP] and [CLS] A [SEP] B [SEP], B's part type 1.
Template bert_processing(const json& config, const Where& where) {
  const auto [sep, sep_id] = token_and_id(config, "sep", where);
  const auto [cls, cls_id] = token_and_id(config, "cls", where);
  Template result;
  result.single = {special_item(cls, cls_id, 0), sequence_item(0, 0), special_item(sep, sep_id, 0)};
  result.pair = {special_item(cls, cls_id, 0), sequence_item(0, 0), special_item(sep, sep_id, 0),
                 sequence_item(1, 1), special_item(sep, sep_id, 1)};
  result.cls = cls;
  result.sep = sep;
  return result;
}

// No special tokens; the pair's B part takes type 1 (Tokenizer::encode_pair's default).
Template plain() {
  Template result;
  result.single = {sequence_item(0, 0)};
  result.pair = {sequence_item(0, 0), sequence_item(1, 1)};
  return result;
}

}  // namespace

Template make_template(const json& config, const Where& where) {
  if (config.is_null()) return plain();
  if (!config.is_object()) throw Error(where() + " must be an object with a \"type\"");
  const std::string type = string_member(config, "type", where);
  if (type == "TemplateProcessing") return template_processing(config, where);
  if (type == "RobertaProcessing") return roberta_processing(config, where);
  if (type == "BertProcessing") return bert_processing(config, where);
  if (type == "ByteLevel") return plain();  // offsets only
  if (type == "Sequence") {
    const json* list = member(config, "processors", where);
    if (!list || !list->is_array()) throw Error(where.at("processors")() + " must be a list of post-processors");
    Template result = plain();
    size_t adding = 0;
    for (size_t i = 0; i < list->size(); ++i) {
      Template part = make_template((*list)[i], where.at("processors").at(i));
      if (!part.adds_tokens()) continue;
      if (++adding > 1)
        throw Error(where() + ": more than one post-processor of the Sequence adds special tokens; layerprobe "
                              "reads sequences with one (e.g. ByteLevel then TemplateProcessing)");
      result = std::move(part);
    }
    return result;
  }
  throw Error(where() + ": post-processor type '" + type +
              "' is not supported (supported: TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, "
              "Sequence)");
}

}  // namespace layerprobe::tokenizer_json
