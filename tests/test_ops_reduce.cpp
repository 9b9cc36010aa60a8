// Reductions (every op of TANDEM_REDUCE_OPS, over all elements and over each
// dim with and without keepdim), var, argmax/argmin tie-breaking, and
// softmax/log_softmax on the CPU against naive float64 references.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "op_cases.h"
#include "test_util.h"

namespace {

using tandem::DType;
using tandem::ReduceOp;
using tandem::Shape;
using tandem::SoftmaxKind;
using tandem::Tensor;
using tt::expect_close;
using tt::Ref;

using tt::reduce_cases;
using tt::ReduceCase;

Tensor call_all(ReduceOp op, const Tensor& x) { return tt::call_reduce_all(op, x); }
Tensor call_dim(ReduceOp op, const Tensor& x, int64_t dim, bool keepdim) {
  return tt::call_reduce_dim(op, x, dim, keepdim);
}

bool supports(ReduceOp op, DType dt) { return tt::reduce_supports(op, dt); }

DType reduce_out_dtype(ReduceOp op, DType in) {
  switch (op) {
    case ReduceOp::Sum:
      return (in == tandem::kInt32 || in == tandem::kUInt8) ? tandem::kInt64 : in;
    case ReduceOp::Mean:
    case ReduceOp::Max:
    case ReduceOp::Min:
      return in;
    case ReduceOp::ArgMax:
    case ReduceOp::ArgMin:
      return tandem::kInt64;
  }
  return in;
}

// Reduces v[o * n * inner + j * inner + i] over j.
double ref_reduce_one(ReduceOp op, const std::vector<double>& v, int64_t o, int64_t n,
                      int64_t inner, int64_t i) {
  auto at = [&](int64_t j) { return v[static_cast<size_t>((o * n + j) * inner + i)]; };
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Mean: {
      double s = 0.0;
      for (int64_t j = 0; j < n; ++j) s += at(j);
      return op == ReduceOp::Mean ? s / static_cast<double>(n) : s;
    }
    case ReduceOp::Max:
    case ReduceOp::ArgMax: {
      int64_t best = 0;
      for (int64_t j = 1; j < n; ++j)
        if (at(j) > at(best)) best = j;  // strict: the first occurrence wins
      return op == ReduceOp::Max ? at(best) : static_cast<double>(best);
    }
    case ReduceOp::Min:
    case ReduceOp::ArgMin: {
      int64_t best = 0;
      for (int64_t j = 1; j < n; ++j)
        if (at(j) < at(best)) best = j;
      return op == ReduceOp::Min ? at(best) : static_cast<double>(best);
    }
  }
  return std::numeric_limits<double>::quiet_NaN();
}

Ref ref_reduce(ReduceOp op, const Tensor& x, int64_t dim, bool keepdim) {
  const Shape& s = x.sizes();
  const auto v = tt::to_doubles(x);
  const int64_t nd = static_cast<int64_t>(s.size());
  const int64_t d = dim < 0 ? dim + nd : dim;
  const int64_t outer = tt::prod(s, 0, static_cast<size_t>(d));
  const int64_t n = s[static_cast<size_t>(d)];
  const int64_t inner = tt::prod(s, static_cast<size_t>(d) + 1, s.size());
  Shape out;
  for (int64_t k = 0; k < nd; ++k) {
    if (k != d)
      out.push_back(s[static_cast<size_t>(k)]);
    else if (keepdim)
      out.push_back(1);
  }
  Ref r{out, std::vector<double>(static_cast<size_t>(outer * inner))};
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i)
      r.values[static_cast<size_t>(o * inner + i)] = ref_reduce_one(op, v, o, n, inner, i);
  return r;
}

Ref ref_reduce_all(ReduceOp op, const Tensor& x) {
  const auto v = tt::to_doubles(x);
  return Ref{Shape{}, {ref_reduce_one(op, v, 0, static_cast<int64_t>(v.size()), 1, 0)}};
}

