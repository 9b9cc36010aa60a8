// The per-element semantics of every UnaryOp and BinaryOp, written once for
// both backends (as optim_math.h does for the optimizers and pool_window.h for
// the pooling windows): the CPU loops (src/cpu/elementwise.cpp) and the CUDA
// kernels (kernels/elementwise.cu) instantiate these functors and only walk
// memory. Tests hold them against independent float64 references
// (tests/op_records.h).
//
// A unary op is a struct named as its enum (math::Relu for UnaryOp::Relu):
//   forward(x, p0, p1)      the value; p0, p1 are pow's exponent and clamp's
//                           bounds (unused elsewhere), in x's type
//   backward(g, s, p0, p1)  the gradient of the input given the output's g,
//                           where s is the input x or the output y (kSaves)
// and UnaryFormula<UnaryOp::Relu> names it; adding an op to op_list.h and a
// struct here gives the op on both devices and its autograd backward.
//
// Conventions that make CPU and CUDA agree bit for bit where they can:
//   - integer +, -, * wrap (computed in the unsigned type, no UB); integer
//     division truncates toward zero and INT_MIN / -1 wraps to INT_MIN; the
//     functor returns 0 for an integer division by zero (the CPU op throws
//     before its loop; the device cannot, see kernels/elementwise.cu);
//   - `a + alpha * b` rounds the product first: both compilers build these
//     files without FMA contraction (-ffp-contract=off, --fmad=false), and
//     mul_rn() says so explicitly on the device;
//   - float math calls the CUDA library on the device and std:: on the host:
//     results agree to the functions' ulp bounds (exp, log, tanh, erf, pow),
//     exactly where both are correctly rounded (sqrt, division).
// The CPU's SIMD fast path for exp/log/tanh/sigmoid/erf (src/cpu/vec_math.h)
// computes the same forward formulas with SLEEF's vector functions.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/hd.h"
#include "tandem/op_list.h"

namespace tandem {
namespace math {

// ---- Float math: one name for float and double on both sides ----------------------
// (std:: on the host; CUDA's device functions, which have the same ulp bounds
// as glibc's for these, on the device).
#if defined(__CUDA_ARCH__)
#define TANDEM_MATH_FN_(name, f32, f64)              \
  TANDEM_HD float name(float x) { return ::f32(x); } \
  TANDEM_HD double name(double x) { return ::f64(x); }
#else
#define TANDEM_MATH_FN_(name, f32, f64)                  \
  TANDEM_HD float name(float x) { return std::name(x); } \
  TANDEM_HD double name(double x) { return std::name(x); }
#endif
TANDEM_MATH_FN_(exp, expf, exp)
TANDEM_MATH_FN_(log, logf, log)
TANDEM_MATH_FN_(sqrt, sqrtf, sqrt)
TANDEM_MATH_FN_(tanh, tanhf, tanh)
TANDEM_MATH_FN_(fabs, fabsf, fabs)
TANDEM_MATH_FN_(erf, erff, erf)
#undef TANDEM_MATH_FN_

TANDEM_HD float pow(float x, float p) {
#if defined(__CUDA_ARCH__)
  return ::powf(x, p);
#else
  return std::pow(x, p);
#endif
}
TANDEM_HD double pow(double x, double p) {
#if defined(__CUDA_ARCH__)
  return ::pow(x, p);
#else
  return std::pow(x, p);
#endif
}

template <typename T>
constexpr bool kIsFloat = std::is_floating_point<T>::value;

template <typename T>
TANDEM_HD bool is_nan(T v) {
  if constexpr (kIsFloat<T>) {
    return v != v;
  } else {
    return false;
  }
}

// ---- Wrapping integer arithmetic, rounded float products ---------------------------

template <typename T>
using Unsigned = std::make_unsigned_t<T>;

// a * b rounded on its own (never fused into a following add); integers wrap.
template <typename T>
TANDEM_HD T mul_rn(T a, T b) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same<T, float>::value) {
    return __fmul_rn(a, b);
  } else if constexpr (std::is_same<T, double>::value) {
    return __dmul_rn(a, b);
  }
#endif
  if constexpr (kIsFloat<T>) {
    return a * b;
  } else {
    return static_cast<T>(static_cast<Unsigned<T>>(a) * static_cast<Unsigned<T>>(b));
  }
}
template <typename T>
TANDEM_HD T add_wrap(T a, T b) {
  if constexpr (kIsFloat<T>) {
    return a + b;
  } else {
    return static_cast<T>(static_cast<Unsigned<T>>(a) + static_cast<Unsigned<T>>(b));
  }
}
template <typename T>
TANDEM_HD T sub_wrap(T a, T b) {
  if constexpr (kIsFloat<T>) {
    return a - b;
  } else {
    return static_cast<T>(static_cast<Unsigned<T>>(a) - static_cast<Unsigned<T>>(b));
  }
}
template <typename T>
TANDEM_HD T neg_wrap(T a) {
  return sub_wrap(T(0), a);
}
template <typename T>
TANDEM_HD T div_checked(T a, T b) {
  if constexpr (kIsFloat<T>) {
    return a / b;
  } else {
    if (b == T(0)) return T(0);
    if constexpr (std::is_signed<T>::value) {
      if (b == T(-1)) return neg_wrap(a);  // INT_MIN / -1 overflows
    }
    return static_cast<T>(a / b);
  }
}

