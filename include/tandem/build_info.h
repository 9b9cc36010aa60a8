// How this copy of tandem was built and what it finds at run time: version,
// build type, compiler, CPU threads (OpenMP), the BLAS library and, when the
// CUDA backend was built, the CUDA runtime/driver, cuBLAS and cuDNN versions,
// the visible GPUs and whether the CUDA backend can run here (and why not).
// For `tandem info` and bug reports:
//
//   std::cout << tandem::build_info().to_string();
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace tandem {

struct GpuInfo {
  int index = 0;
  std::string name;
  int compute_major = 0, compute_minor = 0;
  size_t total_memory_bytes = 0;
  int multiprocessors = 0;
};

struct BuildInfo {
  std::string version;      // "0.1.0"
  std::string build_type;   // CMake's build type ("Release", "Debug", ...)
  std::string compiler;     // "GCC 12.2.0"
  int cpu_threads = 0;      // OpenMP's maximum threads for the CPU backend's loops
  std::string blas;         // "OpenBLAS"
  std::string blas_config;  // openblas_get_config(): version, core, threading
  int blas_threads = 0;     // openblas_get_num_threads()
  // oneDNN (float32 GEMM and convolution on the CPU): "2.6.3, ISA avx512_core_bf16".
  std::string onednn;

  bool cuda_built = false;         // the CUDA backend was compiled in
  std::string cuda_architectures;  // CMAKE_CUDA_ARCHITECTURES (cuda_built only)
  // Versions (cuda_built only; "unknown"/"none" when they cannot be read).
  std::string cuda_runtime, cuda_driver, cublas, cudnn, cudnn_built;
  std::vector<GpuInfo> gpus;         // the visible devices
  bool cuda_usable = false;          // CUDA tensors can be created and used here
  std::string cuda_unusable_reason;  // why not (empty when usable)

  // "key: value" lines, one per field (GPUs one line each).
  std::string to_string() const;
};

// Gathers the information (queries the CUDA driver when the backend was
// built; never throws for a missing driver or device, it says so instead).
BuildInfo build_info();

}  // namespace tandem
