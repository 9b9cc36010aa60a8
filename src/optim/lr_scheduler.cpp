// Learning-rate schedules (include/tandem/optim/lr_scheduler.h): closed forms
// of the step count, written into each group's options with set_lr.
#include "tandem/optim/lr_scheduler.h"

#include <cmath>

#include "tandem/error.h"

namespace tandem {
namespace optim {

LRScheduler::LRScheduler(Optimizer& optimizer) : optimizer_(optimizer) {
  for (const auto& g : optimizer_.param_groups()) base_lrs_.push_back(g.options().get_lr());
}

void LRScheduler::initialize() { apply(0); }

void LRScheduler::step() { apply(last_epoch_ + 1); }

LRSchedulerState LRScheduler::state_dict() const { return {last_epoch_, base_lrs_}; }

void LRScheduler::load_state_dict(const LRSchedulerState& state) {
  TANDEM_CHECK(state.last_epoch >= 0, "LRScheduler::load_state_dict: last_epoch must be >= 0, got ",
               state.last_epoch);
  TANDEM_CHECK(state.base_lrs.size() == base_lrs_.size(),
               "LRScheduler::load_state_dict: the state has ", state.base_lrs.size(),
               " base lrs, the scheduler has ", base_lrs_.size(), " parameter groups");
  const std::vector<double> saved = base_lrs_;
  base_lrs_ = state.base_lrs;
  try {
    apply(state.last_epoch);
  } catch (...) {
    base_lrs_ = saved;
    throw;
  }
}

void LRScheduler::apply(int64_t epoch) {
  auto& groups = optimizer_.param_groups();
  TANDEM_CHECK(groups.size() == base_lrs_.size(), "LRScheduler: the optimizer has ", groups.size(),
               " parameter groups but had ", base_lrs_.size(), " when the scheduler was made");
  // Every lr is computed (a schedule may throw, e.g. past OneCycleLR's end)
  // before anything changes.
  std::vector<double> lrs(groups.size());
  for (size_t i = 0; i < groups.size(); ++i) lrs[i] = lr_at(epoch, base_lrs_[i], i);
  for (size_t i = 0; i < groups.size(); ++i) groups[i].options().set_lr(lrs[i]);
  last_lr_ = std::move(lrs);
  last_epoch_ = epoch;
}

// ---- StepLR ---------------------------------------------------------------------------

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
  TANDEM_CHECK(step_size > 0, "StepLR: step_size must be > 0, got ", step_size);
  TANDEM_CHECK(gamma > 0.0, "StepLR: gamma must be > 0, got ", gamma);
  initialize();
}

double StepLR::lr_at(int64_t epoch, double base_lr, size_t) const {
  return base_lr * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}

// ---- ExponentialLR ------------------------------------------------------------------

ExponentialLR::ExponentialLR(Optimizer& optimizer, double gamma)
    : LRScheduler(optimizer), gamma_(gamma) {
  TANDEM_CHECK(gamma > 0.0, "ExponentialLR: gamma must be > 0, got ", gamma);
  initialize();
}

double ExponentialLR::lr_at(int64_t epoch, double base_lr, size_t) const {
  return base_lr * std::pow(gamma_, static_cast<double>(epoch));
}

// ---- CosineAnnealingLR --------------------------------------------------------------

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min)
    : LRScheduler(optimizer), t_max_(T_max), eta_min_(eta_min) {
  TANDEM_CHECK(T_max > 0, "CosineAnnealingLR: T_max must be > 0, got ", T_max);
  TANDEM_CHECK(eta_min >= 0.0, "CosineAnnealingLR: eta_min must be >= 0, got ", eta_min);
  initialize();
}

double CosineAnnealingLR::lr_at(int64_t epoch, double base_lr, size_t) const {
  const double pi = std::acos(-1.0);
  return eta_min_ +
         (base_lr - eta_min_) *
             (1.0 + std::cos(pi * static_cast<double>(epoch) / static_cast<double>(t_max_))) / 2.0;
}

// ---- LinearLR -----------------------------------------------------------------------

LinearLR::LinearLR(Optimizer& optimizer, double start_factor, double end_factor,
                   int64_t total_iters)
    : LRScheduler(optimizer),
      start_factor_(start_factor),
      end_factor_(end_factor),
      total_iters_(total_iters) {
  TANDEM_CHECK(start_factor > 0.0 && start_factor <= 1.0,
               "LinearLR: start_factor must be in (0, 1], got ", start_factor);
  TANDEM_CHECK(end_factor >= 0.0 && end_factor <= 1.0,
               "LinearLR: end_factor must be in [0, 1], got ", end_factor);
  TANDEM_CHECK(total_iters > 0, "LinearLR: total_iters must be > 0, got ", total_iters);
  initialize();
}

