// Tensor: a dense, contiguous, row-major array on the CPU or a CUDA device.
// Storage is shared: reshape/view/flatten/squeeze/unsqueeze and the slicing
// forms whose elements are one dense range (see "Slicing" below) return
// tensors that alias the same memory; permute/transpose and the other slicing
// forms copy.
// Host <-> device copies happen only in to(), item(), copy_() across devices and
// printing.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <type_traits>
#include <vector>

#include "tandem/device.h"
#include "tandem/dtype.h"
#include "tandem/error.h"
#include "tandem/op_list.h"

namespace tandem {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[64, 3072]"
int64_t shape_numel(const Shape& s);

class Generator;
namespace autograd {
class Node;
struct AutogradMeta;
}  // namespace autograd

// Options in libtorch's style: zeros({2, 3}, dtype(kFloat64).device(kCUDA)).
struct TensorOptions {
  TensorOptions() = default;
  TensorOptions(DType t) : dtype_(t) {}        // NOLINT(google-explicit-constructor)
  TensorOptions(Device d) : device_(d) {}      // NOLINT(google-explicit-constructor)
  TensorOptions(DeviceType d) : device_(d) {}  // NOLINT(google-explicit-constructor)

  TensorOptions dtype(DType t) const {
    TensorOptions o = *this;
    o.dtype_ = t;
    return o;
  }
  TensorOptions device(Device d) const {
    TensorOptions o = *this;
    o.device_ = d;
    return o;
  }
  TensorOptions device(DeviceType t, int index) const { return device(Device(t, index)); }
  // Page-locked host memory (CPU tensors only). to(kCUDA) from a pinned tensor
  // is asynchronous (like PyTorch's non_blocking): do not overwrite the source
  // before cuda::synchronize() or a later copy back to the host.
  TensorOptions pinned_memory(bool pinned) const {
    TensorOptions o = *this;
    o.pinned_ = pinned;
    return o;
  }

  // The new tensor is a leaf that requires grad (floating dtypes only).
  TensorOptions requires_grad(bool requires) const {
    TensorOptions o = *this;
    o.requires_grad_ = requires;
    return o;
  }

  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool pinned_memory() const { return pinned_; }
  bool requires_grad() const { return requires_grad_; }

 private:
  DType dtype_ = kFloat32;
  Device device_ = Device(kCPU);
  bool pinned_ = false;
  bool requires_grad_ = false;
};

inline TensorOptions dtype(DType t) { return TensorOptions().dtype(t); }
inline TensorOptions device(Device d) { return TensorOptions().device(d); }
inline TensorOptions requires_grad(bool requires = true) {
  return TensorOptions().requires_grad(requires);
}

// A block of memory on one device; freed (or returned to a cache) when the last
// tensor that uses it goes away.
class Storage {
 public:
  Storage(std::shared_ptr<void> data, size_t nbytes, Device device, bool pinned = false)
      : data_(std::move(data)), nbytes_(nbytes), device_(device), pinned_(pinned) {}
  void* data() const { return data_.get(); }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  bool pinned() const { return pinned_; }
  // Bumped by every in-place write; autograd uses it to detect tensors that
  // were modified after being saved for backward.
  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

  // Allocates nbytes on `device` (CPU: 64-byte aligned; CUDA: caching allocator).
  static std::shared_ptr<Storage> allocate(size_t nbytes, Device device, bool pinned = false);

 private:
  std::shared_ptr<void> data_;
  size_t nbytes_;
  Device device_;
  bool pinned_;
  uint64_t version_ = 0;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape sizes;
  DType dtype = kFloat32;
  // Autograd state (include/tandem/autograd.h); null until the tensor is part
  // of a graph.
  std::shared_ptr<autograd::AutogradMeta> autograd;
};

// libtorch's torch::indexing, for Tensor::index: x.index({Slice(), 0,
// Slice(2, 30), Ellipsis, None}) is Python's x[:, 0, 2:30, ..., None].
namespace indexing {

// start:stop:step. An unset start or stop is the dim's start or end; negative
// ones count from the end, then both are clamped to the dim (Python's rule);
// step >= 1 (default 1).
class Slice {
 public:
  Slice(std::optional<int64_t> start = std::nullopt,  // NOLINT(google-explicit-constructor)
        std::optional<int64_t> stop = std::nullopt, std::optional<int64_t> step = std::nullopt)
      : start_(start), stop_(stop), step_(step.value_or(1)) {}
  std::optional<int64_t> start() const { return start_; }
  std::optional<int64_t> stop() const { return stop_; }
  int64_t step() const { return step_; }

