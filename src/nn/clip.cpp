// clip_grad_norm_ / clip_grad_value_ (include/tandem/nn/clip.h). The norm goes
// through the fused multi-tensor reduction (detail::foreach_norm_partial,
// src/ops/foreach.h), one per device and dtype of the gradients; the partial
// sums are combined in double on the first gradient's device, and the clip
// factor min(1, max_norm / (norm + 1e-6)) is computed there too, so that the
// step never waits for the device (a multiplication by exactly 1 leaves the
// gradients bit-identical).
#include "tandem/nn/clip.h"

#include <cmath>
#include <utility>

#include "core/checks.h"
#include "core/device_groups.h"
#include "ops/foreach.h"
#include "tandem/autograd.h"
#include "tandem/ops.h"

namespace tandem {
namespace nn {
namespace utils {
namespace {

// The defined, non-empty gradients, split by (device, dtype) in first-seen order.
std::vector<std::vector<Tensor>> grads_by_device_dtype(const std::vector<Tensor>& parameters) {
  std::vector<Tensor> grads;
  for (const Tensor& p : parameters) {
    TANDEM_CHECK(p.defined(), "clip_grad_norm_: a parameter is an undefined tensor");
    const Tensor g = p.grad();
    if (g.defined() && g.numel() > 0) grads.push_back(g);
  }
  return detail::group_by_device_dtype(grads, [](const Tensor& g) -> const Tensor& { return g; });
}

void check_clip_args(double max_norm, double norm_type) {
  TANDEM_CHECK(max_norm >= 0.0, "clip_grad_norm_: max_norm must be >= 0, got ", max_norm);
  TANDEM_CHECK(norm_type > 0.0, "clip_grad_norm_: norm_type must be > 0 (or INFINITY), got ",
               norm_type);
}

// The total norm of the gradients in `parts` (float64, 0-d, on the first
// part's device), nothing read back.
Tensor total_norm(const std::vector<std::vector<Tensor>>& parts, double norm_type) {
  const bool is_inf = std::isinf(norm_type);
  const Device home = parts.front().front().device();
  Tensor total;
  for (const auto& part : parts) {
    Tensor acc = detail::foreach_norm_partial(part, norm_type).reshape({});
    if (acc.device() != home) acc = acc.to(home);
    if (!total.defined()) {
      total = acc;
    } else {
      total = is_inf ? maximum(total, acc) : total + acc;  // maximum: NaN wins
    }
  }
  if (is_inf || norm_type == 1.0) return total;
  return norm_type == 2.0 ? total.sqrt() : total.pow(1.0 / norm_type);
}

// Multiplies every gradient by min(1, max_norm / (total + 1e-6)), on the device.
void scale_by_clip_factor(const std::vector<std::vector<Tensor>>& parts, const Tensor& total,
                          double max_norm) {
  const Tensor factor = (max_norm / (total + 1e-6)).clamp(-INFINITY, 1.0);
  for (const auto& part : parts) {
    const Tensor f = factor.to(part.front().device(), part.front().dtype());
    for (Tensor g : part) g.mul_(f);  // a handle: scales the gradient itself
  }
}

std::vector<std::vector<Tensor>> checked_grads(const std::vector<Tensor>& parameters) {
  auto parts = grads_by_device_dtype(parameters);
  if (parts.empty()) return parts;
  // Positions are the parameters'; a parameter without a gradient is skipped.
  std::vector<Tensor> grads;
  for (const Tensor& p : parameters) grads.push_back(p.grad());
  detail::check_no_overlap_in_list("clip_grad_norm_", grads, "gradient");
  return parts;
}

}  // namespace

Tensor clip_grad_norm_tensor_(const std::vector<Tensor>& parameters, double max_norm,
                              double norm_type) {
  check_clip_args(max_norm, norm_type);
  NoGradGuard no_grad;
  const auto parts = checked_grads(parameters);
  if (parts.empty()) return zeros({}, TensorOptions(kFloat64));
  const Tensor total = total_norm(parts, norm_type);
  scale_by_clip_factor(parts, total, max_norm);
  return total;
}

double clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm, double norm_type,
                       bool error_if_nonfinite) {
  if (!error_if_nonfinite) {
    return clip_grad_norm_tensor_(parameters, max_norm, norm_type).item<double>();
  }
  // The check must come before any gradient changes: read the norm first.
  check_clip_args(max_norm, norm_type);
  NoGradGuard no_grad;
  const auto parts = checked_grads(parameters);
  if (parts.empty()) return 0.0;
  const Tensor total = total_norm(parts, norm_type);
  const double v = total.item<double>();
  TANDEM_CHECK(std::isfinite(v), "clip_grad_norm_: the total norm (", norm_type,
               "-norm) of the gradients is ", v,
               "; they cannot be clipped (error_if_nonfinite is set)");
  scale_by_clip_factor(parts, total, max_norm);
  return v;
}

double clip_grad_norm_(const Tensor& parameter, double max_norm, double norm_type,
                       bool error_if_nonfinite) {
  return clip_grad_norm_(std::vector<Tensor>{parameter}, max_norm, norm_type, error_if_nonfinite);
}

void clip_grad_value_(const std::vector<Tensor>& parameters, double clip_value) {
  TANDEM_CHECK(clip_value >= 0.0, "clip_grad_value_: clip_value must be >= 0, got ", clip_value);
  NoGradGuard no_grad;
  for (const Tensor& p : parameters) {
    TANDEM_CHECK(p.defined(), "clip_grad_value_: a parameter is an undefined tensor");
    Tensor g = p.grad();
    if (g.defined() && g.numel() > 0) g.clamp_(-clip_value, clip_value);
  }
}

void clip_grad_value_(const Tensor& parameter, double clip_value) {
  clip_grad_value_(std::vector<Tensor>{parameter}, clip_value);
}

}  // namespace utils
}  // namespace nn
}  // namespace tandem
