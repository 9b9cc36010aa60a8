// Numerical gradient checking: central differences in float64 against
// autograd, with Caffe's error scaling. Usable from user code and from tests.
//
//   auto r = autograd::gradcheck([](const std::vector<Tensor>& in) {
//     return (in[0] * in[1]).sum();
//   }, {randn({3}, kFloat64).set_requires_grad(true), randn({3}, kFloat64)});
//   if (!r.ok) std::cerr << r.report();
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tandem/tensor.h"

namespace tandem {
namespace autograd {

struct GradcheckOptions {
  double eps = 1e-6;        // central-difference step
  double tolerance = 1e-6;  // max |analytic - numeric| / max(|analytic|, |numeric|, 1)
  // Caffe's kink avoidance: elements with |x - kink| < kink_range are skipped
  // (e.g. kink 0 for ReLU). Off when kink_range is 0.
  double kink = 0.0;
  double kink_range = 0.0;
  uint64_t seed = 0;  // for the random projection of non-scalar outputs
};

struct GradcheckInputReport {
  size_t input = 0;          // position in the inputs
  double max_error = 0.0;    // the scaled error above, worst element
  int64_t worst_index = -1;  // flat index of that element
  double analytic = 0.0;     // gradients at that element
  double numeric = 0.0;
  int64_t checked = 0;
  int64_t skipped = 0;  // near a kink
};

struct GradcheckResult {
  bool ok = true;
  std::vector<GradcheckInputReport> inputs;  // one per input that requires grad
  std::string report() const;                // one line per input
};

// Checks d fn(inputs) / d inputs for every input that requires grad (float64,
// any device). A non-scalar output y is checked through sum(y * r) with a fixed
// random r, which tests the whole vector-Jacobian product. fn must be
// deterministic (no fresh dropout masks between calls).
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});

}  // namespace autograd
}  // namespace tandem
