// Pooling kernels: cuda::max_pool2d_forward/backward, cuda::avg_pool2d_forward/
// backward, cuda::adaptive_avg_pool2d_forward/backward (NCHW, contiguous,
// float32/float64; contracts in core/backend_decls.inc, CPU twins in
// src/cpu/conv.cpp).
//
// Forward kernels: one thread per output element (grid-stride), scanning its
// window in row-major order; max keeps the first maximum (strict >) and the
// first NaN, exactly as the CPU. Backward kernels are gathers, one thread per
// input element summing over the output windows that cover it, so they need
// no atomics and are deterministic. Max backward adds grad_y where the saved
// argmax equals this element; avg adds grad_y / divisor. Sums run in the
// element type, in window order, like the CPU loops (the CPU scatters, the
// GPU gathers, so the additions into one input element may come in another
// order: results agree to rounding).
#include <cstdint>

#include "core/backend.h"
#include "core/pool_window.h"
#include "cuda/cuda_utils.h"

namespace tandem {
namespace cuda {
namespace {

using pool::adaptive_window;
using pool::Span;
using pool::window;

// Output windows [lo, hi) along one axis that contain input position u.
__device__ __forceinline__ Span covering(int64_t u, int64_t stride, int64_t pad, int64_t kernel,
                                         int64_t out) {
  // i * stride - pad <= u < i * stride - pad + kernel
  const int64_t a = u + pad - kernel + 1;  // i * stride >= a
  int64_t lo = a <= 0 ? 0 : (a + stride - 1) / stride;
  int64_t hi = (u + pad) / stride + 1;
  if (hi > out) hi = out;
  if (lo > hi) lo = hi;
  return {lo, hi};
}

// ---- Kernels ------------------------------------------------------------------------------

template <typename T>
__global__ void max_pool2d_forward_kernel(const T* x, T* y, int64_t* indices, PoolShape s,
                                          int64_t total) {
  const int64_t stride_all = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total;
       o += stride_all) {
    const int64_t j = o % s.ow;
    const int64_t i = (o / s.ow) % s.oh;
    const int64_t plane = o / (s.ow * s.oh);
    const T* in = x + plane * s.h * s.w;
    const Span rows = window(i, s.sh, s.ph, s.kh, s.h);
    const Span cols = window(j, s.sw, s.pw, s.kw, s.w);
    T best;
    int64_t arg;
    pool::window_max(in, s.w, rows, cols, best, arg);
    y[o] = best;
    indices[o] = arg;
  }
}

template <typename T>
__global__ void max_pool2d_backward_kernel(const T* grad_y, const int64_t* indices, T* grad_x,
                                           PoolShape s, int64_t total) {
  const int64_t stride_all = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride_all) {
    const int64_t v = e % s.w;
    const int64_t u = (e / s.w) % s.h;
    const int64_t plane = e / (s.w * s.h);
    const Span is = covering(u, s.sh, s.ph, s.kh, s.oh);
    const Span js = covering(v, s.sw, s.pw, s.kw, s.ow);
    const int64_t base = plane * s.oh * s.ow, me = u * s.w + v;
    T acc = 0;
    for (int64_t i = is.lo; i < is.hi; ++i)
      for (int64_t j = js.lo; j < js.hi; ++j)
        if (indices[base + i * s.ow + j] == me) acc += grad_y[base + i * s.ow + j];
    grad_x[e] = acc;
  }
}

__device__ __forceinline__ int64_t avg_divisor(const PoolShape& s, const Span& rows,
                                               const Span& cols) {
  return s.count_include_pad ? s.kh * s.kw : (rows.hi - rows.lo) * (cols.hi - cols.lo);
}

template <typename T>
__global__ void avg_pool2d_forward_kernel(const T* x, T* y, PoolShape s, int64_t total) {
  const int64_t stride_all = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total;
       o += stride_all) {
    const int64_t j = o % s.ow;
    const int64_t i = (o / s.ow) % s.oh;
    const int64_t plane = o / (s.ow * s.oh);
    const T* in = x + plane * s.h * s.w;
    const Span rows = window(i, s.sh, s.ph, s.kh, s.h);
    const Span cols = window(j, s.sw, s.pw, s.kw, s.w);
    T sum = 0;
    for (int64_t u = rows.lo; u < rows.hi; ++u)
      for (int64_t v = cols.lo; v < cols.hi; ++v) sum += in[u * s.w + v];
    const int64_t div = avg_divisor(s, rows, cols);
    y[o] = div > 0 ? sum / static_cast<T>(div) : T(0);
  }
}

