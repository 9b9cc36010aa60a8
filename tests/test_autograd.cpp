// The autograd engine: what backward() computes and accumulates, grad mode,
// detach, retain_graph, input gradients (autograd::grad), in-place rules, and
// every error a user can reach. Per-op formulas are in test_gradcheck.cpp.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <algorithm>
#include <cmath>

#include "test_util.h"

namespace {

using namespace tandem;  // NOLINT
using tt::expect_close;
using tt::expect_error;

Tensor leaf(const Shape& shape, DType dt = kFloat64) {
  return tt::random_tensor(shape, dt).set_requires_grad(true);
}

TEST(Autograd, LeafFlagsAndGradFn) {
  Tensor x = leaf({3});
  const Tensor c = tt::random_tensor({3}, kFloat64);
  EXPECT_TRUE(x.requires_grad());
  EXPECT_TRUE(x.is_leaf());
  EXPECT_EQ(x.grad_fn(), nullptr);
  EXPECT_FALSE(x.grad().defined());
  const Tensor y = x * c;
  EXPECT_TRUE(y.requires_grad());
  EXPECT_FALSE(y.is_leaf());
  ASSERT_NE(y.grad_fn(), nullptr);
  EXPECT_EQ(y.grad_fn()->name(), "MulBackward");
  EXPECT_EQ(log_softmax(y, 0).grad_fn()->name(), "LogSoftmaxBackward");
  ASSERT_EQ(y.grad_fn()->next_functions().size(), 2u);
  EXPECT_NE(y.grad_fn()->next_functions()[0], nullptr);  // x's accumulator
  EXPECT_EQ(y.grad_fn()->next_functions()[1], nullptr);  // c needs no grad
  EXPECT_FALSE((c * c).requires_grad());
  EXPECT_FALSE(gt(x, 0.0).requires_grad());  // comparisons are not differentiable
  EXPECT_FALSE(argmax(x).requires_grad());
  x.set_requires_grad(false);
  EXPECT_FALSE(x.requires_grad());
  EXPECT_FALSE((x * c).requires_grad());
}

TEST(Autograd, BackwardOfAScalarFillsLeafGrads) {
  const Tensor x = leaf({4, 3}), w = leaf({3, 2});
  const Tensor loss = (tanh(matmul(x, w))).sum();
  loss.backward();
  // d/dx sum(tanh(xw)) = (1 - tanh^2(xw)) w^T, d/dw = x^T (1 - tanh^2(xw)).
  NoGradGuard no_grad;
  const Tensor d = 1.0 - square(tanh(matmul(x, w)));
  expect_close(x.grad(), matmul(d, w.t()));
  expect_close(w.grad(), matmul(x.t(), d));
}

TEST(Autograd, GradientsAccumulateUntilReset) {
  const Tensor x = leaf({5});
  (x * x).sum().backward();
  const Tensor first = x.grad().clone();
  (x * x).sum().backward();
  expect_close(x.grad(), first * 2.0);
  expect_close(first, x.detach() * 2.0);
  Tensor x2 = x;
  x2.mutable_grad() = Tensor();
  EXPECT_FALSE(x.grad().defined());
  (3.0 * x).sum().backward();
  expect_close(x.grad(), full({5}, 3.0, kFloat64));
}

TEST(Autograd, TensorUsedTwiceGetsBothContributions) {
  const Tensor x = leaf({6});
  const Tensor a = x * 2.0, b = x * 3.0;
  (a * b).sum().backward();  // d/dx 6x^2 = 12x
  expect_close(x.grad(), x.detach() * 12.0);
  const Tensor z = leaf({4});
  (z * z * z).sum().backward();
  expect_close(z.grad(), 3.0 * square(z.detach()));
}

TEST(Autograd, NonScalarBackwardNeedsAGradientOfTheSameShape) {
  const Tensor x = leaf({2, 3});
  const Tensor y = x * x;
  expect_error([&] { y.backward(); },
               {"backward: a gradient can be created implicitly only for a one-element output",
                "float64[2, 3]"});
  expect_error(
      [&] {
        y.backward(ones({3, 2}, kFloat64));
      },
      {"backward: the gradient float64[3, 2] on cpu does not match the shape", "float64[2, 3]"});
  expect_error(
      [&] {
        y.backward(ones({2, 3}, kFloat32));
      },
      "must have the dtype and device of the tensor");
  const Tensor g = tt::random_tensor({2, 3}, kFloat64);
  y.backward(g);
  expect_close(x.grad(), 2.0 * x.detach() * g);
}

TEST(Autograd, BackwardOnATensorThatDoesNotRequireGrad) {
  const Tensor c = randn({3}, kFloat64);
  expect_error([&] { c.sum().backward(); },
               "backward: tensor float64[] on cpu does not require grad and has no grad_fn");
  const Tensor x = leaf({3});
  Tensor y;
  {
    NoGradGuard no_grad;
    y = (x * 2.0).sum();
  }
  EXPECT_FALSE(y.requires_grad());
  expect_error([&] { y.backward(); }, "does not require grad");
}

TEST(Autograd, FreedGraphAndRetainGraph) {
  const Tensor x = leaf({3});
  const Tensor y = (x * x).sum();
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();  // the graph was kept the first time
  expect_close(x.grad(), 4.0 * x.detach());
  expect_error([&] { y.backward(); },
               {"backward: trying to run", "a second time", "retain_graph=true"});
}

TEST(Autograd, NoGradGuardNestsAndRestores) {
  const Tensor x = leaf({2});
  EXPECT_TRUE(autograd::GradMode::is_enabled());
  {
    NoGradGuard outer;
    EXPECT_FALSE((x * 2.0).requires_grad());
    {
      AutoGradMode enable(true);
      EXPECT_TRUE((x * 2.0).requires_grad());
    }
    EXPECT_FALSE(autograd::GradMode::is_enabled());
  }
  EXPECT_TRUE(autograd::GradMode::is_enabled());
}

TEST(Autograd, DetachSharesStorageAndStopsGradients) {
  const Tensor x = leaf({3});
  const Tensor d = x.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.raw_data(), x.raw_data());
  const Tensor y = (x * d).sum();  // d is a constant: dy/dx = d
  y.backward();
  expect_close(x.grad(), d);
  Tensor z = x * 2.0;
  z.detach_();
  EXPECT_FALSE(z.requires_grad());
  EXPECT_TRUE(z.is_leaf());
}

