// nn modules and initialisers: structure, modes, device/dtype moves, state
// dicts, forward/backward against hand-written formulas, gradcheck of every
// module, initialiser statistics, and the errors users can reach. SGD is in
// test_optim.cpp.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <cmath>
#include <sstream>

#include "test_util.h"

namespace {

using namespace tandem;  // NOLINT
using tt::expect_close;
using tt::expect_error;
using tt::Tol;

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
    void add_undefined() { register_parameter("u", Tensor()); }
    void add_buffer(const std::string& n) { register_buffer(n, zeros({2})); }
    void add_module(const std::string& n, std::shared_ptr<nn::Module> m) { register_module(n, m); }
  } bad;
  bad.add("w");
  expect_error([&] { bad.add("w"); }, "Module: parameter 'w' is already registered");
  expect_error([&] { bad.add("a.b"); },
               "Module: parameter name 'a.b' must be non-empty and contain no '.'");
  expect_error([&] { bad.add(""); },
               "Module: parameter name '' must be non-empty and contain no '.'");
  expect_error([&] { bad.add_undefined(); },
               "register_parameter: parameter is an undefined tensor");
  bad.add_buffer("b");
  expect_error([&] { bad.add_buffer("b"); }, "Module: buffer 'b' is already registered");
  expect_error([&] { bad.add_buffer("x.y"); },
               "Module: buffer name 'x.y' must be non-empty and contain no '.'");
  expect_error([&] { bad.add_module("m", nullptr); }, "Module: submodule 'm' is null");
  bad.add_module("m", nn::ReLU().ptr());
  expect_error([&] { bad.add_module("m", nn::ReLU().ptr()); },
               "Module: submodule 'm' is already registered");
  expect_error([&] { bad.add_module("", nn::ReLU().ptr()); },
               "Module: submodule name '' must be non-empty and contain no '.'");
  // The failed registrations left nothing behind.
  EXPECT_EQ(bad.named_parameters().size(), 1u);
  EXPECT_EQ(bad.named_buffers().size(), 1u);
  EXPECT_EQ(bad.children().size(), 1u);
  expect_error([&] { bad.forward(zeros({1})); },
               "Module: this module has no forward(Tensor); call its own methods");
  struct Named : nn::Module {
    Named() : nn::Module("Encoder") {}
  } named;
  expect_error([&] { named(zeros({1})); },
               "Encoder: this module has no forward(Tensor); call its own methods");
}

// A tensor registered in two places (tied weights) is one parameter for
// parameters()/to()/optimizers, and appears under both names in state_dict.
struct DecoderImpl : nn::Module {
  explicit DecoderImpl(const Tensor& w) : nn::Module("Decoder") {
    weight = register_parameter("weight", w);
  }
  Tensor forward(const Tensor& x) override { return matmul(x, weight); }
  Tensor weight;
};
TANDEM_MODULE(Decoder);

struct TiedImpl : nn::Module {
  TiedImpl()
      : nn::Module("Tied"),
        enc(register_module("enc", nn::Linear(4, 3))),
        dec(register_module("dec", Decoder(enc->weight))) {}
  Tensor forward(const Tensor& x) override { return dec(tanh(enc(x))); }
  nn::Linear enc;
  Decoder dec;
};
TANDEM_MODULE(Tied);

TEST(Module, TiedWeightsAreListedOnce) {
  Tied net;
  std::vector<std::string> names;
  for (auto& kv : net->named_parameters()) names.push_back(kv.first);
  EXPECT_EQ(names, (std::vector<std::string>{"enc.weight", "enc.bias"}));
  std::vector<std::string> keys;
  for (auto& kv : net->state_dict()) keys.push_back(kv.first);
  EXPECT_EQ(keys, (std::vector<std::string>{"enc.weight", "enc.bias", "dec.weight"}));
  net->to(kFloat64);
  EXPECT_TRUE(net->dec->weight.is_same(net->enc->weight));
  EXPECT_EQ(net->dec->weight.dtype(), kFloat64);
  // An optimizer over parameters() sees the tied tensor once.
  optim::SGD opt(net->parameters(), optim::SGDOptions(0.1));
  const Tensor x = tt::random_tensor({5, 4}, kFloat64);
  net(x).square().sum().backward();
  opt.step();
  Tied copy;
  copy->to(kFloat64);
  copy->load_state_dict(net->state_dict());
  tt::expect_equal(copy(x), net(x));
}

