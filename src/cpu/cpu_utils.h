// Internal helpers shared by the CPU backend (src/cpu/*.cpp): OpenMP loops,
// dtype conversions without undefined behaviour, and visitors that turn a runtime op into a
// compile-time one. The per-element semantics of every UnaryOp and BinaryOp are in
// core/elementwise_math.h, shared with the CUDA kernels.
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
#include "core/elementwise_math.h"
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

using math::is_nan;
using math::kIsFloat;

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

// The pooling and batch norm kernels take float32 and float64 only.
inline void check_floating_dtype(const char* what, const Tensor& t) {
  TANDEM_CHECK(is_floating(t.dtype()), what, ": expected float32 or float64, got ",
               dtype_name(t.dtype()));
}

// ---- Conversions ---------------------------------------------------------------

// Conversions (core/convert.h, shared with CUDA).
template <typename D, typename S>
inline D convert(S v) {
  return convert_value<D>(v);
}
using ::tandem::scalar_to;

// ---- Op semantics: core/elementwise_math.h (shared with CUDA) ---------------------------

using math::add_wrap;
using math::BinaryResult;

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