// Sums of n float terms: the error of any reasonable summation order stays
// below eps * sqrt(n) * sum|x| in practice (naive float accumulation would be a
// random walk of that size); the means divide it by n. Max/min/arg* are exact.
tt::Tol reduce_tol(ReduceOp op, DType dt, int64_t n, double sum_abs) {
  if (!tandem::is_floating(dt)) return tt::exact();
  const tt::Tol base = tt::default_tol(dt);
  const double walk = tt::epsilon(dt) * std::sqrt(static_cast<double>(n)) * sum_abs;
  switch (op) {
    case ReduceOp::Sum:
      return {base.rtol, base.atol + walk};
    case ReduceOp::Mean:
      return {base.rtol, base.atol + walk / static_cast<double>(n)};
    default:
      return tt::exact();
  }
}

double sum_abs(const Tensor& x) {
  double s = 0.0;
  for (double v : tt::to_doubles(x)) s += std::fabs(v);
  return s;
}

Tensor reduce_input(const Shape& shape, DType dt) {
  // Integers from a small range so that argmax/argmin ties are common.
  if (dt == tandem::kUInt8) return tt::random_tensor(shape, dt, 0, 255);
  if (!tandem::is_floating(dt)) return tt::random_tensor(shape, dt, -3, 3);
  return tt::random_tensor(shape, dt, -1, 1);
}

using ReduceParam = std::tuple<size_t, DType>;

std::vector<ReduceParam> reduce_params() {
  std::vector<ReduceParam> p;
  for (size_t i = 0; i < reduce_cases().size(); ++i)
    for (DType dt :
         {tandem::kFloat32, tandem::kFloat64, tandem::kInt32, tandem::kInt64, tandem::kUInt8})
      if (supports(reduce_cases()[i].op, dt)) p.emplace_back(i, dt);
  return p;
}

class ReduceOpTest : public ::testing::TestWithParam<ReduceParam> {};

TEST_P(ReduceOpTest, AllElements) {
  const ReduceCase& c = reduce_cases()[std::get<0>(GetParam())];
  const DType dt = std::get<1>(GetParam());
  EXPECT_STREQ(tandem::op_name(c.op), c.name);
  std::vector<Shape> shapes = {{}, {7}, {1}, {3, 7, 5}, {1, 33}, {4, 1, 6}, {2, 3, 4, 5}};
  if (dt == tandem::kFloat32 || dt == tandem::kInt64 || dt == tandem::kUInt8)
    shapes.push_back({1000003});
  for (const Shape& shape : shapes) {
    SCOPED_TRACE("shape " + tt::str(shape));
    Tensor x = reduce_input(shape, dt);
    Ref ref = ref_reduce_all(c.op, x);
    const tt::Tol tol = reduce_tol(c.op, dt, x.numel(), sum_abs(x));
    for (const Tensor& y : {call_all(c.op, x), tandem::reduce(c.op, x)}) {
      EXPECT_EQ(y.dtype(), reduce_out_dtype(c.op, dt));
      ASSERT_EQ(y.numel(), 1);
      ref.shape = y.sizes();  // the 0-d shape is checked in FullReductionIsZeroDim
      expect_close(y, ref, tol);
    }
  }
}

