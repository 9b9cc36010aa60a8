// Learning-rate schedules against their closed forms (written out here), per
// group base lrs, get_last_lr, the lr an optimizer actually uses, and every
// argument error.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <cmath>
#include <functional>
#include <vector>

#include "test_util.h"

namespace {

using namespace tandem;  // NOLINT
using tt::expect_error;

const double kPi = std::acos(-1.0);

// An SGD with two groups of base lrs 0.1 and 0.02.
struct TwoGroups {
  Tensor p = zeros({2}, requires_grad());
  Tensor q = zeros({3}, requires_grad());
  std::unique_ptr<optim::SGD> opt;
  TwoGroups() {
    std::vector<optim::OptimizerParamGroup> groups;
    groups.emplace_back(std::vector<Tensor>{p});
    groups.emplace_back(std::vector<Tensor>{q}, optim::SGDOptions(0.02).clone());
    opt = std::make_unique<optim::SGD>(groups, optim::SGDOptions(0.1));
  }
  double lr(size_t g) const { return opt->param_groups()[g].options().get_lr(); }
};

// Steps `sched` through `steps` steps, checking each group's lr against
// expected(step, base) before every step.
void expect_schedule(TwoGroups& t, optim::LRScheduler& sched, int steps,
                     const std::function<double(int, double)>& expected) {
  const double bases[2] = {0.1, 0.02};
  for (int s = 0; s <= steps; ++s) {
    SCOPED_TRACE(testing::Message() << "step " << s);
    EXPECT_EQ(sched.last_epoch(), s);
    ASSERT_EQ(sched.get_last_lr().size(), 2u);
    for (size_t g = 0; g < 2; ++g) {
      const double want = expected(s, bases[g]);
      EXPECT_NEAR(t.lr(g), want, 1e-15 * std::max(1.0, std::fabs(want)));
      EXPECT_DOUBLE_EQ(sched.get_last_lr()[g], t.lr(g));
    }
    if (s < steps) sched.step();
  }
}

TEST(LRScheduler, StepLR) {
  TwoGroups t;
  optim::StepLR sched(*t.opt, 3, 0.5);
  expect_schedule(t, sched, 10, [](int s, double base) { return base * std::pow(0.5, s / 3); });
  EXPECT_DOUBLE_EQ(sched.base_lrs()[1], 0.02);
}

TEST(LRScheduler, ExponentialLR) {
  TwoGroups t;
  optim::ExponentialLR sched(*t.opt, 0.96);
  expect_schedule(t, sched, 20, [](int s, double base) { return base * std::pow(0.96, s); });
}

TEST(LRScheduler, CosineAnnealingLR) {
  TwoGroups t;
  optim::CosineAnnealingLR sched(*t.opt, 8, 0.001);
  expect_schedule(t, sched, 12, [](int s, double base) {
    return 0.001 + (base - 0.001) * (1.0 + std::cos(kPi * s / 8.0)) / 2.0;
  });
  EXPECT_NEAR(sched.get_last_lr()[0], 0.001 + 0.099 * (1.0 + std::cos(kPi * 1.5)) / 2.0, 1e-15);
}

TEST(LRScheduler, LinearWarmup) {
  TwoGroups t;
  optim::LinearLR sched(*t.opt, 0.1, 1.0, 4);
  // Warm-up factors 0.1, 0.325, 0.55, 0.775, then 1 for good.
  const double factors[] = {0.1, 0.325, 0.55, 0.775, 1.0, 1.0, 1.0};
  expect_schedule(t, sched, 6, [&](int s, double base) { return base * factors[s]; });
}

// PyTorch's OneCycleLR (two phases, cos), total_steps 10, pct_start 0.3:
// phase 1 ends at step 2, phase 2 at step 9.
TEST(LRScheduler, OneCycleLR) {
  TwoGroups t;
  const double max_lr = 1.0, initial = max_lr / 25.0, min_lr = initial / 1e4;
  optim::OneCycleLR sched(*t.opt, max_lr, 10, 0.3);
  const auto cos_anneal = [](double start, double end, double pct) {
    return end + (start - end) / 2.0 * (std::cos(kPi * pct) + 1.0);
  };
  expect_schedule(t, sched, 10, [&](int s, double) {
    if (s <= 2) return cos_anneal(initial, max_lr, s / 2.0);
    return cos_anneal(max_lr, min_lr, (s - 2.0) / 7.0);
  });
  EXPECT_NEAR(t.lr(0), cos_anneal(max_lr, min_lr, 8.0 / 7.0), 1e-15);
  expect_error([&] { sched.step(); }, "OneCycleLR: tried to step 11 times, but total_steps is 10");
  EXPECT_EQ(sched.last_epoch(), 10);  // the failed step changed nothing
  EXPECT_NEAR(t.lr(0), cos_anneal(max_lr, min_lr, 8.0 / 7.0), 1e-15);

  TwoGroups u;
  optim::OneCycleLR linear(*u.opt, 0.5, 5, 0.5, optim::AnnealStrategy::Linear, 10.0, 100.0);
  // Phase 1 ends at step 1.5: 0.05 -> 0.5; phase 2 ends at step 4: 0.5 -> 0.0005.
  EXPECT_NEAR(u.lr(0), 0.05, 1e-15);
  linear.step();
  EXPECT_NEAR(u.lr(1), 0.05 + (0.5 - 0.05) / 1.5, 1e-15);
  linear.step();
  EXPECT_NEAR(u.lr(0), 0.5 + (0.0005 - 0.5) * 0.5 / 2.5, 1e-15);
}

TEST(LRScheduler, PiecewiseLinearLR) {
  TwoGroups t;
  optim::PiecewiseLinearLR sched(*t.opt, {2, 4, 8}, {0.0, 1.0, 0.25});
  const double factors[] = {0.0, 0.0, 0.0, 0.5, 1.0, 0.8125, 0.625, 0.4375, 0.25, 0.25, 0.25};
  expect_schedule(t, sched, 10, [&](int s, double base) { return base * factors[s]; });
}

// The optimizer steps with the lr the scheduler set.
TEST(LRScheduler, OptimizerUsesTheScheduledLr) {
  const Tensor p = ones({1}, requires_grad());
  optim::SGD opt({p}, optim::SGDOptions(1.0));
  optim::StepLR sched(opt, 1, 0.5);
  double expected = 1.0, lr = 1.0;
  for (int s = 0; s < 4; ++s) {
    Tensor q = p;
    q.mutable_grad() = ones({1});
    opt.step();
    expected -= lr;
    sched.step();
    lr *= 0.5;
    EXPECT_DOUBLE_EQ(p.detach().item<double>(), expected);
  }
  // Adding a group after the scheduler was made is reported at the next step.
  opt.add_param_group(optim::OptimizerParamGroup(std::vector<Tensor>{zeros({1}, requires_grad())}));
  expect_error([&] { sched.step(); },
               "LRScheduler: the optimizer has 2 parameter groups but had 1 when the scheduler "
               "was made");
}

// A scheduler made afresh and given a saved state continues where the saved
// one was, and sets the optimizer's lrs for that step.
TEST(LRScheduler, StateDictResumes) {
  TwoGroups t;
  optim::CosineAnnealingLR sched(*t.opt, 7, 0.001);
  for (int s = 0; s < 4; ++s) sched.step();
  const optim::LRSchedulerState saved = sched.state_dict();
  EXPECT_EQ(saved.last_epoch, 4);
  sched.step();
  const std::vector<double> want = sched.get_last_lr();

  TwoGroups u;  // a restarted run: fresh optimizer (its lrs the initial ones), fresh scheduler
  optim::CosineAnnealingLR resumed(*u.opt, 7, 0.001);
  resumed.load_state_dict(saved);
  EXPECT_EQ(resumed.last_epoch(), 4);
  resumed.step();
  ASSERT_EQ(resumed.get_last_lr().size(), 2u);
  for (size_t g = 0; g < 2; ++g) {
    EXPECT_DOUBLE_EQ(resumed.get_last_lr()[g], want[g]);
    EXPECT_DOUBLE_EQ(u.lr(g), want[g]);
  }

  optim::LRSchedulerState bad = saved;
  bad.base_lrs.pop_back();
  expect_error([&] { resumed.load_state_dict(bad); },
               "LRScheduler::load_state_dict: the state has 1 base lrs, the scheduler has 2 "
               "parameter groups");
  bad = saved;
  bad.last_epoch = -3;
  expect_error([&] { resumed.load_state_dict(bad); },
               "LRScheduler::load_state_dict: last_epoch must be >= 0, got -3");
  TwoGroups w;
  optim::OneCycleLR cycle(*w.opt, 1.0, 10);
  optim::LRSchedulerState past = cycle.state_dict();
  past.last_epoch = 12;
  past.base_lrs = {5.0, 6.0};
  expect_error([&] { cycle.load_state_dict(past); }, "OneCycleLR: tried to step 12 times");
  EXPECT_EQ(cycle.last_epoch(), 0);  // unchanged
  EXPECT_EQ(cycle.base_lrs(), std::vector<double>({0.1, 0.02}));
}

TEST(LRScheduler, ArgumentErrors) {
  TwoGroups t;
  optim::Optimizer& o = *t.opt;
  expect_error([&] { optim::StepLR(o, 0); }, "StepLR: step_size must be > 0, got 0");
  expect_error([&] { optim::StepLR(o, 2, -0.1); }, "StepLR: gamma must be > 0, got -0.1");
  expect_error([&] { optim::ExponentialLR(o, 0.0); }, "ExponentialLR: gamma must be > 0, got 0");
  expect_error([&] { optim::CosineAnnealingLR(o, 0); },
               "CosineAnnealingLR: T_max must be > 0, got 0");
  expect_error([&] { optim::CosineAnnealingLR(o, 5, -1.0); },
               "CosineAnnealingLR: eta_min must be >= 0, got -1");
  expect_error([&] { optim::LinearLR(o, 0.0); }, "LinearLR: start_factor must be in (0, 1], got 0");
  expect_error([&] { optim::LinearLR(o, 0.5, 1.5); },
               "LinearLR: end_factor must be in [0, 1], got 1.5");
  expect_error([&] { optim::LinearLR(o, 0.5, 1.0, 0); },
               "LinearLR: total_iters must be > 0, got 0");
  expect_error([&] { optim::OneCycleLR(o, 0.0, 10); }, "OneCycleLR: max_lr must be > 0, got 0");
  expect_error([&] { optim::OneCycleLR(o, 1.0, 1); }, "OneCycleLR: total_steps must be > 1, got 1");
  expect_error([&] { optim::OneCycleLR(o, 1.0, 10, 1.5); },
               "OneCycleLR: pct_start must be in [0, 1], got 1.5");
  expect_error([&] { optim::OneCycleLR(o, 1.0, 10, 0.3, optim::AnnealStrategy::Cos, 0.0); },
               "OneCycleLR: div_factor must be > 0, got 0");
  expect_error([&] { optim::OneCycleLR(o, 1.0, 10, 0.3, optim::AnnealStrategy::Cos, 25.0, -1.0); },
               "OneCycleLR: final_div_factor must be > 0, got -1");
  expect_error([&] { optim::OneCycleLR(o, 1.0, 10, 0.1); },
               "OneCycleLR: pct_start * total_steps must be in (1, total_steps)");
  expect_error([&] { optim::PiecewiseLinearLR(o, {}, {}); },
               "PiecewiseLinearLR: needs at least one milestone");
  expect_error(
      [&] {
        optim::PiecewiseLinearLR(o, {1, 2}, {1.0});
      },
      "PiecewiseLinearLR: 2 milestones but 1 factors");
  expect_error([&] { optim::PiecewiseLinearLR(o, {-1}, {1.0}); },
               "PiecewiseLinearLR: milestone 0 is negative (-1)");
  expect_error(
      [&] {
        optim::PiecewiseLinearLR(o, {3, 3}, {1.0, 0.5});
      },
      "PiecewiseLinearLR: milestones must be strictly increasing, got 3 then 3");
  expect_error(
      [&] {
        optim::PiecewiseLinearLR(o, {1, 3}, {1.0, -0.5});
      },
      "PiecewiseLinearLR: factor 1 must be >= 0, got -0.5");
  // A failed constructor leaves the lrs alone.
  EXPECT_DOUBLE_EQ(t.lr(0), 0.1);
  EXPECT_DOUBLE_EQ(t.lr(1), 0.02);
}

}  // namespace
