// SGD (PyTorch's formulas, see optim.h): one fused update per parameter
// (cpu::sgd_step / cuda::sgd_step, src/core/optim_math.h), under NoGradGuard, on
// the parameters' own devices.
#include "ops/foreach.h"
#include "optim/fused.h"
#include "tandem/autograd.h"
#include "tandem/optim.h"

namespace tandem {
namespace optim {

void SGD::check_options(const OptimizerOptions& options) const {
  const auto& o = detail::options_as<SGDOptions>(options, name());
  detail::check_non_negative(name(), "lr", o.lr());
  detail::check_non_negative(name(), "momentum", o.momentum());
  detail::check_non_negative(name(), "dampening", o.dampening());
  detail::check_non_negative(name(), "weight_decay", o.weight_decay());
  TANDEM_CHECK(!o.nesterov() || (o.momentum() > 0.0 && o.dampening() == 0.0),
               "SGD: nesterov needs momentum > 0 and dampening = 0, got momentum ", o.momentum(),
               " and dampening ", o.dampening());
}

SGD::SGD(std::vector<Tensor> params, const SGDOptions& options)
    : SGD(detail::one_group(std::move(params)), options) {}

SGD::SGD(std::vector<OptimizerParamGroup> groups, const SGDOptions& defaults)
    : Optimizer({}, defaults.clone()) {
  check_options(defaults);
  for (const auto& g : groups) add_param_group(g);
}

void SGD::step() {
  fused_step<SGDOptions>(
      [](const SGDOptions& o, const Tensor& p, OptimizerParamState& st, FusedSlot& slot) {
        if (o.momentum() != 0.0) {
          // The first step copies d into the buffer (PyTorch's clone of d).
          const bool first = st.buffers.count("momentum_buffer") == 0;
          slot.state[0] = detail::buffer(st, "momentum_buffer", p, 0.0);
          slot.scalar0 = first ? 1.0 : 0.0;
        }
      },
      [](Device dev, const std::vector<FusedSlot>& part, const SGDOptions& o) {
        const SgdHyper hyper{o.lr(), o.momentum(), o.dampening(), o.weight_decay(),
                             o.nesterov() ? Nesterov::On : Nesterov::Off};
        detail::fused_sgd_step(dev, part, hyper);
      });
}

Tensor SGD::momentum_buffer(const Tensor& param) const {
  const OptimizerParamState* st = state(param);
  if (st == nullptr) return Tensor();
  const auto it = st->buffers.find("momentum_buffer");
  return it == st->buffers.end() ? Tensor() : it->second;
}

}  // namespace optim
}  // namespace tandem
