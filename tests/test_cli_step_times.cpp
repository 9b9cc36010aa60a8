// tools/cli/step_times.h: the step time behind `tandem train`'s ETA and run
// estimate (issue 24: "make the first-steps estimate robust"). The CLI used to
// take the mean of the first five timed steps (and, for the bar's ETA, the mean
// since the epoch began), so one slow step among them, as when another process
// takes the cores for a moment, threw the estimate off many times over.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "step_times.h"

namespace {

// What the CLI did before: the mean of the timed steps seen so far.
double old_mean_estimate(const std::vector<double>& steps) {
  return std::accumulate(steps.begin(), steps.end(), 0.0) / static_cast<double>(steps.size());
}

TEST(StepTimes, OneSlowStepDoesNotThrowTheEstimateOff) {
  // 10 ms steps, one of which took a whole second (a busy machine).
  const std::vector<double> first = {0.010, 0.010, 1.000, 0.010, 0.010};
  const double old_estimate = old_mean_estimate(first);
  EXPECT_GT(old_estimate, 10 * 0.010);  // the old estimate: 208 ms, 20x off
  cli::StepTimes t(50, 0);
  for (double s : first) t.add(s);
  EXPECT_NEAR(t.median(), 0.010, 1e-12);
  EXPECT_NEAR(t.eta(1000), 10.0, 1e-9);  // 1000 steps left: 10 s, not 200 s
}

TEST(StepTimes, WarmUpStepsAreLeftOut) {
  cli::StepTimes t(50, 2);
  t.add(3.0);  // allocations, library handles
  t.add(2.0);
  EXPECT_EQ(t.counted(), 0);
  // Before any step past the warm-up: the warm-up's median, better than none.
  EXPECT_NEAR(t.median(), 2.5, 1e-12);
  for (int i = 0; i < 3; ++i) t.add(0.02);
  EXPECT_EQ(t.counted(), 3);
  EXPECT_EQ(t.sampled(), 3);
  EXPECT_NEAR(t.median(), 0.02, 1e-12);
}

TEST(StepTimes, FollowsTheRecentStepsAsTheEpochRuns) {
  cli::StepTimes t(50, 2);
  t.add(1.0);
  t.add(1.0);
  for (int i = 0; i < 100; ++i) t.add(0.010);
  EXPECT_NEAR(t.median(), 0.010, 1e-12);
  // The machine gets busy: after the window's worth of steps, only they count.
  for (int i = 0; i < 26; ++i) t.add(0.030);
  EXPECT_NEAR(t.median(), 0.030, 1e-12);  // 26 of the last 50
  for (int i = 0; i < 50; ++i) t.add(0.030);
  EXPECT_EQ(t.sampled(), 50);
  EXPECT_EQ(t.counted(), 176);
  EXPECT_NEAR(t.eta(10), 0.3, 1e-9);
}

TEST(StepTimes, EvenCountsAverageTheMiddlePair) {
  cli::StepTimes t(50, 0);
  for (double s : {0.4, 0.1, 0.3, 0.2}) t.add(s);
  EXPECT_NEAR(t.median(), 0.25, 1e-12);
}

TEST(StepTimes, NoStepsNoEstimate) {
  cli::StepTimes t;
  EXPECT_TRUE(std::isnan(t.median()));
  EXPECT_TRUE(std::isnan(t.eta(5)));
  t.add(-1.0);  // a clock going backwards is ignored
  t.add(std::nan(""));
  EXPECT_TRUE(std::isnan(t.median()));
  t.add(0.5);
  EXPECT_NEAR(t.eta(0), 0.0, 1e-12);
  EXPECT_NEAR(t.eta(-3), 0.0, 1e-12);
}

}  // namespace
