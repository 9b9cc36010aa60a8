// Softmax and log-softmax over one dim: cuda::softmax.
//
// x (contiguous, float32/float64) is viewed as [outer, n, inner]; each of the
// outer * inner vectors of length n is normalised:
//   m = max_j x_j,  s = sum_j exp(x_j - m)
//   softmax: exp(x_j - m) / s      log_softmax: (x_j - m) - log(s)
// (the max is subtracted first, so exp never overflows; a row of -inf gives NaN,
// as on the CPU). The max and exp(x - m) are computed in the input type; the sum
// is accumulated in double (tree order, not the CPU's sequential one) and the
// output is formed in double from 1/s or log(s) and rounded once, so float32
// results stay within a few ulp of the CPU's all-double reference.
// Kernels:
//   - inner == 1, 16 < n <= 1024: one warp per row, the row held in registers
//     (one read of x, one write of out);
//   - inner == 1, n > 1024: one block per row, three passes over the row (the
//     second and third mostly hit L2);
//   - inner > 1, or n <= 16: one thread per (outer, inner) column, coalesced
//     across inner;
//   - the same with few columns and long ones (softmax over dim 0 of a tall,
//     narrow tensor: [100003, 3] has 3 columns, which would be 3 threads):
//     each column is split into chunks, as reduce.cu does. Pass 1, a thread
//     per (column, chunk): the chunk's max m_k and s_k = sum exp(x - m_k)
//     (in double; an element equal to -inf adds 0, so a chunk of -inf gives
//     s_k = 0 rather than NaN). Pass 2, a thread per column: M = max m_k,
//     S = sum_k s_k exp(m_k - M) in chunk order (the log-sum-exp rule), then
//     M and the normaliser. Pass 3, a thread per element (coalesced; index
//     split with FastDivmod when the tensor fits in int32): the output from
//     x, M and the normaliser. A row of -inf, NaN or +inf gives NaN, as above.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/backend.h"
#include "core/elementwise_math.h"
#include "cuda/cuda_utils.h"

namespace tandem {
namespace cuda {
namespace {

template <typename T>
struct MaxFn {
  __device__ __forceinline__ T operator()(T a, T b) const { return b > a ? b : a; }
};
struct SumFn {
  __device__ __forceinline__ double operator()(double a, double b) const { return a + b; }
};

// The per-row normaliser: 1/s for softmax, log(s) for log-softmax.
template <SoftmaxKind kind>
__device__ __forceinline__ double row_norm(double sum) {
  if constexpr (kind == SoftmaxKind::Softmax) {
    return 1.0 / sum;
  } else {
    return log(sum);
  }
}

// out = exp(x - m) / s  or  (x - m) - log(s), from x, m and row_norm.
template <typename T, SoftmaxKind kind>
__device__ __forceinline__ T softmax_output(T x, T max, double norm) {
  if constexpr (kind == SoftmaxKind::Softmax) {
    return static_cast<T>(static_cast<double>(math::exp(x - max)) * norm);
  } else {
    return static_cast<T>((static_cast<double>(x) - static_cast<double>(max)) - norm);
  }
}

// ---- Kernels ------------------------------------------------------------------------------------

// One warp per row of length n <= 32 * kItems; each lane keeps kItems values.
template <typename T, SoftmaxKind kind, int kItems>
__global__ void softmax_rows_warp_kernel(const T* x, T* out, int64_t rows, int n) {
  const int lane = static_cast<int>(threadIdx.x % kWarpSize);
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarpSize;
  for (int64_t row = warp; row < rows; row += nwarps) {
    const T* xr = x + row * n;
    T* outr = out + row * n;
    T v[kItems] = {};  // (g++ cannot see that the guarded reads match the writes)
    T max = -std::numeric_limits<T>::infinity();
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      const int j = lane + k * kWarpSize;
      if (j < n) {
        v[k] = xr[j];
        max = v[k] > max ? v[k] : max;
      }
    }
    max = warp_allreduce(max, MaxFn<T>());
    double sum = 0.0;
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      const int j = lane + k * kWarpSize;
      if (j < n) {
        const T e = math::exp(v[k] - max);
        sum += static_cast<double>(e);
        if constexpr (kind == SoftmaxKind::Softmax) v[k] = e;  // keep exp(x - m), not x
      }
    }
    sum = warp_allreduce(sum, SumFn());
    const double norm = row_norm<kind>(sum);
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      const int j = lane + k * kWarpSize;
      if (j < n) {
        if constexpr (kind == SoftmaxKind::Softmax) {
          outr[j] = static_cast<T>(static_cast<double>(v[k]) * norm);
        } else {
          outr[j] = static_cast<T>((static_cast<double>(v[k]) - static_cast<double>(max)) - norm);
        }
      }
    }
  }
}