TEST(Autograd, InputGradientOfAFunction) {
  // d/dx of a small tanh net at many points, against the chain rule by hand.
  const Tensor w1 = tt::random_tensor({1, 8}, kFloat64), w2 = tt::random_tensor({8, 1}, kFloat64);
  const Tensor x = tt::random_tensor({20, 1}, kFloat64).set_requires_grad(true);
  const Tensor y = matmul(tanh(matmul(x, w1)), w2);
  const std::vector<Tensor> g = autograd::grad({y}, {x}, {ones_like(y)});
  ASSERT_EQ(g.size(), 1u);
  EXPECT_FALSE(x.grad().defined());  // grad() leaves .grad alone
  NoGradGuard no_grad;
  const Tensor h = tanh(matmul(x, w1));
  expect_close(g[0], matmul(1.0 - square(h), w1.t() * w2));
}

TEST(Autograd, GradOfIntermediateAndUnusedInputs) {
  const Tensor x = leaf({3}), unused = leaf({2});
  const Tensor h = x * 2.0;
  const Tensor y = (h * h).sum();
  const auto g = autograd::grad({y}, {h, x}, {}, /*retain_graph=*/true);
  expect_close(g[0], 2.0 * h.detach());
  expect_close(g[1], 8.0 * x.detach());
  expect_error([&] { autograd::grad({y}, {unused}, {}, true); },
               {"grad: input 0", "is not used to compute the outputs", "allow_unused=true"});
  const auto maybe = autograd::grad({y}, {unused, x}, {}, true, /*allow_unused=*/true);
  EXPECT_FALSE(maybe[0].defined());
  expect_close(maybe[1], 8.0 * x.detach());
  expect_error([&] { autograd::grad({y}, {randn({2}, kFloat64)}); },
               "grad: input 0 (float64[2] on cpu) does not require grad");
  expect_error([&] { autograd::grad({y}, {}); }, "grad: expected at least one input");
}

