// CPU fused softmax cross-entropy: cpu::cross_entropy_forward and
// cpu::cross_entropy_backward over the rows of logits [rows, classes]
// (contiguous, float32/float64; targets int32/int64). Rows are independent
// (OpenMP over rows). Everything is computed in double and rounded once on the
// store, so this is the accurate reference for kernels/loss.cu:
//   m = max_j x_j,  s = sum_j exp(x_j - m)
//   loss = log(s) + (1 - eps) (m - x_t) + (eps / C) sum_j (m - x_j)
// which equals lse - (1 - eps) x_t - (eps / C) sum_j x_j but adds only
// non-negative terms, so logits of magnitude 1e4 lose nothing to cancellation.
// The backward gets (m, log s) in double (stats [rows, 2]) and recomputes
// p = exp((x - m) - log s), never an lse rounded to the logits' type.
// The exps are SLEEF's (vec_math.h, 1 ulp), over chunks of a row staged in a
// small buffer: double ones for float64, float ones with an error term for
// float32 (forward_row_f32 / backward_row_f32 say how).
// Targets are validated before anything is written (an exception cannot leave
// an OpenMP loop); CUDA writes NaN for the row instead.
#include <algorithm>
#include <array>
#include <cmath>
#include <type_traits>

#include "cpu/cpu_utils.h"
#include "cpu/vec_math.h"

