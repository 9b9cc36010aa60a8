// Lookahead (include/tandem/optim/lookahead.h): airbench's periodic weight
// averaging, with ops under NoGradGuard on the weights' own device.
#include "tandem/optim/lookahead.h"

#include <cmath>

#include "core/checks.h"
#include "tandem/autograd.h"
#include "tandem/error.h"
#include "tandem/ops.h"

namespace tandem {
namespace optim {

std::vector<Tensor> lookahead_tensors(const nn::Module& model) {
  std::vector<Tensor> out;
  for (const Tensor& p : model.parameters()) {
    if (p.defined() && is_floating(p.dtype())) out.push_back(p);
  }
  for (const Tensor& b : model.buffers()) {
    if (b.defined() && is_floating(b.dtype())) out.push_back(b);
  }
  return out;
}

Lookahead::Lookahead(std::vector<Tensor> tensors, LookaheadOptions options)
    : tensors_(std::move(tensors)), options_(options) {
  TANDEM_CHECK(options_.every >= 1, "Lookahead: every must be >= 1, got ", options_.every);
  TANDEM_CHECK(options_.start_epoch >= 0, "Lookahead: start_epoch must be >= 0, got ",
               options_.start_epoch);
  TANDEM_CHECK(options_.decay_base >= 0 && options_.decay_base <= 1,
               "Lookahead: decay_base must be in [0, 1], got ", options_.decay_base);
  TANDEM_CHECK(std::isfinite(options_.decay_pow) && options_.decay_pow >= 0,
               "Lookahead: decay_pow must be >= 0, got ", options_.decay_pow);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    TANDEM_CHECK(tensors_[i].defined() && is_floating(tensors_[i].dtype()), "Lookahead: tensor ", i,
                 " must be a defined floating-point tensor, got ",
                 tensors_[i].defined() ? detail::describe(tensors_[i]) : std::string("undefined"));
  }
}

bool Lookahead::due(int64_t step, int64_t epoch) const {
  return epoch >= options_.start_epoch && step % options_.every == 0;
}

double Lookahead::decay(int64_t step, int64_t total_steps) const {
  TANDEM_CHECK(total_steps > 0 && step >= 0, "Lookahead: need 0 <= step and total_steps > 0, got ",
               step, " of ", total_steps);
  const double progress =
      std::min(1.0, static_cast<double>(step) / static_cast<double>(total_steps));
  return std::pow(options_.decay_base, static_cast<double>(options_.every)) *
         std::pow(progress, options_.decay_pow);
}

void Lookahead::start() {
  NoGradGuard no_grad;
  average_.clear();
  for (const Tensor& t : tensors_) average_.push_back(t.detach().clone());
  started_ = true;
}

void Lookahead::update(double decay) {
  TANDEM_CHECK(started_, "Lookahead::update: the average has not started (call start())");
  TANDEM_CHECK(decay >= 0 && decay <= 1, "Lookahead::update: decay must be in [0, 1], got ", decay);
  NoGradGuard no_grad;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    Tensor& avg = average_[i];
    if (decay < 1.0) avg.add_(tensors_[i].detach() - avg, 1.0 - decay);
    tensors_[i].copy_(avg);
  }
}

void Lookahead::after_step(int64_t step, int64_t epoch, int64_t total_steps) {
  if (!due(step, epoch)) return;
  if (!started_) {
    start();
  } else {
    update(decay(step, total_steps));
  }
}

void Lookahead::end_epoch() {
  if (started_) update(1.0);
}

void Lookahead::resume(int64_t steps_done, int64_t steps_per_epoch) {
  TANDEM_CHECK(steps_done >= 0 && steps_per_epoch > 0,
               "Lookahead::resume: need steps_done >= 0 and steps_per_epoch > 0, got ", steps_done,
               " and ", steps_per_epoch);
  // The first due step: the first multiple of `every` in epoch start_epoch or later.
  const int64_t first_in_start = options_.start_epoch * steps_per_epoch + 1;
  const int64_t first_due = (first_in_start + options_.every - 1) / options_.every * options_.every;
  if (!started_ && first_due <= steps_done) start();
}

}  // namespace optim
}  // namespace tandem