TEST(Module, TrainEvalPropagatesAndSwitchesDropout) {
  nn::Sequential seq(nn::Linear(6, 6), nn::Sequential(nn::Tanh(), nn::Dropout(0.5)));
  EXPECT_TRUE(seq->is_training());
  const Tensor x = tt::random_nonzero({40, 6}, kFloat32, 0.5, 1.0);
  NoGradGuard no_grad;
  const Tensor y_train = seq(x);
  seq->eval();
  for (const auto& m : seq->modules()) EXPECT_FALSE(m->is_training()) << m->type_name();
  const Tensor y_eval = seq(x);
  const Tensor y_eval2 = seq(x);
  tt::expect_equal(y_eval, y_eval2);  // the identity in eval: deterministic
  // Training: each output is 0 or the eval output scaled by 1/(1-p).
  const std::vector<double> t = tt::to_doubles(y_train), e = tt::to_doubles(y_eval);
  int zeros_seen = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == 0.0) {
      ++zeros_seen;
    } else {
      EXPECT_NEAR(t[i], 2.0 * e[i], 1e-6) << i;
    }
  }
  EXPECT_GT(zeros_seen, 60);  // about 120 of 240
  EXPECT_LT(zeros_seen, 180);
  seq->train();
  for (const auto& m : seq->modules()) EXPECT_TRUE(m->is_training()) << m->type_name();
  // p = 0 is the identity even while training.
  nn::Dropout none(0.0);
  tt::expect_equal(none(x), x);
  // A generator makes the mask reproducible.
  Generator g1(3), g2(3);
  nn::Dropout d1(0.3, &g1), d2(0.3, &g2);
  tt::expect_equal(d1(x), d2(x));
  expect_error([] { nn::Dropout(1.5); }, "Dropout: p must be in [0, 1], got 1.5");
  expect_error([] { nn::Dropout(-0.1); }, "Dropout: p must be in [0, 1], got -0.1");
}

TEST(Module, ToDtypeKeepsMemberHandlesInSync) {
  Net net;
  const Tensor x = tt::random_tensor({5, 4}, kFloat32);
  const Tensor y32 = net(x);
  y32.sum().backward();
  const Tensor g32 = net->fc1->weight.grad().clone();
  const Tensor w_handle = net->fc1->weight;  // a handle taken before the move
  net->to(kFloat64);
  EXPECT_EQ(net->fc1->weight.dtype(), kFloat64);
  EXPECT_EQ(w_handle.dtype(), kFloat64);
  EXPECT_EQ(net->parameters()[0].dtype(), kFloat64);
  EXPECT_TRUE(net->parameters()[0].is_same(net->fc1->weight));
  for (const Tensor& p : net->parameters()) {
    EXPECT_TRUE(p.requires_grad());
    EXPECT_TRUE(p.is_leaf());
  }
  EXPECT_EQ(net->scale.dtype(), kFloat64);
  EXPECT_FALSE(net->scale.requires_grad());
  // The gradient moved with its parameter, values intact.
  ASSERT_TRUE(net->fc1->weight.grad().defined());
  EXPECT_EQ(net->fc1->weight.grad().dtype(), kFloat64);
  tt::expect_equal(net->fc1->weight.grad(), g32.to(kFloat64));
  const Tensor x64 = x.to(kFloat64);
  const Tensor y64 = net(x64);
  expect_close(y64.to(kFloat32), y32, tt::scaled(tt::default_tol(kFloat32), 10.0));
  // Backward after the move accumulates (in float64) into the moved gradient.
  const Tensor fresh = autograd::grad({net(x64).sum()}, {net->fc1->weight})[0];
  y64.sum().backward();
  expect_close(net->fc1->weight.grad(), g32.to(kFloat64) + fresh);

  // Converting to the dtype it already has changes nothing, not even storage.
  const void* data = net->fc1->weight.raw_data();
  net->to(kFloat64);
  EXPECT_EQ(net->fc1->weight.raw_data(), data);
  net->to(Device(kCPU), kFloat32);
  EXPECT_EQ(net->fc2->weight.dtype(), kFloat32);
  expect_close(net(x), y32, tt::scaled(tt::default_tol(kFloat32), 10.0));
  expect_error([&] { net->to(kInt64); },
               "Net.to: expected a floating dtype, got int64 (parameters and floating buffers "
               "are converted; integer buffers keep their dtype)");
  expect_error([&] { net->to(Device(kCPU), kUInt8); },
               "Net.to: expected a floating dtype, got uint8");
  EXPECT_EQ(net->fc1->weight.dtype(), kFloat32);  // unchanged by the errors
  EXPECT_EQ(net->scale.dtype(), kFloat32);

  net->zero_grad(/*set_to_none=*/false);
  ASSERT_TRUE(net->fc1->weight.grad().defined());
  EXPECT_EQ(sum(abs(net->fc1->weight.grad())).item<double>(), 0.0);
  net->zero_grad();
  for (const Tensor& p : net->parameters()) EXPECT_FALSE(p.grad().defined());
}

// Integer buffers (e.g. a step counter) keep their dtype under to(dtype).
TEST(Module, ToDtypeKeepsIntegerBuffers) {
  struct CounterImpl : nn::Module {
    CounterImpl() : nn::Module("Counter") {
      steps = register_buffer("steps", full({1}, 3.0, kInt64));
      w = register_parameter("w", ones({2}));
    }
    Tensor steps, w;
  };
  auto m = std::make_shared<CounterImpl>();
  m->to(kFloat64);
  EXPECT_EQ(m->steps.dtype(), kInt64);
  EXPECT_EQ(m->steps.item<int64_t>(), 3);
  EXPECT_EQ(m->w.dtype(), kFloat64);
}

TEST(Module, StateDictIsDetachedAndSharesStorage) {
  Net net;
  const nn::StateDict sd = net->state_dict();
  ASSERT_EQ(sd.size(), 6u);
  EXPECT_EQ(sd[5].first, "scale");
  for (const auto& kv : sd) EXPECT_FALSE(kv.second.requires_grad()) << kv.first;
  EXPECT_EQ(sd[0].second.raw_data(), net->fc1->weight.raw_data());
  // A write through the state dict (it does not require grad) is a write to
  // the module: clone to keep a snapshot.
  Tensor w = sd[0].second;
  w.fill_(0.5);
  EXPECT_EQ(net->fc1->weight.sum().item<double>(), 0.5 * 32);
}

