// Batch-norm kernels: cuda::batch_norm_forward_train and
// cuda::batch_norm_backward_train over x viewed as [n, c, m] (contiguous,
// float32/float64; contract in core/backend_decls.inc, CPU twin in
// src/cpu/batch_norm.cpp).
//
// Each pass is three launches:
//   1. partial sums per (channel, split): grid [c, splits] (channels on x,
//      whose limit is 2^31 - 1, so BatchNorm1d over 100000 features runs;
//      splits on y, at most kMaxSplits), each block strides
//      over its share of the channel's n*m values and reduces in double
//      (forward: sum and sum of squares of x - K, K = the channel's first
//      value, so the variance does not cancel catastrophically when
//      |mean| >> std; backward: sum(gy) and sum(gy * xhat));
//   2. one thread per channel adds its splits in a fixed order and writes the
//      per-channel results (mean, invstd, running stats; or grad_weight,
//      grad_bias) and the double coefficients of the elementwise pass;
//   3. an elementwise pass over x: y = (x - mean) * scale + shift (forward) or
//      gx = a * (gy - mean_gy - xhat * mean_gy_xhat) (backward); the channel of
//      an element is found with FastDivmod (core/fast_divmod.h) when the
//      tensor has at most 2^31 - 1 elements, 64-bit division otherwise.
// BatchNorm1d (m == 1) reads [n, c] row by row: its partial-sum kernels put
// 32 neighbouring channels on threadIdx.x and 8 rows on threadIdx.y (grid
// [ceil(c / 32), splits]), so a warp reads 32 consecutive values of one row
// instead of one value per row 4c bytes apart.
// Splits give every SM work even when c is small (c = 16 at CIFAR sizes). The
// partials live in a float64 tensor from the caching allocator. All sums are
// in a fixed order, so results are deterministic run to run.
//
// DIFFERENCE FROM THE CPU (src/cpu/batch_norm.cpp): none in the formulas. Both
// keep the statistics in double (save_mean and save_invstd are float64 for
// float32 x too), normalise with the double mean and evaluate each output,
// forward and backward, in double, rounded once (so x = 1000 + 0.01 * randn in
// float32 agrees to 1e-5; a float32 mean would be off by 3e-3 there). The
// sums run in a different order (the CPU: two passes, x - mean; here: one pass
// of x - K), so results agree to rounding, not bit for bit.
#include <cstdint>

#include "core/backend.h"
#include "cuda/cuda_utils.h"

