// The optimizers' fused step (Optimizer::fused_step, declared in
// include/tandem/optim.h) and the helpers of src/optim/*.cpp. The per-element
// formulas and the backend entry points they launch are src/core/optim_math.h.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/optim_math.h"
#include "tandem/autograd.h"
#include "tandem/error.h"
#include "tandem/optim.h"
#include "tandem/tensor.h"

namespace tandem {
namespace detail {

using optim::OptimizerOptions;
using optim::OptimizerParamGroup;
using optim::OptimizerParamState;

// Runs run(device, slots of that device and dtype) for each (device, dtype) of
// `slots`, in first-seen order (a group may mix devices and dtypes).
void for_each_device_dtype(const std::vector<FusedSlot>& slots,
                           const std::function<void(Device, const std::vector<FusedSlot>&)>& run);

// Helpers of the optimizers' constructors and steps (src/optim/*.cpp).
std::vector<OptimizerParamGroup> one_group(std::vector<Tensor> params);
// Throws "<who>: <option> must be >= 0, got <v>" and friends.
void check_non_negative(const std::string& who, const char* option, double v);
void check_unit_interval(const std::string& who, const char* option, double v);  // [0, 1)
// The gradient of `param` must match it (autograd guarantees this; a
// gradient assigned by hand might not).
void check_grad(const std::string& who, const Tensor& param, const Tensor& grad);
// The buffer `key` of st, created by fill(param) when missing.
Tensor& buffer(OptimizerParamState& st, const char* key, const Tensor& param, double init);
// Bumps the version counters of everything a fused step wrote.
void mark_written(const std::vector<FusedSlot>& slots);
// Replaces every gradient that overlaps something the step writes (any
// group's parameter or state) by a copy, so the step reads gradients as they
// were before it (a gradient assigned as a view of a parameter; the fused
// loops and kernels would race with, or read back, their own writes).
void copy_overlapping_grads(std::vector<std::vector<FusedSlot>>& groups);
// The parameters a step will write (those with a gradient), over all groups
// in order, must not overlap each other (detail::check_no_overlap_in_list):
// checked before anything is counted or written.
void check_params_distinct(const std::string& who, const std::vector<OptimizerParamGroup>& groups);

// The options of a group as O (throws when they belong to another optimizer).
template <typename O>
const O& options_as(const OptimizerOptions& options, const std::string& who) {
  const auto* o = dynamic_cast<const O*>(&options);
  TANDEM_CHECK(o != nullptr, who, ": a parameter group has the options of another optimizer");
  return *o;
}

}  // namespace detail

namespace optim {

template <typename O, typename Fill, typename Launch>
void Optimizer::fused_step(const Fill& fill, const Launch& launch) {
  check_step();
  detail::check_params_distinct(name(), groups_);
  NoGradGuard no_grad;
  // Every group's slots first, so that no gradient is read after a launch
  // has written to its bytes.
  std::vector<std::vector<FusedSlot>> group_slots(groups_.size());
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    auto& group = groups_[gi];
    const auto& o = static_cast<const O&>(group.options());  // checked above
    for (Tensor& p : group.params()) {
      const Tensor grad = p.grad();
      if (!grad.defined()) continue;  // not reached by backward: PyTorch skips it too
      OptimizerParamState& st = state_for(p);
      ++st.step;
      FusedSlot slot{p, grad, {}, 0.0, 0.0};
      fill(o, p, st, slot);
      if (p.numel() > 0) group_slots[gi].push_back(slot);
    }
  }
  detail::copy_overlapping_grads(group_slots);
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const auto& o = static_cast<const O&>(groups_[gi].options());
    detail::for_each_device_dtype(
        group_slots[gi],
        [&](Device dev, const std::vector<FusedSlot>& part) { launch(dev, part, o); });
    detail::mark_written(group_slots[gi]);
  }
}

}  // namespace optim
}  // namespace tandem
