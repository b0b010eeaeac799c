#include "model/deberta_v2/disentangled_attention.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/precision.hpp"

#ifdef LAYERPROBE_WITH_ONEDNN
#include <ATen/record_function.h>
#define DEBERTA_RECORD(name) RECORD_FUNCTION(name, std::vector<c10::IValue>())
#else
#define DEBERTA_RECORD(name)
#endif

// The score pass below is compiled for AVX-512 and AVX2 too (its gathers vectorise there), and the best
// the CPU runs is picked at load time (GCC's function multiversioning).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DEBERTA_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DEBERTA_VECTOR_CLONES
#endif

namespace layerprobe {

namespace {

// make_log_bucket_position, op for op (float32 as HF's TorchScript function computes it, so that its
// ceil lands where HF's does).
torch::Tensor log_bucket_position(const torch::Tensor& relative_pos, int64_t bucket_size, int64_t max_position) {
  const auto sign = torch::sign(relative_pos);
  const int64_t mid = bucket_size / 2;
  const auto abs_pos = torch::where((relative_pos < mid) & (relative_pos > -mid),
                                    torch::scalar_tensor(mid - 1, relative_pos.options()), torch::abs(relative_pos));
  const auto denominator = torch::log(torch::scalar_tensor(
      static_cast<double>(max_position - 1) / static_cast<double>(mid), torch::TensorOptions(torch::kFloat)));
  const auto log_pos = torch::ceil(torch::log(abs_pos / mid) / denominator * (mid - 1)) + mid;
  return torch::where(abs_pos <= mid, relative_pos.to(log_pos.scalar_type()), log_pos * sign);
}

// Entry (i - j) of a [T,T] table that depends on i - j only, as a table over k = j - i + T - 1.
torch::Tensor by_offset(const torch::Tensor& table) {
  const int64_t length = table.size(0);
  // k < T - 1: i = T - 1 - k > j = 0 (column 0, rows T-1 .. 1); k >= T - 1: i = 0, j = k - T + 1 (row 0).
  const auto below = table.index({torch::indexing::Slice(1, torch::indexing::None), 0}).flip(0);
  return torch::cat({below, table[0]}).view({2 * length - 1});
}

}  // namespace

RelativePositions relative_positions(const RelativeAttention& relative, int64_t length) {
  RelativePositions positions;
  positions.length = length;
  const auto ids = torch::arange(length, torch::kLong);
  torch::Tensor rel = ids.unsqueeze(1) - ids.unsqueeze(0);  // query - key
  if (relative.position_buckets > 0 && relative.max_relative_positions > 0)
    rel = log_bucket_position(rel, relative.position_buckets, relative.max_relative_positions);
  rel = rel.to(torch::kLong);
  const int64_t span = relative.span();
  const auto c2p = by_offset(torch::clamp(rel + span, 0, 2 * span - 1));
  // p2c gathers row j of k . pos_query at clamp(-r_pos[j][i] + span), then transposes to [i][j].
  const auto p2c = by_offset(torch::clamp(-rel + span, 0, 2 * span - 1).t());
  positions.first = std::min(c2p.min().item<int64_t>(), p2c.min().item<int64_t>());
  positions.columns = std::max(c2p.max().item<int64_t>(), p2c.max().item<int64_t>()) - positions.first + 1;
  positions.c2p_table = (c2p - positions.first).to(torch::kInt).contiguous();
  positions.p2c_table = (p2c - positions.first).to(torch::kInt).contiguous();
  return positions;
}

torch::Tensor RelativePositions::pair_index(const torch::Tensor& table) const {
  const auto ids = torch::arange(length, torch::kLong);
  return table.to(torch::kLong).index({ids.unsqueeze(0) - ids.unsqueeze(1) + (length - 1)}) + first;
}

// --- the oneDNN path -------------------------------------------------------------------

namespace {

constexpr float kMasked = std::numeric_limits<float>::lowest();  // HF's torch.finfo(float32).min

// One score row: row[j] += c2p_row[c2p_index[j]] + p2c[j * columns + p2c_index[j]] (either term absent
// where its pointer is null), then the masked keys set to finfo.min.
DEBERTA_VECTOR_CLONES
void relative_score_row(float* __restrict row, const float* __restrict c2p_row, const int32_t* __restrict c2p_index,
                        const float* __restrict p2c, const int32_t* __restrict p2c_index, int64_t columns,
                        const uint8_t* __restrict key_masked, int64_t n) {
  if (c2p_row && p2c) {
    for (int64_t j = 0; j < n; ++j) {
      const float s = row[j] + c2p_row[c2p_index[j]] + p2c[j * columns + p2c_index[j]];
      row[j] = key_masked[j] ? kMasked : s;
    }
  } else if (c2p_row) {
    for (int64_t j = 0; j < n; ++j) {
      const float s = row[j] + c2p_row[c2p_index[j]];
      row[j] = key_masked[j] ? kMasked : s;
    }
  } else if (p2c) {
    for (int64_t j = 0; j < n; ++j) {
      const float s = row[j] + p2c[j * columns + p2c_index[j]];
      row[j] = key_masked[j] ? kMasked : s;
    }
  } else {
    for (int64_t j = 0; j < n; ++j) row[j] = key_masked[j] ? kMasked : row[j];
  }
}

// A head-major view [B, heads, rows, head_size] of a [B*T, width] buffer from column `column`.
StridedMatrix heads_view(const torch::Tensor& buffer, int64_t batch, int64_t heads, int64_t length,
                         int64_t head_size, int64_t column, bool transpose) {
  const int64_t width = buffer.size(1);
  StridedMatrix m{buffer, {batch, heads, length, head_size}, {length * width, head_size, width, 1}, column};
  if (transpose) {
    m.dims = {batch, heads, head_size, length};
    m.strides = {length * width, head_size, 1, width};
  }
  return m;
}

}  // namespace

torch::Tensor disentangled_attention(const torch::Tensor& qkv_in, const torch::Tensor& pos_key,
                                     const torch::Tensor& pos_query, const RelativePositions* positions,
                                     const torch::Tensor& attention_mask, int64_t batch, int64_t length,
                                     int64_t heads, int64_t scale_factor) {
  DEBERTA_RECORD("deberta::disentangled_attention");
  const torch::Tensor qkv = qkv_in.contiguous();
  const auto dtype = qkv.scalar_type();
  const int64_t width = qkv.size(1) / 3, head_size = width / heads, rows = batch * length;
  // HF: sqrt(float32(head_size) * scale_factor), dividing each term.
  const float scale = std::sqrt(static_cast<float>(head_size) * static_cast<float>(scale_factor));
  const auto f32 = qkv.options().dtype(torch::kFloat);

  auto scores = torch::empty({batch, heads, length, length}, f32);
  onednn_matmul(heads_view(qkv, batch, heads, length, head_size, 0, false),
                heads_view(qkv, batch, heads, length, head_size, width, true),
                {scores, {batch, heads, length, length}, {heads * length * length, length * length, length, 1}, 0},
                1.f / scale);

  // c2p and p2c: the queries and keys of every token against the reached rows of pos_key / pos_query,
  // [heads, B*T, columns] each.
  const bool c2p = pos_key.defined() && positions, p2c = pos_query.defined() && positions;
  const int64_t columns = positions ? positions->columns : 0;
  auto relative_product = [&](int64_t column, const torch::Tensor& table) {
    auto product = torch::empty({heads, rows, columns}, f32);
    onednn_matmul({qkv, {heads, rows, head_size}, {head_size, 3 * width, 1}, column},
                  {table, {heads, head_size, columns}, {head_size, 1, width}, positions->first * width},
                  {product, {heads, rows, columns}, {rows * columns, columns, 1}, 0}, 1.f / scale);
    return product;
  };
  const torch::Tensor c2p_product = c2p ? relative_product(0, pos_key.contiguous()) : torch::Tensor();
  const torch::Tensor p2c_product = p2c ? relative_product(width, pos_query.contiguous()) : torch::Tensor();

  const torch::Tensor masked = attention_mask.eq(0).to(torch::kUInt8).contiguous();
  {
    DEBERTA_RECORD("deberta::relative_scores");
    float* score_data = scores.data_ptr<float>();
    const float* c2p_data = c2p ? c2p_product.data_ptr<float>() : nullptr;
    const float* p2c_data = p2c ? p2c_product.data_ptr<float>() : nullptr;
    const int32_t* c2p_table = positions ? positions->c2p_table.data_ptr<int32_t>() : nullptr;
    const int32_t* p2c_table = positions ? positions->p2c_table.data_ptr<int32_t>() : nullptr;
    const uint8_t* masked_data = masked.data_ptr<uint8_t>();
    at::parallel_for(0, batch * heads * length, 64, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t i = r % length, h = (r / length) % heads, b = r / (length * heads);
        float* row = score_data + r * length;
        if (masked_data[b * length + i]) {  // a padded query: every score finfo.min, so a uniform softmax
          std::fill(row, row + length, 0.f);
          continue;
        }
        const int64_t offset = length - 1 - i;  // table entry k = j - i + T - 1
        relative_score_row(row, c2p ? c2p_data + (h * rows + b * length + i) * columns : nullptr,
                           c2p ? c2p_table + offset : nullptr,
                           p2c ? p2c_data + (h * rows + b * length) * columns : nullptr,
                           p2c ? p2c_table + offset : nullptr, columns, masked_data + b * length, length);
      }
    });
  }
  // The probabilities in the compute dtype (float32: in place).
  const torch::Tensor probs = dtype == torch::kFloat ? scores : torch::empty(scores.sizes(), qkv.options());
  onednn_softmax(scores, probs);
  auto context = torch::empty({rows, width}, qkv.options());
  onednn_matmul({probs, {batch, heads, length, length}, {heads * length * length, length * length, length, 1}, 0},
                heads_view(qkv, batch, heads, length, head_size, 2 * width, false),
                heads_view(context, batch, heads, length, head_size, 0, false));
  return context;
}

