// RoBERTa (transformers 2.5.1's modeling_roberta.py): BERT's module tree under
// "roberta." (src/model/bert/), with word and position embeddings padded at
// id 1 and positions counted from it, so a window's first token sits at
// position 2; one token type; run_squad passes no token type ids.
#include "layerprobe/model/family.hpp"
#include "model/bert/bert.hpp"

namespace layerprobe {

namespace {

constexpr int64_t kRobertaPaddingIdx = 1;

// BERT's entry (its modules, RobertaConfig's inherited defaults, checks,
// parameters and FLOPs) with RoBERTa's names, tokenizer, published shapes and inputs.
ModelFamily make_roberta_family() {
  ModelFamily f = bert_family();
  f.model_type = "roberta";
  f.base_prefix = "roberta";
  f.tokenizer = "bpe";
  f.example = "distilroberta-base";
  f.architecture = "RobertaForQuestionAnswering";
  auto shape = [](int64_t layers) {
    return nlohmann::json{{"model_type", "roberta"},    {"architectures", {"RobertaForMaskedLM"}},
                          {"hidden_size", 768},         {"num_hidden_layers", layers},
                          {"num_attention_heads", 12},  {"intermediate_size", 3072},
                          {"vocab_size", 50265},        {"max_position_embeddings", 514},
                          {"type_vocab_size", 1},       {"layer_norm_eps", 1e-5},
                          {"bos_token_id", 0},          {"eos_token_id", 2},
                          {"pad_token_id", 1}};
  };
  f.published = {{"roberta-base", shape(12)}, {"distilroberta-base", shape(6)}};
  f.takes_token_type_ids = false;
  f.position_offset = kRobertaPaddingIdx + 1;
  f.create = [](const ModelConfig& config) {
    return std::make_shared<BertForQuestionAnswering>(config, "roberta", BertPositions{true, kRobertaPaddingIdx});
  };
  return f;
}

}  // namespace

const ModelFamily& roberta_family() {
  static const ModelFamily family = make_roberta_family();
  return family;
}

}  // namespace layerprobe
