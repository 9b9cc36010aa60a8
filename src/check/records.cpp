// The op registry (tandem/check.h): one table per family, each record an op
// call, its inputs and its float64 reference (check/reference.h). The shapes
// are odd and small (gradcheck runs on most of them); a record marked
// quick = false is a larger case for the full `tandem check` and the
// benchmarks. Edge shapes: empty tensors, size-1 dims, broadcast operands and
// offset views (a narrow() of a larger tensor: tandem has no strides, so an
// offset into the storage is its non-contiguous case).
#include <tandem/check.h>
#include <tandem/optim.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "check/reference.h"

namespace tandem::check {
namespace {

using In = std::vector<Tensor>;
using A = std::vector<Array>;
using TC = TolClass;

InputSpec in(Shape s, double lo = -1.5, double hi = 1.5) {
  InputSpec i;
  i.shape = std::move(s);
  i.lo = lo;
  i.hi = hi;
  return i;
}
InputSpec positive(Shape s) { return in(std::move(s), 0.5, 2.0); }
InputSpec probability(Shape s) { return in(std::move(s), 0.05, 0.95); }
InputSpec nonzero(Shape s, double lo = 0.2, double hi = 1.5) {
  InputSpec i = in(std::move(s), lo, hi);
  i.away_from_zero = true;
  return i;
}
InputSpec constant(InputSpec i) {
  i.requires_grad = false;
  return i;
}
InputSpec index(std::vector<int64_t> values, Shape s) {
  InputSpec i = in(std::move(s));
  i.int_values = std::move(values);
  i.requires_grad = false;
  return i;
}
std::vector<int64_t> ints(const Array& a) {
  std::vector<int64_t> r;
  for (double v : a.v) r.push_back(static_cast<int64_t>(v));
  return r;
}
Array reduced(const Array& losses, Reduction r) {
  if (r == Reduction::None) return losses;
  return {Shape{}, {r == Reduction::Sum ? ref::sum(losses.v) : ref::mean(losses.v)}};
}
Array scale(Array a, double s) {
  for (double& v : a.v) v *= s;
  return a;
}

// Appends records of one family.
struct Table {
  std::vector<OpRecord>& out;
  std::string family;
  OpRecord& add(std::string op, std::string name, TolClass tol, std::vector<InputSpec> inputs,
                OpFn fn, RefFn ref) {
    OpRecord r;
    r.op = std::move(op);
    r.name = std::move(name);
    r.family = family;
    r.inputs = std::move(inputs);
    r.fn = std::move(fn);
    r.ref = std::move(ref);
    r.tol = tol;
    out.push_back(std::move(r));
    return out.back();
  }
};

void elementwise(std::vector<OpRecord>& out) {
  Table t{out, "elementwise"};
  for (const UnaryRecord& u : unary_records()) {
    for (size_t k = 0; k < u.variants.size(); ++k) {
      const UnaryVariant v = u.variants[k];
      const UnaryRecord* rec = &u;
      const std::string name = u.variants.size() == 1 ? u.name : u.variant_name(v);
      auto with_shape = [&](const std::string& suffix, Shape s, bool offset) -> OpRecord& {
        InputSpec x = in(std::move(s), v.lo, v.hi);
        x.kinks = v.kinks;
        x.offset_view = offset;
        OpRecord& r = t.add(
            u.name, name + suffix, u.tol, {x}, [rec, v](const In& a) { return rec->call(a[0], v); },
            [rec, v](const A& a) {
              return ref::map(a[0], [&](double e) { return rec->ref(e, v.p0, v.p1); });
            });
        r.differentiable = u.differentiable && ref::numel(r.inputs[0].shape) > 0;
        return r;
      };
      with_shape("", {7, 33}, false);
      if (k != 0) continue;
      with_shape("_empty", {0, 5}, false);
      with_shape("_size1", {1, 3, 1}, false);
      with_shape("_offset", {1001}, true);
      with_shape("_large", {1 << 18}, false).quick = false;
    }
  }
  for (const BinaryRecord& b : binary_records()) {
    const BinaryRecord* rec = &b;
    auto operand = [&](Shape s, bool second) {
      if (b.domain == BinaryDomain::Ties) {
        InputSpec i = in(std::move(s), -1.0, 1.0);
        i.grid = 0.5;
        return i;
      }
      if (second && b.domain == BinaryDomain::Divisor) return nonzero(std::move(s), 0.25, 2.0);
      return in(std::move(s), -2.0, 2.0);
    };
    auto pair = [&](const std::string& suffix, Shape sa, Shape sb, bool offset) -> OpRecord& {
      InputSpec a = operand(std::move(sa), false), c = operand(std::move(sb), true);
      a.offset_view = c.offset_view = offset;
      OpRecord& r = t.add(
          b.name, b.name + suffix, TC::Rounding, {a, c},
          [rec](const In& x) { return call_binary(rec->op, x[0], x[1]); },
          [rec](const A& x) {
            return ref::zip(x[0], x[1],
                            [&](double p, double q) { return rec->ref(p, q, 1.0, false); });
          });
      r.differentiable = b.differentiable;
      if (b.domain == BinaryDomain::Ties) r.tol = TC::Exact;
      return r;
    };
    pair("", {7, 33}, {7, 33}, false);
    pair("_broadcast", {2, 1, 33}, {7, 1}, false);
    pair("_offset", {1001}, {1001}, true);
    pair("_empty", {0, 3}, {3}, false).differentiable = false;
    pair("_large", {1 << 18}, {1 << 18}, false).quick = false;
    OpRecord& s = t.add(
        b.name, b.name + std::string("_scalar"), TC::Rounding, {operand({7, 33}, true)},
        [rec](const In& x) { return call_binary_scalar(rec->op, x[0], 0.75); },
        [rec](const A& x) {
          return ref::map(x[0], [&](double p) { return rec->ref(p, 0.75, 1.0, false); });
        });
    s.differentiable = b.differentiable;
    if (b.domain == BinaryDomain::Ties) s.tol = TC::Exact;
  }
  InputSpec a = in({3, 4});
  a.kinks = {0.0};
  t.add(
      "where", "where", TC::Rounding, {a, in({4})},
      [](const In& x) { return where(gt(x[0], 0.0), x[0] * 2.0, x[1]); },
      [](const A& x) {
        return ref::zip(x[0], x[1], [](double p, double q) { return p > 0 ? 2 * p : q; });
      });
  t.add(
       "isfinite", "isfinite", TC::Exact, {nonzero({5, 7}, 0.2, 2.0)},
       [](const In& x) { return isfinite(log(x[0])); },
       [](const A& x) { return ref::map(x[0], [](double p) { return p > 0 ? 1.0 : 0.0; }); })
      .differentiable = false;
  // all_finite (a bool on the host) as a uint8 scalar on the input's device.
  auto all_finite_case = [&](const std::string& name, InputSpec i, std::function<Tensor(Tensor)> f,
                             std::function<bool(double)> finite) -> OpRecord& {
    OpRecord& r = t.add(
        "all_finite", name, TC::Exact, {std::move(i)},
        [f](const In& x) {
          return full({}, all_finite(f(x[0])) ? 1.0 : 0.0,
                      TensorOptions(kUInt8).device(x[0].device()));
        },
        [finite](const A& x) {
          return Array{{}, {std::all_of(x[0].v.begin(), x[0].v.end(), finite) ? 1.0 : 0.0}};
        });
    r.differentiable = false;
    return r;
  };
  const auto any = [](double) { return true; };
  all_finite_case(
      "all_finite", in({7, 33}), [](Tensor x) { return x; }, any);
  all_finite_case(
      "all_finite_empty", in({0, 3}), [](Tensor x) { return x; }, any);
  all_finite_case(
      "all_finite_nan", nonzero({5, 7}, 0.2, 2.0), [](Tensor x) { return log(x); },
      [](double p) { return p > 0; });
  // A few hundred infinities among 2^18 values (x / 0 where x > 1.49).
  all_finite_case(
      "all_finite_inf_large", in({1 << 18}),
      [](Tensor x) { return where(gt(x, 1.49), x / 0.0, x); }, [](double p) { return p <= 1.49; })
      .quick = false;
}

// The named reduction (tandem::sum(x), tandem::argmax(x, dim, keepdim), ...).
Tensor reduce_named(ReduceOp op, const Tensor& x) {
  switch (op) {
#define TANDEM_CHECK_CALL_(name, Enum) \
  case ReduceOp::Enum:                 \
    return name(x);
    TANDEM_REDUCE_OPS(TANDEM_CHECK_CALL_)
#undef TANDEM_CHECK_CALL_
  }
  return Tensor();
}
Tensor reduce_named(ReduceOp op, const Tensor& x, int64_t dim, bool keepdim) {
  switch (op) {
#define TANDEM_CHECK_CALL_(name, Enum) \
  case ReduceOp::Enum:                 \
    return name(x, dim, keepdim);
    TANDEM_REDUCE_OPS(TANDEM_CHECK_CALL_)
#undef TANDEM_CHECK_CALL_
  }
  return Tensor();
}

// A shape and the dim reduced (ref::kAll: everything), for the sweeps.
struct ShapeDims {
  std::string name;
  Shape shape;
  int64_t dim;
  bool keepdim;
};
std::string shape_name(const Shape& s) {
  std::string n;
  for (size_t i = 0; i < s.size(); ++i) n += (i ? "x" : "") + std::to_string(s[i]);
  return s.empty() ? "0d" : n;
}
std::vector<ShapeDims> shape_dims(const std::vector<std::pair<Shape, std::vector<int64_t>>>& cases,
                                  bool with_keepdim) {
  std::vector<ShapeDims> r;
  for (const auto& [shape, dims] : cases)
    for (size_t i = 0; i < dims.size(); ++i) {
      const int64_t d = dims[i];
      const bool keep = with_keepdim && d != ref::kAll && i % 2 == 1;
      std::string name =
          shape_name(shape) + "_" +
          (d == ref::kAll ? std::string("all")
                          : (d < 0 ? "dimneg" + std::to_string(-d) : "dim" + std::to_string(d))) +
          (keep ? "_keepdim" : "");
      r.push_back({name, shape, d, keep});
    }
  return r;
}
// Scalars, size-1 and odd dims, empty rows, and the long and tall shapes of
// the CUDA reduction kernels (whole-tensor CUB, one block per row, columns).
std::vector<ShapeDims> reduce_shape_dims() {
  constexpr int64_t all = ref::kAll;
  return shape_dims({{{}, {all}},
                     {{7}, {all, -1}},
                     {{1}, {0, 0}},
                     {{3, 7, 5}, {0, 1, 2, -1}},
                     {{1, 33}, {0, 1}},
                     {{4, 1, 6}, {2, 1, 0}},
                     {{0, 3}, {1}},
                     {{1000003}, {all, 0}},
                     {{1000, 1001}, {0, 1, all}},
                     {{3, 70000}, {1, 0}}},
                    true);
}

void reductions(std::vector<OpRecord>& out) {
  Table t{out, "reduce"};
  struct Kind {
    ReduceOp op;
    const char* name;
    TolClass tol;
    std::function<double(const std::vector<double>&)> f;
  };
  auto arg = [](bool max) {
    return [max](const std::vector<double>& v) {
      auto it = max ? std::max_element(v.begin(), v.end()) : std::min_element(v.begin(), v.end());
      return double(it - v.begin());
    };
  };
  const std::vector<Kind> kinds = {
      {ReduceOp::Sum, "sum", TC::Accumulate, ref::sum},
      {ReduceOp::Mean, "mean", TC::Accumulate, ref::mean},
      {ReduceOp::Max, "max", TC::Exact,
       [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }},
      {ReduceOp::Min, "min", TC::Exact,
       [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }},
      {ReduceOp::ArgMax, "argmax", TC::Exact, arg(true)},
      {ReduceOp::ArgMin, "argmin", TC::Exact, arg(false)},
  };
  for (const Kind& k : kinds) {
    const ReduceOp op = k.op;
    const auto f = k.f;
    const bool diff = op != ReduceOp::ArgMax && op != ReduceOp::ArgMin;
    auto dim_case = [&](const std::string& suffix, Shape s, int64_t dim,
                        bool keepdim) -> OpRecord& {
      OpFn fn =
          dim == ref::kAll
              ? OpFn([op](const In& x) { return reduce(op, x[0]); })
              : OpFn([op, dim, keepdim](const In& x) { return reduce(op, x[0], dim, keepdim); });
      OpRecord& r =
          t.add(k.name, k.name + suffix, k.tol, {in(std::move(s))}, fn,
                [f, dim, keepdim](const A& x) { return ref::reduce(x[0], dim, keepdim, f); });
      r.differentiable = diff;
      return r;
    };
    dim_case("_all", {3, 5}, ref::kAll, false);
    dim_case("_dim1", {3, 5, 2}, 1, false);
    dim_case("_dim0_keepdim", {4, 3}, 0, true);
    dim_case("_size1_dim", {3, 1, 4}, 1, false);
    dim_case("_offset", {3, 5}, 1, false).inputs[0].offset_view = true;
    dim_case("_all_large", {1 << 18}, ref::kAll, false).quick = false;
    dim_case("_dim1_large", {16, 1001, 3}, 1, false).quick = false;
    // Shapes x dims through the named functions (sum(x, dim, keepdim), ...),
    // every dtype (mean: floating). Sums on [-1, 255] (uint8's range: long
    // integer sums; floats add without cancellation); the selections on
    // [-1, 3], where integers tie often (argmax and argmin pick the first).
    for (const ShapeDims& sd : reduce_shape_dims()) {
      const int64_t dim = sd.dim;
      const bool keepdim = sd.keepdim;
      OpFn fn = dim == ref::kAll ? OpFn([op](const In& x) { return reduce_named(op, x[0]); })
                                 : OpFn([op, dim, keepdim](const In& x) {
                                     return reduce_named(op, x[0], dim, keepdim);
                                   });
      OpRecord& r =
          t.add(k.name, k.name + ("_" + sd.name), k.tol,
                {in(sd.shape, -1.0, k.tol == TC::Accumulate ? 255.0 : 3.0)}, fn,
                [f, dim, keepdim](const A& x) { return ref::reduce(x[0], dim, keepdim, f); });
      r.differentiable = diff && ref::numel(sd.shape) > 0;
      r.quick = ref::numel(sd.shape) < 100000;
      if (op != ReduceOp::Mean) r.dtypes = all_dtypes();
    }
  }
  t.add(
       "sum", "sum_empty_dim0", TC::Accumulate, {in({0, 3})},
       [](const In& x) { return sum(x[0], 0); },
       [](const A& x) { return ref::reduce(x[0], 0, false, ref::sum); })
      .differentiable = false;
  t.add(
      "var", "var_all", TC::Accumulate, {in({3, 5})}, [](const In& x) { return var(x[0]); },
      [](const A& x) {
        return ref::reduce(x[0], ref::kAll, false,
                           [](const std::vector<double>& v) { return ref::variance(v, true); });
      });
  t.add(
      "var", "var_dim", TC::Accumulate, {in({3, 5})},
      [](const In& x) { return var(x[0], 1, false, true); },
      [](const A& x) {
        return ref::reduce(x[0], 1, true,
                           [](const std::vector<double>& v) { return ref::variance(v, false); });
      });
  // var over shapes x dims, biased and unbiased in turn.
  constexpr int64_t all = ref::kAll;
  const std::vector<ShapeDims> var_cases = shape_dims({{{7}, {all, all, -1}},
                                                       {{3, 7, 5}, {all, 0, 1, 2, -1}},
                                                       {{2, 33}, {1, 0}},
                                                       {{1000003}, {all, 0}}},
                                                      true);
  for (size_t i = 0; i < var_cases.size(); ++i) {
    const ShapeDims& sd = var_cases[i];
    const int64_t dim = sd.dim;
    const bool keepdim = sd.keepdim, unbiased = i % 2 == 0;
    const std::string name = "var_" + sd.name + (unbiased ? "_unbiased" : "_biased");
    t.add(
         "var", name, TC::Accumulate, {in(sd.shape, -1.0, 1.0)},
         [=](const In& x) {
           return dim == all ? var(x[0], unbiased) : var(x[0], dim, unbiased, keepdim);
         },
         [=](const A& x) {
           return ref::reduce(x[0], dim, keepdim, [unbiased](const std::vector<double>& v) {
             return ref::variance(v, unbiased);
           });
         })
        .quick = ref::numel(sd.shape) < 100000;
  }
}

void softmax_and_losses(std::vector<OpRecord>& out) {
  Table t{out, "softmax"};
  auto sm = [&](bool log, const std::string& name, Shape s, int64_t dim) -> OpRecord& {
    return t.add(
        log ? "log_softmax" : "softmax", name, TC::Accumulate, {in(std::move(s))},
        [log, dim](const In& x) { return log ? log_softmax(x[0], dim) : softmax(x[0], dim); },
        [log, dim](const A& x) {
          return ref::rowwise(x[0], dim, log ? ref::log_softmax : ref::softmax);
        });
  };
  sm(false, "softmax", {3, 5}, 1);
  sm(false, "softmax_dim0", {4, 3, 2}, 0);
  sm(true, "log_softmax", {3, 5}, -1);
  sm(true, "log_softmax_dim1", {2, 4, 3}, 1);
  sm(false, "softmax_large", {64, 1001}, 1).quick = false;
  sm(true, "log_softmax_large", {64, 1001}, 1).quick = false;
  // Shapes x dims on [-5, 5): rows of one element, empty, long rows (one
  // block per row), and tall narrow ones over dim 0 (columns split in chunks
  // whose max and sum-exp combine by the log-sum-exp rule).
  for (const ShapeDims& sd : shape_dims({{{7}, {0}},
                                         {{1}, {-1}},
                                         {{3, 7, 5}, {0, 1, 2}},
                                         {{4, 33}, {0, -1}},
                                         {{2, 1, 3}, {0, 1, 2}},
                                         {{0, 5}, {0, 1}},
                                         {{64, 1000}, {0, 1}},
                                         {{3, 4097}, {0, 1}},
                                         {{1000003}, {0}},
                                         {{100003, 3}, {0, 1}},
                                         {{4097, 1}, {0, 1}},
                                         {{4097, 2}, {0}},
                                         {{65, 1, 2}, {0, 1}},
                                         {{2049, 5, 3}, {0, 1}},
                                         {{3, 30011, 2}, {0, 1}}},
                                        false))
    for (bool log : {false, true}) {
      OpRecord& r =
          sm(log, std::string(log ? "log_softmax_" : "softmax_") + sd.name, sd.shape, sd.dim);
      r.inputs[0].lo = -5.0;
      r.inputs[0].hi = 5.0;
      r.quick = ref::numel(sd.shape) < 5000;
      r.differentiable = ref::numel(sd.shape) > 0;
    }
  // Logits of magnitude 1e4: the max subtracted first, no overflow.
  for (bool log : {false, true}) {
    OpRecord& r =
        sm(log, log ? "log_softmax_magnitude_1e4" : "softmax_magnitude_1e4", {8, 1000}, 1);
    r.inputs[0].lo = -1e4;
    r.inputs[0].hi = 1e4;
    r.quick = false;
  }

  t.family = "loss";
  // Per-row cross-entropy with label smoothing ls, from log-probabilities.
  auto ce_rows = [](const Array& x, const Array& labels, double ls, bool from_logits) {
    const int64_t C = x.shape.back(), N = ref::numel(x.shape) / C;
    Array losses{labels.shape, {}};
    for (int64_t n = 0; n < N; ++n) {
      std::vector<double> row(x.v.begin() + n * C, x.v.begin() + (n + 1) * C);
      if (from_logits) row = ref::log_softmax(row);
      const double picked = row[static_cast<size_t>(labels.v[n])];
      losses.v.push_back(-(1.0 - ls) * picked - ls / double(C) * ref::sum(row));
    }
    return losses;
  };
  const InputSpec labels = index({2, 0, 4, 4}, {4});
  for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
    const std::string suffix = r == Reduction::Mean  ? "_mean"
                               : r == Reduction::Sum ? "_sum"
                                                     : "_none";
    t.add(
        "cross_entropy", "cross_entropy" + suffix, TC::Accumulate, {in({4, 5}), labels},
        [r](const In& x) { return cross_entropy(x[0], x[1], r); },
        [r, ce_rows](const A& x) { return reduced(ce_rows(x[0], x[1], 0.0, true), r); });
    t.add(
        "nll_loss", "nll_loss" + suffix, TC::Accumulate, {in({4, 5}), labels},
        [r](const In& x) { return nll_loss(log_softmax(x[0], 1), x[1], r); },
        [r, ce_rows](const A& x) { return reduced(ce_rows(x[0], x[1], 0.0, true), r); });
    t.add(
        "mse_loss", "mse_loss" + suffix, TC::Accumulate, {in({3, 4}), in({3, 4})},
        [r](const In& x) { return mse_loss(x[0], x[1], r); },
        [r](const A& x) {
          return reduced(ref::zip(x[0], x[1], [](double a, double b) { return (a - b) * (a - b); }),
                         r);
        });
    t.add(
        "binary_cross_entropy", "binary_cross_entropy" + suffix, TC::Accumulate,
        {probability({3, 4}), probability({3, 4})},
        [r](const In& x) { return binary_cross_entropy(x[0], x[1], r); },
        [r](const A& x) {
          return reduced(ref::zip(x[0], x[1],
                                  [](double p, double y) {
                                    return -(y * std::log(p) + (1 - y) * std::log(1 - p));
                                  }),
                         r);
        });
    t.add(
        "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits" + suffix,
        TC::Accumulate, {in({3, 4}), probability({3, 4})},
        [r](const In& x) { return binary_cross_entropy_with_logits(x[0], x[1], r); },
        [r](const A& x) {
          return reduced(ref::zip(x[0], x[1],
                                  [](double z, double y) {
                                    return std::max(z, 0.0) - z * y +
                                           std::log1p(std::exp(-std::fabs(z)));
                                  }),
                         r);
        });
  }
  t.add(
      "cross_entropy", "cross_entropy_smoothing", TC::Accumulate, {in({4, 5}), labels},
      [](const In& x) { return cross_entropy(x[0], x[1], Reduction::Mean, 0.2); },
      [ce_rows](const A& x) { return reduced(ce_rows(x[0], x[1], 0.2, true), Reduction::Mean); });
  t.add(
      "cross_entropy", "cross_entropy_1d", TC::Accumulate, {in({5}), index({3}, {})},
      [](const In& x) { return cross_entropy(x[0], x[1]); },
      [ce_rows](const A& x) { return reduced(ce_rows(x[0], x[1], 0.0, true), Reduction::Mean); });
  t.add(
       "cross_entropy", "cross_entropy_large", TC::Accumulate,
       {in({256, 10}), index(std::vector<int64_t>(256, 7), {256})},
       [](const In& x) { return cross_entropy(x[0], x[1]); },
       [ce_rows](const A& x) { return reduced(ce_rows(x[0], x[1], 0.0, true), Reduction::Mean); })
      .quick = false;
  t.add(
      "l2_penalty", "l2_penalty", TC::Accumulate, {in({3, 4}), in({2, 3})},
      [](const In& x) {
        return l2_penalty({x[0], x[1]}, 0.05);
      },
      [](const A& x) {
        double s = 0.0;
        for (const Array& a : x)
          for (double v : a.v) s += v * v;
        return Array{{}, {0.05 * s}};
      });
}

void matmuls(std::vector<OpRecord>& out) {
  Table t{out, "matmul"};
  const RefFn mm_ref = [](const A& x) { return ref::matmul(x[0], x[1]); };
  auto mat = [&](const std::string& op, const std::string& name, Shape a, Shape b) -> OpRecord& {
    OpFn fn = op == "mm"    ? OpFn([](const In& x) { return mm(x[0], x[1]); })
              : op == "bmm" ? OpFn([](const In& x) { return bmm(x[0], x[1]); })
                            : OpFn([](const In& x) { return matmul(x[0], x[1]); });
    return t.add(op, name, TC::Gemm, {in(std::move(a)), in(std::move(b))}, fn, mm_ref);
  };
  mat("mm", "mm", {3, 4}, {4, 5});
  mat("bmm", "bmm", {2, 3, 4}, {2, 4, 5});
  mat("matmul", "matmul_dot", {4}, {4});
  mat("matmul", "matmul_mv", {3, 4}, {4});
  mat("matmul", "matmul_vm", {4}, {4, 3});
  mat("matmul", "matmul_nd_2d", {2, 3, 4}, {4, 5});
  mat("matmul", "matmul_2d_nd", {3, 4}, {2, 4, 5});
  mat("matmul", "matmul_batched", {2, 3, 4}, {2, 4, 2});
  mat("matmul", "matmul_4d", {2, 3, 2, 4}, {2, 3, 4, 3});
  mat("matmul", "matmul_broadcast_1", {1, 3, 4}, {2, 4, 5});
  mat("matmul", "matmul_nd_1d", {2, 3, 4}, {4});
  mat("matmul", "matmul_1d_nd", {4}, {2, 4, 3});
  mat("mm", "mm_size1", {1, 7}, {7, 1});
  mat("mm", "mm_empty_k", {3, 0}, {0, 4}).differentiable = false;
  mat("mm", "mm_large", {96, 200}, {200, 72}).quick = false;
  mat("bmm", "bmm_large", {8, 64, 96}, {8, 96, 33}).quick = false;
  t.add(
      "linear", "linear", TC::Gemm, {in({5, 4}), in({3, 4}), in({3})},
      [](const In& x) { return linear(x[0], x[1], x[2]); },
      [](const A& x) { return ref::linear(x[0], x[1], &x[2]); });
  t.add(
      "linear", "linear_3d_no_bias", TC::Gemm, {in({2, 5, 4}), in({3, 4})},
      [](const In& x) { return linear(x[0], x[1]); },
      [](const A& x) { return ref::linear(x[0], x[1], nullptr); });
  // An odd inner size (k = 33: off every blocking), every matmul form, the
  // larger mm shapes of cuBLAS's tiles.
  const int64_t m = 7, k = 33, n = 5;
  mat("mm", "mm_k33", {m, k}, {k, n});
  mat("mm", "mm_1x1x1", {1, 1}, {1, 1});
  mat("mm", "mm_65x129x67", {65, 129}, {129, 67}).quick = false;
  mat("mm", "mm_256x512x96", {256, 512}, {512, 96}).quick = false;
  mat("bmm", "bmm_k33", {3, m, k}, {3, k, n});
  mat("bmm", "bmm_empty_batch", {0, 2, 3}, {0, 3, 4}).differentiable = false;
  const std::vector<std::pair<Shape, Shape>> forms = {{{k}, {k}},
                                                      {{m, k}, {k}},
                                                      {{k}, {k, n}},
                                                      {{m, k}, {k, n}},
                                                      {{3, m, k}, {k, n}},
                                                      {{2, 3, m, k}, {k, n}},
                                                      {{3, m, k}, {3, k, n}},
                                                      {{m, k}, {3, k, n}},
                                                      {{k}, {3, k, n}},
                                                      {{1, m, k}, {3, k, n}},
                                                      {{m, k}, {2, 3, k, n}},
                                                      {{3, m, k}, {1, k, n}},
                                                      {{2, 3, m, k}, {2, 3, k, n}}};
  for (const auto& f : forms) {
    std::string name = "matmul_k33";
    for (const Shape* s : {&f.first, &f.second}) {
      name += "_";
      for (size_t i = 0; i < s->size(); ++i) name += (i ? "x" : "") + std::to_string((*s)[i]);
    }
    mat("matmul", name, f.first, f.second);
  }
  t.add(
      "linear", "linear_3d_k33", TC::Gemm, {in({2, 9, k}), in({n, k}), in({n})},
      [](const In& x) { return linear(x[0], x[1], x[2]); },
      [](const A& x) { return ref::linear(x[0], x[1], &x[2]); });
  t.add(
      "linear", "linear_3d_k33_no_bias", TC::Gemm, {in({2, 9, k}), in({n, k})},
      [](const In& x) { return linear(x[0], x[1]); },
      [](const A& x) { return ref::linear(x[0], x[1], nullptr); });
}

void conv_pool_bn(std::vector<OpRecord>& out) {
  Table t{out, "conv"};
  auto conv = [&](const std::string& name, Shape xs, Shape ws, bool bias, Size2 stride, Size2 pad,
                  Size2 dil, int64_t groups) -> OpRecord& {
    std::vector<InputSpec> ins = {in(std::move(xs)), in(std::move(ws))};
    if (bias) ins.push_back(in({ins[1].shape[0]}));
    ref::Conv c{stride.h, stride.w, pad.h, pad.w, dil.h, dil.w, groups};
    return t.add(
        "conv2d", name, TC::Gemm, ins,
        [=](const In& x) {
          return conv2d(x[0], x[1], bias ? x[2] : Tensor(), stride, pad, dil, groups);
        },
        [=](const A& x) { return ref::conv2d(x[0], x[1], bias ? &x[2] : nullptr, c); });
  };
  conv("conv2d", {2, 3, 7, 6}, {4, 3, 3, 2}, true, 1, 0, 1, 1);
  conv("conv2d_stride2_pad", {1, 2, 7, 8}, {3, 2, 3, 3}, true, 2, 1, 1, 1);
  conv("conv2d_dilation_groups_nobias", {2, 4, 9, 7}, {6, 2, 3, 2}, false, {1, 2}, {2, 1}, {2, 1},
       2);
  conv("conv2d_chw_1x1", {3, 5, 4}, {2, 3, 1, 1}, true, 1, 0, 1, 1);
  conv("conv2d_large", {8, 16, 32, 32}, {32, 16, 3, 3}, true, 1, 1, 1, 1).quick = false;
  // Odd shapes of every kind: stride, padding, dilation, groups, depthwise,
  // 1x1, one pixel, a kernel as large as the image.
  conv("conv2d_3x2_kernel", {2, 3, 7, 6}, {4, 3, 3, 2}, true, 1, 0, 1, 1);
  conv("conv2d_stride2_pad1", {1, 2, 8, 8}, {3, 2, 3, 3}, true, 2, 1, 1, 1);
  conv("conv2d_dilation_groups_3", {3, 4, 9, 7}, {6, 2, 3, 2}, false, {1, 2}, {2, 1}, {2, 1}, 2);
  conv("conv2d_depthwise", {1, 6, 5, 5}, {6, 1, 3, 3}, true, 1, 1, 1, 6);
  conv("conv2d_1x1", {2, 5, 6, 11}, {7, 5, 1, 1}, true, 1, 0, 1, 1);
  conv("conv2d_one_pixel", {1, 1, 1, 1}, {2, 1, 1, 1}, true, 1, 0, 1, 1);
  conv("conv2d_kernel_is_image", {2, 3, 4, 4}, {2, 3, 4, 4}, true, 1, 0, 1, 1);
  conv("conv2d_groups4_stride2", {2, 8, 10, 10}, {16, 2, 3, 3}, true, 2, 1, 1, 4);
  conv("conv2d_5x5_stride3_pad2", {1, 3, 13, 12}, {5, 3, 5, 5}, false, 3, 2, 1, 1);
  // A CIFAR-sized layer without bias, small weights.
  OpRecord& cifar =
      conv("conv2d_cifar_no_bias", {8, 16, 32, 32}, {32, 16, 3, 3}, false, 1, 1, 1, 1);
  cifar.inputs[1].lo = -0.1;
  cifar.inputs[1].hi = 0.1;
  cifar.quick = false;

  t.family = "pool";
  using P = ref::Pool;
  auto pool = [&](const std::string& name, Shape xs, P kind, Size2 k, std::optional<Size2> s,
                  Size2 p) -> OpRecord& {
    const Size2 st = s.value_or(k);
    const std::string op = kind == P::Max ? "max_pool2d" : "avg_pool2d";
    return t.add(
        op, name, kind == P::Max ? TC::Exact : TC::Accumulate, {in(std::move(xs))},
        [=](const In& x) {
          return kind == P::Max ? max_pool2d(x[0], k, s, p)
                                : avg_pool2d(x[0], k, s, p, kind == P::AvgIncludePad);
        },
        [=](const A& x) { return ref::pool2d(x[0], kind, k.h, k.w, st.h, st.w, p.h, p.w); });
  };
  pool("max_pool2d", {2, 3, 7, 6}, P::Max, 2, std::nullopt, 0);
  pool("max_pool2d_overlap_pad", {1, 2, 7, 7}, P::Max, 3, Size2(2), 1);
  pool("avg_pool2d", {2, 3, 7, 6}, P::AvgIncludePad, {3, 2}, Size2(2, 1), 0);
  pool("avg_pool2d_pad_include", {1, 2, 5, 5}, P::AvgIncludePad, 3, Size2(2), 1);
  pool("avg_pool2d_pad_exclude", {1, 2, 5, 5}, P::AvgExcludePad, 3, Size2(2), 1);
  pool("max_pool2d_large", {16, 32, 32, 32}, P::Max, 2, std::nullopt, 0).quick = false;
  auto adaptive = [&](const std::string& name, Shape xs, Size2 o) {
    t.add(
        "adaptive_avg_pool2d", name, TC::Accumulate, {in(std::move(xs))},
        [o](const In& x) { return adaptive_avg_pool2d(x[0], o); },
        [o](const A& x) { return ref::adaptive_avg_pool2d(x[0], o.h, o.w); });
  };
  adaptive("adaptive_avg_pool2d", {2, 3, 7, 5}, {3, 2});
  adaptive("adaptive_avg_pool2d_global", {2, 3, 4, 5}, 1);
  // Odd planes (17 x 13) with uneven kernels, strides and pads, every kind;
  // adaptive pooling to sizes that do and do not divide the plane.
  struct Window {
    const char* name;
    Size2 k, s, p;
  };
  for (const Window& w :
       {Window{"k3x2_s2x3_p1", {3, 2}, {2, 3}, {1, 1}},
        Window{"k5x3_s1x2_p2x0", {5, 3}, {1, 2}, {2, 0}}, Window{"k2_s2", {2, 2}, {2, 2}, {0, 0}},
        Window{"k7x1_s3x1_p3x0", {7, 1}, {3, 1}, {3, 0}}}) {
    pool(std::string("max_pool2d_odd_") + w.name, {3, 5, 17, 13}, P::Max, w.k, w.s, w.p);
    pool(std::string("avg_pool2d_odd_include_") + w.name, {3, 5, 17, 13}, P::AvgIncludePad, w.k,
         w.s, w.p);
    pool(std::string("avg_pool2d_odd_exclude_") + w.name, {3, 5, 17, 13}, P::AvgExcludePad, w.k,
         w.s, w.p);
  }
  for (Size2 o : {Size2(5, 4), Size2(1, 1), Size2(17, 13), Size2(3, 7)})
    adaptive("adaptive_avg_pool2d_odd_" + std::to_string(o.h) + "x" + std::to_string(o.w),
             {3, 5, 17, 13}, o);
  // CIFAR-sized planes.
  pool("avg_pool2d_cifar", {8, 16, 32, 32}, P::AvgIncludePad, 3, Size2(2), 1).quick = false;
  adaptive("adaptive_avg_pool2d_cifar_global", {8, 16, 32, 32}, 1);
  out.back().quick = false;

  t.family = "batch_norm";
  t.add(
      "batch_norm", "batch_norm_train_2d", TC::Accumulate, {in({3, 4, 3, 2}), in({4}), in({4})},
      [](const In& x) { return batch_norm(x[0], Tensor(), Tensor(), x[1], x[2], true); },
      [](const A& x) { return ref::batch_norm(x[0], nullptr, nullptr, &x[1], &x[2], 1e-5); });
  t.add(
      "batch_norm", "batch_norm_train_1d_no_affine", TC::Accumulate, {in({5, 3})},
      [](const In& x) {
        return batch_norm(x[0], Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-3);
      },
      [](const A& x) { return ref::batch_norm(x[0], nullptr, nullptr, nullptr, nullptr, 1e-3); });
  t.add(
      "batch_norm", "batch_norm_eval", TC::Accumulate,
      {in({3, 4, 2, 2}), constant(in({4})), constant(positive({4})), in({4}), in({4})},
      [](const In& x) { return batch_norm(x[0], x[1], x[2], x[3], x[4], false); },
      [](const A& x) { return ref::batch_norm(x[0], &x[1], &x[2], &x[3], &x[4], 1e-5); });
  t.add(
       "batch_norm", "batch_norm_train_large", TC::Accumulate,
       {in({32, 16, 16, 16}), in({16}), in({16})},
       [](const In& x) { return batch_norm(x[0], Tensor(), Tensor(), x[1], x[2], true); },
       [](const A& x) { return ref::batch_norm(x[0], nullptr, nullptr, &x[1], &x[2], 1e-5); })
      .quick = false;
  // Training with running statistics: the output, then the updated running
  // mean and variance (momentum 0.1, unbiased variance), in one tensor (not
  // differentiable: the statistics are buffers); and the output alone, whose
  // backward is checked. BatchNorm1d shapes: channel counts off the
  // 32-channel tile, tall inputs (rows split over blocks); a large mean (x in
  // [98, 103)).
  auto bn_running = [&](const std::string& name, Shape xs, double lo, double hi, bool affine,
                        bool stats) -> OpRecord& {
    const int64_t c = xs[1];
    std::vector<InputSpec> ins = {in(std::move(xs), lo, hi), constant(in({c})),
                                  constant(positive({c}))};
    if (affine) {
      ins.push_back(in({c}, 0.5, 1.5));
      ins.push_back(in({c}));
    }
    OpRecord& r = t.add(
        "batch_norm", name + (stats ? "_running_stats" : ""), TC::Accumulate, ins,
        [affine, stats](const In& x) {
          Tensor rm = x[1].clone(), rv = x[2].clone();
          const Tensor y = batch_norm(x[0], rm, rv, affine ? x[3] : Tensor(),
                                      affine ? x[4] : Tensor(), true, 0.1, 1e-5);
          return stats ? cat({y.flatten(), rm, rv}) : y;
        },
        [affine, stats](const A& x) {
          Array y = ref::batch_norm(x[0], nullptr, nullptr, affine ? &x[3] : nullptr,
                                    affine ? &x[4] : nullptr, 1e-5);
          if (!stats) return y;
          const int64_t n = x[0].shape[0], nc = x[0].shape[1];
          const int64_t hw = ref::numel(x[0].shape) / (n * nc);
          for (int64_t pass = 0; pass < 2; ++pass)
            for (int64_t ch = 0; ch < nc; ++ch) {
              std::vector<double> v;
              for (int64_t i = 0; i < n; ++i)
                for (int64_t j = 0; j < hw; ++j) v.push_back(x[0].v[(i * nc + ch) * hw + j]);
              y.v.push_back(pass == 0 ? 0.9 * x[1].v[ch] + 0.1 * ref::mean(v)
                                      : 0.9 * x[2].v[ch] + 0.1 * ref::variance(v, true));
            }
          y.shape = {int64_t(y.v.size())};
          return y;
        });
    r.differentiable = !stats;
    r.quick = ref::numel(r.inputs[0].shape) < 5000;
    return r;
  };
  for (bool stats : {true, false}) {
    bn_running("batch_norm1d_3x33", {3, 33}, 98.0, 103.0, true, stats);
    bn_running("batch_norm1d_2x1", {2, 1}, 98.0, 103.0, true, stats);
    bn_running("batch_norm1d_1000x37", {1000, 37}, 98.0, 103.0, true, stats);
    bn_running("batch_norm1d_40961x5", {40961, 5}, 98.0, 103.0, true, stats);
    bn_running("batch_norm1d_257x100", {257, 100}, 98.0, 103.0, true, stats);
  }
  bn_running("batch_norm2d_cifar", {8, 16, 32, 32}, -1.5, 1.5, false, true);
}

void indexing(std::vector<OpRecord>& out) {
  Table t{out, "index"};
  auto select = [&](const std::string& name, Shape xs, int64_t dim, std::vector<int64_t> idx) {
    const int64_t n = static_cast<int64_t>(idx.size());
    t.add(
        "index_select", name, TC::Exact, {in(std::move(xs)), index(idx, {n})},
        [dim](const In& x) { return index_select(x[0], dim, x[1]); },
        [dim](const A& x) { return ref::index_select(x[0], dim, ints(x[1])); });
  };
  select("index_select_dim1", {3, 5}, 1, {4, 0, 4, 2});
  select("index_select_dim0", {4, 2}, 0, {1, 1, 3});
  t.add(
      "gather", "gather", TC::Exact, {in({3, 4}), index({0, 3, 3, 1, 2, 2, 0, 0, 1}, {3, 3})},
      [](const In& x) { return gather(x[0], 1, x[1]); },
      [](const A& x) { return ref::gather(x[0], 1, x[1]); });
  // Adds in an order that may vary (atomics): summation tolerance.
  t.add(
      "scatter_add", "scatter_add", TC::Accumulate,
      {in({3, 4}), index({0, 0, 3, 1, 2, 2}, {3, 2}), in({3, 2})},
      [](const In& x) { return scatter_add(x[0], 1, x[1], x[2]); },
      [](const A& x) { return ref::scatter_add(x[0], 1, x[1], x[2]); });
  t.add(
      "index_add", "index_add", TC::Accumulate, {in({4, 3}), index({2, 0, 2}, {3}), in({3, 3})},
      [](const In& x) { return index_add(x[0], 0, x[1], x[2]); },
      [](const A& x) { return ref::index_add(x[0], 0, ints(x[1]), x[2]); });
  t.add(
       "one_hot", "one_hot", TC::Exact, {index({2, 0, 4, 4, 1}, {5})},
       [](const In& x) { return one_hot(x[0], 6, TensorOptions(kInt64).device(x[0].device())); },
       [](const A& x) {
         Array y = ref::full({5, 6}, 0.0);
         for (size_t i = 0; i < x[0].v.size(); ++i) y.v[i * 6 + size_t(x[0].v[i])] = 1.0;
         return y;
       })
      .differentiable = false;
}

// n integers in [lo, hi], fixed by seed (index inputs are fixed in a record).
std::vector<int64_t> fixed_ints(int64_t n, int64_t lo, int64_t hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> u(lo, hi);
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t& x : v) x = u(rng);
  return v;
}

