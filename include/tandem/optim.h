// Optimizers in libtorch's shape: parameter groups with their own options,
// step(), zero_grad(), state_dict()/load_state_dict(). SGD, Adam, AdamW,
// RMSprop and Adagrad with PyTorch's formulas; each step is one fused update
// per parameter (one multi-tensor kernel launch per group and device on CUDA,
// a loop on the CPU), run outside the graph. Learning-rate schedules are in
// tandem/optim/lr_scheduler.h; gradient clipping in tandem/nn/clip.h.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "tandem/tensor.h"

namespace tandem {
namespace optim {

// Options common to every optimizer; each optimizer derives its own.
class OptimizerOptions {
 public:
  virtual ~OptimizerOptions() = default;
  virtual std::unique_ptr<OptimizerOptions> clone() const = 0;
  virtual double get_lr() const = 0;
  virtual void set_lr(double lr) = 0;
};

// Parameters that share options (e.g. biases without weight decay). A group
// made without options uses the optimizer's defaults.
class OptimizerParamGroup {
 public:
  explicit OptimizerParamGroup(std::vector<Tensor> params,
                               std::unique_ptr<OptimizerOptions> options = nullptr)
      : params_(std::move(params)), options_(std::move(options)) {}
  OptimizerParamGroup(const OptimizerParamGroup& other);
  OptimizerParamGroup& operator=(const OptimizerParamGroup& other);
  OptimizerParamGroup(OptimizerParamGroup&&) = default;
  OptimizerParamGroup& operator=(OptimizerParamGroup&&) = default;

  std::vector<Tensor>& params() { return params_; }
  const std::vector<Tensor>& params() const { return params_; }
  bool has_options() const { return options_ != nullptr; }
  OptimizerOptions& options();
  const OptimizerOptions& options() const;
  void set_options(std::unique_ptr<OptimizerOptions> options) { options_ = std::move(options); }

 private:
  std::vector<Tensor> params_;
  std::unique_ptr<OptimizerOptions> options_;
};

// The state an optimizer keeps for one parameter: the number of steps it took
// and named buffers ("momentum_buffer", "exp_avg", "exp_avg_sq",
// "max_exp_avg_sq", "square_avg", "grad_avg", "sum"), each of the parameter's
// shape. A parameter that never stepped has step 0 and no buffers.
struct OptimizerParamState {
  int64_t step = 0;
  std::map<std::string, Tensor> buffers;
  bool empty() const { return step == 0 && buffers.empty(); }
};

// A snapshot of an optimizer (Optimizer::state_dict) from which training
// resumes exactly: the options of every group and the state of every
// parameter, keyed by group index and parameter index within the group.
// Tensors are deep copies (on the parameters' devices); options are clones.
struct OptimizerState {
  std::string optimizer;  // name() of the optimizer it came from, e.g. "Adam"
  std::vector<std::shared_ptr<const OptimizerOptions>> group_options;
  std::vector<std::vector<OptimizerParamState>> param_state;  // [group][param]
};

class Optimizer {
 public:
  Optimizer(std::vector<OptimizerParamGroup> groups, std::unique_ptr<OptimizerOptions> defaults);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient.
  virtual void step() = 0;
  // "SGD", "Adam", ...: prefixes error messages and tags state dicts.
  virtual std::string name() const { return "optimizer"; }
  // Resets the parameters' gradients: undefined (set_to_none) or zeros.
  void zero_grad(bool set_to_none = true);
  // Adds a group; its options default to the optimizer's defaults (a group's
  // own options are checked like the constructor's).
  void add_param_group(const OptimizerParamGroup& group);
  std::vector<OptimizerParamGroup>& param_groups() { return groups_; }
  const std::vector<OptimizerParamGroup>& param_groups() const { return groups_; }
  const OptimizerOptions& defaults() const { return *defaults_; }
  // All parameters of all groups.
  std::vector<Tensor> parameters() const;

  // The state of one parameter (null before its first step).
  const OptimizerParamState* state(const Tensor& param) const;
  // Deep copy of the options and state (see OptimizerState).
  OptimizerState state_dict() const;
  // Replaces the options and state with deep copies of `state`, converted to
  // each parameter's device and dtype. Throws tandem::Error, changing nothing,
  // when the state is another optimizer's, the group count or a group's size
  // differs, or a buffer's shape is not its parameter's.
  void load_state_dict(const OptimizerState& state);

