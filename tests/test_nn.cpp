// nn modules, initialisers and SGD: structure, modes, device/dtype moves, state
// dicts, forward/backward against hand-written formulas, gradcheck of every
// module, SGD against a closed-form reference, and the errors users can reach.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <cmath>
#include <sstream>

#include "test_util.h"

namespace {

using namespace tandem;  // NOLINT
using tt::expect_close;
using tt::expect_error;

struct NetImpl : nn::Module {
  NetImpl()
      : nn::Module("Net"),
        fc1(register_module("fc1", nn::Linear(4, 8))),
        body(register_module("body", nn::Sequential(nn::Tanh(), nn::Linear(8, 8), nn::ReLU()))),
        fc2(register_module("fc2", nn::Linear(8, 3, /*bias=*/false))) {
    scale = register_buffer("scale", full({1}, 2.0));
  }
  Tensor forward(const Tensor& x) override { return fc2(body(fc1(x))) * scale; }
  nn::Linear fc1;
  nn::Sequential body;
  nn::Linear fc2;
  Tensor scale;
};
TANDEM_MODULE(Net);

TEST(Module, NamesAndCounts) {
  Net net;
  std::vector<std::string> names;
  for (auto& kv : net->named_parameters()) names.push_back(kv.first);
  EXPECT_EQ(names, (std::vector<std::string>{"fc1.weight", "fc1.bias", "body.1.weight",
                                             "body.1.bias", "fc2.weight"}));
  EXPECT_EQ(net->parameters().size(), 5u);
  EXPECT_EQ(net->parameters(/*recurse=*/false).size(), 0u);
  EXPECT_EQ(net->named_buffers()[0].first, "scale");
  EXPECT_EQ(net->children().size(), 3u);
  EXPECT_EQ(net->modules().size(), 7u);  // net, fc1, body, tanh, linear, relu, fc2
  for (const Tensor& p : net->parameters()) EXPECT_TRUE(p.requires_grad());
  EXPECT_FALSE(net->scale.requires_grad());
  EXPECT_EQ(net->state_dict().size(), 6u);
  std::ostringstream os;
  os << *net;
  EXPECT_NE(os.str().find("(fc1): Linear(in_features=4, out_features=8, bias=true)"),
            std::string::npos)
      << os.str();
  EXPECT_NE(net->body->at<nn::LinearImpl>(1).weight.sizes(), Shape{});
  int linears = 0;
  net->apply([&](nn::Module& m) { linears += m.as<nn::LinearImpl>() != nullptr; });
  EXPECT_EQ(linears, 3);
}

TEST(Module, RegistrationErrors) {
  struct Bad : nn::Module {
    void add(const std::string& n) { register_parameter(n, zeros({2})); }
    void add_module(const std::string& n) { register_module(n, std::shared_ptr<nn::Module>()); }
  } bad;
  bad.add("w");
  expect_error([&] { bad.add("w"); }, "Module: parameter 'w' is already registered");
  expect_error([&] { bad.add("a.b"); },
               "parameter name 'a.b' must be non-empty and contain no '.'");
  expect_error([&] { bad.add_module("m"); }, "Module: submodule 'm' is null");
  expect_error([&] { bad.forward(zeros({1})); },
               "Module: this module has no forward(Tensor); call its own methods");
}

TEST(Module, TrainEvalPropagatesAndSwitchesDropout) {
  nn::Sequential seq(nn::Linear(6, 6), nn::Dropout(0.5));
  EXPECT_TRUE(seq->is_training());
  const Tensor x = ones({4, 6});
  const Tensor y_train = seq(x);
  seq->eval();
  EXPECT_FALSE(seq[1]->is_training());
  const Tensor y_eval = seq(x);
  const Tensor y_eval2 = seq(x);
  tt::expect_equal(y_eval, y_eval2);  // identity in eval: deterministic
  // In training some outputs are exactly zero (p = 0.5 on 24 elements).
  EXPECT_GT(sum(eq(y_train, 0.0)).item<int64_t>(), 0);
  seq->train();
  EXPECT_TRUE(seq[1]->is_training());
  expect_error([] { nn::Dropout(1.5); }, "Dropout: p must be in [0, 1], got 1.5");
}

TEST(Module, ToDtypeKeepsMemberHandlesInSync) {
  Net net;
  const Tensor x = tt::random_tensor({5, 4}, kFloat32);
  const Tensor y32 = net(x);
  net->to(kFloat64);
  EXPECT_EQ(net->fc1->weight.dtype(), kFloat64);
  EXPECT_EQ(net->parameters()[0].dtype(), kFloat64);
  EXPECT_TRUE(net->fc1->weight.requires_grad());
  EXPECT_EQ(net->scale.dtype(), kFloat64);
  const Tensor y64 = net(x.to(kFloat64));
  expect_close(y64.to(kFloat32), y32, tt::scaled(tt::default_tol(kFloat32), 10.0));
  net(x.to(kFloat64)).sum().backward();
  EXPECT_EQ(net->fc1->weight.grad().dtype(), kFloat64);
  net->zero_grad(/*set_to_none=*/false);
  EXPECT_EQ(sum(abs(net->fc1->weight.grad())).item<double>(), 0.0);
  net->zero_grad();
  EXPECT_FALSE(net->fc1->weight.grad().defined());
}

TEST(Module, StateDictRoundTripAndErrors) {
  manual_seed(1);
  Net a;
  Net b;  // different random init
  const Tensor x = tt::random_tensor({3, 4}, kFloat32);
  EXPECT_FALSE(tt::tensors_close(b(x), a(x), tt::default_tol(kFloat32)));
  b->load_state_dict(a->state_dict());
  tt::expect_equal(b(x), a(x));

  nn::StateDict missing = a->state_dict();
  missing.pop_back();
  const Tensor before = b->fc1->weight.clone();
  expect_error([&] { b->load_state_dict(missing); }, "Net.load_state_dict: missing key 'scale'");
  nn::StateDict extra = a->state_dict();
  extra.emplace_back("fc3.weight", zeros({1}));
  expect_error([&] { b->load_state_dict(extra); }, "unexpected key 'fc3.weight'");
  nn::StateDict wrong = a->state_dict();
  wrong[0].second = zeros({8, 5});
  wrong[1].second = full({8}, 7.0);
  expect_error([&] { b->load_state_dict(wrong, /*strict=*/false); },
               "Net.load_state_dict: 'fc1.weight' has shape [8, 5] but the module expects [8, 4]");
  tt::expect_equal(b->fc1->weight, before);  // unchanged after the errors
  EXPECT_NE(b->fc1->bias.sizes(), Shape{});
  b->load_state_dict(extra, /*strict=*/false);  // extra key ignored
}

TEST(Linear, ForwardBackwardMatchHandFormulas) {
  nn::Linear fc(5, 3);
  fc->to(kFloat64);
  const Tensor x = tt::random_tensor({7, 5}, kFloat64).set_requires_grad(true);
  const Tensor g = tt::random_tensor({7, 3}, kFloat64);
  const Tensor y = fc(x);
  NoGradGuard no_grad;
  const Tensor w = fc->weight.detach(), b = fc->bias.detach();
  expect_close(y, matmul(x.detach(), w.t()) + b);
  AutoGradMode on(true);
  y.backward(g);
  expect_close(x.grad(), matmul(g, w));
  expect_close(fc->weight.grad(), matmul(g.t(), x.detach()));
  expect_close(fc->bias.grad(), sum(g, 0));
  expect_error(
      [&] {
        fc(zeros({2, 4}, kFloat64));
      },
      "Linear(in_features=5, out_features=3, bias=true): expected input with 5 features "
      "(shape [*, 5]), got [2, 4]");
  expect_error([] { nn::Linear(0, 3); }, "Linear: in_features and out_features must be positive");
}

TEST(Linear, DefaultInitIsUniformInOneOverSqrtFanIn) {
  manual_seed(3);
  nn::Linear fc(400, 300);
  const double bound = 1.0 / std::sqrt(400.0);
  const std::vector<double> w = tt::to_doubles(fc->weight);
  double lo = 1, hi = -1, mean = 0;
  for (double v : w) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    mean += v / static_cast<double>(w.size());
  }
  EXPECT_GE(lo, -bound);
  EXPECT_LE(hi, bound);
  EXPECT_LT(lo, -0.99 * bound);
  EXPECT_GT(hi, 0.99 * bound);
  EXPECT_NEAR(mean, 0.0, 0.01 * bound);
}

