// The unary and binary op records (check.h): a float64 reference, domains and
// a tolerance class per op. records.cpp turns them into registry records; the
// elementwise suites (tests/test_ops_elementwise.cpp, test_cuda_elementwise.cpp)
// read them directly for their dtype x shape sweeps.
#include <tandem/check.h>

#include <cmath>

namespace tandem::check {

Tensor UnaryRecord::call(const Tensor& x, const UnaryVariant& v) const {
  switch (op) {
#define TANDEM_CHECK_CALL_(fn, Enum) \
  case UnaryOp::Enum:                \
    return tandem::fn(x);
    TANDEM_UNARY_OPS(TANDEM_CHECK_CALL_)
#undef TANDEM_CHECK_CALL_
    case UnaryOp::Pow:
      return tandem::pow(x, v.p0);
    case UnaryOp::Clamp:
      return tandem::clamp(x, v.p0, v.p1);
  }
  return Tensor();
}

std::string UnaryRecord::variant_name(const UnaryVariant& v) const {
  if (op == UnaryOp::Pow) return std::string(name) + "(" + std::to_string(v.p0) + ")";
  if (op == UnaryOp::Clamp)
    return std::string(name) + "(" + std::to_string(v.p0) + ", " + std::to_string(v.p1) + ")";
  return name;
}

const std::vector<UnaryRecord>& unary_records() {
  using V = UnaryVariant;
  using TC = TolClass;
  const V any{};
  const V positive{0, 0, 0.05, 20.0, {}};
  const V kink_at_zero{0, 0, -8.0, 8.0, {0.0}};
  auto pow_int = [](double p) { return V{p, 0, -3.0, 3.0, {0.0}}; };  // any sign, away from 0
  auto pow_real = [](double p) { return V{p, 0, 0.05, 4.0, {}}; };
  auto clamp_v = [](double lo, double hi) { return V{lo, hi, -2.0, 2.0, {lo, hi}}; };
  static const std::vector<UnaryRecord> records = {
      {UnaryOp::Relu,
       "relu",
       [](double x, double, double) { return x > 0.0 ? x : 0.0; },
       {kink_at_zero},
       TC::Exact},
      {UnaryOp::Sigmoid,
       "sigmoid",
       [](double x, double, double) { return 1.0 / (1.0 + std::exp(-x)); },
       {any},
       TC::Transcendental},
      {UnaryOp::Tanh,
       "tanh",
       [](double x, double, double) { return std::tanh(x); },
       {any},
       TC::Transcendental},
      {UnaryOp::Exp,
       "exp",
       [](double x, double, double) { return std::exp(x); },
       {V{0, 0, -20.0, 20.0, {}}},
       TC::Transcendental},
      {UnaryOp::Log,
       "log",
       [](double x, double, double) { return std::log(x); },
       {positive},
       TC::Transcendental},
      {UnaryOp::Sqrt,
       "sqrt",
       [](double x, double, double) { return std::sqrt(x); },
       {positive},
       TC::Transcendental},
      {UnaryOp::Rsqrt,
       "rsqrt",
       [](double x, double, double) { return 1.0 / std::sqrt(x); },
       {positive},
       TC::Transcendental},
      {UnaryOp::Neg, "neg", [](double x, double, double) { return -x; }, {any}, TC::Exact},
      {UnaryOp::Abs,
       "abs",
       [](double x, double, double) { return std::fabs(x); },
       {kink_at_zero},
       TC::Exact},
      {UnaryOp::Square,
       "square",
       [](double x, double, double) { return x * x; },
       {any},
       TC::Rounding},
      {UnaryOp::Erf,
       "erf",
       [](double x, double, double) { return std::erf(x); },
       {any},
       TC::Transcendental},
      {UnaryOp::Silu,
       "silu",
       [](double x, double, double) { return x / (1.0 + std::exp(-x)); },
       {any},
       TC::Transcendental},
      {UnaryOp::Pow,
       "pow",
       [](double x, double p, double) { return std::pow(x, p); },
       {pow_real(2.5), pow_int(0.0), pow_int(1.0), pow_int(2.0), pow_int(3.0), pow_int(-1.0),
        pow_int(-2.0), pow_real(0.5), pow_real(-0.5), pow_real(1.0 / 3.0), pow_real(-1.5)},
       TC::Transcendental},
      {UnaryOp::Clamp,
       "clamp",
       [](double x, double lo, double hi) { return std::fmin(std::fmax(x, lo), hi); },
       {clamp_v(-0.5, 0.5), clamp_v(0.0, 1e9), clamp_v(-0.25, -0.25), clamp_v(-9.0, 9.0),
        clamp_v(-0.5, 0.25), clamp_v(-1.0, 2.0)},
       TC::Exact},
  };
  return records;
}

const UnaryRecord* find_unary_record(UnaryOp op) {
  for (const UnaryRecord& r : unary_records())
    if (r.op == op) return &r;
  return nullptr;
}

const std::vector<BinaryRecord>& binary_records() {
  using D = BinaryDomain;
  static const std::vector<BinaryRecord> records = {
      {BinaryOp::Add, "add", [](double a, double b, double alpha, bool) { return a + alpha * b; },
       D::Arithmetic, true},
      {BinaryOp::Sub, "sub", [](double a, double b, double alpha, bool) { return a - alpha * b; },
       D::Arithmetic, true},
      {BinaryOp::Mul, "mul", [](double a, double b, double, bool) { return a * b; }, D::Arithmetic,
       true},
      {BinaryOp::Div, "div",
       [](double a, double b, double, bool integral) {
         return integral ? std::trunc(a / b) : a / b;
       },
       D::Divisor, true},
      {BinaryOp::Maximum, "maximum",
       [](double a, double b, double, bool) { return std::fmax(a, b); }, D::Arithmetic, true},
      {BinaryOp::Minimum, "minimum",
       [](double a, double b, double, bool) { return std::fmin(a, b); }, D::Arithmetic, true},
      {BinaryOp::Eq, "eq", [](double a, double b, double, bool) { return double(a == b); }, D::Ties,
       false},
      {BinaryOp::Ne, "ne", [](double a, double b, double, bool) { return double(a != b); }, D::Ties,
       false},
      {BinaryOp::Lt, "lt", [](double a, double b, double, bool) { return double(a < b); }, D::Ties,
       false},
      {BinaryOp::Le, "le", [](double a, double b, double, bool) { return double(a <= b); }, D::Ties,
       false},
      {BinaryOp::Gt, "gt", [](double a, double b, double, bool) { return double(a > b); }, D::Ties,
       false},
      {BinaryOp::Ge, "ge", [](double a, double b, double, bool) { return double(a >= b); }, D::Ties,
       false},
  };
  return records;
}

Tensor call_binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  switch (op) {
#define TANDEM_CHECK_CALL_(fn, Enum) \
  case BinaryOp::Enum:               \
    return tandem::fn(a, b);
    TANDEM_BINARY_OPS(TANDEM_CHECK_CALL_)
#undef TANDEM_CHECK_CALL_
  }
  return Tensor();
}
Tensor call_binary_scalar(BinaryOp op, const Tensor& a, double s) {
  switch (op) {
#define TANDEM_CHECK_CALL_(fn, Enum) \
  case BinaryOp::Enum:               \
    return tandem::fn(a, s);
    TANDEM_BINARY_OPS(TANDEM_CHECK_CALL_)
#undef TANDEM_CHECK_CALL_
  }
  return Tensor();
}

}  // namespace tandem::check
