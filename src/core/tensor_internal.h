// Internal helpers for building tensors and moving bytes between devices.
#pragma once

#include <memory>

#include "tandem/tensor.h"

namespace tandem {
namespace detail {

Tensor make_tensor(std::shared_ptr<Storage> storage, int64_t offset, Shape sizes, DType dtype);
// A tensor with t's storage, offset and dtype but another shape (same numel).
Tensor alias_with_shape(const Tensor& t, Shape sizes);
// memcpy / cudaMemcpyAsync by the two devices' types. A pinned host source
// goes straight to the device (asynchronously); a pageable one is staged.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes,
                bool src_pinned = false);

}  // namespace detail
}  // namespace tandem
