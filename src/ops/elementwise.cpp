// Public elementwise ops: argument checks, broadcasting, output allocation and
// dispatch to cpu::/cuda:: unary, binary, binary_scalar and where.
#include <algorithm>

#include "autograd/record.h"
#include "core/elementwise_math.h"
#include "ops/dispatch.h"
#include "tandem/ops.h"

namespace tandem {

namespace detail {
// What an elementwise op that writes `written` may read for `read`: `read`
// itself when it does not overlap `written`, or is exactly its bytes (element
// i read only by the thread that writes element i: x.add_(x)); otherwise a
// copy, made first on read's device, so the op sees the values `read` had
// before it (x.div_(x[0]), m.sub_(m[0]), shifted slices of one tensor).
static Tensor unaliased_operand(const Tensor& written, const Tensor& read) {
  if (!overlaps(written, read)) return read;
  const bool same_elements = written.impl()->offset == read.impl()->offset &&
                             written.dtype() == read.dtype() && written.numel() == read.numel();
  if (same_elements) return read;
  return read.detach().clone();
}

}  // namespace detail

using detail::check_defined;
using detail::describe;

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    TANDEM_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ",
                 shape_str(b), " cannot be broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {

// The gradient of unary op's input: one fused kernel over the output's
// gradient and the saved input or output (core/elementwise_math.h).
Tensor unary_backward(UnaryOp op, const Tensor& g, const Tensor& saved, double p0, double p1) {
  Tensor grad = empty_like(saved);
  if (grad.numel() > 0) {
    TANDEM_BACKEND_CALL(saved.device(), unary_backward, op, g, saved, grad, p0, p1);
  }
  return grad;
}

}  // namespace

Tensor unary(UnaryOp op, const Tensor& x, double p0, double p1) {
  check_defined(op_name(op), x);
  detail::check_floating(op_name(op), x);
  Tensor out = empty_like(x);
  if (x.numel() > 0) TANDEM_BACKEND_CALL(x.device(), unary, op, x, out, p0, p1);
  if (autograd::should_record(x)) {
    autograd::record(out, op_name(op), {x}, {math::backward_saves_output(op) ? out : x},
                     [op, p0, p1](const Tensor& g, const std::vector<Tensor>& s) {
                       return std::vector<Tensor>{unary_backward(op, g, s[0], p0, p1)};
                     });
  }
  return out;
}

#define TANDEM_DEFINE_UNARY_(name, Enum) \
  Tensor name(const Tensor& x) { return unary(UnaryOp::Enum, x); }
TANDEM_UNARY_OPS(TANDEM_DEFINE_UNARY_)
#undef TANDEM_DEFINE_UNARY_

Tensor pow(const Tensor& x, double exponent) { return unary(UnaryOp::Pow, x, exponent); }
Tensor clamp(const Tensor& x, double lo, double hi) {
  TANDEM_CHECK(!(lo > hi), "clamp: lo (", lo, ") must not exceed hi (", hi, ")");
  return unary(UnaryOp::Clamp, x, lo, hi);
}

namespace {
void check_binary_args(const char* op, const Tensor& a, const Tensor& b) {
  check_defined(op, a, "first input");
  check_defined(op, b, "second input");
  detail::check_same_device(op, a, b);
  detail::check_same_dtype(op, a, b);
}
DType result_dtype(BinaryOp op, DType input) { return is_comparison(op) ? kUInt8 : input; }
}  // namespace