template <typename T>
__global__ void avg_pool2d_backward_kernel(const T* grad_y, T* grad_x, PoolShape s, int64_t total) {
  const int64_t stride_all = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride_all) {
    const int64_t v = e % s.w;
    const int64_t u = (e / s.w) % s.h;
    const int64_t plane = e / (s.w * s.h);
    const Span is = covering(u, s.sh, s.ph, s.kh, s.oh);
    const Span js = covering(v, s.sw, s.pw, s.kw, s.ow);
    const int64_t base = plane * s.oh * s.ow;
    T acc = 0;
    for (int64_t i = is.lo; i < is.hi; ++i) {
      const Span rows = window(i, s.sh, s.ph, s.kh, s.h);
      for (int64_t j = js.lo; j < js.hi; ++j) {
        const Span cols = window(j, s.sw, s.pw, s.kw, s.w);
        const int64_t div = avg_divisor(s, rows, cols);
        if (div > 0) acc += grad_y[base + i * s.ow + j] / static_cast<T>(div);
      }
    }
    grad_x[e] = acc;
  }
}

template <typename T>
__global__ void adaptive_avg_pool2d_forward_kernel(const T* x, T* y, PoolShape s, int64_t total) {
  const int64_t stride_all = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total;
       o += stride_all) {
    const int64_t j = o % s.ow;
    const int64_t i = (o / s.ow) % s.oh;
    const int64_t plane = o / (s.ow * s.oh);
    const T* in = x + plane * s.h * s.w;
    const Span rows = adaptive_window(i, s.oh, s.h);
    const Span cols = adaptive_window(j, s.ow, s.w);
    T sum = 0;
    for (int64_t u = rows.lo; u < rows.hi; ++u)
      for (int64_t v = cols.lo; v < cols.hi; ++v) sum += in[u * s.w + v];
    y[o] = sum / static_cast<T>((rows.hi - rows.lo) * (cols.hi - cols.lo));
  }
}

template <typename T>
__global__ void adaptive_avg_pool2d_backward_kernel(const T* grad_y, T* grad_x, PoolShape s,
                                                    int64_t total) {
  const int64_t stride_all = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride_all) {
    const int64_t v = e % s.w;
    const int64_t u = (e / s.w) % s.h;
    const int64_t plane = e / (s.w * s.h);
    const int64_t base = plane * s.oh * s.ow;
    // Windows containing u: a superset of candidates, filtered exactly.
    int64_t i_lo = (u * s.oh) / s.h - 1, i_hi = ((u + 1) * s.oh + s.h - 1) / s.h + 1;
    int64_t j_lo = (v * s.ow) / s.w - 1, j_hi = ((v + 1) * s.ow + s.w - 1) / s.w + 1;
    i_lo = i_lo < 0 ? 0 : i_lo;
    j_lo = j_lo < 0 ? 0 : j_lo;
    i_hi = i_hi > s.oh ? s.oh : i_hi;
    j_hi = j_hi > s.ow ? s.ow : j_hi;
    T acc = 0;
    for (int64_t i = i_lo; i < i_hi; ++i) {
      const Span rows = adaptive_window(i, s.oh, s.h);
      if (u < rows.lo || u >= rows.hi) continue;
      for (int64_t j = j_lo; j < j_hi; ++j) {
        const Span cols = adaptive_window(j, s.ow, s.w);
        if (v < cols.lo || v >= cols.hi) continue;
        acc +=
            grad_y[base + i * s.ow + j] / static_cast<T>((rows.hi - rows.lo) * (cols.hi - cols.lo));
      }
    }
    grad_x[e] = acc;
  }
}

constexpr int kBlock = kBlockSize;

}  // namespace

// ---- Host launchers ---------------------------------------------------------------------