TEST(Autograd, RetainGradKeepsAnIntermediateGradient) {
  const Tensor x = leaf({4});
  const Tensor h = sigmoid(x);
  h.retain_grad();
  const Tensor y = (h * h).sum();
  y.backward();
  expect_close(h.grad(), 2.0 * h.detach());
  NoGradGuard no_grad;
  const Tensor s = sigmoid(x);
  expect_close(x.grad(), 2.0 * s * s * (1.0 - s));
}

TEST(Autograd, InPlaceRules) {
  Tensor w = leaf({3});
  expect_error([&] { w.add_(1.0); },
               {"add_: in-place operation on a tensor that requires grad", "NoGradGuard"});
  expect_error([&] { w.mul_(w); }, "mul_: in-place operation on a tensor that requires grad");
  expect_error([&] { w.fill_(0.0); }, "fill_: in-place operation");
  expect_error([&] { w.copy_(ones({3}, kFloat64)); }, "copy_: in-place operation");
  Tensor plain = zeros({3}, kFloat64);
  expect_error([&] { plain.add_(w); }, "add_: the source float64[3] on cpu requires grad");
  expect_error([&] { plain += w * 2.0; }, "the source");
  Tensor y = w * 2.0;
  expect_error([&] { y.relu_(); }, "relu_: in-place operation on a tensor that requires grad");
  {
    NoGradGuard no_grad;  // how optimizers update parameters
    const std::vector<double> before = tt::to_doubles(w);
    w.sub_(ones({3}, kFloat64), 0.5);
    const std::vector<double> after = tt::to_doubles(w);
    for (size_t i = 0; i < before.size(); ++i) EXPECT_DOUBLE_EQ(after[i], before[i] - 0.5);
  }
  EXPECT_TRUE(w.requires_grad());
}

TEST(Autograd, ModifyingASavedTensorMakesBackwardThrow) {
  const Tensor w = leaf({3});
  Tensor x = tt::random_tensor({3}, kFloat64);
  const Tensor y = (x * w).sum();  // saves x
  x.mul_(2.0);
  expect_error([&] { y.backward(); },
               {"backward: a tensor float64[3] on cpu saved by MulBackward was modified in place"});
}

TEST(Autograd, SetRequiresGradErrors) {
  Tensor i = arange(4.0);
  expect_error([&] { i.set_requires_grad(true); },
               "set_requires_grad: only floating-point tensors can require grad, got int64[4]");
  const Tensor x = leaf({2});
  Tensor y = x * 2.0;
  y.set_requires_grad(true);  // already does: fine
  expect_error([&] { y.set_requires_grad(false); },
               "set_requires_grad: only leaf tensors can stop requiring grad; this one was "
               "computed by MulBackward");
  expect_error([&] { randn({2}).retain_grad(); }, "retain_grad: the tensor float32[2] on cpu");
}

TEST(Autograd, MaxTiesShareTheGradientEvenly) {
  const Tensor x = tt::make_tensor({1.0, 3.0, 3.0, 2.0}, {4}, kFloat64).set_requires_grad(true);
  max(x).backward();
  expect_close(x.grad(), tt::make_tensor({0.0, 0.5, 0.5, 0.0}, {4}, kFloat64));
  const Tensor a = tt::make_tensor({1.0, 2.0}, {2}, kFloat64).set_requires_grad(true);
  const Tensor b = tt::make_tensor({1.0, 5.0}, {2}, kFloat64).set_requires_grad(true);
  maximum(a, b).sum().backward();
  expect_close(a.grad(), tt::make_tensor({0.5, 0.0}, {2}, kFloat64));
  expect_close(b.grad(), tt::make_tensor({0.5, 1.0}, {2}, kFloat64));
}