TEST(Init, StatisticsFansAndGains) {
  Generator gen(7);
  Tensor w = empty({256, 512});
  auto stats = [](const Tensor& t) {
    const std::vector<double> v = tt::to_doubles(t);
    double m = 0, s = 0;
    for (double x : v) m += x;
    m /= static_cast<double>(v.size());
    for (double x : v) s += (x - m) * (x - m);
    return std::make_pair(m, std::sqrt(s / static_cast<double>(v.size())));
  };
  nn::init::kaiming_normal_(w, 0.0, nn::init::FanMode::FanIn, nn::init::Nonlinearity::ReLU, &gen);
  EXPECT_NEAR(stats(w).second, std::sqrt(2.0 / 512.0), 0.02 * std::sqrt(2.0 / 512.0));
  nn::init::kaiming_uniform_(w, 0.0, nn::init::FanMode::FanOut, nn::init::Nonlinearity::ReLU, &gen);
  EXPECT_NEAR(stats(w).second, std::sqrt(2.0 / 256.0), 0.02 * std::sqrt(2.0 / 256.0));
  nn::init::xavier_uniform_(w, 1.0, &gen);
  EXPECT_NEAR(stats(w).second, std::sqrt(2.0 / 768.0), 0.02 * std::sqrt(2.0 / 768.0));
  nn::init::xavier_normal_(w, 2.0, &gen);
  EXPECT_NEAR(stats(w).second, 2.0 * std::sqrt(2.0 / 768.0), 0.04 * std::sqrt(2.0 / 768.0));
  nn::init::normal_(w, 1.0, 0.5, &gen);
  EXPECT_NEAR(stats(w).first, 1.0, 0.01);
  EXPECT_NEAR(stats(w).second, 0.5, 0.01);
  nn::init::constant_(w, 0.25);
  EXPECT_EQ(stats(w).first, 0.25);
  const Tensor conv_like = empty({16, 3, 5, 5});
  EXPECT_EQ(nn::init::calculate_fan_in_and_fan_out(conv_like),
            (std::pair<int64_t, int64_t>(75, 400)));
  EXPECT_DOUBLE_EQ(nn::init::calculate_gain(nn::init::Nonlinearity::Tanh), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(nn::init::calculate_gain(nn::init::Nonlinearity::LeakyReLU, 0.2),
                   std::sqrt(2.0 / 1.04));
  expect_error([] { nn::init::xavier_uniform_(empty({5})); },
               "calculate_fan_in_and_fan_out: fans need a tensor of at least 2 dims, got [5]");
  // Parameters that require grad can be initialised (outside the graph).
  nn::Linear fc(3, 2);
  nn::init::zeros_(fc->weight);
  EXPECT_EQ(sum(abs(fc->weight)).item<double>(), 0.0);
  Net net;
  nn::init::normal_weights_(*net, 1e-3, &gen);
  EXPECT_EQ(sum(abs(net->fc1->bias)).item<double>(), 0.0);
  EXPECT_NEAR(stats(net->body->at<nn::LinearImpl>(1).weight).second, 1e-3, 3e-4);
}

TEST(Sequential, IndexingAndResidual) {
  nn::Sequential seq;
  seq->push_back(nn::Linear(3, 3));
  seq->push_back("act", nn::Sigmoid());
  EXPECT_EQ(seq->size(), 2u);
  EXPECT_EQ(seq->named_children()[1].first, "act");
  expect_error([&] { seq[5]; }, "Sequential: index 5 is out of range for 2 layers");
  nn::Residual res(nn::Sequential(nn::Linear(4, 4), nn::Tanh()));
  const Tensor x = tt::random_tensor({2, 4}, kFloat32);
  auto& lin = res->body->as<nn::SequentialImpl>()->at<nn::LinearImpl>(0);
  NoGradGuard no_grad;
  expect_close(res(x), x + tanh(linear(x, lin.weight, lin.bias)));
  nn::Residual bad(nn::Linear(4, 2));
  expect_error([&] { bad(x); },
               "Residual: the body gives [2, 2] but the shortcut gives [2, 4] (use a projection");
  nn::Residual proj(nn::Linear(4, 2), nn::Linear(4, 2));
  EXPECT_EQ(proj(x).sizes(), (Shape{2, 2}));
  EXPECT_EQ(nn::Flatten()(zeros({2, 3, 4})).sizes(), (Shape{2, 12}));
  EXPECT_EQ(nn::Identity()(x).raw_data(), x.raw_data());
}

// gradcheck of every module, in float64, input and parameters together.
TEST(Module, GradcheckEveryModule) {
  Generator gen(11);
  std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>> modules = {
      {"Linear", nn::Linear(4, 3).ptr()},
      {"ReLU", nn::ReLU().ptr()},
      {"Sigmoid", nn::Sigmoid().ptr()},
      {"Tanh", nn::Tanh().ptr()},
      {"GELU", nn::GELU().ptr()},
      {"GELU_tanh", nn::GELU(GeluApproximation::Tanh).ptr()},
      {"Softmax", nn::Softmax(1).ptr()},
      {"LogSoftmax", nn::LogSoftmax(1).ptr()},
      {"Flatten", nn::Flatten().ptr()},
      {"Identity", nn::Identity().ptr()},
      {"Sequential", nn::Sequential(nn::Linear(4, 5), nn::Tanh(), nn::Linear(5, 4)).ptr()},
      {"Residual", nn::Residual(nn::Sequential(nn::Linear(4, 4), nn::Sigmoid())).ptr()},
  };
  for (auto& [name, m] : modules) {
    SCOPED_TRACE(name);
    m->to(kFloat64);
    std::vector<Tensor> inputs{
        tt::random_nonzero({3, 4}, kFloat64, 0.1, 1.5).set_requires_grad(true)};
    for (const Tensor& p : m->parameters()) inputs.push_back(p);
    auto module = m;
    const auto r = autograd::gradcheck(
        [module](const std::vector<Tensor>& in) { return module->forward(in[0]); }, inputs);
    EXPECT_TRUE(r.ok) << r.report();
    EXPECT_EQ(r.inputs.size(), inputs.size());
  }
  // Dropout: training mode with a generator re-seeded per call (the same mask).
  const Tensor x = tt::random_tensor({3, 4}, kFloat64).set_requires_grad(true);
  const auto r = autograd::gradcheck(
      [](const std::vector<Tensor>& in) {
        Generator g(5);
        nn::Dropout drop(0.3, &g);
        return drop(in[0]);
      },
      {x});
  EXPECT_TRUE(r.ok) << r.report();
}

// ---- SGD ------------------------------------------------------------------------------

// Plain float64 reference of PyTorch's SGD on a quadratic loss sum(c * p^2)/2.
std::vector<double> sgd_reference(std::vector<double> p, const std::vector<double>& c, int steps,
                                  double lr, double momentum, double dampening, double wd,
                                  bool nesterov) {
  std::vector<double> buf(p.size(), 0.0);
  for (int s = 0; s < steps; ++s) {
    for (size_t i = 0; i < p.size(); ++i) {
      double d = c[i] * p[i] + wd * p[i];
      if (momentum != 0.0) {
        buf[i] = s == 0 ? d : momentum * buf[i] + (1.0 - dampening) * d;
        d = nesterov ? d + momentum * buf[i] : buf[i];
      }
      p[i] -= lr * d;
    }
  }
  return p;
}

TEST(SGD, MatchesClosedFormReference) {
  struct Config {
    double momentum, dampening, wd;
    bool nesterov;
  };
  for (const Config& cfg : {Config{0, 0, 0, false}, Config{0.9, 0, 0, false},
                            Config{0.9, 0.1, 0.01, false}, Config{0.8, 0, 0.05, true}}) {
    const Tensor p = tt::random_tensor({6}, kFloat64).set_requires_grad(true);
    const Tensor c = tt::random_tensor({6}, kFloat64, 0.5, 2.0);
    const std::vector<double> p0 = tt::to_doubles(p), cv = tt::to_doubles(c);
    optim::SGD opt({p}, optim::SGDOptions(0.1)
                            .momentum(cfg.momentum)
                            .dampening(cfg.dampening)
                            .weight_decay(cfg.wd)
                            .nesterov(cfg.nesterov));
    for (int s = 0; s < 7; ++s) {
      opt.zero_grad();
      (0.5 * sum(c * p * p)).backward();
      opt.step();
    }
    const std::vector<double> ref =
        sgd_reference(p0, cv, 7, 0.1, cfg.momentum, cfg.dampening, cfg.wd, cfg.nesterov);
    const std::vector<double> got = tt::to_doubles(p);
    for (size_t i = 0; i < ref.size(); ++i)
      EXPECT_NEAR(got[i], ref[i], 1e-10 * std::max(1.0, std::fabs(ref[i])));
    EXPECT_EQ(opt.momentum_buffer(p).defined(), cfg.momentum != 0.0);
  }
}

TEST(SGD, ReducesARegressionLossAndHonoursGroups) {
  manual_seed(5);
  nn::Linear model(3, 1);
  const Tensor x = randn({64, 3});
  const Tensor y = matmul(x, from_vector<float>({1.5f, -2.0f, 0.5f}, {3, 1})) + 0.3;
  optim::SGD opt(model->parameters(), optim::SGDOptions(0.1).momentum(0.9));
  const double first = mse_loss(model(x), y).item<double>();
  for (int i = 0; i < 100; ++i) {
    opt.zero_grad();
    Tensor loss = mse_loss(model(x), y);
    loss.backward();
    opt.step();
  }
  const double last = mse_loss(model(x), y).item<double>();
  EXPECT_LT(last, 1e-3 * first);
  // A frozen group (lr 0) does not move.
  const Tensor frozen = ones({2}, requires_grad());
  std::vector<optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<Tensor>{frozen}, std::make_unique<optim::SGDOptions>(0.0));
  optim::SGD opt2(groups, optim::SGDOptions(1.0));
  (frozen * frozen).sum().backward();
  opt2.step();
  tt::expect_equal(frozen.detach(), ones({2}));
  opt2.param_groups()[0].options().set_lr(0.5);
  opt2.step();
  expect_close(frozen.detach(), zeros({2}));  // 1 - 0.5 * 2
  EXPECT_EQ(opt2.parameters().size(), 1u);
}

