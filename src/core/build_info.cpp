// tandem::build_info(): the compile-time configuration (CMake passes the
// build type and CUDA architectures as definitions to this file), OpenMP and
// OpenBLAS at run time, and the CUDA part from cuda::detail::fill_build_info
// (src/cuda/runtime.cpp, or src/core/cuda_stub.cpp in a CPU-only build).
#include "tandem/build_info.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <sstream>

#include "core/cuda_services.h"
#include "tandem/config.h"

// OpenBLAS's own queries. Declared here rather than taken from cblas.h, which
// on Debian is an alternatives link that may belong to another BLAS; the
// library is linked against OpenBLAS (BLA_VENDOR=OpenBLAS), which has them.
extern "C" {
char* openblas_get_config(void);
int openblas_get_num_threads(void);
}

#ifndef TANDEM_BUILD_TYPE
#define TANDEM_BUILD_TYPE "unknown"
#endif
#ifndef TANDEM_CUDA_ARCHITECTURES
#define TANDEM_CUDA_ARCHITECTURES ""
#endif

namespace tandem {

namespace {

std::string onednn_description() {
  const dnnl_version_t* v = dnnl_version();
  std::ostringstream os;
  os << v->major << "." << v->minor << "." << v->patch << ", ISA ";
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41:
      os << "sse41";
      break;
    case dnnl_cpu_isa_avx:
      os << "avx";
      break;
    case dnnl_cpu_isa_avx2:
      os << "avx2";
      break;
    case dnnl_cpu_isa_avx2_vnni:
      os << "avx2_vnni";
      break;
    case dnnl_cpu_isa_avx512_core:
      os << "avx512_core";
      break;
    case dnnl_cpu_isa_avx512_core_vnni:
      os << "avx512_core_vnni";
      break;
    case dnnl_cpu_isa_avx512_core_bf16:
      os << "avx512_core_bf16";
      break;
    case dnnl_cpu_isa_avx512_core_amx:
      os << "avx512_core_amx";
      break;
    default:
      os << "other";
      break;
  }
  return os.str();
}

std::string compiler_name() {
  std::ostringstream os;
#if defined(__clang__)
  os << "Clang " << __clang_major__ << "." << __clang_minor__ << "." << __clang_patchlevel__;
#elif defined(__GNUC__)
  os << "GCC " << __GNUC__ << "." << __GNUC_MINOR__ << "." << __GNUC_PATCHLEVEL__;
#else
  os << "unknown compiler";
#endif
  return os.str();
}

}  // namespace

BuildInfo build_info() {
  BuildInfo info;
  info.version = TANDEM_VERSION;
  info.build_type = TANDEM_BUILD_TYPE;
  info.compiler = compiler_name();
  info.cpu_threads = omp_get_max_threads();
  info.blas = "OpenBLAS";
  const char* config = openblas_get_config();
  info.blas_config = config != nullptr ? config : "unknown";
  info.blas_threads = openblas_get_num_threads();
  info.onednn = onednn_description();
  info.cuda_architectures = TANDEM_CUDA_ARCHITECTURES;
  cuda::detail::fill_build_info(info);
  return info;
}

std::string BuildInfo::to_string() const {
  std::ostringstream os;
  os << "tandem:             " << version << " (" << build_type << ", " << compiler << ")\n";
  os << "CPU threads:        " << cpu_threads << " (OpenMP)\n";
  os << "BLAS (float64):     " << blas << " (" << blas_config << "), " << blas_threads
     << " thread(s)\n";
  os << "oneDNN:             " << onednn << " (float32 GEMM, convolution)\n";
  os << "CUDA backend built: " << (cuda_built ? "yes" : "no");
  if (cuda_built && !cuda_architectures.empty())
    os << " (architectures " << cuda_architectures << ")";
  os << "\n";
  if (cuda_built) {
    os << "CUDA runtime:       " << cuda_runtime << "\n";
    os << "CUDA driver:        " << cuda_driver << "\n";
    os << "cuBLAS:             " << cublas << "\n";
    os << "cuDNN:              " << cudnn << " (built against " << cudnn_built << ")\n";
    for (const GpuInfo& g : gpus) {
      os << "GPU " << g.index << ":              " << g.name << ", compute capability "
         << g.compute_major << "." << g.compute_minor << ", "
         << g.total_memory_bytes / (1024 * 1024) << " MiB, " << g.multiprocessors << " SMs\n";
    }
  }
  os << "CUDA usable:        " << (cuda_usable ? std::string("yes") : "no: " + cuda_unusable_reason)
     << "\n";
  return os.str();
}

}  // namespace tandem
