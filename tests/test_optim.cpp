// optim: SGD against a closed-form float64 reference (momentum, dampening,
// Nesterov, weight decay, several groups), skipped parameters, zero_grad,
// optimizer state after Module::to, training a small regression, every option
// and parameter error, and CUDA/CPU step parity.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <cmath>
#include <memory>

#include "test_util.h"

namespace {

using namespace tandem;  // NOLINT
using tt::expect_close;
using tt::expect_error;

struct SgdConfig {
  double lr, momentum, dampening, wd;
  bool nesterov;
};

optim::SGDOptions options_of(const SgdConfig& c) {
  return optim::SGDOptions(c.lr)
      .momentum(c.momentum)
      .dampening(c.dampening)
      .weight_decay(c.wd)
      .nesterov(c.nesterov);
}

// PyTorch's SGD written out in float64 on the loss sum(c * p^2) / 2, whose
// gradient is c * p.
std::vector<double> sgd_reference(std::vector<double> p, const std::vector<double>& c, int steps,
                                  const SgdConfig& cfg) {
  std::vector<double> buf(p.size(), 0.0);
  for (int s = 0; s < steps; ++s) {
    for (size_t i = 0; i < p.size(); ++i) {
      double d = c[i] * p[i] + cfg.wd * p[i];
      if (cfg.momentum != 0.0) {
        buf[i] = s == 0 ? d : cfg.momentum * buf[i] + (1.0 - cfg.dampening) * d;
        d = cfg.nesterov ? d + cfg.momentum * buf[i] : buf[i];
      }
      p[i] -= cfg.lr * d;
    }
  }
  return p;
}

void expect_relative(const std::vector<double>& got, const std::vector<double>& ref, double rel,
                     const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::fabs(got[i] - ref[i]) > rel * std::max(1e-300, std::fabs(ref[i]))) {
      ADD_FAILURE_AT(file, line) << "element " << i << ": got " << got[i] << ", expected "
                                 << ref[i];
      return;
    }
  }
}

const std::vector<SgdConfig> kConfigs = {
    {0.1, 0.0, 0.0, 0.0, false},   // plain
    {0.05, 0.0, 0.0, 0.1, false},  // weight decay only
    {0.1, 0.9, 0.0, 0.0, false},   // momentum
    {0.1, 0.9, 0.3, 0.0, false},   // momentum + dampening
    {0.1, 0.9, 0.1, 0.01, false},  // momentum + dampening + weight decay
    {0.1, 0.8, 0.0, 0.0, true},    // Nesterov
    {0.07, 0.8, 0.0, 0.05, true},  // Nesterov + weight decay
};

TEST(SGD, MatchesClosedFormReference) {
  for (const SgdConfig& cfg : kConfigs) {
    SCOPED_TRACE(testing::Message()
                 << "lr " << cfg.lr << " momentum " << cfg.momentum << " dampening "
                 << cfg.dampening << " wd " << cfg.wd << " nesterov " << cfg.nesterov);
    const Tensor p = tt::random_tensor({3, 5}, kFloat64).set_requires_grad(true);
    const Tensor c = tt::random_tensor({3, 5}, kFloat64, 0.5, 2.0);
    const std::vector<double> p0 = tt::to_doubles(p), cv = tt::to_doubles(c);
    optim::SGD opt({p}, options_of(cfg));
    for (int s = 0; s < 7; ++s) {
      opt.zero_grad();
      (0.5 * sum(c * p * p)).backward();
      opt.step();
    }
    expect_relative(tt::to_doubles(p), sgd_reference(p0, cv, 7, cfg), 1e-10);
    EXPECT_EQ(opt.momentum_buffer(p).defined(), cfg.momentum != 0.0);
    EXPECT_TRUE(p.requires_grad());
    EXPECT_TRUE(p.is_leaf());
  }
}

