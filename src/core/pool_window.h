// Pooling windows, shared by the CPU loops (src/cpu/pool.cpp) and the CUDA
// kernels (kernels/pool.cu) so that both pick the same elements and the same
// argmax: the window arithmetic and the max scan are written once.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/hd.h"

namespace tandem {
namespace pool {

// Positions [lo, hi) along one axis.
struct Span {
  int64_t lo, hi;
};

// Window i of a pooling with this stride, padding and kernel along an axis
// of `size` elements, clipped to [0, size).
TANDEM_HD Span window(int64_t i, int64_t stride, int64_t pad, int64_t kernel, int64_t size) {
  const int64_t start = i * stride - pad;
  return {start < 0 ? 0 : start, start + kernel < size ? start + kernel : size};
}

// Window i of `out` adaptive windows over `size` elements (PyTorch's
// start = floor(i size / out), end = ceil((i + 1) size / out)).
TANDEM_HD Span adaptive_window(int64_t i, int64_t out, int64_t size) {
  return {(i * size) / out, ((i + 1) * size + out - 1) / out};
}

// The maximum of in[u * w + v] over the window rows x cols and its flat
// index u * w + v: the first maximum in row-major order (strict >), or the
// first NaN, which wins. An empty window gives -inf at its first position.
template <typename T>
TANDEM_HD void window_max(const T* in, int64_t w, Span rows, Span cols, T& best, int64_t& arg) {
  best = static_cast<T>(-INFINITY);
  arg = rows.lo * w + cols.lo;
  for (int64_t u = rows.lo; u < rows.hi; ++u) {
    for (int64_t v = cols.lo; v < cols.hi; ++v) {
      const T val = in[u * w + v];
      if (val != val) {  // NaN
        best = val;
        arg = u * w + v;
        return;
      }
      if (val > best) {
        best = val;
        arg = u * w + v;
      }
    }
  }
}

}  // namespace pool
}  // namespace tandem
