// The emulated cuBLAS (TANDEM_EMU): the handful of cuBLAS functions tandem
// calls, defined against the real cublas_api.h declarations, computed on the
// host by a plain reference GEMM (a triple loop, independent of tandem's own
// CPU GEMM and of any BLAS library).
//
// Emulated, per cuBLAS's documentation:
//   - handles (struct cublasContext), stream, math mode, workspace (checked to
//     be device memory aligned to 256 bytes; cublasSetStream resets it);
//   - S/D GEMM and strided-batched GEMM: column-major, CUBLAS_OP_N/T/C (C is T
//     for real types), lda/ldb/ldc, batch strides (0 broadcasts an operand),
//     host-side alpha/beta read at call time, quick returns (m, n or batch 0;
//     k == 0 or alpha == 0 leaves A and B unread), beta == 0 leaves C unread (a
//     NaN there does not propagate), CUBLAS_STATUS_INVALID_VALUE exactly for the
//     argument errors cuBLAS documents;
//   - CUBLAS_TF32_TENSOR_OP_MATH: float inputs are rounded to TF32 (10-bit
//     mantissa, round to nearest even) before multiplying, so a TF32 error shows;
//   - every operand's extent is checked (emu::check_device_range) before the
//     GEMM is enqueued on the handle's stream (emu::enqueue); it runs later;
//   - fault injection: emu::cublas_should_fail() -> CUBLAS_STATUS_EXECUTION_FAILED.
// Not emulated: algorithm choice, speed, pointer mode device, cuBLASLt, any
// other routine. DIFFERENCE FROM cuBLAS: products are accumulated in double
// for both float and double, and alpha * acc + beta * C is rounded once, so
// results are at least as accurate as cuBLAS's (float accumulation), not
// bit-identical to them.
#include <cublas_v2.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "emu/emu.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  void* workspace = nullptr;  // nullptr: cuBLAS's own pool
  size_t workspace_bytes = 0;
};

