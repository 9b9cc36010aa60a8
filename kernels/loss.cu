// Loss and gradient-scatter kernels: cuda::cross_entropy_forward/backward and
// cuda::scatter_add / cuda::index_add.
//
// Layout: logits [rows, classes] contiguous, target [rows] int32/int64.
//   - cross_entropy_forward: one warp per row (grid-stride over rows). Three
//     warp reductions in one pass over the row for the max and the plain sum,
//     a second pass for sum(exp(x - max)); lse = max + log(sum). Fused: the
//     log-softmax is never written, only loss[r] and lse[r]. Accumulates in
//     the logits' type (float32 rows therefore differ from the CPU's double
//     accumulation by float rounding).
//   - cross_entropy_backward: flat over the rows * classes gradient, one
//     exp per element: g[r] * (exp(x - lse[r]) - (1 - s)[j == t] - s / C).
//   - scatter_add / index_add: flat over the source elements, atomicAdd into
//     the destination (float and double atomics, sm_60+): the order of the
//     additions, and so the float rounding of repeated indices, may vary
//     between runs.
// DIFFERENCE FROM THE CPU: a target outside [0, C) gives NaN loss for that row
// (and NaN gradients); an out-of-range scatter index is skipped. The CPU
// throws; checking here would need a device-to-host sync.
#include <cmath>
#include <cstdint>

#include "core/backend.h"
#include "cuda/cuda_utils.h"

namespace tandem {
namespace cuda {
namespace {

template <typename T>
__device__ __forceinline__ T nan_value() {
  return static_cast<T>(NAN);
}

template <typename T, typename I>
__global__ void cross_entropy_forward_kernel(const T* x, const I* target, T* loss, T* lse,
                                             int64_t rows, int64_t classes, T smoothing) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps_per_block = blockDim.x / kWarpSize;
  const int64_t first =
      static_cast<int64_t>(blockIdx.x) * warps_per_block + threadIdx.x / kWarpSize;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * warps_per_block;
  for (int64_t r = first; r < rows; r += stride) {
    const T* row = x + r * classes;
    T m = -INFINITY, total = 0;
    for (int64_t j = lane; j < classes; j += kWarpSize) {
      const T v = row[j];
      m = v > m ? v : m;
      total += v;
    }
    m = warp_allreduce(m, [](T a, T b) { return a > b ? a : b; });
    total = warp_allreduce(total, [](T a, T b) { return a + b; });
    T s = 0;
    for (int64_t j = lane; j < classes; j += kWarpSize) s += exp(row[j] - m);
    s = warp_allreduce(s, [](T a, T b) { return a + b; });
    if (lane == 0) {
      const T l = m + log(s);
      const auto t = static_cast<int64_t>(target[r]);
      lse[r] = l;
      loss[r] = (t >= 0 && t < classes) ? l - (T(1) - smoothing) * row[t] -
                                              (smoothing / static_cast<T>(classes)) * total
                                        : nan_value<T>();
    }
  }
}

template <typename T, typename I>
__global__ void cross_entropy_backward_kernel(const T* x, const I* target, const T* lse,
                                              const T* grad_loss, T* grad, int64_t rows,
                                              int64_t classes, T smoothing) {
  const int64_t total = rows * classes;
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const T uniform = smoothing / static_cast<T>(classes);
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += nthreads) {
    const int64_t r = e / classes, j = e % classes;
    const auto t = static_cast<int64_t>(target[r]);
    const T hit = j == t ? T(1) - smoothing : T(0);
    const T p = exp(x[e] - lse[r]);
    grad[e] = (t >= 0 && t < classes) ? grad_loss[r] * (p - hit - uniform) : nan_value<T>();
  }
}

template <typename T, typename I>
__global__ void scatter_add_kernel(const T* src, const I* index, T* out, int64_t total,
                                   int64_t out_dim, int64_t idx_dim, int64_t inner) {
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += nthreads) {
    const int64_t i = e % inner;
    const int64_t a = e / (idx_dim * inner);
    const auto k = static_cast<int64_t>(index[e]);
    if (k >= 0 && k < out_dim) atomicAdd(out + (a * out_dim + k) * inner + i, src[e]);
  }
}

