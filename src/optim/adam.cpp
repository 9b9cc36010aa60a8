// Adam and AdamW (PyTorch's formulas, see optim.h): bias corrections from each
// parameter's own step count, computed here in double and passed to the fused
// update (cpu::adam_step / cuda::adam_step) with the group's current lr.
#include <cmath>
#include <tuple>

#include "ops/dispatch.h"
#include "optim/fused.h"
#include "tandem/autograd.h"
#include "tandem/optim.h"

namespace tandem {
namespace optim {
namespace {

template <typename O>
void check_adam_options(const std::string& who, const OptimizerOptions& options) {
  const O& o = internal::options_as<O>(options, who);
  internal::check_non_negative(who, "lr", o.lr());
  internal::check_non_negative(who, "eps", o.eps());
  internal::check_unit_interval(who, "beta1", std::get<0>(o.betas()));
  internal::check_unit_interval(who, "beta2", std::get<1>(o.betas()));
  internal::check_non_negative(who, "weight_decay", o.weight_decay());
}

// One Adam/AdamW step over every group (checked by Optimizer::check_step); O
// is the options type.
template <typename O>
void adam_like_step(std::vector<OptimizerParamGroup>& groups, AdamDecay decay,
                    const std::function<OptimizerParamState&(const Tensor&)>& state_for) {
  NoGradGuard no_grad;
  for (auto& group : groups) {
    const auto& o = static_cast<const O&>(group.options());
    const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
    const AdamHyper hyper{o.lr(),
                          beta1,
                          beta2,
                          o.eps(),
                          o.weight_decay(),
                          decay,
                          o.amsgrad() ? Amsgrad::On : Amsgrad::Off};
    std::vector<FusedSlot> slots;
    for (Tensor& p : group.params()) {
      const Tensor grad = p.grad();
      if (!grad.defined()) continue;
      OptimizerParamState& st = state_for(p);
      FusedSlot slot{p, grad, {}, 0.0, 0.0};
      slot.state[0] = internal::buffer(st, "exp_avg", p, 0.0);
      slot.state[1] = internal::buffer(st, "exp_avg_sq", p, 0.0);
      if (o.amsgrad()) slot.state[2] = internal::buffer(st, "max_exp_avg_sq", p, 0.0);
      const auto t = static_cast<double>(++st.step);
      const double bias_correction1 = 1.0 - std::pow(beta1, t);
      const double bias_correction2 = 1.0 - std::pow(beta2, t);
      slot.scalar0 = o.lr() / bias_correction1;
      slot.scalar1 = std::sqrt(bias_correction2);
      if (p.numel() > 0) slots.push_back(slot);
    }
    internal::for_each_device_dtype(slots, [&](Device dev, const std::vector<FusedSlot>& part) {
      TANDEM_BACKEND_CALL(dev, adam_step, part, hyper, FusedLaunch::MultiTensor);
    });
    internal::mark_written(slots);
  }
}

}  // namespace

void Adam::check_options(const OptimizerOptions& options) const {
  check_adam_options<AdamOptions>(name(), options);
}

Adam::Adam(std::vector<Tensor> params, const AdamOptions& options)
    : Adam(internal::one_group(std::move(params)), options) {}

Adam::Adam(std::vector<OptimizerParamGroup> groups, const AdamOptions& defaults)
    : Optimizer({}, defaults.clone()) {
  check_options(defaults);
  for (const auto& g : groups) add_param_group(g);
}

void Adam::step() {
  check_step();
  adam_like_step<AdamOptions>(
      groups_, AdamDecay::L2,
      [this](const Tensor& p) -> OptimizerParamState& { return state_for(p); });
}

void AdamW::check_options(const OptimizerOptions& options) const {
  check_adam_options<AdamWOptions>(name(), options);
}

AdamW::AdamW(std::vector<Tensor> params, const AdamWOptions& options)
    : AdamW(internal::one_group(std::move(params)), options) {}

AdamW::AdamW(std::vector<OptimizerParamGroup> groups, const AdamWOptions& defaults)
    : Optimizer({}, defaults.clone()) {
  check_options(defaults);
  for (const auto& g : groups) add_param_group(g);
}

void AdamW::step() {
  check_step();
  adam_like_step<AdamWOptions>(
      groups_, AdamDecay::Decoupled,
      [this](const Tensor& p) -> OptimizerParamState& { return state_for(p); });
}

}  // namespace optim
}  // namespace tandem