namespace {

// Where maximum/minimum takes its value from a: 1, 0, and 0.5 for ties (the
// gradient is split evenly between equal inputs, as in PyTorch).
Tensor max_min_share(BinaryOp op, const Tensor& a, const Tensor& b) {
  const Tensor wins = op == BinaryOp::Maximum ? gt(a, b) : lt(a, b);
  return wins.to(a.dtype()) + 0.5 * eq(a, b).to(a.dtype());
}

std::vector<Tensor> binary_backward(BinaryOp op, double alpha, const Tensor& g, const Tensor& a,
                                    const Tensor& b, const Shape& a_shape, const Shape& b_shape) {
  using autograd::sum_to;
  switch (op) {
    case BinaryOp::Add:
      return {sum_to(g, a_shape), sum_to(alpha == 1.0 ? g : g * alpha, b_shape)};
    case BinaryOp::Sub:
      return {sum_to(g, a_shape), sum_to(g * -alpha, b_shape)};
    case BinaryOp::Mul:
      return {sum_to(g * b, a_shape), sum_to(g * a, b_shape)};
    case BinaryOp::Div:
      return {sum_to(g / b, a_shape), sum_to(-(g * a) / (b * b), b_shape)};
    case BinaryOp::Maximum:
    case BinaryOp::Minimum: {
      const Tensor share = max_min_share(op, a, b);
      return {sum_to(g * share, a_shape), sum_to(g * (1.0 - share), b_shape)};
    }
    default:
      TANDEM_FAIL(op_name(op), ": no backward formula (autograd)");
  }
}

bool binary_saves_inputs(BinaryOp op) { return op != BinaryOp::Add && op != BinaryOp::Sub; }

Tensor binary_scalar_backward(BinaryOp op, double s, ScalarSide side, const Tensor& g,
                              const Tensor& a) {
  const bool left = side == ScalarSide::Left;
  switch (op) {
    case BinaryOp::Add:
      return g;
    case BinaryOp::Sub:
      return left ? -g : g;
    case BinaryOp::Mul:
      return g * s;
    case BinaryOp::Div:
      return left ? -(g * s) / (a * a) : g / s;
    case BinaryOp::Maximum:
    case BinaryOp::Minimum: {
      const Tensor wins = op == BinaryOp::Maximum ? gt(a, s) : lt(a, s);
      return g * (wins.to(a.dtype()) + 0.5 * eq(a, s).to(a.dtype()));
    }
    default:
      TANDEM_FAIL(op_name(op), ": no backward formula (autograd)");
  }
}

}  // namespace

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, double alpha) {
  check_binary_args(op_name(op), a, b);
  const Shape shape = broadcast_shapes(a.sizes(), b.sizes(), op_name(op));
  Tensor out = empty(shape, TensorOptions(result_dtype(op, a.dtype())).device(a.device()));
  if (out.numel() > 0) TANDEM_BACKEND_CALL(a.device(), binary, op, a, b, out, alpha);
  if (!is_comparison(op) && autograd::should_record(a, b)) {
    std::vector<Tensor> saved;
    if (binary_saves_inputs(op)) saved = {a, b};
    autograd::record(out, op_name(op), {a, b}, std::move(saved),
                     [op, alpha, a_shape = a.sizes(), b_shape = b.sizes()](
                         const Tensor& g, const std::vector<Tensor>& s) {
                       const Tensor none;
                       return binary_backward(op, alpha, g, s.empty() ? none : s[0],
                                              s.empty() ? none : s[1], a_shape, b_shape);
                     });
  }
  return out;
}

Tensor binary_scalar(BinaryOp op, const Tensor& a, double s, ScalarSide side) {
  check_defined(op_name(op), a);
  Tensor out = empty(a.sizes(), TensorOptions(result_dtype(op, a.dtype())).device(a.device()));
  if (out.numel() > 0) TANDEM_BACKEND_CALL(a.device(), binary_scalar, op, a, s, side, out);
  if (!is_comparison(op) && autograd::should_record(a)) {
    autograd::record(out, op_name(op), {a}, {a},
                     [op, s, side](const Tensor& g, const std::vector<Tensor>& saved) {
                       return std::vector<Tensor>{binary_scalar_backward(op, s, side, g, saved[0])};
                     });
  }
  return out;
}

