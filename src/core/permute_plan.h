// permute's walk, computed the same way by both backends (src/cpu/copy.cpp,
// kernels/copy.cu): the output dims, outermost first, with the input stride of
// each; size-1 dims are dropped and neighbours merged where the input is
// contiguous across them, so e.g. [B, H, S, D] -> [B, S, H, D] becomes a 3-D
// walk with D-long runs. One dim or none left: the order of elements does not
// change.
#pragma once

#include <cstdint>
#include <vector>

#include "tandem/error.h"
#include "tandem/tensor.h"

namespace tandem {

struct PermutePlan {
  std::vector<int64_t> sizes;    // merged output dims, outermost first
  std::vector<int64_t> strides;  // the input stride of each
};

// `op` names the caller in errors ("permute", "permute (cuda)").
inline PermutePlan permute_plan(const Shape& in_sizes, const Shape& perm, const char* op) {
  const size_t nd = in_sizes.size();
  TANDEM_CHECK(perm.size() == nd, op, ": ", perm.size(), " dims for a tensor of ", nd);
  std::vector<int64_t> in_strides(nd, 1);
  for (size_t d = nd; d-- > 1;) in_strides[d - 1] = in_strides[d] * in_sizes[d];
  PermutePlan plan;
  for (size_t i = 0; i < nd; ++i) {
    const auto p = static_cast<size_t>(perm[i]);
    TANDEM_CHECK(perm[i] >= 0 && p < nd, op, ": bad dim ", perm[i]);
    if (in_sizes[p] == 1) continue;
    if (!plan.sizes.empty() && plan.strides.back() == in_strides[p] * in_sizes[p]) {
      plan.sizes.back() *= in_sizes[p];
      plan.strides.back() = in_strides[p];
    } else {
      plan.sizes.push_back(in_sizes[p]);
      plan.strides.push_back(in_strides[p]);
    }
  }
  return plan;
}

}  // namespace tandem
