// CPU batch norm in training mode (NCHW viewed as [n, c, m], float32/float64),
// forward and backward: the reference twin of kernels/batch_norm.cu (contracts
// in core/backend_decls.inc). Direct loops, parallel over channels; the
// statistics are accumulated in double (four chains per sum) and kept in
// double (save_mean, save_invstd: float64); each output is evaluated in double
// with the double mean, as the CUDA kernels do, and rounded once.
#include <cmath>

#include "cpu/cpu_utils.h"

namespace tandem {
namespace cpu {

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
  util::check_floating_dtype("batch_norm", x);
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
    double* sm = save_mean.data_ptr<double>();
    double* si = save_invstd.data_ptr<double>();
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
      // y = (x - mean) * scale + shift in double, with the double mean: a
      // mean rounded to T would shift every value by up to half an ulp of
      // |mean| over the spread (3e-3 for 1000 + 0.01 * randn in float32).
      const double scale = (wp ? static_cast<double>(wp[ch]) : 1.0) * invstd;
      const double shift = bp ? static_cast<double>(bp[ch]) : 0.0;
      for (int64_t b = 0; b < n; ++b) {
        const T* in = xp + plane(b);
        T* out = yp + plane(b);
        for (int64_t i = 0; i < m; ++i)
          out[i] = static_cast<T>((static_cast<double>(in[i]) - mean) * scale + shift);
      }
      sm[ch] = mean;
      si[ch] = invstd;
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
  util::check_floating_dtype("batch_norm backward", x);
  const int64_t count = n * m;
  TANDEM_DISPATCH_FLOATING(x.dtype(), "batch_norm backward", [&] {
    using T = scalar_t;
    const T* gy = grad_y.data_ptr<T>();
    const T* xp = x.data_ptr<T>();
    const T* wp = weight.defined() ? weight.data_ptr<T>() : nullptr;
    const double* sm = save_mean.data_ptr<double>();
    const double* si = save_invstd.data_ptr<double>();
    T* gx = grad_x.defined() ? grad_x.data_ptr<T>() : nullptr;
    T* gw = grad_weight.defined() ? grad_weight.data_ptr<T>() : nullptr;
    T* gb = grad_bias.defined() ? grad_bias.data_ptr<T>() : nullptr;
    util::parallel_for(c, 3 * count, [&](int64_t ch) {
      const auto plane = [&](int64_t b) { return (b * c + ch) * m; };
      const double mean = sm[ch], invstd = si[ch];
      double sum_gy = 0.0, sum_gy_xc = 0.0;  // xc = x - mean
      for (int64_t b = 0; b < n; ++b) {
        const T* g = gy + plane(b);
        const T* in = xp + plane(b);
        sum_gy += sum4(m, [g](int64_t i) { return static_cast<double>(g[i]); });
        sum_gy_xc += sum4(m, [g, in, mean](int64_t i) {
          return static_cast<double>(g[i]) * (static_cast<double>(in[i]) - mean);
        });
      }
      const double sum_gy_xhat = sum_gy_xc * invstd;
      if (gb) gb[ch] = static_cast<T>(sum_gy);
      if (gw) gw[ch] = static_cast<T>(sum_gy_xhat);
      if (!gx) return;
      // grad_x = w * invstd * (gy - mean(gy) - xhat * mean(gy * xhat)) in
      // double, the CUDA kernel's formula (kernels/batch_norm.cu).
      const double w_invstd = (wp ? static_cast<double>(wp[ch]) : 1.0) * invstd;
      const double inv_count = 1.0 / static_cast<double>(count);
      const double mean_gy = sum_gy * inv_count, mean_gy_xhat = sum_gy_xhat * inv_count;
      for (int64_t b = 0; b < n; ++b) {
        const T* g = gy + plane(b);
        const T* in = xp + plane(b);
        T* out = gx + plane(b);
        for (int64_t i = 0; i < m; ++i) {
          const double xhat = (static_cast<double>(in[i]) - mean) * invstd;
          out[i] = static_cast<T>(w_invstd *
                                  (static_cast<double>(g[i]) - mean_gy - xhat * mean_gy_xhat));
        }
      }
    });
  });
}

}  // namespace cpu
}  // namespace tandem
