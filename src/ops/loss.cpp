// Loss functions. cross_entropy runs one fused kernel forward (log-softmax and
// NLL per row) and one backward; the others are composed from ops, except the
// two binary cross-entropies, whose backward is written directly (it is
// simpler and better conditioned than differentiating the composition).
#include "tandem/loss.h"

#include <cmath>

#include "autograd/record.h"
#include "ops/dispatch.h"
#include "tandem/ops.h"

namespace tandem {

namespace {

Tensor reduce_loss(const Tensor& per_element, Reduction reduction) {
  switch (reduction) {
    case Reduction::Mean:
      return mean(per_element);
    case Reduction::Sum:
      return sum(per_element);
    default:
      return per_element;
  }
}

void check_same_shape(const char* op, const Tensor& input, const Tensor& target) {
  detail::check_defined(op, input, "input");
  detail::check_defined(op, target, "target");
  detail::check_same_device(op, input, target);
  detail::check_same_dtype(op, input, target);
  detail::check_floating(op, input);
  TANDEM_CHECK(input.sizes() == target.sizes(), op, ": input ", shape_str(input.sizes()),
               " and target ", shape_str(target.sizes()), " must have the same shape");
}

// Checks class-index targets against scores [N, C] (or [C] with a 0-dim
// target) and returns the number of rows.
int64_t check_class_target(const char* op, const Tensor& scores, const Tensor& target) {
  detail::check_defined(op, scores, "input");
  detail::check_defined(op, target, "target");
  detail::check_same_device(op, scores, target);
  detail::check_floating(op, scores);
  detail::check_index_dtype(op, target);
  TANDEM_CHECK(scores.dim() == 1 || scores.dim() == 2, op,
               ": expected scores of shape [N, C] or [C], got ", shape_str(scores.sizes()));
  TANDEM_CHECK(
      target.dim() == scores.dim() - 1 && (scores.dim() == 1 || target.size(0) == scores.size(0)),
      op, ": target ", shape_str(target.sizes()), " does not match scores ",
      shape_str(scores.sizes()), " (expected one class index per row: [",
      scores.dim() == 2 ? std::to_string(scores.size(0)) : std::string(), "])");
  TANDEM_CHECK(scores.size(-1) > 0, op, ": scores ", shape_str(scores.sizes()), " have no classes");
  return scores.dim() == 2 ? scores.size(0) : 1;
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction reduction,
                     double label_smoothing) {
  const int64_t rows = check_class_target("cross_entropy", logits, target);
  TANDEM_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
               "cross_entropy: label_smoothing must be in [0, 1], got ", label_smoothing);
  const int64_t classes = logits.size(-1);
  const Tensor x = logits.detach().view({rows, classes});
  const Tensor t = target.view({rows});
  const TensorOptions opts = TensorOptions(logits.dtype()).device(logits.device());
  Tensor loss = empty({rows}, opts);
  // (row max, log of the sum) in float64: see cross_entropy_forward in
  // core/backend_decls.inc.
  Tensor stats = empty({rows, 2}, TensorOptions(kFloat64).device(logits.device()));
  if (rows > 0) {
    TANDEM_BACKEND_CALL(logits.device(), cross_entropy_forward, x, t, label_smoothing, loss, stats);
  }
  if (autograd::should_record(logits)) {
    autograd::record(
        loss, "cross_entropy", {logits}, {x, t, stats},
        [label_smoothing, shape = logits.sizes()](const Tensor& g, const std::vector<Tensor>& s) {
          Tensor grad = empty_like(s[0]);
          if (grad.numel() > 0) {
            TANDEM_BACKEND_CALL(g.device(), cross_entropy_backward, s[0], s[1], s[2], g,
                                label_smoothing, grad);
          }
          return std::vector<Tensor>{grad.view(shape)};
        });
  }
  if (reduction == Reduction::None) return loss.view(target.sizes());
  return reduce_loss(loss, reduction);
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, Reduction reduction) {
  const int64_t rows = check_class_target("nll_loss", log_probs, target);
  const Tensor lp = log_probs.view({rows, log_probs.size(-1)});
  const Tensor picked = gather(lp, 1, target.view({rows, 1}).to(kInt64)).view({rows});
  const Tensor per_row = -picked;
  if (reduction == Reduction::None) return per_row.view(target.sizes());
  return reduce_loss(per_row, reduction);
}

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  check_same_shape("mse_loss", input, target);
  return reduce_loss(square(input - target), reduction);
}