 protected:
  // Throws unless `options` are this optimizer's kind and valid.
  virtual void check_options(const OptimizerOptions& options) const { (void)options; }
  // Checks every group's options and every gradient against its parameter
  // (shape, dtype, device) before step() changes anything, so that a step that
  // throws leaves parameters and state as they were.
  void check_step() const;
  // The state of `param`, created empty; buffers of a parameter that
  // Module::to moved are converted to its new device and dtype here.
  OptimizerParamState& state_for(const Tensor& param);
  // The step of the built-in optimizers (defined in src/optim/fused.h):
  // check_step(), then per group, for each parameter with a gradient, counts
  // the step and lets fill(options, param, state, slot) add its state tensors
  // and scalars to a slot, and hands the slots of each device and dtype to
  // launch(device, slots, options), the backend's fused update. O is the
  // options type.
  template <typename O, typename Fill, typename Launch>
  void fused_step(const Fill& fill, const Launch& launch);

  std::vector<OptimizerParamGroup> groups_;
  std::unique_ptr<OptimizerOptions> defaults_;
  std::unordered_map<const TensorImpl*, OptimizerParamState> state_;
};

// The options of one optimizer, Derived, in libtorch's chained form
// (SGDOptions(0.1).momentum(0.9).nesterov(true)): the learning rate and what
// every options class needs; each option of Derived is a TANDEM_OPTIM_ARG.
template <typename Derived>
class OptionsBase : public OptimizerOptions {
 public:
  explicit OptionsBase(double lr) : lr_(lr) {}
  Derived& lr(double v) {
    lr_ = v;
    return self();
  }
  double lr() const { return lr_; }
  std::unique_ptr<OptimizerOptions> clone() const override {
    return std::make_unique<Derived>(static_cast<const Derived&>(*this));
  }
  double get_lr() const override { return lr_; }
  void set_lr(double v) override { lr_ = v; }

 protected:
  Derived& self() { return static_cast<Derived&>(*this); }

 private:
  double lr_;
};

// One option of an options class: the chained setter name(v), the getter
// name() and the field, initialised to `init`.
#define TANDEM_OPTIM_ARG(T, name, init)     \
 public:                                    \
  auto& name(T v) {                         \
    name##_ = v;                            \
    return this->self();                    \
  }                                         \
  const T& name() const { return name##_; } \
                                            \
 private:                                   \
  T name##_ = init

class SGDOptions : public OptionsBase<SGDOptions> {
 public:
  explicit SGDOptions(double lr) : OptionsBase(lr) {}
  TANDEM_OPTIM_ARG(double, momentum, 0.0);
  TANDEM_OPTIM_ARG(double, dampening, 0.0);
  TANDEM_OPTIM_ARG(double, weight_decay, 0.0);
  TANDEM_OPTIM_ARG(bool, nesterov, false);
};

// Stochastic gradient descent as in PyTorch:
//   d = grad + weight_decay * p
//   buf = d (first step), else momentum * buf + (1 - dampening) * d
//   d = nesterov ? d + momentum * buf : buf        (when momentum != 0)
//   p -= lr * d
// Errors: lr, momentum, dampening, weight_decay < 0; nesterov without
// momentum > 0 and dampening 0.
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, const SGDOptions& options);
  SGD(std::vector<OptimizerParamGroup> groups, const SGDOptions& defaults);
  void step() override;
  std::string name() const override { return "SGD"; }
  // The momentum buffer of a parameter (undefined before its first step). After
  // Module::to moves the parameter, the next step moves the buffer with it.
  Tensor momentum_buffer(const Tensor& param) const;

