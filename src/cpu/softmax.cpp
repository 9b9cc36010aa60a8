// CPU softmax / log-softmax: x (contiguous, float32/float64) viewed as
// [outer, n, inner], each of the outer * inner vectors of length n normalised:
//   m = max_j x_j,  s = sum_j exp(x_j - m)
//   softmax: exp(x_j - m) / s      log_softmax: (x_j - m) - log(s)
// Subtracting the max keeps exp from overflowing; a vector of -inf gives NaN, as
// on CUDA. Everything is computed in double and rounded once on the store, so
// this is the accurate reference for kernels/softmax.cu. Tasks cover up to
// kBlock adjacent columns so that inner > 1 reads whole cache lines.
#include <algorithm>
#include <array>
#include <cmath>

#include "cpu/cpu_utils.h"

namespace tandem {
namespace cpu {

namespace {

constexpr int64_t kBlock = 64;  // columns per task

template <typename T>
void softmax_kernel(SoftmaxKind kind, const T* x, T* out, int64_t outer, int64_t n, int64_t inner) {
  const int64_t width = std::min(inner, kBlock);
  const int64_t blocks_per_outer = (inner + width - 1) / width;
  util::parallel_for(outer * blocks_per_outer, 3 * n * width, [&](int64_t b) {
    const int64_t i0 = (b % blocks_per_outer) * width;
    const int64_t w = std::min(width, inner - i0);
    const int64_t base = (b / blocks_per_outer) * n * inner + i0;
    std::array<double, kBlock> m, s;
    for (int64_t i = 0; i < w; ++i) m[static_cast<size_t>(i)] = -INFINITY;
    for (int64_t i = 0; i < w; ++i) s[static_cast<size_t>(i)] = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      const T* row = x + base + j * inner;
      for (int64_t i = 0; i < w; ++i) {
        m[static_cast<size_t>(i)] =
            std::max(m[static_cast<size_t>(i)], static_cast<double>(row[i]));
      }
    }
    for (int64_t j = 0; j < n; ++j) {
      const T* row = x + base + j * inner;
      for (int64_t i = 0; i < w; ++i) {
        const auto k = static_cast<size_t>(i);
        s[k] += std::exp(static_cast<double>(row[i]) - m[k]);
      }
    }
    for (int64_t j = 0; j < n; ++j) {
      const T* row = x + base + j * inner;
      T* o = out + base + j * inner;
      for (int64_t i = 0; i < w; ++i) {
        const auto k = static_cast<size_t>(i);
        const double shifted = static_cast<double>(row[i]) - m[k];
        o[i] = static_cast<T>(kind == SoftmaxKind::Softmax ? std::exp(shifted) / s[k]
                                                           : shifted - std::log(s[k]));
      }
    }
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