// One block per row (long rows): max pass, sum pass, write pass.
template <typename T, SoftmaxKind kind, int kBlock>
__global__ void __launch_bounds__(kBlock)
    softmax_rows_block_kernel(const T* x, T* out, int64_t rows, int64_t n) {
  TANDEM_SHARED(T, max_scratch, [kBlock / kWarpSize + 1]);
  TANDEM_SHARED(double, sum_scratch, [kBlock / kWarpSize + 1]);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * n;
    T* outr = out + row * n;
    T max = -std::numeric_limits<T>::infinity();
    for (int64_t j = threadIdx.x; j < n; j += kBlock) max = xr[j] > max ? xr[j] : max;
    max =
        block_allreduce<kBlock>(max, MaxFn<T>(), -std::numeric_limits<T>::infinity(), max_scratch);
    double sum = 0.0;
    for (int64_t j = threadIdx.x; j < n; j += kBlock)
      sum += static_cast<double>(math::exp(xr[j] - max));
    sum = block_allreduce<kBlock>(sum, SumFn(), 0.0, sum_scratch);
    const double norm = row_norm<kind>(sum);
    for (int64_t j = threadIdx.x; j < n; j += kBlock) {
      outr[j] = softmax_output<T, kind>(xr[j], max, norm);
    }
  }
}

// One thread per (outer, inner) column; consecutive threads take consecutive i.
template <typename T, SoftmaxKind kind>
__global__ void softmax_cols_kernel(const T* x, T* out, int64_t outer, int64_t n, int64_t inner) {
  const int64_t columns = outer * inner;
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < columns;
       c += nthreads) {
    const int64_t o = c / inner;
    const int64_t i = c % inner;
    const T* xc = x + o * n * inner + i;
    T* outc = out + o * n * inner + i;
    T max = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < n; ++j) max = xc[j * inner] > max ? xc[j * inner] : max;
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) sum += static_cast<double>(math::exp(xc[j * inner] - max));
    const double norm = row_norm<kind>(sum);
    for (int64_t j = 0; j < n; ++j) {
      outc[j * inner] = softmax_output<T, kind>(xc[j * inner], max, norm);
    }
  }
}

// Chunked columns, pass 1: task t = (o * chunks + k) * inner + i.
template <typename T>
__global__ void softmax_cols_partial_kernel(const T* x, int64_t outer, int64_t n, int64_t inner,
                                            int64_t chunk_len, int64_t chunks, double* partial) {
  const int64_t tasks = outer * chunks * inner;
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < tasks;
       t += nthreads) {
    const int64_t i = t % inner;
    const int64_t ok = t / inner;
    const int64_t k = ok % chunks;
    const int64_t o = ok / chunks;
    const int64_t j0 = k * chunk_len;
    const int64_t j1 = j0 + chunk_len < n ? j0 + chunk_len : n;
    const T* xc = x + (o * n + j0) * inner + i;
    T max = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < j1 - j0; ++j) max = xc[j * inner] > max ? xc[j * inner] : max;
    double sum = 0.0;
    for (int64_t j = 0; j < j1 - j0; ++j) {
      const T v = xc[j * inner];
      if (v != -std::numeric_limits<T>::infinity()) sum += static_cast<double>(math::exp(v - max));
    }
    partial[2 * t] = static_cast<double>(max);
    partial[2 * t + 1] = sum;
  }
}

// Chunked columns, pass 2: column c = o * inner + i combines its chunks into
// stats[2 c] = M, stats[2 c + 1] = row_norm(S).
template <SoftmaxKind kind>
__global__ void softmax_cols_combine_kernel(const double* partial, int64_t outer, int64_t chunks,
                                            int64_t inner, double* stats) {
  const int64_t columns = outer * inner;
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < columns;
       c += nthreads) {
    const int64_t o = c / inner, i = c % inner;
    const double* p = partial + 2 * (o * chunks * inner + i);  // chunk k at p + 2 k inner
    double max = -std::numeric_limits<double>::infinity();
    for (int64_t k = 0; k < chunks; ++k) max = p[2 * k * inner] > max ? p[2 * k * inner] : max;
    double sum = 0.0;
    for (int64_t k = 0; k < chunks; ++k) sum += p[2 * k * inner + 1] * exp(p[2 * k * inner] - max);
    stats[2 * c] = max;
    stats[2 * c + 1] = row_norm<kind>(sum);
  }
}

// Chunked columns, pass 3: one thread per element e = (o * n + j) * inner + i.
template <typename T, SoftmaxKind kind, typename Index>
__global__ void softmax_cols_output_kernel(const T* x, T* out, Index total, Divmod<Index> slab,
                                           Divmod<Index> inner, const double* stats) {
  for (Index e = grid_thread<Index>(); e < total; e += grid_threads<Index>()) {
    const Index c = slab.div(e) * inner.divisor + inner.mod(e);
    out[e] = softmax_output<T, kind>(x[e], static_cast<T>(stats[2 * c]), stats[2 * c + 1]);
  }
}

// ---- Host launchers
// -------------------------------------------------------------------------------

constexpr int64_t kThreadRowMax = 16;  // rows up to this long: a thread per row
constexpr int kSmallWarpItems = 8;     // n <= 256
constexpr int kLargeWarpItems = 32;    // n <= 1024
constexpr int64_t kMaxChunks = 1024;

