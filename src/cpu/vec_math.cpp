// Vectorised transcendental functions (see vec_math.h). One loop per
// (instruction set, function, dtype), stamped out by a macro: whole vectors
// straight from memory, the tail through a zero-padded vector on the stack.
// Each loop carries its own target attribute, so only these functions use
// AVX-512/AVX2 instructions and the rest of the library stays portable; the
// SLEEF functions called are the ones built for that instruction set (the
// AVX2 and AVX-512 ones use FMA internally, which is why their results may
// differ from glibc's by an ulp; -ffp-contract=off does not reach into them).
#include "cpu/vec_math.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "cpu/cpu_utils.h"

#if defined(TANDEM_HAVE_SLEEF) && defined(__x86_64__) && defined(__GNUC__)
#define TANDEM_VEC_X86 1
#include <immintrin.h>
// sleef.h declares its 256- and 512-bit functions only where __AVX__ /
// __AVX512F__ are defined, and g++'s `#pragma GCC target` does not define
// them: define them around the include (declarations only, no code), so this
// file needs no -mavx flags and its other functions stay baseline x86-64.
#if !defined(__AVX512F__)
#define TANDEM_UNDEF_AVX512F_ 1
#define __AVX512F__ 1
#endif
#if !defined(__AVX__)
#define TANDEM_UNDEF_AVX_ 1
#define __AVX__ 1
#endif
#include <sleef.h>
#ifdef TANDEM_UNDEF_AVX512F_
#undef __AVX512F__
#undef TANDEM_UNDEF_AVX512F_
#endif
#ifdef TANDEM_UNDEF_AVX_
#undef __AVX__
#undef TANDEM_UNDEF_AVX_
#endif
#endif

