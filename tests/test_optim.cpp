// optim: SGD against a closed-form float64 reference (momentum, dampening,
// Nesterov, weight decay, several groups), skipped parameters, zero_grad,
// optimizer state after Module::to, training a small regression, every option
// and parameter error, and CUDA/CPU step parity.
// Adam, AdamW, RMSprop, Adagrad (and SGD again, through one table of cases):
// float64 closed-form references written out here, several groups, per-
// parameter step counts, convergence on a linear regression and a two-layer
// softmax net, bitwise resume from a state dict, state-dict errors, option
// errors, CUDA/CPU parity after 100 steps (multi-tensor launches split over
// many tensors and chunks), mixed devices in a group; clip_grad_norm_ /
// clip_grad_value_ against hand computations; the multi-tensor ops under
// clip_grad_norm_ (detail::foreach_norm_partial / foreach_scale_) against
// float64 references, with their errors.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <cmath>
#include <functional>
#include <memory>
#include <string>

#include "core/optim_math.h"
#include "ops/foreach.h"
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

// ---- Adam, AdamW, RMSprop, Adagrad (and SGD) through one table of cases -------------------

// The quadratic sum(c * p^2) / 2 again; its gradient c * p is set by hand, so
// the references below see exactly the gradients the optimizer saw.
void set_quadratic_grad(Tensor p, const Tensor& c) { p.mutable_grad() = c * p.detach(); }

struct AdamConfig {
  double lr, beta1, beta2, eps, wd;
  bool amsgrad;
  bool decoupled;  // AdamW
};
struct RmspropConfig {
  double lr, alpha, eps, wd, momentum;
  bool centered;
};
struct AdagradConfig {
  double lr, lr_decay, wd, init, eps;
};

// torch.optim.Adam / AdamW as documented, in float64 (bias corrections applied
// to m and v, then sqrt(v_hat) + eps).
std::vector<double> adam_reference(std::vector<double> p, const std::vector<double>& c, int steps,
                                   const AdamConfig& cfg) {
  std::vector<double> m(p.size(), 0.0), v(p.size(), 0.0), vmax(p.size(), 0.0);
  for (int t = 1; t <= steps; ++t) {
    for (size_t i = 0; i < p.size(); ++i) {
      double g = c[i] * p[i];
      if (cfg.decoupled) {
        p[i] *= 1.0 - cfg.lr * cfg.wd;
      } else {
        g += cfg.wd * p[i];
      }
      m[i] = cfg.beta1 * m[i] + (1.0 - cfg.beta1) * g;
      v[i] = cfg.beta2 * v[i] + (1.0 - cfg.beta2) * g * g;
      const double m_hat = m[i] / (1.0 - std::pow(cfg.beta1, t));
      double v_used = v[i];
      if (cfg.amsgrad) {
        vmax[i] = std::max(vmax[i], v[i]);
        v_used = vmax[i];
      }
      const double v_hat = v_used / (1.0 - std::pow(cfg.beta2, t));
      p[i] -= cfg.lr * m_hat / (std::sqrt(v_hat) + cfg.eps);
    }
  }
  return p;
}

std::vector<double> rmsprop_reference(std::vector<double> p, const std::vector<double>& c,
                                      int steps, const RmspropConfig& cfg) {
  std::vector<double> sq(p.size(), 0.0), ga(p.size(), 0.0), buf(p.size(), 0.0);
  for (int t = 1; t <= steps; ++t) {
    for (size_t i = 0; i < p.size(); ++i) {
      const double g = c[i] * p[i] + cfg.wd * p[i];
      sq[i] = cfg.alpha * sq[i] + (1.0 - cfg.alpha) * g * g;
      double avg;
      if (cfg.centered) {
        ga[i] = cfg.alpha * ga[i] + (1.0 - cfg.alpha) * g;
        avg = std::sqrt(sq[i] - ga[i] * ga[i]) + cfg.eps;
      } else {
        avg = std::sqrt(sq[i]) + cfg.eps;
      }
      if (cfg.momentum > 0.0) {
        buf[i] = cfg.momentum * buf[i] + g / avg;
        p[i] -= cfg.lr * buf[i];
      } else {
        p[i] -= cfg.lr * g / avg;
      }
    }
  }
  return p;
}

std::vector<double> adagrad_reference(std::vector<double> p, const std::vector<double>& c,
                                      int steps, const AdagradConfig& cfg) {
  std::vector<double> sum(p.size(), cfg.init);
  for (int t = 1; t <= steps; ++t) {
    const double clr = cfg.lr / (1.0 + (t - 1) * cfg.lr_decay);
    for (size_t i = 0; i < p.size(); ++i) {
      const double g = c[i] * p[i] + cfg.wd * p[i];
      sum[i] += g * g;
      p[i] -= clr * g / (std::sqrt(sum[i]) + cfg.eps);
    }
  }
  return p;
}

using Groups = std::vector<optim::OptimizerParamGroup>;

// One optimizer configuration: its options, a constructor taking groups and
// these options as defaults, and the float64 reference.
struct Case {
  std::string name;
  std::string kind;  // optimizer name
  std::function<std::unique_ptr<optim::OptimizerOptions>()> options;
  std::function<std::unique_ptr<optim::Optimizer>(Groups, const optim::OptimizerOptions&)> make;
  std::function<std::vector<double>(std::vector<double>, const std::vector<double>&, int)>
      reference;
};

template <typename Opt, typename Options>
std::unique_ptr<optim::Optimizer> make_as(Groups groups, const optim::OptimizerOptions& o) {
  return std::make_unique<Opt>(std::move(groups), dynamic_cast<const Options&>(o));
}

Case sgd_case(const SgdConfig& c) {
  std::ostringstream name;
  name << "SGD(lr " << c.lr << ", momentum " << c.momentum << ", dampening " << c.dampening
       << ", wd " << c.wd << ", nesterov " << c.nesterov << ")";
  return {name.str(), "SGD", [c] { return options_of(c).clone(); },
          make_as<optim::SGD, optim::SGDOptions>,
          [c](std::vector<double> p, const std::vector<double>& k, int n) {
            return sgd_reference(std::move(p), k, n, c);
          }};
}

Case adam_case(const AdamConfig& c) {
  std::ostringstream name;
  name << (c.decoupled ? "AdamW" : "Adam") << "(lr " << c.lr << ", betas " << c.beta1 << "/"
       << c.beta2 << ", eps " << c.eps << ", wd " << c.wd << ", amsgrad " << c.amsgrad << ")";
  Case out{name.str(), c.decoupled ? "AdamW" : "Adam", nullptr, nullptr,
           [c](std::vector<double> p, const std::vector<double>& k, int n) {
             return adam_reference(std::move(p), k, n, c);
           }};
  if (c.decoupled) {
    out.options = [c]() -> std::unique_ptr<optim::OptimizerOptions> {
      return optim::AdamWOptions(c.lr)
          .betas({c.beta1, c.beta2})
          .eps(c.eps)
          .weight_decay(c.wd)
          .amsgrad(c.amsgrad)
          .clone();
    };
    out.make = make_as<optim::AdamW, optim::AdamWOptions>;
  } else {
    out.options = [c]() -> std::unique_ptr<optim::OptimizerOptions> {
      return optim::AdamOptions(c.lr)
          .betas({c.beta1, c.beta2})
          .eps(c.eps)
          .weight_decay(c.wd)
          .amsgrad(c.amsgrad)
          .clone();
    };
    out.make = make_as<optim::Adam, optim::AdamOptions>;
  }
  return out;
}

Case rmsprop_case(const RmspropConfig& c) {
  std::ostringstream name;
  name << "RMSprop(lr " << c.lr << ", alpha " << c.alpha << ", eps " << c.eps << ", wd " << c.wd
       << ", momentum " << c.momentum << ", centered " << c.centered << ")";
  return {name.str(), "RMSprop",
          [c]() -> std::unique_ptr<optim::OptimizerOptions> {
            return optim::RMSpropOptions(c.lr)
                .alpha(c.alpha)
                .eps(c.eps)
                .weight_decay(c.wd)
                .momentum(c.momentum)
                .centered(c.centered)
                .clone();
          },
          make_as<optim::RMSprop, optim::RMSpropOptions>,
          [c](std::vector<double> p, const std::vector<double>& k, int n) {
            return rmsprop_reference(std::move(p), k, n, c);
          }};
}