nn::StateDict snapshot(const nn::Module& m) {
  nn::StateDict out = m.state_dict();
  for (auto& kv : out) kv.second = kv.second.clone();
  return out;
}

void expect_same_state(const nn::StateDict& a, const nn::StateDict& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    tt::expect_equal(a[i].second, b[i].second);
  }
}

TEST(Module, StateDictRoundTripAndErrors) {
  manual_seed(1);
  Net a;
  Net b;  // different random init
  const Tensor x = tt::random_tensor({3, 4}, kFloat32);
  EXPECT_FALSE(tt::tensors_close(b(x), a(x), tt::default_tol(kFloat32)));
  // Loading copies: a later change to a does not reach b.
  const nn::StateDict saved = snapshot(*a);
  b->load_state_dict(a->state_dict());
  tt::expect_equal(b(x), a(x));
  expect_same_state(snapshot(*b), saved);
  {
    NoGradGuard no_grad;
    a->fc1->weight.add_(1.0);
  }
  expect_same_state(snapshot(*b), saved);

  Net c;
  const nn::StateDict before = snapshot(*c);
  // Every error is found before anything is copied; the bad entry is last
  // so an implementation that copied as it went would have changed c.
  nn::StateDict missing = a->state_dict();
  missing.erase(missing.begin() + 2);
  expect_error([&] { c->load_state_dict(missing); },
               "Net.load_state_dict: missing key 'body.1.weight'");
  expect_same_state(snapshot(*c), before);
  nn::StateDict extra = a->state_dict();
  extra.emplace_back("fc3.weight", zeros({1}));
  expect_error([&] { c->load_state_dict(extra); },
               "Net.load_state_dict: unexpected key 'fc3.weight'");
  expect_same_state(snapshot(*c), before);
  nn::StateDict wrong = a->state_dict();
  wrong[4].second = zeros({3, 7});  // fc2.weight
  expect_error([&] { c->load_state_dict(wrong, /*strict=*/false); },
               "Net.load_state_dict: 'fc2.weight' has shape [3, 7] but the module expects [3, 8]");
  expect_same_state(snapshot(*c), before);
  nn::StateDict undefined = a->state_dict();
  undefined[5].second = Tensor();
  expect_error([&] { c->load_state_dict(undefined); },
               "load_state_dict: scale is an undefined tensor");
  expect_same_state(snapshot(*c), before);

  // Not strict: unknown keys are ignored and missing ones keep their values.
  c->load_state_dict(extra, /*strict=*/false);
  tt::expect_equal(c(x), a(x));
  Net d;
  const Tensor d_fc2 = d->fc2->weight.clone();
  nn::StateDict only_fc1 = {missing[0], missing[1]};
  d->load_state_dict(only_fc1, /*strict=*/false);
  tt::expect_equal(d->fc1->weight, a->fc1->weight);
  tt::expect_equal(d->fc2->weight, d_fc2);
  // Values are converted to the module's dtype.
  nn::StateDict as64 = saved;
  for (auto& kv : as64) kv.second = kv.second.to(kFloat64);
  d->load_state_dict(as64);
  EXPECT_EQ(d->fc1->weight.dtype(), kFloat32);
  tt::expect_equal(d(x), b(x));
}

TEST(Linear, ForwardBackwardMatchHandFormulas) {
  nn::Linear fc(5, 3);
  fc->to(kFloat64);
  const Tensor x = tt::random_tensor({7, 5}, kFloat64).set_requires_grad(true);
  const Tensor g = tt::random_tensor({7, 3}, kFloat64);
  const Tensor y = fc(x);
  EXPECT_EQ(y.sizes(), (Shape{7, 3}));
  // x W^T + b and its gradients written out element by element in float64.
  const std::vector<double> xv = tt::to_doubles(x), wv = tt::to_doubles(fc->weight),
                            bv = tt::to_doubles(fc->bias), gv = tt::to_doubles(g);
  std::vector<double> y_ref(7 * 3), gx(7 * 5, 0.0), gw(3 * 5, 0.0), gb(3, 0.0);
  for (int n = 0; n < 7; ++n) {
    for (int o = 0; o < 3; ++o) {
      double acc = bv[o];
      for (int i = 0; i < 5; ++i) {
        acc += xv[n * 5 + i] * wv[o * 5 + i];
        gx[n * 5 + i] += gv[n * 3 + o] * wv[o * 5 + i];
        gw[o * 5 + i] += gv[n * 3 + o] * xv[n * 5 + i];
      }
      y_ref[n * 3 + o] = acc;
      gb[o] += gv[n * 3 + o];
    }
  }
  expect_close(y, tt::make_tensor(y_ref, {7, 3}, kFloat64));
  y.backward(g);
  expect_close(x.grad(), tt::make_tensor(gx, {7, 5}, kFloat64));
  expect_close(fc->weight.grad(), tt::make_tensor(gw, {3, 5}, kFloat64));
  expect_close(fc->bias.grad(), tt::make_tensor(gb, {3}, kFloat64));
}