// The index ops at odd sizes (7 x 13 x 11: quotients and remainders off the
// powers of two of the FastDivmod paths), each dim, int32 and int64 indices
// (the record's int64 index converted in the call), every dtype; a million
// indices into a small table; one_hot of both label dtypes into every dtype.
void indexing_sweeps(std::vector<OpRecord>& out) {
  Table t{out, "index"};
  uint64_t seed = 100;
  for (DType it : {kInt32, kInt64}) {
    const std::string is = it == kInt32 ? "_i32" : "_i64";
    auto idx = [it](const Tensor& i) { return it == kInt64 ? i : i.to(kInt32); };
    const Shape xs = {7, 13, 11};
    for (int64_t dim : {0, 1, 2}) {
      const std::string ds = "_dim" + std::to_string(dim);
      const int64_t size = xs[size_t(dim)];
      Shape gs = xs;
      gs[size_t(dim)] = 5;  // fewer entries than x along dim
      const std::vector<int64_t> gi = fixed_ints(ref::numel(gs), 0, size - 1, ++seed);
      const std::vector<int64_t> si = fixed_ints(9, 0, size - 1, ++seed);
      Shape ss = xs;
      ss[size_t(dim)] = 9;
      t.add(
           "gather", "gather_odd" + ds + is, TC::Exact, {in(xs, -9.0, 9.0), index(gi, gs)},
           [=](const In& x) { return gather(x[0], dim, idx(x[1])); },
           [=](const A& x) { return ref::gather(x[0], dim, x[1]); })
          .dtypes = all_dtypes();
      t.add(
           "index_select", "index_select_odd" + ds + is, TC::Exact,
           {in(xs, -9.0, 9.0), index(si, {9})},
           [=](const In& x) { return index_select(x[0], dim, idx(x[1])); },
           [=](const A& x) { return ref::index_select(x[0], dim, ints(x[1])); })
          .dtypes = all_dtypes();
      // Repeated indices: atomics add in any order.
      t.add(
          "scatter_add", "scatter_add_odd" + ds + is, TC::Accumulate,
          {in(xs), index(gi, gs), in(gs)},
          [=](const In& x) { return scatter_add(x[0], dim, idx(x[1]), x[2]); },
          [=](const A& x) { return ref::scatter_add(x[0], dim, x[1], x[2]); });
      t.add(
          "index_add", "index_add_odd" + ds + is, TC::Accumulate, {in(xs), index(si, {9}), in(ss)},
          [=](const In& x) { return index_add(x[0], dim, idx(x[1]), x[2]); },
          [=](const A& x) { return ref::index_add(x[0], dim, ints(x[1]), x[2]); });
    }
    t.add(
         "index_select", "index_select_dimneg1" + is, TC::Exact,
         {in({5, 7, 3}), index(fixed_ints(9, 0, 2, ++seed), {9})},
         [=](const In& x) { return index_select(x[0], -1, idx(x[1])); },
         [=](const A& x) { return ref::index_select(x[0], -1, ints(x[1])); })
        .dtypes = all_dtypes();
    OpRecord& many = t.add(
        "index_select", "index_select_million" + is, TC::Exact,
        {in({50, 3}), index(fixed_ints(1000003, 0, 49, ++seed), {1000003})},
        [=](const In& x) { return index_select(x[0], 0, idx(x[1])); },
        [=](const A& x) { return ref::index_select(x[0], 0, ints(x[1])); });
    many.dtypes = all_dtypes();
    many.quick = false;
    many.differentiable = false;  // finite differences: 300 calls on a million indices
    // one_hot into the record's dtype (the second input only carries it).
    t.add(
         "one_hot", "one_hot_into_dtype" + is, TC::Exact,
         {index(fixed_ints(33, 0, 9, ++seed), {3, 11}), constant(in({1}))},
         [=](const In& x) {
           return one_hot(idx(x[0]), 10, TensorOptions(x[1].dtype()).device(x[0].device()));
         },
         [](const A& x) {
           Array y = ref::full({3, 11, 10}, 0.0);
           for (size_t i = 0; i < x[0].v.size(); ++i) y.v[i * 10 + size_t(x[0].v[i])] = 1.0;
           return y;
         })
        .dtypes = all_dtypes();
    out.back().differentiable = false;
  }
}