TEST(SGD, EachGroupUsesItsOwnOptions) {
  const SgdConfig a{0.1, 0.9, 0.0, 0.0, true};
  const SgdConfig b{0.03, 0.5, 0.2, 0.1, false};  // the defaults
  const Tensor p = tt::random_tensor({4}, kFloat64).set_requires_grad(true);
  const Tensor q = tt::random_tensor({6}, kFloat64).set_requires_grad(true);
  const Tensor cp = tt::random_tensor({4}, kFloat64, 0.5, 2.0);
  const Tensor cq = tt::random_tensor({6}, kFloat64, 0.5, 2.0);
  const std::vector<double> p0 = tt::to_doubles(p), q0 = tt::to_doubles(q);
  std::vector<optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<Tensor>{p}, options_of(a).clone());
  groups.emplace_back(std::vector<Tensor>{q});  // no options: the defaults
  optim::SGD opt(groups, options_of(b));
  ASSERT_EQ(opt.param_groups().size(), 2u);
  EXPECT_DOUBLE_EQ(opt.param_groups()[1].options().get_lr(), 0.03);
  EXPECT_DOUBLE_EQ(opt.defaults().get_lr(), 0.03);
  for (int s = 0; s < 5; ++s) {
    opt.zero_grad();
    (0.5 * (sum(cp * p * p) + sum(cq * q * q))).backward();
    opt.step();
  }
  expect_relative(tt::to_doubles(p), sgd_reference(p0, tt::to_doubles(cp), 5, a), 1e-10);
  expect_relative(tt::to_doubles(q), sgd_reference(q0, tt::to_doubles(cq), 5, b), 1e-10);
  EXPECT_EQ(opt.parameters().size(), 2u);
  EXPECT_TRUE(opt.parameters()[1].is_same(q));
}

TEST(SGD, SkipsParametersWithoutGradAndZeroGradBothModes) {
  const Tensor used = tt::random_tensor({3}, kFloat32).set_requires_grad(true);
  const Tensor unused = tt::random_tensor({3}, kFloat32).set_requires_grad(true);
  const Tensor unused_before = unused.detach().clone();
  optim::SGD opt({used, unused}, optim::SGDOptions(0.5).momentum(0.9).weight_decay(0.1));
  (used * used).sum().backward();
  EXPECT_FALSE(unused.grad().defined());
  const Tensor used_before = used.detach().clone();
  opt.step();
  tt::expect_equal(unused.detach(), unused_before);  // no grad: not even weight decay
  EXPECT_FALSE(opt.momentum_buffer(unused).defined());
  // used - 0.5 * (2 used + 0.1 used)
  expect_close(used.detach(), used_before * (1.0 - 0.5 * 2.1));

  // zero_grad(false) keeps the gradient tensor and zeroes it; the default
  // (set_to_none) drops it.
  (used * used).sum().backward();
  const Tensor g = used.grad();
  ASSERT_TRUE(g.defined());
  EXPECT_GT(sum(abs(g)).item<double>(), 0.0);
  opt.zero_grad(/*set_to_none=*/false);
  ASSERT_TRUE(used.grad().defined());
  EXPECT_TRUE(used.grad().is_same(g));
  EXPECT_EQ(sum(abs(used.grad())).item<double>(), 0.0);
  EXPECT_FALSE(unused.grad().defined());  // still none: nothing is created
  opt.zero_grad();
  EXPECT_FALSE(used.grad().defined());
  // A step with no gradients at all changes nothing.
  const Tensor now = used.detach().clone();
  opt.step();
  tt::expect_equal(used.detach(), now);
}

TEST(SGD, ReducesTheLossOfALinearRegression) {
  manual_seed(5);
  nn::Linear model(3, 1);
  const Tensor x = randn({64, 3});
  const Tensor y = matmul(x, from_vector<float>({1.5f, -2.0f, 0.5f}, {3, 1})) + 0.3;
  optim::SGD opt(model->parameters(), optim::SGDOptions(0.1).momentum(0.9));
  const double first = mse_loss(model(x), y).item<double>();
  for (int i = 0; i < 100; ++i) {
    opt.zero_grad();
    mse_loss(model(x), y).backward();
    opt.step();
  }
  const double last = mse_loss(model(x), y).item<double>();
  EXPECT_LT(last, 1e-3 * first);
  expect_close(model->weight, from_vector<float>({1.5f, -2.0f, 0.5f}, {1, 3}), tt::Tol{0.0, 1e-2});
  expect_close(model->bias, full({1}, 0.3), tt::Tol{0.0, 1e-2});
}

