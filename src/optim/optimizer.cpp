// Optimizer base: parameter groups (each with its own options, cloned from the
// defaults when it has none), parameter validation, zero_grad, per-parameter
// state and its state dict; the device/dtype split of the fused steps.
#include <unordered_map>
#include <unordered_set>

#include "core/checks.h"
#include "core/device_groups.h"
#include "optim/fused.h"
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
  if (g.has_options()) {
    check_options(g.options());
  } else {
    g.set_options(defaults_->clone());
  }
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

void Optimizer::check_step() const {
  for (const auto& g : groups_) {
    check_options(g.options());  // set_lr or add_param_group may have changed them
    for (const Tensor& p : g.params()) {
      const Tensor grad = p.grad();
      if (grad.defined()) detail::check_grad(name(), p, grad);
    }
  }
}

const OptimizerParamState* Optimizer::state(const Tensor& param) const {
  const auto it = state_.find(param.impl().get());
  return it == state_.end() ? nullptr : &it->second;
}

OptimizerParamState& Optimizer::state_for(const Tensor& param) {
  OptimizerParamState& st = state_[param.impl().get()];
  for (auto& kv : st.buffers) {
    Tensor& buf = kv.second;
    if (buf.defined() && (buf.device() != param.device() || buf.dtype() != param.dtype())) {
      // The parameter was moved by Module::to(); its state follows it.
      buf = buf.to(param.device(), param.dtype());
    }
  }
  return st;
}

namespace {

// A copy that never shares storage with t, on `like`'s device and dtype.
Tensor deep_copy_like(const Tensor& t, const Tensor& like) {
  Tensor out = t.to(like.device(), like.dtype());
  return out.is_same(t) ? t.clone() : out;
}

}  // namespace

OptimizerState Optimizer::state_dict() const {
  NoGradGuard no_grad;
  OptimizerState out;
  out.optimizer = name();
  for (const auto& g : groups_) {
    out.group_options.push_back(std::shared_ptr<const OptimizerOptions>(g.options().clone()));
    std::vector<OptimizerParamState> states;
    for (const Tensor& p : g.params()) {
      OptimizerParamState copy;
      if (const OptimizerParamState* st = state(p)) {
        copy.step = st->step;
        for (const auto& kv : st->buffers) copy.buffers[kv.first] = kv.second.clone();
      }
      states.push_back(std::move(copy));
    }
    out.param_state.push_back(std::move(states));
  }
  return out;
}

void Optimizer::load_state_dict(const OptimizerState& state) {
  NoGradGuard no_grad;
  const std::string who = name() + "::load_state_dict";
  TANDEM_CHECK(state.optimizer == name(), who, ": the state was saved from ", state.optimizer,
               ", not from ", name());
  TANDEM_CHECK(
      state.group_options.size() == groups_.size() && state.param_state.size() == groups_.size(),
      who, ": the state has ", state.param_state.size(), " parameter groups, the optimizer has ",
      groups_.size());
  // Everything is checked before anything changes.
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const auto& params = groups_[gi].params();
    TANDEM_CHECK(state.param_state[gi].size() == params.size(), who, ": group ", gi,
                 " of the state has ", state.param_state[gi].size(),
                 " parameters, the optimizer's has ", params.size());
    TANDEM_CHECK(state.group_options[gi] != nullptr, who, ": group ", gi, " has no options");
    check_options(*state.group_options[gi]);
    for (size_t pi = 0; pi < params.size(); ++pi) {
      const OptimizerParamState& st = state.param_state[gi][pi];
      TANDEM_CHECK(st.step >= 0, who, ": parameter ", pi, " of group ", gi,
                   " has a negative step count ", st.step);
      for (const auto& kv : st.buffers) {
        TANDEM_CHECK(kv.second.defined() && kv.second.sizes() == params[pi].sizes(), who,
                     ": buffer \"", kv.first, "\" of parameter ", pi, " of group ", gi, " is ",
                     kv.second.defined() ? detail::describe(kv.second) : std::string("undefined"),
                     " but the parameter is ", detail::describe(params[pi]));
        TANDEM_CHECK(is_floating(kv.second.dtype()), who, ": buffer \"", kv.first,
                     "\" of parameter ", pi, " of group ", gi, " is not floating-point");
      }
    }
  }
  std::unordered_map<const TensorImpl*, OptimizerParamState> fresh;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    groups_[gi].set_options(state.group_options[gi]->clone());
    const auto& params = groups_[gi].params();
    for (size_t pi = 0; pi < params.size(); ++pi) {
      const OptimizerParamState& st = state.param_state[gi][pi];
      if (st.empty()) continue;
      OptimizerParamState copy;
      copy.step = st.step;
      for (const auto& kv : st.buffers)
        copy.buffers[kv.first] = deep_copy_like(kv.second, params[pi]);
      fresh[params[pi].impl().get()] = std::move(copy);
    }
  }
  state_ = std::move(fresh);
}

}  // namespace optim