 private:
  std::optional<int64_t> start_, stop_;
  int64_t step_;
};

struct EllipsisIndexType {};
constexpr EllipsisIndexType Ellipsis{};        // as many full dims as the other indices leave
constexpr std::nullopt_t None = std::nullopt;  // a new dim of size 1

// One entry of Tensor::index: an integer (selects, dropping the dim), a
// Slice, Ellipsis or None.
class TensorIndex {
 public:
  TensorIndex(std::nullopt_t) : kind_(Kind::NewDim) {}      // NOLINT(google-explicit-constructor)
  TensorIndex(EllipsisIndexType) : kind_(Kind::AllDims) {}  // NOLINT(google-explicit-constructor)
  TensorIndex(int64_t i) : kind_(Kind::Integer), integer_(i) {}  // NOLINT
  TensorIndex(int i) : TensorIndex(static_cast<int64_t>(i)) {}   // NOLINT
  TensorIndex(Slice s) : kind_(Kind::Range), slice_(s) {}        // NOLINT

  bool is_none() const { return kind_ == Kind::NewDim; }
  bool is_ellipsis() const { return kind_ == Kind::AllDims; }
  bool is_integer() const { return kind_ == Kind::Integer; }
  bool is_slice() const { return kind_ == Kind::Range; }
  int64_t integer() const { return integer_; }
  const Slice& slice() const { return slice_; }

 private:
  enum class Kind : int8_t { NewDim, AllDims, Integer, Range };
  Kind kind_;
  int64_t integer_ = 0;
  Slice slice_;
};

}  // namespace indexing

class Tensor {
 public:
  Tensor() = default;  // undefined tensor
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& sizes() const;
  int64_t size(int64_t dim) const;  // negative dims count from the end
  int64_t dim() const { return static_cast<int64_t>(sizes().size()); }
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  bool is_cuda() const { return device().is_cuda(); }
  bool is_cpu() const { return device().is_cpu(); }
  bool is_pinned() const;
  size_t element_size() const { return tandem::element_size(dtype()); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  // Always true, and true by construction: every tandem tensor, views and
  // slices included, is one dense row-major range of its storage (there are
  // no strides; permute/transpose copy). Kept so that code written against
  // libtorch (`if (!x.is_contiguous()) x = x.contiguous();`) compiles and
  // does no work; contiguous() below returns the tensor itself, no copy.
  bool is_contiguous() const { return true; }

  // Typed pointer to the first element; T must match dtype(). For a CUDA tensor
  // this is a device pointer.
  template <typename T>
  T* data_ptr() const {
    check_dtype_for_access(dtype_of<T>::value);
    return static_cast<T*>(raw_data());
  }
  void* raw_data() const;

  // The value of a one-element tensor, converted to T (copies from the device).
  template <typename T>
  T item() const {
    if constexpr (std::is_floating_point<T>::value) {
      return static_cast<T>(item_double());
    } else {
      return static_cast<T>(item_int64());  // exact beyond 2^53
    }
  }

  // Copies (never aliases) to another device and/or dtype; returns *this when
  // nothing changes, like libtorch.
  Tensor to(Device device) const;
  Tensor to(DeviceType device) const { return to(Device(device)); }
  Tensor to(DType dtype) const;
  Tensor to(Device device, DType dtype) const;
  Tensor cpu() const { return to(Device(kCPU)); }
  Tensor cuda(int index = 0) const { return to(Device(kCUDA, index)); }
  Tensor clone() const;
  // Copies src into this tensor (same numel; src broadcast if it has one
  // element); converts dtype and moves across devices as needed.
  Tensor& copy_(const Tensor& src);
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }

