// Model presets (tandem/models.h): forward shapes and parameter counts, a few
// training steps of each with its recipe's optimizer settings, the recipes and
// schedules, the Jacobi eigensolver and the patch whitening against their
// defining properties, and the JSON model files (round trips and every error).
#include <gtest/gtest.h>
#include <tandem/models.h>
#include <tandem/tandem.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using namespace tandem;  // NOLINT
using tt::expect_error;

int64_t count_params(nn::Module& m, bool trainable_only) {
  int64_t n = 0;
  for (const Tensor& p : m.parameters()) {
    if (!trainable_only || p.requires_grad()) n += p.numel();
  }
  return n;
}

// ---- Presets --------------------------------------------------------------------------

TEST(ModelPresets, ForwardShapesAndParameterCounts) {
  const Tensor x = tt::random_tensor({3, 3, 32, 32}, kFloat32);
  for (const std::string& name : models::preset_names()) {
    nn::Sequential net = models::make(name);
    const Tensor y = net(x);
    EXPECT_EQ(y.sizes(), (Shape{3, 10})) << name;
    for (double v : tt::to_doubles(y)) ASSERT_TRUE(std::isfinite(v)) << name;
  }
  nn::Sequential lenet = models::lenet();
  EXPECT_EQ(count_params(*lenet, false), 456 + 2416 + 48120 + 10164 + 850);
  nn::Sequential mlp = models::mlp();
  EXPECT_EQ(count_params(*mlp, false), 3072 * 200 + 200 + 200 * 10 + 10);

  // Frozen: the whitening filters and the BatchNorm weights; the whitening
  // bias (24) trains (for the recipe's first epochs).
  nn::Sequential fast = models::resnet_fast();
  const int64_t convs = 24 * 64 * 9 + 64 * 64 * 9 + 64 * 256 * 9 + 256 * 256 * 9 * 3;
  const int64_t bn_channels = 2 * (64 + 256 + 256);
  EXPECT_EQ(count_params(*fast, true), 24 + convs + bn_channels + 256 * 10);
  EXPECT_EQ(count_params(*fast, false), 24 * 12 + 24 + convs + 2 * bn_channels + 256 * 10);
  EXPECT_FALSE(fast[0]->parameters()[0].requires_grad());
}

TEST(ModelPresets, OptionsChangeTheNets) {
  models::ModelOptions o;
  o.mlp.hidden = {37, 11};
  o.mlp.dropout = 0.25;
  o.mlp.num_classes = 7;
  nn::Sequential mlp = models::make("mlp", o);
  EXPECT_EQ(mlp->size(), 1u + 2 * 3 + 1);  // flatten, (linear relu dropout) x2, linear
  EXPECT_EQ(mlp(tt::random_tensor({5, 3, 32, 32}, kFloat32)).sizes(), (Shape{5, 7}));
  o.resnet_fast.widths = {8, 16};
  o.resnet_fast.num_classes = 3;
  nn::Sequential fast = models::make("resnet-fast", o);
  // 32 -> 31 -> 15 -> 7, then max-pool 3 -> 2x2: the flattened width is 16 * 4.
  expect_error(
      [&] {
        fast(tt::random_tensor({2, 3, 32, 32}, kFloat32));
      },
      "Linear(in_features=16, out_features=3, bias=false)");
  EXPECT_EQ(fast(tt::random_tensor({2, 3, 24, 24}, kFloat32)).sizes(), (Shape{2, 3}));
}

TEST(ModelPresets, Errors) {
  expect_error([] { models::make("resnet"); },
               "models: unknown model preset 'resnet'; valid names: mlp, lenet, resnet-fast");
  expect_error([] { models::recipe("LeNet"); },
               "unknown model preset 'LeNet'; valid names: mlp, lenet, resnet-fast");
  models::MlpOptions m;
  m.hidden = {10, 0};
  expect_error([&] { models::mlp(m); }, "models::mlp: hidden size 1 must be positive, got 0");
  m.hidden = {10};
  m.dropout = 1.0;
  expect_error([&] { models::mlp(m); }, "models::mlp: dropout must be in [0, 1), got 1");
  expect_error([] { models::lenet(0); }, "models::lenet: num_classes must be positive, got 0");
  models::ResnetFastOptions r;
  r.widths = {};
  expect_error([&] { models::resnet_fast(r); }, "models::resnet_fast: widths must not be empty");
  r.widths = {8, -1};
  expect_error([&] { models::resnet_fast(r); }, "width 1 must be positive, got -1");
  expect_error([] { models::Scale(std::nan("")); }, "Scale: factor must be finite");
  expect_error([] { models::PatchWhitening(0, 2); },
               "PatchWhitening: in_channels and kernel must be positive");
}