TEST(Autograd, ReluGradientIsZeroAtAndBelowZero) {
  const Tensor x = tt::make_tensor({-1.0, 0.0, 2.0}, {3}, kFloat64).set_requires_grad(true);
  relu(x).sum().backward();
  expect_close(x.grad(), tt::make_tensor({0.0, 0.0, 1.0}, {3}, kFloat64));
}

TEST(Autograd, CrossEntropyIsStableForLargeLogits) {
  const Tensor logits = tt::make_tensor({1e4, -1e4, 0.0, 5e3, 5e3 + 1.0, -3.0}, {2, 3}, kFloat64)
                            .set_requires_grad(true);
  const Tensor target = from_vector<int64_t>({0, 1});
  const Tensor loss = cross_entropy(logits, target, Reduction::Sum);
  // Row 0: the target has the largest logit by 1e4: loss ~ 0. Row 1: log(1 + e) - 0 ... exact:
  const double row1 = std::log(std::exp(-1.0) + 1.0 + std::exp(-5004.0)) + 0.0;
  EXPECT_NEAR(loss.item<double>(), 0.0 + row1, 1e-12);
  loss.backward();
  EXPECT_TRUE(all_finite(logits.grad()));
  const std::vector<double> g = tt::to_doubles(logits.grad());
  EXPECT_NEAR(g[0], 0.0, 1e-12);  // softmax - one_hot for row 0 is ~0
  EXPECT_NEAR(g[3], std::exp(-1.0) / (1.0 + std::exp(-1.0)), 1e-12);
  EXPECT_NEAR(g[4], 1.0 / (1.0 + std::exp(-1.0)) - 1.0, 1e-12);
}

TEST(Autograd, BinaryCrossEntropyGradientClampIsPyTorchsFloatEpsilon) {
  // Issue 18.2: d/dp = g (p - t) / max(p (1 - p), eps) with PyTorch's eps, the
  // float constant 1e-12f (9.9999999600e-13 in float64), not the double 1e-12:
  // at p = 0 or 1 the two differ by 4e-9 relative, visible in float64.
  const double eps = static_cast<double>(1e-12f);
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(dtype_name(dt));
    const std::vector<double> pv = {0.0, 1.0, 1e-13, 0.0, 1.0, 0.25};
    const Tensor p = tt::make_tensor(pv, {6}, dt).set_requires_grad(true);
    const Tensor t = tt::random_tensor({6}, dt, 0.1, 0.9);
    binary_cross_entropy(p, t, Reduction::Sum).backward();
    const auto pr = tt::to_doubles(p.detach()), tv = tt::to_doubles(t);
    std::vector<double> ref;
    for (size_t i = 0; i < pr.size(); ++i) {
      if (dt == kFloat32) {  // every step rounded to float, as the ops compute
        const auto pf = static_cast<float>(pr[i]), tf = static_cast<float>(tv[i]);
        ref.push_back((pf - tf) / std::max((1.0f - pf) * pf, 1e-12f));
      } else {
        ref.push_back((pr[i] - tv[i]) / std::max((1.0 - pr[i]) * pr[i], eps));
      }
    }
    expect_close(p.grad(), tt::Ref{{6}, ref}, tt::Tol{dt == kFloat32 ? 1e-6 : 1e-13, 0.0});
  }
}

TEST(Autograd, LossArgumentErrors) {
  const Tensor logits = randn({4, 3});
  expect_error(
      [&] {
        cross_entropy(logits, from_vector<int64_t>({0, 1, 2}));
      },
      "cross_entropy: target [3] does not match scores [4, 3]");
  expect_error([&] { cross_entropy(logits, randn({4})); },
               "cross_entropy: index dtype float32 is not supported (expected int64 or int32)");
  expect_error(
      [&] {
        cross_entropy(logits, from_vector<int64_t>({0, 1, 2, 0}), Reduction::Mean, 1.5);
      },
      "cross_entropy: label_smoothing must be in [0, 1], got 1.5");
  expect_error(
      [&] {
        cross_entropy(randn({2, 2, 2}), from_vector<int64_t>({0, 1}));
      },
      "cross_entropy: expected scores of shape [N, C] or [C], got [2, 2, 2]");
  expect_error(
      [&] {
        cross_entropy(logits, from_vector<int64_t>({0, 1, 7, 0}));
      },
      "cross_entropy: target 7 of row 2 is out of range [0, 3)");
  expect_error([&] { mse_loss(randn({3}), randn({4})); },
               "mse_loss: input [3] and target [4] must have the same shape");
  expect_error([&] { binary_cross_entropy(rand({2}), rand({3})); },
               "binary_cross_entropy: input [2] and target [3]");
  expect_error(
      [&] {
        nll_loss(randn({4, 3}), from_vector<int64_t>({0}));
      },
      "nll_loss: target [1] does not match scores [4, 3]");
  expect_error([&] { l2_penalty({}, 0.1); }, "l2_penalty: expected at least one weight tensor");
}

