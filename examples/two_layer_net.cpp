// Example 3: the two-layer net of the classic course assignment, written with
// raw tensors instead of nn modules:
//   scores = relu(X W1 + b1) W2 + b2,  loss = softmax cross-entropy + reg * (|W1|^2 + |W2|^2)
// on a toy set of 5 inputs of dimension 4 in 3 classes (hidden size 10), all in
// float64. It checks, exiting non-zero when a check fails:
//   1. at a near-zero init the scores are ~0, so the loss is ln(3) = 1.0986;
//   2. a numeric gradient check of W1, b1, W2, b2 (errors below 1e-6);
//   3. SGD with learning-rate decay fits the 5 points: predict() is 100% right.
//   two_layer_net [--epochs N] [--decay X] [--device cpu|cuda] [--quick]
#include <cmath>
#include <cstdio>
#include <string>

#include "example_util.h"

using namespace tandem;

namespace {

constexpr double kReg = 0.05;  // L2 strength on W1 and W2 (not the biases)

// p = {W1 [4, 10], b1 [10], W2 [10, 3], b2 [3]}.
Tensor scores(const Tensor& x, const std::vector<Tensor>& p) {
  return matmul(relu(matmul(x, p[0]) + p[1]), p[2]) + p[3];
}
Tensor data_loss(const Tensor& x, const Tensor& y, const std::vector<Tensor>& p) {
  return cross_entropy(scores(x, p), y);  // mean over the 5 points
}
Tensor loss_fn(const Tensor& x, const Tensor& y, const std::vector<Tensor>& p) {
  return data_loss(x, y, p) + l2_penalty({p[0], p[2]}, kReg);
}
// The class with the highest score, per row (no graph needed).
Tensor predict(const Tensor& x, const std::vector<Tensor>& p) {
  NoGradGuard no_grad;
  return argmax(scores(x, p), 1);
}
// Weights ~ N(0, std^2), biases 0; all leaves that require grad.
std::vector<Tensor> init_params(double std, Device dev, Generator* gen) {
  const TensorOptions f64 = dtype(kFloat64);
  return {normal({4, 10}, 0.0, std, f64, gen).to(dev).set_requires_grad(true),
          zeros({10}, f64.device(dev)).set_requires_grad(true),
          normal({10, 3}, 0.0, std, f64, gen).to(dev).set_requires_grad(true),
          zeros({3}, f64.device(dev)).set_requires_grad(true)};
}

}  // namespace

int main(int argc, char** argv) try {
  const example::Flags flags(
      argc, argv,
      "usage: two_layer_net [--epochs N] [--decay X] [--device cpu|cuda] [--quick]\n"
      "  --epochs N   SGD steps (default 500; 200 with --quick)\n"
      "  --decay X    learning-rate factor applied after every epoch (default 0.99)\n",
      {"epochs", "decay"}, {"quick"});
  const bool quick = flags.has("quick");
  const int epochs = flags.get_int("epochs", quick ? 200 : 500);
  const double decay = flags.get_double("decay", 0.99);
  const Device dev = flags.device();
  // The data are drawn on the CPU with their own generator (the same points on
  // every device), as in the assignment: X = 10 * randn(5, 4).
  Generator gen(0);
  const Tensor x = normal({5, 4}, 0.0, 10.0, dtype(kFloat64), &gen).to(dev);
  const Tensor y = from_vector<int64_t>({0, 1, 2, 2, 1}).to(dev);
  int failures = 0;

  // 1. Weights of std 1e-3: the scores are ~1e-5, the softmax is uniform over
  // the 3 classes and the loss is -ln(1/3); the L2 term adds only
  // reg * 70 * 1e-6 ~ 4e-6.
  const double init_std = 1e-3;
  const std::vector<Tensor> tiny = init_params(init_std, dev, &gen);
  const double loss0 = loss_fn(x, y, tiny).item<double>();
  const double reg0 = l2_penalty({tiny[0], tiny[2]}, kReg).item<double>();
  std::printf("1. loss at init (weights std %g, reg %g): %.6f (L2 part %.1e); ln(3) = %.6f\n",
              init_std, kReg, loss0, reg0, std::log(3.0));
  if (!(std::fabs(loss0 - std::log(3.0)) < 1e-3)) {
    std::printf("FAILED: the loss at init should be within 1e-3 of ln(3)\n");
    ++failures;
  }

  // 2. Gradient check at a larger random init (std 0.1), where the gradients
  // are far from zero. The error per element is Caffe's scaled one,
  // |analytic - numeric| / max(|analytic|, |numeric|, 1): relative for
  // gradients above 1, absolute below (where a relative error means little).
  const std::vector<Tensor> params = init_params(1e-1, dev, &gen);
  const char* names[] = {"W1", "b1", "W2", "b2"};
  autograd::GradcheckOptions check;
  check.eps = 1e-6;
  check.tolerance = 1e-6;
  const autograd::GradcheckResult report = autograd::gradcheck(
      [&](const std::vector<Tensor>& p) { return loss_fn(x, y, p); }, params, check);
  std::printf("2. gradient check (central differences, eps %g):\n", check.eps);
  for (const auto& r : report.inputs) {
    std::printf("   %s max relative error %.2e  (%lld elements)\n", names[r.input], r.max_error,
                static_cast<long long>(r.checked));
    if (!(r.max_error < 1e-6)) ++failures;
  }
  if (!report.ok || report.inputs.size() != params.size()) {
    std::printf("FAILED: gradient check\n%s", report.report().c_str());
    ++failures;
  }

  // 3. SGD with momentum; after every epoch the learning rate of the (only)
  // parameter group is multiplied by `decay`.
  optim::SGD opt(params, optim::SGDOptions(0.1).momentum(0.9));
  std::printf("3. SGD, lr 0.1, momentum 0.9, lr *= %g every epoch\n", decay);
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    opt.zero_grad();
    const Tensor loss = loss_fn(x, y, params);
    loss.backward();
    opt.step();
    auto& group = opt.param_groups()[0];
    group.options().set_lr(group.options().get_lr() * decay);
    if (epoch % example::every(epochs, 5) == 0)
      std::printf("   epoch %4d  loss %.5f  lr %.2e\n", epoch, loss.item<double>(),
                  group.options().get_lr());
  }
  const Tensor pred = predict(x, params);
  const double acc = mean(eq(pred, y).to(kFloat64)).item<double>();
  std::printf("   labels      %s\n   predictions %s, training accuracy %.0f%%\n",
              y.cpu().to_string().c_str(), pred.cpu().to_string().c_str(), 100 * acc);
  if (acc < 1.0) {
    std::printf("FAILED: expected 100%% training accuracy on the 5 points\n");
    ++failures;
  }
  if (failures) std::printf("FAILED: %d check(s)\n", failures);
  return failures == 0 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 2;
}
