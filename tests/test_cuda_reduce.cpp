// Reduction parity (every op of the X-macro list, all and each dim, large sums
// by normalised error), var, softmax and log_softmax including the tall,
// narrow dim-0 path. CPU references: test_ops_reduce.cpp. Skipped without a
// CUDA device.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "op_cases.h"
#include "test_cuda_util.h"
#include "test_util.h"

namespace {

using namespace tt::cuda_parity;  // NOLINT(google-build-using-namespace)

// ---- Reductions ----------------------------------------------------------------------

// Different summation orders on the two devices: each side's error is below
// eps * sqrt(n) * sum|x| (see test_ops_reduce.cpp), so allow twice that.
Tol reduce_parity_tol(ReduceOp op, DType dt, int64_t n) {
  if (!tandem::is_floating(dt)) return tt::exact();
  const Tol base = tt::default_tol(dt);
  const double walk =
      2.0 * tt::epsilon(dt) * std::sqrt(static_cast<double>(n)) * static_cast<double>(n);
  if (op == ReduceOp::Sum) return {base.rtol, base.atol + walk};
  if (op == ReduceOp::Mean) return {base.rtol, base.atol + walk / static_cast<double>(n)};
  return tt::exact();  // max/min/argmax/argmin pick an element: exact
}

Tensor reduce_input(const Shape& s, DType dt) {
  if (dt == tandem::kUInt8) return tt::random_tensor(s, dt, 0, 255);
  if (!tandem::is_floating(dt)) return tt::random_tensor(s, dt, -3, 3);  // many ties
  return tt::random_tensor(s, dt, -1, 1);
}

class ReduceParity : public CudaParamTest<std::tuple<size_t, DType>> {};

std::vector<std::tuple<size_t, DType>> reduce_params() {
  std::vector<std::tuple<size_t, DType>> p;
  for (size_t i = 0; i < tt::reduce_cases().size(); ++i)
    for (DType dt : tt::all_dtypes())
      if (tt::reduce_supports(tt::reduce_cases()[i].op, dt)) p.emplace_back(i, dt);
  return p;
}

TEST_P(ReduceParity, AllAndEachDim) {
  const auto& c = tt::reduce_cases()[std::get<0>(GetParam())];
  const DType dt = std::get<1>(GetParam());
  for (const Shape& s : std::vector<Shape>{
           {}, {7}, {1}, {3, 7, 5}, {1, 33}, {4, 1, 6}, {1000003}, {1000, 1001}, {3, 70000}}) {
    SCOPED_TRACE("shape " + tt::str(s));
    Tensor x = reduce_input(s, dt);
    Tensor xg = x.cuda();
    expect_parity(tt::call_reduce_all(c.op, xg), tt::call_reduce_all(c.op, x),
                  reduce_parity_tol(c.op, dt, x.numel()));
    expect_parity(tandem::reduce(c.op, xg), tandem::reduce(c.op, x),
                  reduce_parity_tol(c.op, dt, x.numel()));
    for (int64_t dim = x.dim() > 0 ? -1 : 0; dim < x.dim(); ++dim)
      for (bool keepdim : {false, true}) {
        SCOPED_TRACE("dim " + std::to_string(dim) + (keepdim ? " keepdim" : ""));
        Tensor cpu = tt::call_reduce_dim(c.op, x, dim, keepdim);
        poison_output(cpu.sizes(), cpu.dtype());
        expect_parity(tt::call_reduce_dim(c.op, xg, dim, keepdim), cpu,
                      reduce_parity_tol(c.op, dt, x.size(dim)));
      }
  }
  // Empty inputs.
  Tensor e = tandem::empty({0, 3}, dt);
  if (c.op == ReduceOp::Sum)
    expect_parity(tandem::sum(e.cuda(), 0), tandem::sum(e, 0), tt::exact());
  expect_parity(tt::call_reduce_dim(c.op, e.cuda(), 1, false),
                tt::call_reduce_dim(c.op, e, 1, false), tt::exact());
}

TEST_F(CudaTest, LargeSumsByNormalisedError) {
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean})
    for (DType dt : tt::float_dtypes()) {
      SCOPED_TRACE(std::string(tandem::op_name(op)) + " " + tandem::dtype_name(dt));
      Tensor x = tt::random_tensor({4096, 513}, dt, 0, 1);
      for (int64_t dim : {0, 1}) {
        const auto g = tt::to_doubles(tt::call_reduce_dim(op, x.cuda(), dim, false));
        const auto h = tt::to_doubles(tt::call_reduce_dim(op, x, dim, false));
        // Float32 sums of 4096 terms on the CPU carry a relative error of ~1e-6.
        EXPECT_LT(tt::nmse(g, h), dt == tandem::kFloat32 ? 1e-10 : 1e-26);
      }
    }
}

INSTANTIATE_TEST_SUITE_P(AllReduceOps, ReduceParity, ::testing::ValuesIn(reduce_params()),
                         [](const ::testing::TestParamInfo<std::tuple<size_t, DType>>& param_info) {
                           return std::string(
                                      tt::reduce_cases()[std::get<0>(param_info.param)].name) +
                                  "_" + tandem::dtype_name(std::get<1>(param_info.param));
                         });

class VarSoftmaxParity : public CudaParamTest<DType> {};