// Chunks per column for the column kernels (1: no split), as reduce.cu's
// reduce_cols: split when the columns alone are less than half the threads
// the GPU holds and a column has at least 64 elements.
int64_t column_chunks(int64_t columns, int64_t n) {
  const int64_t target_threads = static_cast<int64_t>(detail::multiprocessor_count()) * 2048;
  if (columns >= target_threads / 2 || n < 64) return 1;
  const int64_t chunks = std::min({ceil_div(target_threads, columns), n / 32, kMaxChunks});
  return std::max<int64_t>(chunks, 1);
}

template <typename T, SoftmaxKind kind>
void softmax_cols_chunked(const T* x, T* out, int64_t outer, int64_t n, int64_t inner,
                          int64_t chunks) {
  constexpr int kBlock = kBlockSize;
  cudaStream_t stream = current_cuda_stream();
  const int64_t columns = outer * inner;
  const int64_t chunk_len = ceil_div(n, chunks);
  chunks = ceil_div(n, chunk_len);
  detail::DeviceWorkspace partial(static_cast<size_t>(columns * chunks) * 2 * sizeof(double));
  detail::DeviceWorkspace stats(static_cast<size_t>(columns) * 2 * sizeof(double));
  int grid = grid_for(columns * chunks, kBlock, kBlock);
  TANDEM_LAUNCH(grid, kBlock, 0, stream, softmax_cols_partial_kernel<T>)
  (x, outer, n, inner, chunk_len, chunks, partial.as<double>());
  grid = grid_for(columns, kBlock, kBlock);
  TANDEM_LAUNCH(grid, kBlock, 0, stream, softmax_cols_combine_kernel<kind>)
  (partial.as<double>(), outer, chunks, inner, stats.as<double>());
  const int64_t total = outer * n * inner;
  grid = grid_for(total, kBlock, kBlock);
  dispatch_index_width(fits_int32({total}), [&](auto index_tag) {
    using Index = decltype(index_tag);
    TANDEM_LAUNCH(grid, kBlock, 0, stream, softmax_cols_output_kernel<T, kind, Index>)
    (x, out, static_cast<Index>(total), Divmod<Index>(n * inner), Divmod<Index>(inner),
     stats.as<double>());
  });
}

template <typename T, SoftmaxKind kind, int kItems>
void launch_rows_warp(const T* x, T* out, int64_t rows, int64_t n) {
  constexpr int kBlock = kBlockSize;
  const int grid = grid_for(rows * kWarpSize, kBlock, kBlock);
  TANDEM_LAUNCH(grid, kBlock, 0, current_cuda_stream(), softmax_rows_warp_kernel<T, kind, kItems>)
  (x, out, rows, static_cast<int>(n));
}

template <typename T, SoftmaxKind kind>
void softmax_typed(const Tensor& x, Tensor& out, int64_t outer, int64_t n, int64_t inner) {
  const T* xp = x.data_ptr<T>();
  T* op = out.data_ptr<T>();
  cudaStream_t stream = current_cuda_stream();
  if (inner == 1 && n > kThreadRowMax && n <= kWarpSize * kSmallWarpItems) {
    launch_rows_warp<T, kind, kSmallWarpItems>(xp, op, outer, n);
  } else if (inner == 1 && n > kThreadRowMax && n <= kWarpSize * kLargeWarpItems) {
    launch_rows_warp<T, kind, kLargeWarpItems>(xp, op, outer, n);
  } else if (inner == 1 && n > kThreadRowMax) {
    constexpr int kBlock = 512;
    const int grid = grid_for(outer, 1, kBlock);
    TANDEM_LAUNCH(grid, kBlock, 0, stream, softmax_rows_block_kernel<T, kind, kBlock>)
    (xp, op, outer, n);
  } else if (const int64_t chunks = column_chunks(outer * inner, n); chunks > 1) {
    softmax_cols_chunked<T, kind>(xp, op, outer, n, inner, chunks);
  } else {
    constexpr int kBlock = kBlockSize;
    const int grid = grid_for(outer * inner, kBlock, kBlock);
    TANDEM_LAUNCH(grid, kBlock, 0, stream, softmax_cols_kernel<T, kind>)(xp, op, outer, n, inner);
  }
}

}  // namespace

void softmax(SoftmaxKind kind, const Tensor& x, Tensor& out, int64_t outer, int64_t n,
             int64_t inner) {
  TANDEM_CHECK(n >= 1, "softmax (cuda): empty dim");
  TANDEM_DISPATCH_FLOATING(x.dtype(), "softmax (cuda)", [&] {
    if (kind == SoftmaxKind::Softmax) {
      softmax_typed<scalar_t, SoftmaxKind::Softmax>(x, out, outer, n, inner);
    } else {
      softmax_typed<scalar_t, SoftmaxKind::LogSoftmax>(x, out, outer, n, inner);
    }
  });
}

}  // namespace cuda
}  // namespace tandem