// models::make_sgd: the BatchNorm biases in a second group at lr x scale and
// weight decay / scale, every trainable parameter once; one group at scale 1.
// models::make_warmup_linear: the lr factors of schedule_factor at each step.
TEST(Models, RecipeOptimizerAndSchedule) {
  nn::Sequential net = models::make("resnet-fast");
  const models::ParameterSplit split = models::split_parameters(*net);
  ASSERT_FALSE(split.batchnorm_biases.empty());
  const auto opts = optim::SGDOptions(0.3).momentum(0.85).nesterov(true).weight_decay(2e-3);
  const auto two = models::make_sgd(*net, opts, 64.0);
  ASSERT_EQ(two->param_groups().size(), 2u);
  EXPECT_EQ(two->param_groups()[0].params().size(), split.others.size());
  const auto& bn = two->param_groups()[1];
  ASSERT_EQ(bn.params().size(), split.batchnorm_biases.size());
  for (size_t i = 0; i < bn.params().size(); ++i)
    EXPECT_TRUE(bn.params()[i].is_same(split.batchnorm_biases[i])) << i;
  const auto& bn_opts = static_cast<const optim::SGDOptions&>(bn.options());
  EXPECT_DOUBLE_EQ(bn_opts.lr(), 0.3 * 64.0);
  EXPECT_DOUBLE_EQ(bn_opts.weight_decay(), 2e-3 / 64.0);
  EXPECT_DOUBLE_EQ(bn_opts.momentum(), 0.85);
  EXPECT_TRUE(bn_opts.nesterov());
  const auto one = models::make_sgd(*net, opts, 1.0);
  ASSERT_EQ(one->param_groups().size(), 1u);
  EXPECT_EQ(one->param_groups()[0].params().size(),
            split.others.size() + split.batchnorm_biases.size());

  const models::Recipe r = models::recipe("resnet-fast");
  const int64_t total = 97;
  const auto sched =
      models::make_warmup_linear(*two, total, r.warmup_fraction, r.start_factor, r.end_factor);
  for (int64_t step = 0; step <= total; ++step) {
    const double f = models::schedule_factor(r, step, total);
    EXPECT_NEAR(sched->get_last_lr()[0], 0.3 * f, 1e-12) << step;
    EXPECT_NEAR(sched->get_last_lr()[1], 0.3 * 64.0 * f, 1e-10) << step;
    sched->step();
  }
}

