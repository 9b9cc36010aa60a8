// Adam and AdamW (PyTorch's formulas, see optim.h): bias corrections from each
// parameter's own step count, computed here in double and passed to the fused
// update (cpu::adam_step / cuda::adam_step) with the group's current lr.
#include <cmath>
#include <tuple>

#include "ops/foreach.h"
#include "optim/fused.h"
#include "tandem/autograd.h"
#include "tandem/optim.h"

namespace tandem {
namespace optim {
namespace {

template <typename O>
void check_adam_options(const std::string& who, const OptimizerOptions& options) {
  const O& o = detail::options_as<O>(options, who);
  detail::check_non_negative(who, "lr", o.lr());
  detail::check_non_negative(who, "eps", o.eps());
  detail::check_unit_interval(who, "beta1", std::get<0>(o.betas()));
  detail::check_unit_interval(who, "beta2", std::get<1>(o.betas()));
  detail::check_non_negative(who, "weight_decay", o.weight_decay());
}

// The slot of one Adam/AdamW parameter (t = its step count, already counted):
// the moments, and the bias corrections as lr / bc1 and sqrt(bc2).
template <typename O>
void fill_adam_slot(const O& o, const Tensor& p, OptimizerParamState& st, FusedSlot& slot) {
  slot.state[0] = detail::buffer(st, "exp_avg", p, 0.0);
  slot.state[1] = detail::buffer(st, "exp_avg_sq", p, 0.0);
  if (o.amsgrad()) slot.state[2] = detail::buffer(st, "max_exp_avg_sq", p, 0.0);
  const auto t = static_cast<double>(st.step);
  slot.scalar0 = o.lr() / (1.0 - std::pow(std::get<0>(o.betas()), t));
  slot.scalar1 = std::sqrt(1.0 - std::pow(std::get<1>(o.betas()), t));
}

// The fused Adam update of one device's slots.
template <typename O>
auto launch_adam(AdamDecay decay) {
  return [decay](Device dev, const std::vector<FusedSlot>& part, const O& o) {
    const AdamHyper hyper{o.lr(),
                          std::get<0>(o.betas()),
                          std::get<1>(o.betas()),
                          o.eps(),
                          o.weight_decay(),
                          decay,
                          o.amsgrad() ? Amsgrad::On : Amsgrad::Off};
    detail::fused_adam_step(dev, part, hyper, FusedLaunch::MultiTensor);
  };
}

}  // namespace

void Adam::check_options(const OptimizerOptions& options) const {
  check_adam_options<AdamOptions>(name(), options);
}

Adam::Adam(std::vector<Tensor> params, const AdamOptions& options)
    : Adam(detail::one_group(std::move(params)), options) {}

Adam::Adam(std::vector<OptimizerParamGroup> groups, const AdamOptions& defaults)
    : Optimizer({}, defaults.clone()) {
  check_options(defaults);
  for (const auto& g : groups) add_param_group(g);
}

void Adam::step() {
  fused_step<AdamOptions>(fill_adam_slot<AdamOptions>, launch_adam<AdamOptions>(AdamDecay::L2));
}

void AdamW::check_options(const OptimizerOptions& options) const {
  check_adam_options<AdamWOptions>(name(), options);
}

AdamW::AdamW(std::vector<Tensor> params, const AdamWOptions& options)
    : AdamW(detail::one_group(std::move(params)), options) {}

AdamW::AdamW(std::vector<OptimizerParamGroup> groups, const AdamWOptions& defaults)
    : Optimizer({}, defaults.clone()) {
  check_options(defaults);
  for (const auto& g : groups) add_param_group(g);
}

void AdamW::step() {
  fused_step<AdamWOptions>(fill_adam_slot<AdamWOptions>,
                           launch_adam<AdamWOptions>(AdamDecay::Decoupled));
}

}  // namespace optim
}  // namespace tandem
