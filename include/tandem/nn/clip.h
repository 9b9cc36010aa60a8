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
// most max_norm: every gradient is multiplied by
// min(1, max_norm / (total + 1e-6)). Returns the total norm before clipping
// as a float64 0-d tensor on the first gradient's device (a CPU 0 when no
// parameter has a gradient): the norm (one fused reduction per device and dtype,
// accumulated in double), the factor and the scaling all stay on the device,
// so on CUDA nothing waits for the GPU until the caller reads the norm.
// Throws when max_norm < 0 or norm_type <= 0.
Tensor clip_grad_norm_tensor_(const std::vector<Tensor>& parameters, double max_norm,
                              double norm_type = 2.0);

// As clip_grad_norm_tensor_, but returns the norm read back to the host (one
// synchronisation on CUDA). Throws also when error_if_nonfinite is set and the
// total norm is NaN or infinite (the gradients are then left unscaled).
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