// PyTorch's binary_cross_entropy backward clamps p (1 - p) at
// `constexpr float EPSILON = 1e-12` (aten/src/ATen/native/Loss.cpp), converted
// to the tensor's type: float32 1e-12f, float64 the same value widened.
constexpr double kBceEps = static_cast<double>(1e-12f);

Tensor binary_cross_entropy(const Tensor& probs, const Tensor& target, Reduction reduction) {
  check_same_shape("binary_cross_entropy", probs, target);
  Tensor per_element;
  {
    NoGradGuard no_grad;
    const Tensor p = probs.detach(), t = target.detach();
    // log clamped at -100 so that p = 0 or 1 gives a finite loss (PyTorch).
    per_element =
        -(t * clamp(log(p), -100.0, INFINITY) + (1.0 - t) * clamp(log(1.0 - p), -100.0, INFINITY));
  }
  if (autograd::should_record(probs, target)) {
    autograd::record(per_element, "binary_cross_entropy", {probs, target}, {probs, target},
                     [](const Tensor& g, const std::vector<Tensor>& s) {
                       const Tensor& p = s[0];
                       const Tensor& t = s[1];
                       // d/dp = (p - t) / (p (1 - p)), with the denominator kept
                       // away from 0 as PyTorch does: its eps is the float
                       // constant 1e-12f (9.9999999600e-13 also for float64).
                       const Tensor gp = g * (p - t) / clamp((1.0 - p) * p, kBceEps, INFINITY);
                       // d/dt = log(1 - p) - log(p), with the same clamped logs.
                       const Tensor gt = g * (clamp(log(1.0 - p), -100.0, INFINITY) -
                                              clamp(log(p), -100.0, INFINITY));
                       return std::vector<Tensor>{gp, gt};
                     });
  }
  return reduce_loss(per_element, reduction);
}

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        Reduction reduction) {
  check_same_shape("binary_cross_entropy_with_logits", logits, target);
  Tensor per_element;
  {
    NoGradGuard no_grad;
    const Tensor x = logits.detach(), t = target.detach();
    per_element = maximum(x, 0.0) - x * t + log(1.0 + exp(-abs(x)));
  }
  if (autograd::should_record(logits, target)) {
    autograd::record(per_element, "binary_cross_entropy_with_logits", {logits, target},
                     {logits, target}, [](const Tensor& g, const std::vector<Tensor>& s) {
                       return std::vector<Tensor>{g * (sigmoid(s[0]) - s[1]), g * -s[0]};
                     });
  }
  return reduce_loss(per_element, reduction);
}

Tensor l2_penalty(const std::vector<Tensor>& weights, double reg) {
  TANDEM_CHECK(!weights.empty(), "l2_penalty: expected at least one weight tensor");
  Tensor total;
  for (size_t i = 0; i < weights.size(); ++i) {
    detail::check_defined("l2_penalty", weights[i], "weight");
    detail::check_floating("l2_penalty", weights[i]);
    const Tensor s = sum(square(weights[i]));
    if (!total.defined()) {
      total = s;
    } else {
      detail::check_same_device("l2_penalty", total, s);
      detail::check_same_dtype("l2_penalty", total, s);
      total = total + s;
    }
  }
  return total * reg;
}

Tensor isfinite(const Tensor& x) {
  detail::check_defined("isfinite", x);
  if (!is_floating(x.dtype())) return ones(x.sizes(), TensorOptions(kUInt8).device(x.device()));
  NoGradGuard no_grad;
  const Tensor v = x.detach();
  // x - x is 0 for finite x and NaN for inf and NaN.
  return eq(v - v, 0.0);
}

bool all_finite(const Tensor& x) {
  detail::check_defined("all_finite", x);
  if (!is_floating(x.dtype()) || x.numel() == 0) return true;
  NoGradGuard no_grad;
  // x * 0 is 0 for finite x and NaN otherwise, so the sum is finite iff all are.
  return std::isfinite(sum(x.detach() * 0.0).item<double>());
}

}  // namespace tandem