// ---- Unary ops ---------------------------------------------------------------------

// Which tensor a unary op's backward reads besides the output's gradient.
enum class Saves : int8_t { Input, Output };

struct Relu {
  static constexpr Saves kSaves = Saves::Output;
  template <typename T>
  TANDEM_HD static T forward(T x, T, T) {
    return x < T(0) ? T(0) : x;  // NaN passes through, as in PyTorch
  }
  template <typename T>
  TANDEM_HD static T backward(T g, T y, T, T) {
    return y > T(0) ? g : T(0);
  }
};

struct Sigmoid {
  static constexpr Saves kSaves = Saves::Output;
  template <typename T>
  TANDEM_HD static T forward(T x, T, T) {
    // exp of a non-positive number only: no overflow for large |x|.
    if (x >= T(0)) return T(1) / (T(1) + exp(-x));
    const T z = exp(x);
    return z / (T(1) + z);
  }
  template <typename T>
  TANDEM_HD static T backward(T g, T y, T, T) {
    return mul_rn(g, y) * (T(1) - y);
  }
};

struct Tanh {
  static constexpr Saves kSaves = Saves::Output;
  template <typename T>
  TANDEM_HD static T forward(T x, T, T) {
    return tanh(x);
  }
  template <typename T>
  TANDEM_HD static T backward(T g, T y, T, T) {
    return g * (T(1) - mul_rn(y, y));
  }
};

struct Exp {
  static constexpr Saves kSaves = Saves::Output;
  template <typename T>
  TANDEM_HD static T forward(T x, T, T) {
    return exp(x);
  }
  template <typename T>
  TANDEM_HD static T backward(T g, T y, T, T) {
    return g * y;
  }
};

struct Log {
  static constexpr Saves kSaves = Saves::Input;
  template <typename T>
  TANDEM_HD static T forward(T x, T, T) {
    return log(x);
  }
  template <typename T>
  TANDEM_HD static T backward(T g, T x, T, T) {
    return g / x;
  }
};

struct Sqrt {
  static constexpr Saves kSaves = Saves::Output;
  template <typename T>
  TANDEM_HD static T forward(T x, T, T) {
    return sqrt(x);
  }
  template <typename T>
  TANDEM_HD static T backward(T g, T y, T, T) {
    return g / (T(2) * y);
  }
};

struct Rsqrt {
  static constexpr Saves kSaves = Saves::Output;
  template <typename T>
  TANDEM_HD static T forward(T x, T, T) {
    return T(1) / sqrt(x);
  }
  template <typename T>
  TANDEM_HD static T backward(T g, T y, T, T) {  // d/dx x^-1/2 = -y^3 / 2
    return g * (T(-0.5) * y * y * y);
  }
};

struct Neg {
  static constexpr Saves kSaves = Saves::Input;  // reads neither
  template <typename T>
  TANDEM_HD static T forward(T x, T, T) {
    return -x;
  }
  template <typename T>
  TANDEM_HD static T backward(T g, T, T, T) {
    return -g;
  }
};

struct Abs {
  static constexpr Saves kSaves = Saves::Input;
  template <typename T>
  TANDEM_HD static T forward(T x, T, T) {
    return fabs(x);
  }
  template <typename T>
  TANDEM_HD static T backward(T g, T x, T, T) {  // 0 at the kink (and for NaN)
    return x > T(0) ? g : (x < T(0) ? -g : T(0));
  }
};

