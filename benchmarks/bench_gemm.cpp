// GEMM benchmarks: square C = A @ B through tandem::matmul on the CPU (OpenBLAS;
// 512..2048) and CUDA (cuBLAS; 512..4096), float32 and float64, reporting a
// FLOPS counter (2 n^3 per call). In a CUDA build the same products are also
// run by calling cuBLAS directly on the same device buffers (cublas_*), the
// reference for the target "tandem's GEMM within 5% of direct cuBLAS".
//
// TF32: tandem keeps full float32 precision unless set_allow_tf32(true), and
// cuBLAS's default math mode does the same, so matmul_f32 pairs with
// cublas_sgemm; matmul_tf32 (allow_tf32 on) pairs with cublas_sgemm_tf32.
//
// Names: <case>/<device>/<n>/{real_time|manual_time}.
#include <string>

#include "bench_util.h"

#if TANDEM_WITH_CUDA
#include <cublas_v2.h>
#endif

namespace {

namespace tb = tandem_bench;
using tandem::Device;
using tandem::Tensor;

void set_flops(benchmark::State& state, int64_t n) {
  const double flops =
      2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  state.counters["FLOPS"] =
      benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

// Random n x n operands (not structured bindings: C++17 lambdas cannot capture those).
struct Operands {
  Tensor a, b;
};
Operands random_operands(int64_t n, tandem::DType dtype, Device d) {
  tandem::Generator gen(99);
  const auto opts = tandem::dtype(dtype).device(d);
  Operands ops;
  ops.a = tandem::randn({n, n}, opts, &gen);
  ops.b = tandem::randn({n, n}, opts, &gen);
  return ops;
}

// Restores tandem's TF32 switch when a case ends, even by exception.
class Tf32Scope {
 public:
  explicit Tf32Scope(bool allow) : saved_(tandem::cuda::allow_tf32()) {
    tandem::cuda::set_allow_tf32(allow);
  }
  ~Tf32Scope() { tandem::cuda::set_allow_tf32(saved_); }
  Tf32Scope(const Tf32Scope&) = delete;
  Tf32Scope& operator=(const Tf32Scope&) = delete;

 private:
  bool saved_;
};

void bm_matmul(benchmark::State& state, Device device, tandem::DType dtype, bool tf32) {
  tb::guarded(state, [&] {
    if (device.is_cuda() && !tb::require_cuda(state)) return;
    const int64_t n = state.range(0);
    const Operands ops = random_operands(n, dtype, device);
    const Tensor& a = ops.a;
    const Tensor& b = ops.b;
    Tensor c;
    if (device.is_cuda()) {
      Tf32Scope scope(tf32);
      tb::run_on(state, device, [&] { c = tandem::matmul(a, b); });
    } else {
      tb::run_on(state, device, [&] { c = tandem::matmul(a, b); });
    }
    set_flops(state, n);
  });
}

#if TANDEM_WITH_CUDA

void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    TANDEM_FAIL("benchmark: ", what, " failed with cuBLAS status ", static_cast<int>(status));
  }
}

class CublasHandle {
 public:
  CublasHandle() { check_cublas(cublasCreate(&handle_), "cublasCreate"); }
  ~CublasHandle() { cublasDestroy(handle_); }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  cublasHandle_t get() const { return handle_; }

 private:
  cublasHandle_t handle_ = nullptr;
};

enum class Precision { Float32, Float32Tf32, Float64 };

// Row-major C = A @ B is column-major C^T = B^T @ A^T: pass B first.
void bm_cublas(benchmark::State& state, Precision precision) {
  tb::guarded(state, [&] {
    if (!tb::require_cuda(state)) return;
    const int64_t n64 = state.range(0);
    const int n = static_cast<int>(n64);
    const tandem::DType dtype =
        precision == Precision::Float64 ? tandem::kFloat64 : tandem::kFloat32;
    const Operands ops = random_operands(n64, dtype, tb::cuda_device());
    const Tensor& a = ops.a;
    const Tensor& b = ops.b;
    Tensor c = tandem::empty({n64, n64}, tandem::dtype(dtype).device(tb::cuda_device()));

    CublasHandle handle;
    check_cublas(cublasSetStream(handle.get(), tb::current_stream()), "cublasSetStream");
    check_cublas(cublasSetMathMode(handle.get(), precision == Precision::Float32Tf32
                                                     ? CUBLAS_TF32_TENSOR_OP_MATH
                                                     : CUBLAS_DEFAULT_MATH),
                 "cublasSetMathMode");
    if (precision == Precision::Float64) {
      const double alpha = 1.0, beta = 0.0;
      const double* pa = a.data_ptr<double>();
      const double* pb = b.data_ptr<double>();
      double* pc = c.data_ptr<double>();
      tb::run_on(state, tb::cuda_device(), [&] {
        check_cublas(cublasDgemm(handle.get(), CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, pb, n, pa,
                                 n, &beta, pc, n),
                     "cublasDgemm");
      });
    } else {
      const float alpha = 1.0f, beta = 0.0f;
      const float* pa = a.data_ptr<float>();
      const float* pb = b.data_ptr<float>();
      float* pc = c.data_ptr<float>();
      tb::run_on(state, tb::cuda_device(), [&] {
        check_cublas(cublasSgemm(handle.get(), CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, pb, n, pa,
                                 n, &beta, pc, n),
                     "cublasSgemm");
      });
    }
    set_flops(state, n64);
  });
}

#endif  // TANDEM_WITH_CUDA

void register_all() {
  const Device cpu = tb::cpu_device();
  for (auto [name, dtype] :
       {std::pair<const char*, tandem::DType>{"matmul_f32", tandem::kFloat32},
        std::pair<const char*, tandem::DType>{"matmul_f64", tandem::kFloat64}}) {
    benchmark::RegisterBenchmark(
        (std::string(name) + "/cpu").c_str(),
        [cpu, dt = dtype](benchmark::State& state) { bm_matmul(state, cpu, dt, false); })
        ->RangeMultiplier(2)
        ->Range(512, 2048)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
#if TANDEM_WITH_CUDA
  const Device gpu = tb::cuda_device();
  struct CudaCase {
    const char* name;
    tandem::DType dtype;
    bool tf32;
  };
  for (const CudaCase& cc : {CudaCase{"matmul_f32", tandem::kFloat32, false},
                             CudaCase{"matmul_tf32", tandem::kFloat32, true},
                             CudaCase{"matmul_f64", tandem::kFloat64, false}}) {
    benchmark::RegisterBenchmark(
        (std::string(cc.name) + "/cuda").c_str(),
        [gpu, cc](benchmark::State& state) { bm_matmul(state, gpu, cc.dtype, cc.tf32); })
        ->RangeMultiplier(2)
        ->Range(512, 4096)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
  for (auto [name, precision] :
       {std::pair<const char*, Precision>{"cublas_sgemm", Precision::Float32},
        std::pair<const char*, Precision>{"cublas_sgemm_tf32", Precision::Float32Tf32},
        std::pair<const char*, Precision>{"cublas_dgemm", Precision::Float64}}) {
    benchmark::RegisterBenchmark((std::string(name) + "/cuda").c_str(),
                                 [p = precision](benchmark::State& state) { bm_cublas(state, p); })
        ->RangeMultiplier(2)
        ->Range(512, 4096)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
#endif
}

}  // namespace

int main(int argc, char** argv) { return tandem_bench::bench_main(argc, argv, register_all); }
