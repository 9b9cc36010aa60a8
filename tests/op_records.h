// One record per unary op: everything a test or a benchmark needs to know
// about it, in the spirit of PyTorch's OpInfo. The CPU reference suite
// (test_ops_elementwise.cpp), the CUDA parity suite (test_cuda_elementwise.cpp),
// gradcheck (grad_cases.h) and the op benchmarks (benchmarks/bench_ops.cpp)
// iterate over these records, so a new op is tested and timed by adding its
// record here; EveryUnaryOpHasOneRecord fails until it has one.
//
// Records are plain data (no GoogleTest), so the benchmarks read them too; the
// helpers that draw a record's inputs and pick its tolerance are in
// test_util.h. The float64 references are written independently of the shared formulas in
// src/core/elementwise_math.h (those are what they check).
#pragma once

#include <tandem/tandem.h>

#include <cmath>
#include <string>
#include <vector>

#include "op_cases.h"

namespace tt {

// How close two devices, and a device and the float64 reference, must be.
enum class TolClass {
  Exact,           // selects, negates, clamps: bit-identical everywhere
  Rounding,        // a few correctly rounded operations: default_tol
  Transcendental,  // library math (exp, log, tanh, erf, pow; CUDA's are
                   // about 2 ulp, glibc's and SLEEF's about 1): default_tol
                   // against the reference, 4x between the devices (the
                   // bounds add)
};

// One domain (and parameter set) an op is run on. Every suite draws inputs
// uniformly from [lo, hi), moved at least kKinkMargin away from the kinks.
struct UnaryVariant {
  double p0 = 0.0, p1 = 0.0;   // pow's exponent, clamp's bounds; unused elsewhere
  double lo = -8.0, hi = 8.0;  // the input domain
  std::vector<double> kinks;   // where f or f' jumps: no input lands near one
};

constexpr double kKinkMargin = 0.1;

struct UnaryRecord {
  tandem::UnaryOp op;
  const char* name;                               // == op_name(op)
  double (*ref)(double x, double p0, double p1);  // the float64 reference
  std::vector<UnaryVariant> variants;             // the benchmarks time the first
  TolClass tol;
  bool differentiable = true;  // gradcheck runs it

  // The named public function, e.g. tandem::pow(x, v.p0).
  tandem::Tensor call(const tandem::Tensor& x, const UnaryVariant& v) const {
    if (op == tandem::UnaryOp::Pow) return tandem::pow(x, v.p0);
    if (op == tandem::UnaryOp::Clamp) return tandem::clamp(x, v.p0, v.p1);
    for (const UnaryCase& c : unary_cases())
      if (c.op == op) return c.fn(x);
    return tandem::Tensor();
  }
  // "pow(2.5)" etc. for traces; the plain name for ops without parameters.
  std::string variant_name(const UnaryVariant& v) const {
    if (op == tandem::UnaryOp::Pow) return std::string(name) + "(" + std::to_string(v.p0) + ")";
    if (op == tandem::UnaryOp::Clamp)
      return std::string(name) + "(" + std::to_string(v.p0) + ", " + std::to_string(v.p1) + ")";
    return name;
  }
};

inline const std::vector<UnaryRecord>& unary_records() {
  using tandem::UnaryOp;
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

inline const UnaryRecord* find_unary_record(tandem::UnaryOp op) {
  for (const UnaryRecord& r : unary_records())
    if (r.op == op) return &r;
  return nullptr;
}

// ---- Binary ops ----------------------------------------------------------------------

// How a binary op's operands are drawn, per dtype (tt::binary_operands in
// test_util.h): never an integer overflow or a division by zero.
enum class BinaryDomain {
  Arithmetic,  // floats in [-2, 2); integers in [-50, 50]; uint8 a in [8, 15], b in [1, 4]
  Divisor,     // as Arithmetic, but |b| in [0.25, 2) for floats and integers a in
               // [0, 100], b in [1, 9] (truncation and flooring agree)
  Ties,        // a small grid (k/4 for floats, 0..4 for integers): ties are common
};

struct BinaryRecord {
  tandem::BinaryOp op;
  const char* name;  // == op_name(op)
  // The float64 reference; integral: the operands' dtype is an integer one.
  double (*ref)(double a, double b, double alpha, bool integral);
  BinaryDomain domain;
  bool differentiable;  // gradcheck runs it (same shape, broadcast, scalar)
};

inline const std::vector<BinaryRecord>& binary_records() {
  using tandem::BinaryOp;
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

}  // namespace tt