Tensor add(const Tensor& a, const Tensor& b, double alpha) {
  return binary(BinaryOp::Add, a, b, alpha);
}
Tensor sub(const Tensor& a, const Tensor& b, double alpha) {
  return binary(BinaryOp::Sub, a, b, alpha);
}
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Div, a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Maximum, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Minimum, a, b); }
Tensor add(const Tensor& a, double b) { return binary_scalar(BinaryOp::Add, a, b); }
Tensor sub(const Tensor& a, double b) { return binary_scalar(BinaryOp::Sub, a, b); }
Tensor mul(const Tensor& a, double b) { return binary_scalar(BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, double b) { return binary_scalar(BinaryOp::Div, a, b); }
Tensor maximum(const Tensor& a, double b) { return binary_scalar(BinaryOp::Maximum, a, b); }
Tensor minimum(const Tensor& a, double b) { return binary_scalar(BinaryOp::Minimum, a, b); }

#define TANDEM_DEFINE_COMPARE_(name, Enum)                                               \
  Tensor name(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Enum, a, b); } \
  Tensor name(const Tensor& a, double b) { return binary_scalar(BinaryOp::Enum, a, b); }
TANDEM_COMPARE_OPS(TANDEM_DEFINE_COMPARE_)
#undef TANDEM_DEFINE_COMPARE_

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_defined("where", cond, "condition");
  check_binary_args("where", a, b);
  detail::check_same_device("where", cond, a);
  TANDEM_CHECK(cond.dtype() == kUInt8, "where: the condition must be a uint8 mask, got ",
               describe(cond));
  const Shape shape =
      broadcast_shapes(broadcast_shapes(cond.sizes(), a.sizes(), "where"), b.sizes(), "where");
  Tensor out = empty(shape, TensorOptions(a.dtype()).device(a.device()));
  if (out.numel() > 0) TANDEM_BACKEND_CALL(a.device(), where, cond, a, b, out);
  if (is_floating(a.dtype()) && autograd::should_record(a, b)) {
    autograd::record(
        out, "where", {a, b}, {cond},
        [a_shape = a.sizes(), b_shape = b.sizes()](const Tensor& g, const std::vector<Tensor>& s) {
          const Tensor to_a = where(s[0], g, 0.0);
          return std::vector<Tensor>{autograd::sum_to(to_a, a_shape),
                                     autograd::sum_to(g - to_a, b_shape)};
        });
  }
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, double b) {
  check_defined("where", a);
  return where(cond, a, full({}, b, TensorOptions(a.dtype()).device(a.device())));
}

// ---- Operators ------------------------------------------------------------------
Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double b) { return add(a, b); }
Tensor operator-(const Tensor& a, double b) { return sub(a, b); }
Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
Tensor operator/(const Tensor& a, double b) { return div(a, b); }
Tensor operator+(double a, const Tensor& b) { return add(b, a); }
Tensor operator-(double a, const Tensor& b) {
  return binary_scalar(BinaryOp::Sub, b, a, ScalarSide::Left);
}
Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
Tensor operator/(double a, const Tensor& b) {
  return binary_scalar(BinaryOp::Div, b, a, ScalarSide::Left);
}
Tensor operator-(const Tensor& a) {
  return is_floating(a.dtype()) ? neg(a) : binary_scalar(BinaryOp::Sub, a, 0.0, ScalarSide::Left);
}
Tensor& operator+=(Tensor& a, const Tensor& b) { return a.add_(b); }
Tensor& operator-=(Tensor& a, const Tensor& b) { return a.sub_(b); }
Tensor& operator*=(Tensor& a, const Tensor& b) { return a.mul_(b); }
Tensor& operator/=(Tensor& a, const Tensor& b) { return a.div_(b); }
Tensor& operator+=(Tensor& a, double b) { return a.add_(b); }
Tensor& operator-=(Tensor& a, double b) { return a.sub_(b); }
Tensor& operator*=(Tensor& a, double b) { return a.mul_(b); }
Tensor& operator/=(Tensor& a, double b) { return a.div_(b); }

