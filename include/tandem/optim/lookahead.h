// Lookahead by periodic weight averaging, as airbench94 (Keller Jordan) uses
// it: every few steps an exponential moving average of the weights takes a
// step towards them and the weights are set to the average, so the model keeps
// moving fast along its trajectory while averaging away the late noise.
//
//   optim::Lookahead la(optim::lookahead_tensors(*net));   // airbench's schedule
//   for each step s = 1, 2, ... (global, 1-based) in epoch e:
//     optimizer.step();
//     la.after_step(s, e, total_steps);
//   at each epoch's end: la.end_epoch();
//
// The Trainer drives one through TrainerOptions::lookahead. Everything runs
// with ops on the tensors' own device (no host reads).
#pragma once

#include <cstdint>
#include <vector>

#include "tandem/nn/module.h"
#include "tandem/tensor.h"

namespace tandem {
namespace optim {

// airbench94's schedule (its hyp['opt']['ema']).
struct LookaheadOptions {
  int64_t start_epoch = 3;  // no updates before this epoch (0-based)
  int64_t every = 5;        // an update when the global step count is a multiple of this
  // An update at step s of T has decay decay_base^every * (s / T)^decay_pow:
  // weak averaging early, strong at the end.
  double decay_base = 0.95;
  double decay_pow = 3.0;
};

// The floating-point parameters and buffers of `model` (BatchNorm's running
// statistics too, as airbench averages its whole state_dict), frozen ones
// included: what Lookahead averages.
std::vector<Tensor> lookahead_tensors(const nn::Module& model);

class Lookahead {
 public:
  // `tensors` are averaged and written in place (floating, defined).
  explicit Lookahead(std::vector<Tensor> tensors, LookaheadOptions options = {});

  // The schedule, after the optimizer step that made `step` steps (1-based,
  // counted over the whole run) in epoch `epoch` of a run of `total_steps`:
  // at the first due step the average starts as a copy of the weights; at
  // every later one, update(decay(step, total_steps)).
  void after_step(int64_t step, int64_t epoch, int64_t total_steps);
  // At the end of every epoch, once started: the weights are set to the
  // average (update(1.0)).
  void end_epoch();
  // After end_epoch the weights equal the average, so a run resumed at an
  // epoch boundary (steps_done = epochs done * steps per epoch) restarts the
  // average from the weights when the schedule had started it by then.
  void resume(int64_t steps_done, int64_t steps_per_epoch);

  bool due(int64_t step, int64_t epoch) const;
  double decay(int64_t step, int64_t total_steps) const;
  // average <- copy of the weights.
  void start();
  // average <- average + (1 - decay) (weights - average); weights <- average.
  // decay in [0, 1]; 1 only copies the average back. Needs start() first.
  void update(double decay);

  bool started() const { return started_; }
  const std::vector<Tensor>& average() const { return average_; }
  const LookaheadOptions& options() const { return options_; }

 private:
  std::vector<Tensor> tensors_;
  std::vector<Tensor> average_;
  LookaheadOptions options_;
  bool started_ = false;
};

}  // namespace optim
}  // namespace tandem