// A few SGD steps on one fixed batch with the recipe's optimizer settings
// (two groups for the BatchNorm biases): the loss must fall and frozen
// parameters must not move.
double train_steps(nn::Sequential& net, const models::Recipe& r, int steps, double lr_scale) {
  const Tensor x = tt::random_tensor({6, 3, 32, 32}, kFloat32);
  const Tensor y = from_vector<int64_t>({0, 3, 9, 1, 3, 7});
  const auto sgd_made = models::make_sgd(*net,
                                         optim::SGDOptions(r.lr * lr_scale)
                                             .momentum(r.momentum)
                                             .nesterov(r.nesterov)
                                             .weight_decay(r.weight_decay),
                                         r.batchnorm_bias_lr_scale);
  optim::SGD& sgd = *sgd_made;
  double first = 0.0, last = 0.0;
  for (int i = 0; i < steps; ++i) {
    sgd.zero_grad();
    Tensor loss = cross_entropy(net(x), y, Reduction::Mean, r.label_smoothing);
    loss.backward();
    sgd.step();
    (i == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, first);
  return last;
}

TEST(ModelPresets, TrainingStepsLowerTheLoss) {
  nn::Sequential lenet = models::lenet();
  train_steps(lenet, models::recipe("lenet"), 8, 1.0);
  nn::Sequential mlp = models::mlp();
  train_steps(mlp, models::recipe("mlp"), 8, 1.0);

  models::ResnetFastOptions small;
  small.widths = {8, 16, 16};
  nn::Sequential fast = models::resnet_fast(small);
  EXPECT_EQ(models::init_whitening(*fast, tt::random_tensor({4, 3, 32, 32}, kUInt8, 0, 255)), 1);
  const std::vector<double> whiten_before = tt::to_doubles(fast[0]->parameters()[0]);
  const std::vector<double> bn_weight_before =
      tt::to_doubles(fast->at<nn::BatchNorm2dImpl>(4).weight);
  const std::vector<double> bn_bias_before = tt::to_doubles(fast->at<nn::BatchNorm2dImpl>(4).bias);
  // The recipe's lr is for batch 1024 with warm-up from 0.2; a tenth suits six images.
  train_steps(fast, models::recipe("resnet-fast"), 6, 0.1);
  EXPECT_EQ(tt::to_doubles(fast[0]->parameters()[0]), whiten_before);
  EXPECT_EQ(tt::to_doubles(fast->at<nn::BatchNorm2dImpl>(4).weight), bn_weight_before);
  EXPECT_NE(tt::to_doubles(fast->at<nn::BatchNorm2dImpl>(4).bias), bn_bias_before);
}

TEST(ModelPresets, SplitParameters) {
  models::ResnetFastOptions small;
  small.widths = {8, 16};
  nn::Sequential fast = models::resnet_fast(small);
  const models::ParameterSplit s = models::split_parameters(*fast);
  EXPECT_EQ(s.batchnorm_biases.size(), 4u);  // two BatchNorms per group
  // The whitening bias, four convs and the linear (the whitening filters are frozen).
  EXPECT_EQ(s.others.size(), 6u);
  for (const Tensor& p : s.batchnorm_biases) EXPECT_EQ(p.dim(), 1);
  nn::Sequential lenet = models::lenet();
  EXPECT_TRUE(models::split_parameters(*lenet).batchnorm_biases.empty());
  EXPECT_EQ(models::split_parameters(*lenet).others.size(), 10u);
}

TEST(ModelRecipes, ValuesAndSchedules) {
  const models::Recipe fast = models::recipe("resnet-fast");
  EXPECT_EQ(fast.optimizer, "sgd");
  EXPECT_TRUE(fast.nesterov);
  EXPECT_DOUBLE_EQ(fast.label_smoothing, 0.2);
  EXPECT_TRUE(fast.augment_flip);
  EXPECT_EQ(fast.augment_translate, 2);
  EXPECT_TRUE(fast.tta_flip);
  EXPECT_EQ(fast.batch_size, 1024);
  EXPECT_EQ(fast.epochs, 10);
  EXPECT_EQ(fast.schedule, models::Schedule::WarmupLinear);
  const models::Recipe lenet = models::recipe("lenet");
  EXPECT_EQ(lenet.schedule, models::Schedule::Cosine);
  EXPECT_TRUE(lenet.augment_flip);
  EXPECT_DOUBLE_EQ(models::schedule_factor(lenet, 0, 100), 1.0);
  EXPECT_NEAR(models::schedule_factor(lenet, 50, 100), 0.5, 1e-15);
  EXPECT_NEAR(models::schedule_factor(lenet, 100, 100), 0.0, 1e-15);
  EXPECT_DOUBLE_EQ(lenet.momentum, 0.9);
  EXPECT_FALSE(lenet.notes.empty());

  const int64_t total = 487;
  EXPECT_DOUBLE_EQ(models::schedule_factor(fast, 0, total), 0.2);
  const int64_t peak = static_cast<int64_t>(std::floor(0.23 * total));
  EXPECT_DOUBLE_EQ(models::schedule_factor(fast, peak, total), 1.0);
  EXPECT_NEAR(models::schedule_factor(fast, total, total), 0.07, 1e-15);
  EXPECT_NEAR(models::schedule_factor(fast, total + 5, total), 0.07, 1e-15);
  EXPECT_NEAR(models::schedule_factor(fast, peak / 2, total), 0.2 + 0.8 * (peak / 2) / double(peak),
              1e-12);
  for (int64_t s = 1; s <= total; ++s) {
    const double prev = models::schedule_factor(fast, s - 1, total);
    const double cur = models::schedule_factor(fast, s, total);
    if (s <= peak)
      EXPECT_GT(cur, prev) << s;
    else
      EXPECT_LT(cur, prev) << s;
  }
  EXPECT_DOUBLE_EQ(models::schedule_factor(models::recipe("mlp"), 17, total), 1.0);  // constant
  EXPECT_NEAR(models::schedule_factor(lenet, 17, total),
              0.5 * (1.0 + std::cos(std::acos(-1.0) * 17.0 / total)), 1e-15);
  expect_error([&] { models::schedule_factor(fast, 0, 0); },
               "schedule_factor: total_steps must be positive, got 0");
  expect_error([&] { models::schedule_factor(fast, -1, 5); },
               "schedule_factor: step must be >= 0, got -1");
  models::Recipe bad = fast;
  bad.warmup_fraction = 1.0;
  expect_error([&] { models::schedule_factor(bad, 0, 5); },
               "warmup_fraction must be in [0, 1), got 1");
}

// ---- Eigensolver and whitening ------------------------------------------------------------

std::vector<double> random_symmetric(int64_t n) {
  const std::vector<double> a = tt::to_doubles(tt::random_tensor({n, n}, kFloat64));
  std::vector<double> s(a.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) s[i * n + j] = a[i * n + j] + a[j * n + i];
  return s;
}

TEST(SymmetricEigen, DecomposesRandomMatrices) {
  for (int64_t n : {1, 2, 7, 12, 13}) {
    const std::vector<double> a = random_symmetric(n);
    std::vector<double> values, vectors;
    models::symmetric_eigen(a, n, values, vectors);
    ASSERT_EQ(values.size(), static_cast<size_t>(n));
    for (int64_t k = 0; k + 1 < n; ++k) EXPECT_GE(values[k], values[k + 1]);
    for (int64_t k = 0; k < n; ++k) {
      for (int64_t i = 0; i < n; ++i) {  // A v = lambda v
        double av = 0.0;
        for (int64_t j = 0; j < n; ++j) av += a[i * n + j] * vectors[k * n + j];
        EXPECT_NEAR(av, values[k] * vectors[k * n + i], 1e-10) << "n " << n << " k " << k;
      }
      for (int64_t l = 0; l < n; ++l) {  // orthonormal rows
        double dot = 0.0;
        for (int64_t j = 0; j < n; ++j) dot += vectors[k * n + j] * vectors[l * n + j];
        EXPECT_NEAR(dot, k == l ? 1.0 : 0.0, 1e-12);
      }
    }
  }
  std::vector<double> values, vectors;
  models::symmetric_eigen({3.0, 0.0, 0.0, -2.0}, 2, values, vectors);
  EXPECT_EQ(values, (std::vector<double>{3.0, -2.0}));
  expect_error(
      [&] {
        models::symmetric_eigen({1, 2, 3}, 2, values, vectors);
      },
      "symmetric_eigen: expected 2 x 2 = 4 values, got 3");
  expect_error(
      [&] {
        models::symmetric_eigen({1, 2, 3, 4}, 2, values, vectors);
      },
      "symmetric_eigen: the matrix is not symmetric (entry (0, 1) is 2, (1, 0) is 3)");
  expect_error(
      [&] {
        models::symmetric_eigen({1, NAN, NAN, 4}, 2, values, vectors);
      },
      "symmetric_eigen: the matrix has a non-finite entry");
}

// Images whose channels and neighbouring pixels are correlated, so that
// whitening has something to undo.
Tensor correlated_images(int64_t n, int64_t h, int64_t w) {
  const std::vector<double> noise = tt::to_doubles(tt::random_tensor({n, 3, h, w}, kFloat64));
  std::vector<double> img(noise.size());
  auto at = [&](int64_t b, int64_t c, int64_t y, int64_t x) {
    return noise[static_cast<size_t>(((b * 3 + c) * h + std::min(y, h - 1)) * w +
                                     std::min(x, w - 1))];
  };
  for (int64_t b = 0; b < n; ++b)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x)
          img[static_cast<size_t>(((b * 3 + c) * h + y) * w + x)] =
              at(b, c, y, x) + 0.7 * at(b, c, y + 1, x + 1) + 0.5 * at(b, (c + 1) % 3, y, x) + 0.2;
  return from_vector(img, {n, 3, h, w});
}

