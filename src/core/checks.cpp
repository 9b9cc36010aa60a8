// The shared argument checks (src/core/checks.h).
#include "core/checks.h"

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "tandem/error.h"

namespace tandem {
namespace detail {

bool overlaps(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.numel() == 0 || b.numel() == 0) return false;
  if (a.impl()->storage != b.impl()->storage) return false;
  const auto begin = [](const Tensor& t) {
    return t.impl()->offset * static_cast<int64_t>(t.element_size());
  };
  const int64_t a0 = begin(a), b0 = begin(b);
  const int64_t a1 = a0 + static_cast<int64_t>(a.nbytes()),
                b1 = b0 + static_cast<int64_t>(b.nbytes());
  return a0 < b1 && b0 < a1;
}

void check_no_overlap_in_list(const char* op, const std::vector<Tensor>& tensors,
                              const char* what) {
  // By storage first: lists are long (every parameter of a model) and almost
  // never share one.
  std::unordered_map<const Storage*, std::vector<size_t>> by_storage;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    if (!t.defined() || t.numel() == 0) continue;
    std::vector<size_t>& same = by_storage[t.impl()->storage.get()];
    for (size_t j : same) {
      TANDEM_CHECK(!overlaps(tensors[j], t), op, ": ", what, "s ", j, " and ", i,
                   " of the list overlap (", describe(tensors[j]), " and ", describe(t),
                   "): the same tensor listed twice, or views sharing memory; each may appear "
                   "once");
    }
    same.push_back(i);
  }
}

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined tensor";
  return str_cat(dtype_name(t.dtype()), shape_str(t.sizes()), " on ", t.device().str());
}

void check_defined(const char* op, const Tensor& t, const char* arg) {
  TANDEM_CHECK(t.defined(), op, ": ", arg, " is an undefined tensor");
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  TANDEM_CHECK(a.device() == b.device(), op, ": expected tensors on the same device, got ",
               describe(a), " and ", describe(b), " (move one with .to(device))");
}

void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  TANDEM_CHECK(a.dtype() == b.dtype(), op, ": expected tensors of the same dtype, got ",
               describe(a), " and ", describe(b), " (convert one with .to(dtype))");
}

void check_floating(const char* op, const Tensor& t) {
  TANDEM_CHECK(is_floating(t.dtype()), op, ": dtype ", dtype_name(t.dtype()),
               " is not supported (expected float32 or float64)");
}

void check_index_dtype(const char* op, const Tensor& t) {
  TANDEM_CHECK(t.dtype() == kInt64 || t.dtype() == kInt32, op, ": index dtype ",
               dtype_name(t.dtype()), " is not supported (expected int64 or int32)");
}

int64_t normalize_dim(const char* op, int64_t dim, int64_t ndim) {
  const int64_t lo = ndim == 0 ? -1 : -ndim;
  const int64_t hi = ndim == 0 ? 0 : ndim - 1;
  TANDEM_CHECK(dim >= lo && dim <= hi, op, ": dim ", dim, " is out of range for a tensor of ", ndim,
               " dims");
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

int64_t prod(const Shape& sizes, int64_t begin, int64_t end) {
  int64_t n = 1;
  for (int64_t i = begin; i < end; ++i) n *= sizes[static_cast<size_t>(i)];
  return n;
}

}  // namespace detail
}  // namespace tandem
