// CPU random fills: uniform, normal, randint, dropout_mask. Each element i takes
// its random bits from the philox.h helpers (uniform_float/_double,
// normal_float/_double, bits64), which encode the element -> counter mapping
// that kernels/random.cu follows too; so uniform, randint and dropout masks are
// bit-identical across backends, normals equal to libm rounding. The affine maps
// are computed in double, product rounded before the sum, then rounded to T
// (exactly as the CUDA kernels do):
//   uniform:  T(lo + (hi - lo) * u)      normal:  T(mean + std * z)
//   randint:  low + bits64 % (high - low), in wrapping 64-bit arithmetic
//   dropout:  uniform_float(i) >= float(p) ? T(1 / (1 - p)) : 0, using the
//             float32 stream for both dtypes; p >= 1 gives all zeros.
#include <type_traits>

#include "core/philox.h"
#include "cpu/cpu_utils.h"

namespace tandem {
namespace cpu {

namespace {

// out[i] = value(i) for every element.
template <typename T, typename F>
void fill_elements(Tensor& out, const F& value) {
  T* p = out.data_ptr<T>();
  util::parallel_for(out.numel(), 8, [&](int64_t i) { p[i] = value(static_cast<uint64_t>(i)); });
}

// The uniform [0, 1) and standard normal of element i in T's stream.
template <typename T>
double unit_uniform(uint64_t seed, uint64_t offset, uint64_t i) {
  if constexpr (std::is_same<T, float>::value) {
    return static_cast<double>(philox::uniform_float(seed, offset, i));
  } else {
    return philox::uniform_double(seed, offset, i);
  }
}
template <typename T>
double standard_normal(uint64_t seed, uint64_t offset, uint64_t i) {
  if constexpr (std::is_same<T, float>::value) {
    return static_cast<double>(philox::normal_float(seed, offset, i));
  } else {
    return philox::normal_double(seed, offset, i);
  }
}

}  // namespace

void uniform(Tensor& out, uint64_t seed, uint64_t offset, double lo, double hi) {
  const double range = hi - lo;
  TANDEM_DISPATCH_FLOATING(out.dtype(), "uniform", [&] {
    fill_elements<scalar_t>(out, [&](uint64_t i) {
      return static_cast<scalar_t>(lo + range * unit_uniform<scalar_t>(seed, offset, i));
    });
  });
}

void normal(Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) {
  TANDEM_DISPATCH_FLOATING(out.dtype(), "normal", [&] {
    fill_elements<scalar_t>(out, [&](uint64_t i) {
      return static_cast<scalar_t>(mean + std * standard_normal<scalar_t>(seed, offset, i));
    });
  });
}

void randint(Tensor& out, uint64_t seed, uint64_t offset, int64_t low, int64_t high) {
  TANDEM_CHECK(low < high, "randint: low (", low, ") must be less than high (", high, ")");
  // Unsigned, so that ranges wider than INT64_MAX and low + r wrap instead of overflowing.
  const auto ulow = static_cast<uint64_t>(low);
  const uint64_t range = static_cast<uint64_t>(high) - ulow;
  TANDEM_DISPATCH_INDEX(out.dtype(), "randint", [&] {
    fill_elements<scalar_t>(out, [&](uint64_t i) {
      return static_cast<scalar_t>(
          static_cast<int64_t>(ulow + philox::bits64(seed, offset, i) % range));
    });
  });
}

void dropout_mask(Tensor& out, uint64_t seed, uint64_t offset, double p) {
  TANDEM_DISPATCH_FLOATING(out.dtype(), "dropout", [&] {
    // p >= 1 keeps nothing (and 1 / (1 - p) would be inf).
    const scalar_t scale = p >= 1.0 ? scalar_t(0) : static_cast<scalar_t>(1.0 / (1.0 - p));
    const auto threshold = static_cast<float>(p);
    fill_elements<scalar_t>(out, [&](uint64_t i) {
      return philox::uniform_float(seed, offset, i) >= threshold ? scale : scalar_t(0);
    });
  });
}

}  // namespace cpu
}  // namespace tandem
