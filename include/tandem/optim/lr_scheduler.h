// Learning-rate schedules in libtorch's shape: a scheduler holds a reference
// to an optimizer (which must outlive it), sets every group's lr when it is
// made (step 0) and on each step(), and reports them with get_last_lr(). Each
// schedule is a closed form of the step count and of each group's lr at the
// time the scheduler was made (its base lr), as in PyTorch's
// _get_closed_form_lr. Invalid arguments throw tandem::Error naming the
// schedule and the argument.
#pragma once

#include <cstdint>
#include <vector>

#include "tandem/optim.h"

namespace tandem {
namespace optim {

// What a scheduler needs to resume (LRScheduler::state_dict): the step count
// and each group's base lr.
struct LRSchedulerState {
  int64_t last_epoch = 0;
  std::vector<double> base_lrs;
};

class LRScheduler {
 public:
  explicit LRScheduler(Optimizer& optimizer);
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  // Advances one step (an epoch or an iteration, as the caller uses it) and
  // sets each group's lr.
  void step();
  // The lr of each group as last set by this scheduler.
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  // Steps taken since the scheduler was made.
  int64_t last_epoch() const { return last_epoch_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  // Save and restore (with the optimizer's state dict, training resumes
  // exactly). load_state_dict sets the groups' lrs for the restored step;
  // it throws, changing nothing, when the group count differs or the
  // schedule has no lr at that step.
  LRSchedulerState state_dict() const;
  void load_state_dict(const LRSchedulerState& state);

 protected:
  // The lr of group `group` (base lr `base_lr`) after `epoch` steps.
  virtual double lr_at(int64_t epoch, double base_lr, size_t group) const = 0;
  // Derived constructors call this last: sets the step-0 lrs.
  void initialize();

 private:
  void apply(int64_t epoch);  // sets the lrs of step `epoch` and makes it the current step

  Optimizer& optimizer_;
  std::vector<double> base_lrs_;
  std::vector<double> last_lr_;
  int64_t last_epoch_ = 0;
};

// lr = base * gamma^floor(epoch / step_size). step_size > 0, gamma > 0.
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);

 protected:
  double lr_at(int64_t epoch, double base_lr, size_t group) const override;

 private:
  int64_t step_size_;
  double gamma_;
};

// lr = base * gamma^epoch (e.g. gamma 0.96 per epoch). gamma > 0.
class ExponentialLR : public LRScheduler {
 public:
  ExponentialLR(Optimizer& optimizer, double gamma);

 protected:
  double lr_at(int64_t epoch, double base_lr, size_t group) const override;

 private:
  double gamma_;
};

// lr = eta_min + (base - eta_min) (1 + cos(pi epoch / T_max)) / 2 (the closed
// form; past T_max it rises again, like PyTorch's). T_max > 0, eta_min >= 0.
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min = 0.0);

 protected:
  double lr_at(int64_t epoch, double base_lr, size_t group) const override;

 private:
  int64_t t_max_;
  double eta_min_;
};

// Linear warm-up (or decay) of a factor: lr = base * (start + (end - start)
// min(epoch, total_iters) / total_iters). 0 < start_factor <= 1,
// 0 <= end_factor <= 1, total_iters > 0.
class LinearLR : public LRScheduler {
 public:
  LinearLR(Optimizer& optimizer, double start_factor = 1.0 / 3.0, double end_factor = 1.0,
           int64_t total_iters = 5);

 protected:
  double lr_at(int64_t epoch, double base_lr, size_t group) const override;

 private:
  double start_factor_, end_factor_;
  int64_t total_iters_;
};

enum class AnnealStrategy { Cos, Linear };

// The 1cycle policy (PyTorch's OneCycleLR, two phases, per iteration): from
// max_lr / div_factor up to max_lr over the first pct_start * total_steps - 1
// steps, then down to max_lr / (div_factor * final_div_factor) at step
// total_steps - 1, cosine (or linear) in between. Every group gets the same
// lrs (group base lrs are ignored). Stepping past total_steps throws.
// max_lr > 0, div_factor > 0, final_div_factor > 0, and both phases at least
// one step long (1 < pct_start * total_steps < total_steps).
// Unlike PyTorch, momentum / beta1 is not cycled.
class OneCycleLR : public LRScheduler {
 public:
  OneCycleLR(Optimizer& optimizer, double max_lr, int64_t total_steps, double pct_start = 0.3,
             AnnealStrategy anneal_strategy = AnnealStrategy::Cos, double div_factor = 25.0,
             double final_div_factor = 1e4);

 protected:
  double lr_at(int64_t epoch, double base_lr, size_t group) const override;

 private:
  double max_lr_, initial_lr_, min_lr_, phase1_end_;
  int64_t total_steps_;
  AnnealStrategy anneal_;
};

// Piecewise-linear factor by step: lr = base * f(epoch), where f goes through
// (milestones[i], factors[i]) linearly and is constant before the first and
// after the last milestone. milestones strictly increasing and >= 0, one factor
// (>= 0) per milestone, at least one milestone.
class PiecewiseLinearLR : public LRScheduler {
 public:
  PiecewiseLinearLR(Optimizer& optimizer, std::vector<int64_t> milestones,
                    std::vector<double> factors);

 protected:
  double lr_at(int64_t epoch, double base_lr, size_t group) const override;

 private:
  std::vector<int64_t> milestones_;
  std::vector<double> factors_;
};

}  // namespace optim
}  // namespace tandem
