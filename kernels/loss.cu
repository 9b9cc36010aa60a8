// Fused softmax cross-entropy: cuda::cross_entropy_forward and
// cuda::cross_entropy_backward.
//
// Layout: logits [rows, classes] contiguous float32/float64, target [rows]
// int32/int64, label smoothing eps. Per row, as on the CPU (src/cpu/loss.cpp):
//   m = max_j x_j,  s = sum_j exp(x_j - m)
//   loss = log(s) + (1 - eps) (m - x_t) + (eps / C) sum_j (m - x_j)
// Only non-negative terms are added, so logits of magnitude 1e4 keep full
// precision (lse - x_t would cancel). exp(x - m) is computed in the logits'
// type (like softmax.cu); s and sum(m - x) are accumulated in double (tree
// order, not the CPU's sequential one) and loss is formed in double and
// rounded once, so float32 agrees with the CPU to a few ulp. The row's stats
// (m, log s) are stored in double for the backward (never an lse rounded to
// float32: at |x| ~ 1e4 that alone costs 1e-4 relative in every probability).
//   - forward: one warp per row for classes <= kWarpRowMax (several rows per
//     block), else one block per row; two passes over the row (max, then the
//     sums; the second mostly hits L1/L2). Fused: the log-softmax is never
//     written, only loss[r] and stats[r] = (m, log s).
//   - backward: one pass writing grad_logits, nothing else:
//       grad[r][j] = g[r] * (exp((x - m[r]) - log_s[r]) - (1 - eps) [j == t] - eps / C)
//     the exponent formed in double; float32 takes expf of it rounded to
//     float and corrects to first order by the rounding residual (see
//     softmax_prob), so p keeps float precision whatever |x| is.
//     flat over elements for short rows, one block per row (the row's target,
//     stats and g read once) for rows of at least kBlockRowMin classes.
// DIFFERENCE FROM THE CPU: a target outside [0, C) gives NaN loss (and NaN
// gradients) for that row; the CPU throws. Checking here would need a
// device-to-host sync.
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/backend.h"
#include "core/elementwise_math.h"
#include "cuda/cuda_utils.h"

