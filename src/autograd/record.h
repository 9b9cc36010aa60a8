// Internal helpers the ops use to record themselves in the autograd graph.
//
// Pattern, in a public op after the output is computed:
//   if (autograd::should_record(a, b)) {
//     autograd::record(out, "MulBackward", {a, b}, {a, b},
//                      [](const Tensor& g, const std::vector<Tensor>& s) {
//                        return std::vector<Tensor>{g * s[1], g * s[0]};
//                      });
//   }
// Saved tensors are stored detached (no reference cycle through the output)
// with their storage version, which is checked before the formula runs. The
// formula runs with grad mode off and returns one gradient per input, in the
// input's shape (undefined where none is needed).
#pragma once

#include <vector>

#include "tandem/autograd.h"
#include "tandem/tensor.h"

namespace tandem {
namespace autograd {

inline bool requires_grad_any() { return false; }
template <typename... Rest>
bool requires_grad_any(const Tensor& first, const Rest&... rest) {
  return first.requires_grad() || requires_grad_any(rest...);
}
// True when grad mode is on and any (defined) input requires grad.
template <typename... Ts>
bool should_record(const Ts&... inputs) {
  return GradMode::is_enabled() && requires_grad_any(inputs...);
}
bool should_record_list(const std::vector<Tensor>& inputs);

// Attaches a node computing `fn` to `out`, a tensor fresh from the op. Does
// nothing when `out` is one of the inputs (ops that return their input).
void record(const Tensor& out, const char* name, const std::vector<Tensor>& inputs,
            std::vector<Tensor> saved, Node::BackwardFn fn);

// In-place ops call this first: throws when grad mode is on and `self` or
// `source` requires grad, then bumps the storage version of `self`.
void prepare_inplace(const char* op, const Tensor& self, const Tensor& source = Tensor());

// grad summed over the dims that broadcasting expanded, back to `shape`.
Tensor sum_to(const Tensor& grad, const Shape& shape);

}  // namespace autograd
}  // namespace tandem
