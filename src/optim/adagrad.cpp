// Adagrad (PyTorch's formulas, see optim.h): one fused update per parameter
// (cpu::adagrad_step / cuda::adagrad_step, src/core/optim_math.h), under
// NoGradGuard, on the parameters' own devices.
#include "ops/foreach.h"
#include "optim/fused.h"
#include "tandem/autograd.h"
#include "tandem/optim.h"

namespace tandem {
namespace optim {

void Adagrad::check_options(const OptimizerOptions& options) const {
  const auto& o = detail::options_as<AdagradOptions>(options, name());
  detail::check_non_negative(name(), "lr", o.lr());
  detail::check_non_negative(name(), "lr_decay", o.lr_decay());
  detail::check_non_negative(name(), "weight_decay", o.weight_decay());
  detail::check_non_negative(name(), "initial_accumulator_value", o.initial_accumulator_value());
  detail::check_non_negative(name(), "eps", o.eps());
}

Adagrad::Adagrad(std::vector<Tensor> params, const AdagradOptions& options)
    : Adagrad(detail::one_group(std::move(params)), options) {}

Adagrad::Adagrad(std::vector<OptimizerParamGroup> groups, const AdagradOptions& defaults)
    : Optimizer({}, defaults.clone()) {
  check_options(defaults);
  for (const auto& g : groups) add_param_group(g);
}

void Adagrad::step() {
  fused_step<AdagradOptions>(
      [](const AdagradOptions& o, const Tensor& p, OptimizerParamState& st, FusedSlot& slot) {
        slot.state[0] = detail::buffer(st, "sum", p, o.initial_accumulator_value());
        const auto t = static_cast<double>(st.step);
        slot.scalar0 = o.lr() / (1.0 + (t - 1.0) * o.lr_decay());
      },
      [](Device dev, const std::vector<FusedSlot>& part, const AdagradOptions& o) {
        detail::fused_adagrad_step(dev, part, AdagradHyper{o.weight_decay(), o.eps()});
      });
}

}  // namespace optim
}  // namespace tandem