namespace detail {

void for_each_device_dtype(const std::vector<FusedSlot>& slots,
                           const std::function<void(Device, const std::vector<FusedSlot>&)>& run) {
  const auto groups =
      group_by_device_dtype(slots, [](const FusedSlot& s) -> const Tensor& { return s.param; });
  for (const auto& part : groups) run(part.front().param.device(), part);
}

std::vector<OptimizerParamGroup> one_group(std::vector<Tensor> params) {
  std::vector<OptimizerParamGroup> g;
  g.emplace_back(std::move(params));
  return g;
}

void check_non_negative(const std::string& who, const char* option, double v) {
  TANDEM_CHECK(v >= 0.0, who, ": ", option, " must be >= 0, got ", v);
}

void check_unit_interval(const std::string& who, const char* option, double v) {
  TANDEM_CHECK(v >= 0.0 && v < 1.0, who, ": ", option, " must be in [0, 1), got ", v);
}

void check_grad(const std::string& who, const Tensor& param, const Tensor& grad) {
  TANDEM_CHECK(grad.sizes() == param.sizes() && grad.dtype() == param.dtype() &&
                   grad.device() == param.device(),
               who, ": the gradient (", describe(grad), ") does not match its parameter (",
               describe(param), ")");
}

Tensor& buffer(OptimizerParamState& st, const char* key, const Tensor& param, double init) {
  Tensor& b = st.buffers[key];
  if (!b.defined()) b = init == 0.0 ? zeros_like(param) : full_like(param, init);
  return b;
}

void check_params_distinct(const std::string& who, const std::vector<OptimizerParamGroup>& groups) {
  std::vector<Tensor> written;
  for (const auto& g : groups)
    for (const Tensor& p : g.params())
      if (p.grad().defined()) written.push_back(p);
  check_no_overlap_in_list(who.c_str(), written, "parameter");
}

void copy_overlapping_grads(std::vector<std::vector<FusedSlot>>& groups) {
  // What the step writes, by storage (usually one tensor per storage).
  std::unordered_map<const Storage*, std::vector<Tensor>> written;
  for (const auto& slots : groups) {
    for (const FusedSlot& s : slots) {
      written[s.param.impl()->storage.get()].push_back(s.param);
      for (const Tensor& t : s.state)
        if (t.defined()) written[t.impl()->storage.get()].push_back(t);
    }
  }
  for (auto& slots : groups) {
    for (FusedSlot& s : slots) {
      const auto it = written.find(s.grad.impl()->storage.get());
      if (it == written.end()) continue;
      for (const Tensor& w : it->second) {
        if (overlaps(w, s.grad)) {
          s.grad = s.grad.detach().clone();
          break;
        }
      }
    }
  }
}

void mark_written(const std::vector<FusedSlot>& slots) {
  for (const FusedSlot& s : slots) {
    s.param.impl()->storage->bump_version();
    for (const Tensor& t : s.state)
      if (t.defined()) t.impl()->storage->bump_version();
  }
}

}  // namespace detail
}  // namespace tandem
