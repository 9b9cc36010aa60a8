// The CUDA side of the data loader (src/data/data_cuda.cu; src/data/data_cuda_stub.cpp
// in CPU-only builds, where each function throws saying CUDA was not built).
#pragma once

#include <cstdint>
#include <memory>

#include "data/augment.h"
#include "tandem/cuda.h"
#include "tandem/tensor.h"

namespace tandem {
namespace data {
namespace detail {

// A host batch being copied to the device on the loader's copy stream.
struct DeviceCopy {
  Tensor host_images, host_labels;  // pinned; kept alive until `done`
  Tensor images, labels;            // on the device
  std::shared_ptr<void> done;       // cudaEvent_t recorded after the copies
};

// Allocates the device tensors (ordered after the work already queued on the
// current stream, which may still use a recycled block) and copies the pinned
// host tensors into them on `copy_stream`, without waiting.
DeviceCopy upload_async(const Tensor& host_images, const Tensor& host_labels, Device device,
                        const cuda::Stream& copy_stream);
// Makes the current stream wait for the copy (no host wait).
void wait_on_current_stream(const DeviceCopy& copy);
// Blocks the host until the copy has finished (before its pinned buffers go).
void wait_host(const DeviceCopy& copy);

// The epoch's order on the device: samples 0..n-1 stably sorted by
// shuffle_key(seed, i, epoch) with Thrust (int64 [n]).
Tensor device_shuffled_order(uint64_t seed, int64_t n, int64_t epoch, Device device);

// out_images[k] = augmented sample order[start + k], out_labels[k] = its label,
// for k < out_images.size(0); one block per sample.
void augment_batch_cuda(const Tensor& images_u8, const Tensor& labels, const Tensor& order,
                        int64_t start, const Tensor& lut, const AugmentParams& params,
                        uint64_t seed, int64_t epoch, Tensor* out_images, Tensor* out_labels);

}  // namespace detail
}  // namespace data
}  // namespace tandem
