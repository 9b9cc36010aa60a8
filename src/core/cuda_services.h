// The CUDA runtime services the core needs, callable from plain C++ (no CUDA
// headers here). Defined in src/cuda/*.cpp when the CUDA backend is built and in
// src/core/cuda_stub.cpp otherwise, where each one throws a tandem::Error
// saying CUDA support was not built. It lives in src/core, like backend.h,
// because the core (Storage, copies) calls it: the core declares, the CUDA
// backend implements.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "tandem/build_info.h"

namespace tandem {
namespace cuda {
namespace detail {

// Device memory from the caching allocator; the deleter returns it to the cache.
// Throws OutOfMemoryError naming the request, bytes in use and cached.
std::shared_ptr<void> allocate_device(size_t nbytes, int device);
// Page-locked host memory (cached too).
std::shared_ptr<void> allocate_pinned(size_t nbytes);

// Copies on the device's current stream. Host -> device from pageable memory
// returns once the source may be reused (it is staged through pinned buffers);
// from pinned memory it is asynchronous, like PyTorch's non_blocking: the
// source must not be overwritten until the stream has reached the copy.
// Device -> host returns when the data has arrived.
void copy_host_to_device(void* dst, const void* src, size_t nbytes, int device, bool src_pinned);
void copy_device_to_host(void* dst, const void* src, size_t nbytes, int device);
void copy_device_to_device(void* dst, int dst_device, const void* src, int src_device,
                           size_t nbytes);

// cuDNN convolution plans built so far (one per shape and mode) and the
// heuristic queries made (src/cuda/cudnn_conv.cpp); zero without CUDA. Lets the
// tests check that repeated calls of one shape reuse the plan.
struct ConvCacheStats {
  uint64_t plans = 0;
  uint64_t heuristic_queries = 0;
};
ConvCacheStats conv_cache_stats();

// Fills the CUDA part of tandem::build_info(): cuda_built, the versions, the
// GPUs, cuda_usable and the reason when not. Never throws.
void fill_build_info(BuildInfo& info);

// Makes `device` current for its lifetime (cudaSetDevice), restoring the previous.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace detail
}  // namespace cuda
}  // namespace tandem
