// Internal multi-tensor ops (src/ops/foreach.h): checks, then one backend call
// (grad_norm_accumulate / scale_tensors / the optimizers' *_step) per list.
#include "ops/foreach.h"

#include <cmath>

#include "core/optim_math.h"
#include "ops/dispatch.h"

namespace tandem {
namespace detail {
namespace {

// The non-empty tensors of the list, after checking that all of them are
// defined, floating, share the first one's dtype and device, and that no two
// overlap.
std::vector<Tensor> checked_list(const char* op, const std::vector<Tensor>& tensors) {
  TANDEM_CHECK(!tensors.empty(), op, ": the list of tensors is empty");
  std::vector<Tensor> nonempty;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    TANDEM_CHECK(t.defined(), op, ": tensor ", i, " of the list is an undefined tensor");
    check_floating(op, t);
    check_same_device(op, tensors.front(), t);
    check_same_dtype(op, tensors.front(), t);
    if (t.numel() > 0) nonempty.push_back(t);
  }
  check_no_overlap_in_list(op, tensors);
  return nonempty;
}

}  // namespace

Tensor foreach_norm_partial(const std::vector<Tensor>& tensors, double norm_type) {
  TANDEM_CHECK(norm_type > 0.0, "foreach_norm_partial: norm_type must be > 0 (or INFINITY), got ",
               norm_type);
  const std::vector<Tensor> list = checked_list("foreach_norm_partial", tensors);
  const Device device = tensors.front().device();
  const TensorOptions options = TensorOptions(kFloat64).device(device);
  if (list.empty()) return zeros({1}, options);
  Tensor acc = empty({1}, options);
  TANDEM_BACKEND_CALL(device, grad_norm_accumulate, list, norm_type, acc);
  return acc;
}

void foreach_scale_(const std::vector<Tensor>& tensors, double factor) {
  const std::vector<Tensor> list = checked_list("foreach_scale_", tensors);
  if (list.empty()) return;
  TANDEM_BACKEND_CALL(list.front().device(), scale_tensors, list, factor);
  for (const Tensor& t : list) t.impl()->storage->bump_version();
}

void fused_sgd_step(Device device, const std::vector<FusedSlot>& slots, const SgdHyper& hyper) {
  TANDEM_BACKEND_CALL(device, sgd_step, slots, hyper);
}

void fused_adam_step(Device device, const std::vector<FusedSlot>& slots, const AdamHyper& hyper,
                     FusedLaunch launch) {
  TANDEM_BACKEND_CALL(device, adam_step, slots, hyper, launch);
}

void fused_rmsprop_step(Device device, const std::vector<FusedSlot>& slots,
                        const RmspropHyper& hyper) {
  TANDEM_BACKEND_CALL(device, rmsprop_step, slots, hyper);
}

void fused_adagrad_step(Device device, const std::vector<FusedSlot>& slots,
                        const AdagradHyper& hyper) {
  TANDEM_BACKEND_CALL(device, adagrad_step, slots, hyper);
}

}  // namespace detail
}  // namespace tandem
