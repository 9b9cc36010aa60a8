// CPU convolution, pooling and batch norm (NCHW, float32/float64): the
// reference twins of src/cuda/cudnn_conv.cpp, kernels/pool.cu and
// kernels/batch_norm.cu (contracts in core/backend_decls.inc).
//
// float32 convolution goes to oneDNN (cpu/dnnl_conv.cpp); what it does not
// take (float64, and TANDEM_CPU_ONEDNN=0) is im2col + OpenBLAS GEMM over a chunk of the batch at a
// time: the chunk's samples are unfolded in parallel (OpenMP over samples) into one column matrix
// col [C*R*S, B*P*Q], and one GEMM per group multiplies it (OpenBLAS threads the GEMM itself; it
// must not be called from inside an OpenMP loop, see cpu/blas.cpp). The chunk is sized so that col
// stays near kColBudget bytes. The backward passes use the same unfolding: grad_input is W^T *
// grad_y folded back (col2im, parallel over samples, each sample writing only its own plane),
// grad_weight accumulates grad_y * col^T over the chunks.
//
// Pooling and batch norm are direct loops, parallel over planes or channels.
// Batch-norm statistics are accumulated in double (four chains per sum);
// the normalisation itself runs in the tensor's dtype.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/pool_window.h"
#include "cpu/cpu_utils.h"
#include "cpu/dnnl_conv.h"

