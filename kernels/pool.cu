// Pooling kernels: cuda::max_pool2d_forward/backward, cuda::avg_pool2d_forward/
// backward, cuda::adaptive_avg_pool2d_forward/backward (NCHW, contiguous,
// float32/float64; contracts in core/backend_decls.inc, CPU twins in
// src/cpu/pool.cpp).
//
// Forward passes: one thread per output element (grid-stride), scanning its
// window in row-major order; max keeps the first maximum (strict >) and the
// first NaN, exactly as the CPU. Backward passes are gathers, one thread per
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
// The six passes differ only in what one thread does for one element: each is
// a struct whose `at` handles element e = (plane, r, c) of the tensor it
// covers (the output for forward passes, the input for the backward gathers),
// run by the one grid-stride kernel pool2d_kernel and launched by the one host
// launcher launch_pool2d below.

// Which tensor's elements a pass's threads cover.
enum class PoolCovers { Output, Input };
// Whether a pass's `at` divides by the strides (PoolArgs::sh, sw).
enum class StrideDivmods { No, Yes };

// What the launcher needs to know about a pass.
struct PoolPassInfo {
  PoolCovers covers;
  StrideDivmods strides;
  const char* op;      // the name in dtype errors
  const char* kernel;  // the name in launch errors
};

// What a pass reads and writes.
template <typename T, typename Index>
struct PoolArgs {
  const T* in;  // x (forward) or grad_y (backward)
  T* out;       // y (forward) or grad_x (backward)
  // Max pooling's argmax (written forward, read backward); null otherwise.
  int64_t* indices;
  PoolShape s;
  // The strides as dividers: set for the passes with StrideDivmods::Yes.
  Divmod<Index> sh, sw;
};

// The sum over a window of a plane `w` wide, in row-major order (as the CPU).
template <typename T>
__device__ __forceinline__ T window_sum(const T* in, int64_t w, const Span& rows,
                                        const Span& cols) {
  T sum = 0;
  for (int64_t u = rows.lo; u < rows.hi; ++u)
    for (int64_t v = cols.lo; v < cols.hi; ++v) sum += in[u * w + v];
  return sum;
}

__device__ __forceinline__ int64_t avg_divisor(const PoolShape& s, const Span& rows,
                                               const Span& cols) {
  return s.count_include_pad ? s.kh * s.kw : (rows.hi - rows.lo) * (cols.hi - cols.lo);
}

struct MaxPoolForward {
  static constexpr PoolPassInfo kInfo{PoolCovers::Output, StrideDivmods::No, "max_pool2d (cuda)",
                                      "pool2d_kernel<MaxPoolForward>"};
  template <typename T, typename Index>
  __device__ static void at(const PoolArgs<T, Index>& a, const PoolShape& s, Index o, int64_t plane,
                            int64_t i, int64_t j) {
    const T* in = a.in + plane * s.h * s.w;
    const Span rows = window(i, s.sh, s.ph, s.kh, s.h);
    const Span cols = window(j, s.sw, s.pw, s.kw, s.w);
    T best;
    int64_t arg;
    pool::window_max(in, s.w, rows, cols, best, arg);
    a.out[o] = best;
    a.indices[o] = arg;
  }
};

struct MaxPoolBackward {
  static constexpr PoolPassInfo kInfo{PoolCovers::Input, StrideDivmods::Yes,
                                      "max_pool2d backward (cuda)",
                                      "pool2d_kernel<MaxPoolBackward>"};
  template <typename T, typename Index>
  __device__ static void at(const PoolArgs<T, Index>& a, const PoolShape& s, Index e, int64_t plane,
                            int64_t u, int64_t v) {
    const Span is = covering(u, a.sh, s.ph, s.kh, s.oh);
    const Span js = covering(v, a.sw, s.pw, s.kw, s.ow);
    const int64_t base = plane * s.oh * s.ow, me = u * s.w + v;
    T acc = 0;
    for (int64_t i = is.lo; i < is.hi; ++i)
      for (int64_t j = js.lo; j < js.hi; ++j)
        if (a.indices[base + i * s.ow + j] == me) acc += a.in[base + i * s.ow + j];
    a.out[e] = acc;
  }
};

