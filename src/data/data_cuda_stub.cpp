// CPU-only builds: the data loader's CUDA functions (src/data/data_cuda.h)
// throw, saying CUDA support was not built. The loader checks the device
// before it gets here, so these are a second line of defence.
#include "data/data_cuda.h"
#include "tandem/error.h"

namespace tandem {
namespace data {
namespace detail {
namespace {
[[noreturn]] void not_built(const char* what) {
  TANDEM_FAIL("DataLoader: tandem was built without CUDA support; ", what, " needs a CUDA device");
}
}  // namespace

DeviceCopy upload_async(const Tensor&, const Tensor&, Device, const cuda::Stream&) {
  not_built("copying batches to the device");
}
void wait_on_current_stream(const DeviceCopy&) { not_built("waiting for a copy"); }
void wait_host(const DeviceCopy&) { not_built("waiting for a copy"); }
Tensor device_shuffled_order(uint64_t, int64_t, int64_t, Device) {
  not_built("LoaderMode::DeviceResident");
}
void augment_batch_cuda(const Tensor&, const Tensor&, const Tensor&, int64_t, const Tensor&,
                        const AugmentParams&, uint64_t, int64_t, Tensor*, Tensor*) {
  not_built("LoaderMode::DeviceResident");
}

}  // namespace detail
}  // namespace data
}  // namespace tandem
