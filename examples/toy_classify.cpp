// Example 2: 2-D toy classification with a 2-hidden-layer sigmoid MLP
// (2-16-16-1, sigmoid after every layer), trained by full-batch gradient
// descent on the loss MSE/2 = 0.5 * mean((net(x) - t)^2) with targets t in
// {0, 1}; a point is classified 1 when net(x) > 0.5.
//   (a) 100 random points labelled by the side of a line (linearly separable);
//   (b) an XOR ("X-shaped") set: opposite quadrants share a label.
// Both must reach 100% training accuracy. Then (c): the same net without
// activations (a product of linear maps) and a large step diverges; the loop
// checks the loss with all_finite() every epoch and stops with a message
// instead of training on NaN. That divergence is the expected outcome.
//   toy_classify [--epochs N] [--lr X] [--diverge-lr X] [--device cpu|cuda] [--quick]
#include <cmath>
#include <cstdio>
#include <string>

#include "example_util.h"

using namespace tandem;

namespace {

nn::Sequential make_net(bool activations) {
  nn::Sequential net;
  net->push_back(nn::Linear(2, 16));
  if (activations) net->push_back(nn::Sigmoid());
  net->push_back(nn::Linear(16, 16));
  if (activations) net->push_back(nn::Sigmoid());
  net->push_back(nn::Linear(16, 1));
  if (activations) net->push_back(nn::Sigmoid());
  return net;
}

double accuracy(nn::Sequential& net, const Tensor& x, const Tensor& t) {
  NoGradGuard no_grad;
  const Tensor pred = gt(net(x), 0.5).to(kFloat32);
  return mean(eq(pred, t).to(kFloat32)).item<double>();
}

// Full-batch gradient descent, printing the learning curve (about 8 lines,
// plus every one of the first `print_first` epochs). Returns the final training accuracy, or -1
// when the loss stopped being finite (then the epoch is printed and training stops).
double train_net(nn::Sequential& net, const Tensor& x, const Tensor& t, double lr, int epochs,
                 int print_first = 1) {
  optim::SGD opt(net->parameters(), optim::SGDOptions(lr));
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    opt.zero_grad();
    const Tensor loss = 0.5 * mse_loss(net(x), t);  // MSE / 2
    // One reduction and one scalar copy: cheap enough to do every epoch.
    if (!all_finite(loss)) {
      const double v = loss.item<double>();
      std::printf("  loss became %s at epoch %d; stopping\n", std::isnan(v) ? "nan" : "inf", epoch);
      return -1.0;
    }
    loss.backward();
    opt.step();
    if (epoch <= print_first || epoch % example::every(epochs, 8) == 0)
      std::printf("  epoch %5d  loss %.3e  accuracy %5.1f%%\n", epoch, loss.item<double>(),
                  100 * accuracy(net, x, t));
  }
  return accuracy(net, x, t);
}

}  // namespace

int main(int argc, char** argv) try {
  const example::Flags flags(
      argc, argv,
      "usage: toy_classify [--epochs N] [--lr X] [--diverge-lr X] [--device cpu|cuda] [--quick]\n"
      "  --epochs N       gradient-descent steps per set (default 8000; 3000 with --quick)\n"
      "  --lr X           step size for (a) and (b) (default 5)\n"
      "  --diverge-lr X   step size for (c), the net without activations (default 5)\n",
      {"epochs", "lr", "diverge-lr"}, {"quick"});
  const bool quick = flags.has("quick");
  const int epochs = flags.get_int("epochs", quick ? 3000 : 8000);
  const double lr = flags.get_double("lr", 5.0);
  const double diverge_lr = flags.get_double("diverge-lr", 5.0);
  const Device dev = flags.device();
  manual_seed(1);
  int failures = 0;

  // The data are drawn on the CPU (the same points whatever the device).
  // (a) 100 random points in [-1, 1]^2, label 1 where x1 - 2 x2 + 0.2 > 0.
  const Tensor xa = uniform({100, 2}, -1.0, 1.0);
  const Tensor ta =
      gt(matmul(xa, from_vector<float>({1.0f, -2.0f}, {2, 1})) + 0.2, 0.0).to(kFloat32);
  // (b) XOR: 100 points in the four squares 0.5 <= |x1|, |x2| <= 1.5 (kept
  // clear of the axes); label 1 where x1 and x2 have opposite signs.
  Tensor xb = uniform({100, 2}, -1.0, 1.0);
  xb = xb + 0.5 * where(gt(xb, 0.0), ones_like(xb), -ones_like(xb));
  const Tensor tb = ne(gt(xb.t()[0], 0.0), gt(xb.t()[1], 0.0)).to(kFloat32).view({100, 1});

  std::printf("(a) linearly separable, 100 points: MLP 2-16-16-1 (sigmoid), MSE/2, lr %g\n", lr);
  nn::Sequential net_a = make_net(true);
  net_a->to(dev);
  const double acc_a = train_net(net_a, xa.to(dev), ta.to(dev), lr, epochs);
  std::printf("(b) XOR (X-shaped), 100 points: same net, lr %g\n", lr);
  nn::Sequential net_b = make_net(true);
  net_b->to(dev);
  const double acc_b = train_net(net_b, xb.to(dev), tb.to(dev), lr, epochs);
  std::printf("training accuracy: separable %.0f%%, XOR %.0f%%\n", 100 * acc_a, 100 * acc_b);
  if (acc_a < 1.0 || acc_b < 1.0) {
    std::printf("FAILED: expected 100%% training accuracy on both sets\n");
    ++failures;
  }

  // (c) Without activations the net is linear in x, and the curvature of the
  // loss grows with the product of the layers' weights: at this step size
  // gradient descent overshoots further every step until the loss overflows.
  std::printf("(c) XOR set, the same net without activations, lr %g\n", diverge_lr);
  nn::Sequential linear_net = make_net(false);
  linear_net->to(dev);
  const double acc_c = train_net(linear_net, xb.to(dev), tb.to(dev), diverge_lr, epochs, 10);
  if (acc_c >= 0.0) {
    std::printf("FAILED: expected the run without activations to diverge (accuracy %.0f%%)\n",
                100 * acc_c);
    ++failures;
  } else {
    std::printf("as expected: the linear net diverged at lr %g and the loop stopped cleanly\n",
                diverge_lr);
  }
  return failures == 0 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 2;
}