TEST(Whitening, OutputChannelsAreWhite) {
  const int64_t n = 9, h = 13, w = 11;
  const Tensor images = correlated_images(n, h, w);
  nn::Conv2d conv(nn::Conv2dOptions(3, 24, 2).bias(false));
  models::WhiteningOptions opts;
  opts.eps = 0.0;
  models::init_whitening(*conv, images, opts);
  // The filter responses over all patch positions: the first 12 have the
  // identity as their (uncentred) covariance; the last 12 are their negatives.
  const std::vector<double> out = tt::to_doubles(conv2d(images, conv->weight.to(kFloat64)));
  const int64_t positions = (h - 1) * (w - 1);
  auto response = [&](int64_t b, int64_t k, int64_t p) {
    return out[static_cast<size_t>((b * 24 + k) * positions + p)];
  };
  for (int64_t k = 0; k < 12; ++k) {
    for (int64_t l = 0; l < 12; ++l) {
      double cov = 0.0;
      for (int64_t b = 0; b < n; ++b)
        for (int64_t p = 0; p < positions; ++p) cov += response(b, k, p) * response(b, l, p);
      EXPECT_NEAR(cov / static_cast<double>(n * positions), k == l ? 1.0 : 0.0, 1e-5)
          << k << ", " << l;
    }
  }
  for (int64_t b = 0; b < n; ++b)
    for (int64_t k = 0; k < 12; ++k) EXPECT_DOUBLE_EQ(response(b, k + 12, 5), -response(b, k, 5));
}