Case adagrad_case(const AdagradConfig& c) {
  std::ostringstream name;
  name << "Adagrad(lr " << c.lr << ", lr_decay " << c.lr_decay << ", wd " << c.wd << ", init "
       << c.init << ", eps " << c.eps << ")";
  return {name.str(), "Adagrad",
          [c]() -> std::unique_ptr<optim::OptimizerOptions> {
            return optim::AdagradOptions(c.lr)
                .lr_decay(c.lr_decay)
                .weight_decay(c.wd)
                .initial_accumulator_value(c.init)
                .eps(c.eps)
                .clone();
          },
          make_as<optim::Adagrad, optim::AdagradOptions>,
          [c](std::vector<double> p, const std::vector<double>& k, int n) {
            return adagrad_reference(std::move(p), k, n, c);
          }};
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (const SgdConfig& c : kConfigs) cases.push_back(sgd_case(c));
  cases.push_back(adam_case({0.01, 0.9, 0.999, 1e-8, 0.0, false, false}));
  cases.push_back(adam_case({0.02, 0.8, 0.99, 1e-6, 0.1, false, false}));   // L2 decay
  cases.push_back(adam_case({0.01, 0.9, 0.999, 1e-8, 0.05, true, false}));  // amsgrad
  cases.push_back(adam_case({0.01, 0.9, 0.999, 1e-8, 0.1, false, true}));   // AdamW
  cases.push_back(adam_case({0.03, 0.5, 0.9, 1e-4, 0.2, true, true}));      // AdamW amsgrad
  cases.push_back(rmsprop_case({0.01, 0.99, 1e-8, 0.0, 0.0, false}));
  cases.push_back(rmsprop_case({0.005, 0.9, 1e-6, 0.1, 0.0, false}));  // weight decay
  cases.push_back(rmsprop_case({0.01, 0.95, 1e-8, 0.0, 0.9, false}));  // momentum
  cases.push_back(rmsprop_case({0.01, 0.9, 1e-8, 0.0, 0.0, true}));    // centered
  cases.push_back(rmsprop_case({0.002, 0.8, 1e-5, 0.05, 0.5, true}));  // all of them
  cases.push_back(adagrad_case({0.1, 0.0, 0.0, 0.0, 1e-10}));
  cases.push_back(adagrad_case({0.1, 0.05, 0.0, 0.0, 1e-10}));  // lr_decay
  cases.push_back(adagrad_case({0.05, 0.1, 0.1, 0.5, 1e-6}));   // + wd, initial value
  return cases;
}

void quadratic_steps(optim::Optimizer& opt, const std::vector<Tensor>& ps,
                     const std::vector<Tensor>& cs, int steps) {
  for (int s = 0; s < steps; ++s) {
    for (size_t i = 0; i < ps.size(); ++i) set_quadratic_grad(ps[i], cs[i]);
    opt.step();
  }
}

TEST(Optimizers, MatchClosedFormReference) {
  for (const Case& k : all_cases()) {
    SCOPED_TRACE(k.name);
    const Tensor p = tt::random_tensor({3, 5}, kFloat64).set_requires_grad(true);
    const Tensor c = tt::random_tensor({3, 5}, kFloat64, 0.5, 2.0);
    const std::vector<double> p0 = tt::to_doubles(p);
    Groups groups;
    groups.emplace_back(std::vector<Tensor>{p});
    auto opt = k.make(groups, *k.options());
    EXPECT_EQ(opt->name(), k.kind);
    quadratic_steps(*opt, {p}, {c}, 7);
    expect_relative(tt::to_doubles(p), k.reference(p0, tt::to_doubles(c), 7), 1e-10);
    ASSERT_NE(opt->state(p), nullptr);
    EXPECT_EQ(opt->state(p)->step, 7);
    EXPECT_TRUE(p.requires_grad());
    EXPECT_TRUE(p.is_leaf());
  }
}

// Two groups: the first with the options of case i, the second with the
// defaults of the next case of the same optimizer.
// Many parameters in one step: the CPU loop cuts them into chunks of
// kFusedChunk elements across tensors, each with its own pointers and step
// scalars. Odd sizes, tensors spanning several chunks, and step counts that
// differ per parameter (the odd ones get no gradient for the first steps).
TEST(Optimizers, ManyTensorsInOneStepMatchReference) {
  std::vector<Shape> shapes = {{1}, {7}, {33, 7}, {3 * kFusedChunk + 5}, {2, kFusedChunk}};
  for (int i = 0; i < 23; ++i) shapes.push_back({1 + (i * 37) % 91});
  for (DType dt : tt::float_dtypes()) {
    for (const Case& k : all_cases()) {
      SCOPED_TRACE(k.name + " " + dtype_name(dt));
      std::vector<Tensor> ps, cs, evens, even_cs;
      for (size_t i = 0; i < shapes.size(); ++i) {
        ps.push_back(tt::random_tensor(shapes[i], dt).set_requires_grad(true));
        cs.push_back(tt::random_tensor(shapes[i], dt, 0.5, 2.0));
        if (i % 2 == 0) {
          evens.push_back(ps.back());
          even_cs.push_back(cs.back());
        }
      }
      std::vector<std::vector<double>> p0;
      for (const Tensor& p : ps) p0.push_back(tt::to_doubles(p));
      Groups groups;
      groups.emplace_back(ps);
      auto opt = k.make(groups, *k.options());
      quadratic_steps(*opt, evens, even_cs, 2);  // the odd ones have no gradient yet
      quadratic_steps(*opt, ps, cs, 3);
      for (size_t i = 0; i < ps.size(); ++i) {
        SCOPED_TRACE("parameter " + std::to_string(i) + " " + shape_str(shapes[i]));
        const std::vector<double> ref = k.reference(p0[i], tt::to_doubles(cs[i]), i % 2 ? 3 : 5);
        // float64: as MatchClosedFormReference, plus an atol for the few of 50k
        // elements that cancel to ~1e-8; float32 against the float64 closed
        // form: a few ulps per step.
        const tt::Tol tol = dt == kFloat64 ? tt::Tol{1e-10, 1e-15} : tt::Tol{1e-4, 1e-5};
        tt::expect_close(ps[i].detach(), from_vector<double>(ref, shapes[i]), tol);
      }
    }
  }
}

TEST(Optimizers, EachGroupUsesItsOwnOptions) {
  const std::vector<Case> cases = all_cases();
  for (size_t i = 0; i < cases.size(); ++i) {
    size_t j = (i + 1) % cases.size();
    while (cases[j].kind != cases[i].kind) j = (j + 1) % cases.size();
    if (j == i) continue;
    SCOPED_TRACE(cases[i].name + " and defaults " + cases[j].name);
    const Tensor p = tt::random_tensor({4}, kFloat64).set_requires_grad(true);
    const Tensor q = tt::random_tensor({2, 3}, kFloat64).set_requires_grad(true);
    const Tensor cp = tt::random_tensor({4}, kFloat64, 0.5, 2.0);
    const Tensor cq = tt::random_tensor({2, 3}, kFloat64, 0.5, 2.0);
    const std::vector<double> p0 = tt::to_doubles(p), q0 = tt::to_doubles(q);
    Groups groups;
    groups.emplace_back(std::vector<Tensor>{p}, cases[i].options());
    groups.emplace_back(std::vector<Tensor>{q});
    auto opt = cases[j].make(groups, *cases[j].options());
    EXPECT_DOUBLE_EQ(opt->param_groups()[1].options().get_lr(), cases[j].options()->get_lr());
    quadratic_steps(*opt, {p, q}, {cp, cq}, 6);
    expect_relative(tt::to_doubles(p), cases[i].reference(p0, tt::to_doubles(cp), 6), 1e-10);
    expect_relative(tt::to_doubles(q), cases[j].reference(q0, tt::to_doubles(cq), 6), 1e-10);
  }
}