namespace tandem {
namespace cuda {
namespace {

constexpr int kBlock = kBlockSize;
constexpr int kMaxSplits = 256;
constexpr int64_t kValuesPerSplit = 4096;  // at least this many values per block
constexpr int kTileChannels = 32;          // BatchNorm1d: channels per block (x)
constexpr int kTileRows = 8;               // BatchNorm1d: rows per block step (y)

// Block-wide sum of two doubles; the result is valid in thread 0.
__device__ __forceinline__ void block_sum2(double& a, double& b) {
  TANDEM_SHARED(double, sa, [kBlock / kWarpSize]);
  TANDEM_SHARED(double, sb, [kBlock / kWarpSize]);
  auto add = [](double u, double v) { return u + v; };
  a = warp_allreduce(a, add);
  b = warp_allreduce(b, add);
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  if (lane == 0) {
    sa[warp] = a;
    sb[warp] = b;
  }
  __syncthreads();
  if (warp == 0) {
    a = lane < kBlock / kWarpSize ? sa[lane] : 0.0;
    b = lane < kBlock / kWarpSize ? sb[lane] : 0.0;
    a = warp_allreduce(a, add);
    b = warp_allreduce(b, add);
  }
}

// Adds the kTileRows values of each column of a (kTileChannels, kTileRows)
// block in row order; the sums are valid in the threads with threadIdx.y == 0.
// sa and sb are TANDEM_SHARED double[kTileRows][kTileChannels] arrays.
template <typename Tile>
__device__ __forceinline__ void tile_sum2(double& a, double& b, Tile sa, Tile sb) {
  sa[threadIdx.y][threadIdx.x] = a;
  sb[threadIdx.y][threadIdx.x] = b;
  __syncthreads();
  if (threadIdx.y == 0) {
    for (int k = 1; k < kTileRows; ++k) {
      a += sa[k][threadIdx.x];
      b += sb[k][threadIdx.x];
    }
  }
}

// ---- Forward ------------------------------------------------------------------------------

template <typename T>
__global__ void bn_stats_partial_kernel(const T* x, int64_t n, int64_t c, int64_t m,
                                        double* partial) {
  const int64_t ch = blockIdx.x, split = blockIdx.y, splits = gridDim.y, count = n * m;
  const double shift = static_cast<double>(x[ch * m]);  // first value of the channel
  double s1 = 0.0, s2 = 0.0;
  for (int64_t e = split * blockDim.x + threadIdx.x; e < count; e += splits * blockDim.x) {
    const int64_t b = e / m, i = e % m;
    const double d = static_cast<double>(x[(b * c + ch) * m + i]) - shift;
    s1 += d;
    s2 += d * d;
  }
  block_sum2(s1, s2);
  if (threadIdx.x == 0) {
    partial[(ch * splits + split) * 2] = s1;
    partial[(ch * splits + split) * 2 + 1] = s2;
  }
}

// BatchNorm1d ([n, c], m == 1): a block covers kTileChannels neighbouring
// channels (threadIdx.x) and kTileRows rows at a time (threadIdx.y), so each
// row's read is coalesced across channels; the kTileRows partials of a
// channel are added in a fixed order.
TANDEM_KERNEL_BOUNDS(bn_stats_partial_1d_kernel, kTileChannels* kTileRows);
template <typename T>
__global__ void __launch_bounds__(kTileChannels* kTileRows)
    bn_stats_partial_1d_kernel(const T* x, int64_t n, int64_t c, double* partial) {
  TANDEM_SHARED(double, sa, [kTileRows][kTileChannels]);
  TANDEM_SHARED(double, sb, [kTileRows][kTileChannels]);
  const int64_t ch = static_cast<int64_t>(blockIdx.x) * kTileChannels + threadIdx.x;
  const int64_t split = blockIdx.y, splits = gridDim.y;
  double s1 = 0.0, s2 = 0.0;
  if (ch < c) {
    const double shift = static_cast<double>(x[ch]);  // first value of the channel
    for (int64_t r = split * kTileRows + threadIdx.y; r < n; r += splits * kTileRows) {
      const double d = static_cast<double>(x[r * c + ch]) - shift;
      s1 += d;
      s2 += d * d;
    }
  }
  tile_sum2(s1, s2, sa, sb);
  if (threadIdx.y == 0 && ch < c) {
    partial[(ch * splits + split) * 2] = s1;
    partial[(ch * splits + split) * 2 + 1] = s2;
  }
}

template <typename T>
__global__ void bn_stats_finalize_kernel(const T* x, const T* weight, const T* bias,
                                         T* running_mean, T* running_var, double momentum,
                                         double eps, int64_t n, int64_t c, int64_t m,
                                         int64_t splits, const double* partial, double* save_mean,
                                         double* save_invstd, double* coef) {
  const int64_t ch = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (ch >= c) return;
  double s1 = 0.0, s2 = 0.0;
  for (int64_t k = 0; k < splits; ++k) {
    s1 += partial[(ch * splits + k) * 2];
    s2 += partial[(ch * splits + k) * 2 + 1];
  }
  const double count = static_cast<double>(n * m);
  const double shift = static_cast<double>(x[ch * m]);
  const double dmean = s1 / count;
  double var = s2 / count - dmean * dmean;
  if (var < 0.0) var = 0.0;
  const double mean = shift + dmean;
  const double invstd = 1.0 / sqrt(var + eps);
  coef[3 * ch] = (weight ? static_cast<double>(weight[ch]) : 1.0) * invstd;
  coef[3 * ch + 1] = mean;
  coef[3 * ch + 2] = bias ? static_cast<double>(bias[ch]) : 0.0;
  save_mean[ch] = mean;
  save_invstd[ch] = invstd;
  if (running_mean)
    running_mean[ch] =
        static_cast<T>((1.0 - momentum) * static_cast<double>(running_mean[ch]) + momentum * mean);
  if (running_var)
    running_var[ch] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_var[ch]) +
                                     momentum * var * count / (count - 1.0));
}

// out = (in - mean) * scale + shift, coef[3 ch ...] = {scale, mean, shift}
template <typename T, typename Index>
__global__ void bn_affine_kernel(const T* x, T* y, Divmod<Index> c, Divmod<Index> m, Index total,
                                 const double* coef) {
  for (Index e = grid_thread<Index>(); e < total; e += grid_threads<Index>()) {
    const Index ch = c.mod(m.div(e));
    y[e] = static_cast<T>((static_cast<double>(x[e]) - coef[3 * ch + 1]) * coef[3 * ch] +
                          coef[3 * ch + 2]);
  }
}

// ---- Backward -----------------------------------------------------------------------------

template <typename T>
__global__ void bn_grad_partial_kernel(const T* gy, const T* x, const double* mean,
                                       const double* invstd, int64_t n, int64_t c, int64_t m,
                                       double* partial) {
  const int64_t ch = blockIdx.x, split = blockIdx.y, splits = gridDim.y, count = n * m;
  const double mu = mean[ch], is = invstd[ch];
  double s1 = 0.0, s2 = 0.0;
  for (int64_t e = split * blockDim.x + threadIdx.x; e < count; e += splits * blockDim.x) {
    const int64_t at = ((e / m) * c + ch) * m + e % m;
    const double g = static_cast<double>(gy[at]);
    s1 += g;
    s2 += g * (static_cast<double>(x[at]) - mu) * is;
  }
  block_sum2(s1, s2);
  if (threadIdx.x == 0) {
    partial[(ch * splits + split) * 2] = s1;
    partial[(ch * splits + split) * 2 + 1] = s2;
  }
}

// BatchNorm1d backward partials, laid out as bn_stats_partial_1d_kernel.
TANDEM_KERNEL_BOUNDS(bn_grad_partial_1d_kernel, kTileChannels* kTileRows);
template <typename T>
__global__ void __launch_bounds__(kTileChannels* kTileRows)
    bn_grad_partial_1d_kernel(const T* gy, const T* x, const double* mean, const double* invstd,
                              int64_t n, int64_t c, double* partial) {
  TANDEM_SHARED(double, sa, [kTileRows][kTileChannels]);
  TANDEM_SHARED(double, sb, [kTileRows][kTileChannels]);
  const int64_t ch = static_cast<int64_t>(blockIdx.x) * kTileChannels + threadIdx.x;
  const int64_t split = blockIdx.y, splits = gridDim.y;
  double s1 = 0.0, s2 = 0.0;
  if (ch < c) {
    const double mu = mean[ch], is = invstd[ch];
    for (int64_t r = split * kTileRows + threadIdx.y; r < n; r += splits * kTileRows) {
      const double g = static_cast<double>(gy[r * c + ch]);
      s1 += g;
      s2 += g * (static_cast<double>(x[r * c + ch]) - mu) * is;
    }
  }
  tile_sum2(s1, s2, sa, sb);
  if (threadIdx.y == 0 && ch < c) {
    partial[(ch * splits + split) * 2] = s1;
    partial[(ch * splits + split) * 2 + 1] = s2;
  }
}

template <typename T>
__global__ void bn_grad_finalize_kernel(int64_t n, int64_t c, int64_t m, int64_t splits,
                                        const double* partial, T* grad_weight, T* grad_bias,
                                        double* coef) {
  const int64_t ch = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (ch >= c) return;
  double s1 = 0.0, s2 = 0.0;
  for (int64_t k = 0; k < splits; ++k) {
    s1 += partial[(ch * splits + k) * 2];
    s2 += partial[(ch * splits + k) * 2 + 1];
  }
  if (grad_bias) grad_bias[ch] = static_cast<T>(s1);
  if (grad_weight) grad_weight[ch] = static_cast<T>(s2);
  const double count = static_cast<double>(n * m);
  coef[2 * ch] = s1 / count;
  coef[2 * ch + 1] = s2 / count;
}

template <typename T, typename Index>
__global__ void bn_grad_input_kernel(const T* gy, const T* x, const T* weight, const double* mean,
                                     const double* invstd, Divmod<Index> c, Divmod<Index> m,
                                     Index total, const double* coef, T* gx) {
  for (Index e = grid_thread<Index>(); e < total; e += grid_threads<Index>()) {
    const Index ch = c.mod(m.div(e));
    const double is = invstd[ch];
    const double w = weight ? static_cast<double>(weight[ch]) : 1.0;
    const double xhat = (static_cast<double>(x[e]) - mean[ch]) * is;
    gx[e] = static_cast<T>(w * is *
                           (static_cast<double>(gy[e]) - coef[2 * ch] - xhat * coef[2 * ch + 1]));
  }
}

int64_t splits_for(int64_t count, int64_t c) {
  const int64_t want_blocks = static_cast<int64_t>(detail::multiprocessor_count()) * 4;
  int64_t splits = ceil_div<int64_t>(want_blocks, c);
  const int64_t by_size = ceil_div<int64_t>(count, kValuesPerSplit);
  if (splits > by_size) splits = by_size;
  if (splits > kMaxSplits) splits = kMaxSplits;
  return splits < 1 ? 1 : splits;
}

// BatchNorm1d: splits of the rows for ceil(c / kTileChannels) channel tiles;
// each thread gets at least 16 rows.
int64_t splits_for_1d(int64_t n, int64_t c) {
  const int64_t want_blocks = static_cast<int64_t>(detail::multiprocessor_count()) * 4;
  int64_t splits = ceil_div<int64_t>(want_blocks, ceil_div<int64_t>(c, kTileChannels));
  const int64_t by_size = ceil_div<int64_t>(n, kTileRows * 16);
  if (splits > by_size) splits = by_size;
  if (splits > kMaxSplits) splits = kMaxSplits;
  return splits < 1 ? 1 : splits;
}

template <typename T>
T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

}  // namespace

