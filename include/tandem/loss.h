// Loss functions (libtorch's names and defaults) and a cheap non-finite check.
// All are differentiable; cross_entropy has a fused kernel forward and backward.
#pragma once

#include <vector>

#include "tandem/tensor.h"

namespace tandem {

enum class Reduction : int8_t { None, Mean, Sum };

// Softmax cross-entropy from raw scores: logits [N, C] (or [C]), target class
// indices [N] (or []) int64/int32 in [0, C). Stable for large logits.
// With label smoothing s the target distribution is (1 - s) one-hot + s / C.
Tensor cross_entropy(const Tensor& logits, const Tensor& target,
                     Reduction reduction = Reduction::Mean, double label_smoothing = 0.0);
// -log_probs[i][target[i]]: log_probs [N, C] (e.g. from log_softmax).
Tensor nll_loss(const Tensor& log_probs, const Tensor& target,
                Reduction reduction = Reduction::Mean);
// (input - target)^2; the shapes must match.
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean);
// -(t log p + (1 - t) log(1 - p)) with the logs clamped at -100 (as PyTorch),
// probs in [0, 1].
Tensor binary_cross_entropy(const Tensor& probs, const Tensor& target,
                            Reduction reduction = Reduction::Mean);
// The same from logits x, computed stably as max(x, 0) - x t + log(1 + exp(-|x|)).
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        Reduction reduction = Reduction::Mean);
// reg * sum_i sum(W_i^2): the L2 penalty of course two-layer nets (pass the
// weights, not the biases). A scalar of the weights' dtype and device.
Tensor l2_penalty(const std::vector<Tensor>& weights, double reg);

// 1 where x is finite, 0 for inf and NaN (uint8, x's shape and device).
Tensor isfinite(const Tensor& x);
// True when every element of x is finite: one reduction on x's device and one
// scalar copy to the host. For a training loop's loss check.
bool all_finite(const Tensor& x);

}  // namespace tandem
