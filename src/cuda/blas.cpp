// cuda::gemm: row-major (strided-batched) GEMM through cuBLAS.
//
// cuBLAS is column-major. A row-major [r, c] matrix is the column-major [c, r]
// matrix, i.e. its transpose, so the row-major C = op(A) op(B) is computed as
// the column-major C^T = op(B)^T op(A)^T: swap the operands and m with n, keep
// each operand's transpose flag. Leading dimensions are the row lengths of the
// stored (row-major) matrices.
//
// float32 uses TF32 tensor cores only when cuda::allow_tf32() is on (the math
// mode is set on the handle for every call).
#include <cublas_v2.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "core/backend.h"
#include "cuda/cuda_utils.h"

namespace tandem {
namespace cuda {

namespace {

int checked_int(int64_t v, const char* what) {
  TANDEM_CHECK(v >= 0 && v <= INT_MAX, "matmul (cuda): ", what, " = ", v,
               " does not fit the 32-bit sizes cuBLAS takes");
  return static_cast<int>(v);
}

cublasOperation_t to_cublas(Transpose t) { return t == Transpose::Yes ? CUBLAS_OP_T : CUBLAS_OP_N; }

}  // namespace

void gemm(Transpose ta, Transpose tb, const GemmShape& shape, double alpha, const Tensor& a,
          const Tensor& b, double beta, Tensor& c) {
  TANDEM_CHECK(a.dtype() == b.dtype() && a.dtype() == c.dtype(),
               "matmul (cuda): operands must share a dtype, got ", dtype_name(a.dtype()), ", ",
               dtype_name(b.dtype()), " and ", dtype_name(c.dtype()));
  if (shape.batch == 0 || shape.m == 0 || shape.n == 0) return;

  const int batch = checked_int(shape.batch, "batch");
  const int m = checked_int(shape.m, "m");
  const int n = checked_int(shape.n, "n");
  const int k = checked_int(shape.k, "k");
  // Stored row lengths: A is [m, k] or (transposed) [k, m]; B is [k, n] or [n, k].
  const int lda = checked_int(std::max<int64_t>(1, ta == Transpose::No ? shape.k : shape.m), "lda");
  const int ldb = checked_int(std::max<int64_t>(1, tb == Transpose::No ? shape.n : shape.k), "ldb");
  const int ldc = checked_int(std::max<int64_t>(1, shape.n), "ldc");
  const auto stride_a = static_cast<long long>(shape.stride_a);
  const auto stride_b = static_cast<long long>(shape.stride_b);
  const auto stride_c = static_cast<long long>(shape.stride_c);

  cublasHandle_t handle = detail::current_cublas_handle();
  if (a.dtype() == kFloat32) {
    const float alpha_f = static_cast<float>(alpha);
    const float beta_f = static_cast<float>(beta);
    TANDEM_CUDA_CHECK(cublasSgemmStridedBatched(
        handle, to_cublas(tb), to_cublas(ta), n, m, k, &alpha_f, b.data_ptr<float>(), ldb, stride_b,
        a.data_ptr<float>(), lda, stride_a, &beta_f, c.data_ptr<float>(), ldc, stride_c, batch));
    TANDEM_CUDA_CHECK_LAUNCH(cublasSgemmStridedBatched);
  } else if (a.dtype() == kFloat64) {
    TANDEM_CUDA_CHECK(cublasDgemmStridedBatched(
        handle, to_cublas(tb), to_cublas(ta), n, m, k, &alpha, b.data_ptr<double>(), ldb, stride_b,
        a.data_ptr<double>(), lda, stride_a, &beta, c.data_ptr<double>(), ldc, stride_c, batch));
    TANDEM_CUDA_CHECK_LAUNCH(cublasDgemmStridedBatched);
  } else {
    TANDEM_FAIL("matmul (cuda): dtype ", dtype_name(a.dtype()),
                " is not supported (expected float32 or float64)");
  }
}

}  // namespace cuda
}  // namespace tandem