double LinearLR::lr_at(int64_t epoch, double base_lr, size_t) const {
  const int64_t e = epoch < total_iters_ ? epoch : total_iters_;
  return base_lr * (start_factor_ + (end_factor_ - start_factor_) * static_cast<double>(e) /
                                        static_cast<double>(total_iters_));
}

// ---- OneCycleLR ---------------------------------------------------------------------

OneCycleLR::OneCycleLR(Optimizer& optimizer, double max_lr, int64_t total_steps, double pct_start,
                       AnnealStrategy anneal_strategy, double div_factor, double final_div_factor)
    : LRScheduler(optimizer),
      max_lr_(max_lr),
      initial_lr_(max_lr / div_factor),
      min_lr_(max_lr / div_factor / final_div_factor),
      phase1_end_(pct_start * static_cast<double>(total_steps) - 1.0),
      total_steps_(total_steps),
      anneal_(anneal_strategy) {
  TANDEM_CHECK(max_lr > 0.0, "OneCycleLR: max_lr must be > 0, got ", max_lr);
  TANDEM_CHECK(total_steps > 1, "OneCycleLR: total_steps must be > 1, got ", total_steps);
  TANDEM_CHECK(pct_start >= 0.0 && pct_start <= 1.0,
               "OneCycleLR: pct_start must be in [0, 1], got ", pct_start);
  TANDEM_CHECK(div_factor > 0.0, "OneCycleLR: div_factor must be > 0, got ", div_factor);
  TANDEM_CHECK(final_div_factor > 0.0, "OneCycleLR: final_div_factor must be > 0, got ",
               final_div_factor);
  // Zero-length phases would divide by zero (NaN lrs in PyTorch).
  TANDEM_CHECK(phase1_end_ > 0.0 && phase1_end_ < static_cast<double>(total_steps - 1),
               "OneCycleLR: pct_start * total_steps must be in (1, total_steps) so that both "
               "phases last at least one step, got pct_start ",
               pct_start, " and total_steps ", total_steps);
  initialize();
}

double OneCycleLR::lr_at(int64_t epoch, double, size_t) const {
  TANDEM_CHECK(epoch <= total_steps_, "OneCycleLR: tried to step ", epoch,
               " times, but total_steps is ", total_steps_);
  const auto anneal = [&](double start, double end, double pct) {
    if (anneal_ == AnnealStrategy::Linear) return (end - start) * pct + start;
    return end + (start - end) / 2.0 * (std::cos(std::acos(-1.0) * pct) + 1.0);
  };
  const auto e = static_cast<double>(epoch);
  if (e <= phase1_end_) return anneal(initial_lr_, max_lr_, e / phase1_end_);
  const double end = static_cast<double>(total_steps_ - 1);
  return anneal(max_lr_, min_lr_, (e - phase1_end_) / (end - phase1_end_));
}

// ---- PiecewiseLinearLR ----------------------------------------------------------------

PiecewiseLinearLR::PiecewiseLinearLR(Optimizer& optimizer, std::vector<int64_t> milestones,
                                     std::vector<double> factors)
    : LRScheduler(optimizer), milestones_(std::move(milestones)), factors_(std::move(factors)) {
  TANDEM_CHECK(!milestones_.empty(), "PiecewiseLinearLR: needs at least one milestone");
  TANDEM_CHECK(milestones_.size() == factors_.size(), "PiecewiseLinearLR: ", milestones_.size(),
               " milestones but ", factors_.size(), " factors (need one factor per milestone)");
  for (size_t i = 0; i < milestones_.size(); ++i) {
    TANDEM_CHECK(milestones_[i] >= 0, "PiecewiseLinearLR: milestone ", i, " is negative (",
                 milestones_[i], ")");
    TANDEM_CHECK(i == 0 || milestones_[i] > milestones_[i - 1],
                 "PiecewiseLinearLR: milestones must be strictly increasing, got ",
                 milestones_[i - (i > 0 ? 1 : 0)], " then ", milestones_[i]);
    TANDEM_CHECK(factors_[i] >= 0.0, "PiecewiseLinearLR: factor ", i, " must be >= 0, got ",
                 factors_[i]);
  }
  initialize();
}

double PiecewiseLinearLR::lr_at(int64_t epoch, double base_lr, size_t) const {
  if (epoch <= milestones_.front()) return base_lr * factors_.front();
  for (size_t i = 1; i < milestones_.size(); ++i) {
    if (epoch <= milestones_[i]) {
      const double t = static_cast<double>(epoch - milestones_[i - 1]) /
                       static_cast<double>(milestones_[i] - milestones_[i - 1]);
      return base_lr * (factors_[i - 1] + (factors_[i] - factors_[i - 1]) * t);
    }
  }
  return base_lr * factors_.back();
}

}  // namespace optim
}  // namespace tandem