// Bias corrections (Adam) and lr decay (Adagrad) use each parameter's own
// step count: a parameter without a gradient does not count the step.
TEST(Optimizers, StepCountsArePerParameter) {
  const AdamConfig ac{0.05, 0.9, 0.99, 1e-8, 0.0, false, false};
  const AdagradConfig gc{0.1, 0.5, 0.0, 0.0, 1e-10};
  for (const Case& k : {adam_case(ac), adagrad_case(gc)}) {
    SCOPED_TRACE(k.name);
    const Tensor p = tt::random_tensor({5}, kFloat64).set_requires_grad(true);
    const Tensor q = tt::random_tensor({5}, kFloat64).set_requires_grad(true);
    const Tensor c = tt::random_tensor({5}, kFloat64, 0.5, 2.0);
    const std::vector<double> p0 = tt::to_doubles(p), q0 = tt::to_doubles(q);
    Groups groups;
    groups.emplace_back(std::vector<Tensor>{p, q});
    auto opt = k.make(groups, *k.options());
    quadratic_steps(*opt, {p}, {c}, 3);  // q has no gradient yet
    EXPECT_EQ(opt->state(q), nullptr);
    quadratic_steps(*opt, {p, q}, {c, c}, 2);
    EXPECT_EQ(opt->state(p)->step, 5);
    EXPECT_EQ(opt->state(q)->step, 2);
    expect_relative(tt::to_doubles(p), k.reference(p0, tt::to_doubles(c), 5), 1e-10);
    expect_relative(tt::to_doubles(q), k.reference(q0, tt::to_doubles(c), 2), 1e-10);
  }
}

TEST(Optimizers, EmptyParametersAndMissingGradients) {
  for (const Case& k : all_cases()) {
    SCOPED_TRACE(k.name);
    const Tensor empty_p = zeros({0, 3}, kFloat32).set_requires_grad(true);
    const Tensor unused = tt::random_tensor({3}, kFloat32).set_requires_grad(true);
    const Tensor unused_before = unused.detach().clone();
    Groups groups;
    groups.emplace_back(std::vector<Tensor>{empty_p, unused});
    auto opt = k.make(groups, *k.options());
    Tensor e = empty_p;
    e.mutable_grad() = zeros({0, 3}, kFloat32);
    opt->step();
    opt->step();
    EXPECT_EQ(opt->state(empty_p)->step, 2);
    EXPECT_EQ(opt->state(unused), nullptr);
    tt::expect_equal(unused.detach(), unused_before);
  }
}

// A gradient assigned by hand must match its parameter.
TEST(Optimizers, MismatchedGradientIsAnError) {
  const Tensor p = zeros({3}, requires_grad());
  Tensor q = p;
  q.mutable_grad() = zeros({4});
  optim::Adam opt({p}, optim::AdamOptions(0.1));
  expect_error([&] { opt.step(); },
               "Adam: the gradient (float32[4] on cpu) does not match its parameter "
               "(float32[3] on cpu)");
  q.mutable_grad() = zeros({3}, kFloat64);
  expect_error([&] { opt.step(); }, "Adam: the gradient (float64[3] on cpu) does not match");
}

// A gradient that overlaps a parameter (or another parameter's state) of the
// same step is read as it was before the step: the step copies it first
// (issue 18.4). Reference: the same optimizer on copies that share nothing.
TEST(Optimizers, GradientOverlappingAParameterIsReadBeforeTheStep) {
  const int64_t n = 9;
  using Make = std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)>;
  const std::vector<std::pair<std::string, Make>> makers = {
      {"SGD",
       [](std::vector<Tensor> ps) {
         return std::make_unique<optim::SGD>(std::move(ps), optim::SGDOptions(0.1).momentum(0.9));
       }},
      {"Adam",
       [](std::vector<Tensor> ps) {
         return std::make_unique<optim::Adam>(std::move(ps), optim::AdamOptions(0.1));
       }},
  };
  for (const auto& [name, make] : makers) {
    SCOPED_TRACE(name);
    // p1 = base[0, n), p2 = base[n, 2n); p2's gradient is base[n - 1, 2n - 1):
    // p1's last element and all but the last of p2.
    Tensor base = tt::random_tensor({2 * n}, kFloat32, 1.0, 2.0);
    Tensor p1 = base.slice(0, 0, n), p2 = base.slice(0, n, 2 * n);
    p1.set_requires_grad(true);
    p2.set_requires_grad(true);
    p1.mutable_grad() = tt::random_tensor({n}, kFloat32, -1.0, 1.0);
    p2.mutable_grad() = base.slice(0, n - 1, 2 * n - 1).detach();
    // The reference: copies of everything, no sharing.
    Tensor q1 = p1.detach().clone().set_requires_grad(true);
    Tensor q2 = p2.detach().clone().set_requires_grad(true);
    q1.mutable_grad() = p1.grad().clone();
    q2.mutable_grad() = p2.grad().clone();
    auto opt = make({p1, p2});
    auto ref = make({q1, q2});
    opt->step();
    ref->step();
    tt::expect_equal(p1.detach(), q1.detach());
    tt::expect_equal(p2.detach(), q2.detach());
  }
}

// A step that throws (a bad gradient or bad options in a later group) changes
// no parameter and no state of any group.
TEST(Optimizers, AFailedStepChangesNothing) {
  manual_seed(41);
  Tensor a = randn({5}, requires_grad()), b = randn({3}, requires_grad());
  Tensor ga = a, gb = b;
  ga.mutable_grad() = randn({5});
  std::vector<optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<Tensor>{a});
  groups.emplace_back(std::vector<Tensor>{b});
  optim::Adam opt(groups, optim::AdamOptions(0.1));
  const Tensor a_before = a.detach().clone();
  gb.mutable_grad() = randn({4});  // wrong shape, in the second group
  expect_error([&] { opt.step(); }, "Adam: the gradient (float32[4] on cpu) does not match");
  tt::expect_equal(a.detach(), a_before);
  EXPECT_EQ(opt.state(a), nullptr);
  gb.mutable_grad() = randn({3});
  opt.param_groups()[1].options().set_lr(-1.0);
  expect_error([&] { opt.step(); }, "Adam: lr must be >= 0, got -1");
  tt::expect_equal(a.detach(), a_before);
  EXPECT_EQ(opt.state(a), nullptr);
  opt.param_groups()[1].options().set_lr(0.1);
  opt.step();
  ASSERT_NE(opt.state(a), nullptr);
  EXPECT_EQ(opt.state(a)->step, 1);
  EXPECT_GT((a.detach() - a_before).abs().sum().item<double>(), 0.0);
}

// Module::to after a step: the state follows the parameters at the next step.
TEST(Optimizers, StateFollowsModuleTo) {
  manual_seed(9);
  nn::Linear model(4, 2);
  optim::Adam opt(model->parameters(), optim::AdamOptions(0.01).amsgrad(true));
  const Tensor x = tt::random_tensor({3, 4}, kFloat32);
  model(x).square().sum().backward();
  opt.step();
  model->to(kFloat64);
  const Tensor w = model->weight;
  EXPECT_EQ(opt.state(w)->buffers.at("exp_avg").dtype(), kFloat32);  // until the next step
  const Tensor m_before = opt.state(w)->buffers.at("exp_avg").to(kFloat64);
  opt.zero_grad();
  model(x.to(kFloat64)).square().sum().backward();
  const Tensor g = w.grad().clone();
  opt.step();
  EXPECT_EQ(opt.state(w)->step, 2);
  for (const auto& kv : opt.state(w)->buffers) EXPECT_EQ(kv.second.dtype(), kFloat64) << kv.first;
  expect_close(opt.state(w)->buffers.at("exp_avg"), 0.9 * m_before + 0.1 * g,
               tt::Tol{1e-12, 1e-14});
}

// ---- Convergence --------------------------------------------------------------------

// One configuration per optimizer with a learning rate suited to these problems.
std::vector<Case> training_cases(double scale) {
  return {sgd_case({0.1 * scale, 0.9, 0.0, 0.0, true}),
          adam_case({0.05 * scale, 0.9, 0.999, 1e-8, 0.0, false, false}),
          adam_case({0.05 * scale, 0.9, 0.999, 1e-8, 1e-3, true, true}),
          rmsprop_case({0.01 * scale, 0.99, 1e-8, 0.0, 0.0, false}),
          rmsprop_case({0.005 * scale, 0.9, 1e-8, 0.0, 0.5, true}),
          adagrad_case({0.3 * scale, 0.0, 0.0, 0.1, 1e-10})};
}

