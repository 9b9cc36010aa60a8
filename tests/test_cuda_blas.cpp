// Matrix products on cuBLAS: the TF32 switch (mm, bmm, matmul's forms,
// linear and empty operands against the CPU are the registry's "matmul"
// records, test_registry.cpp). CPU references: test_ops_blas.cpp. Skipped
// without a CUDA device.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <utility>
#include <vector>

#include "test_cuda_util.h"
#include "test_util.h"

namespace {

using namespace tt::cuda_parity;  // NOLINT(google-build-using-namespace)

// ---- Matrix products (cuBLAS) ------------------------------------------------------------

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

}  // namespace