TEST(Linear, BatchDimsNoBiasAndShapeErrors) {
  nn::Linear fc(5, 3, /*bias=*/false);
  EXPECT_FALSE(fc->bias.defined());
  EXPECT_EQ(fc->parameters().size(), 1u);
  const Tensor x = tt::random_tensor({2, 4, 5}, kFloat32);
  NoGradGuard no_grad;
  const Tensor y = fc(x);
  EXPECT_EQ(y.sizes(), (Shape{2, 4, 3}));
  expect_close(y.view({8, 3}), matmul(x.view({8, 5}), fc->weight.t()));
  EXPECT_EQ(fc(tt::random_tensor({5}, kFloat32)).sizes(), (Shape{3}));
  std::ostringstream os;
  os << fc;
  EXPECT_EQ(os.str(), "Linear(in_features=5, out_features=3, bias=false)");

  nn::Linear layer(10, 5);
  expect_error(
      [&] {
        layer(zeros({4, 7}));
      },
      "Linear(in_features=10, out_features=5, bias=true): expected input with 10 "
      "features (shape [*, 10]), got [4, 7]");
  expect_error([&] { layer(zeros({})); },
               "Linear(in_features=10, out_features=5, bias=true): expected input with 10 "
               "features (shape [*, 10]), got []");
  expect_error([&] { layer(Tensor()); }, "Linear: input is an undefined tensor");
  expect_error(
      [&] {
        layer(zeros({2, 10}, kFloat64));
      },
      {"linear: expected tensors of the same dtype", "float64[2, 10]",
       "float32[5, 10]"});  // dtype mismatch
  expect_error([] { nn::Linear(0, 3); },
               "Linear: in_features and out_features must be positive, got 0 and 3");
  expect_error([] { nn::Linear(4, -1); },
               "Linear: in_features and out_features must be positive, got 4 and -1");
}

TEST(Linear, DefaultInitIsUniformInOneOverSqrtFanIn) {
  manual_seed(3);
  nn::Linear fc(400, 300);
  const double bound = 1.0 / std::sqrt(400.0);
  for (const Tensor& t : {fc->weight, fc->bias}) {
    const std::vector<double> w = tt::to_doubles(t);
    double lo = 1, hi = -1, mean = 0, sq = 0;
    for (double v : w) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      mean += v / static_cast<double>(w.size());
      sq += v * v / static_cast<double>(w.size());
    }
    EXPECT_GE(lo, -bound);
    EXPECT_LE(hi, bound);
    EXPECT_LT(lo, -0.9 * bound);
    EXPECT_GT(hi, 0.9 * bound);
    const double tol = 5.0 * bound / std::sqrt(static_cast<double>(w.size()));  // 5 sigma
    EXPECT_NEAR(mean, 0.0, tol);
    EXPECT_NEAR(std::sqrt(sq), bound / std::sqrt(3.0), tol);
  }
  // reset_parameters with a generator is reproducible.
  Generator g1(9), g2(9);
  nn::Linear a(6, 4), b(6, 4);
  a->reset_parameters(&g1);
  b->reset_parameters(&g2);
  tt::expect_equal(a->weight, b->weight);
  tt::expect_equal(a->bias, b->bias);
}

// Mean and standard deviation of a tensor's values.
std::pair<double, double> stats(const Tensor& t) {
  const std::vector<double> v = tt::to_doubles(t);
  double m = 0, s = 0;
  for (double x : v) m += x;
  m /= static_cast<double>(v.size());
  for (double x : v) s += (x - m) * (x - m);
  return {m, std::sqrt(s / static_cast<double>(v.size()))};
}
std::pair<double, double> min_max(const Tensor& t) {
  const std::vector<double> v = tt::to_doubles(t);
  return {*std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end())};
}

// 131072 samples: the sample mean is within 5 sigma = 0.014 std of the true
// mean and the sample std within about 1% (normal) / 0.7% (uniform).
TEST(Init, UniformAndNormalStatistics) {
  Generator gen(7);
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor w = empty({256, 512}, dt);
    nn::init::uniform_(w, -0.5, 1.5, &gen);
    const double ustd = 2.0 / std::sqrt(12.0);
    EXPECT_NEAR(stats(w).first, 0.5, 0.014 * ustd);
    EXPECT_NEAR(stats(w).second, ustd, 0.01 * ustd);
    EXPECT_GE(min_max(w).first, -0.5);
    EXPECT_LT(min_max(w).second, 1.5);
    EXPECT_LT(min_max(w).first, -0.49);
    EXPECT_GT(min_max(w).second, 1.49);
    nn::init::normal_(w, 1.0, 0.5, &gen);
    EXPECT_NEAR(stats(w).first, 1.0, 0.014 * 0.5);
    EXPECT_NEAR(stats(w).second, 0.5, 0.01 * 0.5);
    nn::init::constant_(w, 0.25);
    EXPECT_EQ(min_max(w), (std::pair<double, double>(0.25, 0.25)));
    nn::init::ones_(w);
    EXPECT_EQ(min_max(w), (std::pair<double, double>(1.0, 1.0)));
    nn::init::zeros_(w);
    EXPECT_EQ(min_max(w), (std::pair<double, double>(0.0, 0.0)));
  }
}