struct Square {
  static constexpr Saves kSaves = Saves::Input;
  template <typename T>
  TANDEM_HD static T forward(T x, T, T) {
    return x * x;
  }
  template <typename T>
  TANDEM_HD static T backward(T g, T x, T, T) {
    return T(2) * x * g;
  }
};

struct Erf {
  static constexpr Saves kSaves = Saves::Input;
  template <typename T>
  TANDEM_HD static T forward(T x, T, T) {
    return erf(x);
  }
  template <typename T>
  TANDEM_HD static T backward(T g, T x, T, T) {  // 2/sqrt(pi) exp(-x^2)
    return g * (T(1.1283791670955126) * exp(-(x * x)));
  }
};

struct Silu {  // x * sigmoid(x) (SiLU, "swish")
  static constexpr Saves kSaves = Saves::Input;
  template <typename T>
  TANDEM_HD static T forward(T x, T p0, T p1) {
    return x * Sigmoid::forward(x, p0, p1);
  }
  template <typename T>
  TANDEM_HD static T backward(T g, T x, T p0, T p1) {  // s (1 + x (1 - s)), s = sigmoid(x)
    const T s = Sigmoid::forward(x, p0, p1);
    return g * (s * (T(1) + x * (T(1) - s)));
  }
};

struct Pow {  // pow(x, p0)
  static constexpr Saves kSaves = Saves::Input;
  template <typename T>
  TANDEM_HD static T forward(T x, T p0, T) {
    return pow(x, p0);
  }
  template <typename T>
  TANDEM_HD static T backward(T g, T x, T p0, T) {
    return p0 == T(0) ? T(0) : g * (p0 * pow(x, p0 - T(1)));
  }
};

struct Clamp {  // min(max(x, p0), p1)
  static constexpr Saves kSaves = Saves::Input;
  template <typename T>
  TANDEM_HD static T forward(T x, T lo, T hi) {
    const T lo_clamped = x < lo ? lo : x;      // max(x, lo); NaN passes through
    return hi < lo_clamped ? hi : lo_clamped;  // min(., hi)
  }
  template <typename T>
  TANDEM_HD static T backward(T g, T x, T lo, T hi) {  // the bounds pass the gradient
    return x >= lo && x <= hi ? g : T(0);
  }
};

// UnaryFormula<UnaryOp::Enum> is the struct Enum above.
template <UnaryOp Op>
struct UnaryFormula;
#define TANDEM_UNARY_FORMULA_(name, Enum) \
  template <>                             \
  struct UnaryFormula<UnaryOp::Enum> : Enum {};
TANDEM_UNARY_OPS(TANDEM_UNARY_FORMULA_)
TANDEM_PARAM_UNARY_OPS(TANDEM_UNARY_FORMULA_)
#undef TANDEM_UNARY_FORMULA_

// Host side: whether the backward of `op` reads the output (else the input).
inline bool backward_saves_output(UnaryOp op) {
  switch (op) {
#define TANDEM_UNARY_SAVES_(name, Enum) \
  case UnaryOp::Enum:                   \
    return Enum::kSaves == Saves::Output;
    TANDEM_UNARY_OPS(TANDEM_UNARY_SAVES_)
    TANDEM_PARAM_UNARY_OPS(TANDEM_UNARY_SAVES_)
#undef TANDEM_UNARY_SAVES_
  }
  return false;
}

// ---- Binary ops --------------------------------------------------------------------

template <BinaryOp Op>
constexpr bool kIsComparison = Op >= BinaryOp::Eq;

template <BinaryOp Op, typename T>
using BinaryResult = std::conditional_t<kIsComparison<Op>, uint8_t, T>;

// a op b; alpha is used by Add/Sub only: a + alpha * b, a - alpha * b.
template <BinaryOp Op, typename T>
TANDEM_HD BinaryResult<Op, T> binary(T a, T b, T alpha) {
  if constexpr (Op == BinaryOp::Add) {
    return add_wrap(a, mul_rn(alpha, b));
  } else if constexpr (Op == BinaryOp::Sub) {
    return sub_wrap(a, mul_rn(alpha, b));
  } else if constexpr (Op == BinaryOp::Mul) {
    return mul_rn(a, b);
  } else if constexpr (Op == BinaryOp::Div) {
    return div_checked(a, b);
  } else if constexpr (Op == BinaryOp::Maximum) {  // NaN wins
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
    static_assert(sizeof(T) == 0, "math::binary: op without a formula");
  }
}

}  // namespace math
}  // namespace tandem
