// Storage allocation: the host caching allocator (64-byte aligned,
// src/core/host_allocator.cpp), pinned host memory or the CUDA caching allocator.
#include "core/cuda_services.h"
#include "core/host_allocator.h"
#include "tandem/tensor.h"

namespace tandem {

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device, bool pinned) {
  if (device.is_cuda()) {
    TANDEM_CHECK(!pinned, "empty: pinned_memory applies to CPU tensors only");
    return std::make_shared<Storage>(cuda::detail::allocate_device(nbytes, device.index()), nbytes,
                                     device);
  }
  if (nbytes == 0) return std::make_shared<Storage>(nullptr, 0, device, pinned);
  if (pinned) {
    return std::make_shared<Storage>(cuda::detail::allocate_pinned(nbytes), nbytes, device, true);
  }
  return std::make_shared<Storage>(cpu::allocate_host(nbytes), nbytes, device);
}

}  // namespace tandem
