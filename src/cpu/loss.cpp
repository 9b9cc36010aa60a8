// CPU loss and gradient-scatter kernels: the fused softmax cross-entropy
// (forward and backward) and scatter_add / index_add, the adjoints of gather
// and index_select. Rows are independent (OpenMP over rows or columns);
// sums are accumulated in double and rounded once, so this is the accurate
// reference for kernels/loss.cu. Indices are validated before anything is
// written (an exception cannot leave an OpenMP loop).
#include <algorithm>
#include <cmath>

#include "cpu/cpu_utils.h"

namespace tandem {
namespace cpu {

namespace {

template <typename I>
void check_indices(const char* op, const I* idx, int64_t count, int64_t size) {
  for (int64_t k = 0; k < count; ++k) {
    const auto v = static_cast<int64_t>(idx[k]);
    TANDEM_CHECK(v >= 0 && v < size, op, ": index ", v, " is out of range for dimension of size ",
                 size);
  }
}

template <typename T, typename I>
void ce_forward(const T* x, const I* target, T* loss, T* lse, int64_t rows, int64_t classes,
                double smoothing) {
  util::parallel_for(rows, 3 * classes, [&](int64_t r) {
    const T* row = x + r * classes;
    double m = -INFINITY, total = 0.0;
    for (int64_t j = 0; j < classes; ++j) {
      m = std::max(m, static_cast<double>(row[j]));
      total += static_cast<double>(row[j]);
    }
    double s = 0.0;
    for (int64_t j = 0; j < classes; ++j) s += std::exp(static_cast<double>(row[j]) - m);
    const double l = m + std::log(s);
    const auto t = static_cast<int64_t>(target[r]);
    lse[r] = static_cast<T>(l);
    loss[r] = static_cast<T>(l - (1.0 - smoothing) * static_cast<double>(row[t]) -
                             (smoothing / static_cast<double>(classes)) * total);
  });
}

template <typename T, typename I>
void ce_backward(const T* x, const I* target, const T* lse, const T* grad_loss, T* grad,
                 int64_t rows, int64_t classes, double smoothing) {
  const double uniform = smoothing / static_cast<double>(classes);
  util::parallel_for(rows, 2 * classes, [&](int64_t r) {
    const double g = static_cast<double>(grad_loss[r]);
    const double l = static_cast<double>(lse[r]);
    const auto t = static_cast<int64_t>(target[r]);
    for (int64_t j = 0; j < classes; ++j) {
      const double p = std::exp(static_cast<double>(x[r * classes + j]) - l);
      const double hit = j == t ? 1.0 - smoothing : 0.0;
      grad[r * classes + j] = static_cast<T>(g * (p - hit - uniform));
    }
  });
}

}  // namespace

void cross_entropy_forward(const Tensor& logits, const Tensor& target, double label_smoothing,
                           Tensor& loss, Tensor& lse) {
  const int64_t rows = logits.size(0), classes = logits.size(1);
  dispatch_index(target.dtype(), "cross_entropy", [&](auto itag) {
    using I = decltype(itag);
    const I* t = target.data_ptr<I>();
    check_indices("cross_entropy: target", t, rows, classes);
    dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
      using scalar_t = decltype(tag);
      ce_forward<scalar_t, I>(logits.data_ptr<scalar_t>(), t, loss.data_ptr<scalar_t>(),
                              lse.data_ptr<scalar_t>(), rows, classes, label_smoothing);
    });
  });
}

void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                            const Tensor& grad_loss, double label_smoothing, Tensor& grad_logits) {
  const int64_t rows = logits.size(0), classes = logits.size(1);
  dispatch_index(target.dtype(), "cross_entropy", [&](auto itag) {
    using I = decltype(itag);
    const I* t = target.data_ptr<I>();
    check_indices("cross_entropy: target", t, rows, classes);
    dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
      using scalar_t = decltype(tag);
      ce_backward<scalar_t, I>(logits.data_ptr<scalar_t>(), t, lse.data_ptr<scalar_t>(),
                               grad_loss.data_ptr<scalar_t>(), grad_logits.data_ptr<scalar_t>(),
                               rows, classes, label_smoothing);
    });
  });
}

void scatter_add(const Tensor& src, const Tensor& index, Tensor& out, int64_t outer,
                 int64_t out_dim, int64_t idx_dim, int64_t inner) {
  dispatch_index(index.dtype(), "scatter_add", [&](auto itag) {
    using I = decltype(itag);
    const I* idx = index.data_ptr<I>();
    check_indices("scatter_add", idx, index.numel(), out_dim);
    dispatch_floating(out.dtype(), "scatter_add", [&](auto tag) {
      using scalar_t = decltype(tag);
      const scalar_t* s = src.data_ptr<scalar_t>();
      scalar_t* o = out.data_ptr<scalar_t>();
      // One task per (outer, inner) column: its additions happen in index order.
      util::parallel_for(outer * inner, idx_dim, [&](int64_t c) {
        const int64_t a = c / inner, i = c % inner;
        for (int64_t j = 0; j < idx_dim; ++j) {
          const int64_t e = (a * idx_dim + j) * inner + i;
          o[(a * out_dim + static_cast<int64_t>(idx[e])) * inner + i] += s[e];
        }
      });
    });
  });
}

void index_add(const Tensor& src, const Tensor& index, Tensor& out, int64_t outer, int64_t dim_size,
               int64_t inner) {
  const int64_t m = index.numel();
  dispatch_index(index.dtype(), "index_add", [&](auto itag) {
    using I = decltype(itag);
    const I* idx = index.data_ptr<I>();
    check_indices("index_add", idx, m, dim_size);
    dispatch_floating(out.dtype(), "index_add", [&](auto tag) {
      using scalar_t = decltype(tag);
      const scalar_t* s = src.data_ptr<scalar_t>();
      scalar_t* o = out.data_ptr<scalar_t>();
      util::parallel_for(outer * inner, m, [&](int64_t c) {
        const int64_t a = c / inner, i = c % inner;
        for (int64_t j = 0; j < m; ++j) {
          o[(a * dim_size + static_cast<int64_t>(idx[j])) * inner + i] +=
              s[(a * m + j) * inner + i];
        }
      });
    });
  });
}

}  // namespace cpu
}  // namespace tandem
