#include "layerprobe/model/qa_model.hpp"

#include <fmt/format.h>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/model/family.hpp"
#include "model/layers.hpp"

namespace layerprobe {

namespace nn = torch::nn;

EncoderBatch EncoderBatch::to(const torch::Device& device) const {
  auto move = [&](const torch::Tensor& t) { return t.defined() ? t.to(device) : t; };
  return {move(input_ids), move(token_type_ids), move(attention_mask)};
}

QaModel::QaModel(const ModelConfig& config) : config_(config) { config_.validate(); }

const ModelFamily& QaModel::family() const { return model_family(config_.model_type); }

void QaModel::register_qa_head() { qa_outputs = register_module("qa_outputs", nn::Linear(config_.hidden_size, 2)); }

namespace {

// Tokens a window may hold: RoBERTa's positions start at padding_idx + 1.
int64_t max_tokens(const ModelConfig& config) {
  return config.max_position_embeddings - model_family(config.model_type).position_offset;
}

}  // namespace

EncoderBatch QaModel::checked(const EncoderBatch& given) const {
  EncoderBatch batch = given;
  // int8 inside a PrecisionScope: a family without the int8 layers refuses rather than run fp32 unsaid.
  if (cpu_compute_dtype() == torch::kChar)
    check_precision_for_family("int8", family());
  if (!family().takes_token_type_ids) batch.token_type_ids = torch::Tensor();
  const auto& ids = batch.input_ids;
  if (ids.dim() != 2 || batch.attention_mask.sizes() != ids.sizes() ||
      (batch.token_type_ids.defined() && batch.token_type_ids.sizes() != ids.sizes()))
    throw Error("encoder inputs must be [batch, tokens] tensors of one shape");
  if (ids.size(1) > max_tokens(config_))
    throw Error("sequence of " + std::to_string(ids.size(1)) + " tokens exceeds the model's " +
                std::to_string(max_tokens(config_)) + " positions (max_position_embeddings)");
  // An id past the embedding table would fail inside the embedding lookup with LibTorch's "index out of range".
  if (ids.numel() > 0) {
    const auto [low, high] = torch::aminmax(ids);
    const int64_t lowest = low.item<int64_t>(), highest = high.item<int64_t>();
    if (lowest < 0 || highest >= config_.vocab_size)
      throw Error("token id " + std::to_string(lowest < 0 ? lowest : highest) + " is outside the model's vocabulary " +
                  "(vocab_size " + std::to_string(config_.vocab_size) + " in " + config_.source +
                  "): the tokenizer does not belong to this model; use the model's own tokenizer files");
  }
  return batch;
}

EncoderOutput QaModel::forward(const EncoderBatch& given, bool collect_hidden_states) {
  const EncoderBatch batch = checked(given);
  const auto inputs = layer_inputs(batch);
  return run_from(0, embed(batch, *inputs), *inputs, collect_hidden_states);
}

EncoderOutput QaModel::forward_from(const EncoderBatch& given, int64_t layer, const torch::Tensor& hidden,
                                    bool collect_hidden_states) {
  const EncoderBatch batch = checked(given);
  if (layer < 0 || layer > num_layers())
    throw Error("forward_from: layer " + std::to_string(layer) + " is outside [0, " + std::to_string(num_layers()) +
                "]");
  const std::vector<int64_t> expected{batch.size(), batch.length(), config_.hidden_size};
  if (hidden.sizes() != torch::IntArrayRef(expected))
    throw Error("forward_from: hidden state of shape " + c10::str(hidden.sizes()) + ", expected " +
                c10::str(torch::IntArrayRef(expected)));
  const auto inputs = layer_inputs(batch);
  return run_from(layer, hidden, *inputs, collect_hidden_states);
}

EncoderOutput QaModel::run_from(int64_t first, torch::Tensor hidden, const LayerInputs& inputs, bool collect) {
  EncoderOutput output;
  if (collect) output.hidden_states.push_back(hidden);
  const int64_t layers = num_layers();
  for (int64_t i = first; i < layers; ++i) {
    hidden = layer(i, hidden, inputs);
    if (collect) output.hidden_states.push_back(hidden);
  }
  if (last_state_is_normed()) {
    // HF's last entry is the normed state; a pass started at L was handed it already normed.
    if (first < layers) hidden = final_norm(hidden);
    if (collect) output.hidden_states.back() = hidden;
    output.last_hidden_state = hidden;
  } else {
    output.last_hidden_state = final_norm(hidden);
  }
  if (!collect) output.hidden_states.push_back(hidden);
  std::vector<torch::Tensor> logits = head(output.last_hidden_state).split(1, -1);
  output.start_logits = logits[0].squeeze(-1);
  output.end_logits = logits[1].squeeze(-1);
  return output;
}

std::pair<torch::Tensor, torch::Tensor> QaModel::head_logits_at(const torch::Tensor& hidden_state, int64_t layer) {
  if (layer < 0 || layer > num_layers())
    throw Error("head lens: layer " + std::to_string(layer) + " is outside [0, " + std::to_string(num_layers()) + "]");
  const bool normed = layer == num_layers() && last_state_is_normed();
  std::vector<torch::Tensor> logits = head(normed ? hidden_state : final_norm(hidden_state)).split(1, -1);
  return {logits[0].squeeze(-1), logits[1].squeeze(-1)};
}

torch::Tensor QaModel::head(const torch::Tensor& last_hidden_state) {
  // A CPU bf16 encoder hands back bf16 hidden states; the QA head stays float32.
  auto last = last_hidden_state.to(qa_outputs->weight.scalar_type());
  if (qa_dropout > 0) last = torch::dropout(last, qa_dropout, is_training());
  return qa_outputs(last);
}

void QaModel::init_weights() {
  torch::NoGradGuard no_grad;
  init_modules("");
  init_family_weights();
}

void QaModel::init_modules(const std::string& prefix) {
  const double std = config_.initializer_range;
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    if ((item.key() + ".").rfind(prefix, 0) != 0) continue;
    auto& module = *item.value();
    if (init_module(item.key(), module)) continue;
    if (auto* linear = module.as<nn::Linear>()) {
      init_linear(*linear, std);
    } else if (auto* embedding = module.as<nn::Embedding>()) {
      embedding->weight.normal_(0.0, std);
    } else if (auto* norm = module.as<nn::LayerNorm>()) {
      norm->weight.fill_(1.0);
      norm->bias.zero_();
    }
  }
}