void max_pool2d_forward(const Tensor& x, const PoolShape& s, Tensor& y, Tensor& indices) {
  const int64_t total = s.n * s.c * s.oh * s.ow;
  const int grid = grid_for(total, kBlock, kBlock);
  cudaStream_t stream = current_cuda_stream();
  TANDEM_DISPATCH_FLOATING(x.dtype(), "max_pool2d (cuda)", [&] {
    max_pool2d_forward_kernel<scalar_t><<<grid, kBlock, 0, stream>>>(
        x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), indices.data_ptr<int64_t>(), s, total);
    TANDEM_CUDA_CHECK_LAUNCH(max_pool2d_forward_kernel<scalar_t>);
  });
}

void max_pool2d_backward(const Tensor& grad_y, const Tensor& indices, const PoolShape& s,
                         Tensor& grad_x) {
  const int64_t total = s.n * s.c * s.h * s.w;
  const int grid = grid_for(total, kBlock, kBlock);
  cudaStream_t stream = current_cuda_stream();
  TANDEM_DISPATCH_FLOATING(grad_y.dtype(), "max_pool2d backward (cuda)", [&] {
    max_pool2d_backward_kernel<scalar_t>
        <<<grid, kBlock, 0, stream>>>(grad_y.data_ptr<scalar_t>(), indices.data_ptr<int64_t>(),
                                      grad_x.data_ptr<scalar_t>(), s, total);
    TANDEM_CUDA_CHECK_LAUNCH(max_pool2d_backward_kernel<scalar_t>);
  });
}

void avg_pool2d_forward(const Tensor& x, const PoolShape& s, Tensor& y) {
  const int64_t total = s.n * s.c * s.oh * s.ow;
  const int grid = grid_for(total, kBlock, kBlock);
  cudaStream_t stream = current_cuda_stream();
  TANDEM_DISPATCH_FLOATING(x.dtype(), "avg_pool2d (cuda)", [&] {
    avg_pool2d_forward_kernel<scalar_t>
        <<<grid, kBlock, 0, stream>>>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), s, total);
    TANDEM_CUDA_CHECK_LAUNCH(avg_pool2d_forward_kernel<scalar_t>);
  });
}

void avg_pool2d_backward(const Tensor& grad_y, const PoolShape& s, Tensor& grad_x) {
  const int64_t total = s.n * s.c * s.h * s.w;
  const int grid = grid_for(total, kBlock, kBlock);
  cudaStream_t stream = current_cuda_stream();
  TANDEM_DISPATCH_FLOATING(grad_y.dtype(), "avg_pool2d backward (cuda)", [&] {
    avg_pool2d_backward_kernel<scalar_t><<<grid, kBlock, 0, stream>>>(
        grad_y.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(), s, total);
    TANDEM_CUDA_CHECK_LAUNCH(avg_pool2d_backward_kernel<scalar_t>);
  });
}

void adaptive_avg_pool2d_forward(const Tensor& x, const PoolShape& s, Tensor& y) {
  const int64_t total = s.n * s.c * s.oh * s.ow;
  const int grid = grid_for(total, kBlock, kBlock);
  cudaStream_t stream = current_cuda_stream();
  TANDEM_DISPATCH_FLOATING(x.dtype(), "adaptive_avg_pool2d (cuda)", [&] {
    adaptive_avg_pool2d_forward_kernel<scalar_t>
        <<<grid, kBlock, 0, stream>>>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), s, total);
    TANDEM_CUDA_CHECK_LAUNCH(adaptive_avg_pool2d_forward_kernel<scalar_t>);
  });
}

void adaptive_avg_pool2d_backward(const Tensor& grad_y, const PoolShape& s, Tensor& grad_x) {
  const int64_t total = s.n * s.c * s.h * s.w;
  const int grid = grid_for(total, kBlock, kBlock);
  cudaStream_t stream = current_cuda_stream();
  TANDEM_DISPATCH_FLOATING(grad_y.dtype(), "adaptive_avg_pool2d backward (cuda)", [&] {
    adaptive_avg_pool2d_backward_kernel<scalar_t><<<grid, kBlock, 0, stream>>>(
        grad_y.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(), s, total);
    TANDEM_CUDA_CHECK_LAUNCH(adaptive_avg_pool2d_backward_kernel<scalar_t>);
  });
}

}  // namespace cuda
}  // namespace tandem