TEST(SGD, OptionErrors) {
  const Tensor p = zeros({2}, requires_grad());
  expect_error([&] { optim::SGD({p}, optim::SGDOptions(-1.0)); }, "SGD: lr must be >= 0, got -1");
  expect_error([&] { optim::SGD({p}, optim::SGDOptions(0.1).momentum(-0.5)); },
               "SGD: momentum must be >= 0, got -0.5");
  expect_error([&] { optim::SGD({p}, optim::SGDOptions(0.1).weight_decay(-1)); },
               "SGD: weight_decay must be >= 0");
  expect_error([&] { optim::SGD({p}, optim::SGDOptions(0.1).dampening(-1)); },
               "SGD: dampening must be >= 0");
  expect_error([&] { optim::SGD({p}, optim::SGDOptions(0.1).nesterov(true)); },
               "SGD: nesterov needs momentum > 0 and dampening = 0");
  expect_error([&] { optim::SGD({zeros({2})}, optim::SGDOptions(0.1)); },
               "optimizer: parameter 0 (float32[2] on cpu) must be a floating-point leaf tensor "
               "that requires grad");
}

TEST(Module, CudaForwardBackwardMatchesCpu) {
  TANDEM_SKIP_WITHOUT_CUDA();
  manual_seed(2);
  Net cpu_net;
  Net cuda_net;
  cuda_net->load_state_dict(cpu_net->state_dict());
  cuda_net->to(Device(kCUDA));
  EXPECT_TRUE(cuda_net->fc1->weight.is_cuda());
  const Tensor x = tt::random_tensor({6, 4}, kFloat32);
  const Tensor y_cpu = cpu_net(x), y_cuda = cuda_net(x.to(Device(kCUDA)));
  expect_close(y_cuda, y_cpu, tt::scaled(tt::default_tol(kFloat32), 10.0));
  y_cpu.sum().backward();
  y_cuda.sum().backward();
  const auto pc = cpu_net->parameters(), pg = cuda_net->parameters();
  for (size_t i = 0; i < pc.size(); ++i)
    expect_close(pg[i].grad(), pc[i].grad(), tt::scaled(tt::default_tol(kFloat32), 10.0));
  optim::SGD oc(pc, optim::SGDOptions(0.1).momentum(0.9).nesterov(true));
  optim::SGD og(pg, optim::SGDOptions(0.1).momentum(0.9).nesterov(true));
  oc.step();
  og.step();
  for (size_t i = 0; i < pc.size(); ++i)
    expect_close(pg[i], pc[i], tt::scaled(tt::default_tol(kFloat32), 10.0));
}

}  // namespace