namespace tandem {
namespace cpu {

namespace {

constexpr int64_t kChunk = 512;  // elements of a row per vector call

// Throws for the first target outside [0, classes), naming its row.
template <typename I>
void check_targets(const I* target, int64_t rows, int64_t classes) {
  for (int64_t r = 0; r < rows; ++r) {
    const auto t = static_cast<int64_t>(target[r]);
    TANDEM_CHECK(t >= 0 && t < classes, "cross_entropy: target ", t, " of row ", r,
                 " is out of range [0, ", classes, ")");
  }
}

void check_geometry(const char* what, const Tensor& logits, const Tensor& target) {
  TANDEM_CHECK(logits.dim() == 2, what, ": expected logits [rows, classes], got ",
               shape_str(logits.sizes()));
  TANDEM_CHECK(target.numel() == logits.size(0), what, ": target has ", target.numel(),
               " elements for ", logits.size(0), " rows");
}

// stats: [rows, 2] float64, (row max, log of the sum).
void check_stats(const char* what, const Tensor& stats, int64_t rows) {
  TANDEM_CHECK(stats.dtype() == kFloat64 && stats.sizes() == Shape({rows, 2}), what,
               ": stats must be float64[", rows, ", 2], got ", dtype_name(stats.dtype()),
               shape_str(stats.sizes()));
}

// The end of a row's forward, from its max m, sum s = sum_j exp(x_j - m),
// gap = sum_j (m - x_j) and target logit x_t: writes (m, log s) to stats and
// returns the loss.
inline double finish_row(double m, double s, double gap, double x_t, double smoothing,
                         double uniform, double* stats) {
  const double log_s = std::log(s);
  stats[0] = m;
  stats[1] = log_s;
  // With no smoothing, gap is not used: 0 * inf (a -inf logit) must not make NaN.
  return log_s + (1.0 - smoothing) * (m - x_t) + (smoothing > 0.0 ? uniform * gap : 0.0);
}

// One row: (m, log s) and the loss. Always inlined, so that the float32
// wrappers below compile it once per instruction set.
template <typename T>
__attribute__((always_inline)) inline T forward_row(const T* row, int64_t t, int64_t classes,
                                                    double smoothing, double* stats) {
  const double uniform = smoothing / static_cast<double>(classes);
  const double m = util::row_max(row, classes);
  std::array<double, kChunk> buf;
  double s = 0.0, gap = 0.0;  // gap = sum_j (m - x_j)
  for (int64_t j0 = 0; j0 < classes; j0 += kChunk) {
    const int64_t len = std::min(kChunk, classes - j0);
    for (int64_t i = 0; i < len; ++i) {
      buf[static_cast<size_t>(i)] = static_cast<double>(row[j0 + i]) - m;
    }
#pragma omp simd reduction(- : gap)
    for (int64_t i = 0; i < len; ++i) gap -= buf[static_cast<size_t>(i)];
    vec::unary(UnaryOp::Exp, buf.data(), buf.data(), len);
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < len; ++i) s += buf[static_cast<size_t>(i)];
  }
  return static_cast<T>(
      finish_row(m, s, gap, static_cast<double>(row[t]), smoothing, uniform, stats));
}

template <typename T>
__attribute__((always_inline)) inline void backward_row(const T* row, int64_t t, int64_t classes,
                                                        double smoothing, const double* stats,
                                                        double g, T* out) {
  const double uniform = smoothing / static_cast<double>(classes);
  const double m = stats[0], log_s = stats[1];
  std::array<double, kChunk> buf;
  for (int64_t j0 = 0; j0 < classes; j0 += kChunk) {
    const int64_t len = std::min(kChunk, classes - j0);
    for (int64_t i = 0; i < len; ++i) {
      buf[static_cast<size_t>(i)] = (static_cast<double>(row[j0 + i]) - m) - log_s;
    }
    vec::unary(UnaryOp::Exp, buf.data(), buf.data(), len);  // p
    for (int64_t i = 0; i < len; ++i) {
      const double hit = j0 + i == t ? 1.0 - smoothing : 0.0;
      out[j0 + i] = static_cast<T>(g * (buf[static_cast<size_t>(i)] - hit - uniform));
    }
  }
}

// float32 rows take float exps (SLEEF's, 3x cheaper than double ones) at
// double accuracy where it matters, one copy per instruction set (AVX-512
// clones run 16 floats wide).
// Forward: x - m is rounded to float h with its exact error l (TwoSum: x and
// m are floats) and exp(x - m) = exp(h) (1 + l); s and the gap stay double.
TANDEM_CPU_CLONES float forward_row_f32(const float* row, int64_t t, int64_t classes,
                                        double smoothing, double* stats) {
  const double uniform = smoothing / static_cast<double>(classes);
  const double m = util::row_max(row, classes);
  const auto mf = static_cast<float>(m);
  std::array<float, kChunk> h, l;
  double s = 0.0, gap = 0.0;  // gap = sum_j (m - x_j)
  for (int64_t j0 = 0; j0 < classes; j0 += kChunk) {
    const int64_t len = std::min(kChunk, classes - j0);
    const float* xs = row + j0;
    // (Loops of one type each: GCC left the mixed float/double ones scalar.)
    for (int64_t i = 0; i < len; ++i) {
      const float d = xs[i] - mf, bb = d - xs[i];
      const float err = (xs[i] - (d - bb)) - (mf + bb);
      h[static_cast<size_t>(i)] = d;
      l[static_cast<size_t>(i)] = std::fabs(err) <= 1.0f ? err : 0.0f;  // inf - inf: no NaN
    }
    if (smoothing > 0.0) {
#pragma omp simd reduction(- : gap)
      for (int64_t i = 0; i < len; ++i) {
        gap -= static_cast<double>(h[static_cast<size_t>(i)]) +
               static_cast<double>(l[static_cast<size_t>(i)]);
      }
    }
    vec::unary(UnaryOp::Exp, h.data(), h.data(), len);
    for (int64_t i = 0; i < len; ++i) {
      const float v = h[static_cast<size_t>(i)];
      h[static_cast<size_t>(i)] = v + v * l[static_cast<size_t>(i)];
    }
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < len; ++i) s += static_cast<double>(h[static_cast<size_t>(i)]);
  }
  return static_cast<float>(
      finish_row(m, s, gap, static_cast<double>(row[t]), smoothing, uniform, stats));
}

// Backward: p = exp(z), z = (x - m) - log s formed in double and split into
// float zh + zl, p = exp(zh) (1 + zl). Only without label smoothing: then
// every element but the target's is g p, with no cancellation; the target's
// g (p - 1) cancels when p is near 1 and is recomputed in double.
TANDEM_CPU_CLONES void backward_row_f32(const float* row, int64_t t, int64_t classes,
                                        double smoothing, const double* stats, double g,
                                        float* out) {
  if (smoothing != 0.0) {
    backward_row(row, t, classes, smoothing, stats, g, out);
    return;
  }
  const double m = stats[0], log_s = stats[1];
  std::array<double, kChunk> zd;
  std::array<float, kChunk> zh, zl;
  for (int64_t j0 = 0; j0 < classes; j0 += kChunk) {
    const int64_t len = std::min(kChunk, classes - j0);
    const float* xs = row + j0;
    // (Loops of one type each: GCC left the mixed float/double ones scalar.)
    for (int64_t i = 0; i < len; ++i) {
      zd[static_cast<size_t>(i)] = (static_cast<double>(xs[i]) - m) - log_s;
    }
    for (int64_t i = 0; i < len; ++i)
      zh[static_cast<size_t>(i)] = static_cast<float>(zd[static_cast<size_t>(i)]);
    // z - zh is exact; tiny unless z is out of float's range (then exp(zh) is
    // 0 or inf anyway, and an infinite z must not make NaN).
    for (int64_t i = 0; i < len; ++i) {
      const double lo =
          zd[static_cast<size_t>(i)] - static_cast<double>(zh[static_cast<size_t>(i)]);
      zd[static_cast<size_t>(i)] = std::fabs(lo) <= 1.0 ? lo : 0.0;
    }
    for (int64_t i = 0; i < len; ++i)
      zl[static_cast<size_t>(i)] = static_cast<float>(zd[static_cast<size_t>(i)]);
    vec::unary(UnaryOp::Exp, zh.data(), zh.data(), len);
    const auto gf = static_cast<float>(g);
    float* o = out + j0;
    for (int64_t i = 0; i < len; ++i) {
      const float p = zh[static_cast<size_t>(i)];
      o[i] = gf * (p + p * zl[static_cast<size_t>(i)]);
    }
  }
  const double pt = std::exp((static_cast<double>(row[t]) - m) - log_s);
  out[t] = static_cast<float>(g * (pt - 1.0));
}

template <typename T, typename I>
void forward_rows(const T* x, const I* target, T* loss, double* stats, int64_t rows,
                  int64_t classes, double smoothing) {
  util::parallel_for(rows, 3 * classes, [&](int64_t r) {
    const T* row = x + r * classes;
    const auto t = static_cast<int64_t>(target[r]);
    if constexpr (std::is_same<T, float>::value) {
      loss[r] = forward_row_f32(row, t, classes, smoothing, stats + 2 * r);
    } else {
      loss[r] = forward_row(row, t, classes, smoothing, stats + 2 * r);
    }
  });
}

template <typename T, typename I>
void backward_rows(const T* x, const I* target, const double* stats, const T* grad_loss, T* grad,
                   int64_t rows, int64_t classes, double smoothing) {
  util::parallel_for(rows, 2 * classes, [&](int64_t r) {
    const double g = static_cast<double>(grad_loss[r]);
    const auto t = static_cast<int64_t>(target[r]);
    if constexpr (std::is_same<T, float>::value) {
      backward_row_f32(x + r * classes, t, classes, smoothing, stats + 2 * r, g,
                       grad + r * classes);
    } else {
      backward_row(x + r * classes, t, classes, smoothing, stats + 2 * r, g, grad + r * classes);
    }
  });
}

}  // namespace