// --- the layer ----------------------------------------------------------------------------

namespace {

// [B,T,H] -> [B,heads,T,d].
torch::Tensor split_heads(const torch::Tensor& x, int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, -1}).permute({0, 2, 1, 3});
}

}  // namespace

torch::Tensor DisentangledLayerKernel::relative_projection(const torch::nn::Linear& projection,
                                                           const torch::Tensor& rel_embeddings) {
  torch::nn::Linear layer = projection;
  return linear(layer, rel_embeddings);
}

torch::Tensor DisentangledLayerKernel::reference_forward(const torch::Tensor& hidden, const DisentangledInputs& inputs,
                                                         bool training) {
  const int64_t batch = hidden.size(0), length = hidden.size(1), width = hidden.size(2), heads = style_.heads;
  const auto q = split_heads(linear(parts_.query, hidden), heads);
  const auto k = split_heads(linear(parts_.key, hidden), heads);
  const auto v = split_heads(linear(parts_.value, hidden), heads);
  const RelativeAttention& relative = style_.relative;
  // scaled_size_sqrt: sqrt(float32(head_size) * scale_factor); q (k^T / scale).
  const auto scale = torch::sqrt(torch::scalar_tensor(static_cast<double>(q.size(-1)), torch::kFloat) *
                                 relative.scale_factor())
                         .to(q.scalar_type());
  auto scores = torch::matmul(q, k.transpose(-1, -2) / scale);
  if (relative.enabled && (relative.c2p || relative.p2c)) {
    const int64_t span = relative.span();
    const auto rel = torch::dropout(inputs.rel_embeddings.slice(0, 0, 2 * span), style_.hidden_dropout, training);
    auto project = [&](const torch::nn::Linear& shared, const torch::nn::Linear& own) {
      return split_heads(relative_projection(style_.share_att_key ? shared : own, rel).unsqueeze(0), heads);
    };
    const auto expand = [&](const torch::Tensor& index) { return index.expand({batch, heads, length, length}); };
    torch::Tensor bias;
    if (relative.c2p) {
      const auto c2p = torch::matmul(q, project(parts_.key, parts_.pos_key).transpose(-1, -2));
      bias = torch::gather(c2p, -1, expand(inputs.positions->pair_index(inputs.positions->c2p_table))) / scale;
    }
    if (relative.p2c) {
      // HF gathers k . pos_query^T by clamp(-r_pos + span), then transposes: the table's [i][j] transposed.
      const auto p2c = torch::matmul(k, project(parts_.query, parts_.pos_query).transpose(-1, -2));
      const auto index = inputs.positions->pair_index(inputs.positions->p2c_table).t();
      const auto term = torch::gather(p2c, -1, expand(index)).transpose(-1, -2) / scale;
      bias = bias.defined() ? bias + term : term;
    }
    scores = scores + bias;
  }
  scores = scores.masked_fill(inputs.pair_mask.logical_not(), std::numeric_limits<float>::lowest());
  const auto probs = torch::dropout(torch::softmax(scores, -1), style_.attention_dropout, training);
  const auto context = torch::matmul(probs, v).permute({0, 2, 1, 3}).contiguous().view({batch, length, width});
  const auto projected = torch::dropout(linear(parts_.attention_output, context), style_.hidden_dropout, training);
  const auto attention = parts_.attention_norm(projected + hidden);
  const auto inner = apply_activation(linear(parts_.intermediate, attention), style_.activation);
  const auto output = torch::dropout(linear(parts_.output, inner), style_.hidden_dropout, training);
  return parts_.output_norm(output + attention);
}