TEST_P(ReduceOpTest, EachDimWithKeepdim) {
  const ReduceCase& c = reduce_cases()[std::get<0>(GetParam())];
  const DType dt = std::get<1>(GetParam());
  const std::vector<Shape> shapes = {{7}, {1}, {3, 7, 5}, {1, 33}, {4, 1, 6}, {2, 3, 4, 5}};
  for (const Shape& shape : shapes) {
    Tensor x = reduce_input(shape, dt);
    const int64_t nd = x.dim();
    for (int64_t dim = -1; dim < nd; ++dim) {
      for (bool keepdim : {false, true}) {
        SCOPED_TRACE("shape " + tt::str(shape) + " dim " + std::to_string(dim) +
                     (keepdim ? " keepdim" : ""));
        const Ref ref = ref_reduce(c.op, x, dim, keepdim);
        const int64_t n = x.size(dim);
        // Floating inputs are in [-1, 1]: sum|x| along one slice is at most n.
        const tt::Tol tol = reduce_tol(c.op, dt, n, static_cast<double>(n));
        Tensor y = call_dim(c.op, x, dim, keepdim);
        EXPECT_EQ(y.dtype(), reduce_out_dtype(c.op, dt));
        expect_close(y, ref, tol);
        expect_close(tandem::reduce(c.op, x, dim, keepdim), ref, tol);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllReduceOps, ReduceOpTest, ::testing::ValuesIn(reduce_params()),
                         [](const ::testing::TestParamInfo<ReduceParam>& param_info) {
                           return std::string(reduce_cases()[std::get<0>(param_info.param)].name) +
                                  "_" + tandem::dtype_name(std::get<1>(param_info.param));
                         });

// 1e6-element reductions along each dim of a [1000, 1001] input, for one
// floating and one integer dtype (the kernels are dtype templates).
TEST(ReduceTest, LargeAlongEachDim) {
  for (const auto& c : reduce_cases()) {
    for (DType dt : {tandem::kFloat32, tandem::kInt64}) {
      if (!supports(c.op, dt)) continue;
      Tensor x = reduce_input({1000, 1001}, dt);
      for (int64_t dim : {0, 1}) {
        SCOPED_TRACE(std::string(c.name) + " " + tandem::dtype_name(dt) + " dim " +
                     std::to_string(dim));
        const Ref ref = ref_reduce(c.op, x, dim, false);
        Tensor y = call_dim(c.op, x, dim, false);
        expect_close(y, ref, reduce_tol(c.op, dt, x.size(dim), static_cast<double>(x.size(dim))));
        // Normalised MSE over the whole result as an aggregate check.
        EXPECT_LE(tt::nmse(tt::to_doubles(y), ref.values), tandem::is_floating(dt) ? 1e-10 : 0.0);
      }
    }
  }
}

TEST(ReduceTest, FullReductionIsZeroDim) {
  Tensor x = tt::random_tensor({3, 4}, tandem::kFloat32);
  for (const auto& c : reduce_cases()) {
    SCOPED_TRACE(c.name);
    Tensor y = call_all(c.op, x);
    EXPECT_EQ(y.dim(), 0);
    EXPECT_EQ(y.numel(), 1);
  }
}

TEST(ReduceTest, MethodForms) {
  Tensor x = tt::random_tensor({4, 6}, tandem::kFloat64);
  tt::expect_equal(x.sum(), tandem::sum(x));
  tt::expect_equal(x.sum(1, true), tandem::sum(x, 1, true));
  tt::expect_equal(x.mean(), tandem::mean(x));
  tt::expect_equal(x.mean(0), tandem::mean(x, 0));
  tt::expect_equal(x.max(), tandem::max(x));
  tt::expect_equal(x.min(), tandem::min(x));
  tt::expect_equal(x.argmax(), tandem::argmax(x));
  tt::expect_equal(x.argmax(-1, true), tandem::argmax(x, -1, true));
}

TEST(ReduceTest, ArgMaxArgMinFirstOccurrence) {
  for (DType dt : {tandem::kFloat32, tandem::kFloat64, tandem::kInt32, tandem::kInt64}) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    Tensor v = tt::make_tensor({1, 3, 3, 2, 3}, {5}, dt);
    EXPECT_EQ(tandem::argmax(v).item<int64_t>(), 1);
    Tensor w = tt::make_tensor({2, 0, 5, 0, 0}, {5}, dt);
    EXPECT_EQ(tandem::argmin(w).item<int64_t>(), 1);
    Tensor m = tt::make_tensor({1, 5, 5, 7, 7, 2}, {2, 3}, dt);
    EXPECT_EQ(tandem::to_vector<int64_t>(tandem::argmax(m, 1)), (std::vector<int64_t>{1, 0}));
    EXPECT_EQ(tandem::to_vector<int64_t>(tandem::argmax(m, 0)), (std::vector<int64_t>{1, 1, 0}));
    EXPECT_EQ(tandem::to_vector<int64_t>(tandem::argmin(m, 1)), (std::vector<int64_t>{0, 2}));
    Tensor same = tt::make_tensor(std::vector<double>(33, 4.0), {33}, dt);
    EXPECT_EQ(tandem::argmax(same).item<int64_t>(), 0);
    EXPECT_EQ(tandem::argmin(same).item<int64_t>(), 0);
  }
  // Ties in a large input: the maximum appears many times.
  std::vector<double> big(1000003, 0.0);
  const auto pos = tt::int_values(50, 1000, 1000002);
  for (double p : pos) big[static_cast<size_t>(p)] = 1.0;
  const double first = *std::min_element(pos.begin(), pos.end());
  EXPECT_EQ(tandem::argmax(tt::make_tensor(big, {1000003}, tandem::kFloat32)).item<int64_t>(),
            static_cast<int64_t>(first));
}

TEST(ReduceTest, IntegerSumsDoNotOverflowTheInputType) {
  Tensor u = tandem::full({1000}, 255, tandem::kUInt8);
  Tensor su = tandem::sum(u);
  EXPECT_EQ(su.dtype(), tandem::kInt64);
  EXPECT_EQ(su.item<int64_t>(), 255000);
  Tensor i = tandem::full({3, 4}, 2000000000, tandem::kInt32);
  Tensor si = tandem::sum(i, 1);
  EXPECT_EQ(si.dtype(), tandem::kInt64);
  EXPECT_EQ(tandem::to_vector<int64_t>(si), (std::vector<int64_t>(3, 8000000000LL)));
}

// Integer sums of contiguous rows whose length falls around the CPU's chunk
// boundaries (16384 elements per chunk; the tail chunk's length mod 16 took
// every value), against a plain loop over the values. GCC 12 at -O3 once
// miscompiled the eight-chain row sum for uint8 and dropped elements of a tail
// chunk of length 8..15 mod 16 (a sum of 1001000 ones gave 1000209). Max and
// argmax of the same rows are checked too.
TEST(ReduceTest, IntegerSumsAroundChunkBoundaries) {
  constexpr int64_t kChunk = 16384;
  std::vector<int64_t> sizes = {15, 16, 17, 23, 24, 31, 999441, 1000999, 1001000, 1001001, 1015807};
  for (int64_t chunks : {1, 2}) {
    for (int64_t r = -17; r <= 40; ++r) sizes.push_back(chunks * kChunk + r);
  }
  for (int64_t r : {-1, 1, 8, 15, 16, 24, 31}) sizes.push_back(61 * kChunk + r);
  const int64_t max_n = *std::max_element(sizes.begin(), sizes.end());
  const std::vector<double> v = tt::int_values(max_n, 0, 255);
  for (DType dt : {tandem::kUInt8, tandem::kInt32, tandem::kInt64}) {
    const Tensor all = tt::make_tensor(v, {max_n}, dt);
    for (int64_t n : sizes) {
      SCOPED_TRACE(std::string(tandem::dtype_name(dt)) + " n " + std::to_string(n));
      int64_t ref = 0, best = 0;
      for (int64_t i = 0; i < n; ++i) {
        ref += static_cast<int64_t>(v[static_cast<size_t>(i)]);
        if (v[static_cast<size_t>(i)] > v[static_cast<size_t>(best)]) best = i;
      }
      const Tensor x = all.slice(0, 0, n);  // a prefix: contiguous, offset 0
      EXPECT_EQ(tandem::sum(x).item<int64_t>(), ref);
      EXPECT_EQ(tandem::argmax(x).item<int64_t>(), best);
      EXPECT_EQ(tt::to_doubles(tandem::max(x))[0], v[static_cast<size_t>(best)]);
      // The same row three times, summed along dim 1 (one task per row).
      if (n < 100000) {
        const Tensor rows = tandem::stack({x, x, x}, 0);
        EXPECT_EQ(tandem::to_vector<int64_t>(tandem::sum(rows, 1)), std::vector<int64_t>(3, ref));
      }
    }
  }
}

TEST(ReduceTest, ZeroDimInputs) {
  Tensor s = tandem::full({}, -2.5, tandem::kFloat64);
  for (const auto& c : reduce_cases()) {
    SCOPED_TRACE(c.name);
    Tensor all = call_all(c.op, s);
    EXPECT_EQ(all.numel(), 1);
    const double expect = (c.op == ReduceOp::ArgMax || c.op == ReduceOp::ArgMin) ? 0.0 : -2.5;
    EXPECT_EQ(tt::to_doubles(all)[0], expect);
    for (int64_t dim : {0, -1}) {
      Tensor d = call_dim(c.op, s, dim, false);
      EXPECT_EQ(d.dim(), 0);
      EXPECT_EQ(tt::to_doubles(d)[0], expect);
    }
  }
}

TEST(ReduceTest, EmptyInputs) {
  Tensor e = tandem::empty({0});
  EXPECT_EQ(tandem::sum(e).item<double>(), 0.0);
  Tensor e2 = tandem::empty({0, 3}, tandem::kFloat64);
  Tensor s0 = tandem::sum(e2, 0);
  EXPECT_EQ(s0.sizes(), (Shape{3}));
  expect_close(s0, Ref{{3}, {0, 0, 0}}, tt::exact());
  EXPECT_EQ(tandem::sum(e2, 1).sizes(), (Shape{0}));
  EXPECT_EQ(tandem::sum(e2, 1, true).sizes(), (Shape{0, 1}));
  EXPECT_EQ(tandem::max(e2, 1).sizes(), (Shape{0}));
  EXPECT_EQ(tandem::argmax(e2, 1).sizes(), (Shape{0}));
  EXPECT_EQ(tandem::mean(e2, 1).sizes(), (Shape{0}));
  EXPECT_EQ(tandem::sum(tandem::empty({0}, tandem::kInt32)).dtype(), tandem::kInt64);
}

// ---- var ---------------------------------------------------------------------------

Ref ref_var(const Tensor& x, int64_t dim, bool unbiased, bool keepdim) {
  Ref mean = ref_reduce(ReduceOp::Mean, x, dim, keepdim);
  const Shape& s = x.sizes();
  const int64_t nd = x.dim();
  const int64_t d = dim < 0 ? dim + nd : dim;
  const int64_t outer = tt::prod(s, 0, static_cast<size_t>(d)), n = s[static_cast<size_t>(d)],
                inner = tt::prod(s, static_cast<size_t>(d) + 1, s.size());
  const auto v = tt::to_doubles(x);
  Ref r = mean;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const double m = mean.values[static_cast<size_t>(o * inner + i)];
      double ss = 0.0;
      for (int64_t j = 0; j < n; ++j) {
        const double dv = v[static_cast<size_t>((o * n + j) * inner + i)] - m;
        ss += dv * dv;
      }
      r.values[static_cast<size_t>(o * inner + i)] = ss / static_cast<double>(unbiased ? n - 1 : n);
    }
  return r;
}

class VarTest : public ::testing::TestWithParam<DType> {};

TEST_P(VarTest, AllElementsAndEachDim) {
  const DType dt = GetParam();
  for (const Shape& shape : std::vector<Shape>{{7}, {3, 7, 5}, {2, 33}, {4, 2, 6}}) {
    Tensor x = tt::random_tensor(shape, dt, -1, 1);
    for (bool unbiased : {true, false}) {
      SCOPED_TRACE("shape " + tt::str(shape) + (unbiased ? " unbiased" : " biased"));
      // Two-pass variance: a few roundings per term (loosened x4 for float32).
      const tt::Tol tol = tt::scaled(tt::default_tol(dt), 4.0);
      Ref all = ref_var(x.view({-1}), 0, unbiased, false);
      Tensor va = tandem::var(x, unbiased);
      EXPECT_EQ(va.numel(), 1);
      all.shape = va.sizes();
      expect_close(va, all, tol);
      for (int64_t dim = -1; dim < x.dim(); ++dim)
        for (bool keepdim : {false, true}) {
          SCOPED_TRACE("dim " + std::to_string(dim) + (keepdim ? " keepdim" : ""));
          expect_close(tandem::var(x, dim, unbiased, keepdim), ref_var(x, dim, unbiased, keepdim),
                       tol);
        }
    }
  }
  // Default is unbiased.
  Tensor x = tt::random_tensor({9}, dt);
  tt::expect_equal(tandem::var(x), tandem::var(x, true));
  // var(x, 0) alone would be ambiguous (bool unbiased vs int64_t dim).
  tt::expect_equal(tandem::var(x, int64_t{0}), tandem::var(x, 0, true, false));
  // Large: 1e6 samples of U(-1, 1) have variance 1/3.
  Tensor big = tt::random_tensor({1000003}, dt, -1, 1);
  Ref rb = ref_var(big, 0, true, false);
  Tensor vb = tandem::var(big);
  rb.shape = vb.sizes();
  expect_close(vb, rb, tt::with_atol(tt::default_tol(dt), dt == tandem::kFloat32 ? 1e-4 : 1e-10));
  EXPECT_NEAR(vb.item<double>(), 1.0 / 3.0, 3e-3);
}

INSTANTIATE_TEST_SUITE_P(Floating, VarTest, ::testing::Values(tandem::kFloat32, tandem::kFloat64),
                         [](const ::testing::TestParamInfo<DType>& param_info) {
                           return std::string(tandem::dtype_name(param_info.param));
                         });

// ---- softmax / log_softmax ------------------------------------------------------------

Ref ref_softmax(SoftmaxKind kind, const Tensor& x, int64_t dim) {
  const Shape& s = x.sizes();
  const int64_t nd = x.dim();
  const int64_t d = dim < 0 ? dim + nd : dim;
  const int64_t outer = tt::prod(s, 0, static_cast<size_t>(d)), n = s[static_cast<size_t>(d)],
                inner = tt::prod(s, static_cast<size_t>(d) + 1, s.size());
  const auto v = tt::to_doubles(x);
  Ref r{s, v};
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t j) { return static_cast<size_t>((o * n + j) * inner + i); };
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < n; ++j) m = std::max(m, v[at(j)]);
      double sum = 0.0;
      for (int64_t j = 0; j < n; ++j) sum += std::exp(v[at(j)] - m);
      for (int64_t j = 0; j < n; ++j)
        r.values[at(j)] = kind == SoftmaxKind::Softmax ? std::exp(v[at(j)] - m) / sum
                                                       : v[at(j)] - m - std::log(sum);
    }
  return r;
}