TEST(Optimizers, ReduceTheLossOfALinearRegression) {
  for (const Case& k : training_cases(1.0)) {
    SCOPED_TRACE(k.name);
    manual_seed(5);
    nn::Linear model(3, 1);
    const Tensor x = randn({64, 3});
    const Tensor y = matmul(x, from_vector<float>({1.5f, -2.0f, 0.5f}, {3, 1})) + 0.3;
    Groups groups;
    groups.emplace_back(model->parameters());
    auto opt = k.make(groups, *k.options());
    const double first = mse_loss(model(x), y).item<double>();
    for (int i = 0; i < 300; ++i) {
      opt->zero_grad();
      mse_loss(model(x), y).backward();
      opt->step();
    }
    const double last = mse_loss(model(x), y).item<double>();
    EXPECT_LT(last, 1e-2 * first) << "first " << first << " last " << last;
  }
}

// scores = relu(x W1 + b1) W2 + b2 with cross_entropy, as in
// examples/two_layer_net.cpp; labels from a random linear teacher.
TEST(Optimizers, TrainATwoLayerSoftmaxNet) {
  for (const Case& k : training_cases(0.3)) {
    SCOPED_TRACE(k.name);
    Generator gen(11);
    const Tensor x = normal({128, 6}, 0.0, 1.0, {}, &gen);
    const Tensor teacher = normal({6, 4}, 0.0, 1.0, {}, &gen);
    const Tensor y = argmax(matmul(x, teacher), 1);
    std::vector<Tensor> p = {normal({6, 32}, 0.0, 0.3, {}, &gen).set_requires_grad(true),
                             zeros({32}).set_requires_grad(true),
                             normal({32, 4}, 0.0, 0.3, {}, &gen).set_requires_grad(true),
                             zeros({4}).set_requires_grad(true)};
    const auto loss = [&] {
      return cross_entropy(matmul(relu(matmul(x, p[0]) + p[1]), p[2]) + p[3], y);
    };
    // The biases in a group of their own with its own options object (where a
    // model would give them another lr or no weight decay).
    Groups groups;
    groups.emplace_back(std::vector<Tensor>{p[0], p[2]});
    auto bias_options = k.options();
    groups.emplace_back(std::vector<Tensor>{p[1], p[3]}, std::move(bias_options));
    auto opt = k.make(groups, *k.options());
    const double first = loss().item<double>();
    for (int i = 0; i < 150; ++i) {
      opt->zero_grad();
      loss().backward();
      opt->step();
    }
    const double last = loss().item<double>();
    EXPECT_LT(last, 0.3 * first) << "first " << first << " last " << last;
  }
}

// ---- State dicts --------------------------------------------------------------------

// Runs `steps` steps on the quadratic with a learning rate changed halfway
// (as a scheduler would), from copies of p0.
struct TrainingRun {
  std::vector<Tensor> params;
  std::unique_ptr<optim::Optimizer> opt;
};

TrainingRun start_run(const Case& k, const std::vector<Tensor>& p0) {
  TrainingRun r;
  for (const Tensor& p : p0) r.params.push_back(p.detach().clone().set_requires_grad(true));
  Groups groups;
  groups.emplace_back(std::vector<Tensor>{r.params[0], r.params[1]});
  groups.emplace_back(std::vector<Tensor>{r.params[2]}, k.options());
  r.opt = k.make(groups, *k.options());
  return r;
}

void run_steps(TrainingRun& r, const std::vector<Tensor>& cs, int from, int to) {
  for (int s = from; s < to; ++s) {
    if (s == 3)
      r.opt->param_groups()[1].options().set_lr(r.opt->param_groups()[1].options().get_lr() * 0.5);
    for (size_t i = 0; i < r.params.size(); ++i) set_quadratic_grad(r.params[i], cs[i]);
    r.opt->step();
  }
}

TEST(Optimizers, StateDictResumesBitwiseOnCpu) {
  for (DType dt : tt::float_dtypes()) {
    for (const Case& k : all_cases()) {
      SCOPED_TRACE(k.name + " " + dtype_name(dt));
      const std::vector<Tensor> p0 = {tt::random_tensor({4, 3}, dt), tt::random_tensor({5}, dt),
                                      tt::random_tensor({2, 2}, dt)};
      const std::vector<Tensor> cs = {tt::random_tensor({4, 3}, dt, 0.5, 2.0),
                                      tt::random_tensor({5}, dt, 0.5, 2.0),
                                      tt::random_tensor({2, 2}, dt, 0.5, 2.0)};
      TrainingRun whole = start_run(k, p0);
      run_steps(whole, cs, 0, 10);

      TrainingRun first = start_run(k, p0);
      run_steps(first, cs, 0, 5);
      const optim::OptimizerState saved = first.opt->state_dict();
      EXPECT_EQ(saved.optimizer, k.kind);
      ASSERT_EQ(saved.param_state.size(), 2u);
      ASSERT_EQ(saved.param_state[0].size(), 2u);
      EXPECT_EQ(saved.param_state[0][1].step, 5);
      // The snapshot is a deep copy: stepping on does not change it.
      std::vector<std::vector<double>> buffers_then;
      for (const auto& kv : saved.param_state[0][0].buffers)
        buffers_then.push_back(tt::to_doubles(kv.second));
      run_steps(first, cs, 5, 7);
      size_t b = 0;
      for (const auto& kv : saved.param_state[0][0].buffers)
        EXPECT_EQ(tt::to_doubles(kv.second), buffers_then[b++]) << kv.first;

      // A fresh optimizer with fresh parameters (the values at step 5), made
      // with the case's defaults, then restored.
      std::vector<Tensor> at5;
      {
        TrainingRun replay = start_run(k, p0);
        run_steps(replay, cs, 0, 5);
        for (const Tensor& p : replay.params) at5.push_back(p.detach().clone());
      }
      TrainingRun resumed = start_run(k, at5);
      resumed.opt->load_state_dict(saved);
      EXPECT_DOUBLE_EQ(resumed.opt->param_groups()[1].options().get_lr(),
                       k.options()->get_lr() * 0.5);
      run_steps(resumed, cs, 5, 10);
      for (size_t i = 0; i < p0.size(); ++i)
        tt::expect_equal(resumed.params[i].detach(), whole.params[i].detach());
      const optim::OptimizerState end_whole = whole.opt->state_dict();
      const optim::OptimizerState end_resumed = resumed.opt->state_dict();
      for (size_t g = 0; g < 2; ++g) {
        for (size_t i = 0; i < end_whole.param_state[g].size(); ++i) {
          EXPECT_EQ(end_resumed.param_state[g][i].step, end_whole.param_state[g][i].step);
          ASSERT_EQ(end_resumed.param_state[g][i].buffers.size(),
                    end_whole.param_state[g][i].buffers.size());
          for (const auto& kv : end_whole.param_state[g][i].buffers) {
            tt::expect_equal(end_resumed.param_state[g][i].buffers.at(kv.first), kv.second);
          }
        }
      }
    }
  }
}

