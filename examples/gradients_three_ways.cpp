// Example 4: the gradient of
//   f(x1, x2) = (2 - x1)^2 + 10 (x2 - x1^2)^2
// at (3, 4) three ways: by autograd, by central finite differences and by hand
//   df/dx1 = -2 (2 - x1) - 40 x1 (x2 - x1^2) = 602,  df/dx2 = 20 (x2 - x1^2) = -100.
// The finite-difference table shows the error against h: truncation error
// (~h^2) shrinks with h until rounding error (~eps |f| / h) takes over. Then f
// is minimised by gradient descent on autograd gradients from two starts; the
// minimum is f = 0 at (2, 4), at the bottom of a long curved valley.
//   gradients_three_ways [--steps N] [--device cpu|cuda] [--quick]
#include <cmath>
#include <cstdio>
#include <vector>

#include "example_util.h"

using namespace tandem;

namespace {

// f in plain double, for the finite differences.
double f_host(double x1, double x2) {
  return (2 - x1) * (2 - x1) + 10 * (x2 - x1 * x1) * (x2 - x1 * x1);
}
// f on a tensor x = [x1, x2], recorded by autograd.
Tensor f(const Tensor& x) {
  const Tensor x1 = x[0], x2 = x[1];
  return square(2.0 - x1) + 10.0 * square(x2 - square(x1));
}

}  // namespace

int main(int argc, char** argv) try {
  const example::Flags flags(
      argc, argv,
      "usage: gradients_three_ways [--steps N] [--device cpu|cuda] [--quick]\n"
      "  --steps N   gradient-descent steps per start (default 40000; 4000 with --quick)\n",
      {"steps"}, {"quick"});
  const bool quick = flags.has("quick");
  const int steps = flags.get_int("steps", quick ? 4000 : 40000);
  const Device dev = flags.device();
  const TensorOptions f64 = dtype(kFloat64).device(dev);
  int failures = 0;

  // Autograd: x is a leaf, backward() fills x.grad().
  const Tensor x = from_vector<double>({3.0, 4.0}).to(dev).set_requires_grad(true);
  f(x).backward();
  const std::vector<double> g = to_vector<double>(x.grad().cpu());
  // By hand.
  const double x1 = 3.0, x2 = 4.0;
  const double a1 = -2 * (2 - x1) - 40 * x1 * (x2 - x1 * x1), a2 = 20 * (x2 - x1 * x1);
  std::printf("gradient at (3, 4):\n  autograd  (%.17g, %.17g)\n  analytic  (%.17g, %.17g)\n", g[0],
              g[1], a1, a2);
  // Every intermediate is a small integer, so both are exact in float64.
  if (g[0] != 602.0 || g[1] != -100.0 || a1 != 602.0 || a2 != -100.0) {
    std::printf("FAILED: expected exactly (602, -100) from both\n");
    ++failures;
  }

  // Central differences (f(x + h e_i) - f(x - h e_i)) / 2h in float64.
  std::printf(
      "\ncentral differences, error against the analytic gradient:\n"
      "    h         d/dx1             error     d/dx2             error\n");
  double best_err = 1e300, best_h = 0;
  for (int e = 1; e <= 12; ++e) {
    const double h = std::pow(10.0, -e);
    const double d1 = (f_host(x1 + h, x2) - f_host(x1 - h, x2)) / (2 * h);
    const double d2 = (f_host(x1, x2 + h) - f_host(x1, x2 - h)) / (2 * h);
    const double err1 = std::fabs(d1 - a1), err2 = std::fabs(d2 - a2);
    std::printf("  1e-%02d  %16.10f  %.1e  %16.10f  %.1e\n", e, d1, err1, d2, err2);
    if (err1 < best_err) best_err = err1, best_h = h;
  }
  std::printf(
      "  best d/dx1 at h = %.0e (error %.1e): truncation error ~h^2 shrinks until rounding\n"
      "  error ~1e-16 * |f| / h takes over. (f is quadratic in x2, so d/dx2 has no\n"
      "  truncation error at all: only rounding, which grows as h shrinks.)\n\n",
      best_h, best_err);
  if (!(best_err < 1e-6)) {
    std::printf("FAILED: finite differences never came within 1e-6 of the analytic gradient\n");
    ++failures;
  }

  // Gradient descent with heavy-ball momentum (optim::SGD): the valley is
  // narrow (Hessian eigenvalues ~342 and ~0.12 at the minimum), so plain steps
  // small enough to be stable would crawl along its floor.
  const double lr = 1e-3, momentum = 0.9;
  std::printf("gradient descent, lr %g, momentum %g, %d steps:\n", lr, momentum, steps);
  for (const auto& start : {std::vector<double>{3.0, 4.0}, std::vector<double>{-1.0, 0.5}}) {
    Tensor p = from_vector<double>(start, {2}, f64).set_requires_grad(true);
    optim::SGD opt({p}, optim::SGDOptions(lr).momentum(momentum));
    for (int i = 0; i < steps; ++i) {
      opt.zero_grad();
      f(p).backward();
      opt.step();
    }
    const std::vector<double> v = to_vector<double>(p.detach().cpu());
    const double fv = f_host(v[0], v[1]);
    std::printf("  from (%g, %g): f = %.3e at (%.6f, %.6f)\n", start[0], start[1], fv, v[0], v[1]);
    // Loose: the quick run stops on the valley floor, short of the minimum.
    const double tol = quick ? 0.1 : 1e-3;
    if (!(std::fabs(v[0] - 2) < tol && std::fabs(v[1] - 4) < 2 * tol && fv < tol)) {
      std::printf("FAILED: expected to get within %g of the minimum (2, 4), f = 0\n", tol);
      ++failures;
    }
  }
  return failures == 0 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 2;
}
