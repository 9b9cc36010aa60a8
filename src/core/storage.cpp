// Storage allocation: 64-byte aligned host memory, pinned host memory or the
// CUDA caching allocator.
#include <cstdlib>

#include "cuda/runtime.h"
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
  constexpr size_t kAlign = 64;
  const size_t rounded = (nbytes + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, rounded);
  if (p == nullptr) {
    throw OutOfMemoryError(
        detail::str_cat("cpu: out of memory allocating ", nbytes, " bytes of host memory"),
        __FILE__, __LINE__);
  }
  return std::make_shared<Storage>(std::shared_ptr<void>(p, [](void* q) { std::free(q); }), nbytes,
                                   device);
}

}  // namespace tandem
