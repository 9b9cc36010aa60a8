// The Tensor methods that compute or record autograd (declared in
// include/tandem/tensor.h): conversions and copies (to, clone, copy_, item),
// fill_, the views recorded by autograd (view, flatten, squeeze, unsqueeze;
// slicing is in slicing.cpp), permute/transpose, and the arange factory. They
// check, allocate and dispatch like every op; src/core keeps the metadata
// and the byte copies (src/core/tensor.cpp), so that the core looks down only.
#include <algorithm>
#include <cmath>
#include <utility>

#include "autograd/record.h"
#include "core/tensor_internal.h"
#include "ops/dispatch.h"
#include "tandem/ops.h"
#include "tandem/tensor.h"

namespace tandem {

using detail::alias_with_shape;

namespace {
// Records `out`, a view of `self` with another shape, in the graph.
Tensor view_result(const Tensor& self, Tensor out, const char* name) {
  if (autograd::should_record(self)) {
    autograd::record(out, name, {self}, {},
                     [shape = self.sizes()](const Tensor& g, const std::vector<Tensor>&) {
                       return std::vector<Tensor>{g.view(shape)};
                     });
  }
  return out;
}
}  // namespace

double Tensor::item_double() const {
  TANDEM_CHECK(numel() == 1, "item: the tensor has ", numel(), " elements, expected 1");
  const Tensor host = to(Device(kCPU), kFloat64);
  return *static_cast<const double*>(host.raw_data());
}

int64_t Tensor::item_int64() const {
  TANDEM_CHECK(numel() == 1, "item: the tensor has ", numel(), " elements, expected 1");
  const Tensor host = to(Device(kCPU), kInt64);
  return *static_cast<const int64_t*>(host.raw_data());
}

Tensor Tensor::to(Device target) const {
  const TensorImpl& impl = checked_impl();
  if (target == device()) return *this;
  Tensor out = empty(sizes(), TensorOptions(impl.dtype).device(target));
  detail::copy_bytes(out.raw_data(), target, raw_data(), device(), nbytes(), is_pinned());
  if (autograd::should_record(*this)) {
    autograd::record(out, "to", {*this}, {},
                     [source = device()](const Tensor& g, const std::vector<Tensor>&) {
                       return std::vector<Tensor>{g.to(source)};
                     });
  }
  return out;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = empty(sizes(), TensorOptions(target).device(device()));
  if (numel() > 0) TANDEM_BACKEND_CALL(device(), copy_convert, *this, out);
  if (is_floating(target) && autograd::should_record(*this)) {
    autograd::record(out, "to", {*this}, {},
                     [source = dtype()](const Tensor& g, const std::vector<Tensor>&) {
                       return std::vector<Tensor>{g.to(source)};
                     });
  }
  return out;
}

Tensor Tensor::to(Device target_device, DType target_dtype) const {
  // Convert where the data is smaller, so fewer bytes cross the bus.
  if (tandem::element_size(target_dtype) < element_size())
    return to(target_dtype).to(target_device);
  return to(target_device).to(target_dtype);
}

Tensor Tensor::clone() const {
  Tensor out = empty(sizes(), TensorOptions(dtype()).device(device()));
  detail::copy_bytes(out.raw_data(), device(), raw_data(), device(), nbytes());
  if (autograd::should_record(*this)) {
    autograd::record(out, "clone", {*this}, {}, [](const Tensor& g, const std::vector<Tensor>&) {
      return std::vector<Tensor>{g};
    });
  }
  return out;
}

Tensor& Tensor::copy_(const Tensor& src) {
  detail::check_defined("copy_", *this, "destination");
  detail::check_defined("copy_", src, "source");
  TANDEM_CHECK(src.numel() == numel() || src.numel() == 1, "copy_: source ", detail::describe(src),
               " does not match destination ", detail::describe(*this));
  autograd::prepare_inplace("copy_", *this, src);
  if (is_same(src) || numel() == 0) return *this;
  Tensor converted = src.to(device(), dtype());
  if (detail::overlaps(*this, converted)) {
    // The same bytes: nothing to do. Otherwise copy through a temporary:
    // memcpy and cudaMemcpyAsync are undefined on overlapping ranges.
    if (converted.impl()->offset == impl()->offset && converted.numel() == numel()) return *this;
    converted = converted.detach().clone();
  }
  if (src.numel() == 1 && numel() != 1) {
    // Broadcast one value on the destination's device without a host round
    // trip: minimum(v, v) == v exactly, for every dtype and for NaN.
    const Tensor v = converted.view({});
    TANDEM_BACKEND_CALL(device(), binary, BinaryOp::Minimum, v, v, *this, 1.0);
    return *this;
  }
  detail::copy_bytes(raw_data(), device(), converted.raw_data(), device(), nbytes());
  return *this;
}

Tensor& Tensor::fill_(double value) {
  checked_impl();
  autograd::prepare_inplace("fill_", *this);
  if (numel() > 0) TANDEM_BACKEND_CALL(device(), fill, *this, value);
  return *this;
}

Tensor Tensor::view(const Shape& shape) const {
  const int64_t n = numel();
  Shape out = shape;
  int64_t known = 1, infer = -1;
  bool ok = true;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      ok = ok && infer < 0;
      infer = static_cast<int64_t>(i);
    } else {
      ok = ok && out[i] >= 0;
      known *= out[i];
    }
  }
  if (ok && infer >= 0) {
    ok = known != 0 && n % known == 0;
    if (ok) out[static_cast<size_t>(infer)] = n / known;
  }
  TANDEM_CHECK(ok && shape_numel(out) == n, "view: shape ", shape_str(shape),
               " is invalid for a tensor of ", n, " elements");
  return view_result(*this, alias_with_shape(*this, out), "view");
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  const int64_t nd = dim();
  if (nd == 0) return view({1});
  const int64_t s = detail::normalize_dim("flatten", start_dim, nd);
  const int64_t e = detail::normalize_dim("flatten", end_dim, nd);
  TANDEM_CHECK(s <= e, "flatten: start_dim ", start_dim, " comes after end_dim ", end_dim);
  Shape out(sizes().begin(), sizes().begin() + s);
  out.push_back(detail::prod(sizes(), s, e + 1));
  out.insert(out.end(), sizes().begin() + e + 1, sizes().end());
  return view_result(*this, alias_with_shape(*this, out), "flatten");
}