  // Views that share storage.
  Tensor view(const Shape& shape) const;  // one -1 allowed
  Tensor reshape(const Shape& shape) const { return view(shape); }
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor operator[](int64_t index) const { return select(0, index); }

  // ---- Slicing, with libtorch's meanings, on any dim ----
  // Tensors have no strides, so a slicing form ALIASES its input (writes go
  // through, as in libtorch) only when the elements it picks are one dense
  // range of the input: the dims after the sliced one kept whole, the sliced
  // one taken at step 1 (or one index), and every dim before it of size 1 or
  // picked at one index. So a step-1 range or an index of dim 0 aliases, and
  // so does x.index({2, Slice(1, 3)}). Every other form is a COPY (one
  // strided gather kernel; writes into it leave the input as it was), as
  // libtorch's reshape may copy where view never does. Gradients flow either
  // way. Errors (tandem::Error) name the op, the dim and the sizes.
  //
  // Elements start, start + step, ... below end of `dim`; start and end as
  // Python's (negative counts from the end, then clamped to [0, size]);
  // step >= 1. x.slice(1, 0, 5) is x[:, 0:5].
  Tensor slice(int64_t dim = 0, std::optional<int64_t> start = std::nullopt,
               std::optional<int64_t> end = std::nullopt, int64_t step = 1) const;
  // slice(dim, start, start + length); start in [-size, size] (negative wraps
  // once), start + length <= size.
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  // Index `index` (in [-size, size)) of `dim`, which is dropped: x.select(1, 0) is x[:, 0].
  Tensor select(int64_t dim, int64_t index) const;
  // Pieces of ceil(size / chunks) along dim (the last shorter; fewer than
  // `chunks` pieces when they run out, as libtorch's).
  std::vector<Tensor> chunk(int64_t chunks, int64_t dim = 0) const;
  // Pieces of split_size along dim, the last shorter.
  std::vector<Tensor> split(int64_t split_size, int64_t dim = 0) const;
  // Pieces of the given sizes along dim (they sum to its size).
  std::vector<Tensor> split_with_sizes(const std::vector<int64_t>& split_sizes,
                                       int64_t dim = 0) const;
  // Every index of dim, each with dim dropped (select(dim, i) for each i).
  std::vector<Tensor> unbind(int64_t dim = 0) const;
  // Python's x[...] with integers, Slices, Ellipsis and None
  // (tandem::indexing): x.index({Slice(), Slice(), Slice(2, 30), Slice(2, 30)})
  // is x[:, :, 2:30, 2:30]. Dims not indexed are kept whole.
  Tensor index(const std::vector<indexing::TensorIndex>& indices) const;

  // Copies with a new layout.
  Tensor permute(const Shape& dims) const;
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor t() const;                            // 2-D transpose
  Tensor contiguous() const { return *this; }  // always contiguous: this tensor