TEST(SGD, SetLrAndFrozenGroups) {
  const Tensor frozen = ones({2}, requires_grad());
  std::vector<optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<Tensor>{frozen}, std::make_unique<optim::SGDOptions>(0.0));
  optim::SGD opt(groups, optim::SGDOptions(1.0));
  (frozen * frozen).sum().backward();
  opt.step();
  tt::expect_equal(frozen.detach(), ones({2}));  // lr 0 does not move
  opt.param_groups()[0].options().set_lr(0.5);
  opt.step();
  expect_close(frozen.detach(), zeros({2}));  // 1 - 0.5 * 2
  // add_param_group after construction: the group gets the defaults.
  const Tensor extra = full({2}, 3.0, requires_grad());
  opt.add_param_group(optim::OptimizerParamGroup(std::vector<Tensor>{extra}));
  opt.zero_grad();
  (extra * extra).sum().backward();
  opt.step();
  expect_close(extra.detach(), full({2}, 3.0 - 1.0 * 6.0));
}

// Module::to swaps the data inside each parameter, so an optimizer made before
// the move keeps working; its momentum buffers follow the parameters.
TEST(SGD, StateFollowsModuleTo) {
  manual_seed(8);
  nn::Linear model(4, 3);
  const double lr = 0.1, m = 0.9;
  optim::SGD opt(model->parameters(), optim::SGDOptions(lr).momentum(m).nesterov(true));
  const Tensor x = tt::random_tensor({5, 4}, kFloat32);
  model(x).square().sum().backward();
  opt.step();
  model->to(kFloat64);
  const Tensor w = model->weight;
  EXPECT_TRUE(opt.parameters()[0].is_same(w));
  EXPECT_EQ(opt.parameters()[0].dtype(), kFloat64);
  EXPECT_EQ(opt.momentum_buffer(w).dtype(), kFloat32);  // converted at the next step
  const Tensor buf_before = opt.momentum_buffer(w).to(kFloat64);
  const Tensor w_before = w.detach().clone();
  opt.zero_grad();
  model(x.to(kFloat64)).square().sum().backward();
  const Tensor g = w.grad().clone();
  opt.step();
  const Tensor buf = m * buf_before + g;
  EXPECT_EQ(opt.momentum_buffer(w).dtype(), kFloat64);
  expect_close(opt.momentum_buffer(w), buf, tt::Tol{1e-12, 1e-14});
  expect_close(w.detach(), w_before - lr * (g + m * buf), tt::Tol{1e-12, 1e-14});
}

struct OtherOptions : optim::OptimizerOptions {
  std::unique_ptr<optim::OptimizerOptions> clone() const override {
    return std::make_unique<OtherOptions>(*this);
  }
  double get_lr() const override { return 0.1; }
  void set_lr(double) override {}
};

TEST(SGD, OptionErrors) {
  const Tensor p = zeros({2}, requires_grad());
  expect_error([&] { optim::SGD({p}, optim::SGDOptions(-1.0)); }, "SGD: lr must be >= 0, got -1");
  expect_error([&] { optim::SGD({p}, optim::SGDOptions(0.1).momentum(-0.5)); },
               "SGD: momentum must be >= 0, got -0.5");
  expect_error([&] { optim::SGD({p}, optim::SGDOptions(0.1).dampening(-1)); },
               "SGD: dampening must be >= 0, got -1");
  expect_error([&] { optim::SGD({p}, optim::SGDOptions(0.1).weight_decay(-2)); },
               "SGD: weight_decay must be >= 0, got -2");
  expect_error([&] { optim::SGD({p}, optim::SGDOptions(0.1).nesterov(true)); },
               "SGD: nesterov needs momentum > 0 and dampening = 0, got momentum 0 and "
               "dampening 0");
  expect_error(
      [&] { optim::SGD({p}, optim::SGDOptions(0.1).momentum(0.9).dampening(0.1).nesterov(true)); },
      "SGD: nesterov needs momentum > 0 and dampening = 0, got momentum 0.9 and "
      "dampening 0.1");
  // A group's own options are checked too, and must be SGD's.
  std::vector<optim::OptimizerParamGroup> bad_group;
  bad_group.emplace_back(std::vector<Tensor>{p}, optim::SGDOptions(0.1).momentum(-1).clone());
  expect_error([&] { optim::SGD(bad_group, optim::SGDOptions(0.1)); },
               "SGD: momentum must be >= 0, got -1");
  std::vector<optim::OptimizerParamGroup> other;
  other.emplace_back(std::vector<Tensor>{p}, std::make_unique<OtherOptions>());
  expect_error([&] { optim::SGD(other, optim::SGDOptions(0.1)); },
               "SGD: a parameter group has the options of another optimizer");
  // Options changed after construction are checked at the step, before any
  // parameter moves.
  optim::SGD opt({p}, optim::SGDOptions(0.1));
  (p * p).sum().backward();
  opt.param_groups()[0].options().set_lr(-1.0);
  expect_error([&] { opt.step(); }, "SGD: lr must be >= 0, got -1");
  tt::expect_equal(p.detach(), zeros({2}));
  const optim::OptimizerParamGroup empty_group(std::vector<Tensor>{p});
  expect_error([&] { (void)empty_group.options(); },
               "OptimizerParamGroup: the group has no options");
}