TEST(Whitening, Uint8ImagesAreNormalisedFirst) {
  const Tensor raw = tt::random_tensor({5, 3, 7, 9}, kUInt8, 0, 255);
  models::WhiteningOptions opts;
  opts.mean = {0.3, 0.5, 0.4};
  opts.std = {0.2, 0.25, 0.3};
  std::vector<double> v = tt::to_doubles(raw);
  for (size_t i = 0; i < v.size(); ++i) {
    const size_t c = (i / (7 * 9)) % 3;
    v[i] = (v[i] / 255.0 - opts.mean[c]) / opts.std[c];
  }
  nn::Conv2d a(nn::Conv2dOptions(3, 24, 2).bias(false)), b(nn::Conv2dOptions(3, 24, 2).bias(false));
  models::init_whitening(*a, raw, opts);
  models::init_whitening(*b, from_vector(v, {5, 3, 7, 9}), opts);
  tt::expect_close(a->weight, b->weight, tt::Tol{1e-4, 1e-4});
  // A 1x1 whitening of 3 channels has 6 filters.
  nn::Conv2d one(nn::Conv2dOptions(3, 6, 1).bias(false));
  models::init_whitening(*one, raw, opts);
  EXPECT_EQ(one->weight.sizes(), (Shape{6, 3, 1, 1}));
}

TEST(Whitening, Errors) {
  const Tensor images = tt::random_tensor({2, 3, 8, 8}, kFloat32);
  nn::Conv2d wrong(nn::Conv2dOptions(3, 16, 2).bias(false));
  expect_error([&] { models::init_whitening(*wrong, images); },
               "init_whitening: expected a Conv2d with groups 1, dilation 1 and 2 * 3 * 2 * 2 = 24 "
               "output channels, got groups 1, dilation (1, 1), 16 output channels");
  models::PatchWhitening pw;
  expect_error(
      [&] {
        models::init_whitening(*pw, tt::random_tensor({2, 4, 8, 8}, kFloat32));
      },
      "init_whitening: expected images [N > 0, 3, H >= 2, W >= 2], got [2, 4, 8, 8]");
  expect_error(
      [&] {
        models::init_whitening(*pw, tt::random_tensor({2, 3, 1, 8}, kFloat32));
      },
      "got [2, 3, 1, 8]");
  expect_error(
      [&] {
        models::init_whitening(*pw, tt::random_tensor({2, 3, 8, 8}, kInt32));
      },
      "init_whitening: images must be uint8, float32 or float64, got int32");
  expect_error([&] { models::init_whitening(*pw, Tensor()); },
               "init_whitening: images must be a defined CPU tensor");
  models::WhiteningOptions o;
  o.mean = {0.5};
  expect_error(
      [&] {
        models::init_whitening(*pw, tt::random_tensor({2, 3, 8, 8}, kUInt8, 0, 255), o);
      },
      "init_whitening: uint8 images need 3 means and stds, got 1 and 3");
  o = {};
  o.std = {0.5, 0.0, 0.5};
  expect_error(
      [&] {
        models::init_whitening(*pw, tt::random_tensor({2, 3, 8, 8}, kUInt8, 0, 255), o);
      },
      "init_whitening: std values must be positive, got 0");
  o = {};
  o.eps = -1;
  expect_error([&] { models::init_whitening(*pw, images, o); },
               "init_whitening: eps must be >= 0, got -1");
  o.eps = 0;  // constant images: a singular covariance
  expect_error(
      [&] {
        models::init_whitening(*pw, full({2, 3, 8, 8}, 1.0), o);
      },
      "init_whitening: the patch covariance is singular");
}

// ---- JSON model files -------------------------------------------------------------------

std::vector<std::pair<std::string, Shape>> param_shapes(nn::Module& m) {
  std::vector<std::pair<std::string, Shape>> out;
  for (const auto& kv : m.state_dict()) out.emplace_back(kv.first, kv.second.sizes());
  return out;
}
std::vector<bool> requires_grad_flags(nn::Module& m) {
  std::vector<bool> out;
  for (const Tensor& p : m.parameters()) out.push_back(p.requires_grad());
  return out;
}
std::string without_space(const std::string& s) {
  std::string out;
  for (char c : s)
    if (c != ' ' && c != '\n') out += c;
  return out;
}