TEST(Init, KaimingAndXavierStatistics) {
  using nn::init::FanMode;
  using nn::init::Nonlinearity;
  Generator gen(17);
  Tensor w = empty({256, 128, 2, 2});  // fan_in 512, fan_out 1024
  auto check_uniform = [&](double bound) {
    const auto mm = min_max(w);
    EXPECT_GE(mm.first, -bound);
    EXPECT_LE(mm.second, bound);
    EXPECT_LT(mm.first, -0.99 * bound);
    EXPECT_GT(mm.second, 0.99 * bound);
    const auto st = stats(w);
    EXPECT_NEAR(st.first, 0.0, 0.014 * bound);
    EXPECT_NEAR(st.second, bound / std::sqrt(3.0), 0.01 * bound);
  };
  auto check_normal = [&](double std) {
    const auto st = stats(w);
    EXPECT_NEAR(st.first, 0.0, 0.014 * std);
    EXPECT_NEAR(st.second, std, 0.01 * std);
  };
  nn::init::kaiming_normal_(w, 0.0, FanMode::FanIn, Nonlinearity::ReLU, &gen);
  check_normal(std::sqrt(2.0 / 512.0));
  nn::init::kaiming_normal_(w, 0.0, FanMode::FanOut, Nonlinearity::ReLU, &gen);
  check_normal(std::sqrt(2.0 / 1024.0));
  nn::init::kaiming_normal_(w, 0.2, FanMode::FanIn, Nonlinearity::LeakyReLU, &gen);
  check_normal(std::sqrt(2.0 / 1.04) / std::sqrt(512.0));
  nn::init::kaiming_uniform_(w, 0.0, FanMode::FanIn, Nonlinearity::ReLU, &gen);
  check_uniform(std::sqrt(3.0) * std::sqrt(2.0 / 512.0));
  nn::init::kaiming_uniform_(w, 0.0, FanMode::FanOut, Nonlinearity::Tanh, &gen);
  check_uniform(std::sqrt(3.0) * (5.0 / 3.0) / std::sqrt(1024.0));
  nn::init::kaiming_uniform_(w, std::sqrt(5.0), FanMode::FanIn, Nonlinearity::LeakyReLU, &gen);
  check_uniform(1.0 / std::sqrt(512.0));  // what Linear and Conv use
  nn::init::xavier_uniform_(w, 1.0, &gen);
  check_uniform(std::sqrt(6.0 / 1536.0));
  nn::init::xavier_uniform_(w, 2.0, &gen);
  check_uniform(2.0 * std::sqrt(6.0 / 1536.0));
  nn::init::xavier_normal_(w, 1.0, &gen);
  check_normal(std::sqrt(2.0 / 1536.0));
  nn::init::xavier_normal_(w, 0.5, &gen);
  check_normal(0.5 * std::sqrt(2.0 / 1536.0));
  // Zero-element tensors are left alone (their fans may be 0).
  Tensor none = empty({0, 5});
  nn::init::kaiming_uniform_(none);
  nn::init::xavier_normal_(none);
  EXPECT_EQ(none.numel(), 0);
}

TEST(Init, FansAndGains) {
  using nn::init::calculate_fan_in_and_fan_out;
  using nn::init::calculate_gain;
  using nn::init::Nonlinearity;
  using Fans = std::pair<int64_t, int64_t>;
  EXPECT_EQ(calculate_fan_in_and_fan_out(empty({7, 3})), Fans(3, 7));
  EXPECT_EQ(calculate_fan_in_and_fan_out(empty({4, 6, 5})), Fans(30, 20));
  EXPECT_EQ(calculate_fan_in_and_fan_out(empty({16, 3, 5, 5})), Fans(75, 400));
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::Linear), 1.0);
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::Sigmoid), 1.0);
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::Tanh), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::ReLU), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::LeakyReLU), std::sqrt(2.0 / (1.0 + 1e-4)));
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::LeakyReLU, 0.2), std::sqrt(2.0 / 1.04));
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::LeakyReLU, 0.0), std::sqrt(2.0));
}

TEST(Init, Errors) {
  expect_error([] { nn::init::calculate_fan_in_and_fan_out(empty({5})); },
               "calculate_fan_in_and_fan_out: fans need a tensor of at least 2 dims, got [5]");
  expect_error([] { nn::init::xavier_uniform_(empty({5})); },
               "calculate_fan_in_and_fan_out: fans need a tensor of at least 2 dims, got [5]");
  expect_error([] { nn::init::kaiming_normal_(empty({})); },
               "calculate_fan_in_and_fan_out: fans need a tensor of at least 2 dims, got []");
  expect_error([] { nn::init::uniform_(empty({3}, kInt64)); },
               "uniform_: dtype int64 is not supported (expected float32 or float64)");
  expect_error(
      [] {
        nn::init::kaiming_uniform_(empty({3, 3}, kInt32));
      },
      "kaiming_uniform_: dtype int32 is not supported");
  expect_error([] { nn::init::normal_(Tensor()); }, "normal_: input is an undefined tensor");
  expect_error([] { nn::init::constant_(Tensor(), 1.0); },
               "constant_: input is an undefined tensor");
  expect_error([] { nn::init::uniform_(empty({3}), 2.0, 1.0); },
               "uniform_: need finite bounds a <= b, got a=2 b=1");
  expect_error([] { nn::init::normal_(empty({3}), 0.0, -1.0); },
               "normal_: need a finite mean and std >= 0, got mean=0 std=-1");
  Net net;
  expect_error([&] { nn::init::normal_weights_(*net, -1.0); },
               "normal_weights_: weight_scale must be >= 0, got -1");
}

