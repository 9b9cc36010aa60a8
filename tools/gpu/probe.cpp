// tandem_gpu_probe: prints, one "key<TAB>value" per line, the CUDA runtime, driver,
// cuBLAS and cuDNN versions (compiled-against and loaded) and the devices the
// runtime sees. Built by CMake with the CUDA backend (tools/CMakeLists.txt),
// packed into the GPU bundle (tools/gpu/gpu.py bundle), and compiled with nvcc
// by `tools/gpu/gpu.py check` before it builds anything. No tandem code: it must run
// even when libtandem.so cannot load.
#include <cublas_api.h>
#include <cuda_runtime.h>

#include <cstdio>
#ifdef PROBE_CUDNN
#include <cudnn.h>
#endif
int main() {
  int v = 0;
  std::printf("cudart_header\t%d\n", CUDART_VERSION);
  if (cudaRuntimeGetVersion(&v) == cudaSuccess) std::printf("cudart_runtime\t%d\n", v);
  v = 0;
  if (cudaDriverGetVersion(&v) == cudaSuccess) std::printf("cuda_driver_api\t%d\n", v);
  std::printf("cublas_header\t%d\n", CUBLAS_VERSION);
  int ma = 0, mi = 0, pa = 0;
  if (cublasGetProperty(MAJOR_VERSION, &ma) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(MINOR_VERSION, &mi) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(PATCH_LEVEL, &pa) == CUBLAS_STATUS_SUCCESS)
    std::printf("cublas_runtime\t%d\n", ma * 10000 + mi * 100 + pa);
#ifdef PROBE_CUDNN
  std::printf("cudnn_header\t%d\n", CUDNN_VERSION);
  std::printf("cudnn_runtime\t%zu\n", cudnnGetVersion());
  std::printf("cudnn_cudart\t%zu\n", cudnnGetCudartVersion());
#endif
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    std::printf("runtime_devices\t0\nruntime_error\t%s: %s\n", cudaGetErrorName(e),
                cudaGetErrorString(e));
    return 0;
  }
  std::printf("runtime_devices\t%d\n", n);
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    std::printf("dev%d_name\t%s\ndev%d_cc\t%d.%d\ndev%d_sms\t%d\ndev%d_mem_bytes\t%zu\n", i, p.name,
                i, p.major, p.minor, i, p.multiProcessorCount, i, p.totalGlobalMem);
    std::printf("dev%d_l2_bytes\t%d\ndev%d_bus_bits\t%d\n", i, p.l2CacheSize, i, p.memoryBusWidth);
  }
  return 0;
}