Tensor Tensor::squeeze() const {
  Shape out;
  for (int64_t d : sizes())
    if (d != 1) out.push_back(d);
  return view_result(*this, alias_with_shape(*this, out), "squeeze");
}

Tensor Tensor::squeeze(int64_t d) const {
  const int64_t nd = dim();
  if (nd == 0) return *this;
  const int64_t k = detail::normalize_dim("squeeze", d, nd);
  if (sizes()[static_cast<size_t>(k)] != 1) return *this;
  Shape out = sizes();
  out.erase(out.begin() + k);
  return view_result(*this, alias_with_shape(*this, out), "squeeze");
}

Tensor Tensor::unsqueeze(int64_t d) const {
  const int64_t k = detail::normalize_dim("unsqueeze", d, dim() + 1);
  Shape out = sizes();
  out.insert(out.begin() + k, 1);
  return view_result(*this, alias_with_shape(*this, out), "unsqueeze");
}

Tensor Tensor::permute(const Shape& dims) const {
  const int64_t nd = dim();
  TANDEM_CHECK(static_cast<int64_t>(dims.size()) == nd, "permute: dims ", shape_str(dims),
               " do not match a tensor of ", nd, " dims ", shape_str(sizes()));
  Shape perm(dims.size());
  std::vector<bool> seen(dims.size(), false);
  Shape out(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    TANDEM_CHECK(dims[i] >= -nd && dims[i] < nd, "permute: dim ", dims[i], " in ", shape_str(dims),
                 " is out of range for a tensor of ", nd, " dims");
    const int64_t k = dims[i] < 0 ? dims[i] + nd : dims[i];
    TANDEM_CHECK(!seen[static_cast<size_t>(k)], "permute: dim ", k, " appears twice in ",
                 shape_str(dims));
    seen[static_cast<size_t>(k)] = true;
    perm[i] = k;
    out[i] = sizes()[static_cast<size_t>(k)];
  }
  Tensor result = empty(out, TensorOptions(dtype()).device(device()));
  if (numel() > 0) TANDEM_BACKEND_CALL(device(), permute, *this, result, perm);
  if (autograd::should_record(*this)) {
    Shape inverse(perm.size());
    for (size_t i = 0; i < perm.size(); ++i)
      inverse[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
    autograd::record(result, "permute", {*this}, {},
                     [inverse](const Tensor& g, const std::vector<Tensor>&) {
                       return std::vector<Tensor>{g.permute(inverse)};
                     });
  }
  return result;
}

Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  const int64_t nd = dim();
  Shape perm(static_cast<size_t>(nd));
  for (int64_t i = 0; i < nd; ++i) perm[static_cast<size_t>(i)] = i;
  std::swap(perm[static_cast<size_t>(detail::normalize_dim("transpose", dim0, nd))],
            perm[static_cast<size_t>(detail::normalize_dim("transpose", dim1, nd))]);
  return permute(perm);
}

Tensor Tensor::t() const {
  TANDEM_CHECK(dim() <= 2, "t: expected a tensor of at most 2 dims, got ", shape_str(sizes()));
  return dim() < 2 ? *this : transpose(0, 1);
}

Tensor arange(double end, const TensorOptions& options) { return arange(0.0, end, 1.0, options); }

Tensor arange(double start, double end, double step, const TensorOptions& options) {
  TANDEM_CHECK(step != 0.0 && std::isfinite(start) && std::isfinite(end) && std::isfinite(step),
               "arange: need finite start/end and a non-zero step, got start=", start, " end=", end,
               " step=", step);
  TANDEM_CHECK((end - start) * step >= 0, "arange: step ", step, " does not go from ", start,
               " towards ", end);
  const auto n = static_cast<int64_t>(std::ceil((end - start) / step));
  Tensor t = empty({n}, options);
  if (n > 0) TANDEM_BACKEND_CALL(t.device(), arange, t, start, step);
  return t;
}

}  // namespace tandem
