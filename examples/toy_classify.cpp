// Example 2: 2-D toy classification with a 2-hidden-layer sigmoid MLP, loss
// MSE/2, full-batch gradient descent, on (a) 100 linearly separable random
// points and (b) an XOR ("X-shaped") set; both must reach 100% training
// accuracy. (c) The same net without activations and a large step diverges;
// the loop notices the non-finite loss and stops with a message.
//   toy_classify [--epochs N] [--quick]
#include <cmath>
#include <cstdio>

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

// Trains by full-batch gradient descent; returns the final training accuracy,
// or -1 when the loss stopped being finite.
double train(const char* name, nn::Sequential& net, const Tensor& x, const Tensor& t, double lr,
             int epochs) {
  optim::SGD opt(net->parameters(), optim::SGDOptions(lr));
  std::printf("%s\n", name);
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    opt.zero_grad();
    const Tensor loss = 0.5 * mse_loss(net(x), t);  // MSE / 2
    if (!all_finite(loss)) {
      std::printf("  loss became %s at epoch %d; stopping\n",
                  std::isnan(loss.item<double>()) ? "nan" : "inf", epoch);
      return -1.0;
    }
    loss.backward();
    opt.step();
    if (epoch == 1 || epoch % (epochs / 8) == 0)
      std::printf("  epoch %5d  loss %.5f  accuracy %.2f\n", epoch, loss.item<double>(),
                  accuracy(net, x, t));
  }
  return accuracy(net, x, t);
}

}  // namespace

int main(int argc, char** argv) try {
  const bool quick = example::has_flag(argc, argv, "quick");
  const int epochs = std::stoi(example::flag(argc, argv, "epochs", quick ? "4000" : "8000"));
  manual_seed(1);
  int failures = 0;

  // (a) 100 random points labelled by the side of a line.
  const Tensor xa = uniform({100, 2}, -1.0, 1.0);
  const Tensor ta =
      gt(matmul(xa, from_vector<float>({1.0f, -2.0f}, {2, 1})) + 0.2, 0.0).to(kFloat32);
  nn::Sequential net_a = make_net(true);
  const double acc_a = train("(a) linearly separable, 100 points", net_a, xa, ta, 5.0, epochs);
  // (b) XOR: four clusters, opposite corners share a label.
  Tensor xb = uniform({100, 2}, -1.0, 1.0);
  xb = xb + 0.5 * where(gt(xb, 0.0), ones_like(xb), -ones_like(xb));  // keep clear of the axes
  const Tensor tb = ne(gt(xb.t()[0], 0.0), gt(xb.t()[1], 0.0)).to(kFloat32).view({100, 1});
  nn::Sequential net_b = make_net(true);
  const double acc_b = train("(b) XOR (X-shaped)", net_b, xb, tb, 5.0, epochs);
  std::printf("training accuracy: separable %.0f%%, XOR %.0f%%\n", 100 * acc_a, 100 * acc_b);
  if (acc_a < 1.0 || acc_b < 1.0) {
    std::printf("FAILED: expected 100%% on both sets\n");
    ++failures;
  }

  // (c) No activations: a product of linear maps; with this step it diverges.
  nn::Sequential linear_net = make_net(false);
  const double acc_c = train("(c) no activations, lr 5", linear_net, xb * 10.0, tb, 5.0, epochs);
  if (acc_c >= 0.0) {
    std::printf("FAILED: expected the run without activations to diverge\n");
    ++failures;
  } else {
    std::printf(
        "as expected: without activations the net is linear and this step size "
        "diverges\n");
  }
  return failures == 0 ? 0 : 1;
} catch (const tandem::Error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 2;
}
