// The one list of elementwise ops. Public functions, op names, the backends'
// op switches and the autograd record iterate over these X-macros, so a new
// op is added here once; its formula goes in src/core/elementwise_math.h and
// its test record in tests/op_records.h. docs/design.md's op table is written
// by hand and checked against this list (ctest docs_ops).
//
//   X(function_name, EnumName)
#pragma once

#include <cstdint>

// Unary math on floating tensors: out = f(x).
#define TANDEM_UNARY_OPS(X) \
  X(relu, Relu)             \
  X(sigmoid, Sigmoid)       \
  X(tanh, Tanh)             \
  X(exp, Exp)               \
  X(log, Log)               \
  X(sqrt, Sqrt)             \
  X(rsqrt, Rsqrt)           \
  X(neg, Neg)               \
  X(abs, Abs)               \
  X(square, Square)         \
  X(erf, Erf)               \
  X(silu, Silu)

// Unary ops with scalar parameters: pow(x, p0), clamp(x, p0, p1).
#define TANDEM_PARAM_UNARY_OPS(X) \
  X(pow, Pow)                     \
  X(clamp, Clamp)

// Arithmetic binary ops with NumPy broadcasting; the result has the inputs' dtype.
#define TANDEM_ARITH_BINARY_OPS(X) \
  X(add, Add)                      \
  X(sub, Sub)                      \
  X(mul, Mul)                      \
  X(div, Div)                      \
  X(maximum, Maximum)              \
  X(minimum, Minimum)

// Comparisons with broadcasting; the result is a uint8 mask of 0s and 1s.
#define TANDEM_COMPARE_OPS(X) \
  X(eq, Eq)                   \
  X(ne, Ne)                   \
  X(lt, Lt)                   \
  X(le, Le)                   \
  X(gt, Gt)                   \
  X(ge, Ge)

#define TANDEM_BINARY_OPS(X) TANDEM_ARITH_BINARY_OPS(X) TANDEM_COMPARE_OPS(X)

// Reductions over all elements or one dim.
#define TANDEM_REDUCE_OPS(X) \
  X(sum, Sum)                \
  X(mean, Mean)              \
  X(max, Max)                \
  X(min, Min)                \
  X(argmax, ArgMax)          \
  X(argmin, ArgMin)

namespace tandem {

#define TANDEM_ENUM_ENTRY_(name, Enum) Enum,
enum class UnaryOp : int8_t {
  TANDEM_UNARY_OPS(TANDEM_ENUM_ENTRY_) TANDEM_PARAM_UNARY_OPS(TANDEM_ENUM_ENTRY_)
};
enum class BinaryOp : int8_t { TANDEM_BINARY_OPS(TANDEM_ENUM_ENTRY_) };
enum class ReduceOp : int8_t { TANDEM_REDUCE_OPS(TANDEM_ENUM_ENTRY_) };
#undef TANDEM_ENUM_ENTRY_

// For binary_scalar: which side the scalar is on (s - x vs x - s).
enum class ScalarSide : int8_t { Right, Left };
enum class SoftmaxKind : int8_t { Softmax, LogSoftmax };
enum class Transpose : int8_t { No, Yes };

const char* op_name(UnaryOp op);
const char* op_name(BinaryOp op);
const char* op_name(ReduceOp op);
inline bool is_comparison(BinaryOp op) { return op >= BinaryOp::Eq; }

}  // namespace tandem
