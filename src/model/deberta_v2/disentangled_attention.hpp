// DeBERTa-v2's disentangled attention layer (private to src/model/deberta_v2/): the relative-position
// tables built once per window length, what a forward pass hands every layer (DisentangledInputs), and
// the layer kernel — op for op as transformers 4.57.5 (training, autograd, fast path off), or, in eval
// mode on the CPU, through oneDNN: Q, K and V as one packed product, the c2p and p2c terms as two batched
// products of the queries and keys against only the relative-embedding rows the window reaches, gathered
// by a per-length index table in one pass over the scores with the padding mask, then a softmax and the
// context product; linears with the activation and residual adds fused as the shared kernel does; in
// float32, or in bf16 inside a CPU bf16 PrecisionScope (scores, c2p and p2c in float32).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "layerprobe/model/qa_model.hpp"
#include "model/layers.hpp"
#include "model/onednn.hpp"

namespace layerprobe {

// The relative-attention settings of a DeBERTa-v2 config.
struct RelativeAttention {
  bool enabled = false;                // relative_attention
  int64_t position_buckets = -1;       // > 0: log-bucketed relative positions
  int64_t max_relative_positions = 0;  // resolved: < 1 in config.json means max_position_embeddings
  bool c2p = false, p2c = false;       // pos_att_type
  // HF's att_span (pos_ebd_size): rel_embeddings has 2 * span rows.
  int64_t span() const { return position_buckets > 0 ? position_buckets : max_relative_positions; }
  // The scores are divided by sqrt(head_size * scale_factor).
  int64_t scale_factor() const { return 1 + (c2p ? 1 : 0) + (p2c ? 1 : 0); }
};

// The relative positions of a window of `length` tokens, as tables over k = j - i + T - 1 for query i and
// key j (HF's [T,T] gather indices depend on i - j only): c2p_table[k] is the rel_embeddings row c2p reads,
// p2c_table[k] the row p2c's key j reads for query i (after HF's transpose), both counted from `first`: a
// window reaches rows [first, first + columns) only, and the kernel's products compute those alone.
struct RelativePositions {
  int64_t length = 0;
  torch::Tensor c2p_table, p2c_table;  // int32 [2T-1]
  int64_t first = 0, columns = 0;
  // HF's [T,T] int64 index from a table: entry [i][j] = table[j - i + T - 1] + first.
  torch::Tensor pair_index(const torch::Tensor& table) const;
};
// Built from HF's build_relative_position over [T,T] (make_log_bucket_position where position_buckets > 0).
RelativePositions relative_positions(const RelativeAttention& relative, int64_t length);

// What a DeBERTa-v2 forward pass hands each layer.
struct DisentangledInputs : LayerInputs {
  torch::Tensor attention_mask;  // [B,T] int64 0/1, as given
  torch::Tensor pair_mask;       // [B,1,T,T] bool: query and key both tokens (HF's get_attention_mask)
  torch::Tensor rel_embeddings;  // [2 span, H]: encoder.rel_embeddings after encoder.LayerNorm where configured
  std::shared_ptr<const RelativePositions> positions;  // null without relative attention
};

// The parameters of one layer by role (pos_key/pos_query only without share_att_key).
struct DisentangledLayerParts {
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, pos_key{nullptr}, pos_query{nullptr};
  torch::nn::Linear attention_output{nullptr};
  torch::nn::LayerNorm attention_norm{nullptr};
  torch::nn::Linear intermediate{nullptr}, output{nullptr};
  torch::nn::LayerNorm output_norm{nullptr};
  torch::nn::Embedding rel_embeddings{nullptr};  // the encoder's, shared by every layer
  torch::nn::LayerNorm rel_norm{nullptr};        // the encoder's, where norm_rel_ebd has layer_norm
};

struct DisentangledStyle {
  Activation activation = Activation::Gelu;
  int64_t heads = 1;
  RelativeAttention relative;
  bool share_att_key = false;
  double attention_dropout = 0;  // attention_probs_dropout_prob
  double hidden_dropout = 0;     // hidden_dropout_prob: the projections and pos_dropout
};

class DisentangledLayerKernel {
 public:
  DisentangledLayerKernel(DisentangledLayerParts parts, DisentangledStyle style)
      : parts_(std::move(parts)), style_(std::move(style)) {}
  void set_relative_embeddings(torch::nn::Embedding rel_embeddings, torch::nn::LayerNorm norm) {
    parts_.rel_embeddings = std::move(rel_embeddings);
    parts_.rel_norm = std::move(norm);
  }
  // hidden [B,T,H] -> the layer's output [B,T,H].
  torch::Tensor forward(const torch::Tensor& hidden, const DisentangledInputs& inputs, bool training);

 private:
  struct Prepared {
    std::vector<std::pair<const void*, uint32_t>> source;  // data pointer and version of each parameter read
    torch::ScalarType dtype = torch::kFloat;
    PackedLinear qkv, attention_output, intermediate, output;
    torch::Tensor pos_key, pos_query;  // [2 span, H] in dtype: the relative embeddings' keys and queries
  };
  bool use_fast_path(const torch::Tensor& hidden, bool training) const;
  const Prepared& prepared(torch::ScalarType dtype);
  // The relative embeddings projected by `projection` (HF's pos_key_layer / pos_query_layer, [2 span, H]).
  torch::Tensor relative_projection(const torch::nn::Linear& projection, const torch::Tensor& rel_embeddings);
  torch::Tensor reference_forward(const torch::Tensor& hidden, const DisentangledInputs& inputs, bool training);
  torch::Tensor fast_forward(const torch::Tensor& hidden, const DisentangledInputs& inputs);

  DisentangledLayerParts parts_;
  DisentangledStyle style_;
  Prepared prepared_;
};

// softmax((q k^T + c2p + p2c) / sqrt(d * scale_factor), masked) v over the fused QKV projection
// qkv [B*T, 3H] (float32 or bf16), with pos_key/pos_query [2 span, H] (qkv's dtype; undefined where the
// term is off); returns the context [B*T, H] in qkv's dtype. A padded query row attends uniformly to every
// position, as HF's finfo.min fill makes it.
torch::Tensor disentangled_attention(const torch::Tensor& qkv, const torch::Tensor& pos_key,
                                     const torch::Tensor& pos_query, const RelativePositions* positions,
                                     const torch::Tensor& attention_mask, int64_t batch, int64_t length,
                                     int64_t heads, int64_t scale_factor);

}  // namespace layerprobe