// cat of pieces (one empty) on each dim, stack on each dim, general permutes
// at odd sizes, every dtype.
void copy_sweeps(std::vector<OpRecord>& out) {
  Table t{out, "copy"};
  for (int64_t dim : {0, 1, 2, -1}) {
    std::vector<InputSpec> ins;
    for (int64_t len : {2, 1, 0, 5}) {
      Shape s{3, 4, 5};
      s[size_t(dim < 0 ? dim + 3 : dim)] = len;
      ins.push_back(in(s, -9.0, 9.0));
      ins.back().requires_grad = len > 0;
    }
    t.add(
         "cat", "cat_4_pieces_dim" + (dim < 0 ? "neg1" : std::to_string(dim)), TC::Exact, ins,
         [dim](const In& x) { return cat(x, dim); },
         [dim](const A& x) { return ref::cat(x, dim < 0 ? dim + 3 : dim); })
        .dtypes = all_dtypes();
  }
  t.add(
       "cat", "cat_1d", TC::Exact, {in({7}), in({33})}, [](const In& x) { return cat(x); },
       [](const A& x) { return ref::cat(x, 0); })
      .dtypes = all_dtypes();
  OpRecord& big = t.add(
      "cat", "cat_large", TC::Exact, {in({1000003}, -9.0, 9.0), in({1000003}, -9.0, 9.0)},
      [](const In& x) { return cat(x); }, [](const A& x) { return ref::cat(x, 0); });
  big.dtypes = all_dtypes();
  big.quick = false;
  for (int64_t dim : {0, 1, 2, 3, -1}) {
    const int64_t d = dim < 0 ? dim + 4 : dim;
    t.add(
         "stack", "stack_3_dim" + (dim < 0 ? "neg1" : std::to_string(dim)), TC::Exact,
         {in({2, 5, 4}, -9.0, 9.0), in({2, 5, 4}, -9.0, 9.0), in({2, 5, 4}, -9.0, 9.0)},
         [dim](const In& x) { return stack(x, dim); },
         [d](const A& x) {
           std::vector<Array> ys = x;
           for (Array& y : ys) y.shape.insert(y.shape.begin() + d, 1);
           return ref::cat(ys, d);
         })
        .dtypes = all_dtypes();
  }
  for (const std::vector<int64_t>& order : std::vector<std::vector<int64_t>>{
           {0, 2, 1, 3}, {3, 1, 2, 0}, {2, 0, 3, 1}, {1, 3, 0, 2}, {3, 2, 1, 0}, {0, 3, 2, 1}}) {
    std::string name = "permute_odd";
    for (int64_t o : order) name += "_" + std::to_string(o);
    t.add(
         "permute", name, TC::Exact, {in({3, 5, 7, 11}, -9.0, 9.0)},
         [order](const In& x) { return x[0].permute(order); },
         [order](const A& x) { return ref::permute(x[0], order); })
        .dtypes = all_dtypes();
  }
}