// ---- In-place forms: the result is written into `this`, which keeps its shape -----
namespace {
Tensor& binary_inplace(BinaryOp op, Tensor& self, const Tensor& other, double alpha,
                       const char* name) {
  check_binary_args(name, self, other);
  TANDEM_CHECK(!is_comparison(op), name, ": comparisons cannot be computed in place");
  TANDEM_CHECK(broadcast_shapes(self.sizes(), other.sizes(), name) == self.sizes(), name, ": ",
               shape_str(other.sizes()), " cannot be broadcast to the destination shape ",
               shape_str(self.sizes()));
  autograd::prepare_inplace(name, self, other);
  if (self.numel() == 0) return self;
  // other overlapping self (m.sub_(m[0])) is read as it was before the op.
  const Tensor operand = detail::unaliased_operand(self, other);
  TANDEM_BACKEND_CALL(self.device(), binary, op, self, operand, self, alpha);
  return self;
}
Tensor& scalar_inplace(BinaryOp op, Tensor& self, double s, const char* name) {
  check_defined(name, self);
  autograd::prepare_inplace(name, self);
  if (self.numel() > 0) {
    TANDEM_BACKEND_CALL(self.device(), binary_scalar, op, self, s, ScalarSide::Right, self);
  }
  return self;
}
Tensor& unary_inplace(UnaryOp op, Tensor& self, double p0, double p1, const char* name) {
  check_defined(name, self);
  detail::check_floating(name, self);
  autograd::prepare_inplace(name, self);
  if (self.numel() > 0) TANDEM_BACKEND_CALL(self.device(), unary, op, self, self, p0, p1);
  return self;
}
}  // namespace

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  return binary_inplace(BinaryOp::Add, *this, other, alpha, "add_");
}
Tensor& Tensor::sub_(const Tensor& other, double alpha) {
  return binary_inplace(BinaryOp::Sub, *this, other, alpha, "sub_");
}
Tensor& Tensor::mul_(const Tensor& other) {
  return binary_inplace(BinaryOp::Mul, *this, other, 1.0, "mul_");
}
Tensor& Tensor::div_(const Tensor& other) {
  return binary_inplace(BinaryOp::Div, *this, other, 1.0, "div_");
}
Tensor& Tensor::add_(double value) { return scalar_inplace(BinaryOp::Add, *this, value, "add_"); }
Tensor& Tensor::sub_(double value) { return scalar_inplace(BinaryOp::Sub, *this, value, "sub_"); }
Tensor& Tensor::mul_(double value) { return scalar_inplace(BinaryOp::Mul, *this, value, "mul_"); }
Tensor& Tensor::div_(double value) { return scalar_inplace(BinaryOp::Div, *this, value, "div_"); }
Tensor& Tensor::clamp_(double lo, double hi) {
  TANDEM_CHECK(!(lo > hi), "clamp_: lo (", lo, ") must not exceed hi (", hi, ")");
  return unary_inplace(UnaryOp::Clamp, *this, lo, hi, "clamp_");
}
Tensor& Tensor::sqrt_() { return unary_inplace(UnaryOp::Sqrt, *this, 0, 0, "sqrt_"); }
Tensor& Tensor::relu_() { return unary_inplace(UnaryOp::Relu, *this, 0, 0, "relu_"); }
Tensor& Tensor::addcmul_(const Tensor& t1, const Tensor& t2, double value) {
  return add_(mul(t1, t2), value);
}
Tensor& Tensor::addcdiv_(const Tensor& t1, const Tensor& t2, double value) {
  return add_(div(t1, t2), value);
}

// ---- Method forms -------------------------------------------------------------------
#define TANDEM_DEFINE_UNARY_METHOD_(name, Enum) \
  Tensor Tensor::name() const { return tandem::name(*this); }
TANDEM_UNARY_OPS(TANDEM_DEFINE_UNARY_METHOD_)
#undef TANDEM_DEFINE_UNARY_METHOD_
Tensor Tensor::pow(double exponent) const { return tandem::pow(*this, exponent); }
Tensor Tensor::clamp(double lo, double hi) const { return tandem::clamp(*this, lo, hi); }

}  // namespace tandem