namespace tandem {
namespace cuda {
namespace {

// How the threads of a block map to rows (a template parameter, so the
// reductions compile to the right shuffle/shared-memory code).
enum class RowLayout { WarpPerRow, BlockPerRow };

// p = exp((x - m) - log_s), the exponent a in double. float32: expf(a_hi) *
// (1 + a_lo) with a = a_hi + a_lo, a_hi = float(a): the float exp at float
// throughput, without the relative error |a| * 2^-24 that rounding a costs
// (a_lo <= 2^-24 |a|, so the dropped a_lo^2 / 2 is below double rounding).
__device__ __forceinline__ double softmax_prob(float x, double m, double log_s) {
  const double a = (static_cast<double>(x) - m) - log_s;
  const float hi = static_cast<float>(a);
  // -inf (a masked logit) and NaN give expf's answer; a below float range
  // rounds to -inf and gives 0, as exp would.
  const double lo = isfinite(hi) ? a - static_cast<double>(hi) : 0.0;
  return static_cast<double>(expf(hi)) * (1.0 + lo);
}
__device__ __forceinline__ double softmax_prob(double x, double m, double log_s) {
  return exp((x - m) - log_s);
}

template <typename T>
struct MaxFn {
  // NaN is skipped here (as std::max does on the CPU); it still reaches s.
  __device__ __forceinline__ T operator()(T a, T b) const { return b > a ? b : a; }
};
struct SumFn {
  __device__ __forceinline__ double operator()(double a, double b) const { return a + b; }
};

// scratch: a TANDEM_SHARED V[kBlock / kWarpSize + 1] (see block_allreduce).
template <RowLayout kLayout, int kBlock, typename V, typename Combine, typename Scratch>
__device__ __forceinline__ V row_allreduce(V v, Combine combine, V identity, Scratch scratch) {
  if constexpr (kLayout == RowLayout::WarpPerRow) {
    (void)identity;
    (void)scratch;
    return warp_allreduce(v, combine);
  } else {
    return block_allreduce<kBlock>(v, combine, identity, scratch);
  }
}

template <typename I>
__device__ __forceinline__ bool valid_target(I t, int64_t classes) {
  return static_cast<int64_t>(t) >= 0 && static_cast<int64_t>(t) < classes;
}

// ---- Kernels ------------------------------------------------------------------------------

template <typename T, typename I, RowLayout kLayout, int kBlock>
__global__ void __launch_bounds__(kBlock)
    cross_entropy_forward_kernel(const T* x, const I* target, T* loss, double* stats, int64_t rows,
                                 int64_t classes, double smoothing) {
  constexpr int kThreadsPerRow = kLayout == RowLayout::WarpPerRow ? kWarpSize : kBlock;
  constexpr int kRowsPerBlock = kBlock / kThreadsPerRow;
  TANDEM_SHARED(T, max_scratch, [kBlock / kWarpSize + 1]);
  TANDEM_SHARED(double, sum_scratch, [kBlock / kWarpSize + 1]);
  const int tid = static_cast<int>(threadIdx.x % kThreadsPerRow);
  const int64_t first =
      static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kThreadsPerRow;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kRowsPerBlock;
  const T lowest = -std::numeric_limits<T>::infinity();
  // Every thread of a row's group runs the same iterations (the block
  // reductions need the whole block).
  for (int64_t r = first; r < rows; r += stride) {
    const T* row = x + r * classes;
    T m = lowest;
    for (int64_t j = tid; j < classes; j += kThreadsPerRow) m = MaxFn<T>()(m, row[j]);
    m = row_allreduce<kLayout, kBlock>(m, MaxFn<T>(), lowest, max_scratch);
    const double md = static_cast<double>(m);
    double s = 0.0, gap = 0.0;  // gap = sum_j (m - x_j), only needed with smoothing
    for (int64_t j = tid; j < classes; j += kThreadsPerRow) {
      const T v = row[j];
      s += static_cast<double>(math::exp(v - m));
      if (smoothing > 0.0) gap += md - static_cast<double>(v);
    }
    s = row_allreduce<kLayout, kBlock>(s, SumFn(), 0.0, sum_scratch);
    if (smoothing > 0.0) gap = row_allreduce<kLayout, kBlock>(gap, SumFn(), 0.0, sum_scratch);
    if (tid == 0) {
      const double log_s = log(s);
      stats[2 * r] = md;
      stats[2 * r + 1] = log_s;
      const I t = target[r];
      if (valid_target(t, classes)) {
        const double target_gap = md - static_cast<double>(row[static_cast<int64_t>(t)]);
        const double uniform = smoothing / static_cast<double>(classes);
        loss[r] = static_cast<T>(log_s + (1.0 - smoothing) * target_gap +
                                 (smoothing > 0.0 ? uniform * gap : 0.0));
      } else {
        loss[r] = std::numeric_limits<T>::quiet_NaN();
      }
    }
  }
}

// One gradient element from its row's values (stats m_r, log_s_r; g_r in T).
template <typename T>
__device__ __forceinline__ T cross_entropy_grad(T x, double m_r, double log_s_r, T g_r, bool hit,
                                                double smoothing, double uniform) {
  const double p = softmax_prob(x, m_r, log_s_r);
  return static_cast<T>(static_cast<double>(g_r) * (p - (hit ? 1.0 - smoothing : 0.0) - uniform));
}

// Flat over the rows * classes gradient elements (short rows).
template <typename T, typename I>
__global__ void cross_entropy_backward_flat_kernel(const T* x, const I* target, const double* stats,
                                                   const T* grad_loss, T* grad, int64_t rows,
                                                   int64_t classes, double smoothing) {
  const int64_t total = rows * classes;
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const double uniform = smoothing / static_cast<double>(classes);
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += nthreads) {
    const int64_t r = e / classes, j = e % classes;
    const I t = target[r];
    grad[e] = valid_target(t, classes)
                  ? cross_entropy_grad(x[e], stats[2 * r], stats[2 * r + 1], grad_loss[r],
                                       j == static_cast<int64_t>(t), smoothing, uniform)
                  : std::numeric_limits<T>::quiet_NaN();
  }
}

// One block per row at a time; threads stride over the row (long rows).
template <typename T, typename I, int kBlock>
__global__ void __launch_bounds__(kBlock)
    cross_entropy_backward_rows_kernel(const T* x, const I* target, const double* stats,
                                       const T* grad_loss, T* grad, int64_t rows, int64_t classes,
                                       double smoothing) {
  const double uniform = smoothing / static_cast<double>(classes);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const I t = target[r];
    const double m_r = stats[2 * r], log_s_r = stats[2 * r + 1];
    const T g_r = grad_loss[r];
    const T* row = x + r * classes;
    T* out = grad + r * classes;
    if (valid_target(t, classes)) {
      const auto tj = static_cast<int64_t>(t);
      for (int64_t j = threadIdx.x; j < classes; j += kBlock) {
        out[j] = cross_entropy_grad(row[j], m_r, log_s_r, g_r, j == tj, smoothing, uniform);
      }
    } else {
      for (int64_t j = threadIdx.x; j < classes; j += kBlock) {
        out[j] = std::numeric_limits<T>::quiet_NaN();
      }
    }
  }
}

// ---- Host launchers
// -------------------------------------------------------------------------------

constexpr int64_t kWarpRowMax = 1024;  // forward: longer rows get a block each
constexpr int64_t kBlockRowMin = 512;  // backward: rows this long get a block each

template <typename T, typename I>
void forward_typed(const Tensor& logits, const Tensor& target, double smoothing, Tensor& loss,
                   Tensor& stats) {
  const int64_t rows = logits.size(0), classes = logits.size(1);
  const T* xp = logits.data_ptr<T>();
  const I* tp = target.data_ptr<I>();
  cudaStream_t stream = current_cuda_stream();
  if (classes <= kWarpRowMax) {
    constexpr int kBlock = 128;  // 4 rows per block
    constexpr auto kLayout = RowLayout::WarpPerRow;
    const int grid = grid_for(rows, kBlock / kWarpSize, kBlock);
    TANDEM_LAUNCH(grid, kBlock, 0, stream, cross_entropy_forward_kernel<T, I, kLayout, kBlock>)
    (xp, tp, loss.data_ptr<T>(), stats.data_ptr<double>(), rows, classes, smoothing);
  } else {
    constexpr int kBlock = 512;
    constexpr auto kLayout = RowLayout::BlockPerRow;
    const int grid = grid_for(rows, 1, kBlock);
    TANDEM_LAUNCH(grid, kBlock, 0, stream, cross_entropy_forward_kernel<T, I, kLayout, kBlock>)
    (xp, tp, loss.data_ptr<T>(), stats.data_ptr<double>(), rows, classes, smoothing);
  }
}

template <typename T, typename I>
void backward_typed(const Tensor& logits, const Tensor& target, const Tensor& stats,
                    const Tensor& grad_loss, double smoothing, Tensor& grad_logits) {
  const int64_t rows = logits.size(0), classes = logits.size(1);
  const T* xp = logits.data_ptr<T>();
  const I* tp = target.data_ptr<I>();
  cudaStream_t stream = current_cuda_stream();
  if (classes >= kBlockRowMin) {
    constexpr int kBlock = kBlockSize;
    const int grid = grid_for(rows, 1, kBlock);
    TANDEM_LAUNCH(grid, kBlock, 0, stream, cross_entropy_backward_rows_kernel<T, I, kBlock>)
    (xp, tp, stats.data_ptr<double>(), grad_loss.data_ptr<T>(), grad_logits.data_ptr<T>(), rows,
     classes, smoothing);
  } else {
    constexpr int kBlock = kBlockSize;
    const int grid = grid_for(rows * classes, kBlock, kBlock);
    TANDEM_LAUNCH(grid, kBlock, 0, stream, cross_entropy_backward_flat_kernel<T, I>)
    (xp, tp, stats.data_ptr<double>(), grad_loss.data_ptr<T>(), grad_logits.data_ptr<T>(), rows,
     classes, smoothing);
  }
}

// stats: float64 [rows, 2], (row max, log of the sum).
void check_stats(const char* what, const Tensor& stats, int64_t rows) {
  TANDEM_CHECK(stats.dtype() == kFloat64 && stats.sizes() == Shape({rows, 2}), what,
               ": stats must be float64[", rows, ", 2], got ", dtype_name(stats.dtype()),
               shape_str(stats.sizes()));
}

}  // namespace