TEST(Optimizers, LoadStateDictErrors) {
  const Tensor p = tt::random_tensor({3}, kFloat32).set_requires_grad(true);
  const Tensor q = tt::random_tensor({2, 2}, kFloat32).set_requires_grad(true);
  optim::Adam adam({p, q}, optim::AdamOptions(0.1));
  set_quadratic_grad(p, ones({3}));
  set_quadratic_grad(q, ones({2, 2}));
  adam.step();
  const optim::OptimizerState good = adam.state_dict();
  const Tensor p_now = p.detach().clone();

  optim::SGD sgd({p, q}, optim::SGDOptions(0.1));
  expect_error([&] { sgd.load_state_dict(good); },
               "SGD::load_state_dict: the state was saved from Adam, not from SGD");

  Groups two;
  two.emplace_back(std::vector<Tensor>{p});
  two.emplace_back(std::vector<Tensor>{q});
  optim::Adam two_groups(two, optim::AdamOptions(0.1));
  expect_error([&] { two_groups.load_state_dict(good); },
               "Adam::load_state_dict: the state has 1 parameter groups, the optimizer has 2");

  optim::Adam fewer({p}, optim::AdamOptions(0.1));
  expect_error([&] { fewer.load_state_dict(good); },
               "Adam::load_state_dict: group 0 of the state has 2 parameters, the optimizer's "
               "has 1");

  const Tensor r = zeros({5}, requires_grad());
  optim::Adam other_shape({p, r}, optim::AdamOptions(0.1));
  expect_error([&] { other_shape.load_state_dict(good); },
               {"Adam::load_state_dict: buffer \"exp_avg\" of parameter 1 of group 0 is "
                "float32[2, 2] on cpu but the parameter is float32[5] on cpu"});
  EXPECT_EQ(other_shape.state(p), nullptr);  // nothing was loaded

  optim::OptimizerState wrong_options = good;
  wrong_options.group_options[0] = std::make_shared<optim::SGDOptions>(0.1);
  optim::Adam fresh({p, q}, optim::AdamOptions(0.3));
  expect_error([&] { fresh.load_state_dict(wrong_options); },
               "Adam: a parameter group has the options of another optimizer");
  optim::OptimizerState bad_lr = good;
  bad_lr.group_options[0] =
      std::shared_ptr<const optim::OptimizerOptions>(optim::AdamOptions(-1.0).clone());
  expect_error([&] { fresh.load_state_dict(bad_lr); }, "Adam: lr must be >= 0, got -1");
  optim::OptimizerState no_options = good;
  no_options.group_options[0] = nullptr;
  expect_error([&] { fresh.load_state_dict(no_options); },
               "Adam::load_state_dict: group 0 has no options");
  optim::OptimizerState negative_step = good;
  negative_step.param_state[0][1].step = -3;
  expect_error([&] { fresh.load_state_dict(negative_step); },
               "Adam::load_state_dict: parameter 1 of group 0 has a negative step count -3");
  optim::OptimizerState int_buffer = good;
  int_buffer.param_state[0][0].buffers["exp_avg"] = zeros({3}, kInt64);
  expect_error([&] { fresh.load_state_dict(int_buffer); },
               "Adam::load_state_dict: buffer \"exp_avg\" of parameter 0 of group 0 is not "
               "floating-point");
  EXPECT_DOUBLE_EQ(fresh.param_groups()[0].options().get_lr(), 0.3);
  EXPECT_EQ(fresh.state(p), nullptr);
  tt::expect_equal(p.detach(), p_now);

  // Loading converts the buffers to the parameters' dtype.
  const Tensor p64 = p.detach().to(kFloat64).set_requires_grad(true);
  const Tensor q64 = q.detach().to(kFloat64).set_requires_grad(true);
  optim::Adam f64({p64, q64}, optim::AdamOptions(0.1));
  f64.load_state_dict(good);
  EXPECT_EQ(f64.state(p64)->buffers.at("exp_avg").dtype(), kFloat64);
  EXPECT_EQ(f64.state(p64)->step, 1);
}

// ---- Options ----------------------------------------------------------------------------

TEST(Optimizers, OptionErrors) {
  const Tensor p = zeros({2}, requires_grad());
  using optim::AdagradOptions;
  using optim::AdamOptions;
  using optim::AdamWOptions;
  using optim::RMSpropOptions;
  expect_error([&] { optim::Adam({p}, AdamOptions(-0.1)); }, "Adam: lr must be >= 0, got -0.1");
  expect_error([&] { optim::Adam({p}, AdamOptions().eps(-1e-8)); },
               "Adam: eps must be >= 0, got -1e-08");
  expect_error([&] { optim::Adam({p}, AdamOptions().weight_decay(-1)); },
               "Adam: weight_decay must be >= 0, got -1");
  expect_error(
      [&] {
        optim::Adam({p}, AdamOptions().betas({1.0, 0.999}));
      },
      "Adam: beta1 must be in [0, 1), got 1");
  expect_error(
      [&] {
        optim::Adam({p}, AdamOptions().betas({-0.1, 0.999}));
      },
      "Adam: beta1 must be in [0, 1), got -0.1");
  expect_error(
      [&] {
        optim::Adam({p}, AdamOptions().betas({0.9, 1.5}));
      },
      "Adam: beta2 must be in [0, 1), got 1.5");
  expect_error([&] { optim::AdamW({p}, AdamWOptions(-1.0)); }, "AdamW: lr must be >= 0, got -1");
  expect_error(
      [&] {
        optim::AdamW({p}, AdamWOptions().betas({0.9, 1.0}));
      },
      "AdamW: beta2 must be in [0, 1), got 1");
  expect_error([&] { optim::AdamW({p}, AdamWOptions().eps(-1)); },
               "AdamW: eps must be >= 0, got -1");
  expect_error([&] { optim::AdamW({p}, AdamWOptions().weight_decay(-0.01)); },
               "AdamW: weight_decay must be >= 0, got -0.01");
  expect_error([&] { optim::RMSprop({p}, RMSpropOptions(-1)); },
               "RMSprop: lr must be >= 0, got -1");
  expect_error([&] { optim::RMSprop({p}, RMSpropOptions().eps(-1)); },
               "RMSprop: eps must be >= 0, got -1");
  expect_error([&] { optim::RMSprop({p}, RMSpropOptions().weight_decay(-1)); },
               "RMSprop: weight_decay must be >= 0, got -1");
  expect_error([&] { optim::RMSprop({p}, RMSpropOptions().momentum(-0.9)); },
               "RMSprop: momentum must be >= 0, got -0.9");
  expect_error([&] { optim::RMSprop({p}, RMSpropOptions().alpha(1.0)); },
               "RMSprop: alpha must be in [0, 1), got 1");
  expect_error([&] { optim::RMSprop({p}, RMSpropOptions().alpha(-0.5)); },
               "RMSprop: alpha must be in [0, 1), got -0.5");
  expect_error([&] { optim::Adagrad({p}, AdagradOptions(-1)); },
               "Adagrad: lr must be >= 0, got -1");
  expect_error([&] { optim::Adagrad({p}, AdagradOptions().lr_decay(-1)); },
               "Adagrad: lr_decay must be >= 0, got -1");
  expect_error([&] { optim::Adagrad({p}, AdagradOptions().weight_decay(-1)); },
               "Adagrad: weight_decay must be >= 0, got -1");
  expect_error([&] { optim::Adagrad({p}, AdagradOptions().initial_accumulator_value(-1)); },
               "Adagrad: initial_accumulator_value must be >= 0, got -1");
  expect_error([&] { optim::Adagrad({p}, AdagradOptions().eps(-1)); },
               "Adagrad: eps must be >= 0, got -1");
  // Group options: checked at construction, by add_param_group, and at the step.
  Groups bad;
  bad.emplace_back(std::vector<Tensor>{p}, RMSpropOptions().momentum(-1).clone());
  expect_error([&] { optim::RMSprop(bad, RMSpropOptions()); },
               "RMSprop: momentum must be >= 0, got -1");
  Groups foreign;
  foreign.emplace_back(std::vector<Tensor>{p}, AdamOptions().clone());
  expect_error([&] { optim::AdamW(foreign, AdamWOptions()); },
               "AdamW: a parameter group has the options of another optimizer");
  optim::Adagrad opt({p}, AdagradOptions(0.1));
  const Tensor q = zeros({2}, requires_grad());
  expect_error(
      [&] {
        opt.add_param_group(optim::OptimizerParamGroup({q}, AdagradOptions().lr_decay(-2).clone()));
      },
      "Adagrad: lr_decay must be >= 0, got -2");
  EXPECT_EQ(opt.param_groups().size(), 1u);
  set_quadratic_grad(p, ones({2}));
  opt.param_groups()[0].options().set_lr(-1.0);
  expect_error([&] { opt.step(); }, "Adagrad: lr must be >= 0, got -1");
  tt::expect_equal(p.detach(), zeros({2}));
  // Defaults as in PyTorch.
  EXPECT_DOUBLE_EQ(AdamOptions().lr(), 1e-3);
  EXPECT_DOUBLE_EQ(std::get<1>(AdamOptions().betas()), 0.999);
  EXPECT_DOUBLE_EQ(AdamWOptions().weight_decay(), 1e-2);
  EXPECT_DOUBLE_EQ(RMSpropOptions().alpha(), 0.99);
  EXPECT_DOUBLE_EQ(AdagradOptions().eps(), 1e-10);
}