void copies(std::vector<OpRecord>& out) {
  Table t{out, "copy"};
  t.add(
      "cat", "cat_dim0", TC::Exact, {in({2, 3}), in({4, 3})},
      [](const In& x) {
        return cat({x[0], x[1]});
      },
      [](const A& x) {
        return ref::cat({x[0], x[1]}, 0);
      });
  t.add(
      "cat", "cat_dim1", TC::Exact, {in({2, 3}), in({2, 1})},
      [](const In& x) {
        return cat({x[0], x[1]}, 1);
      },
      [](const A& x) {
        return ref::cat({x[0], x[1]}, 1);
      });
  t.add(
       "cat", "cat_empty", TC::Exact, {in({0, 3}), in({2, 3})},
       [](const In& x) {
         return cat({x[0], x[1]});
       },
       [](const A& x) {
         return ref::cat({x[0], x[1]}, 0);
       })
      .differentiable = false;
  t.add(
      "stack", "stack_dim1", TC::Exact, {in({2, 3}), in({2, 3})},
      [](const In& x) {
        return stack({x[0], x[1]}, 1);
      },
      [](const A& x) {
        Array a = x[0], b = x[1];
        a.shape = b.shape = {2, 1, 3};
        return ref::cat({a, b}, 1);
      });
  t.add(
      "view", "view", TC::Rounding, {in({3, 4})},
      [](const In& x) {
        return x[0].view({2, 6}) * 1.5;
      },
      [](const A& x) {
        Array y = scale(x[0], 1.5);
        y.shape = {2, 6};
        return y;
      });
  t.add(
      "view", "flatten", TC::Exact, {in({2, 3, 2})}, [](const In& x) { return x[0].flatten(1); },
      [](const A& x) {
        return Array{{2, 6}, x[0].v};
      });
  t.add(
      "view", "squeeze_unsqueeze", TC::Rounding, {in({3, 1, 2})},
      [](const In& x) { return x[0].squeeze(1).unsqueeze(0) * x[0].squeeze(); },
      [](const A& x) {
        return Array{{1, 3, 2}, ref::map(x[0], [](double v) { return v * v; }).v};
      });
  t.add(
      "slice", "slice", TC::Exact, {in({5, 2})}, [](const In& x) { return x[0].slice(0, 1, 4); },
      [](const A& x) { return ref::narrow(x[0], 0, 1, 3); });
  t.add(
      "select", "select", TC::Rounding, {in({4, 3})},
      [](const In& x) { return x[0].select(0, 2) * x[0][1]; },
      [](const A& x) {
        Array y{{3}, {}};
        for (int j = 0; j < 3; ++j) y.v.push_back(x[0].v[6 + j] * x[0].v[3 + j]);
        return y;
      });
  t.add(
      "narrow", "narrow", TC::Exact, {in({5, 2})}, [](const In& x) { return x[0].narrow(0, 2, 2); },
      [](const A& x) { return ref::narrow(x[0], 0, 2, 2); });
  auto perm = [&](const std::string& op, const std::string& name, Shape s, OpFn fn,
                  std::vector<int64_t> order) -> OpRecord& {
    return t.add(op, name, TC::Exact, {in(std::move(s))}, std::move(fn),
                 [order](const A& x) { return ref::permute(x[0], order); });
  };
  perm("permute", "permute", {2, 3, 4},
       [](const In& x) {
         return x[0].permute({2, 0, 1});
       },
       {2, 0, 1});
  perm("transpose", "transpose", {2, 3, 4}, [](const In& x) { return x[0].transpose(0, 2); },
       {2, 1, 0});
  perm("transpose", "t", {3, 4}, [](const In& x) { return x[0].t(); }, {1, 0});
  perm("permute", "permute_size1", {1, 5, 1, 3},
       [](const In& x) {
         return x[0].permute({3, 1, 2, 0});
       },
       {3, 1, 2, 0});
  perm("permute", "permute_large", {16, 33, 65},
       [](const In& x) {
         return x[0].permute({2, 0, 1});
       },
       {2, 0, 1})
      .quick = false;
  t.add(
      "clone", "clone", TC::Rounding, {in({3, 4})}, [](const In& x) { return x[0].clone() * x[0]; },
      [](const A& x) { return ref::map(x[0], [](double v) { return v * v; }); });
  InputSpec off = in({1001});
  off.offset_view = true;
  t.add(
      "clone", "clone_offset", TC::Exact, {off}, [](const In& x) { return x[0].clone(); },
      [](const A& x) { return x[0]; });
}