// Parameters that require grad are initialised outside the graph; normal_weights_
// touches exactly the parameters called "weight" and "bias".
TEST(Init, ParametersAndNormalWeights) {
  nn::Linear fc(3, 2);
  nn::init::zeros_(fc->weight);
  EXPECT_EQ(sum(abs(fc->weight)).item<double>(), 0.0);
  EXPECT_TRUE(fc->weight.requires_grad());
  EXPECT_TRUE(fc->weight.is_leaf());

  struct ScaledImpl : nn::Module {
    ScaledImpl() : nn::Module("Scaled") {
      body = register_module("body",
                             nn::Sequential(nn::Linear(100, 200), nn::ReLU(), nn::Linear(200, 50)));
      gain = register_parameter("weight_gain", full({4}, 2.0));
    }
    nn::Sequential body{nullptr};
    Tensor gain;
  };
  auto m = std::make_shared<ScaledImpl>();
  Generator gen(21);
  nn::init::normal_weights_(*m, 0.01, &gen);
  auto& l0 = m->body->at<nn::LinearImpl>(0);
  auto& l2 = m->body->at<nn::LinearImpl>(2);
  EXPECT_NEAR(stats(l0.weight).first, 0.0, 0.01 * 5.0 / std::sqrt(20000.0));
  EXPECT_NEAR(stats(l0.weight).second, 0.01, 0.0005);
  EXPECT_NEAR(stats(l2.weight).second, 0.01, 0.0005);
  EXPECT_EQ(min_max(l0.bias), (std::pair<double, double>(0.0, 0.0)));
  EXPECT_EQ(min_max(l2.bias), (std::pair<double, double>(0.0, 0.0)));
  EXPECT_EQ(min_max(m->gain), (std::pair<double, double>(2.0, 2.0)));  // not "weight"
}

TEST(Sequential, ForwardIndexingAndPrinting) {
  nn::Sequential seq(nn::Linear(3, 4), nn::Tanh());
  seq->push_back("act", nn::Sigmoid());
  EXPECT_EQ(seq->size(), 3u);
  std::vector<std::string> names;
  for (auto& c : seq->named_children()) names.push_back(c.first);
  EXPECT_EQ(names, (std::vector<std::string>{"0", "1", "act"}));
  EXPECT_EQ(seq[2]->type_name(), "Sigmoid");
  EXPECT_EQ(seq->at<nn::LinearImpl>(0).out_features, 4);
  const Tensor x = tt::random_tensor({5, 3}, kFloat32);
  auto& lin = seq->at<nn::LinearImpl>(0);
  {
    NoGradGuard no_grad;
    expect_close(seq(x), sigmoid(tanh(linear(x, lin.weight, lin.bias))));
  }
  expect_error([&] { seq[3]; }, "Sequential: index 3 is out of range for 3 layers");
  expect_error([&] { seq->at<nn::TanhImpl>(0); },
               "Sequential: layer 0 is not of the requested type");
  expect_error([&] { seq->push_back(std::shared_ptr<nn::Module>()); },
               "Sequential: submodule '3' is null");
  expect_error([&] { seq->push_back("act", nn::ReLU()); },
               "Sequential: submodule 'act' is already registered");
  EXPECT_EQ(seq->size(), 3u);
  nn::Sequential empty_seq;
  EXPECT_TRUE(empty_seq->is_empty());
  tt::expect_equal(empty_seq(x), x);
  std::ostringstream os;
  os << nn::Sequential(nn::Linear(2, 3), nn::Sequential(nn::GELU(), nn::Dropout(0.25)));
  EXPECT_EQ(os.str(),
            "Sequential(\n"
            "  (0): Linear(in_features=2, out_features=3, bias=true)\n"
            "  (1): Sequential(\n"
            "    (0): GELU(approximate=none)\n"
            "    (1): Dropout(p=0.25)\n"
            "  )\n"
            ")");
}

TEST(Residual, ForwardShortcutAndShapeError) {
  nn::Residual res(nn::Sequential(nn::Linear(4, 4), nn::Tanh()));
  const Tensor x = tt::random_tensor({2, 4}, kFloat32);
  auto& lin = res->body->as<nn::SequentialImpl>()->at<nn::LinearImpl>(0);
  NoGradGuard no_grad;
  expect_close(res(x), x + tanh(linear(x, lin.weight, lin.bias)));
  EXPECT_EQ(res->named_children().size(), 1u);
  EXPECT_EQ(res->named_parameters()[0].first, "body.0.weight");
  nn::Residual bad(nn::Linear(4, 2));
  expect_error([&] { bad(x); },
               "Residual: the body gives [2, 2] but the shortcut gives [2, 4] (use a projection "
               "shortcut when the shape changes)");
  nn::Residual proj(nn::Linear(4, 2), nn::Linear(4, 2));
  auto* body = proj->body->as<nn::LinearImpl>();
  auto* shortcut = proj->shortcut->as<nn::LinearImpl>();
  expect_close(proj(x),
               linear(x, body->weight, body->bias) + linear(x, shortcut->weight, shortcut->bias));
  EXPECT_EQ(proj->parameters().size(), 4u);
  expect_error([] { nn::Residual(std::shared_ptr<nn::Module>()); },
               "Residual: the body module is null");
  EXPECT_EQ(nn::Flatten()(zeros({2, 3, 4})).sizes(), (Shape{2, 12}));
  EXPECT_EQ(nn::Flatten(0)(zeros({2, 3, 4})).sizes(), (Shape{24}));
  EXPECT_EQ(nn::Identity()(x).raw_data(), x.raw_data());
}