Tensor call_softmax(SoftmaxKind kind, const Tensor& x, int64_t dim) {
  return kind == SoftmaxKind::Softmax ? tandem::softmax(x, dim) : tandem::log_softmax(x, dim);
}

class SoftmaxTest : public ::testing::TestWithParam<std::tuple<SoftmaxKind, DType>> {};

TEST_P(SoftmaxTest, EachDim) {
  const SoftmaxKind kind = std::get<0>(GetParam());
  const DType dt = std::get<1>(GetParam());
  for (const Shape& shape : std::vector<Shape>{{7}, {1}, {3, 7, 5}, {4, 33}, {2, 1, 3}, {0, 5}}) {
    Tensor x = tt::random_tensor(shape, dt, -5, 5);
    for (int64_t dim = -1; dim < x.dim(); ++dim) {
      SCOPED_TRACE("shape " + tt::str(shape) + " dim " + std::to_string(dim));
      Tensor y = call_softmax(kind, x, dim);
      EXPECT_EQ(y.dtype(), dt);
      expect_close(y, ref_softmax(kind, x, dim), tt::default_tol(dt));
    }
  }
}

TEST_P(SoftmaxTest, LargeLogitsStayFinite) {
  const SoftmaxKind kind = std::get<0>(GetParam());
  const DType dt = std::get<1>(GetParam());
  Tensor x = tt::random_tensor({4, 33}, dt, -1e4, 1e4);
  Tensor y = call_softmax(kind, x, 1);
  for (double v : tt::to_doubles(y)) ASSERT_TRUE(std::isfinite(v)) << v;
  expect_close(y, ref_softmax(kind, x, 1), tt::default_tol(dt));
  // Logits all equal to 1e4 (exp would overflow without the max shift).
  Tensor flat = tandem::full({3, 8}, 1e4, dt);
  const double expect = kind == SoftmaxKind::Softmax ? 1.0 / 8.0 : -std::log(8.0);
  expect_close(call_softmax(kind, flat, -1), Ref{{3, 8}, std::vector<double>(24, expect)},
               tt::default_tol(dt));
  Tensor neg = tandem::full({3, 8}, -1e4, dt);
  expect_close(
      call_softmax(kind, neg, 0),
      Ref{{3, 8},
          std::vector<double>(24, kind == SoftmaxKind::Softmax ? 1.0 / 3.0 : -std::log(3.0))},
      tt::default_tol(dt));
}