// The slicing cases (slicing.cpp): one record each, every dtype; the pieces
// of a call returning several are flattened and concatenated.
void slicing(std::vector<OpRecord>& out) {
  Table t{out, "slice"};
  for (const SliceCase& c : slice_cases()) {
    const SliceCase* sc = &c;
    size_t out_numel = 0;
    for (const SlicePiece& p : c.pieces) out_numel += static_cast<size_t>(ref::numel(p.shape));
    OpRecord& r = t.add(
        c.op, c.record, TC::Exact, {in(c.input, -9.0, 200.0)},
        [sc](const In& x) {
          std::vector<Tensor> pieces = sc->fn(x[0]);
          if (pieces.size() == 1) return pieces[0];
          for (Tensor& p : pieces) p = p.flatten();
          return cat(pieces);
        },
        [sc](const A& x) {
          Array y{{}, {}};
          for (const SlicePiece& p : sc->pieces) {
            const std::vector<double> v = slice_reference(x[0].v, sc->input, p);
            y.v.insert(y.v.end(), v.begin(), v.end());
          }
          y.shape = sc->pieces.size() == 1 ? sc->pieces[0].shape : Shape{int64_t(y.v.size())};
          return y;
        });
    r.dtypes = all_dtypes();
    r.quick = c.quick;
    r.differentiable = out_numel > 0;
  }
}

