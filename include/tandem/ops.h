// Every public op, declared once. Each dispatches on the inputs' device to
// cpu::<family> or cuda::<family> (src/ops/); a CUDA tensor never falls back to
// the CPU. All inputs of one op must be on the same device and (unless stated)
// of the same dtype; violations throw tandem::Error naming the op.
#pragma once

#include <optional>
#include <ostream>
#include <vector>

#include "tandem/generator.h"
#include "tandem/op_list.h"
#include "tandem/tensor.h"

namespace tandem {

// ---- Unary (float32/float64) ----------------------------------------------
#define TANDEM_DECLARE_UNARY_(name, Enum) Tensor name(const Tensor& x);
TANDEM_UNARY_OPS(TANDEM_DECLARE_UNARY_)
#undef TANDEM_DECLARE_UNARY_
Tensor pow(const Tensor& x, double exponent);
Tensor clamp(const Tensor& x, double lo, double hi);
Tensor unary(UnaryOp op, const Tensor& x, double p0 = 0.0, double p1 = 0.0);

// ---- Binary with NumPy broadcasting (all dtypes) -----------------------------
Tensor add(const Tensor& a, const Tensor& b, double alpha = 1.0);  // a + alpha * b
Tensor sub(const Tensor& a, const Tensor& b, double alpha = 1.0);  // a - alpha * b
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
#define TANDEM_DECLARE_COMPARE_(name, Enum)      \
  Tensor name(const Tensor& a, const Tensor& b); \
  Tensor name(const Tensor& a, double b);
TANDEM_COMPARE_OPS(TANDEM_DECLARE_COMPARE_)
#undef TANDEM_DECLARE_COMPARE_
// Scalar variants (the scalar is converted to the tensor's dtype).
Tensor add(const Tensor& a, double b);
Tensor sub(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor div(const Tensor& a, double b);
Tensor maximum(const Tensor& a, double b);
Tensor minimum(const Tensor& a, double b);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, double alpha = 1.0);
Tensor binary_scalar(BinaryOp op, const Tensor& a, double s, ScalarSide side = ScalarSide::Right);
// The shape two shapes broadcast to; throws naming `op` when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// out[i] = cond[i] ? a[i] : b[i]; cond is a uint8 mask; all three broadcast.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, double b);

// ---- Reductions ----------------------------------------------------------------
// sum of int32/uint8 gives int64; mean and var need floating types; argmax and
// argmin give int64 (the first index among equal values).
Tensor sum(const Tensor& x);
Tensor sum(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& x);
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor min(const Tensor& x);
Tensor min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& x);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor var(const Tensor& x, bool unbiased = true);
Tensor var(const Tensor& x, int64_t dim, bool unbiased = true, bool keepdim = false);
// Makes var(x, 0) mean "over dim 0" rather than an ambiguous call.
inline Tensor var(const Tensor& x, int dim, bool unbiased = true, bool keepdim = false) {
  return var(x, static_cast<int64_t>(dim), unbiased, keepdim);
}
Tensor reduce(ReduceOp op, const Tensor& x);
Tensor reduce(ReduceOp op, const Tensor& x, int64_t dim, bool keepdim);

