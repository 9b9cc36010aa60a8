// Optimizer base: parameter groups (each with its own options, cloned from the
// defaults when it has none), parameter validation and zero_grad.
#include <unordered_set>

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
  TANDEM_CHECK(defaults_ != nullptr, "optimizer: the default options are null");
  for (const auto& g : groups) add_param_group(g);
}

void Optimizer::add_param_group(const OptimizerParamGroup& group) {
  OptimizerParamGroup g(group);
  // State (momentum buffers ...) is keyed by TensorImpl, so a parameter listed
  // twice would be updated twice per step with one buffer: refuse it.
  std::unordered_set<const TensorImpl*> seen;
  for (const auto& other : groups_)
    for (const Tensor& p : other.params()) seen.insert(p.impl().get());
  const size_t group_index = groups_.size();
  for (size_t i = 0; i < g.params().size(); ++i) {
    const Tensor& p = g.params()[i];
    TANDEM_CHECK(p.defined(), "optimizer: parameter ", i, " of group ", group_index,
                 " is an undefined tensor");
    TANDEM_CHECK(is_floating(p.dtype()), "optimizer: parameter ", i, " of group ", group_index,
                 " (", detail::describe(p),
                 ") is not floating-point; only float32/float64 "
                 "tensors can be optimized");
    TANDEM_CHECK(p.requires_grad(), "optimizer: parameter ", i, " of group ", group_index, " (",
                 detail::describe(p),
                 ") does not require grad (call set_requires_grad(true) or leave it out)");
    TANDEM_CHECK(p.is_leaf(), "optimizer: parameter ", i, " of group ", group_index, " (",
                 detail::describe(p),
                 ") is not a leaf tensor (it was computed by an op); optimize the tensor it was "
                 "computed from");
    TANDEM_CHECK(seen.insert(p.impl().get()).second, "optimizer: parameter ", i, " of group ",
                 group_index, " (", detail::describe(p),
                 ") appears more than once in the parameter groups");
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
        p.mutable_grad().zero_();
      }
    }
  }
}

std::vector<Tensor> Optimizer::parameters() const {
  std::vector<Tensor> out;
  for (const auto& g : groups_) out.insert(out.end(), g.params().begin(), g.params().end());
  return out;
}

}  // namespace optim
}  // namespace tandem