 protected:
  void check_options(const OptimizerOptions& options) const override;
};

// Options of Adam and AdamW (AdamWOptions differs only in its default
// weight_decay, 1e-2 instead of 0).
using AdamBetas = std::tuple<double, double>;
template <typename Derived>
class AdamOptionsBase : public OptionsBase<Derived> {
 public:
  explicit AdamOptionsBase(double lr, double weight_decay)
      : OptionsBase<Derived>(lr), weight_decay_(weight_decay) {}
  TANDEM_OPTIM_ARG(AdamBetas, betas, AdamBetas(0.9, 0.999));
  TANDEM_OPTIM_ARG(double, eps, 1e-8);
  TANDEM_OPTIM_ARG(double, weight_decay, 0.0);
  TANDEM_OPTIM_ARG(bool, amsgrad, false);
};

class AdamOptions : public AdamOptionsBase<AdamOptions> {
 public:
  explicit AdamOptions(double lr = 1e-3) : AdamOptionsBase(lr, 0.0) {}
};
class AdamWOptions : public AdamOptionsBase<AdamWOptions> {
 public:
  explicit AdamWOptions(double lr = 1e-3) : AdamOptionsBase(lr, 1e-2) {}
};

// Adam as in PyTorch (t = the parameter's step count, from 1):
//   g = grad + weight_decay * p
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   amsgrad: vmax = max(vmax, v), used for v below
//   p -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Errors: lr, eps, weight_decay < 0; a beta outside [0, 1).
class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, const AdamOptions& options);
  Adam(std::vector<OptimizerParamGroup> groups, const AdamOptions& defaults);
  void step() override;
  std::string name() const override { return "Adam"; }

 protected:
  void check_options(const OptimizerOptions& options) const override;
};

// AdamW: Adam with decoupled weight decay, p *= 1 - lr * weight_decay before
// the Adam update (which then sees the plain gradient).
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Tensor> params, const AdamWOptions& options);
  AdamW(std::vector<OptimizerParamGroup> groups, const AdamWOptions& defaults);
  void step() override;
  std::string name() const override { return "AdamW"; }

 protected:
  void check_options(const OptimizerOptions& options) const override;
};

class RMSpropOptions : public OptionsBase<RMSpropOptions> {
 public:
  explicit RMSpropOptions(double lr = 1e-2) : OptionsBase(lr) {}
  TANDEM_OPTIM_ARG(double, alpha, 0.99);
  TANDEM_OPTIM_ARG(double, eps, 1e-8);
  TANDEM_OPTIM_ARG(double, weight_decay, 0.0);
  TANDEM_OPTIM_ARG(double, momentum, 0.0);
  TANDEM_OPTIM_ARG(bool, centered, false);
};

// RMSprop as in PyTorch:
//   g = grad + weight_decay * p;  sq = alpha sq + (1 - alpha) g^2
//   centered: ga = alpha ga + (1 - alpha) g; avg = sqrt(sq - ga^2) + eps
//   else avg = sqrt(sq) + eps
//   momentum > 0: buf = momentum buf + g / avg; p -= lr buf
//   else p -= lr g / avg
// Errors: lr, eps, weight_decay, momentum < 0; alpha outside [0, 1).
class RMSprop : public Optimizer {
 public:
  RMSprop(std::vector<Tensor> params, const RMSpropOptions& options);
  RMSprop(std::vector<OptimizerParamGroup> groups, const RMSpropOptions& defaults);
  void step() override;
  std::string name() const override { return "RMSprop"; }

 protected:
  void check_options(const OptimizerOptions& options) const override;
};

class AdagradOptions : public OptionsBase<AdagradOptions> {
 public:
  explicit AdagradOptions(double lr = 1e-2) : OptionsBase(lr) {}
  TANDEM_OPTIM_ARG(double, lr_decay, 0.0);
  TANDEM_OPTIM_ARG(double, weight_decay, 0.0);
  TANDEM_OPTIM_ARG(double, initial_accumulator_value, 0.0);
  TANDEM_OPTIM_ARG(double, eps, 1e-10);
};

// Adagrad as in PyTorch (t = the parameter's step count, from 1):
//   g = grad + weight_decay * p;  clr = lr / (1 + (t - 1) lr_decay)
//   sum += g^2 (sum starts at initial_accumulator_value);  p -= clr g / (sqrt(sum) + eps)
// Errors: lr, lr_decay, weight_decay, initial_accumulator_value, eps < 0.
class Adagrad : public Optimizer {
 public:
  Adagrad(std::vector<Tensor> params, const AdagradOptions& options);
  Adagrad(std::vector<OptimizerParamGroup> groups, const AdagradOptions& defaults);
  void step() override;
  std::string name() const override { return "Adagrad"; }

 protected:
  void check_options(const OptimizerOptions& options) const override;
};

}  // namespace optim
}  // namespace tandem

#undef TANDEM_OPTIM_ARG