TEST(Activations, MatchTheirFormulas) {
  const Tensor x = tt::random_tensor({6, 7}, kFloat64, -4.0, 4.0);
  const std::vector<double> v = tt::to_doubles(x);
  std::vector<double> exact(v.size()), approx(v.size()), relu_ref(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    exact[i] = 0.5 * v[i] * (1.0 + std::erf(v[i] / std::sqrt(2.0)));
    approx[i] = 0.5 * v[i] *
                (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v[i] + 0.044715 * v[i] * v[i] * v[i])));
    relu_ref[i] = std::max(v[i], 0.0);
  }
  expect_close(nn::GELU()(x), tt::make_tensor(exact, {6, 7}, kFloat64));
  expect_close(nn::GELU(GeluApproximation::Tanh)(x), tt::make_tensor(approx, {6, 7}, kFloat64));
  expect_close(gelu(x.to(kFloat32)), tt::make_tensor(exact, {6, 7}, kFloat32),
               tt::scaled(tt::default_tol(kFloat32), 4.0));
  expect_close(nn::ReLU()(x), tt::make_tensor(relu_ref, {6, 7}, kFloat64));
  expect_close(nn::Sigmoid()(x), sigmoid(x));
  expect_close(nn::Tanh()(x), tanh(x));
  expect_close(nn::Softmax(1)(x), softmax(x, 1));
  expect_close(nn::LogSoftmax(0)(x), log_softmax(x, 0));
  expect_error([] { gelu(zeros({2}, kInt64)); },
               "gelu: dtype int64 is not supported (expected float32 or float64)");
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

TEST(Module, CudaForwardBackwardMatchesCpu) {
  TANDEM_SKIP_WITHOUT_CUDA();
  manual_seed(2);
  const Tol tol = tt::scaled(tt::default_tol(kFloat32), 10.0);  // GEMM summation order
  Net cpu_net;
  Net cuda_net;
  cuda_net->load_state_dict(cpu_net->state_dict());
  const Tensor handle = cuda_net->fc1->weight;
  cuda_net->to(Device(kCUDA));
  EXPECT_TRUE(handle.is_cuda());
  EXPECT_TRUE(cuda_net->scale.is_cuda());
  EXPECT_TRUE(cuda_net->fc1->weight.requires_grad());
  const Tensor x = tt::random_tensor({6, 4}, kFloat32);
  const Tensor y_cpu = cpu_net(x), y_cuda = cuda_net(x.to(Device(kCUDA)));
  EXPECT_TRUE(y_cuda.is_cuda());
  expect_close(y_cuda, y_cpu, tol);
  y_cpu.sum().backward();
  y_cuda.sum().backward();
  const auto pc = cpu_net->parameters(), pg = cuda_net->parameters();
  ASSERT_EQ(pc.size(), pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    EXPECT_TRUE(pg[i].grad().is_cuda());
    expect_close(pg[i].grad(), pc[i].grad(), tol);
  }
  optim::SGD oc(pc, optim::SGDOptions(0.1).momentum(0.9).nesterov(true).weight_decay(0.01));
  optim::SGD og(pg, optim::SGDOptions(0.1).momentum(0.9).nesterov(true).weight_decay(0.01));
  for (int s = 0; s < 3; ++s) {
    oc.step();
    og.step();
  }
  for (size_t i = 0; i < pc.size(); ++i) expect_close(pg[i], pc[i], tol);
  // Back to the CPU with float64, gradients included, and dropout parity in
  // training mode (Philox masks are the same on both devices).
  cuda_net->to(Device(kCPU), kFloat64);
  EXPECT_TRUE(cuda_net->fc1->weight.grad().is_cpu());
  EXPECT_EQ(cuda_net->fc1->weight.grad().dtype(), kFloat64);
  expect_close(cuda_net->fc1->weight, cpu_net->fc1->weight, tol);
  nn::Sequential drop(nn::Linear(4, 4), nn::Dropout(0.5));
  nn::Sequential drop_gpu(nn::Linear(4, 4), nn::Dropout(0.5));
  drop_gpu->load_state_dict(drop->state_dict());
  drop_gpu->to(Device(kCUDA));
  manual_seed(4);
  const Tensor d_cpu = drop(x);
  manual_seed(4);
  const Tensor d_gpu = drop_gpu(x.to(Device(kCUDA)));
  expect_close(d_gpu, d_cpu, tol);
}