// Two parameters that are overlapping views of one tensor (distinct tensors,
// so add_param_group's "appears more than once" does not catch them): a fused
// step would update the shared elements twice on the CPU and race on the
// GPU. Refused before any state changes.
TEST(Optimizers, OverlappingParametersAreAnError) {
  const Tensor w = tt::random_tensor({6}, kFloat32);
  const Tensor before = w.clone();
  Tensor a = w.slice(0, 0, 4).set_requires_grad(true);
  Tensor b = w.slice(0, 3, 6).set_requires_grad(true);
  a.mutable_grad() = ones({4});
  b.mutable_grad() = ones({3});
  optim::SGD sgd({a, b}, optim::SGDOptions(0.1).momentum(0.9));
  expect_error([&] { sgd.step(); }, {"parameters 0 and 1", "overlap"});
  tt::expect_equal(w, before);
  std::vector<optim::OptimizerParamGroup> groups;  // across groups too
  groups.emplace_back(std::vector<Tensor>{a});
  groups.emplace_back(std::vector<Tensor>{b});
  optim::Adam adam(groups, optim::AdamOptions(0.1));
  expect_error([&] { adam.step(); }, {"parameters 0 and 1", "overlap"});
  tt::expect_equal(w, before);
}

// ---- Gradient clipping --------------------------------------------------------------

TEST(ClipGrad, NormMatchesHandComputation) {
  const std::vector<double> g1 = {3.0, -4.0, 1.0}, g2 = {-2.0, 0.5};
  for (double norm_type : {2.0, 1.0, 3.0, static_cast<double>(INFINITY)}) {
    SCOPED_TRACE(norm_type);
    for (DType dt : tt::float_dtypes()) {
      Tensor a = zeros({3}, dt).set_requires_grad(true);
      Tensor b = zeros({2}, dt).set_requires_grad(true);
      Tensor none = zeros({4}, dt).set_requires_grad(true);  // no gradient: skipped
      a.mutable_grad() = tt::make_tensor(g1, {3}, dt);
      b.mutable_grad() = tt::make_tensor(g2, {2}, dt);
      double total = 0.0;
      for (double v : {3.0, 4.0, 1.0, 2.0, 0.5}) {
        if (std::isinf(norm_type)) {
          total = std::max(total, v);
        } else {
          total += std::pow(v, norm_type);
        }
      }
      if (!std::isinf(norm_type)) total = std::pow(total, 1.0 / norm_type);
      // Below the threshold nothing changes.
      EXPECT_NEAR(nn::utils::clip_grad_norm_({a, b, none}, total * 2.0, norm_type), total,
                  1e-12 * total);
      expect_close(a.grad(), tt::make_tensor(g1, {3}, dt));
      // Above it every gradient is scaled by max_norm / (total + 1e-6).
      const double max_norm = 1.5;
      EXPECT_NEAR(nn::utils::clip_grad_norm_({a, b, none}, max_norm, norm_type), total,
                  1e-12 * total);
      const double coef = max_norm / (total + 1e-6);
      std::vector<double> s1 = g1, s2 = g2;
      for (double& v : s1) v *= coef;
      for (double& v : s2) v *= coef;
      expect_close(a.grad(), tt::make_tensor(s1, {3}, dt));
      expect_close(b.grad(), tt::make_tensor(s2, {2}, dt));
      EXPECT_FALSE(none.grad().defined());
      EXPECT_NEAR(nn::utils::clip_grad_norm_(std::vector<Tensor>{a, b}, max_norm, norm_type),
                  max_norm, 1e-5);
    }
  }
  const Tensor lone = zeros({2}, requires_grad());
  EXPECT_EQ(nn::utils::clip_grad_norm_(lone, 1.0), 0.0);  // no gradient at all
}

TEST(ClipGrad, ValueAndErrors) {
  Tensor a = zeros({4}, requires_grad());
  a.mutable_grad() = from_vector<float>({-3.0f, 0.5f, 2.0f, -0.25f}, {4});
  nn::utils::clip_grad_value_(a, 1.0);
  tt::expect_equal(a.grad(), from_vector<float>({-1.0f, 0.5f, 1.0f, -0.25f}, {4}));
  expect_error([&] { nn::utils::clip_grad_value_(a, -1.0); },
               "clip_grad_value_: clip_value must be >= 0, got -1");
  expect_error([&] { nn::utils::clip_grad_norm_(a, -1.0); },
               "clip_grad_norm_: max_norm must be >= 0, got -1");
  expect_error([&] { nn::utils::clip_grad_norm_(a, 1.0, 0.0); },
               "clip_grad_norm_: norm_type must be > 0 (or INFINITY), got 0");
  expect_error([&] { nn::utils::clip_grad_norm_({Tensor()}, 1.0); },
               "clip_grad_norm_: a parameter is an undefined tensor");
  a.mutable_grad() = from_vector<float>({NAN, 1.0f, 0.0f, 0.0f}, {4});
  EXPECT_TRUE(std::isnan(nn::utils::clip_grad_norm_(a, 1.0)));
  expect_error([&] { nn::utils::clip_grad_norm_(a, 1.0, 2.0, /*error_if_nonfinite=*/true); },
               "clip_grad_norm_: the total norm (2-norm) of the gradients is nan");
}

// A gradient listed twice (or two gradients sharing bytes) would be counted
// twice in the norm and scaled twice on the CPU, and scaled by two threads at
// once on the GPU: refused before anything is read or written
// (detail::check_no_overlap_in_list, src/core/checks.h).
TEST(ClipGrad, AGradientListedTwiceIsAnError) {
  Tensor a = zeros({4}, requires_grad());
  a.mutable_grad() = from_vector<float>({3.0f, -4.0f, 1.0f, 2.0f}, {4});
  const Tensor before = a.grad().clone();
  expect_error(
      [&] {
        nn::utils::clip_grad_norm_({a, a}, 1.0);
      },
      {"clip_grad_norm_", "gradients 0 and 1", "overlap", "float32[4] on cpu"});
  tt::expect_equal(a.grad(), before);
  // Two parameters whose gradients are overlapping views of one tensor.
  const Tensor shared = tt::random_tensor({6}, kFloat32);
  Tensor p = zeros({4}, requires_grad()), q = zeros({4}, requires_grad());
  p.mutable_grad() = shared.slice(0, 0, 4);
  q.mutable_grad() = shared.slice(0, 2, 6);
  expect_error(
      [&] {
        nn::utils::clip_grad_norm_({p, q}, 1e-3);
      },
      {"clip_grad_norm_", "gradients 0 and 1", "overlap"});
  // Disjoint views of one tensor are fine.
  q.mutable_grad() = zeros({0});
  Tensor r = zeros({2}, requires_grad());
  r.mutable_grad() = shared.slice(0, 4, 6);
  EXPECT_GT(nn::utils::clip_grad_norm_({p, r}, 1e6), 0.0);
}

TEST(ForeachOps, OverlappingTensorsInOneListAreAnError) {
  const Tensor t = tt::random_tensor({5}, kFloat64);
  const Tensor before = t.clone();
  expect_error(
      [&] {
        detail::foreach_scale_({t, tt::random_tensor({2}, kFloat64), t}, 2.0);
      },
      {"foreach_scale_", "tensors 0 and 2", "overlap"});
  tt::expect_equal(t, before);
  expect_error(
      [&] {
        detail::foreach_norm_partial({t.slice(0, 0, 3), t.slice(0, 2, 5)}, 2.0);
      },
      {"foreach_norm_partial", "tensors 0 and 1", "overlap"});
}

// ---- The multi-tensor ops under clip_grad_norm_ (src/ops/foreach.h) -------------------