  // Method forms of common ops (see ops.h).
  Tensor sum() const;
  Tensor sum(int64_t dim, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(int64_t dim, bool keepdim = false) const;
  Tensor max() const;
  Tensor min() const;
  Tensor argmax() const;
  Tensor argmax(int64_t dim, bool keepdim = false) const;
  Tensor matmul(const Tensor& other) const;
  // x.relu(), x.exp(), ...: every unary op of op_list.h.
#define TANDEM_UNARY_METHOD_(name, Enum) Tensor name() const;
  TANDEM_UNARY_OPS(TANDEM_UNARY_METHOD_)
#undef TANDEM_UNARY_METHOD_
  Tensor pow(double exponent) const;
  Tensor clamp(double lo, double hi) const;

  // In-place arithmetic (the forms optimizers use); `this` keeps its shape and
  // `other` must broadcast to it.
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& sub_(const Tensor& other, double alpha = 1.0);
  Tensor& mul_(const Tensor& other);
  Tensor& div_(const Tensor& other);
  Tensor& add_(double value);
  Tensor& sub_(double value);
  Tensor& mul_(double value);
  Tensor& div_(double value);
  Tensor& clamp_(double lo, double hi);
  Tensor& sqrt_();
  Tensor& relu_();
  // this += value * t1 * t2 ; this += value * t1 / t2
  Tensor& addcmul_(const Tensor& t1, const Tensor& t2, double value = 1.0);
  Tensor& addcdiv_(const Tensor& t1, const Tensor& t2, double value = 1.0);

  // ---- Autograd (include/tandem/autograd.h) ----
  // True for a leaf made with set_requires_grad(true) and for the result of an
  // op recorded in the graph.
  bool requires_grad() const;
  // Makes this leaf (floating dtypes only) collect gradients in grad().
  Tensor& set_requires_grad(bool requires_grad);
  Tensor& requires_grad_(bool requires_grad = true) { return set_requires_grad(requires_grad); }
  bool is_leaf() const;
  // The accumulated gradient; undefined until a backward pass reaches this
  // tensor (leaves, and non-leaves after retain_grad()).
  Tensor grad() const;
  Tensor& mutable_grad();  // assign or reset (optimizers, zero_grad)
  // Also keep the gradient of this non-leaf tensor in grad().
  void retain_grad() const;
  // The node that produced this tensor; null for leaves and untracked tensors.
  std::shared_ptr<autograd::Node> grad_fn() const;
  // Back-propagates from this tensor: a scalar, or any shape with `gradient`
  // of the same shape. The graph is freed unless retain_graph is true.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;
  // The same data (shared storage) outside the graph.
  Tensor detach() const;
  Tensor& detach_();

  std::string to_string() const;  // like PyTorch's repr
  // True when both tensors are the same object (not value equality).
  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }
  const std::shared_ptr<TensorImpl>& impl() const { return impl_; }

 private:
  const TensorImpl& checked_impl() const;
  void check_dtype_for_access(DType requested) const;
  double item_double() const;
  int64_t item_int64() const;

  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// ---- Factories -----------------------------------------------------------
Tensor empty(const Shape& shape, const TensorOptions& options = {});
Tensor zeros(const Shape& shape, const TensorOptions& options = {});
Tensor ones(const Shape& shape, const TensorOptions& options = {});
Tensor full(const Shape& shape, double value, const TensorOptions& options = {});
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
// [start, end) with `step`; default dtype int64 as in libtorch when all of
// start/end/step are integral, else float32 (pass options to choose).
Tensor arange(double end, const TensorOptions& options = kInt64);
Tensor arange(double start, double end, double step = 1.0, const TensorOptions& options = kInt64);
// A tensor holding a copy of host values; the dtype is T's unless options say
// otherwise (then the values are converted).
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                   const TensorOptions& options = TensorOptions(dtype_of<T>::value));
template <typename T>
Tensor from_vector(const std::vector<T>& values) {
  return from_vector(values, Shape{static_cast<int64_t>(values.size())});
}
// Copies `shape`'s numel elements of `src_dtype` from a host buffer.
Tensor from_blob(const void* data, const Shape& shape, DType src_dtype,
                 const TensorOptions& options);
template <typename T>
std::vector<T> to_vector(const Tensor& t);  // copies to the host; T must match dtype

// Uniform on [0, 1), standard normal, integers in [low, high).
Tensor rand(const Shape& shape, const TensorOptions& options = {}, Generator* gen = nullptr);
Tensor randn(const Shape& shape, const TensorOptions& options = {}, Generator* gen = nullptr);
Tensor randint(int64_t low, int64_t high, const Shape& shape, const TensorOptions& options = kInt64,
               Generator* gen = nullptr);
Tensor uniform(const Shape& shape, double lo, double hi, const TensorOptions& options = {},
               Generator* gen = nullptr);
Tensor normal(const Shape& shape, double mean, double std, const TensorOptions& options = {},
              Generator* gen = nullptr);

// ---- Operators -------------------------------------------------------------
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor& operator+=(Tensor& a, const Tensor& b);
Tensor& operator-=(Tensor& a, const Tensor& b);
Tensor& operator*=(Tensor& a, const Tensor& b);
Tensor& operator/=(Tensor& a, const Tensor& b);
Tensor& operator+=(Tensor& a, double b);
Tensor& operator-=(Tensor& a, double b);
Tensor& operator*=(Tensor& a, double b);
Tensor& operator/=(Tensor& a, double b);

}  // namespace tandem