namespace tandem {
namespace cpu {
namespace vec {

namespace {

using MapF = void (*)(const float*, float*, int64_t);
using MapD = void (*)(const double*, double*, int64_t);

// The ops with a vector kernel, in table order.
constexpr UnaryOp kOps[] = {UnaryOp::Exp, UnaryOp::Log, UnaryOp::Tanh, UnaryOp::Sigmoid,
                            UnaryOp::Erf};
constexpr int kNumOps = 5;

int op_index(UnaryOp op) {
  for (int k = 0; k < kNumOps; ++k) {
    if (kOps[k] == op) return k;
  }
  return -1;
}

template <UnaryOp Op, typename T>
void scalar_map(const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = math::UnaryFormula<Op>::forward(x[i], T(0), T(0));
}

template <typename T>
void scalar_unary(UnaryOp op, const T* x, T* y, int64_t n) {
  util::visit_unary_op(op, [&](auto op_tag) { scalar_map<decltype(op_tag)::value, T>(x, y, n); });
}

#if TANDEM_VEC_X86

// NAME(x, y, n): y = FN(x) in vectors of W elements of type T.
#define TANDEM_VEC_MAP_(NAME, TARGET, T, W, LOAD, STORE, FN)               \
  __attribute__((target(TARGET))) void NAME(const T* x, T* y, int64_t n) { \
    int64_t i = 0;                                                         \
    for (; i + W <= n; i += W) STORE(y + i, FN(LOAD(x + i)));              \
    if (i < n) {                                                           \
      T buf[W] = {};                                                       \
      std::memcpy(buf, x + i, static_cast<size_t>(n - i) * sizeof(T));     \
      STORE(buf, FN(LOAD(buf)));                                           \
      std::memcpy(y + i, buf, static_cast<size_t>(n - i) * sizeof(T));     \
    }                                                                      \
  }

// sigmoid(x) = (x < 0 ? z : 1) / (1 + z), z = exp(-|x|): the formula of
// math::Sigmoid::forward without a branch. NaN: z is NaN, so is the result.
#define TANDEM_VEC_SIGMOID_AVX512_(NAME, V, SUF, EXP)                                        \
  __attribute__((target("avx512f"))) inline V NAME(V x) {                                    \
    const V zero = _mm512_setzero_##SUF(), one = _mm512_set1_##SUF(1);                       \
    const V z = EXP(_mm512_sub_##SUF(zero, _mm512_abs_##SUF(x)));                            \
    const auto neg = _mm512_cmp_##SUF##_mask(x, zero, _CMP_LT_OQ);                           \
    return _mm512_div_##SUF(_mm512_mask_blend_##SUF(neg, one, z), _mm512_add_##SUF(one, z)); \
  }
#define TANDEM_VEC_SIGMOID_AVX2_(NAME, V, SUF, EXP)                                      \
  __attribute__((target("avx2,fma"))) inline V NAME(V x) {                               \
    const V zero = _mm256_setzero_##SUF(), one = _mm256_set1_##SUF(1);                   \
    const V sign = _mm256_set1_##SUF(-0.0);                                              \
    const V z = EXP(_mm256_or_##SUF(x, sign)); /* -|x| */                                \
    const V neg = _mm256_cmp_##SUF(x, zero, _CMP_LT_OQ);                                 \
    return _mm256_div_##SUF(_mm256_blendv_##SUF(one, z, neg), _mm256_add_##SUF(one, z)); \
  }
#define TANDEM_VEC_SIGMOID_SSE2_(NAME, V, SUF, EXP)                                \
  inline V NAME(V x) {                                                             \
    const V zero = _mm_setzero_##SUF(), one = _mm_set1_##SUF(1);                   \
    const V z = EXP(_mm_or_##SUF(x, _mm_set1_##SUF(-0.0)));                        \
    const V neg = _mm_cmplt_##SUF(x, zero);                                        \
    const V num = _mm_or_##SUF(_mm_and_##SUF(neg, z), _mm_andnot_##SUF(neg, one)); \
    return _mm_div_##SUF(num, _mm_add_##SUF(one, z));                              \
  }

TANDEM_VEC_SIGMOID_AVX512_(sigmoid_f16, __m512, ps, Sleef_expf16_u10avx512f)
TANDEM_VEC_SIGMOID_AVX512_(sigmoid_d8, __m512d, pd, Sleef_expd8_u10avx512f)
TANDEM_VEC_SIGMOID_AVX2_(sigmoid_f8, __m256, ps, Sleef_expf8_u10avx2)
TANDEM_VEC_SIGMOID_AVX2_(sigmoid_d4, __m256d, pd, Sleef_expd4_u10avx2)
TANDEM_VEC_SIGMOID_SSE2_(sigmoid_f4, __m128, ps, Sleef_expf4_u10sse2)
TANDEM_VEC_SIGMOID_SSE2_(sigmoid_d2, __m128d, pd, Sleef_expd2_u10sse2)

// One set of maps per instruction set: exp, log, tanh, sigmoid, erf.
#define TANDEM_VEC_SET_(ISA, TARGET, WF, WD, LDF, STF, LDD, STD, EXPF, LOGF, TANHF, SIGF, ERFF, \
                        EXPD, LOGD, TANHD, SIGD, ERFD)                                          \
  TANDEM_VEC_MAP_(exp_f_##ISA, TARGET, float, WF, LDF, STF, EXPF)                               \
  TANDEM_VEC_MAP_(log_f_##ISA, TARGET, float, WF, LDF, STF, LOGF)                               \
  TANDEM_VEC_MAP_(tanh_f_##ISA, TARGET, float, WF, LDF, STF, TANHF)                             \
  TANDEM_VEC_MAP_(sigmoid_f_##ISA, TARGET, float, WF, LDF, STF, SIGF)                           \
  TANDEM_VEC_MAP_(erf_f_##ISA, TARGET, float, WF, LDF, STF, ERFF)                               \
  TANDEM_VEC_MAP_(exp_d_##ISA, TARGET, double, WD, LDD, STD, EXPD)                              \
  TANDEM_VEC_MAP_(log_d_##ISA, TARGET, double, WD, LDD, STD, LOGD)                              \
  TANDEM_VEC_MAP_(tanh_d_##ISA, TARGET, double, WD, LDD, STD, TANHD)                            \
  TANDEM_VEC_MAP_(sigmoid_d_##ISA, TARGET, double, WD, LDD, STD, SIGD)                          \
  TANDEM_VEC_MAP_(erf_d_##ISA, TARGET, double, WD, LDD, STD, ERFD)

TANDEM_VEC_SET_(avx512, "avx512f", 16, 8, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_loadu_pd,
                _mm512_storeu_pd, Sleef_expf16_u10avx512f, Sleef_logf16_u10avx512f,
                Sleef_tanhf16_u10avx512f, sigmoid_f16, Sleef_erff16_u10avx512f,
                Sleef_expd8_u10avx512f, Sleef_logd8_u10avx512f, Sleef_tanhd8_u10avx512f, sigmoid_d8,
                Sleef_erfd8_u10avx512f)
TANDEM_VEC_SET_(avx2, "avx2,fma", 8, 4, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_loadu_pd,
                _mm256_storeu_pd, Sleef_expf8_u10avx2, Sleef_logf8_u10avx2, Sleef_tanhf8_u10avx2,
                sigmoid_f8, Sleef_erff8_u10avx2, Sleef_expd4_u10avx2, Sleef_logd4_u10avx2,
                Sleef_tanhd4_u10avx2, sigmoid_d4, Sleef_erfd4_u10avx2)
TANDEM_VEC_SET_(sse2, "sse2", 4, 2, _mm_loadu_ps, _mm_storeu_ps, _mm_loadu_pd, _mm_storeu_pd,
                Sleef_expf4_u10sse2, Sleef_logf4_u10sse2, Sleef_tanhf4_u10sse2, sigmoid_f4,
                Sleef_erff4_u10sse2, Sleef_expd2_u10sse2, Sleef_logd2_u10sse2, Sleef_tanhd2_u10sse2,
                sigmoid_d2, Sleef_erfd2_u10sse2)

#undef TANDEM_VEC_SET_
#undef TANDEM_VEC_MAP_

// Indexed by Isa (Scalar has no row).
constexpr MapF kFloatMaps[4][kNumOps] = {
    {nullptr, nullptr, nullptr, nullptr, nullptr},
    {exp_f_sse2, log_f_sse2, tanh_f_sse2, sigmoid_f_sse2, erf_f_sse2},
    {exp_f_avx2, log_f_avx2, tanh_f_avx2, sigmoid_f_avx2, erf_f_avx2},
    {exp_f_avx512, log_f_avx512, tanh_f_avx512, sigmoid_f_avx512, erf_f_avx512}};
constexpr MapD kDoubleMaps[4][kNumOps] = {
    {nullptr, nullptr, nullptr, nullptr, nullptr},
    {exp_d_sse2, log_d_sse2, tanh_d_sse2, sigmoid_d_sse2, erf_d_sse2},
    {exp_d_avx2, log_d_avx2, tanh_d_avx2, sigmoid_d_avx2, erf_d_avx2},
    {exp_d_avx512, log_d_avx512, tanh_d_avx512, sigmoid_d_avx512, erf_d_avx512}};

Isa detect_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
  return Isa::Sse2;
}

#else

Isa detect_isa() { return Isa::Scalar; }

#endif  // TANDEM_VEC_X86

Isa from_env(Isa best) {
  const char* v = std::getenv("TANDEM_CPU_ISA");
  if (v == nullptr) return best;
  for (Isa level : {Isa::Scalar, Isa::Sse2, Isa::Avx2, Isa::Avx512}) {
    if (std::strcmp(v, isa_name(level)) == 0) return std::min(level, best);
  }
  return best;
}

std::atomic<int>& current_isa() {
  static std::atomic<int> level{static_cast<int>(from_env(best_isa()))};
  return level;
}

}  // namespace

Isa best_isa() {
  static const Isa best = detect_isa();
  return best;
}

Isa isa() { return static_cast<Isa>(current_isa().load(std::memory_order_relaxed)); }

void set_isa(Isa level) {
  current_isa().store(static_cast<int>(std::min(level, best_isa())), std::memory_order_relaxed);
}

const char* isa_name(Isa level) {
  switch (level) {
    case Isa::Scalar:
      return "scalar";
    case Isa::Sse2:
      return "sse2";
    case Isa::Avx2:
      return "avx2";
    case Isa::Avx512:
      return "avx512";
  }
  return "?";
}

bool has_unary(UnaryOp op) { return op_index(op) >= 0; }

void unary(UnaryOp op, const float* x, float* y, int64_t n) {
#if TANDEM_VEC_X86
  const int k = op_index(op);
  const Isa level = isa();
  if (k >= 0 && level != Isa::Scalar) {
    kFloatMaps[static_cast<int>(level)][k](x, y, n);
    return;
  }
#endif
  scalar_unary(op, x, y, n);
}

void unary(UnaryOp op, const double* x, double* y, int64_t n) {
#if TANDEM_VEC_X86
  const int k = op_index(op);
  const Isa level = isa();
  if (k >= 0 && level != Isa::Scalar) {
    kDoubleMaps[static_cast<int>(level)][k](x, y, n);
    return;
  }
#endif
  scalar_unary(op, x, y, n);
}

}  // namespace vec
}  // namespace cpu
}  // namespace tandem
