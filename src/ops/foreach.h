// Internal multi-tensor ops (PyTorch's torch._foreach_*): one fused backend
// call over a list of tensors instead of one op per tensor. Used by
// nn::utils::clip_grad_norm_ (src/nn/clip.cpp) and the optimizers
// (src/optim/*.cpp), so that only src/ops calls a backend.
// Not recorded by autograd: they work on gradients and optimizer state.
#pragma once

#include <vector>

#include "core/optim_math.h"
#include "tandem/tensor.h"

namespace tandem {
namespace detail {

// Float64 [1] on the tensors' device: the sum over every element of every
// tensor of |x|^norm_type, or max |x| for norm_type = inf (NaN propagates),
// accumulated in double. One reduction; nothing is copied to the host. The
// tensors must be defined, floating, of one dtype and on one device; empty
// ones are skipped (an all-empty list gives 0). norm_type > 0 or inf.
Tensor foreach_norm_partial(const std::vector<Tensor>& tensors, double norm_type);

// Every element of every tensor multiplied by `factor` (converted to the
// tensors' dtype) in place, in one multi-tensor launch per chunk of the list;
// bumps their version counters. Same requirements on the list as above.
void foreach_scale_(const std::vector<Tensor>& tensors, double factor);

// The optimizers' fused updates: one backend call (cpu:: or cuda::*_step,
// contract in src/core/optim_decls.inc) for slots that are all on `device` and
// of one floating dtype, as Optimizer::fused_step hands them over.
void fused_sgd_step(Device device, const std::vector<FusedSlot>& slots, const SgdHyper& hyper);
void fused_adam_step(Device device, const std::vector<FusedSlot>& slots, const AdamHyper& hyper,
                     FusedLaunch launch = FusedLaunch::MultiTensor);
void fused_rmsprop_step(Device device, const std::vector<FusedSlot>& slots,
                        const RmspropHyper& hyper);
void fused_adagrad_step(Device device, const std::vector<FusedSlot>& slots,
                        const AdagradHyper& hyper);

}  // namespace detail
}  // namespace tandem
