// The model interface's steps, for every family with a golden tiny model:
// a forward pass continued from any layer's hidden state (forward_from, which
// amnesic probing edits) and the model's own head applied to any layer (the
// head lens) agree with the one-piece forward pass; inputs out of range are
// refused.
#include <torch/torch.h>

#include <string>

#include "layerprobe/core/common.hpp"
#include "layerprobe/io/safetensors.hpp"
#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/model/qa_model.hpp"
#include "test_support.hpp"

using namespace layerprobe;
namespace fs = std::filesystem;

namespace {

using test_support::max_diff;

// Exact agreement is not promised (the oneDNN path may batch differently), 1e-5 is.
constexpr double kTolerance = 1e-5;

struct Golden {
  LoadedModel loaded;
  EncoderBatch batch;
};

Golden load_golden(const std::string& model) {
  const fs::path dir = test_support::shared_path("golden/" + model);
  Golden golden{load_checkpoint(dir), {}};
  const auto ref = read_safetensors(dir / "reference_outputs.safetensors").tensors;
  golden.batch = {ref.at("input_ids"), ref.count("token_type_ids") ? ref.at("token_type_ids") : torch::Tensor(),
                  ref.at("attention_mask")};
  return golden;
}

}  // namespace

class ModelSteps : public ::testing::TestWithParam<const char*> {};

INSTANTIATE_TEST_SUITE_P(GoldenModels, ModelSteps,
                         ::testing::Values("albert-tiny", "bert-tiny", "distilbert-tiny", "roberta-tiny", "electra-tiny",
                                           "xlm-roberta-tiny", "deberta-v3-tiny", "modernbert-tiny", "gpt2-tiny",
                                           "llama-tiny", "qwen2-tiny"));

TEST_P(ModelSteps, ForwardFromEveryLayerContinuesTheSamePass) {
  REQUIRE_SHARED(std::string("golden/") + GetParam() + "/reference_outputs.safetensors");
  Golden g = load_golden(GetParam());
  torch::NoGradGuard no_grad;
  QaModel& model = *g.loaded.model;
  const EncoderOutput whole = model.forward(g.batch);
  const int64_t layers = model.num_layers();
  ASSERT_EQ(static_cast<int64_t>(whole.hidden_states.size()), layers + 1);
  for (int64_t l = 0; l <= layers; ++l) {
    const EncoderOutput rest = model.forward_from(g.batch, l, whole.hidden_states[l], true);
    ASSERT_EQ(static_cast<int64_t>(rest.hidden_states.size()), layers + 1 - l) << "from layer " << l;
    for (int64_t k = l; k <= layers; ++k)
      EXPECT_LE(max_diff(rest.hidden_states[k - l], whole.hidden_states[k]), kTolerance) << "from " << l << ", " << k;
    EXPECT_LE(max_diff(rest.start_logits, whole.start_logits), kTolerance) << "from layer " << l;
    EXPECT_LE(max_diff(rest.end_logits, whole.end_logits), kTolerance) << "from layer " << l;
    EXPECT_LE(max_diff(rest.last_hidden_state, whole.last_hidden_state), kTolerance) << "from layer " << l;
    // Not collected: only the last entry.
    EXPECT_EQ(model.forward_from(g.batch, l, whole.hidden_states[l]).hidden_states.size(), 1u);
  }
}

TEST_P(ModelSteps, AnEditedHiddenStateChangesWhatFollows) {
  REQUIRE_SHARED(std::string("golden/") + GetParam() + "/reference_outputs.safetensors");
  Golden g = load_golden(GetParam());
  torch::NoGradGuard no_grad;
  QaModel& model = *g.loaded.model;
  const EncoderOutput whole = model.forward(g.batch);
  const EncoderOutput edited = model.forward_from(g.batch, 1, torch::zeros_like(whole.hidden_states[1]));
  EXPECT_GT(max_diff(edited.start_logits, whole.start_logits), 1e-3);
}

TEST_P(ModelSteps, HeadLensAtTheLastLayerIsTheModelsOwnHead) {
  REQUIRE_SHARED(std::string("golden/") + GetParam() + "/reference_outputs.safetensors");
  Golden g = load_golden(GetParam());
  torch::NoGradGuard no_grad;
  QaModel& model = *g.loaded.model;
  const EncoderOutput whole = model.forward(g.batch);
  const int64_t layers = model.num_layers();
  auto [start, end] = model.head_logits_at(whole.hidden_states[layers], layers);
  EXPECT_LE(max_diff(start, whole.start_logits), kTolerance);
  EXPECT_LE(max_diff(end, whole.end_logits), kTolerance);
  // An earlier layer gives other logits of the same shape.
  auto [early, unused] = model.head_logits_at(whole.hidden_states[1], 1);
  EXPECT_EQ(early.sizes(), whole.start_logits.sizes());
  EXPECT_GT(max_diff(early, whole.start_logits), 1e-3);
}

TEST_P(ModelSteps, LayersAndShapesOutOfRangeAreRefused) {
  REQUIRE_SHARED(std::string("golden/") + GetParam() + "/reference_outputs.safetensors");
  Golden g = load_golden(GetParam());
  torch::NoGradGuard no_grad;
  QaModel& model = *g.loaded.model;
  const EncoderOutput whole = model.forward(g.batch, false);
  const auto& hidden = whole.hidden_states.back();
  EXPECT_THROW(model.forward_from(g.batch, -1, hidden), Error);
  EXPECT_THROW(model.forward_from(g.batch, model.num_layers() + 1, hidden), Error);
  EXPECT_THROW(model.forward_from(g.batch, 1, hidden.slice(1, 0, 3)), Error);
  EXPECT_THROW(model.head_logits_at(hidden, model.num_layers() + 1), Error);
}