// ---- Softmax (numerically stable: the max is subtracted first) ---------------
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// ---- Matrix products (float32/float64; OpenBLAS on CPU, cuBLAS on CUDA) ----------
Tensor mm(const Tensor& a, const Tensor& b);   // [m,k] x [k,n]
Tensor bmm(const Tensor& a, const Tensor& b);  // [B,m,k] x [B,k,n]
// 1-D.1-D dot, 2-D.1-D, 1-D.2-D, N-D.2-D (leading dims flattened), N-D.N-D with
// equal batch dims, and one matrix times a batch: an operand whose batch dims
// hold a single matrix (1-D, 2-D, or batch dims of size 1) is repeated for every
// matrix of the other, e.g. [m,k].[B,k,n], [k].[B,k,n] and [1,m,k].[B,k,n] give
// [B,m,n], [B,n] and [B,m,n].
Tensor matmul(const Tensor& a, const Tensor& b);
// x [*, in] W [out, in] b [out] (optional): x W^T + b.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---- Shape and indexing --------------------------------------------------------
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Rows (or slices along dim) picked by a 1-D int64/int32 index.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// out[i][j] = x[i][index[i][j]] for dim 1 (libtorch semantics); index has x's
// shape except along dim.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// The adjoints of gather and index_select (floating dtypes): a copy of x with
// src added at the indexed positions; repeated indices accumulate. On CUDA the
// order of accumulation (so float rounding) may vary between runs.
//   scatter_add: out[i][index[i][j]] += src[i][j] for dim 1; index has src's shape.
//   index_add:   out.select(dim, index[j]) += src.select(dim, j); index 1-D.
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// labels (int64/int32, any shape) -> [..., num_classes]; int64 by default.
Tensor one_hot(const Tensor& labels, int64_t num_classes, const TensorOptions& options = kInt64);

// ---- Dropout (Philox; inverted scaling) -------------------------------------
// A mask of 0 and 1/(1-p), keep probability 1-p; bit-identical on CPU and CUDA
// for the same generator state.
Tensor dropout_mask(const Shape& shape, double p, const TensorOptions& options = {},
                    Generator* gen = nullptr);
// x * mask when training, x itself otherwise.
Tensor dropout(const Tensor& x, double p, bool training = true, Generator* gen = nullptr);

// ---- Convolution, pooling, batch norm (NCHW; float32/float64) ------------------
// A pair (height, width); one number means both: conv2d(x, w, b, /*stride=*/2).
struct Size2 {
  int64_t h, w;
  Size2(int64_t both) : h(both), w(both) {}  // NOLINT(google-explicit-constructor)
  Size2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  bool operator==(const Size2& o) const { return h == o.h && w == o.w; }
};
inline std::ostream& operator<<(std::ostream& os, const Size2& v) {
  return os << "(" << v.h << ", " << v.w << ")";
}

// input [N, C, H, W] or [C, H, W] (a batch of one), weight [K, C/groups, R, S],
// bias [K] or undefined. Output [N, K, P, Q] with
// P = (H + 2*pad_h - dil_h*(R-1) - 1) / stride_h + 1 (likewise Q).
// Cross-correlation (no kernel flip), as PyTorch and cuDNN. CPU: im2col +
// OpenBLAS GEMM; CUDA: cuDNN (see cuda::set_cudnn_benchmark and
// cuda::set_cudnn_deterministic in tandem/cuda.h).
Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias = Tensor(),
              Size2 stride = 1, Size2 padding = 0, Size2 dilation = 1, int64_t groups = 1);
// Max over kernel windows (stride defaults to the kernel size; padding <= half
// the kernel). Backward routes each output's gradient to one input: the first
// maximum of the window in row-major order.
Tensor max_pool2d(const Tensor& input, Size2 kernel_size,
                  std::optional<Size2> stride = std::nullopt, Size2 padding = 0);
// Mean over kernel windows; count_include_pad divides by the full kernel area.
Tensor avg_pool2d(const Tensor& input, Size2 kernel_size,
                  std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                  bool count_include_pad = true);
// Averages over windows chosen so that the output is output_size (1 = global
// average pooling), as PyTorch's adaptive_avg_pool2d.
Tensor adaptive_avg_pool2d(const Tensor& input, Size2 output_size);
// input [N, C] or [N, C, H, W] (or [N, C, L]); statistics per channel C.
// training: normalise with the batch statistics and, when running_mean and
// running_var are defined, update them in place with momentum (unbiased
// variance). Otherwise: normalise with running_mean/running_var (required).
// weight and bias [C] may be undefined (no affine transform).
Tensor batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, bool training, double momentum = 0.1,
                  double eps = 1e-5);

}  // namespace tandem