// ---- Host launchers ---------------------------------------------------------------------

void batch_norm_forward_train(const Tensor& x, const Tensor& weight, const Tensor& bias,
                              Tensor& running_mean, Tensor& running_var, double momentum,
                              double eps, int64_t n, int64_t c, int64_t m, Tensor& y,
                              Tensor& save_mean, Tensor& save_invstd) {
  const int64_t count = n * m, total = count * c;
  TANDEM_CHECK(count >= 2, "batch_norm (cuda): training needs more than one value per channel");
  TANDEM_CHECK(c <= INT32_MAX, "batch_norm (cuda): ", c,
               " channels exceed the grid limit 2^31 - 1");
  const int64_t splits = m == 1 ? splits_for_1d(n, c) : splits_for(count, c);
  const TensorOptions f64 = TensorOptions(kFloat64).device(x.device());
  Tensor partial = empty({c * splits * 2}, f64);
  Tensor coef = empty({c * 3}, f64);
  cudaStream_t stream = current_cuda_stream();
  TANDEM_DISPATCH_FLOATING(x.dtype(), "batch_norm (cuda)", [&] {
    using T = scalar_t;
    if (m == 1) {
      const dim3 grid(static_cast<unsigned>(ceil_div<int64_t>(c, kTileChannels)),
                      static_cast<unsigned>(splits));
      TANDEM_LAUNCH(grid, dim3(kTileChannels, kTileRows), 0, stream, bn_stats_partial_1d_kernel<T>)
      (x.data_ptr<T>(), n, c, partial.data_ptr<double>());
    } else {
      const dim3 grid(static_cast<unsigned>(c), static_cast<unsigned>(splits));
      TANDEM_LAUNCH(grid, kBlock, 0, stream, bn_stats_partial_kernel<T>)
      (x.data_ptr<T>(), n, c, m, partial.data_ptr<double>());
    }
    const int cgrid = static_cast<int>(ceil_div<int64_t>(c, kBlock));
    TANDEM_LAUNCH(cgrid, kBlock, 0, stream, bn_stats_finalize_kernel<T>)
    (x.data_ptr<T>(), ptr_or_null<T>(weight), ptr_or_null<T>(bias), ptr_or_null<T>(running_mean),
     ptr_or_null<T>(running_var), momentum, eps, n, c, m, splits, partial.data_ptr<double>(),
     save_mean.data_ptr<double>(), save_invstd.data_ptr<double>(), coef.data_ptr<double>());
    const int egrid = grid_for(total, kBlock, kBlock);
    dispatch_index_width(fits_int32({total}), [&](auto index_tag) {
      using Index = decltype(index_tag);
      TANDEM_LAUNCH(egrid, kBlock, 0, stream, bn_affine_kernel<T, Index>)
      (x.data_ptr<T>(), y.data_ptr<T>(), Divmod<Index>(c), Divmod<Index>(m),
       static_cast<Index>(total), coef.data_ptr<double>());
    });
  });
}