TEST(ConvModuleOptions, EveryCheckNamesTheOptionAndTheValue) {
  // The ten option checks of src/nn/conv.cpp, each with the value it got;
  // the values just inside each bound construct.
  using nn::Conv2dOptions;
  expect_error([] { nn::Conv2d(0, 4, 3); },
               "Conv2d: in_channels and out_channels must be positive, got 0 and 4");
  expect_error([] { nn::Conv2d(3, -1, 3); },
               "Conv2d: in_channels and out_channels must be positive, got 3 and -1");
  expect_error([] { nn::Conv2d(Conv2dOptions(4, 6, 3).groups(4)); },
               "Conv2d: in_channels 4 and out_channels 6 must be divisible by groups 4");
  expect_error([] { nn::Conv2d(Conv2dOptions(4, 6, 3).groups(0)); },
               "Conv2d: in_channels 4 and out_channels 6 must be divisible by groups 0");
  expect_error([] { nn::Conv2d(Conv2dOptions(3, 4, Size2(3, 0))); },
               "Conv2d: kernel_size must be positive, got (3, 0)");
  expect_error([] { nn::Conv2d(Conv2dOptions(3, 4, 3).stride(Size2(0, 1))); },
               "Conv2d: stride must be positive, got (0, 1)");
  expect_error([] { nn::Conv2d(Conv2dOptions(3, 4, 3).padding(Size2(1, -1))); },
               "Conv2d: padding must be >= 0, got (1, -1)");
  expect_error([] { nn::Conv2d(Conv2dOptions(3, 4, 3).dilation(0)); },
               "Conv2d: dilation must be positive, got (0, 0)");
  const nn::Conv2d edge(Conv2dOptions(4, 6, 1).groups(2).stride(1).padding(0).dilation(1));
  EXPECT_EQ(edge->weight.sizes(), (Shape{6, 2, 1, 1}));

  expect_error([] { nn::AdaptiveAvgPool2d(Size2(2, 0)); },
               "AdaptiveAvgPool2d: output_size must be positive, got (2, 0)");

  expect_error([] { nn::BatchNorm2d(0); }, "BatchNorm2d: num_features must be positive, got 0");
  expect_error([] { nn::BatchNorm1d(-3); }, "BatchNorm1d: num_features must be positive, got -3");
  expect_error([] { nn::BatchNorm2d(nn::BatchNormOptions(4).eps(0.0)); },
               "BatchNorm2d: eps must be > 0, got 0");
  expect_error([] { nn::BatchNorm2d(nn::BatchNormOptions(4).eps(INFINITY)); },
               "BatchNorm2d: eps must be > 0, got inf");
  expect_error([] { nn::BatchNorm1d(nn::BatchNormOptions(4).momentum(1.5)); },
               "BatchNorm1d: momentum must be in [0, 1], got 1.5");
  expect_error([] { nn::BatchNorm1d(nn::BatchNormOptions(4).momentum(-0.1)); },
               "BatchNorm1d: momentum must be in [0, 1], got -0.1");
  EXPECT_NO_THROW(nn::BatchNorm1d(nn::BatchNormOptions(1).momentum(0.0)));
  EXPECT_NO_THROW(nn::BatchNorm1d(nn::BatchNormOptions(1).momentum(1.0).eps(1e-300)));
}

TEST(BatchNormModule, ResetRunningStatsRestoresTheInitialStatisticsOnly) {
  manual_seed(5);
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(dtype_name(dt));
    nn::BatchNorm2d bn(3);
    bn->to(dt);
    // Handles taken before the reset see it: the buffers are reset in place.
    const Tensor mean_handle = bn->running_mean, var_handle = bn->running_var;
    const Tensor x = tt::random_tensor({4, 3, 5, 5}, dt, 1.0, 3.0);
    bn->forward(x);
    bn->forward(x);
    ASSERT_EQ(bn->num_batches_tracked.item<int64_t>(), 2);
    ASSERT_GT(tt::to_doubles(bn->running_mean)[0], 0.1) << "the batch moved the statistics";
    {
      NoGradGuard no_grad;
      bn->weight.fill_(2.0);
      bn->bias.fill_(-1.0);
    }
    bn->reset_running_stats();
    expect_close(mean_handle, tt::Ref{{3}, {0, 0, 0}}, tt::exact());
    expect_close(var_handle, tt::Ref{{3}, {1, 1, 1}}, tt::exact());
    EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 0);
    EXPECT_EQ(bn->running_mean.dtype(), dt);
    // The affine parameters are not statistics: kept.
    expect_close(bn->weight, tt::Ref{{3}, {2, 2, 2}}, tt::exact());
    expect_close(bn->bias, tt::Ref{{3}, {-1, -1, -1}}, tt::exact());
    // Eval mode now normalises with mean 0 and variance 1: y = 2 x / sqrt(1 + eps) - 1.
    bn->eval();
    const auto xv = tt::to_doubles(x);
    std::vector<double> want;
    for (double v : xv) want.push_back(2.0 * v / std::sqrt(1.0 + 1e-5) - 1.0);
    expect_close(bn->forward(x), tt::Ref{x.sizes(), want}, tt::default_tol(dt));
  }
  // Without tracked statistics there is nothing to reset.
  nn::BatchNorm1d untracked(nn::BatchNormOptions(2).track_running_stats(false));
  EXPECT_NO_THROW(untracked->reset_running_stats());
  EXPECT_FALSE(untracked->running_mean.defined());
}

}  // namespace
