// XLM-RoBERTa (transformers 4.57.5's modeling_xlm_roberta.py): RoBERTa's module
// tree (BERT's, src/model/bert/) under "roberta.", positions counted from the
// padding id 1, and, as 4.x's XLMRobertaForQuestionAnswering builds it, no
// pooler. One token type; run_squad 4.57.5 passes token_type_ids (its list of
// model types that take none does not name xlm-roberta), all 0 for its
// tokenizer's pairs. The tokenizer is XLMRobertaTokenizer (sentencepiece.bpe.model,
// fairseq's id offset).
#include "layerprobe/core/common.hpp"
#include "layerprobe/model/family.hpp"
#include "model/bert/bert.hpp"

namespace layerprobe {

namespace {

constexpr int64_t kXlmRobertaPaddingIdx = 1;

class XlmRobertaForQuestionAnswering : public BertForQuestionAnswering {
 public:
  explicit XlmRobertaForQuestionAnswering(const ModelConfig& config)
      : BertForQuestionAnswering(config, "roberta", BertPositions{true, kXlmRobertaPaddingIdx},
                                 /*add_pooling_layer=*/false) {
    // The base class drew every embedding from N(0, initializer_range) already, as 4.x does; 4.x then zeroes
    // the padding rows.
    torch::NoGradGuard no_grad;
    for (auto* table : {&bert->embeddings->word_embeddings, &bert->embeddings->position_embeddings})
      (*table)->weight[kXlmRobertaPaddingIdx].zero_();
  }

 protected:
  bool init_module(const std::string&, torch::nn::Module& module) override {
    auto* embedding = module.as<torch::nn::Embedding>();
    if (!embedding) return false;
    init_embedding_zero_padding(*embedding, config().initializer_range);
    return true;
  }
};

void validate_xlm_roberta(const ModelConfig& config) {
  for (const char* key : {"hidden_dropout_prob", "attention_probs_dropout_prob"}) config.probability(key);
  if (config.integer("pad_token_id") != kXlmRobertaPaddingIdx)
    throw Error(config.source + ": key 'pad_token_id' is " + std::to_string(config.integer("pad_token_id")) +
                "; xlm-roberta models count positions from the padding id 1 (every published one has 1)");
  const std::string position_type = config.string("position_embedding_type");
  if (position_type != "absolute")
    throw Error(config.source + ": key 'position_embedding_type' is \"" + position_type +
                "\"; only \"absolute\" (every published XLM-R model) is supported");
}

// BERT's parameters without the pooler (H x H + H).
double xlm_roberta_parameters(const ModelConfig& c) {
  const double H = static_cast<double>(c.hidden_size);
  return bert_family().parameters(c) - (H * H + H);
}

ModelFamily make_xlm_roberta_family() {
  ModelFamily f = bert_family();
  f.model_type = "xlm-roberta";
  f.run_squad_flag_sets_casing = false;  // 4.57.5: the tokenizer as stored
  f.base_prefix = "roberta";
  f.tokenizer = "xlm-roberta";
  f.example = "xlm-roberta-base";
  f.architecture = "XLMRobertaForQuestionAnswering";
  // transformers 4.57.5's XLMRobertaConfig defaults.
  f.defaults = {{"vocab_size", 30522},
                {"hidden_size", 768},
                {"num_hidden_layers", 12},
                {"num_attention_heads", 12},
                {"intermediate_size", 3072},
                {"hidden_act", "gelu"},
                {"hidden_dropout_prob", 0.1},
                {"attention_probs_dropout_prob", 0.1},
                {"max_position_embeddings", 512},
                {"type_vocab_size", 2},
                {"initializer_range", 0.02},
                {"layer_norm_eps", 1e-12},
                {"pad_token_id", 1},
                {"bos_token_id", 0},
                {"eos_token_id", 2},
                {"position_embedding_type", "absolute"},
                {"use_cache", true},
                {"classifier_dropout", nullptr}};
  auto shape = [](int64_t hidden, int64_t layers, int64_t heads) {
    return nlohmann::json{{"model_type", "xlm-roberta"},  {"architectures", {"XLMRobertaForMaskedLM"}},
                          {"hidden_size", hidden},        {"num_hidden_layers", layers},
                          {"num_attention_heads", heads}, {"intermediate_size", 4 * hidden},
                          {"vocab_size", 250002},         {"max_position_embeddings", 514},
                          {"type_vocab_size", 1},         {"layer_norm_eps", 1e-5},
                          {"bos_token_id", 0},            {"eos_token_id", 2},
                          {"pad_token_id", 1}};
  };
  f.published = {{"xlm-roberta-base", shape(768, 12, 12)}, {"xlm-roberta-large", shape(1024, 24, 16)}};
  f.takes_token_type_ids = true;
  f.position_offset = kXlmRobertaPaddingIdx + 1;
  f.validate = validate_xlm_roberta;
  f.create = [](const ModelConfig& config) { return std::make_shared<XlmRobertaForQuestionAnswering>(config); };
  f.parameters = xlm_roberta_parameters;
  return f;
}

}  // namespace

const ModelFamily& xlm_roberta_family() {
  static const ModelFamily family = make_xlm_roberta_family();
  return family;
}

}  // namespace layerprobe