namespace tandem {
namespace emu {
namespace {

bool valid_op(cublasOperation_t op) {
  return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
}

bool is_tf32(cublasMath_t mode) {
  return (static_cast<int>(mode) &
          ~static_cast<int>(CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)) ==
         static_cast<int>(CUBLAS_TF32_TENSOR_OP_MATH);
}

// Everything one GEMM needs, copied by value into the deferred work.
struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0, batch = 1;
  double alpha = 0.0, beta = 0.0;
  bool tf32 = false;
  bool reads_ab() const { return k > 0 && alpha != 0.0; }
};

// Bytes an operand of `rows` x `cols` (column-major, leading dimension ld)
// spans over all batches, and the offset (in elements, <= 0) where it starts.
struct Extent {
  int64_t first = 0;
  size_t bytes = 0;
};
Extent extent(int64_t rows, int64_t cols, int64_t ld, int64_t stride, int64_t batch, size_t elem) {
  if (rows == 0 || cols == 0 || batch == 0) return {};
  const int64_t span = (cols - 1) * ld + rows;
  const int64_t last = (batch - 1) * stride;
  const int64_t lo = last < 0 ? last : 0;
  const int64_t hi = (last > 0 ? last : 0) + span;
  return {lo, static_cast<size_t>(hi - lo) * elem};
}

template <typename T>
bool check_operand(const char* what, const char* name, const T* p, Extent e) {
  return check_device_range(what, name, p + e.first, e.bytes);
}

template <typename T>
double load(T v, bool tf32) {
  if constexpr (sizeof(T) == sizeof(float)) {
    return tf32 ? static_cast<double>(round_tf32(v)) : static_cast<double>(v);
  } else {
    return static_cast<double>(v);
  }
}

// The reference: C_b = alpha op(A_b) op(B_b) + beta C_b for every batch b.
// op(A) as rows of k doubles (row i holds op(A)[i, 0..k)), op(B) as columns of
// k doubles (column j holds op(B)[0..k, j]): every dot product then reads two
// contiguous rows, in four interleaved partial sums (a fixed order, still all
// in double).
template <typename T>
void pack(const T* p, int64_t ld, bool trans, int64_t rows, int64_t k, bool tf32,
          std::vector<double>& out) {
  out.resize(static_cast<size_t>(rows * k));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t l = 0; l < k; ++l) {
      out[static_cast<size_t>(r * k + l)] = load(trans ? p[l + r * ld] : p[r + l * ld], tf32);
    }
  }
}
inline double dot(const double* x, const double* y, int64_t k) {
  double s[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t l = 0;
  for (; l + 4 <= k; l += 4) {
    for (int q = 0; q < 4; ++q) s[q] += x[l + q] * y[l + q];
  }
  for (; l < k; ++l) s[0] += x[l] * y[l];
  return (s[0] + s[1]) + (s[2] + s[3]);
}
template <typename T>
void run_gemm(const GemmArgs& g, const T* a, const T* b, T* c) {
  std::vector<double> pa, pb;
  for (int64_t bt = 0; bt < g.batch; ++bt) {
    const T* ab = a + bt * g.stride_a;
    const T* bb = b + bt * g.stride_b;
    T* cb = c + bt * g.stride_c;
    if (g.reads_ab()) {
      // op(A)[i, l] = A[i + l*lda] (N) or A[l + i*lda] (T): rows of op(A).
      pack(ab, g.lda, g.trans_a, g.m, g.k, g.tf32, pa);
      // op(B)[l, j] = B[l + j*ldb] (N) or B[j + l*ldb] (T): columns of op(B),
      // i.e. rows of op(B)^T, whose storage is the transposed reading.
      pack(bb, g.ldb, !g.trans_b, g.n, g.k, g.tf32, pb);
    }
    for (int64_t j = 0; j < g.n; ++j) {
      for (int64_t i = 0; i < g.m; ++i) {
        const double acc = g.reads_ab() ? dot(&pa[static_cast<size_t>(i * g.k)],
                                              &pb[static_cast<size_t>(j * g.k)], g.k)
                                        : 0.0;
        T& out = cb[i + j * g.ldc];
        const double prior = g.beta == 0.0 ? 0.0 : g.beta * static_cast<double>(out);
        out = static_cast<T>(g.alpha * acc + prior);
      }
    }
  }
}
template <typename T>
cublasStatus_t gemm(const char* what, cublasHandle_t handle, cublasOperation_t ta,
                    cublasOperation_t tb, int m, int n, int k, const T* alpha, const T* a, int lda,
                    long long stride_a, const T* b, int ldb, long long stride_b, const T* beta,
                    T* c, int ldc, long long stride_c, int batch) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  const auto at_least = [](int ld, int rows) { return ld >= (rows > 1 ? rows : 1); };
  if (m < 0 || n < 0 || k < 0 || batch < 0 || !valid_op(ta) || !valid_op(tb) || alpha == nullptr ||
      beta == nullptr || !at_least(lda, ta == CUBLAS_OP_N ? m : k) ||
      !at_least(ldb, tb == CUBLAS_OP_N ? k : n) || !at_least(ldc, m) ||
      (c == nullptr && m > 0 && n > 0 && batch > 0)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (cublas_should_fail()) return CUBLAS_STATUS_EXECUTION_FAILED;
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;

  GemmArgs g;
  g.trans_a = ta != CUBLAS_OP_N;
  g.trans_b = tb != CUBLAS_OP_N;
  g.m = m, g.n = n, g.k = k, g.lda = lda, g.ldb = ldb, g.ldc = ldc;
  g.stride_a = stride_a, g.stride_b = stride_b, g.stride_c = stride_c, g.batch = batch;
  g.alpha = static_cast<double>(*alpha);
  g.beta = static_cast<double>(*beta);
  g.tf32 = sizeof(T) == sizeof(float) && is_tf32(handle->math);

  bool ok = check_operand(what, "C", c, extent(m, n, ldc, stride_c, batch, sizeof(T)));
  if (g.reads_ab()) {
    ok = check_operand(
             what, "A", a,
             extent(g.trans_a ? k : m, g.trans_a ? m : k, lda, stride_a, batch, sizeof(T))) &&
         ok;
    ok = check_operand(
             what, "B", b,
             extent(g.trans_b ? n : k, g.trans_b ? k : n, ldb, stride_b, batch, sizeof(T))) &&
         ok;
  }
  // A bad operand is reported (a finding) and surfaces as an error at the next
  // synchronisation, as a GPU's asynchronous fault would; the call itself succeeds.
  if (!ok) return CUBLAS_STATUS_SUCCESS;
  enqueue(handle->stream, what, [g, a, b, c] { run_gemm(g, a, b, c); });
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace
}  // namespace emu
}  // namespace tandem

namespace emu = tandem::emu;

