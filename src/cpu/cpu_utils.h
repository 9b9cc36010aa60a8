// Internal helpers shared by the CPU backend (src/cpu/*.cpp): OpenMP loops,
// dtype conversions without undefined behaviour, wrapping integer arithmetic,
// and the per-element semantics of every UnaryOp and BinaryOp (written once,
// here; kernels/elementwise.cu has the CUDA twin and must agree with it).
//
// Conventions that make CPU and CUDA agree bit for bit where they can:
//   - float -> integer conversions truncate, saturate at the target's range and
//     send NaN to 0 (what the GPU's cvt instruction does);
//   - a double scalar becomes an integer through int64, so -1 wraps to 255 in
//     uint8 (x - 1 on uint8 wraps like the tensor form);
//   - integer +, -, * wrap (computed in the unsigned type, no UB); integer
//     division truncates toward zero and INT_MIN / -1 wraps to INT_MIN;
//   - `a + alpha * b` rounds the product first. Do not compile with FMA
//     contraction (-mfma without -ffp-contract=off) or a few results move by
//     one rounding.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "core/backend.h"
#include "core/convert.h"
#include "core/visit_word.h"

namespace tandem {
namespace cpu {
namespace util {

// Below this many elements of work a loop runs on one thread: starting the
// OpenMP team costs more than it saves.
constexpr int64_t kParallelGrain = 32768;

// f(i) for i in [0, n); threads when n * cost_per_item is large. f must not
// throw (an exception cannot leave an OpenMP region): check arguments first.
template <typename F>
inline void parallel_for(int64_t n, int64_t cost_per_item, const F& f) {
#pragma omp parallel for schedule(static) if (n > 1 && n * cost_per_item > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) f(i);
}

template <typename T>
constexpr bool kIsFloat = std::is_floating_point<T>::value;

template <typename T>
inline bool is_nan(T v) {
  if constexpr (kIsFloat<T>) {
    return std::isnan(v);
  } else {
    return false;
  }
}

// On a hot row loop: one copy per instruction set, chosen at load time (GCC's
// target_clones; the library itself stays baseline x86-64).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TANDEM_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TANDEM_CPU_CLONES
#endif

// max over x[0, n) as double, -inf when empty; NaN elements are skipped (as in
// std::max(m, x) from -inf). Sixteen independent maxima, so the compiler
// turns the loop into packed max instructions (one running maximum is a
// dependency chain of scalar maxss, 4x slower).
// 64-byte GCC vectors (the attribute cannot take a dependent type).
template <typename T>
struct Vec64;
template <>
struct Vec64<float> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct Vec64<double> {
  typedef double type __attribute__((vector_size(64)));
};

template <typename T>
inline double row_max(const T* x, int64_t n) {
  // A 64-byte GCC vector of running maxima: the compiler lowers it to
  // whatever the calling function's target has (one zmm in an AVX-512 clone,
  // four xmm in the SSE2 default); plain arrays of maxima were left scalar.
  constexpr int64_t kLanes = 64 / static_cast<int64_t>(sizeof(T));
  using Vec = typename Vec64<T>::type;
  Vec acc;
  for (int64_t k = 0; k < kLanes; ++k) acc[k] = -std::numeric_limits<T>::infinity();
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    Vec v;
    std::memcpy(&v, x + j, sizeof(Vec));
    acc = v > acc ? v : acc;
  }
  T m = acc[0];
  for (int64_t k = 1; k < kLanes; ++k) m = acc[k] > m ? acc[k] : m;
  for (; j < n; ++j) m = x[j] > m ? x[j] : m;
  return static_cast<double>(m);
}

// ---- Conversions ---------------------------------------------------------------

// Conversions (core/convert.h, shared with CUDA).
template <typename D, typename S>
inline D convert(S v) {
  return convert_value<D>(v);
}
using ::tandem::scalar_to;

// ---- Wrapping integer arithmetic -------------------------------------------------

template <typename T>
using Unsigned = std::make_unsigned_t<T>;

template <typename T>
inline T add_wrap(T a, T b) {
  if constexpr (kIsFloat<T>) {
    return a + b;
  } else {
    return static_cast<T>(static_cast<Unsigned<T>>(a) + static_cast<Unsigned<T>>(b));
  }
}
template <typename T>
inline T sub_wrap(T a, T b) {
  if constexpr (kIsFloat<T>) {
    return a - b;
  } else {
    return static_cast<T>(static_cast<Unsigned<T>>(a) - static_cast<Unsigned<T>>(b));
  }
}
template <typename T>
inline T mul_wrap(T a, T b) {
  if constexpr (kIsFloat<T>) {
    return a * b;
  } else {
    return static_cast<T>(static_cast<Unsigned<T>>(a) * static_cast<Unsigned<T>>(b));
  }
}
// Callers rule out integer division by zero before the loop (it throws); the
// guard here only keeps the functor free of UB.
template <typename T>
inline T div_checked(T a, T b) {
  if constexpr (kIsFloat<T>) {
    return a / b;
  } else {
    if (b == T(0)) return T(0);
    if constexpr (std::is_signed<T>::value) {
      if (b == T(-1)) return sub_wrap(T(0), a);  // INT_MIN / -1 overflows
    }
    return static_cast<T>(a / b);
  }
}

// ---- Op semantics ------------------------------------------------------------------

template <UnaryOp Op, typename T>
inline T apply_unary(T x, T p0, T p1) {
  if constexpr (Op == UnaryOp::Relu) {
    return x < T(0) ? T(0) : x;  // NaN passes through, as in PyTorch
  } else if constexpr (Op == UnaryOp::Sigmoid) {
    // exp of a non-positive number only: no overflow for large |x|.
    if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
    const T z = std::exp(x);
    return z / (T(1) + z);
  } else if constexpr (Op == UnaryOp::Tanh) {
    return std::tanh(x);
  } else if constexpr (Op == UnaryOp::Exp) {
    return std::exp(x);
  } else if constexpr (Op == UnaryOp::Log) {
    return std::log(x);
  } else if constexpr (Op == UnaryOp::Sqrt) {
    return std::sqrt(x);
  } else if constexpr (Op == UnaryOp::Rsqrt) {
    return T(1) / std::sqrt(x);
  } else if constexpr (Op == UnaryOp::Neg) {
    return -x;
  } else if constexpr (Op == UnaryOp::Abs) {
    return std::fabs(x);
  } else if constexpr (Op == UnaryOp::Square) {
    return x * x;
  } else if constexpr (Op == UnaryOp::Erf) {
    return std::erf(x);
  } else if constexpr (Op == UnaryOp::Pow) {
    return std::pow(x, p0);
  } else if constexpr (Op == UnaryOp::Clamp) {
    const T lo_clamped = x < p0 ? p0 : x;      // max(x, lo); NaN passes through
    return p1 < lo_clamped ? p1 : lo_clamped;  // min(., hi)
  } else {
    static_assert(sizeof(T) == 0, "apply_unary: op without a formula");
  }
}

template <BinaryOp Op>
constexpr bool kIsComparison = Op >= BinaryOp::Eq;

template <BinaryOp Op, typename T>
using BinaryResult = std::conditional_t<kIsComparison<Op>, uint8_t, T>;

// alpha is used by Add/Sub only: a + alpha * b, a - alpha * b.
template <BinaryOp Op, typename T>
inline BinaryResult<Op, T> apply_binary(T a, T b, T alpha) {
  if constexpr (Op == BinaryOp::Add) {
    return add_wrap(a, mul_wrap(alpha, b));
  } else if constexpr (Op == BinaryOp::Sub) {
    return sub_wrap(a, mul_wrap(alpha, b));
  } else if constexpr (Op == BinaryOp::Mul) {
    return mul_wrap(a, b);
  } else if constexpr (Op == BinaryOp::Div) {
    return div_checked(a, b);
  } else if constexpr (Op == BinaryOp::Maximum) {
    return is_nan(a) ? a : (is_nan(b) ? b : (a > b ? a : b));
  } else if constexpr (Op == BinaryOp::Minimum) {
    return is_nan(a) ? a : (is_nan(b) ? b : (a < b ? a : b));
  } else if constexpr (Op == BinaryOp::Eq) {
    return a == b;
  } else if constexpr (Op == BinaryOp::Ne) {
    return a != b;
  } else if constexpr (Op == BinaryOp::Lt) {
    return a < b;
  } else if constexpr (Op == BinaryOp::Le) {
    return a <= b;
  } else if constexpr (Op == BinaryOp::Gt) {
    return a > b;
  } else if constexpr (Op == BinaryOp::Ge) {
    return a >= b;
  } else {
    static_assert(sizeof(T) == 0, "apply_binary: op without a formula");
  }
}

// Calls f(std::integral_constant<UnaryOp, op>{}), making the runtime op a
// compile-time constant inside f (one loop per op, no switch per element).
template <typename F>
inline void visit_unary_op(UnaryOp op, const F& f) {
  switch (op) {
#define TANDEM_CPU_UNARY_CASE_(name, Enum) \
  case UnaryOp::Enum:                      \
    return f(std::integral_constant<UnaryOp, UnaryOp::Enum>{});
    TANDEM_UNARY_OPS(TANDEM_CPU_UNARY_CASE_)
    TANDEM_PARAM_UNARY_OPS(TANDEM_CPU_UNARY_CASE_)
#undef TANDEM_CPU_UNARY_CASE_
  }
  TANDEM_FAIL("unary: unknown op ", static_cast<int>(op));
}

template <typename F>
inline void visit_binary_op(BinaryOp op, const F& f) {
  switch (op) {
#define TANDEM_CPU_BINARY_CASE_(name, Enum) \
  case BinaryOp::Enum:                      \
    return f(std::integral_constant<BinaryOp, BinaryOp::Enum>{});
    TANDEM_BINARY_OPS(TANDEM_CPU_BINARY_CASE_)
#undef TANDEM_CPU_BINARY_CASE_
  }
  TANDEM_FAIL("binary: unknown op ", static_cast<int>(op));
}

// Element moves by word size (permute, index_select, gather):
// core/visit_word.h (shared with the CUDA backend).
using ::tandem::visit_word;

}  // namespace util
}  // namespace cpu
}  // namespace tandem