void batch_norm_backward_train(const Tensor& grad_y, const Tensor& x, const Tensor& weight,
                               const Tensor& save_mean, const Tensor& save_invstd, int64_t n,
                               int64_t c, int64_t m, Tensor& grad_x, Tensor& grad_weight,
                               Tensor& grad_bias) {
  const int64_t count = n * m, total = count * c;
  TANDEM_CHECK(c <= INT32_MAX, "batch_norm backward (cuda): ", c,
               " channels exceed the grid limit 2^31 - 1");
  const int64_t splits = m == 1 ? splits_for_1d(n, c) : splits_for(count, c);
  const TensorOptions f64 = TensorOptions(kFloat64).device(x.device());
  Tensor partial = empty({c * splits * 2}, f64);
  Tensor coef = empty({c * 2}, f64);
  cudaStream_t stream = current_cuda_stream();
  TANDEM_DISPATCH_FLOATING(x.dtype(), "batch_norm backward (cuda)", [&] {
    using T = scalar_t;
    if (m == 1) {
      const dim3 grid(static_cast<unsigned>(ceil_div<int64_t>(c, kTileChannels)),
                      static_cast<unsigned>(splits));
      TANDEM_LAUNCH(grid, dim3(kTileChannels, kTileRows), 0, stream, bn_grad_partial_1d_kernel<T>)
      (grad_y.data_ptr<T>(), x.data_ptr<T>(), save_mean.data_ptr<double>(),
       save_invstd.data_ptr<double>(), n, c, partial.data_ptr<double>());
    } else {
      const dim3 grid(static_cast<unsigned>(c), static_cast<unsigned>(splits));
      TANDEM_LAUNCH(grid, kBlock, 0, stream, bn_grad_partial_kernel<T>)
      (grad_y.data_ptr<T>(), x.data_ptr<T>(), save_mean.data_ptr<double>(),
       save_invstd.data_ptr<double>(), n, c, m, partial.data_ptr<double>());
    }
    const int cgrid = static_cast<int>(ceil_div<int64_t>(c, kBlock));
    TANDEM_LAUNCH(cgrid, kBlock, 0, stream, bn_grad_finalize_kernel<T>)
    (n, c, m, splits, partial.data_ptr<double>(), ptr_or_null<T>(grad_weight),
     ptr_or_null<T>(grad_bias), coef.data_ptr<double>());
    if (grad_x.defined()) {
      const int egrid = grid_for(total, kBlock, kBlock);
      dispatch_index_width(fits_int32({total}), [&](auto index_tag) {
        using Index = decltype(index_tag);
        TANDEM_LAUNCH(egrid, kBlock, 0, stream, bn_grad_input_kernel<T, Index>)
        (grad_y.data_ptr<T>(), x.data_ptr<T>(), ptr_or_null<T>(weight),
         save_mean.data_ptr<double>(), save_invstd.data_ptr<double>(), Divmod<Index>(c),
         Divmod<Index>(m), static_cast<Index>(total), coef.data_ptr<double>(),
         grad_x.data_ptr<T>());
      });
    }
  });
}

}  // namespace cuda
}  // namespace tandem