template <typename T, typename I>
__global__ void index_add_kernel(const T* src, const I* index, T* out, int64_t total, int64_t m,
                                 int64_t dim_size, int64_t inner) {
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += nthreads) {
    const int64_t i = e % inner;
    const int64_t j = (e / inner) % m;
    const int64_t a = e / (m * inner);
    const auto k = static_cast<int64_t>(index[j]);
    if (k >= 0 && k < dim_size) atomicAdd(out + (a * dim_size + k) * inner + i, src[e]);
  }
}

}  // namespace

void cross_entropy_forward(const Tensor& logits, const Tensor& target, double label_smoothing,
                           Tensor& loss, Tensor& lse) {
  const int64_t rows = logits.size(0), classes = logits.size(1);
  cudaStream_t stream = current_cuda_stream();
  dispatch_index(target.dtype(), "cross_entropy (cuda)", [&](auto itag) {
    using I = decltype(itag);
    dispatch_floating(logits.dtype(), "cross_entropy (cuda)", [&](auto tag) {
      using T = decltype(tag);
      constexpr int kBlock = 128;  // 4 rows per block
      const int grid = grid_for(rows, kBlock / kWarpSize, kBlock);
      cross_entropy_forward_kernel<T, I><<<grid, kBlock, 0, stream>>>(
          logits.data_ptr<T>(), target.data_ptr<I>(), loss.data_ptr<T>(), lse.data_ptr<T>(), rows,
          classes, static_cast<T>(label_smoothing));
      TANDEM_CUDA_CHECK_LAUNCH(cross_entropy_forward_kernel<T, I>);
    });
  });
}

void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                            const Tensor& grad_loss, double label_smoothing, Tensor& grad_logits) {
  const int64_t rows = logits.size(0), classes = logits.size(1);
  cudaStream_t stream = current_cuda_stream();
  dispatch_index(target.dtype(), "cross_entropy (cuda)", [&](auto itag) {
    using I = decltype(itag);
    dispatch_floating(logits.dtype(), "cross_entropy (cuda)", [&](auto tag) {
      using T = decltype(tag);
      constexpr int kBlock = kBlockSize;
      const int grid = grid_for(rows * classes, kBlock, kBlock);
      cross_entropy_backward_kernel<T, I><<<grid, kBlock, 0, stream>>>(
          logits.data_ptr<T>(), target.data_ptr<I>(), lse.data_ptr<T>(), grad_loss.data_ptr<T>(),
          grad_logits.data_ptr<T>(), rows, classes, static_cast<T>(label_smoothing));
      TANDEM_CUDA_CHECK_LAUNCH(cross_entropy_backward_kernel<T, I>);
    });
  });
}

void scatter_add(const Tensor& src, const Tensor& index, Tensor& out, int64_t outer,
                 int64_t out_dim, int64_t idx_dim, int64_t inner) {
  const int64_t total = outer * idx_dim * inner;
  if (total == 0) return;
  cudaStream_t stream = current_cuda_stream();
  dispatch_index(index.dtype(), "scatter_add (cuda)", [&](auto itag) {
    using I = decltype(itag);
    dispatch_floating(out.dtype(), "scatter_add (cuda)", [&](auto tag) {
      using T = decltype(tag);
      constexpr int kBlock = kBlockSize;
      const int grid = grid_for(total, kBlock, kBlock);
      scatter_add_kernel<T, I><<<grid, kBlock, 0, stream>>>(src.data_ptr<T>(), index.data_ptr<I>(),
                                                            out.data_ptr<T>(), total, out_dim,
                                                            idx_dim, inner);
      TANDEM_CUDA_CHECK_LAUNCH(scatter_add_kernel<T, I>);
    });
  });
}

void index_add(const Tensor& src, const Tensor& index, Tensor& out, int64_t outer, int64_t dim_size,
               int64_t inner) {
  const int64_t m = index.numel();
  const int64_t total = outer * m * inner;
  if (total == 0) return;
  cudaStream_t stream = current_cuda_stream();
  dispatch_index(index.dtype(), "index_add (cuda)", [&](auto itag) {
    using I = decltype(itag);
    dispatch_floating(out.dtype(), "index_add (cuda)", [&](auto tag) {
      using T = decltype(tag);
      constexpr int kBlock = kBlockSize;
      const int grid = grid_for(total, kBlock, kBlock);
      index_add_kernel<T, I><<<grid, kBlock, 0, stream>>>(
          src.data_ptr<T>(), index.data_ptr<I>(), out.data_ptr<T>(), total, m, dim_size, inner);
      TANDEM_CUDA_CHECK_LAUNCH(index_add_kernel<T, I>);
    });
  });
}

}  // namespace cuda
}  // namespace tandem