TEST(SGD, ParameterErrors) {
  const Tensor p = zeros({2}, requires_grad());
  expect_error([] { optim::SGD({Tensor()}, optim::SGDOptions(0.1)); },
               "optimizer: parameter 0 of group 0 is an undefined tensor");
  expect_error([] { optim::SGD({zeros({3}, kInt64)}, optim::SGDOptions(0.1)); },
               "optimizer: parameter 0 of group 0 (int64[3] on cpu) is not floating-point");
  expect_error(
      [&] {
        optim::SGD({p, zeros({2})}, optim::SGDOptions(0.1));
      },
      "optimizer: parameter 1 of group 0 (float32[2] on cpu) does not require grad");
  expect_error([&] { optim::SGD({p * 2.0}, optim::SGDOptions(0.1)); },
               "optimizer: parameter 0 of group 0 (float32[2] on cpu) is not a leaf tensor");
  expect_error(
      [&] {
        optim::SGD({p, p}, optim::SGDOptions(0.1));
      },
      "optimizer: parameter 1 of group 0 (float32[2] on cpu) appears more than once");
  optim::SGD opt({p}, optim::SGDOptions(0.1));
  expect_error([&] { opt.add_param_group(optim::OptimizerParamGroup(std::vector<Tensor>{p})); },
               "optimizer: parameter 0 of group 1 (float32[2] on cpu) appears more than once");
  EXPECT_EQ(opt.param_groups().size(), 1u);  // the failed group was not added
}

TEST(SGD, CudaStepMatchesCpu) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const Device gpu(kCUDA);
  for (DType dt : tt::float_dtypes()) {
    for (const SgdConfig& cfg : kConfigs) {
      SCOPED_TRACE(testing::Message() << dtype_name(dt) << " momentum " << cfg.momentum
                                      << " nesterov " << cfg.nesterov << " wd " << cfg.wd);
      const Tensor pc = tt::random_tensor({33, 7}, dt).set_requires_grad(true);
      const Tensor pg = pc.detach().to(gpu).set_requires_grad(true);
      const Tensor c = tt::random_tensor({33, 7}, dt, 0.5, 2.0);
      const Tensor cg = c.to(gpu);
      optim::SGD oc({pc}, options_of(cfg));
      optim::SGD og({pg}, options_of(cfg));
      for (int s = 0; s < 5; ++s) {
        oc.zero_grad();
        og.zero_grad();
        (0.5 * sum(c * pc * pc)).backward();
        (0.5 * sum(cg * pg * pg)).backward();
        oc.step();
        og.step();
      }
      EXPECT_TRUE(pg.is_cuda());
      // The sums in backward round differently on the two devices.
      expect_close(pg, pc, tt::scaled(tt::default_tol(dt), 10.0));
      if (cfg.momentum != 0.0) {
        EXPECT_TRUE(og.momentum_buffer(pg).is_cuda());
        expect_close(og.momentum_buffer(pg), oc.momentum_buffer(pc),
                     tt::scaled(tt::default_tol(dt), 10.0));
      }
    }
  }
}

}  // namespace