void QaModel::init_qa_head() {
  torch::NoGradGuard no_grad;
  for (const auto& prefix : family().head_prefixes) init_modules(prefix);
}

void QaModel::init_pooler() {
  const std::string prefix = pooler_prefix();
  if (prefix.empty()) return;
  torch::NoGradGuard no_grad;
  init_modules(prefix);
}

void check_model_fits_memory(const ModelConfig& config, double parameters, torch::Dtype dtype) {
  // A config describing more parameters than memory holds would grow until the allocator fails.
  const double bytes = parameters * static_cast<double>(c10::elementSize(dtype));
  const auto available = static_cast<double>(available_memory_bytes());
  if (available > 0 && bytes > available)
    throw Error(config.source + ": describes a model of " + fmt::format("{:.3g}", parameters) + " parameters (" +
                fmt::format("{:.1f}", bytes / (1 << 30)) + " GiB in " + c10::toString(dtype) + ") but only " +
                fmt::format("{:.1f}", available / (1 << 30)) + " GiB of memory are available; check its sizes (" +
                "hidden " + std::to_string(config.hidden_size) + ", layers " + std::to_string(config.num_hidden_layers) +
                ", vocab " + std::to_string(config.vocab_size) + ", intermediate " +
                std::to_string(config.intermediate_size) + ")");
}

std::shared_ptr<QaModel> create_model(const ModelConfig& config, torch::Dtype weights_dtype) {
  const ModelFamily& family = model_family(config.model_type);
  // Families that allocate in the weights' dtype (the decoders) hold 2 bytes a parameter in bf16.
  if (family.parameters)
    check_model_fits_memory(config, family.parameters(config),
                            family.creates_in_weights_dtype ? weights_dtype : torch::kFloat32);
  ModelCreation creation(weights_dtype, /*initialise=*/true);
  return family.create(config);
}

void validate_encoder_inputs(const ModelConfig& config, const EncoderBatch& batch) {
  const std::pair<const char*, const torch::Tensor*> named[] = {{"input_ids", &batch.input_ids},
                                                                {"token_type_ids", &batch.token_type_ids},
                                                                {"attention_mask", &batch.attention_mask}};
  for (const auto& [name, tensor] : named) {
    if (!tensor->defined()) {
      if (tensor == &batch.token_type_ids) continue;
      throw Error(std::string(name) + " is missing");
    }
    if (tensor->dim() != 2)
      throw Error(std::string(name) + " must be [batch, tokens], found rank " + std::to_string(tensor->dim()));
    if (torch::isFloatingType(tensor->scalar_type()) || tensor->scalar_type() == torch::kBool)
      throw Error(std::string(name) + " must be an integer tensor (I64)");
    if (tensor->sizes() != batch.input_ids.sizes())
      throw Error(std::string(name) + " has shape " + c10::str(tensor->sizes()) + " but input_ids has " +
                  c10::str(batch.input_ids.sizes()));
  }
  if (batch.input_ids.size(1) > max_tokens(config))
    throw Error("inputs have " + std::to_string(batch.input_ids.size(1)) + " tokens; the model takes at most " +
                std::to_string(max_tokens(config)) + " (max_position_embeddings)");
  if (batch.input_ids.size(0) > 0 && batch.input_ids.size(1) == 0)
    throw Error("input_ids has shape " + c10::str(batch.input_ids.sizes()) +
                ": rows of no tokens; every row needs at least one (e.g. the [CLS] token)");
  if (batch.input_ids.numel() == 0) return;
  auto check_range = [](const char* name, const torch::Tensor& tensor, int64_t limit, const char* limit_name) {
    int64_t low = tensor.min().item<int64_t>(), high = tensor.max().item<int64_t>();
    if (low < 0 || high >= limit)
      throw Error(std::string(name) + " values must lie in [0, " + std::to_string(limit) + ") (" + limit_name +
                  "), found range [" + std::to_string(low) + ", " + std::to_string(high) + "]");
  };
  check_range("input_ids", batch.input_ids, config.vocab_size, "vocab_size");
  // A model without token type embeddings (DeBERTa-v2's type_vocab_size 0) ignores the ids, as HF does.
  if (batch.token_type_ids.defined() && model_family(config.model_type).takes_token_type_ids &&
      config.type_vocab_size > 0)
    check_range("token_type_ids", batch.token_type_ids, config.type_vocab_size, "type_vocab_size");
  check_range("attention_mask", batch.attention_mask, 2, "0 or 1");
}

}  // namespace layerprobe
