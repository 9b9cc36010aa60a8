// gradcheck: autograd against central differences, one input element at a
// time (Caffe's GradientChecker, with PyTorch's random projection of
// non-scalar outputs).
#include "tandem/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "core/checks.h"
#include "tandem/autograd.h"
#include "tandem/generator.h"

namespace tandem {
namespace autograd {

namespace {

// The scalar that is differentiated: y itself, or sum(y * r).
Tensor project(const Tensor& y, const Tensor& r) { return r.defined() ? (y * r).sum() : y.sum(); }

}  // namespace

std::string GradcheckResult::report() const {
  std::ostringstream os;
  for (const GradcheckInputReport& r : inputs) {
    char line[256];
    std::snprintf(line, sizeof line,
                  "input %zu: max error %.3g at element %lld (analytic %.10g, numeric %.10g), "
                  "%lld checked, %lld skipped near a kink\n",
                  r.input, r.max_error, static_cast<long long>(r.worst_index), r.analytic,
                  r.numeric, static_cast<long long>(r.checked), static_cast<long long>(r.skipped));
    os << line;
  }
  os << (ok ? "gradcheck: ok" : "gradcheck: FAILED") << "\n";
  return os.str();
}

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  TANDEM_CHECK(options.eps > 0.0, "gradcheck: eps must be positive, got ", options.eps);
  TANDEM_CHECK(options.tolerance > 0.0, "gradcheck: tolerance must be positive, got ",
               options.tolerance);
  std::vector<size_t> checked;
  for (size_t i = 0; i < inputs.size(); ++i) {
    detail::check_defined("gradcheck", inputs[i], "input");
    if (!inputs[i].requires_grad()) continue;
    TANDEM_CHECK(inputs[i].dtype() == kFloat64, "gradcheck: input ", i, " is ",
                 detail::describe(inputs[i]),
                 "; finite differences need float64 inputs (use .to(kFloat64))");
    TANDEM_CHECK(inputs[i].is_leaf(), "gradcheck: input ", i,
                 " must be a leaf tensor (made with set_requires_grad(true))");
    checked.push_back(i);
  }
  TANDEM_CHECK(!checked.empty(), "gradcheck: no input requires grad");

  // Analytic gradients of the projected output.
  const Tensor y = fn(inputs);
  detail::check_defined("gradcheck", y, "output of fn");
  TANDEM_CHECK(y.dtype() == kFloat64, "gradcheck: fn returned ", detail::describe(y),
               "; expected a float64 tensor");
  Tensor r;
  if (y.numel() != 1) {
    Generator gen(options.seed);
    r = randn(y.sizes(), TensorOptions(kFloat64).device(y.device()), &gen);
  }
  std::vector<Tensor> wrt;
  for (size_t i : checked) wrt.push_back(inputs[i]);
  std::vector<Tensor> analytic;
  if (y.requires_grad()) {
    analytic = grad({project(y, r)}, wrt, {}, /*retain_graph=*/false, /*allow_unused=*/true);
  } else {
    analytic.resize(wrt.size());
  }

  GradcheckResult result;
  NoGradGuard no_grad;
  for (size_t c = 0; c < checked.size(); ++c) {
    const Tensor& x = wrt[c];
    GradcheckInputReport rep;
    rep.input = checked[c];
    const std::vector<double> a = analytic[c].defined()
                                      ? to_vector<double>(analytic[c].cpu())
                                      : std::vector<double>(static_cast<size_t>(x.numel()), 0.0);
    const std::vector<double> values = to_vector<double>(x.cpu());
    const Tensor flat = x.view({-1});
    for (int64_t j = 0; j < x.numel(); ++j) {
      const double v = values[static_cast<size_t>(j)];
      if (options.kink_range > 0.0 && std::fabs(v - options.kink) < options.kink_range) {
        ++rep.skipped;
        continue;
      }
      Tensor element = flat.slice(0, j, j + 1);
      element.fill_(v + options.eps);
      const double plus = project(fn(inputs), r).item<double>();
      element.fill_(v - options.eps);
      const double minus = project(fn(inputs), r).item<double>();
      element.fill_(v);
      const double numeric = (plus - minus) / (2.0 * options.eps);
      const double g = a[static_cast<size_t>(j)];
      const double scale = std::max({std::fabs(g), std::fabs(numeric), 1.0});
      const double err = std::fabs(g - numeric) / scale;
      ++rep.checked;
      const double e = std::isnan(err) ? INFINITY : err;  // NaN counts as a failure
      if (rep.worst_index < 0 || e > rep.max_error) {
        rep.max_error = e;
        rep.worst_index = j;
        rep.analytic = g;
        rep.numeric = numeric;
      }
    }
    if (!(rep.max_error <= options.tolerance)) result.ok = false;
    result.inputs.push_back(rep);
  }
  return result;
}

}  // namespace autograd
}  // namespace tandem
