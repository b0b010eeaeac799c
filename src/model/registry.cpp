// The list of encoder families: one line per family. Each family's entry
// is defined in its own folder, src/model/<family>/.
#include "layerprobe/core/common.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/model/family.hpp"

namespace layerprobe {

const ModelFamily& albert_family();
const ModelFamily& bert_family();
const ModelFamily& distilbert_family();
const ModelFamily& roberta_family();
const ModelFamily& electra_family();
const ModelFamily& xlm_roberta_family();
const ModelFamily& modernbert_family();
const ModelFamily& gpt2_family();
const ModelFamily& llama_family();
const ModelFamily& mistral_family();
const ModelFamily& qwen2_family();
const ModelFamily& deberta_v2_family();

const std::vector<const ModelFamily*>& model_families() {
  static const std::vector<const ModelFamily*> families{
      &albert_family(),
      &bert_family(),
      &distilbert_family(),
      &roberta_family(),
      &electra_family(),
      &xlm_roberta_family(),
      &modernbert_family(),
      &gpt2_family(),
      &llama_family(),
      &mistral_family(),
      &qwen2_family(),
      &deberta_v2_family(),
  };
  return families;
}

namespace {

std::string known_model_types() {
  std::string names;
  for (const auto* family : model_families()) names += (names.empty() ? "" : ", ") + family->model_type;
  return names;
}

}  // namespace

const ModelFamily& model_family(const std::string& model_type) {
  for (const auto* family : model_families())
    if (family->model_type == model_type) return *family;
  throw Error("unknown model_type '" + model_type + "' (supported: " + known_model_types() + ")");
}

void check_precision_for_family(const std::string& precision, const ModelFamily& family) {
  if (precision != "int8" || family.int8_encoder) return;
  std::string covered;
  for (const auto* f : model_families())
    if (f->int8_encoder) covered += (covered.empty() ? "" : ", ") + f->model_type;
  throw Error("--precision int8 does not cover the " + family.model_type + " family (its layers have no int8 path; int8 "
              "covers " + covered + "): use fp32" + (cpu_has_native_bf16() ? " or bf16" : ""),
              2);
}

const ModelFamily& family_publishing(const std::string& name) {
  std::string known;
  for (const auto* family : model_families())
    for (const auto& [published, config] : family->published) {
      if (published == name) return *family;
      known += (known.empty() ? "" : ", ") + published;
    }
  throw Error("'" + name + "' is not a known published model (known: " + known + ")", 2);
}

double transformer_layer_flops(const ModelConfig& c, int64_t tokens) {
  const double t = static_cast<double>(tokens), h = static_cast<double>(c.hidden_size);
  const double linears = t * (4 * h * h + 2 * h * static_cast<double>(c.intermediate_size));
  const double attention = 2 * t * t * h;  // QK^T and PV
  return 2 * (linears + attention);
}

double transformer_layer_parameters(const ModelConfig& c) {
  const double h = static_cast<double>(c.hidden_size), i = static_cast<double>(c.intermediate_size);
  return 4 * (h * h + h) + (h * i + i) + (i * h + h) + 4 * h;
}

}  // namespace layerprobe