void cross_entropy_forward(const Tensor& logits, const Tensor& target, double label_smoothing,
                           Tensor& loss, Tensor& stats) {
  check_geometry("cross_entropy", logits, target);
  const int64_t rows = logits.size(0), classes = logits.size(1);
  TANDEM_CHECK(loss.dtype() == logits.dtype() && loss.numel() == rows,
               "cross_entropy: loss must be [", rows, "] of the logits' dtype, got ",
               dtype_name(loss.dtype()), shape_str(loss.sizes()));
  check_stats("cross_entropy", stats, rows);
  dispatch_index(target.dtype(), "cross_entropy", [&](auto index_tag) {
    using I = decltype(index_tag);
    const I* t = target.data_ptr<I>();
    check_targets(t, rows, classes);
    TANDEM_DISPATCH_FLOATING(logits.dtype(), "cross_entropy", [&] {
      forward_rows(logits.data_ptr<scalar_t>(), t, loss.data_ptr<scalar_t>(),
                   stats.data_ptr<double>(), rows, classes, label_smoothing);
    });
  });
}

void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& stats,
                            const Tensor& grad_loss, double label_smoothing, Tensor& grad_logits) {
  check_geometry("cross_entropy backward", logits, target);
  const int64_t rows = logits.size(0), classes = logits.size(1);
  TANDEM_CHECK(grad_loss.dtype() == logits.dtype() && grad_logits.dtype() == logits.dtype() &&
                   grad_loss.numel() == rows && grad_logits.numel() == logits.numel(),
               "cross_entropy backward: grad_loss must be [", rows,
               "] and grad_logits like the logits, both of the logits' dtype");
  check_stats("cross_entropy backward", stats, rows);
  dispatch_index(target.dtype(), "cross_entropy", [&](auto index_tag) {
    using I = decltype(index_tag);
    const I* t = target.data_ptr<I>();
    check_targets(t, rows, classes);
    TANDEM_DISPATCH_FLOATING(logits.dtype(), "cross_entropy", [&] {
      backward_rows(logits.data_ptr<scalar_t>(), t, stats.data_ptr<double>(),
                    grad_loss.data_ptr<scalar_t>(), grad_logits.data_ptr<scalar_t>(), rows, classes,
                    label_smoothing);
    });
  });
}

}  // namespace cpu
}  // namespace tandem