// Random ops: moments of 20000 draws against the distribution's.
void random_ops(std::vector<OpRecord>& out) {
  Table t{out, "random"};
  auto stat = [&](const std::string& op, double mean, double var, OpFn fn) {
    OpRecord& r = t.add(op, op, TC::Statistical, {constant(in({20000}))}, std::move(fn),
                        [mean, var](const A&) {
                          return Array{{2}, {mean, var}};
                        });
    r.differentiable = false;
  };
  auto opts = [](const Tensor& x) { return TensorOptions(x.dtype()).device(x.device()); };
  stat("rand", 0.5, 1.0 / 12, [opts](const In& x) {
    Generator g(42);
    return rand(x[0].sizes(), opts(x[0]), &g);
  });
  stat("randn", 0.0, 1.0, [opts](const In& x) {
    Generator g(43);
    return randn(x[0].sizes(), opts(x[0]), &g);
  });
  stat("uniform", 0.5, 25.0 / 12, [opts](const In& x) {
    Generator g(44);
    return uniform(x[0].sizes(), -2.0, 3.0, opts(x[0]), &g);
  });
  stat("normal", 1.0, 4.0, [opts](const In& x) {
    Generator g(45);
    return normal(x[0].sizes(), 1.0, 2.0, opts(x[0]), &g);
  });
  stat("randint", 4.5, 99.0 / 12, [](const In& x) {
    Generator g(46);
    return randint(0, 10, x[0].sizes(), TensorOptions(kInt64).device(x[0].device()), &g);
  });
  // Ones through dropout: 0 or 1/(1-p), mean 1, variance p/(1-p).
  stat("dropout", 1.0, 0.4 / 0.6, [](const In& x) {
    Generator g(47);
    return dropout(x[0] * 0.0 + 1.0, 0.4, true, &g);
  });
  stat("dropout_mask", 1.0, 0.3 / 0.7, [opts](const In& x) {
    Generator g(48);
    return dropout_mask(x[0].sizes(), 0.3, opts(x[0]), &g);
  });
  // x in [-1.5, 1.5) through dropout: mean 0, variance E[x^2] E[m^2] =
  // 0.75 / (1 - p). Differentiable: the same mask on every call (a fixed
  // generator), so the CUDA backward is held against the CPU's.
  for (double p : {0.1, 0.75}) {
    const std::string name = p == 0.1 ? "dropout_p0_1" : "dropout_p0_75";
    t.add(
        "dropout", name, TC::Statistical, {in({20000})},
        [p](const In& x) {
          Generator g(49);
          return dropout(x[0], p, true, &g);
        },
        [p](const A&) {
          return Array{{2}, {0.0, 0.75 / (1.0 - p)}};
        });
  }
  // p = 0 and evaluation mode are the identity (exact, and its gradient is 1).
  t.add(
      "dropout", "dropout_p0", TC::Exact, {in({7, 33})},
      [](const In& x) { return dropout(x[0], 0.0, true); }, [](const A& x) { return x[0]; });
  t.add(
      "dropout", "dropout_eval", TC::Exact, {in({7, 33})},
      [](const In& x) { return dropout(x[0], 0.5, false); }, [](const A& x) { return x[0]; });
  t.add(
       "dropout_mask", "dropout_mask_p0", TC::Exact, {constant(in({5, 7}))},
       [](const In& x) {
         return dropout_mask(x[0].sizes(), 0.0, TensorOptions(x[0].dtype()).device(x[0].device()));
       },
       [](const A& x) { return ref::full(x[0].shape, 1.0); })
      .differentiable = false;
}