struct AvgPoolForward {
  static constexpr PoolPassInfo kInfo{PoolCovers::Output, StrideDivmods::No, "avg_pool2d (cuda)",
                                      "pool2d_kernel<AvgPoolForward>"};
  template <typename T, typename Index>
  __device__ static void at(const PoolArgs<T, Index>& a, const PoolShape& s, Index o, int64_t plane,
                            int64_t i, int64_t j) {
    const T* in = a.in + plane * s.h * s.w;
    const Span rows = window(i, s.sh, s.ph, s.kh, s.h);
    const Span cols = window(j, s.sw, s.pw, s.kw, s.w);
    const T sum = window_sum(in, s.w, rows, cols);
    const int64_t div = avg_divisor(s, rows, cols);
    a.out[o] = div > 0 ? sum / static_cast<T>(div) : T(0);
  }
};

struct AvgPoolBackward {
  static constexpr PoolPassInfo kInfo{PoolCovers::Input, StrideDivmods::Yes,
                                      "avg_pool2d backward (cuda)",
                                      "pool2d_kernel<AvgPoolBackward>"};
  template <typename T, typename Index>
  __device__ static void at(const PoolArgs<T, Index>& a, const PoolShape& s, Index e, int64_t plane,
                            int64_t u, int64_t v) {
    const Span is = covering(u, a.sh, s.ph, s.kh, s.oh);
    const Span js = covering(v, a.sw, s.pw, s.kw, s.ow);
    const int64_t base = plane * s.oh * s.ow;
    T acc = 0;
    for (int64_t i = is.lo; i < is.hi; ++i) {
      const Span rows = window(i, s.sh, s.ph, s.kh, s.h);
      for (int64_t j = js.lo; j < js.hi; ++j) {
        const Span cols = window(j, s.sw, s.pw, s.kw, s.w);
        const int64_t div = avg_divisor(s, rows, cols);
        if (div > 0) acc += a.in[base + i * s.ow + j] / static_cast<T>(div);
      }
    }
    a.out[e] = acc;
  }
};

struct AdaptiveAvgPoolForward {
  static constexpr PoolPassInfo kInfo{PoolCovers::Output, StrideDivmods::No,
                                      "adaptive_avg_pool2d (cuda)",
                                      "pool2d_kernel<AdaptiveAvgPoolForward>"};
  template <typename T, typename Index>
  __device__ static void at(const PoolArgs<T, Index>& a, const PoolShape& s, Index o, int64_t plane,
                            int64_t i, int64_t j) {
    const T* in = a.in + plane * s.h * s.w;
    const Span rows = adaptive_window(i, s.oh, s.h);
    const Span cols = adaptive_window(j, s.ow, s.w);
    const T sum = window_sum(in, s.w, rows, cols);
    a.out[o] = sum / static_cast<T>((rows.hi - rows.lo) * (cols.hi - cols.lo));
  }
};

struct AdaptiveAvgPoolBackward {
  // Adaptive windows have no stride.
  static constexpr PoolPassInfo kInfo{PoolCovers::Input, StrideDivmods::No,
                                      "adaptive_avg_pool2d backward (cuda)",
                                      "pool2d_kernel<AdaptiveAvgPoolBackward>"};
  template <typename T, typename Index>
  __device__ static void at(const PoolArgs<T, Index>& a, const PoolShape& s, Index e, int64_t plane,
                            int64_t u, int64_t v) {
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
            a.in[base + i * s.ow + j] / static_cast<T>((rows.hi - rows.lo) * (cols.hi - cols.lo));
      }
    }
    a.out[e] = acc;
  }
};

// One thread per element of the covered tensor [planes, rows, cols]
// (grid-stride), split into (plane, row, col) for Pass::at.
template <typename Pass, typename T, typename Index>
__global__ void pool2d_kernel(PoolArgs<T, Index> a, PlaneSplit<Index> split, Index total) {
  // A local copy of the shape: read through a reference to the kernel
  // argument, nvcc kept up to 10 more registers per thread than the separate
  // kernels this replaced did (ptxas -v, sm_90).
  const PoolShape s = a.s;
  for (Index e = grid_thread<Index>(); e < total; e += grid_threads<Index>()) {
    int64_t plane, r, c;
    split.split(e, plane, r, c);
    Pass::at(a, s, e, plane, r, c);
  }
}