TEST_P(SoftmaxTest, LongRows) {
  const SoftmaxKind kind = std::get<0>(GetParam());
  const DType dt = std::get<1>(GetParam());
  Tensor x = tt::random_tensor({1000003}, dt, -3, 3);
  Tensor y = call_softmax(kind, x, 0);
  const Ref ref = ref_softmax(kind, x, 0);
  // Each probability is ~1e-6, below the default atol: compare by normalised MSE.
  EXPECT_LT(tt::nmse(tt::to_doubles(y), ref.values), dt == tandem::kFloat32 ? 1e-10 : 1e-24);
  if (kind == SoftmaxKind::Softmax) {
    double s = 0.0;
    for (double v : tt::to_doubles(y)) s += v;
    EXPECT_NEAR(s, 1.0, dt == tandem::kFloat32 ? 5e-4 : 1e-10);
  } else {
    // The log of a 1e6-term sum: its float32 rounding grows like eps * sqrt(n).
    const double atol = tt::default_tol(dt).atol + tt::epsilon(dt) * std::sqrt(1000003.0);
    expect_close(y, ref, tt::with_atol(tt::default_tol(dt), atol));
  }
}

TEST_P(SoftmaxTest, EveryProbabilityToAFewUlps) {
  // The float32 rows take float exps of x - m with the rounding error of x - m
  // put back (softmax.cpp): each output stays within a few ulps of the float64
  // reference, relative, also far below atol (probabilities down to 1e-35).
  const SoftmaxKind kind = std::get<0>(GetParam());
  const DType dt = std::get<1>(GetParam());
  Tensor x = tt::random_tensor({3, 1531}, dt, -40, 40);  // rows of several chunks
  // float64 rounds x - m in double: |x - m| * eps relative, up to 80 eps here.
  const double ulps = dt == tandem::kFloat32 ? 4.0 : 128.0;
  expect_close(call_softmax(kind, x, 1), ref_softmax(kind, x, 1), {ulps * tt::epsilon(dt), 0.0});
}

