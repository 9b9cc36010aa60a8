// Optimizer base (parameter groups, zero_grad) and SGD.
#include <cmath>

#include "ops/dispatch.h"
#include "tandem/autograd.h"
#include "tandem/optim.h"

namespace tandem {
namespace optim {

OptimizerParamGroup::OptimizerParamGroup(const OptimizerParamGroup& other)
    : params_(other.params_), options_(other.options_ ? other.options_->clone() : nullptr) {}

OptimizerParamGroup& OptimizerParamGroup::operator=(const OptimizerParamGroup& other) {
  if (this != &other) {
    params_ = other.params_;
    options_ = other.options_ ? other.options_->clone() : nullptr;
  }
  return *this;
}

OptimizerOptions& OptimizerParamGroup::options() {
  TANDEM_CHECK(options_ != nullptr, "OptimizerParamGroup: the group has no options");
  return *options_;
}
const OptimizerOptions& OptimizerParamGroup::options() const {
  TANDEM_CHECK(options_ != nullptr, "OptimizerParamGroup: the group has no options");
  return *options_;
}

Optimizer::Optimizer(std::vector<OptimizerParamGroup> groups,
                     std::unique_ptr<OptimizerOptions> defaults)
    : defaults_(std::move(defaults)) {
  for (const auto& g : groups) add_param_group(g);
}

void Optimizer::add_param_group(const OptimizerParamGroup& group) {
  OptimizerParamGroup g(group);
  for (size_t i = 0; i < g.params().size(); ++i) {
    const Tensor& p = g.params()[i];
    detail::check_defined("optimizer", p, "parameter");
    TANDEM_CHECK(is_floating(p.dtype()) && p.requires_grad() && p.is_leaf(),
                 "optimizer: parameter ", i, " (", detail::describe(p),
                 ") must be a floating-point leaf tensor that requires grad");
  }
  if (!g.has_options()) g.set_options(defaults_->clone());
  groups_.push_back(std::move(g));
}

void Optimizer::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (auto& g : groups_) {
    for (Tensor& p : g.params()) {
      if (set_to_none) {
        p.mutable_grad() = Tensor();
      } else if (p.grad().defined()) {
        p.grad().zero_();
      }
    }
  }
}

std::vector<Tensor> Optimizer::parameters() const {
  std::vector<Tensor> out;
  for (const auto& g : groups_) out.insert(out.end(), g.params().begin(), g.params().end());
  return out;
}

// ---- SGD ----------------------------------------------------------------------------

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
               "SGD: nesterov needs momentum > 0 and dampening = 0");
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
    if (g.has_options()) {
      const auto* o = dynamic_cast<const SGDOptions*>(&g.options());
      TANDEM_CHECK(o != nullptr, "SGD: a parameter group has options of another optimizer");
      check_sgd_options(*o);
    }
    add_param_group(g);
  }
}

void SGD::step() {
  NoGradGuard no_grad;
  for (auto& group : groups_) {
    const auto& o = static_cast<const SGDOptions&>(group.options());
    check_sgd_options(o);  // set_lr may have changed it
    for (Tensor& p : group.params()) {
      if (!p.grad().defined()) continue;
      Tensor d = p.grad();
      if (o.weight_decay() != 0.0) d = d + o.weight_decay() * p;
      if (o.momentum() != 0.0) {
        Tensor& buf = momentum_buffers_[p.impl().get()];
        if (!buf.defined()) {
          buf = d.clone();
        } else {
          buf.mul_(o.momentum()).add_(d, 1.0 - o.dampening());
        }
        d = o.nesterov() ? d + o.momentum() * buf : buf;
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
