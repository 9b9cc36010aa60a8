// Example 1: fit an MLP (tanh) to the Runge function f(x) = 1 / (1 + 25 x^2) on
// [-1, 1], then get the network's derivative with respect to its input from
// autograd and compare it with the analytic f'(x) = -50 x / (1 + 25 x^2)^2.
//   runge_fit [--epochs N] [--csv path] [--device cpu|cuda] [--quick]
// Exits non-zero when the fit misses its accuracy targets.
#include <cmath>
#include <cstdio>
#include <fstream>

#include "example_util.h"

using namespace tandem;

int main(int argc, char** argv) try {
  const example::Flags flags(argc, argv,
                             "usage: runge_fit [--epochs N] [--csv PATH] [--device cpu|cuda] "
                             "[--quick]\n"
                             "  --epochs N   full-batch steps (default 6000; 1500 with --quick)\n"
                             "  --csv PATH   where to write x,f,prediction,df,predicted_df "
                             "(default runge.csv)\n"
                             "  --quick      short run with looser accuracy targets (smoke test)\n",
                             {"epochs", "csv"}, {"quick"});
  const bool quick = flags.has("quick");
  const int epochs = flags.get_int("epochs", quick ? 1500 : 6000);
  const std::string csv = flags.get("csv", "runge.csv");
  const Device dev = flags.device();
  const TensorOptions opts = dtype(kFloat64).device(dev);
  manual_seed(0);

  auto f = [](const Tensor& x) { return 1.0 / (1.0 + 25.0 * square(x)); };
  auto df = [](const Tensor& x) { return -50.0 * x / square(1.0 + 25.0 * square(x)); };

  const Tensor x_train = uniform({256, 1}, -1.0, 1.0, opts);
  const Tensor y_train = f(x_train);
  nn::Sequential net(nn::Linear(1, 32), nn::Tanh(), nn::Linear(32, 32), nn::Tanh(),
                     nn::Linear(32, 1));
  net->to(dev, kFloat64);
  // Full-batch gradient descent with heavy-ball momentum: on 256 points a
  // whole-set step costs about as much as a mini-batch step would.
  optim::SGD opt(net->parameters(), optim::SGDOptions(0.05).momentum(0.95));
  std::printf("MLP 1-32-32-1 (tanh), float64, %d full-batch steps on 256 points, %s\n", epochs,
              dev.is_cuda() ? "cuda" : "cpu");
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    opt.zero_grad();
    const Tensor loss = mse_loss(net(x_train), y_train);
    loss.backward();
    opt.step();
    if (epoch % example::every(epochs, 5) == 0)
      std::printf("epoch %5d  train mse %.3e\n", epoch, loss.item<double>());
  }

  // Validation grid: f and, through autograd, d(net)/dx at every point.
  const Tensor x_val = arange(-1.0, 1.0 + 1e-9, 0.01, opts).view({-1, 1}).set_requires_grad(true);
  const Tensor pred = net(x_val);
  const Tensor dpred = autograd::grad({pred.sum()}, {x_val})[0];
  NoGradGuard no_grad;
  const Tensor xv = x_val.detach();
  const double mse = mse_loss(pred.detach(), f(xv)).item<double>();
  const double max_err = max(abs(pred.detach() - f(xv))).item<double>();
  const double dmse = mse_loss(dpred, df(xv)).item<double>();
  const double dmax_err = max(abs(dpred - df(xv))).item<double>();
  std::printf("validation (%lld points): f  mse %.3e  max error %.3e\n",
              static_cast<long long>(xv.numel()), mse, max_err);
  std::printf("                          f' mse %.3e  max error %.3e (|f'| up to 3.25)\n", dmse,
              dmax_err);

  std::ofstream out(csv);
  if (!out) {
    std::fprintf(stderr, "error: cannot write %s\n", csv.c_str());
    return 2;
  }
  out.precision(12);
  out << "x,f,prediction,df,predicted_df\n";
  const auto xs = to_vector<double>(xv.cpu()), fs = to_vector<double>(f(xv).cpu()),
             ps = to_vector<double>(pred.detach().cpu()), ds = to_vector<double>(df(xv).cpu()),
             dps = to_vector<double>(dpred.cpu());
  for (size_t i = 0; i < xs.size(); ++i)
    out << xs[i] << ',' << fs[i] << ',' << ps[i] << ',' << ds[i] << ',' << dps[i] << '\n';
  std::printf("wrote %s\n", csv.c_str());

  // Targets with a margin of 2x or more over what the runs reach (full: 5.6e-3
  // and 0.13; --quick: 2.0e-2 and 0.44). A NaN fails the comparisons too.
  const double f_target = quick ? 0.05 : 0.02, df_target = quick ? 1.0 : 0.5;
  if (!(max_err < f_target && dmax_err < df_target)) {
    std::printf("FAILED: max errors %.3g (f) and %.3g (f') should be below %.3g and %.3g\n",
                max_err, dmax_err, f_target, df_target);
    return 1;
  }
  std::printf("ok: max errors below the targets %.3g (f) and %.3g (f')\n", f_target, df_target);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 2;
}