TEST(Autograd, FiniteChecks) {
  const Tensor x = tt::make_tensor({1.0, -2.0, 3.0}, {3}, kFloat32);
  EXPECT_TRUE(all_finite(x));
  EXPECT_TRUE(all_finite(arange(5.0)));
  const Tensor bad = tt::make_tensor({1.0, INFINITY, NAN, -INFINITY, 0.0}, {5}, kFloat64);
  EXPECT_FALSE(all_finite(bad));
  EXPECT_FALSE(all_finite(tt::make_tensor({NAN}, {}, kFloat32)));
  tt::expect_equal(isfinite(bad), tt::make_tensor({1, 0, 0, 0, 1}, {5}, kUInt8));
}

TEST(Autograd, L2PenaltyValueAndGradient) {
  const Tensor w1 = leaf({3, 4}), w2 = leaf({2});
  const Tensor p = l2_penalty({w1, w2}, 0.1);
  NoGradGuard no_grad;
  const double expected = 0.1 * (sum(square(w1)).item<double>() + sum(square(w2)).item<double>());
  EXPECT_NEAR(p.item<double>(), expected, 1e-12);
  AutoGradMode on(true);
  p.backward();
  expect_close(w1.grad(), 0.2 * w1.detach());
  expect_close(w2.grad(), 0.2 * w2.detach());
}

TEST(Autograd, CudaLeafGradientsStayOnTheDevice) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const Tensor x_cpu = tt::random_tensor({5, 4}, kFloat32);
  const Tensor x = x_cpu.to(Device(kCUDA)).set_requires_grad(true);
  const Tensor y = (relu(x) * x).sum();
  y.backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_TRUE(x.grad().is_cuda());
  // Moving to the host is differentiable too: the gradient comes back to CUDA.
  const Tensor z = leaf({3}, kFloat32);
  const Tensor zc = z.to(Device(kCUDA));
  (zc * zc).sum().backward();
  EXPECT_TRUE(z.grad().is_cpu());
  expect_close(z.grad(), 2.0 * z.detach());
}

}  // namespace

namespace {

TEST(Autograd, FactoriesTakeRequiresGrad) {
  using namespace tandem;  // NOLINT
  for (const Tensor& t :
       {zeros({2, 3}, dtype(kFloat64).requires_grad(true)), ones({2}, requires_grad()),
        full({2}, 3.0, requires_grad()), randn({4}, requires_grad()), rand({4}, requires_grad()),
        empty({3}, requires_grad()), arange(0.0, 1.0, 0.25, dtype(kFloat32).requires_grad(true)),
        from_vector<double>({1.0, 2.0}, {2}, dtype(kFloat64).requires_grad(true))}) {
    EXPECT_TRUE(t.requires_grad());
    EXPECT_TRUE(t.is_leaf());
  }
  EXPECT_FALSE(zeros({2}).requires_grad());
  EXPECT_FALSE(zeros_like(ones({2}, requires_grad())).requires_grad());
  const Tensor x = full({3}, 2.0, dtype(kFloat64).requires_grad(true));
  (x * x).sum().backward();
  tt::expect_close(x.grad(), full({3}, 4.0, kFloat64));
  tt::expect_error([] { zeros({2}, dtype(kInt64).requires_grad(true)); },
                   "set_requires_grad: only floating-point tensors can require grad");
}

}  // namespace