TEST(ForeachOps, NormPartialAndScaleMatchFloat64Reference) {
  const std::vector<Shape> shapes = {{7}, {1}, {0}, {33, 5}, {1009}};
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(dtype_name(dt));
    std::vector<Tensor> list;
    std::vector<double> all;
    for (const Shape& s : shapes) {
      list.push_back(tt::random_tensor(s, dt, -2.0, 2.0));
      const std::vector<double> v = tt::to_doubles(list.back());
      all.insert(all.end(), v.begin(), v.end());
    }
    for (double p : {2.0, 1.0, 3.0, static_cast<double>(INFINITY)}) {
      SCOPED_TRACE(p);
      double ref = 0.0;
      for (double v : all)
        ref = std::isinf(p) ? std::max(ref, std::fabs(v)) : ref + std::pow(std::fabs(v), p);
      const Tensor acc = detail::foreach_norm_partial(list, p);
      EXPECT_EQ(acc.dtype(), kFloat64);
      EXPECT_EQ(acc.sizes(), Shape({1}));
      EXPECT_NEAR(acc.item<double>(), ref, 1e-12 * ref);
    }
    const double factor = 0.37;
    const std::vector<uint64_t> before = [&] {
      std::vector<uint64_t> v;
      for (const Tensor& t : list) v.push_back(t.impl()->storage->version());
      return v;
    }();
    detail::foreach_scale_(list, factor);
    size_t k = 0;
    for (size_t i = 0; i < list.size(); ++i) {
      std::vector<double> want(static_cast<size_t>(list[i].numel()));
      for (double& w : want) w = all[k++] * factor;
      if (dt == kFloat32) want = tt::round_to_float(want);
      tt::expect_close(list[i], tt::make_tensor(want, list[i].sizes(), dt));
      if (list[i].numel() > 0) {
        EXPECT_GT(list[i].impl()->storage->version(), before[i]);
      }
    }
  }
  // Only empty tensors: a zero norm, nothing to scale.
  const std::vector<Tensor> empties = {zeros({0}), zeros({2, 0})};
  EXPECT_EQ(detail::foreach_norm_partial(empties, 2.0).item<double>(), 0.0);
  detail::foreach_scale_(empties, 3.0);
  // A NaN anywhere makes the inf-norm NaN.
  const Tensor with_nan = from_vector<float>({1.0f, NAN, 5.0f}, {3});
  EXPECT_TRUE(std::isnan(detail::foreach_norm_partial({with_nan}, INFINITY).item<double>()));
}

TEST(ForeachOps, Errors) {
  const Tensor f = tt::random_tensor({5}, kFloat32), d = tt::random_tensor({3}, kFloat64);
  const Tensor i = tt::random_tensor({3}, kInt32, -5, 5);
  expect_error([] { detail::foreach_norm_partial({}, 2.0); },
               "foreach_norm_partial: the list of tensors is empty");
  expect_error([] { detail::foreach_scale_({}, 2.0); },
               "foreach_scale_: the list of tensors is empty");
  expect_error(
      [&] {
        detail::foreach_norm_partial({f, Tensor()}, 2.0);
      },
      "foreach_norm_partial: tensor 1 of the list is an undefined tensor");
  expect_error(
      [&] {
        detail::foreach_norm_partial({f, d}, 2.0);
      },
      {"foreach_norm_partial: expected tensors of the same dtype", "float32[5]", "float64[3]"});
  expect_error(
      [&] {
        detail::foreach_scale_({f, d}, 2.0);
      },
      "foreach_scale_: expected tensors of the same dtype");
  expect_error([&] { detail::foreach_scale_({i}, 2.0); },
               "foreach_scale_: dtype int32 is not supported");
  expect_error([&] { detail::foreach_norm_partial({f}, 0.0); },
               "foreach_norm_partial: norm_type must be > 0 (or INFINITY), got 0");
}

// ---- CUDA ------------------------------------------------------------------------------

// Parameters of many sizes: odd ones, one spanning several chunks, and enough
// tensors to need more than one multi-tensor launch.
std::vector<Shape> parity_shapes() {
  std::vector<Shape> shapes = {{1}, {7}, {33, 7}, {3 * 16384 + 5}, {2, 16384}};
  for (int i = 0; i < kFusedMaxTensors + 9; ++i) shapes.push_back({1 + (i * 37) % 91});
  return shapes;
}

// docs/design.md ("Parity") lists one fused step from equal inputs as
// bit-identical across devices: shared, explicitly rounded functors, host
// scalars computed by the same host code, c * p exact on both devices.
TEST(Optimizers, CudaStepsAreBitIdenticalToCpu) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const Device gpu(kCUDA);
  for (DType dt : tt::float_dtypes()) {
    for (const Case& k : all_cases()) {
      SCOPED_TRACE(k.name + " " + dtype_name(dt));
      const Tensor pc = tt::random_tensor({33, 7}, dt).set_requires_grad(true);
      const Tensor pg = pc.detach().to(gpu).set_requires_grad(true);
      const Tensor cc = tt::random_tensor({33, 7}, dt, 0.5, 2.0), cg = cc.to(gpu);
      Groups gc, gg;
      gc.emplace_back(std::vector<Tensor>{pc});
      gg.emplace_back(std::vector<Tensor>{pg});
      auto oc = k.make(gc, *k.options());
      auto og = k.make(gg, *k.options());
      quadratic_steps(*oc, {pc}, {cc}, 3);
      quadratic_steps(*og, {pg}, {cg}, 3);
      tt::expect_equal(pg.detach().cpu(), pc.detach());
    }
  }
}

TEST(Optimizers, CudaStepMatchesCpuAfter100Steps) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const Device gpu(kCUDA);
  for (DType dt : tt::float_dtypes()) {
    for (const Case& k : all_cases()) {
      SCOPED_TRACE(k.name + " " + dtype_name(dt));
      std::vector<Tensor> pc, pg, cc, cg;
      for (const Shape& s : parity_shapes()) {
        pc.push_back(tt::random_tensor(s, dt).set_requires_grad(true));
        pg.push_back(pc.back().detach().to(gpu).set_requires_grad(true));
        cc.push_back(tt::random_tensor(s, dt, 0.5, 2.0));
        cg.push_back(cc.back().to(gpu));
      }
      // Two groups, so every group runs its own launches.
      const auto groups_of = [](const std::vector<Tensor>& ps) {
        Groups g;
        g.emplace_back(std::vector<Tensor>(ps.begin(), ps.begin() + 3));
        g.emplace_back(std::vector<Tensor>(ps.begin() + 3, ps.end()));
        return g;
      };
      auto oc = k.make(groups_of(pc), *k.options());
      auto og = k.make(groups_of(pg), *k.options());
      quadratic_steps(*oc, pc, cc, 100);
      quadratic_steps(*og, pg, cg, 100);
      // The update functors are shared and explicitly rounded, and c * p is
      // exact on both devices, so the runs should agree to the last bit; the
      // tolerance leaves room for a libm difference in a corner case.
      for (size_t i = 0; i < pc.size(); ++i) {
        EXPECT_TRUE(pg[i].is_cuda());
        expect_close(pg[i], pc[i], tt::scaled(tt::default_tol(dt), 10.0));
        const auto* sc = oc->state(pc[i]);
        const auto* sg = og->state(pg[i]);
        ASSERT_NE(sg, nullptr);
        EXPECT_EQ(sg->step, sc->step);
        for (const auto& kv : sc->buffers) {
          EXPECT_TRUE(sg->buffers.at(kv.first).is_cuda());
          expect_close(sg->buffers.at(kv.first), kv.second, tt::scaled(tt::default_tol(dt), 10.0));
        }
      }
    }
  }
}

// Parameters of one group on two devices (and two dtypes): each device's share
// runs on its own backend.
TEST(Optimizers, MixedDevicesInOneGroup) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const Device gpu(kCUDA);
  const AdamConfig cfg{0.05, 0.9, 0.99, 1e-8, 0.01, true, true};
  const Case k = adam_case(cfg);
  const Tensor a = tt::random_tensor({5}, kFloat64).set_requires_grad(true);
  const Tensor b = tt::random_tensor({6}, kFloat64).to(gpu).set_requires_grad(true);
  const Tensor c = tt::random_tensor({7}, kFloat32).to(gpu).set_requires_grad(true);
  const Tensor ka = tt::random_tensor({5}, kFloat64, 0.5, 2.0);
  const Tensor kb = tt::random_tensor({6}, kFloat64, 0.5, 2.0).to(gpu);
  const Tensor kc = tt::random_tensor({7}, kFloat32, 0.5, 2.0).to(gpu);
  const std::vector<double> a0 = tt::to_doubles(a), b0 = tt::to_doubles(b);
  Groups groups;
  groups.emplace_back(std::vector<Tensor>{a, b, c});
  auto opt = k.make(groups, *k.options());
  quadratic_steps(*opt, {a, b, c}, {ka, kb, kc}, 5);
  expect_relative(tt::to_doubles(a), k.reference(a0, tt::to_doubles(ka), 5), 1e-10);
  expect_relative(tt::to_doubles(b), k.reference(b0, tt::to_doubles(kb), 5), 1e-10);
  EXPECT_TRUE(b.is_cuda());
  EXPECT_TRUE(opt->state(b)->buffers.at("exp_avg").is_cuda());
  EXPECT_TRUE(opt->state(a)->buffers.at("exp_avg").is_cpu());
}