TEST_P(SoftmaxTest, MinusInfinityEntriesAreMasked) {
  // Attention-style masking: -inf logits get probability 0 (log-prob -inf),
  // the rest renormalise.
  const SoftmaxKind kind = std::get<0>(GetParam());
  const DType dt = std::get<1>(GetParam());
  const double inf = std::numeric_limits<double>::infinity();
  auto v = tt::uniform_values(4 * 9, -3, 3);
  for (size_t i = 0; i < v.size(); i += 3) v[i] = -inf;
  Tensor x = tt::make_tensor(v, {4, 9}, dt);
  expect_close(call_softmax(kind, x, 1), ref_softmax(kind, x, 1), tt::default_tol(dt));
}

TEST_P(SoftmaxTest, RowsSumToOne) {
  const SoftmaxKind kind = std::get<0>(GetParam());
  const DType dt = std::get<1>(GetParam());
  Tensor x = tt::random_tensor({5, 7, 9}, dt, -10, 10);
  Tensor p = call_softmax(kind, x, 1);
  if (kind == SoftmaxKind::LogSoftmax) p = tandem::exp(p);
  expect_close(tandem::sum(p, 1), Ref{{5, 9}, std::vector<double>(45, 1.0)}, tt::default_tol(dt));
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, SoftmaxTest,
    ::testing::Combine(::testing::Values(SoftmaxKind::Softmax, SoftmaxKind::LogSoftmax),
                       ::testing::Values(tandem::kFloat32, tandem::kFloat64)),
    [](const ::testing::TestParamInfo<std::tuple<SoftmaxKind, DType>>& param_info) {
      return std::string(std::get<0>(param_info.param) == SoftmaxKind::Softmax ? "softmax"
                                                                               : "log_softmax") +
             "_" + tandem::dtype_name(std::get<1>(param_info.param));
    });

}  // namespace
