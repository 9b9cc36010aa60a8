// RMSprop and Adagrad (PyTorch's formulas, see optim.h), each one fused update
// per parameter (cpu/cuda::rmsprop_step, adagrad_step; src/optim/fused.h).
#include "ops/dispatch.h"
#include "optim/fused.h"
#include "tandem/autograd.h"
#include "tandem/optim.h"

namespace tandem {
namespace optim {

// ---- RMSprop ----------------------------------------------------------------------

std::unique_ptr<OptimizerOptions> RMSpropOptions::clone() const {
  return std::make_unique<RMSpropOptions>(*this);
}

void RMSprop::check_options(const OptimizerOptions& options) const {
  const auto& o = internal::options_as<RMSpropOptions>(options, name());
  internal::check_non_negative(name(), "lr", o.lr());
  internal::check_non_negative(name(), "eps", o.eps());
  internal::check_non_negative(name(), "weight_decay", o.weight_decay());
  internal::check_non_negative(name(), "momentum", o.momentum());
  internal::check_unit_interval(name(), "alpha", o.alpha());
}

RMSprop::RMSprop(std::vector<Tensor> params, const RMSpropOptions& options)
    : RMSprop(internal::one_group(std::move(params)), options) {}

RMSprop::RMSprop(std::vector<OptimizerParamGroup> groups, const RMSpropOptions& defaults)
    : Optimizer({}, defaults.clone()) {
  check_options(defaults);
  for (const auto& g : groups) add_param_group(g);
}

void RMSprop::step() {
  check_step();
  NoGradGuard no_grad;
  for (auto& group : groups_) {
    const auto& o = static_cast<const RMSpropOptions&>(group.options());
    const RmspropHyper hyper{o.lr(),       o.alpha(),
                             o.eps(),      o.weight_decay(),
                             o.momentum(), o.centered() ? Centered::On : Centered::Off};
    std::vector<FusedSlot> slots;
    for (Tensor& p : group.params()) {
      const Tensor grad = p.grad();
      if (!grad.defined()) continue;
      OptimizerParamState& st = state_for(p);
      FusedSlot slot{p, grad, {}, 0.0, 0.0};
      slot.state[0] = internal::buffer(st, "square_avg", p, 0.0);
      if (o.momentum() > 0.0) slot.state[1] = internal::buffer(st, "momentum_buffer", p, 0.0);
      if (o.centered()) slot.state[2] = internal::buffer(st, "grad_avg", p, 0.0);
      ++st.step;
      if (p.numel() > 0) slots.push_back(slot);
    }
    internal::for_each_device_dtype(slots, [&](Device dev, const std::vector<FusedSlot>& part) {
      TANDEM_BACKEND_CALL(dev, rmsprop_step, part, hyper);
    });
    internal::mark_written(slots);
  }
}

// ---- Adagrad ----------------------------------------------------------------------

std::unique_ptr<OptimizerOptions> AdagradOptions::clone() const {
  return std::make_unique<AdagradOptions>(*this);
}

void Adagrad::check_options(const OptimizerOptions& options) const {
  const auto& o = internal::options_as<AdagradOptions>(options, name());
  internal::check_non_negative(name(), "lr", o.lr());
  internal::check_non_negative(name(), "lr_decay", o.lr_decay());
  internal::check_non_negative(name(), "weight_decay", o.weight_decay());
  internal::check_non_negative(name(), "initial_accumulator_value", o.initial_accumulator_value());
  internal::check_non_negative(name(), "eps", o.eps());
}

Adagrad::Adagrad(std::vector<Tensor> params, const AdagradOptions& options)
    : Adagrad(internal::one_group(std::move(params)), options) {}

Adagrad::Adagrad(std::vector<OptimizerParamGroup> groups, const AdagradOptions& defaults)
    : Optimizer({}, defaults.clone()) {
  check_options(defaults);
  for (const auto& g : groups) add_param_group(g);
}

void Adagrad::step() {
  check_step();
  NoGradGuard no_grad;
  for (auto& group : groups_) {
    const auto& o = static_cast<const AdagradOptions&>(group.options());
    const AdagradHyper hyper{o.weight_decay(), o.eps()};
    std::vector<FusedSlot> slots;
    for (Tensor& p : group.params()) {
      const Tensor grad = p.grad();
      if (!grad.defined()) continue;
      OptimizerParamState& st = state_for(p);
      FusedSlot slot{p, grad, {}, 0.0, 0.0};
      slot.state[0] = internal::buffer(st, "sum", p, o.initial_accumulator_value());
      const auto t = static_cast<double>(++st.step);
      slot.scalar0 = o.lr() / (1.0 + (t - 1.0) * o.lr_decay());
      if (p.numel() > 0) slots.push_back(slot);
    }
    internal::for_each_device_dtype(slots, [&](Device dev, const std::vector<FusedSlot>& part) {
      TANDEM_BACKEND_CALL(dev, adagrad_step, part, hyper);
    });
    internal::mark_written(slots);
  }
}

}  // namespace optim
}  // namespace tandem
