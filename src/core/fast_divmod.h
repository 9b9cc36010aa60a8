// Integer division by a divisor fixed at launch time, shared by the CUDA
// kernels (index arithmetic of kernels/pool.cu, indexing.cu, copy.cu,
// batch_norm.cu, softmax.cu) and the CPU test that checks it.
//
// Divmod<uint32_t> (FastDivmod) replaces n / d and n % d by a multiply-high,
// an add and a shift (Granlund and Montgomery, "Division by invariant
// integers using multiplication", 1994; PyTorch's IntDivider):
//   s = ceil(log2 d),  m = floor(2^32 (2^s - d) / d) + 1,
//   n / d = (mulhi(n, m) + n) >> s,
// exact for 1 <= d <= 2^31 - 1 and 0 <= n <= 2^31 - 1 (then mulhi(n, m) + n
// fits in 32 bits). Divmod<int64_t> is the plain 64-bit fallback with the
// same interface, so a kernel templated on its index type picks one or the
// other: launchers take the 32-bit path when every size and offset the
// kernel forms fits in int32 (fits_int32), the 64-bit path otherwise.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "core/hd.h"
#include "tandem/error.h"

namespace tandem {

template <typename Index>
struct Divmod;

template <>
struct Divmod<uint32_t> {
  uint32_t divisor = 1;
  uint32_t multiplier = 1;
  uint32_t shift = 0;

  Divmod() = default;
  // Host only: 1 <= d <= 2^31 - 1.
  explicit Divmod(int64_t d) {
    TANDEM_CHECK(d >= 1 && d <= INT32_MAX, "FastDivmod: divisor ", d, " is outside [1, 2^31 - 1]");
    divisor = static_cast<uint32_t>(d);
    while ((uint64_t{1} << shift) < divisor) ++shift;
    multiplier = static_cast<uint32_t>(
        ((uint64_t{1} << 32) * ((uint64_t{1} << shift) - divisor)) / divisor + 1);
  }

  TANDEM_HD uint32_t div(uint32_t n) const {
#if defined(__CUDA_ARCH__)
    const uint32_t hi = __umulhi(n, multiplier);
#else
    const auto hi = static_cast<uint32_t>((static_cast<uint64_t>(n) * multiplier) >> 32);
#endif
    return (hi + n) >> shift;
  }
  TANDEM_HD uint32_t mod(uint32_t n) const { return n - div(n) * divisor; }
  TANDEM_HD void divmod(uint32_t n, uint32_t& q, uint32_t& r) const {
    q = div(n);
    r = n - q * divisor;
  }
};

template <>
struct Divmod<int64_t> {
  int64_t divisor = 1;

  Divmod() = default;
  explicit Divmod(int64_t d) : divisor(d) {
    TANDEM_CHECK(d >= 1, "Divmod: divisor ", d, " is not positive");
  }

  TANDEM_HD int64_t div(int64_t n) const { return n / divisor; }
  TANDEM_HD int64_t mod(int64_t n) const { return n % divisor; }
  TANDEM_HD void divmod(int64_t n, int64_t& q, int64_t& r) const {
    q = n / divisor;
    r = n - q * divisor;
  }
};

using FastDivmod = Divmod<uint32_t>;

// True when every value (sizes, element counts, largest offsets) is at most
// 2^31 - 1, so a kernel may index with uint32_t and FastDivmod.
inline bool fits_int32(std::initializer_list<int64_t> values) {
  for (int64_t v : values)
    if (v < 0 || v > INT32_MAX) return false;
  return true;
}

}  // namespace tandem
