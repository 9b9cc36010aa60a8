// Example 4: the gradient of f(x1, x2) = (2 - x1)^2 + 10 (x2 - x1^2)^2 three
// ways (autograd, central finite differences, analytic) at (3, 4), where it is
// (602, -100); how the finite-difference error depends on h; then gradient
// descent with autograd gradients from two starting points.
//   gradients_three_ways [--steps N] [--quick]
#include <cmath>
#include <cstdio>

#include "example_util.h"

using namespace tandem;

namespace {
double f_host(double x1, double x2) {
  return (2 - x1) * (2 - x1) + 10 * (x2 - x1 * x1) * (x2 - x1 * x1);
}
Tensor f(const Tensor& x) {
  const Tensor x1 = x[0], x2 = x[1];
  return square(2.0 - x1) + 10.0 * square(x2 - square(x1));
}
}  // namespace

int main(int argc, char** argv) try {
  const bool quick = example::has_flag(argc, argv, "quick");
  const int steps = std::stoi(example::flag(argc, argv, "steps", quick ? "4000" : "40000"));
  int failures = 0;

  const Tensor x = from_vector<double>({3.0, 4.0}).set_requires_grad(true);
  f(x).backward();
  const auto g = to_vector<double>(x.grad());
  const double a1 = -2 * (2 - 3.0) - 40 * 3.0 * (4.0 - 9.0), a2 = 20 * (4.0 - 9.0);
  std::printf("at (3, 4):  autograd (%.10g, %.10g)   analytic (%.10g, %.10g)\n", g[0], g[1], a1,
              a2);
  if (g[0] != 602.0 || g[1] != -100.0 || a1 != 602.0 || a2 != -100.0) {
    std::printf("FAILED: expected (602, -100)\n");
    ++failures;
  }
  std::printf(
      "\ncentral differences: error against the analytic gradient\n   h        d/dx1            "
      "error     d/dx2            error\n");
  for (int e = 1; e <= 12; ++e) {
    const double h = std::pow(10.0, -e);
    const double d1 = (f_host(3 + h, 4) - f_host(3 - h, 4)) / (2 * h);
    const double d2 = (f_host(3, 4 + h) - f_host(3, 4 - h)) / (2 * h);
    std::printf("  1e-%02d  %.10f  %.1e  %.10f  %.1e\n", e, d1, std::fabs(d1 - 602), d2,
                std::fabs(d2 + 100));
  }
  std::printf(
      "(truncation error ~h^2 shrinks until rounding error ~eps/h takes over near h = 1e-5)\n\n");

  for (const auto& start : {std::vector<double>{3.0, 4.0}, std::vector<double>{-1.0, 0.5}}) {
    Tensor p = from_vector<double>(start).set_requires_grad(true);
    optim::SGD opt({p}, optim::SGDOptions(1e-3).momentum(0.9));
    for (int i = 0; i < steps; ++i) {
      opt.zero_grad();
      f(p).backward();
      opt.step();
    }
    const auto v = to_vector<double>(p.detach());
    const double fv = f_host(v[0], v[1]);
    std::printf("gradient descent from (%g, %g): minimum f = %.3e at (%.6f, %.6f) after %d steps\n",
                start[0], start[1], fv, v[0], v[1], steps);
    const double tol = quick ? 0.2 : 1e-3;
    if (!(std::fabs(v[0] - 2) < tol && std::fabs(v[1] - 4) < 2 * tol)) {
      std::printf("FAILED: expected the minimum (2, 4)\n");
      ++failures;
    }
  }
  return failures == 0 ? 0 : 1;
} catch (const tandem::Error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 2;
}
