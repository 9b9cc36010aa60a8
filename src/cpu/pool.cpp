// CPU pooling (NCHW, float32/float64): max_pool2d, avg_pool2d and
// adaptive_avg_pool2d forward and backward, the reference twins of
// kernels/pool.cu (contracts in core/backend_decls.inc; the window arithmetic
// shared with the kernels in core/pool_window.h). Direct loops, parallel over
// planes; max pooling over 2x2 windows at stride 2 without padding takes a
// branch-free path (four windows at a time with SSE2 on float32).
#include <algorithm>
#include <type_traits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/pool_window.h"
#include "cpu/cpu_utils.h"

namespace tandem {
namespace cpu {

namespace {

using pool::adaptive_window;
using pool::Span;
using pool::window;

// pool::window_max over the window a b / c d (row-major) whose first element
// is at flat index `first` of a plane `w` wide, without branches: a later
// element replaces the best when it is larger, or when it is NaN and the best
// is not (so the first NaN wins and stays).
// max2x2 for four windows at a time with SSE2 (every x86-64 CPU has it): the
// data-dependent branches the scalar form compiles to mispredict on random
// data. Returns the number of outputs done (a multiple of 4; 0 elsewhere).
int64_t max2x2_row_sse([[maybe_unused]] const float* r0, [[maybe_unused]] const float* r1,
                       [[maybe_unused]] int64_t ow, [[maybe_unused]] int64_t first,
                       [[maybe_unused]] int64_t w, [[maybe_unused]] float* out,
                       [[maybe_unused]] int64_t* arg) {
#if defined(__SSE2__)
  int64_t j = 0;
  for (; j + 4 <= ow; j += 4) {
    const __m128 r0lo = _mm_loadu_ps(r0 + 2 * j), r0hi = _mm_loadu_ps(r0 + 2 * j + 4);
    const __m128 r1lo = _mm_loadu_ps(r1 + 2 * j), r1hi = _mm_loadu_ps(r1 + 2 * j + 4);
    const __m128 a = _mm_shuffle_ps(r0lo, r0hi, _MM_SHUFFLE(2, 0, 2, 0));
    const __m128 b = _mm_shuffle_ps(r0lo, r0hi, _MM_SHUFFLE(3, 1, 3, 1));
    const __m128 c = _mm_shuffle_ps(r1lo, r1hi, _MM_SHUFFLE(2, 0, 2, 0));
    const __m128 d = _mm_shuffle_ps(r1lo, r1hi, _MM_SHUFFLE(3, 1, 3, 1));
    __m128 m = a;
    __m128 code = _mm_setzero_ps();  // 0 a, 1 b, 2 c, 3 d (as floats)
    const auto take = [&](__m128 v, float which) {
      const __m128 better =
          _mm_or_ps(_mm_cmpgt_ps(v, m), _mm_and_ps(_mm_cmpunord_ps(v, v), _mm_cmpord_ps(m, m)));
      m = _mm_or_ps(_mm_and_ps(better, v), _mm_andnot_ps(better, m));
      code = _mm_or_ps(_mm_and_ps(better, _mm_set1_ps(which)), _mm_andnot_ps(better, code));
    };
    take(b, 1.0f);
    take(c, 2.0f);
    take(d, 3.0f);
    _mm_storeu_ps(out + j, m);
    alignas(16) float codes[4];
    _mm_store_ps(codes, code);
    for (int l = 0; l < 4; ++l) {
      const int k = static_cast<int>(codes[l]);
      arg[j + l] = first + 2 * (j + l) + (k & 1) + (k >> 1) * w;
    }
  }
  return j;
#else
  return 0;
#endif
}

template <typename T>
inline void max2x2(T a, T b, T c, T d, int64_t first, int64_t w, T& best, int64_t& arg) {
  T m = a;
  int64_t k = first;
  const auto take = [&](T v, int64_t idx) {
    const bool better = v > m || (v != v && m == m);
    m = better ? v : m;
    k = better ? idx : k;
  };
  take(b, first + 1);
  take(c, first + w);
  take(d, first + w + 1);
  best = m;
  arg = k;
}

}  // namespace

void max_pool2d_forward(const Tensor& x, const PoolShape& s, Tensor& y, Tensor& indices) {
  util::check_floating_dtype("max_pool2d", x);
  TANDEM_DISPATCH_FLOATING(x.dtype(), "max_pool2d", [&] {
    using T = scalar_t;
    const T* xp = x.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    int64_t* ip = indices.data_ptr<int64_t>();
    // 2x2 windows at stride 2 without padding (the CNNs' usual pooling):
    // every window lies inside the plane, and the scan of pool::window_max
    // unrolls into selects the compiler can vectorise.
    const bool two_by_two = s.kh == 2 && s.kw == 2 && s.sh == 2 && s.sw == 2 && s.ph == 0 &&
                            s.pw == 0 && 2 * s.oh <= s.h && 2 * s.ow <= s.w;
    util::parallel_for(s.n * s.c, s.oh * s.ow * s.kh * s.kw, [&](int64_t plane) {
      const T* in = xp + plane * s.h * s.w;
      if (two_by_two) {
        for (int64_t i = 0; i < s.oh; ++i) {
          const T* r0 = in + 2 * i * s.w;
          const T* r1 = r0 + s.w;
          T* out = yp + plane * s.oh * s.ow + i * s.ow;
          int64_t* arg = ip + plane * s.oh * s.ow + i * s.ow;
          int64_t j = 0;
          if constexpr (std::is_same<T, float>::value) {
            j = max2x2_row_sse(r0, r1, s.ow, 2 * i * s.w, s.w, out, arg);
          }
          for (; j < s.ow; ++j) {
            max2x2(r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1], 2 * i * s.w + 2 * j, s.w,
                   out[j], arg[j]);
          }
        }
        return;
      }
      for (int64_t i = 0; i < s.oh; ++i) {
        const Span rows = window(i, s.sh, s.ph, s.kh, s.h);
        for (int64_t j = 0; j < s.ow; ++j) {
          const Span cols = window(j, s.sw, s.pw, s.kw, s.w);
          T best;
          int64_t arg;
          pool::window_max(in, s.w, rows, cols, best, arg);
          const int64_t o = plane * s.oh * s.ow + i * s.ow + j;
          yp[o] = best;
          ip[o] = arg;
        }
      }
    });
  });
}

void max_pool2d_backward(const Tensor& grad_y, const Tensor& indices, const PoolShape& s,
                         Tensor& grad_x) {
  util::check_floating_dtype("max_pool2d backward", grad_y);
  TANDEM_DISPATCH_FLOATING(grad_y.dtype(), "max_pool2d backward", [&] {
    using T = scalar_t;
    const T* gy = grad_y.data_ptr<T>();
    const int64_t* ip = indices.data_ptr<int64_t>();
    T* gx = grad_x.data_ptr<T>();
    util::parallel_for(s.n * s.c, s.h * s.w + s.oh * s.ow, [&](int64_t plane) {
      T* out = gx + plane * s.h * s.w;
      std::fill(out, out + s.h * s.w, T(0));
      const int64_t base = plane * s.oh * s.ow;
      for (int64_t o = 0; o < s.oh * s.ow; ++o) out[ip[base + o]] += gy[base + o];
    });
  });
}

namespace {
inline int64_t avg_divisor(const PoolShape& s, const Span& rows, const Span& cols) {
  return s.count_include_pad ? s.kh * s.kw : (rows.hi - rows.lo) * (cols.hi - cols.lo);
}
}  // namespace

void avg_pool2d_forward(const Tensor& x, const PoolShape& s, Tensor& y) {
  util::check_floating_dtype("avg_pool2d", x);
  TANDEM_DISPATCH_FLOATING(x.dtype(), "avg_pool2d", [&] {
    using T = scalar_t;
    const T* xp = x.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    util::parallel_for(s.n * s.c, s.oh * s.ow * s.kh * s.kw, [&](int64_t plane) {
      const T* in = xp + plane * s.h * s.w;
      for (int64_t i = 0; i < s.oh; ++i) {
        const Span rows = window(i, s.sh, s.ph, s.kh, s.h);
        for (int64_t j = 0; j < s.ow; ++j) {
          const Span cols = window(j, s.sw, s.pw, s.kw, s.w);
          T sum = 0;
          for (int64_t u = rows.lo; u < rows.hi; ++u)
            for (int64_t v = cols.lo; v < cols.hi; ++v) sum += in[u * s.w + v];
          const int64_t div = avg_divisor(s, rows, cols);
          yp[plane * s.oh * s.ow + i * s.ow + j] = div > 0 ? sum / static_cast<T>(div) : T(0);
        }
      }
    });
  });
}

void avg_pool2d_backward(const Tensor& grad_y, const PoolShape& s, Tensor& grad_x) {
  util::check_floating_dtype("avg_pool2d backward", grad_y);
  TANDEM_DISPATCH_FLOATING(grad_y.dtype(), "avg_pool2d backward", [&] {
    using T = scalar_t;
    const T* gy = grad_y.data_ptr<T>();
    T* gx = grad_x.data_ptr<T>();
    util::parallel_for(s.n * s.c, s.oh * s.ow * s.kh * s.kw, [&](int64_t plane) {
      T* out = gx + plane * s.h * s.w;
      std::fill(out, out + s.h * s.w, T(0));
      for (int64_t i = 0; i < s.oh; ++i) {
        const Span rows = window(i, s.sh, s.ph, s.kh, s.h);
        for (int64_t j = 0; j < s.ow; ++j) {
          const Span cols = window(j, s.sw, s.pw, s.kw, s.w);
          const int64_t div = avg_divisor(s, rows, cols);
          if (div == 0) continue;
          const T share = gy[plane * s.oh * s.ow + i * s.ow + j] / static_cast<T>(div);
          for (int64_t u = rows.lo; u < rows.hi; ++u)
            for (int64_t v = cols.lo; v < cols.hi; ++v) out[u * s.w + v] += share;
        }
      }
    });
  });
}

void adaptive_avg_pool2d_forward(const Tensor& x, const PoolShape& s, Tensor& y) {
  util::check_floating_dtype("adaptive_avg_pool2d", x);
  TANDEM_DISPATCH_FLOATING(x.dtype(), "adaptive_avg_pool2d", [&] {
    using T = scalar_t;
    const T* xp = x.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    util::parallel_for(s.n * s.c, s.h * s.w + s.oh * s.ow, [&](int64_t plane) {
      const T* in = xp + plane * s.h * s.w;
      for (int64_t i = 0; i < s.oh; ++i) {
        const Span rows = adaptive_window(i, s.oh, s.h);
        for (int64_t j = 0; j < s.ow; ++j) {
          const Span cols = adaptive_window(j, s.ow, s.w);
          T sum = 0;
          for (int64_t u = rows.lo; u < rows.hi; ++u)
            for (int64_t v = cols.lo; v < cols.hi; ++v) sum += in[u * s.w + v];
          yp[plane * s.oh * s.ow + i * s.ow + j] =
              sum / static_cast<T>((rows.hi - rows.lo) * (cols.hi - cols.lo));
        }
      }
    });
  });
}

void adaptive_avg_pool2d_backward(const Tensor& grad_y, const PoolShape& s, Tensor& grad_x) {
  util::check_floating_dtype("adaptive_avg_pool2d backward", grad_y);
  TANDEM_DISPATCH_FLOATING(grad_y.dtype(), "adaptive_avg_pool2d backward", [&] {
    using T = scalar_t;
    const T* gy = grad_y.data_ptr<T>();
    T* gx = grad_x.data_ptr<T>();
    util::parallel_for(s.n * s.c, s.h * s.w + s.oh * s.ow, [&](int64_t plane) {
      T* out = gx + plane * s.h * s.w;
      std::fill(out, out + s.h * s.w, T(0));
      for (int64_t i = 0; i < s.oh; ++i) {
        const Span rows = adaptive_window(i, s.oh, s.h);
        for (int64_t j = 0; j < s.ow; ++j) {
          const Span cols = adaptive_window(j, s.ow, s.w);
          const T share = gy[plane * s.oh * s.ow + i * s.ow + j] /
                          static_cast<T>((rows.hi - rows.lo) * (cols.hi - cols.lo));
          for (int64_t u = rows.lo; u < rows.hi; ++u)
            for (int64_t v = cols.lo; v < cols.hi; ++v) out[u * s.w + v] += share;
        }
      }
    });
  });
}

}  // namespace cpu
}  // namespace tandem
