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
// Index arithmetic: an element's (plane, row, col) and the output windows
// covering an input position divide by fixed sizes and strides; with every
// count and position below 2^31 the kernels use uint32_t and FastDivmod
// (core/fast_divmod.h), otherwise int64_t division. The adaptive windows'
// own divisions (by the output size) stay 64-bit.
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

// Element e of [planes, rows, cols] as (plane, row, col).
template <typename Index>
struct PlaneSplit {
  Divmod<Index> cols, rows;
  __device__ __forceinline__ void split(Index e, int64_t& plane, int64_t& r, int64_t& c) const {
    Index rest, cc, rr, pp;
    cols.divmod(e, rest, cc);
    rows.divmod(rest, pp, rr);
    plane = static_cast<int64_t>(pp);
    r = static_cast<int64_t>(rr);
    c = static_cast<int64_t>(cc);
  }
};

// Output windows [lo, hi) along one axis that contain input position u
// (stride: the axis' stride as a divider; u + pad fits in Index).
template <typename Index>
__device__ __forceinline__ Span covering(int64_t u, Divmod<Index> stride, int64_t pad,
                                         int64_t kernel, int64_t out) {
  // i * stride - pad <= u < i * stride - pad + kernel
  const int64_t a = u + pad - kernel + 1;  // i * stride >= a
  const int64_t st = static_cast<int64_t>(stride.divisor);
  int64_t lo = a <= 0 ? 0 : static_cast<int64_t>(stride.div(static_cast<Index>(a + st - 1)));
  int64_t hi = static_cast<int64_t>(stride.div(static_cast<Index>(u + pad))) + 1;
  if (hi > out) hi = out;
  if (lo > hi) lo = hi;
  return {lo, hi};
}

// ---- Kernels ------------------------------------------------------------------------------

