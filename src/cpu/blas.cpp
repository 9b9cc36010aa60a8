// CPU GEMM: float32 through oneDNN's dnnl_sgemm, float64 through OpenBLAS's
// cblas_dgemm; row-major, one call per matrix of the batch (element strides;
// stride 0 repeats a matrix).
//
// Why not OpenBLAS for float32: its run-time CPU detection (0.3.21) does not
// know every CPU a virtual machine reports and then falls back to its generic
// "Prescott" SSE3 kernels (seen on this project's Sapphire Rapids VMs: 1024^3
// sgemm 3.5x slower than with its AVX-512 kernels); oneDNN's JIT kernels
// follow the CPU's feature flags. float64 (the tests' references, gradient
// checks) stays on OpenBLAS.
//
// Both libraries thread each call themselves, so batches run one after another, except
// for many small products: those run in parallel over the batch, each call
// below OpenBLAS's own threading threshold (so it stays single-threaded; the
// pthreads build warns and may stall if it starts threads inside an OpenMP loop).
#include <cblas.h>  // a SYSTEM include (CMakeLists.txt): it uses C99 _Complex
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <atomic>
#include <limits>

#include "cpu/cpu_utils.h"

namespace tandem {
namespace cpu {

namespace {

// OpenBLAS uses one thread for m * n * k below 65536 * 4; stay well under it.
constexpr int64_t kSmallGemmWork = 65536;
constexpr int64_t kMinParallelBatch = 4;

CBLAS_TRANSPOSE cblas_op(Transpose t) { return t == Transpose::Yes ? CblasTrans : CblasNoTrans; }

blasint checked_blasint(int64_t v, const char* what) {
  TANDEM_CHECK(v >= 0 && v <= std::numeric_limits<blasint>::max(), "matmul: ", what, " = ", v,
               " does not fit the integer sizes BLAS takes");
  return static_cast<blasint>(v);
}

struct BlasArgs {
  CBLAS_TRANSPOSE ta, tb;
  blasint m, n, k, lda, ldb, ldc;
};

// Returns oneDNN's status (dnnl_success for OpenBLAS, which reports nothing).
int gemm_one(const BlasArgs& g, float alpha, const float* a, const float* b, float beta, float* c) {
  return dnnl_sgemm(g.ta == CblasTrans ? 'T' : 'N', g.tb == CblasTrans ? 'T' : 'N', g.m, g.n, g.k,
                    alpha, a, g.lda, b, g.ldb, beta, c, g.ldc);
}
int gemm_one(const BlasArgs& g, double alpha, const double* a, const double* b, double beta,
             double* c) {
  cblas_dgemm(CblasRowMajor, g.ta, g.tb, g.m, g.n, g.k, alpha, a, g.lda, b, g.ldb, beta, c, g.ldc);
  return dnnl_success;
}

}  // namespace

void gemm(Transpose ta, Transpose tb, const GemmShape& s, double alpha, const Tensor& a,
          const Tensor& b, double beta, Tensor& c) {
  TANDEM_CHECK(a.dtype() == b.dtype() && a.dtype() == c.dtype(),
               "matmul: operands must share a dtype, got ", dtype_name(a.dtype()), ", ",
               dtype_name(b.dtype()), " and ", dtype_name(c.dtype()));
  if (s.batch == 0 || s.m == 0 || s.n == 0) return;
  // Leading dimensions are the stored row lengths: A is [m, k] or (transposed)
  // [k, m]; B is [k, n] or [n, k]. BLAS wants them >= 1 even for empty matrices.
  BlasArgs g{cblas_op(ta),
             cblas_op(tb),
             checked_blasint(s.m, "m"),
             checked_blasint(s.n, "n"),
             checked_blasint(s.k, "k"),
             checked_blasint(std::max<int64_t>(1, ta == Transpose::No ? s.k : s.m), "lda"),
             checked_blasint(std::max<int64_t>(1, tb == Transpose::No ? s.n : s.k), "ldb"),
             checked_blasint(std::max<int64_t>(1, s.n), "ldc")};
  const bool parallel_batch =
      s.batch >= kMinParallelBatch && s.stride_c != 0 && s.m * s.n * s.k <= kSmallGemmWork;
  TANDEM_DISPATCH_FLOATING(a.dtype(), "matmul", [&] {
    const scalar_t* pa = a.data_ptr<scalar_t>();
    const scalar_t* pb = b.data_ptr<scalar_t>();
    scalar_t* pc = c.data_ptr<scalar_t>();
    const auto alpha_t = static_cast<scalar_t>(alpha), beta_t = static_cast<scalar_t>(beta);
    std::atomic<int> status{dnnl_success};
    const auto one = [&](int64_t i) {
      const int st = gemm_one(g, alpha_t, pa + i * s.stride_a, pb + i * s.stride_b, beta_t,
                              pc + i * s.stride_c);
      if (st != dnnl_success) status = st;
    };
    if (parallel_batch) {
      util::parallel_for(s.batch, s.m * s.n * s.k, one);
    } else {
      for (int64_t i = 0; i < s.batch; ++i) one(i);
    }
    // The arguments were checked above: this is out of memory or a oneDNN bug.
    TANDEM_CHECK(status == dnnl_success, "matmul: oneDNN's sgemm failed (status ", status.load(),
                 ") on [", s.m, ", ", s.k, "] x [", s.k, ", ", s.n, "]");
  });
}

}  // namespace cpu
}  // namespace tandem