TEST(ModelJson, PresetsRoundTrip) {
  const Tensor x = tt::random_tensor({2, 3, 32, 32}, kFloat32);
  for (const std::string& name : models::preset_names()) {
    nn::Sequential net = models::make(name);
    const std::string text = models::to_json(*net, name);
    nn::Sequential back = models::from_json(text);
    EXPECT_EQ(models::to_json(*back, name), text) << name;
    EXPECT_EQ(param_shapes(*back), param_shapes(*net)) << name;
    EXPECT_EQ(requires_grad_flags(*back), requires_grad_flags(*net)) << name;
    std::ostringstream a, b;
    a << *net;
    b << *back;
    EXPECT_EQ(a.str(), b.str());
    EXPECT_EQ(back(x).sizes(), (Shape{2, 10}));
  }
  const std::string lenet = models::to_json(*models::lenet(), "lenet");
  EXPECT_NE(lenet.find("\"name\": \"lenet\""), std::string::npos) << lenet;
  EXPECT_NE(lenet.find("{\n      \"type\": \"Conv2d\",\n      \"in\": 3,\n      \"out\": 6,\n"
                       "      \"kernel\": 5\n    }"),
            std::string::npos)
      << lenet;
}

// Every layer type with non-default fields, nested blocks and [h, w] pairs,
// in the writer's field order: text -> model -> text is the identity.
const char* kEveryLayer = R"({"format": "tandem-model", "version": 1, "name": "every",
 "layers": [
  {"type": "PatchWhitening", "in": 3, "kernel": 2},
  {"type": "Conv2d", "in": 24, "out": 8, "kernel": [3, 1], "stride": 2, "padding": [1, 0],
   "dilation": [1, 2], "groups": 4, "bias": false},
  {"type": "BatchNorm2d", "features": 8, "eps": 1e-12, "momentum": 0.4, "train_weight": false},
  {"type": "GELU", "approximate": "tanh"},
  {"type": "Residual", "layers": [
     {"type": "Conv2d", "in": 8, "out": 8, "kernel": 3, "padding": 1},
     {"type": "BatchNorm2d", "features": 8, "affine": false, "track_running_stats": false},
     {"type": "ReLU"}],
   "shortcut": [{"type": "Conv2d", "in": 8, "out": 8, "kernel": 1}]},
  {"type": "Residual", "layers": [{"type": "Tanh"}]},
  {"type": "Sequential", "layers": [{"type": "Sigmoid"}]},
  {"type": "MaxPool2d", "kernel": [3, 2], "stride": 1, "padding": [1, 0]},
  {"type": "AvgPool2d", "kernel": 2, "count_include_pad": false},
  {"type": "AdaptiveAvgPool2d", "output": [2, 3]},
  {"type": "Flatten", "start_dim": 1, "end_dim": 3},
  {"type": "Dropout", "p": 0.25},
  {"type": "Linear", "in": 48, "out": 7, "bias": false},
  {"type": "BatchNorm1d", "features": 7},
  {"type": "Scale", "factor": 0.125}
 ]})";

TEST(ModelJson, EveryLayerTypeRoundTrips) {
  // The writer leaves out defaults ("in": 3, "kernel": 2, "start_dim": 1).
  std::string canonical = without_space(kEveryLayer);
  for (const char* dflt : {"\"in\":3,\"kernel\":2", ",\"start_dim\":1"}) {
    const size_t at = canonical.find(dflt);
    ASSERT_NE(at, std::string::npos) << dflt;
    canonical.erase(at, std::string(dflt).size());
  }
  canonical.replace(canonical.find("\"PatchWhitening\","), 17, "\"PatchWhitening\"");
  nn::Sequential net = models::from_json(kEveryLayer);
  EXPECT_EQ(without_space(models::to_json(*net, "every")), canonical);
  EXPECT_EQ(net->size(), 15u);
  EXPECT_EQ(net(tt::random_tensor({3, 3, 13, 9}, kFloat32)).sizes(), (Shape{3, 7}));
  EXPECT_FALSE(net->at<nn::BatchNorm2dImpl>(2).weight.requires_grad());
  EXPECT_TRUE(net->at<nn::BatchNorm2dImpl>(2).bias.requires_grad());
  EXPECT_EQ(net->at<nn::Conv2dImpl>(1).options.kernel_size(), Size2(3, 1));
  EXPECT_EQ(models::init_whitening(*net, tt::random_tensor({2, 3, 8, 8}, kFloat32)), 1);
  // A bare module (not a Sequential) is written as a list of one layer.
  EXPECT_EQ(without_space(models::to_json(*nn::ReLU().ptr())),
            R"({"format":"tandem-model","version":1,"layers":[{"type":"ReLU"}]})");
}