// A tensor longer than one multi-tensor launch (kFusedMaxBlocks chunks)
// continues in the next launch; small tensors before and after it share
// launches with its first and last chunks.
TEST(Optimizers, CudaTensorSpanningLaunches) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const Device gpu(kCUDA);
  const int64_t big = (kFusedMaxBlocks + 3) * kFusedChunk + 7;
  const std::vector<Shape> shapes = {{5}, {3 * kFusedChunk + 1}, {big}, {9}};
  std::vector<Tensor> pc, pg, cc, cg;
  for (const Shape& s : shapes) {
    pc.push_back(tt::random_tensor(s, kFloat32).set_requires_grad(true));
    pg.push_back(pc.back().detach().to(gpu).set_requires_grad(true));
    cc.push_back(tt::random_tensor(s, kFloat32, 0.5, 2.0));
    cg.push_back(cc.back().to(gpu));
  }
  const Case k = adam_case({0.01, 0.9, 0.999, 1e-8, 0.01, false, false});
  auto oc = k.make(Groups{optim::OptimizerParamGroup(pc)}, *k.options());
  auto og = k.make(Groups{optim::OptimizerParamGroup(pg)}, *k.options());
  quadratic_steps(*oc, pc, cc, 3);
  quadratic_steps(*og, pg, cg, 3);
  for (size_t i = 0; i < pc.size(); ++i) {
    SCOPED_TRACE(testing::Message() << "tensor " << i);
    expect_close(pg[i], pc[i], tt::scaled(tt::default_tol(kFloat32), 10.0));
  }
}

#if TANDEM_WITH_CUDA
// The one-launch-per-tensor Adam (the benchmark's baseline) computes exactly
// what the multi-tensor kernel does, including across launch boundaries.
TEST(Optimizers, CudaPerTensorAdamMatchesMultiTensor) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const Device gpu(kCUDA);
  const AdamHyper hyper{0.01, 0.9, 0.999, 1e-8, 0.1, AdamDecay::Decoupled, Amsgrad::On};
  std::vector<FusedSlot> a, b;
  for (const Shape& s : parity_shapes()) {
    const Tensor p = tt::random_tensor(s, kFloat32).to(gpu);
    const Tensor g = tt::random_tensor(s, kFloat32).to(gpu);
    const Tensor v = tt::random_tensor(s, kFloat32, 0.0, 1.0).to(gpu);
    a.push_back({p, g, {zeros_like(p), v, v.clone()}, 0.3, 0.7});
    b.push_back({p.clone(), g, {zeros_like(p), v.clone(), v.clone()}, 0.3, 0.7});
  }
  // One tensor with more chunks than a launch holds, so the multi-tensor path
  // splits it across launches (drawn on the device: 33M elements).
  Generator gen(3);
  const auto on_gpu = TensorOptions(kFloat32).device(gpu);
  const int64_t big = int64_t{kFusedMaxBlocks} * kFusedChunk + 4099;
  const Tensor p = randn({big}, on_gpu, &gen), g = randn({big}, on_gpu, &gen);
  const Tensor v = rand({big}, on_gpu, &gen);
  a.push_back({p, g, {zeros_like(p), v, v.clone()}, 0.3, 0.7});
  b.push_back({p.clone(), g, {zeros_like(p), v.clone(), v.clone()}, 0.3, 0.7});
  for (int s = 0; s < 3; ++s) {
    cuda::adam_step(a, hyper, FusedLaunch::MultiTensor);
    cuda::adam_step(b, hyper, FusedLaunch::PerTensor);
  }
  for (size_t i = 0; i < a.size(); ++i) {
    tt::expect_equal(a[i].param, b[i].param);
    for (int j = 0; j < 3; ++j) tt::expect_equal(a[i].state[j], b[i].state[j]);
  }
}
#endif

// clip_grad_norm_tensor_ returns the norm as a float64 0-d tensor on the
// gradients' device and scales exactly as clip_grad_norm_ does (a factor of
// min(1, ...): gradients under the limit are left bit-identical).
TEST(ClipGrad, TensorFormMatchesTheDoubleForm) {
  for (double max_norm : {0.1, 1e6}) {
    manual_seed(4);
    Tensor a = zeros({7, 3}).set_requires_grad(true), b = zeros({33}).set_requires_grad(true);
    a.mutable_grad() = tt::random_tensor({7, 3}, kFloat32);
    b.mutable_grad() = tt::random_tensor({33}, kFloat32);
    Tensor c = a.detach().clone().set_requires_grad(true);
    Tensor d = b.detach().clone().set_requires_grad(true);
    c.mutable_grad() = a.grad().clone();
    d.mutable_grad() = b.grad().clone();
    const std::vector<float> before = to_vector<float>(a.grad());
    const double n1 = nn::utils::clip_grad_norm_({a, b}, max_norm);
    const Tensor n2 = nn::utils::clip_grad_norm_tensor_({c, d}, max_norm);
    EXPECT_EQ(n2.dtype(), kFloat64);
    EXPECT_EQ(n2.dim(), 0);
    EXPECT_EQ(n2.item<double>(), n1);
    EXPECT_EQ(to_vector<float>(c.grad()), to_vector<float>(a.grad()));
    EXPECT_EQ(to_vector<float>(d.grad()), to_vector<float>(b.grad()));
    if (max_norm > 1e5) {
      EXPECT_EQ(to_vector<float>(a.grad()), before) << "under the limit";
    }
  }
  Tensor lone = zeros({3}).set_requires_grad(true);
  EXPECT_EQ(nn::utils::clip_grad_norm_tensor_({lone}, 1.0).item<double>(), 0.0);
}

TEST(ClipGrad, CudaNormMatchesCpu) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const Device gpu(kCUDA);
  for (DType dt : tt::float_dtypes()) {
    for (double norm_type : {2.0, 1.0, 3.0, static_cast<double>(INFINITY)}) {
      SCOPED_TRACE(testing::Message() << dtype_name(dt) << " norm " << norm_type);
      std::vector<Tensor> pc, pg;
      for (const Shape& s : parity_shapes()) {
        Tensor p = zeros(s, dt).set_requires_grad(true);
        p.mutable_grad() = tt::random_tensor(s, dt);
        Tensor q = zeros(s, TensorOptions(dt).device(gpu)).set_requires_grad(true);
        q.mutable_grad() = p.grad().to(gpu);
        pc.push_back(p);
        pg.push_back(q);
      }
      const double nc = nn::utils::clip_grad_norm_(pc, 0.5, norm_type);
      // The tensor form keeps norm, factor and scaling on the device: no wait.
      const uint64_t syncs = cuda::host_sync_count();
      const Tensor norm = nn::utils::clip_grad_norm_tensor_(pg, 0.5, norm_type);
      EXPECT_EQ(cuda::host_sync_count(), syncs);
      EXPECT_EQ(norm.device(), gpu);
      EXPECT_EQ(norm.dtype(), kFloat64);
      EXPECT_EQ(norm.dim(), 0);
      const double ng = norm.item<double>();
      EXPECT_EQ(cuda::host_sync_count(), syncs + 1) << "the read of the norm";
      // Both accumulate in double, in different orders (and libm's pow may
      // differ by an ulp): equal to far better than float rounding.
      EXPECT_NEAR(ng, nc, 1e-10 * nc);
      for (size_t i = 0; i < pc.size(); ++i) expect_close(pg[i].grad(), pc[i].grad());
    }
  }
}

}  // namespace
