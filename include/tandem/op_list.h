// The one list of ops: elementwise ops and reductions with enums, the other
// families by name. Public functions, op names, the backends' op switches and
// the autograd record iterate over these X-macros, so a new op is added here
// once; its formula goes in src/core/elementwise_math.h and its record in the
// op registry (src/check/, tandem/check.h). docs/design.md's op table is
// written by hand and checked against this list (ctest docs_ops).
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

// The other ops, by family, one X(name) per public function (their
// signatures differ, so no enum or switch is built from these). The op
// registry (tandem/check.h) is held against every list here: each op has at
// least one record (ctest RegistryCoverage.EveryListedOpHasARecord).
#define TANDEM_MORE_REDUCE_OPS(X) X(var)
#define TANDEM_SOFTMAX_LOSS_OPS(X)    \
  X(softmax)                          \
  X(log_softmax)                      \
  X(cross_entropy)                    \
  X(nll_loss)                         \
  X(mse_loss)                         \
  X(binary_cross_entropy)             \
  X(binary_cross_entropy_with_logits) \
  X(l2_penalty)
#define TANDEM_MATMUL_OPS(X) X(mm) X(bmm) X(matmul) X(linear)
#define TANDEM_CONV_OPS(X) \
  X(conv2d) X(max_pool2d) X(avg_pool2d) X(adaptive_avg_pool2d) X(batch_norm)
#define TANDEM_INDEX_OPS(X) \
  X(where)                  \
  X(isfinite) X(all_finite) X(index_select) X(gather) X(scatter_add) X(index_add) X(one_hot)
#define TANDEM_RANDOM_OPS(X) \
  X(rand) X(randn) X(randint) X(uniform) X(normal) X(dropout) X(dropout_mask)
#define TANDEM_COPY_OPS(X) X(cat) X(stack) X(permute) X(transpose) X(clone) X(view)
// Tensor::slice and its spellings (an alias when one dense range, else a copy).
#define TANDEM_SLICE_OPS(X) \
  X(slice) X(select) X(narrow) X(chunk) X(split) X(split_with_sizes) X(unbind) X(index)
// The fused optimizer steps (src/core/optim_decls.inc), run through optim::*.
#define TANDEM_OPTIM_OPS(X) X(sgd_step) X(adam_step) X(rmsprop_step) X(adagrad_step)
// clang-format off
#define TANDEM_OTHER_OPS(X) \
  TANDEM_MORE_REDUCE_OPS(X) \
  TANDEM_SOFTMAX_LOSS_OPS(X) \
  TANDEM_MATMUL_OPS(X) \
  TANDEM_CONV_OPS(X) \
  TANDEM_INDEX_OPS(X) \
  TANDEM_RANDOM_OPS(X) \
  TANDEM_COPY_OPS(X) \
  TANDEM_SLICE_OPS(X) \
  TANDEM_OPTIM_OPS(X)
// clang-format on

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
