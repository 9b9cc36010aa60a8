// SGD (PyTorch's formulas, see optim.h): one in-place op per term, under
// NoGradGuard, on the parameters' own device.
#include "ops/dispatch.h"
#include "tandem/autograd.h"
#include "tandem/optim.h"

namespace tandem {
namespace optim {

std::unique_ptr<OptimizerOptions> SGDOptions::clone() const {
  return std::make_unique<SGDOptions>(*this);
}

namespace {

void check_sgd_options(const SGDOptions& o) {
  TANDEM_CHECK(o.lr() >= 0.0, "SGD: lr must be >= 0, got ", o.lr());
  TANDEM_CHECK(o.momentum() >= 0.0, "SGD: momentum must be >= 0, got ", o.momentum());
  TANDEM_CHECK(o.dampening() >= 0.0, "SGD: dampening must be >= 0, got ", o.dampening());
  TANDEM_CHECK(o.weight_decay() >= 0.0, "SGD: weight_decay must be >= 0, got ", o.weight_decay());
  TANDEM_CHECK(!o.nesterov() || (o.momentum() > 0.0 && o.dampening() == 0.0),
               "SGD: nesterov needs momentum > 0 and dampening = 0, got momentum ", o.momentum(),
               " and dampening ", o.dampening());
}

const SGDOptions& sgd_options_of(const OptimizerParamGroup& g) {
  const auto* o = dynamic_cast<const SGDOptions*>(&g.options());
  TANDEM_CHECK(o != nullptr, "SGD: a parameter group has the options of another optimizer");
  return *o;
}

std::vector<OptimizerParamGroup> one_group(std::vector<Tensor> params) {
  std::vector<OptimizerParamGroup> g;
  g.emplace_back(std::move(params));
  return g;
}

}  // namespace

SGD::SGD(std::vector<Tensor> params, const SGDOptions& options)
    : SGD(one_group(std::move(params)), options) {}

SGD::SGD(std::vector<OptimizerParamGroup> groups, const SGDOptions& defaults)
    : Optimizer({}, defaults.clone()) {
  check_sgd_options(defaults);
  for (const auto& g : groups) {
    if (g.has_options()) check_sgd_options(sgd_options_of(g));
    add_param_group(g);
  }
}

void SGD::step() {
  NoGradGuard no_grad;
  for (auto& group : groups_) {
    const SGDOptions& o = sgd_options_of(group);
    check_sgd_options(o);  // set_lr or add_param_group may have changed them
    for (Tensor& p : group.params()) {
      const Tensor grad = p.grad();
      if (!grad.defined()) continue;  // not reached by backward: PyTorch skips it too
      // d is the parameter's gradient until a term makes a fresh tensor of it;
      // only a fresh d is updated in place.
      Tensor d = grad;
      bool d_is_fresh = false;
      if (o.weight_decay() != 0.0) {
        d = grad + o.weight_decay() * p;
        d_is_fresh = true;
      }
      if (o.momentum() != 0.0) {
        Tensor& buf = momentum_buffers_[p.impl().get()];
        if (buf.defined() && (buf.device() != p.device() || buf.dtype() != p.dtype())) {
          // The parameter was moved by Module::to(); its state follows it.
          buf = buf.to(p.device(), p.dtype());
        }
        if (!buf.defined()) {
          buf = d_is_fresh ? d : d.clone();
          d_is_fresh = false;  // d and buf are one tensor now
        } else {
          buf.mul_(o.momentum()).add_(d, 1.0 - o.dampening());
        }
        if (o.nesterov()) {
          if (d_is_fresh) {
            d.add_(buf, o.momentum());
          } else {
            d = d + o.momentum() * buf;
          }
        } else {
          d = buf;
        }
      }
      p.sub_(d, o.lr());
    }
  }
}

Tensor SGD::momentum_buffer(const Tensor& param) const {
  auto it = momentum_buffers_.find(param.impl().get());
  return it == momentum_buffers_.end() ? Tensor() : it->second;
}

}  // namespace optim
}  // namespace tandem