namespace tandem {
namespace cpu {

namespace {

constexpr int64_t kColBudget = int64_t{64} << 20;  // bytes of the col buffer

int64_t chunk_size(const ConvShape& s, size_t elem) {
  const int64_t per_sample =
      std::max<int64_t>(1, s.c * s.r * s.s * s.p * s.q * static_cast<int64_t>(elem));
  return std::clamp<int64_t>(kColBudget / per_sample, 1, s.n);
}

// col[(c*R + u)*S + v][b*P*Q + i*Q + j] = x[b0 + b][c][i*sh - ph + u*dh][j*sw - pw + v*dw]
template <typename T>
void im2col(const T* x, const ConvShape& s, int64_t b0, int64_t nb, T* col) {
  const int64_t pq = s.p * s.q, cols = nb * pq;
  util::parallel_for(nb, s.c * s.r * s.s * pq, [&](int64_t b) {
    const T* xb = x + (b0 + b) * s.c * s.h * s.w;
    for (int64_t c = 0; c < s.c; ++c) {
      const T* plane = xb + c * s.h * s.w;
      for (int64_t u = 0; u < s.r; ++u) {
        for (int64_t v = 0; v < s.s; ++v) {
          T* row = col + ((c * s.r + u) * s.s + v) * cols + b * pq;
          for (int64_t i = 0; i < s.p; ++i) {
            const int64_t y = i * s.stride_h - s.pad_h + u * s.dil_h;
            T* out = row + i * s.q;
            if (y < 0 || y >= s.h) {
              std::fill(out, out + s.q, T(0));
              continue;
            }
            const T* line = plane + y * s.w;
            for (int64_t j = 0; j < s.q; ++j) {
              const int64_t xx = j * s.stride_w - s.pad_w + v * s.dil_w;
              out[j] = (xx >= 0 && xx < s.w) ? line[xx] : T(0);
            }
          }
        }
      }
    }
  });
}

// The adjoint of im2col: grad_x[b0 + b] = sum of col entries that read each position.
template <typename T>
void col2im(const T* col, const ConvShape& s, int64_t b0, int64_t nb, T* grad_x) {
  const int64_t pq = s.p * s.q, cols = nb * pq;
  util::parallel_for(nb, s.c * s.r * s.s * pq, [&](int64_t b) {
    T* gb = grad_x + (b0 + b) * s.c * s.h * s.w;
    std::fill(gb, gb + s.c * s.h * s.w, T(0));
    for (int64_t c = 0; c < s.c; ++c) {
      T* plane = gb + c * s.h * s.w;
      for (int64_t u = 0; u < s.r; ++u) {
        for (int64_t v = 0; v < s.s; ++v) {
          const T* row = col + ((c * s.r + u) * s.s + v) * cols + b * pq;
          for (int64_t i = 0; i < s.p; ++i) {
            const int64_t y = i * s.stride_h - s.pad_h + u * s.dil_h;
            if (y < 0 || y >= s.h) continue;
            T* line = plane + y * s.w;
            const T* in = row + i * s.q;
            for (int64_t j = 0; j < s.q; ++j) {
              const int64_t xx = j * s.stride_w - s.pad_w + v * s.dil_w;
              if (xx >= 0 && xx < s.w) line[xx] += in[j];
            }
          }
        }
      }
    }
  });
}

// mat [K, nb*P*Q] <-> y[b0 + b] [K, P*Q]
template <typename T>
void mat_to_nchw(const T* mat, const ConvShape& s, int64_t b0, int64_t nb, T* y) {
  const int64_t pq = s.p * s.q;
  util::parallel_for(nb, s.k * pq, [&](int64_t b) {
    for (int64_t k = 0; k < s.k; ++k)
      std::copy_n(mat + k * nb * pq + b * pq, pq, y + ((b0 + b) * s.k + k) * pq);
  });
}
template <typename T>
void nchw_to_mat(const T* y, const ConvShape& s, int64_t b0, int64_t nb, T* mat) {
  const int64_t pq = s.p * s.q;
  util::parallel_for(nb, s.k * pq, [&](int64_t b) {
    for (int64_t k = 0; k < s.k; ++k)
      std::copy_n(y + ((b0 + b) * s.k + k) * pq, pq, mat + k * nb * pq + b * pq);
  });
}

void check_conv(const char* what, const Tensor& x, const ConvShape& s) {
  TANDEM_CHECK(s.groups >= 1 && s.c % s.groups == 0 && s.k % s.groups == 0, what, ": channels ",
               s.c, " -> ", s.k, " are not divisible by groups ", s.groups);
  TANDEM_CHECK(is_floating(x.dtype()), what, ": expected float32 or float64, got ",
               dtype_name(x.dtype()));
}

Tensor cpu_buffer(Shape shape, DType dtype) {
  return empty(std::move(shape), TensorOptions(dtype));
}

}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const ConvShape& s,
                    Tensor& y) {
  check_conv("conv2d", x, s);
  if (dnnl_conv2d_forward(x, weight, bias, s, y)) return;
  const int64_t g = s.groups, kg = s.k / g, crs_g = (s.c / g) * s.r * s.s, pq = s.p * s.q;
  const int64_t chunk = chunk_size(s, element_size(x.dtype()));
  Tensor col = cpu_buffer({s.c * s.r * s.s, chunk * pq}, x.dtype());
  Tensor mat = cpu_buffer({s.k, chunk * pq}, x.dtype());
  TANDEM_DISPATCH_FLOATING(x.dtype(), "conv2d", [&] {
    using T = scalar_t;
    for (int64_t b0 = 0; b0 < s.n; b0 += chunk) {
      const int64_t nb = std::min(chunk, s.n - b0), cols = nb * pq;
      im2col(x.data_ptr<T>(), s, b0, nb, col.data_ptr<T>());
      // Group gi: W_g [kg, crs_g] x col_g [crs_g, cols] -> mat_g [kg, cols].
      const GemmShape gs{g, kg, cols, crs_g, kg * crs_g, crs_g * cols, kg * cols};
      gemm(Transpose::No, Transpose::No, gs, 1.0, weight, col, 0.0, mat);
      mat_to_nchw(mat.data_ptr<T>(), s, b0, nb, y.data_ptr<T>());
    }
    if (bias.defined()) {
      const T* bp = bias.data_ptr<T>();
      T* yp = y.data_ptr<T>();
      util::parallel_for(s.n * s.k, pq, [&](int64_t plane) {
        const T b = bp[plane % s.k];
        T* out = yp + plane * pq;
        for (int64_t i = 0; i < pq; ++i) out[i] += b;
      });
    }
  });
}

void conv2d_backward_input(const Tensor& grad_y, const Tensor& weight, const ConvShape& s,
                           Tensor& grad_x) {
  check_conv("conv2d backward", grad_y, s);
  if (dnnl_conv2d_backward_input(grad_y, weight, s, grad_x)) return;
  const int64_t g = s.groups, kg = s.k / g, crs_g = (s.c / g) * s.r * s.s, pq = s.p * s.q;
  const int64_t chunk = chunk_size(s, element_size(grad_y.dtype()));
  Tensor col = cpu_buffer({s.c * s.r * s.s, chunk * pq}, grad_y.dtype());
  Tensor mat = cpu_buffer({s.k, chunk * pq}, grad_y.dtype());
  TANDEM_DISPATCH_FLOATING(grad_y.dtype(), "conv2d backward", [&] {
    using T = scalar_t;
    for (int64_t b0 = 0; b0 < s.n; b0 += chunk) {
      const int64_t nb = std::min(chunk, s.n - b0), cols = nb * pq;
      nchw_to_mat(grad_y.data_ptr<T>(), s, b0, nb, mat.data_ptr<T>());
      // col_g [crs_g, cols] = W_g^T [crs_g, kg] x mat_g [kg, cols]
      const GemmShape gs{g, crs_g, cols, kg, kg * crs_g, kg * cols, crs_g * cols};
      gemm(Transpose::Yes, Transpose::No, gs, 1.0, weight, mat, 0.0, col);
      col2im(col.data_ptr<T>(), s, b0, nb, grad_x.data_ptr<T>());
    }
  });
}

void conv2d_backward_weight(const Tensor& x, const Tensor& grad_y, const ConvShape& s,
                            Tensor& grad_weight) {
  check_conv("conv2d backward", x, s);
  if (dnnl_conv2d_backward_weight(x, grad_y, s, grad_weight)) return;
  const int64_t g = s.groups, kg = s.k / g, crs_g = (s.c / g) * s.r * s.s, pq = s.p * s.q;
  const int64_t chunk = chunk_size(s, element_size(x.dtype()));
  Tensor col = cpu_buffer({s.c * s.r * s.s, chunk * pq}, x.dtype());
  Tensor mat = cpu_buffer({s.k, chunk * pq}, x.dtype());
  TANDEM_DISPATCH_FLOATING(x.dtype(), "conv2d backward", [&] {
    using T = scalar_t;
    for (int64_t b0 = 0; b0 < s.n; b0 += chunk) {
      const int64_t nb = std::min(chunk, s.n - b0), cols = nb * pq;
      im2col(x.data_ptr<T>(), s, b0, nb, col.data_ptr<T>());
      nchw_to_mat(grad_y.data_ptr<T>(), s, b0, nb, mat.data_ptr<T>());
      // gW_g [kg, crs_g] (+)= mat_g [kg, cols] x col_g^T [cols, crs_g]
      const GemmShape gs{g, kg, crs_g, cols, kg * cols, crs_g * cols, kg * crs_g};
      gemm(Transpose::No, Transpose::Yes, gs, 1.0, mat, col, b0 == 0 ? 0.0 : 1.0, grad_weight);
    }
  });
}

// ---- Pooling ------------------------------------------------------------------------

namespace {

void check_pool(const char* what, const Tensor& t) {
  TANDEM_CHECK(is_floating(t.dtype()), what, ": expected float32 or float64, got ",
               dtype_name(t.dtype()));
}

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
  check_pool("max_pool2d", x);
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
  check_pool("max_pool2d backward", grad_y);
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
  check_pool("avg_pool2d", x);
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
  check_pool("avg_pool2d backward", grad_y);
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
  check_pool("adaptive_avg_pool2d", x);
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
  check_pool("adaptive_avg_pool2d backward", grad_y);
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

// ---- Batch norm ---------------------------------------------------------------------

namespace {

// sum of f(i) for i < m in double, with four independent accumulators: the
// adds of one chain wait on each other; four chains keep the FPU busy and let
// the compiler use vectors.
template <typename F>
double sum4(int64_t m, const F& f) {
  double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) {
    a0 += f(i);
    a1 += f(i + 1);
    a2 += f(i + 2);
    a3 += f(i + 3);
  }
  for (; i < m; ++i) a0 += f(i);
  return (a0 + a1) + (a2 + a3);
}

}  // namespace

void batch_norm_forward_train(const Tensor& x, const Tensor& weight, const Tensor& bias,
                              Tensor& running_mean, Tensor& running_var, double momentum,
                              double eps, int64_t n, int64_t c, int64_t m, Tensor& y,
                              Tensor& save_mean, Tensor& save_invstd) {
  check_pool("batch_norm", x);
  const int64_t count = n * m;
  TANDEM_CHECK(count >= 2, "batch_norm: training needs more than one value per channel, got ",
               count);
  TANDEM_DISPATCH_FLOATING(x.dtype(), "batch_norm", [&] {
    using T = scalar_t;
    const T* xp = x.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    const T* wp = weight.defined() ? weight.data_ptr<T>() : nullptr;
    const T* bp = bias.defined() ? bias.data_ptr<T>() : nullptr;
    T* rm = running_mean.defined() ? running_mean.data_ptr<T>() : nullptr;
    T* rv = running_var.defined() ? running_var.data_ptr<T>() : nullptr;
    T* sm = save_mean.data_ptr<T>();
    T* si = save_invstd.data_ptr<T>();
    util::parallel_for(c, 3 * count, [&](int64_t ch) {
      const auto plane = [&](int64_t b) { return (b * c + ch) * m; };
      double sum = 0.0;
      for (int64_t b = 0; b < n; ++b) {
        const T* in = xp + plane(b);
        sum += sum4(m, [in](int64_t i) { return static_cast<double>(in[i]); });
      }
      const double mean = sum / static_cast<double>(count);
      double sq = 0.0;
      for (int64_t b = 0; b < n; ++b) {
        const T* in = xp + plane(b);
        sq += sum4(m, [in, mean](int64_t i) {
          const double d = static_cast<double>(in[i]) - mean;
          return d * d;
        });
      }
      const double var = sq / static_cast<double>(count);
      const double invstd = 1.0 / std::sqrt(var + eps);
      // y = (x - mean) * scale + shift in T: the statistics carry the double
      // precision; x - mean is exact or nearly so where it matters.
      const T mean_t = static_cast<T>(mean);
      const T scale = static_cast<T>((wp ? static_cast<double>(wp[ch]) : 1.0) * invstd);
      const T shift = bp ? bp[ch] : T(0);
      for (int64_t b = 0; b < n; ++b) {
        const T* in = xp + plane(b);
        T* out = yp + plane(b);
        for (int64_t i = 0; i < m; ++i) out[i] = (in[i] - mean_t) * scale + shift;
      }
      sm[ch] = mean_t;
      si[ch] = static_cast<T>(invstd);
      if (rm)
        rm[ch] = static_cast<T>((1.0 - momentum) * static_cast<double>(rm[ch]) + momentum * mean);
      if (rv) {
        const double unbiased = var * static_cast<double>(count) / static_cast<double>(count - 1);
        rv[ch] =
            static_cast<T>((1.0 - momentum) * static_cast<double>(rv[ch]) + momentum * unbiased);
      }
    });
  });
}

void batch_norm_backward_train(const Tensor& grad_y, const Tensor& x, const Tensor& weight,
                               const Tensor& save_mean, const Tensor& save_invstd, int64_t n,
                               int64_t c, int64_t m, Tensor& grad_x, Tensor& grad_weight,
                               Tensor& grad_bias) {
  check_pool("batch_norm backward", x);
  const int64_t count = n * m;
  TANDEM_DISPATCH_FLOATING(x.dtype(), "batch_norm backward", [&] {
    using T = scalar_t;
    const T* gy = grad_y.data_ptr<T>();
    const T* xp = x.data_ptr<T>();
    const T* wp = weight.defined() ? weight.data_ptr<T>() : nullptr;
    const T* sm = save_mean.data_ptr<T>();
    const T* si = save_invstd.data_ptr<T>();
    T* gx = grad_x.defined() ? grad_x.data_ptr<T>() : nullptr;
    T* gw = grad_weight.defined() ? grad_weight.data_ptr<T>() : nullptr;
    T* gb = grad_bias.defined() ? grad_bias.data_ptr<T>() : nullptr;
    util::parallel_for(c, 3 * count, [&](int64_t ch) {
      const auto plane = [&](int64_t b) { return (b * c + ch) * m; };
      const T mean = sm[ch];
      const double invstd = static_cast<double>(si[ch]);
      double sum_gy = 0.0, sum_gy_xc = 0.0;  // xc = x - mean
      for (int64_t b = 0; b < n; ++b) {
        const T* g = gy + plane(b);
        const T* in = xp + plane(b);
        sum_gy += sum4(m, [g](int64_t i) { return static_cast<double>(g[i]); });
        sum_gy_xc += sum4(m, [g, in, mean](int64_t i) {
          return static_cast<double>(g[i]) * static_cast<double>(in[i] - mean);
        });
      }
      const double sum_gy_xhat = sum_gy_xc * invstd;
      if (gb) gb[ch] = static_cast<T>(sum_gy);
      if (gw) gw[ch] = static_cast<T>(sum_gy_xhat);
      if (!gx) return;
      // grad_x = a * gy + k * (x - mean) + d, the coefficients in double.
      const double w = wp ? static_cast<double>(wp[ch]) : 1.0;
      const double inv_count = 1.0 / static_cast<double>(count);
      const T a = static_cast<T>(w * invstd);
      const T k = static_cast<T>(-w * invstd * invstd * sum_gy_xhat * inv_count);
      const T d = static_cast<T>(-w * invstd * sum_gy * inv_count);
      for (int64_t b = 0; b < n; ++b) {
        const T* g = gy + plane(b);
        const T* in = xp + plane(b);
        T* out = gx + plane(b);
        for (int64_t i = 0; i < m; ++i) out[i] = a * g[i] + k * (in[i] - mean) + d;
      }
    });
  });
}

}  // namespace cpu
}  // namespace tandem