// The fused optimizer steps, through optim::*: three steps with one gradient.
void optimizer_steps(std::vector<OpRecord>& out) {
  Table t{out, "optim"};
  using Step = std::function<void(std::vector<double>&, std::vector<double>&, double g, double& p,
                                  int64_t step)>;
  // p, g: the param and its gradient; the reference runs `step` per element with
  // its own state vector.
  auto opt = [&](const std::string& op, const std::string& name,
                 std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)> make,
                 Step step) {
    OpRecord& r = t.add(
        op, name, TC::Accumulate, {constant(in({37})), constant(in({37}))},
        [make](const In& x) {
          Tensor p = x[0].clone().set_requires_grad(true);
          p.mutable_grad() = x[1].clone();
          auto o = make({p});
          for (int i = 0; i < 3; ++i) o->step();
          return p.detach();
        },
        [step](const A& x) {
          Array p = x[0];
          for (size_t i = 0; i < p.v.size(); ++i) {
            std::vector<double> s1(1, 0.0), s2(2, 0.0);
            for (int64_t k = 1; k <= 3; ++k) step(s1, s2, x[1].v[i], p.v[i], k);
          }
          return p;
        });
    r.differentiable = false;
  };
  opt(
      "sgd_step", "sgd_momentum_nesterov",
      [](std::vector<Tensor> ps) {
        return std::make_unique<optim::SGD>(
            ps, optim::SGDOptions(0.1).momentum(0.9).nesterov(true).weight_decay(0.01));
      },
      [](std::vector<double>& buf, std::vector<double>&, double g, double& p, int64_t k) {
        const double d = g + 0.01 * p;
        buf[0] = k == 1 ? d : 0.9 * buf[0] + d;
        p -= 0.1 * (d + 0.9 * buf[0]);
      });
  opt(
      "sgd_step", "sgd_plain",
      [](std::vector<Tensor> ps) {
        return std::make_unique<optim::SGD>(ps, optim::SGDOptions(0.1));
      },
      [](std::vector<double>&, std::vector<double>&, double g, double& p, int64_t) {
        p -= 0.1 * g;
      });
  auto adam_ref = [](bool decoupled, double wd) {
    return [decoupled, wd](std::vector<double>&, std::vector<double>& s, double g, double& p,
                           int64_t k) {
      const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
      if (decoupled)
        p *= 1 - lr * wd;
      else
        g += wd * p;
      s[0] = b1 * s[0] + (1 - b1) * g;
      s[1] = b2 * s[1] + (1 - b2) * g * g;
      const double c1 = 1 - std::pow(b1, double(k)), c2 = 1 - std::pow(b2, double(k));
      p -= lr / c1 * s[0] / (std::sqrt(s[1]) / std::sqrt(c2) + eps);
    };
  };
  opt(
      "adam_step", "adam",
      [](std::vector<Tensor> ps) {
        return std::make_unique<optim::Adam>(ps, optim::AdamOptions(0.01).weight_decay(0.02));
      },
      adam_ref(false, 0.02));
  opt(
      "adam_step", "adamw",
      [](std::vector<Tensor> ps) {
        return std::make_unique<optim::AdamW>(ps, optim::AdamWOptions(0.01).weight_decay(0.1));
      },
      adam_ref(true, 0.1));
  opt(
      "rmsprop_step", "rmsprop_centered_momentum",
      [](std::vector<Tensor> ps) {
        return std::make_unique<optim::RMSprop>(
            ps, optim::RMSpropOptions(0.01).alpha(0.9).momentum(0.5).centered(true));
      },
      [](std::vector<double>& buf, std::vector<double>& s, double g, double& p, int64_t) {
        s[0] = 0.9 * s[0] + 0.1 * g * g;
        s[1] = 0.9 * s[1] + 0.1 * g;
        const double avg = std::sqrt(s[0] - s[1] * s[1]) + 1e-8;
        buf[0] = 0.5 * buf[0] + g / avg;
        p -= 0.01 * buf[0];
      });
  opt(
      "adagrad_step", "adagrad",
      [](std::vector<Tensor> ps) {
        return std::make_unique<optim::Adagrad>(ps, optim::AdagradOptions(0.1).lr_decay(0.01));
      },
      [](std::vector<double>& sum, std::vector<double>&, double g, double& p, int64_t k) {
        const double clr = 0.1 / (1 + double(k - 1) * 0.01);
        sum[0] += g * g;
        p -= clr * g / (std::sqrt(sum[0]) + 1e-10);
      });
}

}  // namespace

