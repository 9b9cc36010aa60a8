// clip_grad_norm_ / clip_grad_value_ (include/tandem/nn/clip.h). The norm goes
// through the fused multi-tensor reduction (detail::foreach_norm_partial,
// src/ops/foreach.h), one per device and dtype of the gradients; the partial
// sums are read once each and combined here in double.
#include "tandem/nn/clip.h"

#include <cmath>
#include <utility>

#include "core/checks.h"
#include "ops/foreach.h"
#include "tandem/autograd.h"

namespace tandem {
namespace nn {
namespace utils {
namespace {

// The defined gradients, split by (device, dtype) in first-seen order.
std::vector<std::pair<Device, std::vector<Tensor>>> grads_by_device_dtype(
    const std::vector<Tensor>& parameters) {
  std::vector<std::pair<Device, std::vector<Tensor>>> parts;
  std::vector<DType> dtypes;
  for (const Tensor& p : parameters) {
    TANDEM_CHECK(p.defined(), "clip_grad_norm_: a parameter is an undefined tensor");
    const Tensor g = p.grad();
    if (!g.defined() || g.numel() == 0) continue;
    size_t i = 0;
    while (i < parts.size() && !(parts[i].first == g.device() && dtypes[i] == g.dtype())) ++i;
    if (i == parts.size()) {
      parts.emplace_back(g.device(), std::vector<Tensor>{});
      dtypes.push_back(g.dtype());
    }
    parts[i].second.push_back(g);
  }
  return parts;
}

}  // namespace

double clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm, double norm_type,
                       bool error_if_nonfinite) {
  TANDEM_CHECK(max_norm >= 0.0, "clip_grad_norm_: max_norm must be >= 0, got ", max_norm);
  TANDEM_CHECK(norm_type > 0.0, "clip_grad_norm_: norm_type must be > 0 (or INFINITY), got ",
               norm_type);
  NoGradGuard no_grad;
  const auto parts = grads_by_device_dtype(parameters);
  if (parts.empty()) return 0.0;
  {
    // Positions are the parameters'; a parameter without a gradient is skipped.
    std::vector<Tensor> grads;
    for (const Tensor& p : parameters) grads.push_back(p.grad());
    detail::check_no_overlap_in_list("clip_grad_norm_", grads, "gradient");
  }
  const bool is_inf = std::isinf(norm_type);
  // Enqueue every reduction first, then read the results.
  std::vector<Tensor> partials;
  for (const auto& part : parts) {
    partials.push_back(detail::foreach_norm_partial(part.second, norm_type));
  }
  double total = 0.0;
  for (const Tensor& acc : partials) {
    const double v = acc.item<double>();
    if (is_inf) {
      total = (v != v || v > total) ? v : total;
    } else {
      total += v;
    }
  }
  if (!is_inf) {
    total = norm_type == 2.0   ? std::sqrt(total)
            : norm_type == 1.0 ? total
                               : std::pow(total, 1.0 / norm_type);
  }
  TANDEM_CHECK(!error_if_nonfinite || std::isfinite(total), "clip_grad_norm_: the total norm (",
               norm_type, "-norm) of the gradients is ", total,
               "; they cannot be clipped (error_if_nonfinite is set)");
  const double clip_coef = max_norm / (total + 1e-6);
  if (clip_coef < 1.0) {
    for (const auto& part : parts) detail::foreach_scale_(part.second, clip_coef);
  }
  return total;
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