constexpr int kBlock = kBlockSize;

// 32-bit index arithmetic when every element count and window position fits.
bool pool_fits_int32(const PoolShape& s) {
  return fits_int32({s.n * s.c * s.h * s.w, s.n * s.c * s.oh * s.ow, s.h + s.ph + s.kh + s.sh,
                     s.w + s.pw + s.kw + s.sw});
}

// The one host launcher: dtype dispatch, 32- or 64-bit index arithmetic, a
// grid over the covered tensor on the current stream, the launch check.
// `in`/`out`: x/y forward, grad_y/grad_x backward; `indices`: max pooling's
// argmax (null for the other passes).
template <typename Pass>
void launch_pool2d(const Tensor& in, const PoolShape& s, Tensor& out, const Tensor* indices) {
  constexpr bool covers_output = Pass::kInfo.covers == PoolCovers::Output;
  const int64_t rows = covers_output ? s.oh : s.h, cols = covers_output ? s.ow : s.w;
  const int64_t total = s.n * s.c * rows * cols;
  const int grid = grid_for(total, kBlock, kBlock);
  cudaStream_t stream = current_cuda_stream();
  TANDEM_DISPATCH_FLOATING(in.dtype(), Pass::kInfo.op, [&] {
    dispatch_index_width(pool_fits_int32(s), [&](auto index) {
      using Index = decltype(index);
      PoolArgs<scalar_t, Index> a{in.data_ptr<scalar_t>(),
                                  out.data_ptr<scalar_t>(),
                                  indices != nullptr ? indices->data_ptr<int64_t>() : nullptr,
                                  s,
                                  Divmod<Index>(),
                                  Divmod<Index>()};
      if constexpr (Pass::kInfo.strides == StrideDivmods::Yes) {
        a.sh = Divmod<Index>(s.sh);
        a.sw = Divmod<Index>(s.sw);
      }
      const PlaneSplit<Index> split{Divmod<Index>(cols), Divmod<Index>(rows)};
      // TANDEM_LAUNCH's expansion, named by the pass (the macro would print
      // "pool2d_kernel<Pass, ...>").
      detail::make_launcher(Pass::kInfo.kernel, pool2d_kernel<Pass, scalar_t, Index>, grid, kBlock,
                            0, stream, __FILE__, __LINE__)(a, split, static_cast<Index>(total));
    });
  });
}

}  // namespace

// ---- Backend entry points (core/backend_decls.inc) ----------------------------------------

void max_pool2d_forward(const Tensor& x, const PoolShape& s, Tensor& y, Tensor& indices) {
  launch_pool2d<MaxPoolForward>(x, s, y, &indices);
}

void max_pool2d_backward(const Tensor& grad_y, const Tensor& indices, const PoolShape& s,
                         Tensor& grad_x) {
  launch_pool2d<MaxPoolBackward>(grad_y, s, grad_x, &indices);
}

void avg_pool2d_forward(const Tensor& x, const PoolShape& s, Tensor& y) {
  launch_pool2d<AvgPoolForward>(x, s, y, nullptr);
}

void avg_pool2d_backward(const Tensor& grad_y, const PoolShape& s, Tensor& grad_x) {
  launch_pool2d<AvgPoolBackward>(grad_y, s, grad_x, nullptr);
}

void adaptive_avg_pool2d_forward(const Tensor& x, const PoolShape& s, Tensor& y) {
  launch_pool2d<AdaptiveAvgPoolForward>(x, s, y, nullptr);
}

void adaptive_avg_pool2d_backward(const Tensor& grad_y, const PoolShape& s, Tensor& grad_x) {
  launch_pool2d<AdaptiveAvgPoolBackward>(grad_y, s, grad_x, nullptr);
}

}  // namespace cuda
}  // namespace tandem
