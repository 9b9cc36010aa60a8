// The table of differentiable ops for the gradient tests: each case is a
// function of float64 inputs plus how to draw them. test_gradcheck.cpp runs
// every case through gradcheck on the CPU and compares the CUDA backward with
// the CPU one. Unary and binary ops come from their records, every other
// family from the op registry (tandem/check.h), so a new op is checked
// without anyone adding it here; what stays written here are the forms no
// record covers (alpha, scalar-first, dropout).
#pragma once

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "op_cases.h"
#include "op_records.h"
#include "test_util.h"

namespace tt {

// How an input is drawn.
enum class Draw { Normal, Positive, AwayFromZero, Probability, Variant };

struct GradInput {
  Shape shape;
  Draw draw = Draw::Normal;
  bool requires_grad = true;
  UnaryVariant variant{};  // Draw::Variant: a unary op's record's domain and kinks
};

struct GradCase {
  std::string name;
  std::vector<GradInput> inputs;  // unused when `record` is set
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  const tandem::check::OpRecord* record = nullptr;  // inputs drawn from its specs
};

// gtest prints a parameter with this (instead of its bytes).
inline void PrintTo(const GradCase& c, std::ostream* os) { *os << c.name; }

inline Tensor draw_input(const GradInput& in, DType dt) {
  switch (in.draw) {
    case Draw::Positive:
      return random_tensor(in.shape, dt, 0.5, 2.0);
    case Draw::AwayFromZero:
      return random_nonzero(in.shape, dt, 0.2, 1.5);
    case Draw::Probability:
      return random_tensor(in.shape, dt, 0.05, 0.95);
    case Draw::Variant:
      return record_input(in.variant, in.shape, dt);
    default:
      return random_tensor(in.shape, dt, -1.5, 1.5);
  }
}

// An int64 index tensor on `like`'s device.
inline Tensor index_on(const std::vector<int64_t>& values, const Shape& shape, const Tensor& like) {
  return tandem::from_vector<int64_t>(values, shape).to(like.device());
}

inline std::vector<GradCase> grad_cases() {
  using namespace tandem;  // NOLINT
  using In = std::vector<Tensor>;
  std::vector<GradCase> cases;
  const GradInput a34{{3, 4}};

  // Unary ops from their records (op_records.h): every variant, its domain
  // cut to [-2, 2] (finite differences of exp(20) say little), away from kinks.
  for (const UnaryRecord& r : unary_records()) {
    if (!r.differentiable) continue;
    for (const UnaryVariant& v : r.variants) {
      UnaryVariant d = v;
      d.lo = std::max(v.lo, -2.0);
      d.hi = std::min(v.hi, 2.0);
      const UnaryRecord* rec = &r;
      std::string name = r.variants.size() == 1 ? r.name : r.variant_name(v);
      cases.push_back({name, {{{3, 5}, Draw::Variant, true, d}}, [rec, v](const In& x) {
                         return rec->call(x[0], v);
                       }});
    }
  }

  // Binary ops, same shape and broadcast both ways.
  for (const BinaryRecord& b : binary_records()) {
    if (!b.differentiable) continue;
    const Draw second = b.domain == BinaryDomain::Divisor ? Draw::AwayFromZero : Draw::Normal;
    const BinaryOp op = b.op;
    cases.push_back({b.name, {a34, {{3, 4}, second}}, [op](const In& x) {
                       return call_named(op, x[0], x[1]);
                     }});
    cases.push_back({std::string(b.name) + "_broadcast",
                     {{{2, 1, 4}}, {{3, 1}, second}},
                     [op](const In& x) { return call_named(op, x[0], x[1]); }});
    cases.push_back({std::string(b.name) + "_scalar", {{{3, 4}, second}}, [op](const In& x) {
                       return call_named_scalar(op, x[0], 0.3);
                     }});
  }
  cases.push_back({"add_alpha", {a34, {{4}}}, [](const In& x) { return add(x[0], x[1], -2.5); }});
  cases.push_back({"sub_alpha", {a34, {{4}}}, [](const In& x) { return sub(x[0], x[1], 0.75); }});
  cases.push_back({"scalar_minus_tensor", {a34}, [](const In& x) { return 2.0 - x[0]; }});
  cases.push_back({"scalar_div_tensor", {{{3, 4}, Draw::AwayFromZero}}, [](const In& x) {
                     return 2.0 / x[0];
                   }});
  cases.push_back({"dropout", {{{4, 6}}}, [](const In& x) {
                     Generator gen(1234);  // the same mask on every call
                     return dropout(x[0], 0.4, true, &gen);
                   }});

  // Every other family from the op registry (tandem/check.h): each
  // differentiable record of at most 4096 input elements (finite differences
  // call the op twice per element), on its domain cut to [-2, 2].
  for (const tandem::check::OpRecord& r : tandem::check::op_records()) {
    if (!r.differentiable || r.family == "elementwise") continue;
    int64_t n = 0;
    for (const tandem::check::InputSpec& in : r.inputs) n += numel_of(in.shape);
    if (n > 4096) continue;
    cases.push_back({r.name, {}, r.fn, &r});
  }
  // where is elementwise but not a unary/binary record.
  for (const tandem::check::OpRecord& r : tandem::check::op_records())
    if (r.name == "where") cases.push_back({r.name, {}, r.fn, &r});
  return cases;
}

}  // namespace tt