TEST(ModelJson, FilesRoundTrip) {
  const tt::ScratchDir dir;
  const std::string path = dir.path("model.json");
  nn::Sequential fast = models::resnet_fast();
  models::save_json(*fast, path, "resnet-fast");
  nn::Sequential back = models::load_json(path);
  EXPECT_EQ(param_shapes(*back), param_shapes(*fast));
  {
    std::ofstream out(path);
    out << R"({"layers": [{"type": "ReLU"}, {"type": "Linear", "in": 0, "out": 2}]})";
  }
  expect_error([&] { models::load_json(path); },
               {path.c_str(), ": model json: layer 1 (Linear): field 'in' must be >= 1, got 0"});
  std::remove(path.c_str());
  expect_error([&] { models::load_json(path); },
               {"models::load_json: cannot open '", path.c_str()});
  expect_error([&] { models::save_json(*fast, "/nonexistent-dir/x.json"); },
               "models::save_json: cannot open '/nonexistent-dir/x.json' for writing");
}

std::string one_layer(const std::string& layer) {
  return R"({"layers": [{"type": "ReLU"}, )" + layer + "]}";
}

TEST(ModelJson, Errors) {
  auto bad = [](const std::string& text, const char* message) {
    expect_error([&] { models::from_json(text); }, message);
  };
  bad("{\"layers\": [", "model json: not valid JSON: ");
  bad("[{\"type\": \"ReLU\"}]",
      "model json: expected an object with a \"layers\" list at the top level, got array");
  bad("{}", "model json: the top level: missing field 'layers'");
  bad(R"({"layers": []})",
      "the top level: field 'layers' must be a non-empty list of layers, got array []");
  bad(R"({"layers": {"type": "ReLU"}})",
      "field 'layers' must be a non-empty list of layers, got object");
  bad(R"({"version": 2, "layers": [{"type": "ReLU"}]})",
      "model json: the top level: field 'version' must be 1, got 2");
  bad(R"({"format": "onnx", "layers": [{"type": "ReLU"}]})",
      "the top level: field 'format' must be one of tandem-model, got \"onnx\"");
  bad(R"({"name": 5, "layers": [{"type": "ReLU"}]})",
      "field 'name' must be a string, got number 5");
  bad(R"({"layer": [{"type": "ReLU"}]})",
      "the top level: unknown field 'layer'; valid fields: format, version, name, layers");
  bad(one_layer("5"), "model json: layer 1: expected an object, got number 5");
  bad(one_layer("{}"), "model json: layer 1: missing field 'type'");
  bad(one_layer(R"({"type": 3})"),
      "model json: layer 1: field 'type' must be a string, got number 3");
  bad(one_layer(R"({"type": "Conv3d"})"),
      "model json: layer 1: unknown type 'Conv3d'; valid types: AdaptiveAvgPool2d, AvgPool2d, "
      "BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, GELU, Linear, MaxPool2d, "
      "PatchWhitening, ReLU, Residual, Scale, Sequential, Sigmoid, Tanh");
  bad(one_layer(R"({"type": "Linear", "in": 3, "outt": 4})"),
      "model json: layer 1 (Linear): unknown field 'outt'; valid fields: in, out, bias");
  bad(one_layer(R"({"type": "ReLU", "inplace": true})"),
      "layer 1 (ReLU): unknown field 'inplace'; this layer has no fields");
  bad(one_layer(R"({"type": "Conv2d", "in": 3, "out": 8})"),
      "model json: layer 1 (Conv2d): missing field 'kernel'");
  bad(one_layer(R"({"type": "Conv2d", "in": "3", "out": 8, "kernel": 3})"),
      "layer 1 (Conv2d): field 'in' must be an integer, got string \"3\"");
  bad(one_layer(R"({"type": "Conv2d", "in": 3.5, "out": 8, "kernel": 3})"),
      "layer 1 (Conv2d): field 'in' must be an integer, got number 3.5");
  bad(one_layer(R"({"type": "Conv2d", "in": 3, "out": 8, "kernel": 0})"),
      "model json: layer 1 (Conv2d): field 'kernel' must be >= 1, got 0");
  bad(one_layer(R"({"type": "Conv2d", "in": 3, "out": 8, "kernel": [3, 3, 3]})"),
      "field 'kernel' must be an integer or an [h, w] pair, got array [3,3,3]");
  bad(one_layer(R"({"type": "Conv2d", "in": 3, "out": 8, "kernel": [3, -1]})"),
      "field 'kernel' must be >= 1, got -1");
  bad(one_layer(R"({"type": "Conv2d", "in": 3, "out": 8, "kernel": 3, "padding": -1})"),
      "layer 1 (Conv2d): field 'padding' must be >= 0, got -1");
  bad(one_layer(R"({"type": "Conv2d", "in": 3, "out": 8, "kernel": 3, "groups": 2})"),
      "layer 1 (Conv2d): field 'groups' (2) must divide in (3) and out (8)");
  bad(one_layer(R"({"type": "Conv2d", "in": 3, "out": 8, "kernel": 3, "bias": 1})"),
      "layer 1 (Conv2d): field 'bias' must be true or false, got number 1");
  bad(one_layer(R"({"type": "Conv2d", "in": 3, "out": 18446744073709551615, "kernel": 3})"),
      "layer 1 (Conv2d): field 'out' is too large: 18446744073709551615");
  bad(one_layer(R"({"type": "BatchNorm2d", "features": 4, "momentum": 2})"),
      "layer 1 (BatchNorm2d): field 'momentum' must be in [0, 1], got 2");
  bad(one_layer(R"({"type": "BatchNorm1d", "features": 4, "eps": 0})"),
      "layer 1 (BatchNorm1d): field 'eps' must be > 0, got 0");
  bad(one_layer(R"({"type": "BatchNorm2d", "features": 4, "eps": "small"})"),
      "layer 1 (BatchNorm2d): field 'eps' must be a number, got string \"small\"");
  bad(one_layer(
          R"({"type": "BatchNorm2d", "features": 4, "affine": false, "train_weight": false})"),
      "layer 1 (BatchNorm2d): field 'train_weight' needs affine true");
  bad(one_layer(R"({"type": "GELU", "approximate": "fast"})"),
      "layer 1 (GELU): field 'approximate' must be one of none, tanh, got \"fast\"");
  bad(one_layer(R"({"type": "GELU", "approximate": true})"),
      "layer 1 (GELU): field 'approximate' must be a string, got boolean true");
  bad(one_layer(R"({"type": "MaxPool2d", "kernel": 2, "padding": 2})"),
      "layer 1 (MaxPool2d): field 'padding' (2, 2) must be at most half of kernel (2, 2)");
  bad(one_layer(R"({"type": "AvgPool2d", "kernel": 3, "stride": 0})"),
      "layer 1 (AvgPool2d): field 'stride' must be >= 1, got 0");
  bad(one_layer(R"({"type": "AdaptiveAvgPool2d"})"),
      "layer 1 (AdaptiveAvgPool2d): missing field 'output'");
  bad(one_layer(R"({"type": "Dropout", "p": 1})"),
      "layer 1 (Dropout): field 'p' must be in [0, 1), got 1");
  bad(one_layer(R"({"type": "Scale"})"), "layer 1 (Scale): missing field 'factor'");
  bad(one_layer(R"({"type": "PatchWhitening", "kernel": 0})"),
      "layer 1 (PatchWhitening): field 'kernel' must be >= 1, got 0");
  bad(one_layer(R"({"type": "Residual", "layers": []})"),
      "layer 1 (Residual): field 'layers' must be a non-empty list of layers, got array []");
  bad(one_layer(R"({"type": "Residual", "layers": [{"type": "ReLU"}], "shortcut": 3})"),
      "layer 1 (Residual): field 'shortcut' must be a list of layers, got number 3");
  bad(one_layer(R"({"type": "Residual", "layers": [{"type": "ReLU"},
                   {"type": "Linear", "in": 4, "out": 0}]})"),
      "model json: layer 1 (Residual) > layer 1 (Linear): field 'out' must be >= 1, got 0");
  bad(one_layer(R"({"type": "Residual", "layers": [{"type": "ReLU"}],
                   "shortcut": [{"type": "Conv"}]})"),
      "model json: layer 1 (Residual) > shortcut layer 0: unknown type 'Conv'");
  bad(one_layer(R"({"type": "Sequential", "layers": [{"type": "Residual",
                   "layers": [{"type": "Tanh", "x": 1}]}]})"),
      "layer 1 (Sequential) > layer 0 (Residual) > layer 0 (Tanh): unknown field 'x'");

  struct Custom : nn::Module {
    Custom() : nn::Module("Custom") {}
  };
  nn::Sequential with_custom(nn::ReLU(), std::make_shared<Custom>());
  expect_error([&] { models::to_json(*with_custom); },
               "to_json: layer 1 (Custom): a Custom layer cannot be written as JSON; supported "
               "types: AdaptiveAvgPool2d");
  nn::Sequential nested(nn::Residual(nn::Sequential(nn::ReLU(), std::make_shared<Custom>())));
  expect_error([&] { models::to_json(*nested); },
               "to_json: layer 0 (Residual) > layer 1 (Custom): a Custom layer cannot be written");
}

}  // namespace