TEST_P(VarSoftmaxParity, Var) {
  const DType dt = GetParam();
  // Two-pass variance with device-specific summation order.
  const Tol tol = tt::scaled(tt::default_tol(dt), 8.0);
  for (const Shape& s : std::vector<Shape>{{7}, {3, 7, 5}, {2, 33}, {1000003}}) {
    Tensor x = tt::random_tensor(s, dt, -1, 1);
    for (bool unbiased : {true, false}) {
      SCOPED_TRACE("shape " + tt::str(s) + (unbiased ? " unbiased" : " biased"));
      expect_parity(tandem::var(x.cuda(), unbiased), tandem::var(x, unbiased),
                    tt::with_atol(tol, dt == tandem::kFloat32 ? 1e-4 : 1e-10));
      for (int64_t dim = -1; dim < x.dim(); ++dim)
        for (bool keepdim : {false, true})
          expect_parity(tandem::var(x.cuda(), dim, unbiased, keepdim),
                        tandem::var(x, dim, unbiased, keepdim),
                        tt::with_atol(tol, dt == tandem::kFloat32 ? 1e-4 : 1e-10));
    }
  }
}

TEST_P(VarSoftmaxParity, SoftmaxAndLogSoftmax) {
  const DType dt = GetParam();
  const Tol tol = tt::scaled(tt::default_tol(dt), 4.0);  // expf/logf on both sides
  for (const Shape& s :
       std::vector<Shape>{{7}, {1}, {3, 7, 5}, {4, 33}, {2, 1, 3}, {0, 5}, {64, 1000}, {3, 4097}}) {
    Tensor x = tt::random_tensor(s, dt, -5, 5);
    const Tensor xg = x.cuda();
    for (int64_t dim = -1; dim < x.dim(); ++dim) {
      SCOPED_TRACE("shape " + tt::str(s) + " dim " + std::to_string(dim));
      Tensor cpu = tandem::softmax(x, dim);
      poison_output(cpu.sizes(), dt);
      expect_parity(tandem::softmax(xg, dim), cpu, tol);
      poison_output(cpu.sizes(), dt);
      expect_parity(tandem::log_softmax(xg, dim), tandem::log_softmax(x, dim), tol);
    }
  }
  Tensor big = tt::random_tensor({8, 1000}, dt, -1e4, 1e4);
  Tensor sg = tandem::softmax(big.cuda(), 1), lg = tandem::log_softmax(big.cuda(), 1);
  for (double v : tt::to_doubles(sg)) ASSERT_TRUE(std::isfinite(v));
  for (double v : tt::to_doubles(lg)) ASSERT_TRUE(std::isfinite(v));
  expect_parity(sg, tandem::softmax(big, 1), tol);
  expect_parity(lg, tandem::log_softmax(big, 1), tol);
  Tensor row = tt::random_tensor({1000003}, dt, -3, 3);
  EXPECT_LT(tt::nmse(tt::to_doubles(tandem::softmax(row.cuda(), 0)),
                     tt::to_doubles(tandem::softmax(row, 0))),
            dt == tandem::kFloat32 ? 1e-10 : 1e-24);
}

// Issue 18 item 9: softmax over dim 0 of a tall, narrow tensor splits each
// column into chunks (max and sum-exp partials combined by the log-sum-exp
// rule, then a pass per element). Shapes with few columns and long dims, a
// column of -inf in one chunk only, and a whole column of -inf (NaN, as on
// the CPU).
TEST_P(VarSoftmaxParity, TallNarrowSoftmaxOverDimZero) {
  const DType dt = GetParam();
  const Tol tol = tt::scaled(tt::default_tol(dt), 4.0);  // expf/logf on both sides
  for (const Shape& s : std::vector<Shape>{
           {100003, 3}, {4097, 1}, {4097, 2}, {65, 1, 2}, {2049, 5, 3}, {3, 30011, 2}}) {
    Tensor x = tt::random_tensor(s, dt, -5, 5);
    const Tensor xg = x.cuda();
    for (int64_t dim : {int64_t{0}, int64_t{1}}) {
      SCOPED_TRACE("shape " + tt::str(s) + " dim " + std::to_string(dim));
      Tensor cpu = tandem::softmax(x, dim);
      poison_output(cpu.sizes(), dt);
      expect_parity(tandem::softmax(xg, dim), cpu, tol);
      poison_output(cpu.sizes(), dt);
      expect_parity(tandem::log_softmax(xg, dim), tandem::log_softmax(x, dim), tol);
    }
  }
  // Column 0: -inf in its first 5000 entries (whole chunks); column 1: all
  // -inf (NaN on both devices); column 2: finite, with a large spread.
  const int64_t rows = 20011;
  std::vector<double> v = tt::to_doubles(tt::random_tensor({rows, 3}, dt, -50, 50));
  for (int64_t r = 0; r < rows; ++r) {
    if (r < 5000) v[static_cast<size_t>(r * 3)] = -INFINITY;
    v[static_cast<size_t>(r * 3 + 1)] = -INFINITY;
  }
  Tensor x = tt::make_tensor(v, {rows, 3}, dt);
  for (bool take_log : {false, true}) {
    SCOPED_TRACE(take_log ? "log_softmax with -inf" : "softmax with -inf");
    const std::vector<double> gpu =
        tt::to_doubles(take_log ? tandem::log_softmax(x.cuda(), 0) : tandem::softmax(x.cuda(), 0));
    const std::vector<double> cpu =
        tt::to_doubles(take_log ? tandem::log_softmax(x, 0) : tandem::softmax(x, 0));
    for (size_t e = 0; e < cpu.size(); ++e) {
      if (std::isnan(cpu[e])) {
        ASSERT_TRUE(std::isnan(gpu[e])) << "element " << e << ": " << gpu[e];
      } else if (std::isinf(cpu[e])) {
        ASSERT_EQ(gpu[e], cpu[e]) << "element " << e;
      } else {
        ASSERT_NEAR(gpu[e], cpu[e], tol.atol + tol.rtol * std::abs(cpu[e])) << "element " << e;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Floating, VarSoftmaxParity,
                         ::testing::Values(tandem::kFloat32, tandem::kFloat64), dtype_param_name);

}  // namespace
