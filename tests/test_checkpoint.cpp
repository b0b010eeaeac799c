#include <torch/torch.h>

#include <limits>
#include <set>

#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/model/family.hpp"
#include "layerprobe/text/tokenizer_registry.hpp"
#include "layerprobe/io/safetensors.hpp"
#include "test_support.hpp"

using namespace layerprobe;
namespace fs = std::filesystem;

namespace {

// A small config of `model_type` with keys no family reads, as hub configs have.
ModelConfig saved_model_config(const std::string& model_type = "albert") {
  nlohmann::json object = {{"model_type", model_type}, {"vocab_size", 50}, {"custom_key", 7},
                           {"id2label", {{"0", "LABEL_0"}}}};
  const ConfigKeys& keys = model_family(model_type).keys;
  object[keys.hidden_size] = 16;
  object[keys.num_hidden_layers] = 2;
  object[keys.num_attention_heads] = 2;
  object[keys.intermediate_size] = 32;
  if (model_type == "albert" || model_type == "electra") object["embedding_size"] = 8;
  if (model_type == "modernbert") object["pad_token_id"] = 1;
  if (model_family(model_type).defaults.contains("num_key_value_heads")) object["num_key_value_heads"] = 1;
  return config_from_json(object, model_type + " test config");
}

// A saved random model in `dir`; returns the model.
std::shared_ptr<QaModel> save_random(const fs::path& dir, const ModelConfig& config = saved_model_config()) {
  torch::manual_seed(1);
  auto model = create_model(config);
  save_checkpoint(*model, dir);
  return model;
}

std::string load_error(const fs::path& dir) {
  try {
    load_checkpoint(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Rewrites dir/model.safetensors after applying `edit` to its tensors.
void edit_weights(const fs::path& dir, const std::function<void(TensorMap&)>& edit) {
  TensorMap tensors = read_safetensors(dir / "model.safetensors").tensors;
  edit(tensors);
  write_safetensors(dir / "model.safetensors", tensors);
}

void expect_same_parameters(const QaModel& a, const QaModel& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& item : pa) EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
}

}  // namespace

TEST(Checkpoint, SaveThenLoadRoundTrips) {
  auto dir = test_support::scratch_dir("ckpt_roundtrip");
  auto model = save_random(dir);
  auto file = read_safetensors(dir / "model.safetensors");
  EXPECT_EQ(file.metadata.at("format"), "pt");
  EXPECT_TRUE(file.tensors.count("albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight"));
  EXPECT_TRUE(file.tensors.count("qa_outputs.weight"));
  EXPECT_TRUE(file.tensors.count("albert.pooler.weight"));

  LoadedModel loaded = load_checkpoint(dir);
  EXPECT_TRUE(loaded.has_qa_head);
  EXPECT_EQ(loaded.weights_path, dir / "model.safetensors");
  EXPECT_FALSE(loaded.model->is_training());
  expect_same_parameters(*model, *loaded.model);
  EXPECT_EQ(loaded.config.object.at("custom_key"), 7) << "unknown config keys must survive a re-save";
  EXPECT_EQ(loaded.config.object.at("architectures"), nlohmann::json({"AlbertForQuestionAnswering"}));
  EXPECT_EQ(loaded.config.to_json().at("model_type"), "albert");
}

class EveryFamilyCheckpoint : public ::testing::TestWithParam<const char*> {};

INSTANTIATE_TEST_SUITE_P(Families, EveryFamilyCheckpoint,
                         ::testing::Values("albert", "bert", "distilbert", "roberta", "electra", "xlm-roberta",
                                           "deberta-v2", "modernbert", "gpt2", "llama", "mistral", "qwen2"));

TEST_P(EveryFamilyCheckpoint, RoundTripsUnderTheFamilysKeysAndConfigNames) {
  auto dir = test_support::scratch_dir(std::string("ckpt_family_") + GetParam());
  const ModelConfig config = saved_model_config(GetParam());
  auto model = save_random(dir, config);
  const auto& family = model_family(GetParam());
  auto saved = nlohmann::json::parse(read_file(dir / "config.json"));
  EXPECT_EQ(saved.at("model_type"), GetParam());
  EXPECT_EQ(saved.at(family.keys.hidden_size), 16);  // DistilBERT: "dim"
  EXPECT_EQ(saved.at("architectures"), nlohmann::json({family.architecture}));
  LoadedModel loaded = load_checkpoint(dir);
  EXPECT_EQ(loaded.config.model_type, GetParam());
  expect_same_parameters(*model, *loaded.model);
  // A bare base model (no prefix, no QA head) loads too.
  edit_weights(dir, [&](TensorMap& t) {
    TensorMap bare;
    const std::string prefix = family.base_prefix + ".";
    for (auto& [key, tensor] : t)
      if (key.rfind(prefix, 0) == 0) bare[key.substr(prefix.size())] = tensor;
    t = bare;
  });
  LoadedModel bare = load_checkpoint(dir);
  EXPECT_FALSE(bare.has_qa_head);
}

TEST_P(EveryFamilyCheckpoint, MissingTensorIsNamed) {
  auto dir = test_support::scratch_dir(std::string("ckpt_family_missing_") + GetParam());
  save_random(dir, saved_model_config(GetParam()));
  std::string key;
  edit_weights(dir, [&](TensorMap& t) {
    for (const auto& [name, tensor] : t)
      if (name.find("LayerNorm") != std::string::npos || name.find("norm") != std::string::npos ||
          name.find(".ln_") != std::string::npos)
        key = name;
    t.erase(key);
  });
  std::string message = load_error(dir);
  EXPECT_NE(message.find("missing tensor '" + key + "'"), std::string::npos) << message;
}

TEST(Checkpoint, MissingDirectoryConfigOrWeightsNameTheFix) {
  auto dir = test_support::scratch_dir("albert-missing");
  std::string message = load_error(dir);
  EXPECT_NE(message.find("no config.json"), std::string::npos) << message;
  EXPECT_NE(message.find("tools/download_models.sh albert-missing"), std::string::npos) << message;

  save_config(saved_model_config(), dir / "config.json");
  message = load_error(dir);
  EXPECT_NE(message.find("has none of model.safetensors, model.safetensors.index.json, pytorch_model.bin"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("tools/download_models.sh albert-missing"), std::string::npos) << message;

  message = load_error(dir / "nope");
  EXPECT_NE(message.find("no config.json"), std::string::npos) << message;
}

TEST(Checkpoint, MissingTensorNamesKeyAndShape) {
  auto dir = test_support::scratch_dir("ckpt_missing_tensor");
  save_random(dir);
  const std::string key = "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight";
  edit_weights(dir, [&](TensorMap& t) { t.erase(key); });
  std::string message = load_error(dir);
  EXPECT_NE(message.find("missing tensor '" + key + "'"), std::string::npos) << message;
  EXPECT_NE(message.find("expected shape [32, 16]"), std::string::npos) << message;
  EXPECT_NE(message.find("model.safetensors"), std::string::npos) << message;
}

TEST(Checkpoint, WrongShapeNamesKeyExpectedAndFound) {
  auto dir = test_support::scratch_dir("ckpt_wrong_shape");
  save_random(dir);
  const std::string key = "albert.embeddings.LayerNorm.bias";
  edit_weights(dir, [&](TensorMap& t) { t[key] = torch::zeros({7}); });
  std::string message = load_error(dir);
  EXPECT_NE(message.find("'" + key + "' has shape [7], expected [8]"), std::string::npos) << message;
}

TEST(Checkpoint, UnknownActivationInConfig) {
  auto dir = test_support::scratch_dir("ckpt_activation");
  save_random(dir);
  auto json = nlohmann::json::parse(read_file(dir / "config.json"));
  json["hidden_act"] = "tanh";
  write_file_atomically(dir / "config.json", json.dump());
  std::string message = load_error(dir);
  EXPECT_NE(message.find("unknown activation 'tanh'"), std::string::npos) << message;
  EXPECT_NE(message.find("config.json"), std::string::npos) << message;
}

TEST(Checkpoint, AConfigClaimingAHugeModelIsRefusedBeforeAllocatingIt) {
  auto dir = test_support::scratch_dir("ckpt_huge_config");
  save_random(dir);
  auto json = nlohmann::json::parse(read_file(dir / "config.json"));
  json["hidden_size"] = 1 << 20;  // ~2^42 parameters: 16 TB of float32
  json["intermediate_size"] = 1 << 22;
  write_file_atomically(dir / "config.json", json.dump());
  std::string message = load_error(dir);
  EXPECT_NE(message.find("does not belong to these weights"), std::string::npos) << message;
}

TEST(Checkpoint, InvalidConfigValuesNameTheKey) {
  auto dir = test_support::scratch_dir("ckpt_bad_config");
  write_file_atomically(dir / "config.json", R"({"model_type": "albert", "hidden_size": "big"})");
  EXPECT_NE(load_error(dir).find("key 'hidden_size'"), std::string::npos);
  write_file_atomically(dir / "config.json", R"({"model_type": "bert", "hidden_size": 10, "num_attention_heads": 3})");
  EXPECT_NE(load_error(dir).find("not a multiple of num_attention_heads"), std::string::npos);
  write_file_atomically(dir / "config.json", "{not json");
  EXPECT_NE(load_error(dir).find("not valid JSON"), std::string::npos);
}

TEST(Checkpoint, BareAlbertModelKeysWithoutQaHeadAndExtraHeads) {
  auto dir = test_support::scratch_dir("ckpt_bare");
  auto model = save_random(dir);
  // As AlbertModel.save_pretrained writes it: no "albert." prefix, no QA head;
  // plus MLM/SOP tensors that the encoder does not use.
  edit_weights(dir, [](TensorMap& t) {
    TensorMap bare;
    for (auto& [key, tensor] : t)
      if (key.rfind("albert.", 0) == 0) bare[key.substr(7)] = tensor;
    bare["predictions.dense.weight"] = torch::zeros({8, 16});
    bare["sop_classifier.classifier.weight"] = torch::zeros({2, 16});
    t = bare;
  });
  LoadedModel loaded = load_checkpoint(dir);
  EXPECT_FALSE(loaded.has_qa_head);
  for (const auto& item : model->named_parameters())
    if (item.key().rfind("albert.", 0) == 0) {
      EXPECT_TRUE(torch::equal(item.value(), loaded.model->named_parameters()[item.key()])) << item.key();
    }
  EXPECT_TRUE(torch::equal(loaded.model->qa_outputs->bias, torch::zeros({2})));
  EXPECT_GT(loaded.model->qa_outputs->weight.abs().sum().item<float>(), 0.f);
  EXPECT_LT(loaded.model->qa_outputs->weight.abs().max().item<float>(), 0.2f);

  auto fresh = create_model(saved_model_config());
  auto report = load_state_dict(*fresh, read_safetensors(dir / "model.safetensors").tensors, "x");
  EXPECT_EQ(report.unused, (std::vector<std::string>{"predictions.dense.weight", "sop_classifier.classifier.weight"}));
}

TEST(Checkpoint, HalfPrecisionWeightsAreConverted) {
  for (auto dtype : {torch::kFloat16, torch::kBFloat16}) {
    auto dir = test_support::scratch_dir("ckpt_half");
    save_random(dir);
    TensorMap converted;
    edit_weights(dir, [&](TensorMap& t) {
      for (auto& [key, tensor] : t) tensor = tensor.to(dtype);
      converted = t;
    });
    LoadedModel loaded = load_checkpoint(dir);
    for (const auto& item : loaded.model->named_parameters()) {
      EXPECT_EQ(item.value().scalar_type(), torch::kFloat32);
      EXPECT_TRUE(torch::equal(item.value(), converted.at(item.key()).to(torch::kFloat32))) << item.key();
    }
  }
}

TEST(Checkpoint, HalfAQaHeadIsAnError) {
  auto dir = test_support::scratch_dir("ckpt_half_head");
  save_random(dir);
  edit_weights(dir, [](TensorMap& t) { t.erase("qa_outputs.bias"); });
  EXPECT_NE(load_error(dir).find("'qa_outputs' has only one of weight and bias"), std::string::npos);
}

TEST(Checkpoint, WeightsOptionAndTokenizerCopy) {
  REQUIRE_SHARED("data/bert/vocab.txt");
  auto dir = test_support::scratch_dir("ckpt_weights_option");
  torch::manual_seed(3);
  auto model = create_model(saved_model_config("bert"));
  save_checkpoint(*model, dir);
  TokenizerRequest lower;
  lower.do_lower_case = true;
  save_tokenizer(*load_tokenizer(test_support::shared_path("data/bert/vocab.txt"), lower), dir);
  EXPECT_EQ(read_file(dir / "vocab.txt"), read_file(test_support::shared_path("data/bert/vocab.txt")));
  EXPECT_EQ(nlohmann::json::parse(read_file(dir / "tokenizer_config.json")).at("do_lower_case"), true);
  auto reread = load_tokenizer(dir);
  EXPECT_EQ(reread->kind(), "wordpiece");
  EXPECT_EQ(reread->settings().do_lower_case, std::optional<bool>(true));
  EXPECT_EQ(reread->special_tokens().cls, "[CLS]");
  fs::rename(dir / "model.safetensors", dir / "other.safetensors");
  LoadedModel loaded = load_checkpoint(dir, fs::path("other.safetensors"));
  EXPECT_EQ(loaded.weights_path, dir / "other.safetensors");
  expect_same_parameters(*model, *loaded.model);
  try {
    load_checkpoint(dir, fs::path("absent.bin"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("weights file 'absent.bin' not found"), std::string::npos);
  }
}

TEST(Checkpoint, GoldenCheckpointsLoadWithQaHead) {
  REQUIRE_SHARED("golden/albert-tiny/config.json");
  const auto dir = test_support::shared_path("golden/albert-tiny");
  LoadedModel safetensors = load_checkpoint(dir);
  EXPECT_EQ(safetensors.weights_path.filename(), "model.safetensors");
  EXPECT_TRUE(safetensors.has_qa_head);
  for (const char* name : {"pytorch_model.bin", "pytorch_model_legacy.bin"}) {
    LoadedModel other = load_checkpoint(dir, dir / name);
    EXPECT_TRUE(other.has_qa_head);
    expect_same_parameters(*safetensors.model, *other.model);
  }
}

// --- the forms decoder checkpoints come in ------------------------------------------------

class OtherHeadCheckpoint : public ::testing::TestWithParam<const char*> {};

INSTANTIATE_TEST_SUITE_P(Families, OtherHeadCheckpoint, ::testing::Values("gpt2", "llama", "mistral", "qwen2"));

// A *ForCausalLM checkpoint: the base model under the causal LM's prefix ("model." for
// Llama/Qwen2, GPT-2's "transformer." as its QA class), an lm_head, no qa_outputs.
TEST_P(OtherHeadCheckpoint, CausalLmWeightsLoadWithAFreshQaHead) {
  auto dir = test_support::scratch_dir(std::string("ckpt_causal_lm_") + GetParam());
  const ModelConfig config = saved_model_config(GetParam());
  auto model = save_random(dir, config);
  const auto& family = model_family(GetParam());
  const std::string from = family.base_prefix + ".";
  const std::string to = (family.checkpoint_prefixes.empty() ? family.base_prefix : family.checkpoint_prefixes[0]) + ".";
  edit_weights(dir, [&](TensorMap& t) {
    TensorMap causal;
    for (auto& [key, tensor] : t)
      if (key.rfind(from, 0) == 0) causal[to + key.substr(from.size())] = tensor;
    causal["lm_head.weight"] = torch::randn({config.vocab_size, config.hidden_size});
    t = causal;
  });
  LoadedModel loaded = load_checkpoint(dir);
  EXPECT_FALSE(loaded.has_qa_head);
  for (const auto& item : model->named_parameters())
    if (item.key().rfind(from, 0) == 0)
      EXPECT_TRUE(torch::equal(item.value(), loaded.model->named_parameters()[item.key()])) << item.key();
  auto fresh = create_model(config);
  auto report = load_state_dict(*fresh, read_safetensors(dir / "model.safetensors").tensors, "x");
  EXPECT_EQ(report.unused, std::vector<std::string>{"lm_head.weight"});
  // A key missing under that prefix is named under it.
  edit_weights(dir, [&](TensorMap& t) { t.erase(to + "layers.1.mlp.up_proj.weight"); t.erase(to + "h.1.mlp.c_fc.weight"); });
  const std::string message = load_error(dir);
  EXPECT_NE(message.find("missing tensor '" + to), std::string::npos) << message;
}

// save_pretrained's shards: model-0000k-of-0000n.safetensors and model.safetensors.index.json,
// in bf16; read through the index, widened to float32 or (LoadOptions) kept in bf16.
TEST_P(OtherHeadCheckpoint, ShardedBf16SafetensorsLoadWidenedOrInTheirDtype) {
  auto dir = test_support::scratch_dir(std::string("ckpt_sharded_") + GetParam());
  torch::manual_seed(4);
  auto model = create_model(saved_model_config(GetParam()));
  model->eval();
  save_checkpoint(*model, dir, {torch::kBFloat16, 3000});
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  const auto index = nlohmann::json::parse(read_file(dir / "model.safetensors.index.json"));
  std::set<std::string> shards;
  for (const auto& entry : index.at("weight_map").items()) shards.insert(entry.value().get<std::string>());
  EXPECT_GT(shards.size(), 2u);
  for (const auto& shard : shards) {
    EXPECT_TRUE(fs::exists(dir / shard)) << shard;
    EXPECT_EQ(shard.rfind("model-0000", 0), 0u) << shard;
  }
  EXPECT_EQ(find_weights_file(dir), dir / "model.safetensors.index.json");

  LoadedModel widened = load_checkpoint(dir);
  EXPECT_TRUE(widened.has_qa_head);
  const auto widened_parameters = widened.model->named_parameters();
  for (const auto& item : model->named_parameters()) {
    const auto& got = widened_parameters[item.key()];
    EXPECT_EQ(got.scalar_type(), torch::kFloat32) << item.key();
    EXPECT_TRUE(torch::equal(got, item.value().to(torch::kBFloat16).to(torch::kFloat32))) << item.key();
  }
  LoadedModel kept = load_checkpoint(dir, std::nullopt, {torch::kBFloat16});
  int64_t bf16 = 0;
  for (const auto& item : kept.model->named_parameters()) {
    bf16 += item.value().scalar_type() == torch::kBFloat16;
    EXPECT_TRUE(torch::equal(item.value().to(torch::kFloat32), widened_parameters[item.key()])) << item.key();
  }
  EXPECT_EQ(bf16, static_cast<int64_t>(kept.model->named_parameters().size()) - 2) << "all but the QA head";
  // The same model either way: bf16 weights computed in bf16 stay near the float32 pass.
  EncoderBatch batch{torch::randint(3, 50, {2, 9}, torch::kLong), {}, torch::ones({2, 9}, torch::kLong)};
  torch::NoGradGuard no_grad;
  const auto a = widened.model->forward(batch), b = kept.model->forward(batch);
  EXPECT_EQ(b.hidden_states.back().scalar_type(), torch::kBFloat16);
  const double scale = a.start_logits.abs().max().item<double>() + 1e-3;
  EXPECT_LE((a.start_logits - b.start_logits.to(torch::kFloat)).abs().max().item<double>() / scale, 0.05);

  // A shard the index names but the directory lacks is named.
  fs::remove(dir / *shards.rbegin());
  const std::string message = load_error(dir);
  EXPECT_NE(message.find("lists shard '" + *shards.rbegin() + "', which is missing"), std::string::npos) << message;
}

TEST(Checkpoint, ShardIndexErrorsNameTheIndexAndKey) {
  auto dir = test_support::scratch_dir("ckpt_bad_index");
  save_random(dir);
  fs::rename(dir / "model.safetensors", dir / "model-00001-of-00001.safetensors");
  auto index = dir / "model.safetensors.index.json";
  write_file_atomically(index, R"({"weight_map": {"albert.embeddings.LayerNorm.bias": "../elsewhere.safetensors"}})");
  EXPECT_NE(load_error(dir).find("not a shard file in the same directory"), std::string::npos) << load_error(dir);
  write_file_atomically(index, R"({"weight_map": {"not.a.key": "model-00001-of-00001.safetensors"}})");
  EXPECT_NE(load_error(dir).find("places 'not.a.key' in"), std::string::npos) << load_error(dir);
  write_file_atomically(index, R"({"metadata": {}})");
  EXPECT_NE(load_error(dir).find("no \"weight_map\""), std::string::npos) << load_error(dir);
  write_file_atomically(index, R"({"weight_map": {"albert.embeddings.LayerNorm.bias": "model-00001-of-00001.safetensors"}})");
  EXPECT_NO_THROW(load_checkpoint(dir)) << "every tensor of a listed shard is read";
}

TEST(Checkpoint, NonFiniteWeightsAreNamedWithTheirFile) {
  const fs::path dir = test_support::scratch_dir("checkpoint_nan");
  save_random(dir);
  std::string key;
  edit_weights(dir, [&](TensorMap& tensors) {
    for (auto& [name, tensor] : tensors)
      if (name.find("ffn.weight") != std::string::npos && key.empty()) {
        key = name;
        tensor[0][1] = std::numeric_limits<float>::quiet_NaN();
      }
  });
  ASSERT_FALSE(key.empty());
  const std::string error = load_error(dir);
  EXPECT_NE(error.find((dir / "model.safetensors").string() + ": tensor '" + key + "' holds 1 non-finite value"),
            std::string::npos) << error;
  EXPECT_NE(error.find("nan at [0, 1]"), std::string::npos) << error;
}

TEST(Checkpoint, TensorsOfLayersTheConfigDoesNotHaveAreAnError) {
  // config.json with fewer layers than its checkpoint probed the first layers, saying so at debug level.
  const fs::path dir = test_support::scratch_dir("checkpoint_extra_layers");
  save_random(dir, saved_model_config("bert"));
  auto config = nlohmann::json::parse(read_file(dir / "config.json"));
  config["num_hidden_layers"] = 1;
  write_file_atomically(dir / "config.json", config.dump());
  const std::string error = load_error(dir);
  EXPECT_NE(error.find("tensors belong to layers the model's config.json does not have (first 'bert.encoder.layer.1."),
            std::string::npos) << error;
  // Unused tensors that are no other layer's (an MLM head) stay allowed.
  config["num_hidden_layers"] = 2;
  write_file_atomically(dir / "config.json", config.dump());
  edit_weights(dir, [](TensorMap& tensors) { tensors["cls.predictions.bias"] = torch::zeros({50}); });
  EXPECT_EQ(load_error(dir), "");
}
