// Element conversions, written once for both backends (__host__ __device__ in
// CUDA translation units), so copy_convert, fill, arange and scalar arguments
// give the same values on CPU and CUDA.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/hd.h"

namespace tandem {

// A static_cast, except that floating -> integer truncates toward zero,
// saturates at D's range and maps NaN to 0 (a C++ cast of those values is
// undefined behaviour; the GPU's cvt to 8-bit would wrap).
template <typename D, typename S>
TANDEM_HD D convert_value(S v) {
  if constexpr (std::is_floating_point<S>::value && !std::is_floating_point<D>::value) {
    if (v != v) return D(0);
    // double(max) of int64 is 2^63, one past the range, so >= catches it.
    if (static_cast<double>(v) >= static_cast<double>(std::numeric_limits<D>::max())) {
      return std::numeric_limits<D>::max();
    }
    if (static_cast<double>(v) <= static_cast<double>(std::numeric_limits<D>::min())) {
      return std::numeric_limits<D>::min();
    }
    return static_cast<D>(v);
  } else {
    return static_cast<D>(v);
  }
}

// A double argument (fill value, scalar operand, alpha) as T: integers go
// through int64, so -1 wraps to 255 in uint8.
template <typename T>
TANDEM_HD T scalar_to(double v) {
  if constexpr (std::is_floating_point<T>::value) {
    return static_cast<T>(v);
  } else {
    return static_cast<T>(convert_value<int64_t>(v));
  }
}

}  // namespace tandem
