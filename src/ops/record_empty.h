// Ops whose output has no elements still join the autograd graph, as in
// PyTorch: no element of the output depends on the inputs, so each input that
// requires grad gets zeros of its shape (conv's weight gradient over an empty
// batch), and a loss built on an empty result backpropagates instead of
// throwing "does not require grad". Only src/ops/ includes it.
#pragma once

#include <vector>

#include "autograd/record.h"
#include "tandem/ops.h"

namespace tandem {
namespace detail {

// Records `out` (empty) as computed from `inputs` (undefined ones allowed);
// returns `out`.
inline Tensor record_empty(const Tensor& out, const char* name, const std::vector<Tensor>& inputs) {
  if (!autograd::should_record_list(inputs)) return out;
  std::vector<Shape> shapes;
  std::vector<DType> dtypes;
  std::vector<bool> needed;
  for (const Tensor& in : inputs) {
    needed.push_back(in.defined() && in.requires_grad());
    shapes.push_back(in.defined() ? in.sizes() : Shape{});
    dtypes.push_back(in.defined() ? in.dtype() : kFloat32);
  }
  autograd::record(out, name, inputs, {},
                   [shapes, dtypes, needed](const Tensor& g, const std::vector<Tensor>&) {
                     std::vector<Tensor> grads(shapes.size());
                     for (size_t i = 0; i < shapes.size(); ++i) {
                       if (needed[i]) {
                         grads[i] = zeros(shapes[i], TensorOptions(dtypes[i]).device(g.device()));
                       }
                     }
                     return grads;
                   });
  return out;
}

}  // namespace detail
}  // namespace tandem