bool DisentangledLayerKernel::use_fast_path(const torch::Tensor& hidden, bool training) const {
  const auto dtype = hidden.scalar_type();
  return fast_cpu_path_enabled() && !training && !torch::GradMode::is_enabled() && at::hasMKLDNN() &&
         hidden.device().is_cpu() && (dtype == torch::kFloat32 || dtype == torch::kBFloat16) && hidden.numel() > 0;
}

const DisentangledLayerKernel::Prepared& DisentangledLayerKernel::prepared(torch::ScalarType dtype) {
  DisentangledLayerParts& p = parts_;
  std::vector<const torch::Tensor*> sources;
  for (const auto* l : {&p.query, &p.key, &p.value, &p.pos_key, &p.pos_query, &p.attention_output, &p.intermediate,
                        &p.output})
    if (!l->is_empty()) sources.insert(sources.end(), {&(*l)->weight, &(*l)->bias});
  if (!p.rel_embeddings.is_empty()) sources.push_back(&p.rel_embeddings->weight);
  if (!p.rel_norm.is_empty()) sources.insert(sources.end(), {&p.rel_norm->weight, &p.rel_norm->bias});
  std::vector<std::pair<const void*, uint32_t>> source;
  for (const torch::Tensor* t : sources) source.emplace_back(t->data_ptr(), static_cast<uint32_t>(t->_version()));
  if (prepared_.qkv.defined() && source == prepared_.source && prepared_.dtype == dtype) return prepared_;
  auto packed = [&](const torch::nn::Linear& l) { return PackedLinear(l->weight, l->bias, dtype); };
  prepared_.qkv = PackedLinear(torch::cat({p.query->weight, p.key->weight, p.value->weight}),
                               torch::cat({p.query->bias, p.key->bias, p.value->bias}), dtype);
  prepared_.attention_output = packed(p.attention_output);
  prepared_.intermediate = packed(p.intermediate);
  prepared_.output = packed(p.output);
  prepared_.pos_key = prepared_.pos_query = torch::Tensor();
  const RelativeAttention& relative = style_.relative;
  if (relative.enabled && (relative.c2p || relative.p2c)) {
    // The relative embeddings' keys and queries depend on the weights only: made once here, not per pass.
    torch::Tensor rel = p.rel_embeddings->weight.slice(0, 0, 2 * relative.span());
    if (!p.rel_norm.is_empty()) rel = p.rel_norm(rel);
    auto project = [&](const torch::nn::Linear& shared, const torch::nn::Linear& own) {
      return relative_projection(style_.share_att_key ? shared : own, rel).to(dtype).contiguous();
    };
    if (relative.c2p) prepared_.pos_key = project(p.key, p.pos_key);
    if (relative.p2c) prepared_.pos_query = project(p.query, p.pos_query);
  }
  prepared_.dtype = dtype;
  prepared_.source = std::move(source);
  return prepared_;
}

