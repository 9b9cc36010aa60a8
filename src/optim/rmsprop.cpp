// RMSprop (PyTorch's formulas, see optim.h): one fused update per parameter
// (cpu::rmsprop_step / cuda::rmsprop_step, src/core/optim_math.h).
#include "ops/foreach.h"
#include "optim/fused.h"
#include "tandem/autograd.h"
#include "tandem/optim.h"

namespace tandem {
namespace optim {

void RMSprop::check_options(const OptimizerOptions& options) const {
  const auto& o = detail::options_as<RMSpropOptions>(options, name());
  detail::check_non_negative(name(), "lr", o.lr());
  detail::check_non_negative(name(), "eps", o.eps());
  detail::check_non_negative(name(), "weight_decay", o.weight_decay());
  detail::check_non_negative(name(), "momentum", o.momentum());
  detail::check_unit_interval(name(), "alpha", o.alpha());
}

RMSprop::RMSprop(std::vector<Tensor> params, const RMSpropOptions& options)
    : RMSprop(detail::one_group(std::move(params)), options) {}

RMSprop::RMSprop(std::vector<OptimizerParamGroup> groups, const RMSpropOptions& defaults)
    : Optimizer({}, defaults.clone()) {
  check_options(defaults);
  for (const auto& g : groups) add_param_group(g);
}

void RMSprop::step() {
  fused_step<RMSpropOptions>(
      [](const RMSpropOptions& o, const Tensor& p, OptimizerParamState& st, FusedSlot& slot) {
        slot.state[0] = detail::buffer(st, "square_avg", p, 0.0);
        if (o.momentum() > 0.0) slot.state[1] = detail::buffer(st, "momentum_buffer", p, 0.0);
        if (o.centered()) slot.state[2] = detail::buffer(st, "grad_avg", p, 0.0);
      },
      [](Device dev, const std::vector<FusedSlot>& part, const RMSpropOptions& o) {
        const RmspropHyper hyper{o.lr(),       o.alpha(),
                                 o.eps(),      o.weight_decay(),
                                 o.momentum(), o.centered() ? Centered::On : Centered::Off};
        detail::fused_rmsprop_step(dev, part, hyper);
      });
}

}  // namespace optim
}  // namespace tandem