template <typename T, typename Index>
__global__ void max_pool2d_forward_kernel(const T* x, T* y, int64_t* indices, PoolShape s,
                                          PlaneSplit<Index> out_split, Index total) {
  for (Index o = grid_thread<Index>(); o < total; o += grid_threads<Index>()) {
    int64_t plane, i, j;
    out_split.split(o, plane, i, j);
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

template <typename T, typename Index>
__global__ void max_pool2d_backward_kernel(const T* grad_y, const int64_t* indices, T* grad_x,
                                           PoolShape s, PlaneSplit<Index> in_split,
                                           Divmod<Index> sh, Divmod<Index> sw, Index total) {
  for (Index e = grid_thread<Index>(); e < total; e += grid_threads<Index>()) {
    int64_t plane, u, v;
    in_split.split(e, plane, u, v);
    const Span is = covering(u, sh, s.ph, s.kh, s.oh);
    const Span js = covering(v, sw, s.pw, s.kw, s.ow);
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

template <typename T, typename Index>
__global__ void avg_pool2d_forward_kernel(const T* x, T* y, PoolShape s,
                                          PlaneSplit<Index> out_split, Index total) {
  for (Index o = grid_thread<Index>(); o < total; o += grid_threads<Index>()) {
    int64_t plane, i, j;
    out_split.split(o, plane, i, j);
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

template <typename T, typename Index>
__global__ void avg_pool2d_backward_kernel(const T* grad_y, T* grad_x, PoolShape s,
                                           PlaneSplit<Index> in_split, Divmod<Index> sh,
                                           Divmod<Index> sw, Index total) {
  for (Index e = grid_thread<Index>(); e < total; e += grid_threads<Index>()) {
    int64_t plane, u, v;
    in_split.split(e, plane, u, v);
    const Span is = covering(u, sh, s.ph, s.kh, s.oh);
    const Span js = covering(v, sw, s.pw, s.kw, s.ow);
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

template <typename T, typename Index>
__global__ void adaptive_avg_pool2d_forward_kernel(const T* x, T* y, PoolShape s,
                                                   PlaneSplit<Index> out_split, Index total) {
  for (Index o = grid_thread<Index>(); o < total; o += grid_threads<Index>()) {
    int64_t plane, i, j;
    out_split.split(o, plane, i, j);
    const T* in = x + plane * s.h * s.w;
    const Span rows = adaptive_window(i, s.oh, s.h);
    const Span cols = adaptive_window(j, s.ow, s.w);
    T sum = 0;
    for (int64_t u = rows.lo; u < rows.hi; ++u)
      for (int64_t v = cols.lo; v < cols.hi; ++v) sum += in[u * s.w + v];
    y[o] = sum / static_cast<T>((rows.hi - rows.lo) * (cols.hi - cols.lo));
  }
}

template <typename T, typename Index>
__global__ void adaptive_avg_pool2d_backward_kernel(const T* grad_y, T* grad_x, PoolShape s,
                                                    PlaneSplit<Index> in_split, Index total) {
  for (Index e = grid_thread<Index>(); e < total; e += grid_threads<Index>()) {
    int64_t plane, u, v;
    in_split.split(e, plane, u, v);
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

// 32-bit index arithmetic when every element count and window position fits.
bool pool_fits_int32(const PoolShape& s) {
  return fits_int32({s.n * s.c * s.h * s.w, s.n * s.c * s.oh * s.ow, s.h + s.ph + s.kh + s.sh,
                     s.w + s.pw + s.kw + s.sw});
}

// Launches kernel<Index> over `total` elements with the plane split of
// [.., rows, cols] (the output for forward kernels, the input for backward).
template <typename Launch>
void launch_pool(const PoolShape& s, int64_t total, int64_t rows, int64_t cols,
                 const Launch& launch) {
  const int grid = grid_for(total, kBlock, kBlock);
  dispatch_index_width(pool_fits_int32(s), [&](auto index) {
    using Index = decltype(index);
    const PlaneSplit<Index> split{Divmod<Index>(cols), Divmod<Index>(rows)};
    launch(grid, split, static_cast<Index>(total));
  });
}

}  // namespace

// ---- Host launchers ---------------------------------------------------------------------

void max_pool2d_forward(const Tensor& x, const PoolShape& s, Tensor& y, Tensor& indices) {
  cudaStream_t stream = current_cuda_stream();
  TANDEM_DISPATCH_FLOATING(x.dtype(), "max_pool2d (cuda)", [&] {
    launch_pool(s, s.n * s.c * s.oh * s.ow, s.oh, s.ow, [&](int grid, auto split, auto total) {
      using Index = decltype(total);
      max_pool2d_forward_kernel<scalar_t, Index>
          <<<grid, kBlock, 0, stream>>>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                                        indices.data_ptr<int64_t>(), s, split, total);
      TANDEM_CUDA_CHECK_LAUNCH(max_pool2d_forward_kernel<scalar_t, Index>);
    });
  });
}

void max_pool2d_backward(const Tensor& grad_y, const Tensor& indices, const PoolShape& s,
                         Tensor& grad_x) {
  cudaStream_t stream = current_cuda_stream();
  TANDEM_DISPATCH_FLOATING(grad_y.dtype(), "max_pool2d backward (cuda)", [&] {
    launch_pool(s, s.n * s.c * s.h * s.w, s.h, s.w, [&](int grid, auto split, auto total) {
      using Index = decltype(total);
      max_pool2d_backward_kernel<scalar_t, Index><<<grid, kBlock, 0, stream>>>(
          grad_y.data_ptr<scalar_t>(), indices.data_ptr<int64_t>(), grad_x.data_ptr<scalar_t>(), s,
          split, Divmod<Index>(s.sh), Divmod<Index>(s.sw), total);
      TANDEM_CUDA_CHECK_LAUNCH(max_pool2d_backward_kernel<scalar_t, Index>);
    });
  });
}

void avg_pool2d_forward(const Tensor& x, const PoolShape& s, Tensor& y) {
  cudaStream_t stream = current_cuda_stream();
  TANDEM_DISPATCH_FLOATING(x.dtype(), "avg_pool2d (cuda)", [&] {
    launch_pool(s, s.n * s.c * s.oh * s.ow, s.oh, s.ow, [&](int grid, auto split, auto total) {
      using Index = decltype(total);
      avg_pool2d_forward_kernel<scalar_t, Index><<<grid, kBlock, 0, stream>>>(
          x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), s, split, total);
      TANDEM_CUDA_CHECK_LAUNCH(avg_pool2d_forward_kernel<scalar_t, Index>);
    });
  });
}

void avg_pool2d_backward(const Tensor& grad_y, const PoolShape& s, Tensor& grad_x) {
  cudaStream_t stream = current_cuda_stream();
  TANDEM_DISPATCH_FLOATING(grad_y.dtype(), "avg_pool2d backward (cuda)", [&] {
    launch_pool(s, s.n * s.c * s.h * s.w, s.h, s.w, [&](int grid, auto split, auto total) {
      using Index = decltype(total);
      avg_pool2d_backward_kernel<scalar_t, Index>
          <<<grid, kBlock, 0, stream>>>(grad_y.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(), s,
                                        split, Divmod<Index>(s.sh), Divmod<Index>(s.sw), total);
      TANDEM_CUDA_CHECK_LAUNCH(avg_pool2d_backward_kernel<scalar_t, Index>);
    });
  });
}

void adaptive_avg_pool2d_forward(const Tensor& x, const PoolShape& s, Tensor& y) {
  cudaStream_t stream = current_cuda_stream();
  TANDEM_DISPATCH_FLOATING(x.dtype(), "adaptive_avg_pool2d (cuda)", [&] {
    launch_pool(s, s.n * s.c * s.oh * s.ow, s.oh, s.ow, [&](int grid, auto split, auto total) {
      using Index = decltype(total);
      adaptive_avg_pool2d_forward_kernel<scalar_t, Index><<<grid, kBlock, 0, stream>>>(
          x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), s, split, total);
      TANDEM_CUDA_CHECK_LAUNCH(adaptive_avg_pool2d_forward_kernel<scalar_t, Index>);
    });
  });
}

void adaptive_avg_pool2d_backward(const Tensor& grad_y, const PoolShape& s, Tensor& grad_x) {
  cudaStream_t stream = current_cuda_stream();
  TANDEM_DISPATCH_FLOATING(grad_y.dtype(), "adaptive_avg_pool2d backward (cuda)", [&] {
    launch_pool(s, s.n * s.c * s.h * s.w, s.h, s.w, [&](int grid, auto split, auto total) {
      using Index = decltype(total);
      adaptive_avg_pool2d_backward_kernel<scalar_t, Index><<<grid, kBlock, 0, stream>>>(
          grad_y.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(), s, split, total);
      TANDEM_CUDA_CHECK_LAUNCH(adaptive_avg_pool2d_backward_kernel<scalar_t, Index>);
    });
  });
}

}  // namespace cuda
}  // namespace tandem