const std::vector<OpRecord>& op_records() {
  static const std::vector<OpRecord> records = [] {
    std::vector<OpRecord> r;
    elementwise(r);
    reductions(r);
    softmax_and_losses(r);
    matmuls(r);
    conv_pool_bn(r);
    indexing(r);
    indexing_sweeps(r);
    copies(r);
    copy_sweeps(r);
    slicing(r);
    random_ops(r);
    optimizer_steps(r);
    return r;
  }();
  return records;
}

std::vector<std::string> listed_ops() {
  std::vector<std::string> ops;
#define TANDEM_CHECK_NAME2_(fn, Enum) ops.push_back(#fn);
#define TANDEM_CHECK_NAME1_(fn) ops.push_back(#fn);
  TANDEM_UNARY_OPS(TANDEM_CHECK_NAME2_)
  TANDEM_PARAM_UNARY_OPS(TANDEM_CHECK_NAME2_)
  TANDEM_BINARY_OPS(TANDEM_CHECK_NAME2_)
  TANDEM_REDUCE_OPS(TANDEM_CHECK_NAME2_)
  TANDEM_OTHER_OPS(TANDEM_CHECK_NAME1_)
#undef TANDEM_CHECK_NAME1_
#undef TANDEM_CHECK_NAME2_
  return ops;
}

std::vector<std::string> ops_without_record() {
  std::vector<std::string> missing;
  for (const std::string& op : listed_ops()) {
    const auto& rs = op_records();
    if (std::none_of(rs.begin(), rs.end(), [&](const OpRecord& r) { return r.op == op; }))
      missing.push_back(op);
  }
  return missing;
}

}  // namespace tandem::check
