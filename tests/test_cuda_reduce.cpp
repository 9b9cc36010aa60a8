// Reductions and softmax on the device, what the registry's records cannot
// say: large sums by normalised error, and -inf routing in the chunked dim-0
// softmax. (Every reduction, var, softmax and log_softmax over shapes x dims
// x dtypes against the CPU: the registry's "reduce" and "softmax" records,
// test_registry.cpp.) CPU references: test_ops_reduce.cpp. Skipped without a
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

class VarSoftmaxParity : public CudaParamTest<DType> {};

// Softmax over dim 0 of a tall, narrow tensor splits each column into chunks
// (max and sum-exp partials combined by the log-sum-exp rule); the shapes are
// registry records ("softmax_100003x3_dim0", ...). Here the -inf routing: a
// column of -inf in one chunk only, and a whole column of -inf (NaN, as on
// the CPU).
TEST_P(VarSoftmaxParity, SoftmaxOverDimZeroRoutesMinusInfinity) {
  const DType dt = GetParam();
  const Tol tol = tt::scaled(tt::default_tol(dt), 4.0);  // expf/logf on both sides
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
