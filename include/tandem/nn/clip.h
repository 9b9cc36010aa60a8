// Gradient clipping, as libtorch's torch::nn::utils::clip_grad_norm_ and
// clip_grad_value_. Parameters without a gradient are skipped.
#pragma once

#include <vector>

#include "tandem/tensor.h"

namespace tandem {
namespace nn {
namespace utils {

// Scales all gradients together so that their total norm (the norm_type-norm
// of all gradient elements as one vector; norm_type may be INFINITY) is at
// most max_norm: every gradient is multiplied by max_norm / (total + 1e-6)
// when that is < 1. Returns the total norm before clipping (0 when no
// parameter has a gradient). On CUDA the norm is one fused reduction over all
// gradients of a device (accumulated in double) followed by one read of the
// scalar; the scaling is one multi-tensor launch.
// Throws when max_norm < 0, norm_type <= 0, or (error_if_nonfinite) the total
// norm is NaN or infinite.
double clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm,
                       double norm_type = 2.0, bool error_if_nonfinite = false);
double clip_grad_norm_(const Tensor& parameter, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);

// Clamps every gradient element into [-clip_value, clip_value]; clip_value >= 0.
void clip_grad_value_(const std::vector<Tensor>& parameters, double clip_value);
void clip_grad_value_(const Tensor& parameter, double clip_value);

}  // namespace utils
}  // namespace nn
}  // namespace tandem
