// Tensor: metadata queries, raw storage access, and the byte copies between
// devices that the Tensor methods (src/ops/tensor_methods.cpp) build on.
// Nothing here computes or records autograd: that is the ops' job.
#include "tandem/tensor.h"

#include <cstring>

#include "core/checks.h"
#include "core/cuda_services.h"
#include "core/tensor_internal.h"

namespace tandem {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

namespace detail {

Tensor make_tensor(std::shared_ptr<Storage> storage, int64_t offset, Shape sizes, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->offset = offset;
  impl->sizes = std::move(sizes);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor alias_with_shape(const Tensor& t, Shape sizes) {
  const TensorImpl& impl = *t.impl();
  return make_tensor(impl.storage, impl.offset, std::move(sizes), impl.dtype);
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes,
                bool src_pinned) {
  if (nbytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memmove(dst, src, nbytes);  // copy_ never overlaps them; memmove costs nothing
  } else if (dst_device.is_cuda() && src_device.is_cpu()) {
    cuda::detail::copy_host_to_device(dst, src, nbytes, dst_device.index(), src_pinned);
  } else if (dst_device.is_cpu() && src_device.is_cuda()) {
    cuda::detail::copy_device_to_host(dst, src, nbytes, src_device.index());
  } else {
    cuda::detail::copy_device_to_device(dst, dst_device.index(), src, src_device.index(), nbytes);
  }
}

}  // namespace detail

const TensorImpl& Tensor::checked_impl() const {
  TANDEM_CHECK(impl_ != nullptr, "Tensor: the tensor is undefined (default-constructed)");
  return *impl_;
}

const Shape& Tensor::sizes() const { return checked_impl().sizes; }

int64_t Tensor::size(int64_t d) const {
  const int64_t nd = dim();
  TANDEM_CHECK(nd > 0, "size: a 0-dim tensor has no dims");
  return sizes()[static_cast<size_t>(detail::normalize_dim("size", d, nd))];
}

int64_t Tensor::numel() const { return shape_numel(sizes()); }
DType Tensor::dtype() const { return checked_impl().dtype; }
Device Tensor::device() const { return checked_impl().storage->device(); }
bool Tensor::is_pinned() const { return checked_impl().storage->pinned(); }

void* Tensor::raw_data() const {
  const TensorImpl& impl = checked_impl();
  char* base = static_cast<char*>(impl.storage->data());
  if (base == nullptr) return nullptr;
  return base + impl.offset * static_cast<int64_t>(tandem::element_size(impl.dtype));
}

void Tensor::check_dtype_for_access(DType requested) const {
  TANDEM_CHECK(dtype() == requested, "data_ptr: tensor has dtype ", dtype_name(dtype()), " but ",
               dtype_name(requested), " was requested");
}

}  // namespace tandem
