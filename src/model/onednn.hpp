// oneDNN primitives run directly on LibTorch tensors' memory (private to src/model/), for the
// encoder layer's CPU inference path in float32 or bf16:
// - PackedLinear: an inner product over a weight packed once in the layout oneDNN's kernel reads,
//   with the bias, the activation and a residual add fused into it as post-ops; in int8 (--precision
//   int8), u8 activations x s8 weights, dequantised, biased, activated and added in the same kernel. Activations stay
//   plain row-major tensors: no to_mkldnn/to_dense copies around each product, no separate
//   activation pass (LibTorch 1.13's bf16 GELU alone cost half as much as the linears).
// - onednn_attention: softmax(q k^T / sqrt(d) + mask) v as two batched matmuls and a softmax,
//   reading Q, K and V in place from the fused QKV projection and writing the context straight
//   into [tokens, hidden] (LibTorch 1.13 runs a CPU float32 bmm as one small BLAS GEMM per row
//   and head: ~30 GFLOP/s on these shapes against ~120 through oneDNN's batched matmul).
// - layer_norm over the last dimension (oneDNN's kernel for bf16, whose LibTorch 1.13 kernel is slow).
// - onednn_matmul and onednn_softmax: a batched matmul over operands read and written through any
//   strides, and a softmax with its own output dtype, for attention kernels a family writes itself
//   (DeBERTa's disentangled attention).
// oneDNN is compiled in when CMake finds its headers (Debian: libdnnl-dev, the libdnnl Debian's
// LibTorch itself links); without it the same functions run LibTorch's ops.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace layerprobe {

// Whether this build calls oneDNN directly.
bool onednn_available();

// An activation fused into a product (None: the product and bias only).
enum class FusedActivation { None, GeluErf, GeluTanh, Relu, Swish, Mish };

// An activation quantised to u8 with one affine scale over the tensor: x ~ scale * (data - zero_point).
struct QuantizedActivation {
  torch::Tensor data;  // uint8, x's shape
  float scale = 1.f;
  int32_t zero_point = 0;
};

// x (contiguous float32) -> u8 over [min(x, 0), max(x, 0)] split in 255 steps, rounded to nearest:
// one vectorised, threaded pass for the range, one for the conversion. Error for a NaN or Inf in x.
QuantizedActivation quantize_u8(const torch::Tensor& x);

class PackedLinear {
 public:
  PackedLinear() = default;
  // weight [out, in], bias [out], converted to `dtype` (float32 or bf16) and packed; or, for
  // torch::kChar (int8), quantised to s8 with a symmetric scale per output channel (max |w| / 127)
  // and packed, the bias kept in float32.
  PackedLinear(const torch::Tensor& weight, const torch::Tensor& bias, torch::ScalarType dtype);
  bool defined() const { return bias_.defined(); }
  // x [N, in] of the packed dtype (float32 for int8) -> activation(x W^T + b) (+ residual [N, out])
  // as [N, out]. In int8, x is quantised per call (quantize_u8) and the u8 x s8 product accumulates
  // in int32; the dequantisation (per-channel output scales, set at run time), the bias, the
  // activation and the residual are the kernel's post-ops, and the output is float32.
  torch::Tensor forward(const torch::Tensor& x, FusedActivation activation = FusedActivation::None,
                        const torch::Tensor& residual = {}) const;

 private:
  // rows [first, first + rows) of x into the same rows of output (int8: x is u8, with its
  // per-call output scales and bias).
  void run_rows(const torch::Tensor& x, int64_t first, int64_t rows, FusedActivation activation, bool residual,
                const torch::Tensor& output, const torch::Tensor& bias, const torch::Tensor& scales) const;

  friend double int8_product_gflops(int64_t rows, int64_t in, int64_t out, double seconds);

  torch::Tensor packed_;  // oneDNN's packed bytes (or, without oneDNN, the weight in mkldnn layout)
  torch::Tensor bias_;
  torch::Tensor weight_scales_;  // int8: each output channel's weight scale, float32 [out]
  torch::Tensor weight_sums_;    // int8: each output channel's sum of s8 weights, float32 [out]
  bool int8_ = false;
  int64_t in_ = 0, out_ = 0;
  std::shared_ptr<void> layout_;  // oneDNN's memory descriptor of packed_
};