torch::Tensor DisentangledLayerKernel::fast_forward(const torch::Tensor& hidden, const DisentangledInputs& inputs) {
  const Prepared& w = prepared(cpu_compute_dtype());
  const int64_t batch = hidden.size(0), length = hidden.size(1), width = hidden.size(2);
  auto norm = [](const torch::Tensor& x, const torch::nn::LayerNorm& module) {
    return layer_norm(x, module->weight, module->bias, module->options.eps());
  };
  const torch::Tensor flat = hidden.to(w.dtype).reshape({batch * length, width});
  const torch::Tensor context =
      disentangled_attention(w.qkv.forward(flat), w.pos_key, w.pos_query, inputs.positions.get(),
                             inputs.attention_mask, batch, length, style_.heads, style_.relative.scale_factor());
  const torch::Tensor attention =
      norm(w.attention_output.forward(context, FusedActivation::None, flat), parts_.attention_norm);
  const torch::Tensor inner = w.intermediate.forward(attention, fused_activation(style_.activation));
  return norm(w.output.forward(inner, FusedActivation::None, attention), parts_.output_norm)
      .view({batch, length, width});
}

torch::Tensor DisentangledLayerKernel::forward(const torch::Tensor& hidden, const DisentangledInputs& inputs,
                                               bool training) {
  if (use_fast_path(hidden, training)) return fast_forward(hidden, inputs);
  return reference_forward(hidden, inputs, training);
}

}  // namespace layerprobe
