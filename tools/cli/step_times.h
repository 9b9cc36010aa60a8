// The time a training step takes, for the progress bar's ETA and the run's
// time estimate (tools/cli/train.cpp): the median of the recent steps, so that
// the slow first steps (allocations, library handles, cold caches) and the odd
// slow step (another process taking the cores for a moment) do not throw the
// estimate off, and updated as the epoch runs. Header-only, no tandem
// dependency, so that tests/test_cli_step_times.cpp can feed it timings.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <vector>

namespace cli {

class StepTimes {
 public:
  // The median of the last `window` steps, after the first `warmup` given.
  explicit StepTimes(size_t window = 50, int64_t warmup = 2)
      : window_(std::max<size_t>(window, 1)), warmup_left_(std::max<int64_t>(warmup, 0)) {}

  // One step took `seconds` (a negative or non-finite time is ignored).
  void add(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return;
    if (warmup_left_ > 0) {
      --warmup_left_;
      warmup_.push_back(seconds);
      return;
    }
    recent_.push_back(seconds);
    if (recent_.size() > window_) recent_.pop_front();
    ++counted_;
  }

  // Steps counted after the warm-up (all of them, not only the window's).
  int64_t counted() const { return counted_; }
  // The steps median() is taken over.
  int64_t sampled() const {
    return static_cast<int64_t>(recent_.empty() ? warmup_.size() : recent_.size());
  }

  // Seconds per step: the median of the window; of the warm-up steps while no
  // other step has come (a run of two or three steps); NaN before any step.
  double median() const {
    const std::deque<double>& from = recent_.empty() ? warmup_ : recent_;
    if (from.empty()) return std::numeric_limits<double>::quiet_NaN();
    std::vector<double> v(from.begin(), from.end());
    const size_t mid = v.size() / 2;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
    double m = v[mid];
    if (v.size() % 2 == 0) {
      m = (m + *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid))) / 2;
    }
    return m;
  }

  // Seconds left for `steps_left` more steps (NaN before any step).
  double eta(int64_t steps_left) const {
    return median() * static_cast<double>(std::max<int64_t>(steps_left, 0));
  }

 private:
  size_t window_;
  int64_t warmup_left_;
  int64_t counted_ = 0;
  std::deque<double> warmup_, recent_;
};

}  // namespace cli
