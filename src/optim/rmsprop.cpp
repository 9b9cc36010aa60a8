// RMSprop and Adagrad (PyTorch's formulas, see optim.h), each one fused update
// per parameter (cpu/cuda::rmsprop_step, adagrad_step; src/core/optim_math.h).
#include "ops/foreach.h"
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
  fused_step<RMSpropOptions>(
      [](const RMSpropOptions& o, const Tensor& p, OptimizerParamState& st, FusedSlot& slot) {
        slot.state[0] = internal::buffer(st, "square_avg", p, 0.0);
        if (o.momentum() > 0.0) slot.state[1] = internal::buffer(st, "momentum_buffer", p, 0.0);
        if (o.centered()) slot.state[2] = internal::buffer(st, "grad_avg", p, 0.0);
      },
      [](Device dev, const std::vector<FusedSlot>& part, const RMSpropOptions& o) {
        const RmspropHyper hyper{o.lr(),       o.alpha(),
                                 o.eps(),      o.weight_decay(),
                                 o.momentum(), o.centered() ? Centered::On : Centered::Off};
        detail::fused_rmsprop_step(dev, part, hyper);
      });
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
  fused_step<AdagradOptions>(
      [](const AdagradOptions& o, const Tensor& p, OptimizerParamState& st, FusedSlot& slot) {
        slot.state[0] = internal::buffer(st, "sum", p, o.initial_accumulator_value());
        const auto t = static_cast<double>(st.step);
        slot.scalar0 = o.lr() / (1.0 + (t - 1.0) * o.lr_decay());
      },
      [](Device dev, const std::vector<FusedSlot>& part, const AdagradOptions& o) {
        detail::fused_adagrad_step(dev, part, AdagradHyper{o.weight_decay(), o.eps()});
      });
}

}  // namespace optim
}  // namespace tandem
