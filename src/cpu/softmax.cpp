// CPU softmax / log-softmax: x (contiguous, float32/float64) viewed as
// [outer, n, inner], each of the outer * inner vectors of length n normalised:
//   m = max_j x_j,  s = sum_j exp(x_j - m)
//   softmax: exp(x_j - m) / s      log_softmax: (x_j - m) - log(s)
// Subtracting the max keeps exp from overflowing; a vector of -inf gives NaN, as
// on CUDA. Everything is computed in double and rounded once on the store, so
// this is the accurate reference for kernels/softmax.cu; the exps are SLEEF's
// double ones (vec_math.h, 1 ulp), over chunks of a row staged in a small
// double buffer, and softmax multiplies by 1 / s. inner == 1 (the usual case)
// walks rows; inner > 1 uses tasks of up to kBlock adjacent columns so that
// reads cover whole cache lines, each row of the block one vector call.
#include <algorithm>
#include <array>
#include <cmath>

#include "cpu/cpu_utils.h"
#include "cpu/vec_math.h"

namespace tandem {
namespace cpu {

namespace {

constexpr int64_t kBlock = 64;   // columns per task (inner > 1)
constexpr int64_t kChunk = 512;  // elements of a row per vector call (inner == 1)

// One softmax row of n contiguous elements.
template <typename T>
void softmax_row(SoftmaxKind kind, const T* x, T* out, int64_t n) {
  const double m = util::row_max(x, n);
  std::array<double, kChunk> buf;
  double s = 0.0;
  for (int64_t j0 = 0; j0 < n; j0 += kChunk) {
    const int64_t len = std::min(kChunk, n - j0);
    for (int64_t i = 0; i < len; ++i) buf[size_t(i)] = static_cast<double>(x[j0 + i]) - m;
    vec::unary(UnaryOp::Exp, buf.data(), buf.data(), len);
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < len; ++i) s += buf[size_t(i)];
  }
  if (kind == SoftmaxKind::LogSoftmax) {
    const double log_s = std::log(s);
    for (int64_t j = 0; j < n; ++j)
      out[j] = static_cast<T>((static_cast<double>(x[j]) - m) - log_s);
    return;
  }
  const double inv_s = 1.0 / s;
  for (int64_t j0 = 0; j0 < n; j0 += kChunk) {
    const int64_t len = std::min(kChunk, n - j0);
    for (int64_t i = 0; i < len; ++i) buf[size_t(i)] = static_cast<double>(x[j0 + i]) - m;
    vec::unary(UnaryOp::Exp, buf.data(), buf.data(), len);
    for (int64_t i = 0; i < len; ++i) out[j0 + i] = static_cast<T>(buf[size_t(i)] * inv_s);
  }
}

// float32 rows: float exps (3x faster than double ones) at double accuracy
// where it matters. x - m is rounded to float h with its exact error l
// (TwoSum: x and m are floats), and exp(x - m) = exp(h) (1 + l) to second
// order; the sum stays in double. Softmax stores the exps and scales them in
// place, so each element takes one exp.
// Cloned per instruction set (GCC picks one at load time): its loops then
// vectorise 16 floats wide on AVX-512 instead of SSE2's 4.
TANDEM_CPU_CLONES void softmax_row_f32(SoftmaxKind kind, const float* x, float* out, int64_t n) {
  const double m = util::row_max(x, n);
  const auto mf = static_cast<float>(m);
  std::array<float, kChunk> h, l;
  double s = 0.0;
  for (int64_t j0 = 0; j0 < n; j0 += kChunk) {
    const int64_t len = std::min(kChunk, n - j0);
    const float* xs = x + j0;
    for (int64_t i = 0; i < len; ++i) {
      const float d = xs[i] - mf, bb = d - xs[i];
      const float err = (xs[i] - (d - bb)) - (mf + bb);
      h[static_cast<size_t>(i)] = d;
      l[static_cast<size_t>(i)] = std::fabs(err) <= 1.0f ? err : 0.0f;  // inf - inf: no NaN
    }
    vec::unary(UnaryOp::Exp, h.data(), h.data(), len);
    float* e = kind == SoftmaxKind::Softmax ? out + j0 : h.data();
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < len; ++i) {
      const float v =
          h[static_cast<size_t>(i)] + h[static_cast<size_t>(i)] * l[static_cast<size_t>(i)];
      e[i] = v;
      s += static_cast<double>(v);
    }
  }
  // The next row (rows of a thread are consecutive) is read from memory by
  // row_max; start fetching it while this row is finished in cache (a
  // prefetch past the end of the tensor is harmless: it never faults).
  for (int64_t j = 0; j < n; j += 16) __builtin_prefetch(x + n + j);
  if (kind == SoftmaxKind::LogSoftmax) {
    const double log_s = std::log(s);
    for (int64_t j = 0; j < n; ++j)
      out[j] = static_cast<float>((static_cast<double>(x[j]) - m) - log_s);
    return;
  }
  const double inv_s = 1.0 / s;
  for (int64_t j = 0; j < n; ++j) out[j] = static_cast<float>(static_cast<double>(out[j]) * inv_s);
}

template <>
void softmax_row<float>(SoftmaxKind kind, const float* x, float* out, int64_t n) {
  softmax_row_f32(kind, x, out, n);
}

// Columns [i0, i0 + w) of one [n, inner] slab at x (w <= kBlock).
template <typename T>
void softmax_columns(SoftmaxKind kind, const T* x, T* out, int64_t n, int64_t inner, int64_t w) {
  std::array<double, kBlock> m, s, buf;
  for (int64_t i = 0; i < w; ++i) m[size_t(i)] = -INFINITY;
  for (int64_t i = 0; i < w; ++i) s[size_t(i)] = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const T* row = x + j * inner;
    for (int64_t i = 0; i < w; ++i) {
      m[size_t(i)] = std::max(m[size_t(i)], static_cast<double>(row[i]));
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    const T* row = x + j * inner;
    for (int64_t i = 0; i < w; ++i) buf[size_t(i)] = static_cast<double>(row[i]) - m[size_t(i)];
    vec::unary(UnaryOp::Exp, buf.data(), buf.data(), w);
    for (int64_t i = 0; i < w; ++i) s[size_t(i)] += buf[size_t(i)];
  }
  if (kind == SoftmaxKind::LogSoftmax) {
    for (int64_t i = 0; i < w; ++i) s[size_t(i)] = std::log(s[size_t(i)]);
  } else {
    for (int64_t i = 0; i < w; ++i) s[size_t(i)] = 1.0 / s[size_t(i)];
  }
  for (int64_t j = 0; j < n; ++j) {
    const T* row = x + j * inner;
    T* o = out + j * inner;
    for (int64_t i = 0; i < w; ++i) buf[size_t(i)] = static_cast<double>(row[i]) - m[size_t(i)];
    if (kind == SoftmaxKind::LogSoftmax) {
      for (int64_t i = 0; i < w; ++i) o[i] = static_cast<T>(buf[size_t(i)] - s[size_t(i)]);
    } else {
      vec::unary(UnaryOp::Exp, buf.data(), buf.data(), w);
      for (int64_t i = 0; i < w; ++i) o[i] = static_cast<T>(buf[size_t(i)] * s[size_t(i)]);
    }
  }
}

template <typename T>
void softmax_kernel(SoftmaxKind kind, const T* x, T* out, int64_t outer, int64_t n, int64_t inner) {
  if (inner == 1) {
    util::parallel_for(outer, 3 * n,
                       [&](int64_t r) { softmax_row(kind, x + r * n, out + r * n, n); });
    return;
  }
  const int64_t width = std::min(inner, kBlock);
  const int64_t blocks_per_outer = (inner + width - 1) / width;
  util::parallel_for(outer * blocks_per_outer, 3 * n * width, [&](int64_t b) {
    const int64_t i0 = (b % blocks_per_outer) * width;
    const int64_t base = (b / blocks_per_outer) * n * inner + i0;
    softmax_columns(kind, x + base, out + base, n, inner, std::min(width, inner - i0));
  });
}

}  // namespace

void softmax(SoftmaxKind kind, const Tensor& x, Tensor& out, int64_t outer, int64_t n,
             int64_t inner) {
  const char* name = kind == SoftmaxKind::Softmax ? "softmax" : "log_softmax";
  TANDEM_CHECK(n >= 1 && outer >= 1 && inner >= 1, name, ": bad geometry [", outer, ", ", n, ", ",
               inner, "]");
  TANDEM_DISPATCH_FLOATING(x.dtype(), name, [&] {
    softmax_kernel<scalar_t>(kind, x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), outer, n,
                             inner);
  });
}

}  // namespace cpu
}  // namespace tandem
