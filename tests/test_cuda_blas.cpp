// Matrix products on cuBLAS held against the CPU's BLAS: mm, bmm, matmul's
// broadcasting forms, linear, empty operands, TF32. CPU references:
// test_ops_blas.cpp. Skipped without a CUDA device.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <utility>
#include <vector>

#include "test_cuda_util.h"
#include "test_util.h"

namespace {

using namespace tt::cuda_parity;  // NOLINT(google-build-using-namespace)

// ---- Matrix products (cuBLAS) ------------------------------------------------------------

// cuBLAS and OpenBLAS both accumulate float32 in float32 with their own blocking
// and FMA use (TF32 is off by default), so the difference grows with k; inputs
// are in [-1, 1].
Tol gemm_parity_tol(DType dt, int64_t k) {
  if (dt == tandem::kFloat64) return tt::scaled(tt::default_tol(dt), 2.0);
  return {1e-5, 1e-5 + 4.0 * static_cast<double>(k) * tt::epsilon(dt)};
}

class BlasParity : public CudaParamTest<DType> {};

TEST_P(BlasParity, MmBmmMatmulLinear) {
  const DType dt = GetParam();
  ASSERT_FALSE(tandem::cuda::allow_tf32());
  const int64_t m = 7, k = 33, n = 5;
  const std::vector<std::pair<Shape, Shape>> mm_cases = {
      {{m, k}, {k, n}}, {{1, 1}, {1, 1}}, {{65, 129}, {129, 67}}, {{256, 512}, {512, 96}}};
  for (const auto& c : mm_cases) {
    SCOPED_TRACE("mm " + tt::str(c.first) + " x " + tt::str(c.second));
    Tensor a = tt::random_tensor(c.first, dt), b = tt::random_tensor(c.second, dt);
    Tensor cpu = tandem::mm(a, b);
    poison_output(cpu.sizes(), dt);
    expect_parity(tandem::mm(a.cuda(), b.cuda()), cpu, gemm_parity_tol(dt, c.first.back()));
  }
  Tensor ba = tt::random_tensor({3, m, k}, dt), bb = tt::random_tensor({3, k, n}, dt);
  expect_parity(tandem::bmm(ba.cuda(), bb.cuda()), tandem::bmm(ba, bb), gemm_parity_tol(dt, k));
  const std::vector<std::pair<Shape, Shape>> matmul_cases = {{{k}, {k}},
                                                             {{m, k}, {k}},
                                                             {{k}, {k, n}},
                                                             {{m, k}, {k, n}},
                                                             {{3, m, k}, {k, n}},
                                                             {{2, 3, m, k}, {k, n}},
                                                             {{3, m, k}, {3, k, n}},
                                                             {{2, 3, m, k}, {2, 3, k, n}},
                                                             {{m, k}, {3, k, n}},
                                                             {{k}, {3, k, n}},
                                                             {{1, m, k}, {3, k, n}},
                                                             {{m, k}, {2, 3, k, n}},
                                                             {{3, m, k}, {1, k, n}}};
  for (const auto& c : matmul_cases) {
    SCOPED_TRACE("matmul " + tt::str(c.first) + " x " + tt::str(c.second));
    Tensor a = tt::random_tensor(c.first, dt), b = tt::random_tensor(c.second, dt);
    expect_parity(tandem::matmul(a.cuda(), b.cuda()), tandem::matmul(a, b), gemm_parity_tol(dt, k));
  }
  Tensor x = tt::random_tensor({2, 9, k}, dt), w = tt::random_tensor({n, k}, dt),
         bias = tt::random_tensor({n}, dt);
  expect_parity(tandem::linear(x.cuda(), w.cuda()), tandem::linear(x, w), gemm_parity_tol(dt, k));
  expect_parity(tandem::linear(x.cuda(), w.cuda(), bias.cuda()), tandem::linear(x, w, bias),
                gemm_parity_tol(dt, k));
  // Empty operands.
  const auto opts = tandem::TensorOptions(dt).device(kGpu);
  expect_parity(tandem::mm(tandem::empty({3, 0}, opts), tandem::empty({0, 4}, opts)),
                tandem::zeros({3, 4}, dt), tt::exact());
  EXPECT_EQ(tandem::bmm(tandem::empty({0, 2, 3}, opts), tandem::empty({0, 3, 4}, opts)).sizes(),
            (Shape{0, 2, 4}));
}

TEST_F(CudaTest, Tf32GemmIsLessPreciseButClose) {
  const DType dt = tandem::kFloat32;  // TF32 affects float32 only
  Tensor a = tt::random_tensor({128, 256}, dt), b = tt::random_tensor({256, 64}, dt);
  tandem::cuda::set_allow_tf32(true);
  Tensor fast = tandem::mm(a.cuda(), b.cuda());
  tandem::cuda::set_allow_tf32(false);
  const Tensor exact = tandem::mm(a, b);
  const double err = tt::nmse(tt::to_doubles(fast), tt::to_doubles(exact));
  // TF32 keeps a 10-bit mantissa: each input is off by up to 2^-11 relative,
  // so the product's normalised error is near 1e-7 (7e-8 under the emulated
  // device); float32's own rounding leaves ~1e-13. Bounded on both sides: a
  // TF32 switch that did nothing would give less than 1e-10.
  EXPECT_GT(err, 1e-10) << "TF32 mode gave float32 precision";
  EXPECT_LT(err, 1e-5);
  // Switched off again: float32 precision.
  EXPECT_LT(tt::nmse(tt::to_doubles(tandem::mm(a.cuda(), b.cuda())), tt::to_doubles(exact)), 1e-11);
}

INSTANTIATE_TEST_SUITE_P(Floating, BlasParity,
                         ::testing::Values(tandem::kFloat32, tandem::kFloat64), dtype_param_name);

}  // namespace
