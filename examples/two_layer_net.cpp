// Example 3: the two-layer net of the classic course assignment, with raw
// tensors: scores = relu(X W1 + b1) W2 + b2, softmax loss + L2 on W1 and W2.
// On a toy set (5 inputs of dim 4, 3 classes), in float64:
//   1. the loss at a near-zero init is ln(3) = 1.0986;
//   2. a numeric gradient check of W1, b1, W2, b2 (relative errors < 1e-6);
//   3. SGD with learning-rate decay and a predict() function.
//   two_layer_net [--epochs N] [--quick]
#include <cmath>
#include <cstdio>

#include "example_util.h"

using namespace tandem;

namespace {

constexpr double kReg = 0.05;

Tensor scores(const Tensor& x, const std::vector<Tensor>& p) {
  return matmul(relu(matmul(x, p[0]) + p[1]), p[2]) + p[3];
}
Tensor loss_fn(const Tensor& x, const Tensor& y, const std::vector<Tensor>& p) {
  return cross_entropy(scores(x, p), y) + l2_penalty({p[0], p[2]}, kReg);
}
Tensor predict(const Tensor& x, const std::vector<Tensor>& p) {
  NoGradGuard no_grad;
  return argmax(scores(x, p), 1);
}
std::vector<Tensor> init_params(double std, Generator* gen) {
  const TensorOptions f64 = dtype(kFloat64);
  return {normal({4, 10}, 0.0, std, f64, gen).set_requires_grad(true),
          zeros({10}, f64).set_requires_grad(true),
          normal({10, 3}, 0.0, std, f64, gen).set_requires_grad(true),
          zeros({3}, f64).set_requires_grad(true)};
}

}  // namespace

int main(int argc, char** argv) try {
  const bool quick = example::has_flag(argc, argv, "quick");
  const int epochs = std::stoi(example::flag(argc, argv, "epochs", quick ? "200" : "500"));
  Generator gen(0);
  const Tensor x = normal({5, 4}, 0.0, 10.0, dtype(kFloat64), &gen);
  const Tensor y = from_vector<int64_t>({0, 1, 2, 2, 1});
  int failures = 0;

  // 1. Near-zero weights: uniform scores, so the loss is ln(3).
  const std::vector<Tensor> tiny = init_params(1e-6, &gen);
  const double loss0 = loss_fn(x, y, tiny).item<double>();
  std::printf("loss at init (weights ~ N(0, 1e-12)): %.6f   ln(3) = %.6f\n", loss0, std::log(3.0));
  if (std::fabs(loss0 - std::log(3.0)) > 1e-4) ++failures;

  // 2. Gradient check at a small random init.
  const std::vector<Tensor> params = init_params(1e-1, &gen);
  const char* names[] = {"W1", "b1", "W2", "b2"};
  std::vector<Tensor> inputs = params;
  const auto report =
      autograd::gradcheck([&](const std::vector<Tensor>& p) { return loss_fn(x, y, p); }, inputs);
  for (const auto& r : report.inputs) {
    std::printf("%s max relative error: %.2e\n", names[r.input], r.max_error);
  }
  if (!report.ok) {
    std::printf("FAILED: gradient check\n%s", report.report().c_str());
    ++failures;
  }

  // 3. SGD with learning-rate decay.
  optim::SGD opt(params, optim::SGDOptions(0.1).momentum(0.9));
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    opt.zero_grad();
    const Tensor loss = loss_fn(x, y, params);
    loss.backward();
    opt.step();
    auto& group = opt.param_groups()[0];
    group.options().set_lr(group.options().get_lr() * 0.99);  // decay every epoch
    if (epoch % (epochs / 5) == 0)
      std::printf("epoch %4d  loss %.5f  lr %.4f\n", epoch, loss.item<double>(),
                  group.options().get_lr());
  }
  const Tensor pred = predict(x, params);
  const double acc = mean(eq(pred, y).to(kFloat64)).item<double>();
  std::printf("predictions %s, training accuracy %.0f%%\n", pred.to_string().c_str(), 100 * acc);
  if (acc < 1.0) ++failures;
  if (failures) std::printf("FAILED: %d check(s)\n", failures);
  return failures == 0 ? 0 : 1;
} catch (const tandem::Error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 2;
}