// GOP/s of the int8 product alone, u8 [rows, in] x packed s8 [in, out] into float32 with runtime
// per-channel scales and a bias (PackedLinear's kernel, its input already quantised), timed for about
// `seconds`: the bench's int8 GEMM peak. Error without oneDNN.
double int8_product_gflops(int64_t rows, int64_t in, int64_t out, double seconds);

// How many times a product had to repack its weight because oneDNN's kernel for it wanted another
// layout than the one packed (each such call reorders the whole weight): 0 on the encoder's path.
int64_t packed_linear_repacks();

// qkv: [B*T, 3H] contiguous float32 or bf16, rows [q | k | v], each H = heads x d;
// additive_mask: [B,1,1,T], or [B,1,T,T] (a mask per query: sliding windows), added to the
// scaled scores (any float dtype). Returns the
// attention context softmax(q k^T / sqrt(d) + mask) v as [B*T, H] in qkv's dtype.
// Scores are kept in qkv's dtype; the softmax accumulates in float32.
torch::Tensor onednn_attention(const torch::Tensor& qkv, const torch::Tensor& additive_mask, int64_t batch,
                               int64_t length, int64_t heads);

// x [N, in] times a weight as the model stores it — [out, in] (nn.Linear) or, with `in_out`,
// [in, out] (GPT-2's Conv1D) — read in place: oneDNN's matmul kernel copies the blocks it needs
// as it goes, so the model's weights exist once in memory (a 1B model's are not packed a second
// time). Then the bias (undefined: none), the activation, `multiply` [N, out] elementwise
// (SwiGLU's up projection times the activated gate), and `residual` [N, out] added, all fused.
// x and the weight in one dtype (float32 or bf16); the bias in any.
torch::Tensor onednn_dense(const torch::Tensor& x, const torch::Tensor& weight, bool in_out, const torch::Tensor& bias,
                           FusedActivation activation = FusedActivation::None, const torch::Tensor& multiply = {},
                           const torch::Tensor& residual = {});

// Heads inside a row-major [B*T, width] tensor: head h's d values of token n at
// data[n][column + h*d ...] (the columns of a fused QKV product, or a whole q/k/v tensor).
struct HeadColumns {
  torch::Tensor data;  // contiguous float32 or bf16
  int64_t column = 0;
};

// Attention with grouped-query heads: softmax(scale q k^T + mask) v per head, where q has `heads`
// heads and k, v have `kv_heads`, each shared by heads / kv_heads consecutive query heads and read
// in place (never repeated). mask: [B,1,T,T] additive (causal and padding), any float dtype.
// Returns the context [B*T, heads*d] in q's dtype; scores in that dtype, softmax accumulating in float32.
torch::Tensor onednn_grouped_attention(const HeadColumns& q, const HeadColumns& k, const HeadColumns& v,
                                       const torch::Tensor& mask, int64_t batch, int64_t length, int64_t heads,
                                       int64_t kv_heads, int64_t head_dim, double scale);

// LayerNorm of x [N, H] (float32 or bf16) with float32 weight and bias [H]; statistics in float32.
torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, double eps);

// A matrix operand of onednn_matmul: dims (batch dimensions, then rows and columns) and element strides
// over `tensor`'s memory, starting `offset` elements in. A batch dimension of 1 broadcasts.
struct StridedMatrix {
  torch::Tensor tensor;
  std::vector<int64_t> dims, strides;
  int64_t offset = 0;
};

// out = scale * (a b), batched over the leading dimensions: a [..., M, K], b [..., K, N], out [..., M, N].
// a and b are float32 or bf16 (one dtype); out is float32 or their dtype.
void onednn_matmul(const StridedMatrix& a, const StridedMatrix& b, const StridedMatrix& out, float scale = 1.f);

// Softmax over the last dimension of the contiguous float32 x into the contiguous out (float32 or bf16,
// x's shape; out may be x itself); accumulates in float32.
void onednn_softmax(const torch::Tensor& x, const torch::Tensor& out);

}  // namespace layerprobe
