// Splitting a list of tensors (or of records that hold one) by (device, dtype),
// in first-seen order: a fused or multi-tensor call takes one device and one
// dtype, and a list may mix them (gradient clipping, the optimizers' steps).
#pragma once

#include <utility>
#include <vector>

#include "tandem/tensor.h"

namespace tandem {
namespace detail {

// The items of `items` grouped by the device and dtype of tensor_of(item),
// groups in the order their first item appears, items in their order.
template <typename T, typename TensorOf>
std::vector<std::vector<T>> group_by_device_dtype(const std::vector<T>& items,
                                                  const TensorOf& tensor_of) {
  std::vector<std::pair<std::pair<Device, DType>, std::vector<T>>> groups;
  for (const T& item : items) {
    const Tensor& t = tensor_of(item);
    const auto key = std::make_pair(t.device(), t.dtype());
    auto it = groups.begin();
    while (it != groups.end() && it->first != key) ++it;
    if (it == groups.end()) it = groups.insert(groups.end(), {key, std::vector<T>{}});
    it->second.push_back(item);
  }
  std::vector<std::vector<T>> out;
  out.reserve(groups.size());
  for (auto& g : groups) out.push_back(std::move(g.second));
  return out;
}

}  // namespace detail
}  // namespace tandem
