// Tensor factories and host-buffer conversions (arange is in
// src/ops/tensor_methods.cpp).
#include <cstring>

#include "core/checks.h"
#include "core/tensor_internal.h"
#include "tandem/tensor.h"

namespace tandem {

Tensor empty(const Shape& shape, const TensorOptions& options) {
  for (int64_t d : shape) {
    TANDEM_CHECK(d >= 0, "empty: negative dimension in shape ", shape_str(shape));
  }
  const size_t nbytes = static_cast<size_t>(shape_numel(shape)) * element_size(options.dtype());
  auto storage = Storage::allocate(nbytes, options.device(), options.pinned_memory());
  Tensor t = detail::make_tensor(std::move(storage), 0, shape, options.dtype());
  if (options.requires_grad()) t.set_requires_grad(true);
  return t;
}

Tensor full(const Shape& shape, double value, const TensorOptions& options) {
  Tensor t = empty(shape, options.requires_grad(false));
  t.fill_(value);
  if (options.requires_grad()) t.set_requires_grad(true);
  return t;
}
Tensor zeros(const Shape& shape, const TensorOptions& options) { return full(shape, 0.0, options); }
Tensor ones(const Shape& shape, const TensorOptions& options) { return full(shape, 1.0, options); }

namespace {
TensorOptions options_of(const Tensor& t) {
  detail::check_defined("empty_like", t);
  return TensorOptions(t.dtype()).device(t.device());
}
}  // namespace

Tensor empty_like(const Tensor& t) { return empty(t.sizes(), options_of(t)); }
Tensor zeros_like(const Tensor& t) { return zeros(t.sizes(), options_of(t)); }
Tensor ones_like(const Tensor& t) { return ones(t.sizes(), options_of(t)); }
Tensor full_like(const Tensor& t, double value) { return full(t.sizes(), value, options_of(t)); }

Tensor from_blob(const void* data, const Shape& shape, DType src_dtype,
                 const TensorOptions& options) {
  Tensor host = empty(shape, TensorOptions(src_dtype).pinned_memory(options.pinned_memory() &&
                                                                    options.device().is_cpu()));
  if (host.nbytes() > 0) {
    TANDEM_CHECK(data != nullptr, "from_blob: null data pointer for ", host.numel(), " elements");
    std::memcpy(host.raw_data(), data, host.nbytes());
  }
  Tensor t = host.to(options.device(), options.dtype());
  if (options.requires_grad()) t.set_requires_grad(true);
  return t;
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, const TensorOptions& options) {
  TANDEM_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
               "from_vector: ", values.size(), " values do not fill shape ", shape_str(shape));
  return from_blob(values.data(), shape, dtype_of<T>::value, options);
}

template <typename T>
std::vector<T> to_vector(const Tensor& t) {
  detail::check_defined("to_vector", t);
  TANDEM_CHECK(t.dtype() == dtype_of<T>::value, "to_vector: tensor has dtype ",
               dtype_name(t.dtype()), " but ", dtype_name(dtype_of<T>::value), " was requested");
  const Tensor host = t.to(Device(kCPU));
  std::vector<T> out(static_cast<size_t>(t.numel()));
  if (!out.empty()) std::memcpy(out.data(), host.raw_data(), host.nbytes());
  return out;
}

#define TANDEM_INSTANTIATE_(T)                                                               \
  template Tensor from_vector<T>(const std::vector<T>&, const Shape&, const TensorOptions&); \
  template std::vector<T> to_vector<T>(const Tensor&);
TANDEM_INSTANTIATE_(float)
TANDEM_INSTANTIATE_(double)
TANDEM_INSTANTIATE_(int32_t)
TANDEM_INSTANTIATE_(int64_t)
TANDEM_INSTANTIATE_(uint8_t)
#undef TANDEM_INSTANTIATE_

}  // namespace tandem