void cross_entropy_forward(const Tensor& logits, const Tensor& target, double label_smoothing,
                           Tensor& loss, Tensor& stats) {
  TANDEM_CHECK(logits.dim() == 2 && target.numel() == logits.size(0),
               "cross_entropy (cuda): expected logits [rows, classes] and one target per row");
  check_stats("cross_entropy (cuda)", stats, logits.size(0));
  dispatch_index(target.dtype(), "cross_entropy (cuda)", [&](auto index_tag) {
    using I = decltype(index_tag);
    TANDEM_DISPATCH_FLOATING(logits.dtype(), "cross_entropy (cuda)", [&] {
      forward_typed<scalar_t, I>(logits, target, label_smoothing, loss, stats);
    });
  });
}

void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& stats,
                            const Tensor& grad_loss, double label_smoothing, Tensor& grad_logits) {
  TANDEM_CHECK(logits.dim() == 2 && target.numel() == logits.size(0),
               "cross_entropy backward (cuda): expected logits [rows, classes] and one target "
               "per row");
  check_stats("cross_entropy backward (cuda)", stats, logits.size(0));
  dispatch_index(target.dtype(), "cross_entropy (cuda)", [&](auto index_tag) {
    using I = decltype(index_tag);
    TANDEM_DISPATCH_FLOATING(logits.dtype(), "cross_entropy (cuda)", [&] {
      backward_typed<scalar_t, I>(logits, target, stats, grad_loss, label_smoothing, grad_logits);
    });
  });
}

}  // namespace cuda
}  // namespace tandem