// ---- Handles ---------------------------------------------------------------------------

cublasStatus_t CUBLASWINAPI cublasCreate_v2(cublasHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasContext();
  return CUBLAS_STATUS_SUCCESS;
}

// cuBLAS documents an implicit cudaDeviceSynchronize here.
cublasStatus_t CUBLASWINAPI cublasDestroy_v2(cublasHandle_t handle) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  emu::synchronize_all();
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  handle->workspace = nullptr;  // back to cuBLAS's own pool, as documented
  handle->workspace_bytes = 0;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace,
                                                  size_t workspace_bytes) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (reinterpret_cast<uintptr_t>(workspace) % 256 != 0) return CUBLAS_STATUS_INVALID_VALUE;
  // Not device memory: reported (a finding), as cuBLAS would fault when it used it.
  emu::check_device_range("cublasSetWorkspace", "workspace", workspace, workspace_bytes);
  handle->workspace = workspace;
  handle->workspace_bytes = workspace_bytes;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  const int base =
      static_cast<int>(mode) & ~static_cast<int>(CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION);
  switch (base) {
    case CUBLAS_DEFAULT_MATH:
    case CUBLAS_TENSOR_OP_MATH:
    case CUBLAS_PEDANTIC_MATH:
    case CUBLAS_TF32_TENSOR_OP_MATH:
    case CUBLAS_FP32_EMULATED_BF16X9_MATH:
    case CUBLAS_FP64_EMULATED_FIXEDPOINT_MATH:
      handle->math = mode;
      return CUBLAS_STATUS_SUCCESS;
    default:
      return CUBLAS_STATUS_INVALID_VALUE;
  }
}

cublasStatus_t CUBLASWINAPI cublasGetProperty(libraryPropertyType type, int* value) {
  if (value == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  switch (type) {
    case MAJOR_VERSION:
      *value = CUBLAS_VER_MAJOR;
      return CUBLAS_STATUS_SUCCESS;
    case MINOR_VERSION:
      *value = CUBLAS_VER_MINOR;
      return CUBLAS_STATUS_SUCCESS;
    case PATCH_LEVEL:
      *value = CUBLAS_VER_PATCH;
      return CUBLAS_STATUS_SUCCESS;
    default:
      return CUBLAS_STATUS_INVALID_VALUE;
  }
}

// ---- Status text -----------------------------------------------------------------------

const char* CUBLASWINAPI cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char* CUBLASWINAPI cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "error detected trying to check the license";
  }
  return "unknown error";
}

// ---- GEMM ------------------------------------------------------------------------------

cublasStatus_t CUBLASWINAPI cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                                           cublasOperation_t transb, int m, int n, int k,
                                           const float* alpha, const float* A, int lda,
                                           const float* B, int ldb, const float* beta, float* C,
                                           int ldc) {
  return emu::gemm("cublasSgemm", handle, transa, transb, m, n, k, alpha, A, lda, 0, B, ldb, 0,
                   beta, C, ldc, 0, 1);
}

cublasStatus_t CUBLASWINAPI cublasDgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                                           cublasOperation_t transb, int m, int n, int k,
                                           const double* alpha, const double* A, int lda,
                                           const double* B, int ldb, const double* beta, double* C,
                                           int ldc) {
  return emu::gemm("cublasDgemm", handle, transa, transb, m, n, k, alpha, A, lda, 0, B, ldb, 0,
                   beta, C, ldc, 0, 1);
}

cublasStatus_t CUBLASWINAPI cublasSgemmStridedBatched(
    cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
    const float* alpha, const float* A, int lda, long long int strideA, const float* B, int ldb,
    long long int strideB, const float* beta, float* C, int ldc, long long int strideC,
    int batchCount) {
  return emu::gemm("cublasSgemmStridedBatched", handle, transa, transb, m, n, k, alpha, A, lda,
                   strideA, B, ldb, strideB, beta, C, ldc, strideC, batchCount);
}

cublasStatus_t CUBLASWINAPI cublasDgemmStridedBatched(
    cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
    const double* alpha, const double* A, int lda, long long int strideA, const double* B, int ldb,
    long long int strideB, const double* beta, double* C, int ldc, long long int strideC,
    int batchCount) {
  return emu::gemm("cublasDgemmStridedBatched", handle, transa, transb, m, n, k, alpha, A, lda,
                   strideA, B, ldb, strideB, beta, C, ldc, strideC, batchCount);
}
