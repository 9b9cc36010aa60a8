// The elements of airbench94's recipe that resnet-fast takes (docs/models.md):
// dirac initialisation, lookahead (optim::Lookahead) against a float64 loop
// and across a resumed run, alternating flips and reflect-padded translation
// in the loader, flip + translate test-time augmentation against views built
// by hand, the whitening bias frozen after its epochs, and the recipe's
// defaults. CUDA cases hold the device path against the CPU's (they skip
// without a device, and fail under TANDEM_REQUIRE_CUDA=1).
#include <unistd.h>

#include <cmath>
#include <random>

#include "test_util.h"

namespace {

using namespace tandem;
using namespace tt;

const Device kGpu(kCUDA, 0);

std::vector<double> random_values(size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

Tensor random_tensor(const Shape& shape, uint64_t seed, DType dt = kFloat32) {
  return from_vector(random_values(static_cast<size_t>(numel_of(shape)), seed), shape).to(dt);
}

// Random uint8 images [n, c, h, w] (distinct and asymmetric with certainty in practice).
data::ImageDataset random_images(int64_t n, int64_t c, int64_t h, int64_t w, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> px(static_cast<size_t>(n * c * h * w));
  for (uint8_t& v : px) v = static_cast<uint8_t>(rng() % 256);
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) labels[static_cast<size_t>(i)] = i % 10;
  data::ImageDataset ds;
  ds.images = from_vector(px, {n, c, h, w});
  ds.labels = from_vector(labels, {n});
  ds.classes = data::cifar10_classes();
  return ds;
}

::testing::AssertionResult vectors_close(const std::vector<double>& actual,
                                         const std::vector<double>& ref, Tol tol) {
  return values_close(actual, {static_cast<int64_t>(actual.size())}, ref,
                      {static_cast<int64_t>(ref.size())}, tol);
}

int64_t reflect(int64_t i, int64_t n) { return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i); }

// ---- dirac initialisation ----------------------------------------------------------------

TEST(Dirac, ConvolutionCopiesTheFirstChannels) {
  for (const auto& [out, in] : std::vector<std::pair<int64_t, int64_t>>{{7, 3}, {3, 5}, {4, 4}}) {
    Tensor w = random_tensor({out, in, 3, 3}, 11);
    nn::init::dirac_(w);
    const Tensor x = random_tensor({2, in, 6, 5}, 12);
    const std::vector<double> y = to_doubles(conv2d(x, w, Tensor(), 1, 1));
    const std::vector<double> xv = to_doubles(x);
    const int64_t hw = 30;
    for (int64_t n = 0; n < 2; ++n) {
      for (int64_t o = 0; o < out; ++o) {
        for (int64_t p = 0; p < hw; ++p) {
          const double want = o < in ? xv[static_cast<size_t>((n * in + o) * hw + p)] : 0.0;
          ASSERT_EQ(y[static_cast<size_t>((n * out + o) * hw + p)], want)
              << out << "x" << in << " channel " << o;
        }
      }
    }
  }
  // Groups: each group's first channels.
  Tensor g = random_tensor({4, 2, 1, 3}, 13);
  nn::init::dirac_(g, 2);
  const std::vector<double> v = to_doubles(g);
  for (int64_t o = 0; o < 4; ++o)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t k = 0; k < 3; ++k) {
        const double want = (o % 2 == i && k == 1) ? 1.0 : 0.0;
        EXPECT_EQ(v[static_cast<size_t>((o * 2 + i) * 3 + k)], want) << o << " " << i << " " << k;
      }
  expect_error([] { nn::init::dirac_(zeros({3, 3})); }, "dirac_: needs a conv weight");
  expect_error([] { nn::init::dirac_(zeros({3, 3, 3}), 2); }, "divisible by groups 2");
}

TEST(Dirac, ResnetFastStartsWithPartialIdentities) {
  manual_seed(3);
  nn::Sequential net = models::resnet_fast();
  int convs = 0;
  for (const auto& m : net->modules()) {
    auto* conv = dynamic_cast<nn::Conv2dImpl*>(m.get());
    if (conv == nullptr || dynamic_cast<models::PatchWhiteningImpl*>(m.get()) != nullptr) continue;
    ++convs;
    const int64_t out = conv->options.out_channels(), in = conv->options.in_channels();
    const std::vector<double> w = to_doubles(conv->weight);
    bool rest_random = out == in;  // a square conv is the identity throughout
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t i = 0; i < in; ++i) {
        for (int64_t k = 0; k < 9; ++k) {
          const double v = w[static_cast<size_t>((o * in + i) * 9 + k)];
          if (o < in) {
            ASSERT_EQ(v, (o == i && k == 4) ? 1.0 : 0.0) << "conv " << convs;
          } else if (v != 0.0) {
            rest_random = true;
          }
        }
      }
    }
    EXPECT_TRUE(rest_random) << "conv " << convs << ": the filters past the identity are zero";
  }
  EXPECT_EQ(convs, 6);
  // The CLI builds the model from JSON and applies init_dirac: the same weights.
  manual_seed(3);
  nn::Sequential from_json = models::from_json(models::to_json(*net));
  EXPECT_EQ(models::init_dirac(*from_json), 6);
  const auto a = net->named_parameters(), b = from_json->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) expect_equal(b[i].second, a[i].second);
}

TEST(Dirac, CudaMatchesCpu) {
  TANDEM_SKIP_WITHOUT_CUDA();
  Tensor cpu = random_tensor({6, 4, 3, 3}, 21);
  Tensor gpu = cpu.to(kGpu);
  nn::init::dirac_(cpu.slice(0, 0, 4));
  nn::init::dirac_(gpu.slice(0, 0, 4));
  ASSERT_TRUE(gpu.is_cuda());
  expect_equal(gpu.cpu(), cpu);
}

// ---- lookahead ----------------------------------------------------------------------------

// airbench's loop in float64: after every step the weights move by `delta`;
// then the lookahead schedule and the end-of-epoch copy.
struct LookaheadRef {
  optim::LookaheadOptions o;
  std::vector<double> w, ema;
  bool started = false;
  void after_step(int64_t step, int64_t epoch, int64_t total) {
    if (epoch < o.start_epoch || step % o.every != 0) return;
    if (!started) {
      ema = w;
      started = true;
      return;
    }
    const double rho =
        std::pow(o.decay_base, static_cast<double>(o.every)) *
        std::pow(static_cast<double>(step) / static_cast<double>(total), o.decay_pow);
    for (size_t i = 0; i < w.size(); ++i) {
      ema[i] = ema[i] * rho + w[i] * (1.0 - rho);
      w[i] = ema[i];
    }
  }
  void end_epoch() {
    if (started) w = ema;
  }
};

// `epochs` epochs of `steps` steps on `weights` (two tensors, so the split
// matters), the weights moved by random deltas; returns the reference's weights.
std::vector<double> run_lookahead(std::vector<Tensor> weights, optim::Lookahead& la,
                                  int64_t first_epoch, int64_t epochs, int64_t steps,
                                  LookaheadRef* ref) {
  const int64_t total = epochs * steps;
  for (int64_t e = first_epoch; e < epochs; ++e) {
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t step = e * steps + s + 1;
      size_t at = 0;
      for (Tensor& t : weights) {
        const std::vector<double> d =
            random_values(static_cast<size_t>(t.numel()), static_cast<uint64_t>(1000 * step + at));
        NoGradGuard no_grad;
        t.add_(from_vector(d, t.sizes()).to(t.device(), t.dtype()));
        for (double v : d) ref->w[at++] += v;
      }
      la.after_step(step, e, total);
      ref->after_step(step, e, total);
    }
    la.end_epoch();
    ref->end_epoch();
  }
  return ref->w;
}

std::vector<double> concat(const std::vector<Tensor>& ts) {
  std::vector<double> out;
  for (const Tensor& t : ts) {
    const std::vector<double> v = to_doubles(t);
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

TEST(Lookahead, MatchesAFloat64Loop) {
  optim::LookaheadOptions o;
  o.start_epoch = 1;
  o.every = 3;
  std::vector<Tensor> w = {random_tensor({5, 3}, 31, kFloat64), random_tensor({7}, 32, kFloat64)};
  LookaheadRef ref{o, concat(w), {}, false};
  optim::Lookahead la(w, o);
  const std::vector<double> want = run_lookahead(w, la, 0, 4, 5, &ref);
  EXPECT_TRUE(la.started());
  EXPECT_TRUE(vectors_close(concat(w), want, {1e-13, 1e-13}));
  // After an epoch's end the weights are the average.
  EXPECT_TRUE(vectors_close(concat(la.average()), concat(w), exact()));
  EXPECT_NEAR(la.decay(10, 20), std::pow(0.95, 3) * 0.125, 1e-15);
}

TEST(Lookahead, NotDueBeforeItsStartEpoch) {
  optim::LookaheadOptions o;  // airbench's: from epoch 3
  std::vector<Tensor> w = {random_tensor({4}, 33, kFloat64)};
  optim::Lookahead la(w, o);
  for (int64_t step = 1; step <= 15; ++step) la.after_step(step, (step - 1) / 5, 100);
  EXPECT_FALSE(la.started());  // epochs 0-2
  la.after_step(16, 3, 100);
  EXPECT_FALSE(la.started());  // 16 is not a multiple of 5
  la.after_step(20, 3, 100);
  EXPECT_TRUE(la.started());
  expect_error([] { optim::Lookahead({zeros({2})}).update(0.5); }, "has not started");
  expect_error([] { optim::Lookahead({zeros({2}, dtype(kInt64))}); }, "floating-point");
  expect_error(
      [] {
        optim::Lookahead la2({zeros({2})});
        la2.start();
        la2.update(1.5);
      },
      "decay must be in [0, 1]");
}

TEST(Lookahead, ResumedAtAnEpochBoundaryContinuesExactly) {
  optim::LookaheadOptions o;
  o.start_epoch = 1;
  o.every = 4;
  for (int64_t split : {1, 2, 3}) {  // before the first due step (4 * 1 + ... = 8) and after
    std::vector<Tensor> w = {random_tensor({6}, 41, kFloat64)};
    LookaheadRef ref{o, concat(w), {}, false};
    optim::Lookahead whole(w, o);
    const std::vector<double> want = run_lookahead(w, whole, 0, 5, 6, &ref);

    std::vector<Tensor> w3 = {random_tensor({6}, 41, kFloat64)};
    LookaheadRef ref3{o, concat(w3), {}, false};
    optim::Lookahead before(w3, o);
    // The first `split` epochs with the reference's schedule over 5 epochs.
    for (int64_t e = 0; e < split; ++e) {
      for (int64_t s = 0; s < 6; ++s) {
        const int64_t step = e * 6 + s + 1;
        const std::vector<double> d = random_values(6, static_cast<uint64_t>(1000 * step));
        NoGradGuard no_grad;
        w3[0].add_(from_vector(d, {6}).to(kFloat64));
        before.after_step(step, e, 30);
      }
      before.end_epoch();
    }
    optim::Lookahead after(w3, o);
    after.resume(split * 6, 6);
    EXPECT_EQ(after.started(), split * 6 >= 8) << split;
    run_lookahead(w3, after, split, 5, 6, &ref3);
    EXPECT_TRUE(vectors_close(concat(w3), want, {1e-13, 1e-13})) << "resumed after " << split;
  }
}

TEST(Lookahead, TensorsOfAModelIncludeBatchNormStatistics) {
  nn::Sequential net(nn::Conv2d(3, 4, 3), nn::BatchNorm2d(4));
  const std::vector<Tensor> ts = optim::lookahead_tensors(*net);
  int64_t floats = 0;
  for (const Tensor& p : net->parameters()) floats += is_floating(p.dtype()) ? 1 : 0;
  for (const Tensor& b : net->buffers()) floats += is_floating(b.dtype()) ? 1 : 0;
  EXPECT_EQ(static_cast<int64_t>(ts.size()), floats);
  EXPECT_GE(ts.size(), 6u);  // conv weight, bias; BN weight, bias, running mean, var
  for (const Tensor& t : ts) EXPECT_TRUE(is_floating(t.dtype()));
}

TEST(Lookahead, CudaMatchesCpu) {
  TANDEM_SKIP_WITHOUT_CUDA();
  optim::LookaheadOptions o;
  o.start_epoch = 0;
  o.every = 2;
  std::vector<Tensor> cpu = {random_tensor({33}, 51)};
  std::vector<Tensor> gpu = {cpu[0].to(kGpu)};
  LookaheadRef r1{o, concat(cpu), {}, false}, r2 = r1;
  optim::Lookahead a(cpu, o), b(gpu, o);
  run_lookahead(cpu, a, 0, 2, 5, &r1);
  run_lookahead(gpu, b, 0, 2, 5, &r2);
  ASSERT_TRUE(gpu[0].is_cuda());
  expect_close(gpu[0].cpu(), cpu[0], {1e-6, 1e-6});
  // The averaging never waits on the device (a training step stays sync-free).
  const uint64_t syncs = cuda::host_sync_count();
  b.update(0.3);
  b.after_step(12, 2, 20);
  b.end_epoch();
  EXPECT_EQ(cuda::host_sync_count(), syncs);
}

// ---- alternating flip, reflect translation ----------------------------------------------

// Whether each sample of `epoch` came out mirrored (no crop, no normalisation).
std::vector<int> flips_of(const data::DataLoader& loader, const data::ImageDataset& ds,
                          int64_t epoch) {
  const int64_t n = ds.size(), w = ds.images.size(3);
  // As the loader's table: float(v / 255.0) in double.
  const Tensor plain = (ds.images.to(kFloat64) / 255.0).to(kFloat32);
  const Tensor mirrored =
      index_select(plain, 3, arange(static_cast<double>(w - 1), -1.0, -1.0, dtype(kInt64)));
  std::vector<int> out;
  for (int64_t b = 0; b < loader.num_batches(); ++b) {
    const data::Batch batch = loader.batch(epoch, b);
    const Tensor images = batch.images.cpu();
    for (int64_t i = 0; i < images.size(0); ++i) {
      const int64_t s = b * loader.options().batch_size + i;  // no shuffle: sample s
      const Tensor x = images.select(0, i);
      const bool same = sum(abs(x - plain.select(0, s))).item<double>() == 0;
      const bool flipped = sum(abs(x - mirrored.select(0, s))).item<double>() == 0;
      EXPECT_NE(same, flipped) << "sample " << s << " epoch " << epoch;
      out.push_back(flipped ? 1 : 0);
    }
  }
  EXPECT_EQ(static_cast<int64_t>(out.size()), n);
  return out;
}

data::LoaderOptions flip_options(bool alternating) {
  data::LoaderOptions o;
  o.batch_size = 16;
  o.shuffle = false;
  o.seed = 77;
  o.augment.horizontal_flip = true;
  o.augment.alternating_flip = alternating;
  o.workers = 1;
  return o;
}

TEST(AlternatingFlip, EachEpochFlipsExactlyTheComplement) {
  const data::ImageDataset ds = random_images(80, 3, 5, 6, 61);
  data::DataLoader loader(ds, flip_options(true));
  std::vector<int> prev = flips_of(loader, ds, 0);
  int64_t flipped = 0;
  for (int f : prev) flipped += f;
  EXPECT_GT(flipped, 20);  // a random half of 80
  EXPECT_LT(flipped, 60);
  for (int64_t e = 1; e <= 4; ++e) {
    const std::vector<int> cur = flips_of(loader, ds, e);
    for (size_t i = 0; i < cur.size(); ++i) ASSERT_EQ(cur[i], 1 - prev[i]) << "epoch " << e;
    prev = cur;
  }
  // Random flips (the default) do not alternate: some image keeps its flip.
  data::DataLoader random(ds, flip_options(false));
  const std::vector<int> r0 = flips_of(random, ds, 0), r1 = flips_of(random, ds, 1);
  int64_t kept = 0;
  for (size_t i = 0; i < r0.size(); ++i) kept += r0[i] == r1[i] ? 1 : 0;
  EXPECT_GT(kept, 0);
  data::LoaderOptions bad = flip_options(true);
  bad.augment.horizontal_flip = false;
  expect_error([&] { data::DataLoader(ds, bad); }, "alternating_flip needs");
}

TEST(ReflectTranslate, EveryImageIsAReflectPaddedShift) {
  const int64_t n = 40, c = 2, h = 5, w = 7, pad = 2;
  const data::ImageDataset ds = random_images(n, c, h, w, 71);
  data::LoaderOptions o;
  o.batch_size = n;
  o.shuffle = false;
  o.seed = 5;
  o.augment.crop_padding = pad;
  o.augment.padding = data::PadMode::Reflect;
  o.workers = 1;
  data::DataLoader loader(ds, o);
  const std::vector<double> got = to_doubles(loader.batch(0, 0).images);
  const std::vector<uint8_t> src = to_vector<uint8_t>(ds.images);
  int64_t shifted = 0;
  for (int64_t i = 0; i < n; ++i) {
    bool found = false;
    for (int64_t dy = -pad; dy <= pad && !found; ++dy) {
      for (int64_t dx = -pad; dx <= pad && !found; ++dx) {
        bool match = true;
        for (int64_t ch = 0; ch < c && match; ++ch)
          for (int64_t y = 0; y < h && match; ++y)
            for (int64_t x = 0; x < w && match; ++x) {
              const double want =
                  src[static_cast<size_t>(((i * c + ch) * h + reflect(y + dy, h)) * w +
                                          reflect(x + dx, w))] /
                  255.0;
              match =
                  std::abs(got[static_cast<size_t>(((i * c + ch) * h + y) * w + x)] - want) < 1e-6;
            }
        if (match) {
          found = true;
          shifted += (dy != 0 || dx != 0) ? 1 : 0;
        }
      }
    }
    EXPECT_TRUE(found) << "image " << i << " is no reflect-padded shift of its source";
  }
  EXPECT_GT(shifted, n / 2);  // 24 of 25 shifts move the image
  o.augment.crop_padding = h;
  expect_error([&] { data::DataLoader(ds, o); }, "reflect padding needs");
}

TEST(ReflectTranslate, DeviceResidentBatchesMatchTheCpu) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const data::ImageDataset ds = random_images(50, 3, 8, 8, 81);
  data::LoaderOptions o = flip_options(true);
  o.shuffle = true;
  o.augment.crop_padding = 2;
  o.augment.padding = data::PadMode::Reflect;
  o.normalize = data::cifar10_normalize();
  data::DataLoader cpu(ds, o);
  o.device = kGpu;
  o.mode = data::LoaderMode::DeviceResident;
  data::DataLoader gpu(ds, o);
  for (int64_t e = 0; e < 3; ++e) {
    for (int64_t b = 0; b < cpu.num_batches(); ++b) {
      const data::Batch g = gpu.batch(e, b);
      ASSERT_TRUE(g.images.is_cuda());
      expect_equal(g.images.cpu(), cpu.batch(e, b).images);
      expect_equal(g.labels.cpu(), cpu.batch(e, b).labels);
    }
  }
}

// ---- test-time augmentation -------------------------------------------------------------

// The view of image batch `x` (float64 values [n, c, h, w]) shifted by
// (dy, dx) with reflect padding, optionally mirrored, built by hand.
Tensor view_by_hand(const Tensor& x, int64_t dy, int64_t dx, bool mirror) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const std::vector<double> v = to_doubles(x);
  std::vector<double> out(v.size());
  for (int64_t i = 0; i < n * c; ++i)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t xx = 0; xx < w; ++xx) {
        const int64_t col = mirror ? w - 1 - xx : xx;  // mirror of the shifted image
        out[static_cast<size_t>((i * h + y) * w + xx)] =
            v[static_cast<size_t>((i * h + reflect(y - dy, h)) * w + reflect(col - dx, w))];
      }
  return from_vector(out, x.sizes()).to(x.dtype());
}

nn::Sequential asymmetric_net() {
  manual_seed(91);
  return nn::Sequential(nn::Conv2d(nn::Conv2dOptions(3, 4, 3).padding(1)), nn::GELU(),
                        nn::Flatten(), nn::Linear(4 * 6 * 5, 10));
}

TEST(TestTimeAugment, TranslateIsTheWeightedMeanOfSixViews) {
  nn::Sequential net = asymmetric_net();
  net->eval();
  NoGradGuard no_grad;
  const Tensor x = random_tensor({3, 3, 6, 5}, 92, kFloat64);
  net->to(kFloat64);
  auto f = [&](int64_t dy, int64_t dx, bool m) {
    return to_doubles((*net)(view_by_hand(x, dy, dx, m)));
  };
  const std::vector<double> a = f(0, 0, false), b = f(0, 0, true), c = f(1, 1, false),
                            d = f(1, 1, true), e = f(-1, -1, false), g = f(-1, -1, true);
  std::vector<double> flip(a.size()), level2(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    flip[i] = 0.5 * (a[i] + b[i]);
    level2[i] = 0.25 * (a[i] + b[i]) + 0.125 * (c[i] + d[i] + e[i] + g[i]);
  }
  const Tol tol{1e-12, 1e-12};
  EXPECT_TRUE(
      vectors_close(to_doubles(train::tta_logits(*net, x, train::TestTimeAugment::None)), a, tol));
  EXPECT_TRUE(vectors_close(to_doubles(train::tta_logits(*net, x, train::TestTimeAugment::Flip)),
                            flip, tol));
  EXPECT_TRUE(vectors_close(
      to_doubles(train::tta_logits(*net, x, train::TestTimeAugment::FlipTranslate)), level2, tol));
  // translate_reflect itself, for a shift of 2 (rows) and -1 (columns).
  expect_close(train::translate_reflect(x, 2, -1), view_by_hand(x, 2, -1, false), exact());
  EXPECT_EQ(train::test_time_augment(true, true), train::TestTimeAugment::FlipTranslate);
  EXPECT_EQ(train::test_time_augment(false, true), train::TestTimeAugment::FlipTranslate);
  EXPECT_EQ(train::test_time_augment(true, false), train::TestTimeAugment::Flip);
  expect_error([&] { train::translate_reflect(x, 6, 0); }, "below the image size");
}

TEST(TestTimeAugment, CudaMatchesCpu) {
  TANDEM_SKIP_WITHOUT_CUDA();
  nn::Sequential net = asymmetric_net();
  net->eval();
  NoGradGuard no_grad;
  const Tensor x = random_tensor({4, 3, 6, 5}, 93);
  const Tensor cpu = train::tta_logits(*net, x, train::TestTimeAugment::FlipTranslate);
  net->to(kGpu);
  const Tensor gpu = train::tta_logits(*net, x.to(kGpu), train::TestTimeAugment::FlipTranslate);
  ASSERT_TRUE(gpu.is_cuda());
  expect_close(gpu.cpu(), cpu, {1e-4, 1e-5});
}

// ---- whitening bias, the trainer's hooks ----------------------------------------------------

std::string temp_dir() {
  char tmpl[] = "/tmp/tandem_airbench_XXXXXX";
  const char* d = ::mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d == nullptr ? std::string("/tmp") : std::string(d);
}

TEST(WhiteningBias, TrainsForItsEpochsThenStaysFrozen) {
  manual_seed(101);
  nn::Sequential net(models::PatchWhitening(3, 2, true), nn::GELU(), nn::Flatten(),
                     nn::Linear(24 * 7 * 7, 10));
  auto* white = dynamic_cast<models::PatchWhiteningImpl*>((*net)[0].get());
  ASSERT_NE(white, nullptr);
  EXPECT_EQ(to_doubles(white->bias), std::vector<double>(24, 0.0));  // airbench zeroes it
  EXPECT_TRUE(white->bias.requires_grad());
  EXPECT_FALSE(white->weight.requires_grad());
  data::LoaderOptions lo;
  lo.batch_size = 16;
  lo.seed = 3;
  lo.normalize = data::cifar10_normalize();
  data::DataLoader loader(random_images(64, 3, 8, 8, 102), lo);
  // Momentum and weight decay: a frozen parameter must not move by either.
  optim::SGD sgd(models::split_parameters(*net).others,
                 optim::SGDOptions(0.05).momentum(0.9).weight_decay(0.01));
  train::TrainerOptions opt;
  opt.epochs = 4;
  const int64_t bias_epochs = 2;
  std::vector<std::vector<double>> after;
  opt.on_epoch_start = [&](int64_t epoch) {
    models::set_whitening_bias_trainable(*net, epoch < bias_epochs);
  };
  opt.on_epoch = [&](const train::EpochStats&) { after.push_back(to_doubles(white->bias)); };
  train::Trainer trainer(net.ptr(), sgd, nullptr, opt);
  trainer.fit(loader);
  ASSERT_EQ(after.size(), 4u);
  EXPECT_NE(after[0], std::vector<double>(24, 0.0));  // trained in epoch 1
  EXPECT_NE(after[1], after[0]);                      // and 2
  EXPECT_EQ(after[2], after[1]);                      // frozen from epoch 3 on
  EXPECT_EQ(after[3], after[1]);
  EXPECT_EQ(models::set_whitening_bias_trainable(*net, true), 1);
  // The bias survives a JSON round trip; old files (no "bias") have none.
  const std::string text = models::to_json(*net);
  EXPECT_NE(text.find("\"bias\": true"), std::string::npos) << text;
  const auto read_back = models::from_json(text);  // keeps the layers alive
  auto* back = dynamic_cast<models::PatchWhiteningImpl*>((*read_back)[0].get());
  ASSERT_NE(back, nullptr);
  EXPECT_TRUE(back->bias.defined());
  auto old = models::from_json(R"({"layers": [{"type": "PatchWhitening"}]})");
  EXPECT_FALSE(dynamic_cast<models::PatchWhiteningImpl*>((*old)[0].get())->bias.defined());
}

// The Trainer drives a Lookahead; a run interrupted after epoch 2 and resumed
// with a fresh Lookahead ends with the weights of the uninterrupted run.
TEST(WhiteningBias, TrainerWithLookaheadResumesExactly) {
  optim::LookaheadOptions lo;
  lo.start_epoch = 1;
  lo.every = 3;
  auto run = [&](int64_t stop_after, const std::string& dir) {
    manual_seed(111);
    nn::Sequential net = models::resnet_fast({{8, 8}, 2, 1.0 / 9, 0.4, 1e-12, 10, true, true});
    models::ParameterSplit split = models::split_parameters(*net);
    std::vector<Tensor> params = split.others;
    params.insert(params.end(), split.batchnorm_biases.begin(), split.batchnorm_biases.end());
    data::LoaderOptions o;
    o.batch_size = 16;
    o.seed = 4;
    o.drop_last = true;
    o.normalize = data::cifar10_normalize();
    o.augment = {1, true, 0, data::PadMode::Reflect, true};
    // 16 -> 15 (whitening) -> 7 -> 3 -> global max-pool.
    data::DataLoader loader(random_images(56, 3, 16, 16, 112), o);
    optim::SGD sgd(params, optim::SGDOptions(0.05).momentum(0.85).nesterov(true));
    optim::Lookahead la(optim::lookahead_tensors(*net), lo);
    train::TrainerOptions opt;
    opt.epochs = stop_after;
    opt.lookahead = &la;
    opt.checkpoint_dir = dir;
    opt.on_epoch_start = [&](int64_t e) { models::set_whitening_bias_trainable(*net, e < 1); };
    train::Trainer trainer(net.ptr(), sgd, nullptr, opt);
    trainer.fit(loader);
    if (stop_after < 4) {
      optim::Lookahead la2(optim::lookahead_tensors(*net), lo);
      opt.epochs = 4;
      opt.lookahead = &la2;
      train::Trainer resumed(net.ptr(), sgd, nullptr, opt);
      resumed.resume(dir + "/last.safetensors");
      resumed.fit(loader);
    }
    return concat(optim::lookahead_tensors(*net));
  };
  const std::string dir = temp_dir();
  const std::vector<double> whole = run(4, dir + "/a");
  const std::vector<double> resumed = run(2, dir + "/b");
  EXPECT_TRUE(vectors_close(resumed, whole, exact()));
}

// ---- the recipe ------------------------------------------------------------------------------

TEST(Recipe, ResnetFastIsAirbench94) {
  const models::Recipe r = models::recipe("resnet-fast");
  EXPECT_EQ(r.val_split, 0);  // all 50,000 training images
  EXPECT_EQ(models::recipe("lenet").val_split, -1);
  EXPECT_TRUE(r.lookahead && r.dirac_init && r.tta_flip && r.tta_translate && r.drop_last);
  EXPECT_TRUE(r.augment_flip && r.augment_alternating_flip && r.translate_reflect);
  EXPECT_EQ(r.augment_translate, 2);
  EXPECT_EQ(r.whitening_bias_epochs, 3);
  EXPECT_EQ(r.lookahead_options.start_epoch, 3);
  EXPECT_EQ(r.lookahead_options.every, 5);
  // airbench's per-1024-examples units at batch 1024 and 512 (lr per example
  // fixed; the mean-loss weight decay does not depend on the batch).
  const double kilostep = 1024 * (1 + 1 / (1 - 0.85));
  EXPECT_NEAR(models::lr_for_batch(r, 1024), 11.5 / kilostep * 1024, 1e-12);
  EXPECT_NEAR(models::lr_for_batch(r, 512), 11.5 / kilostep * 512, 1e-12);
  EXPECT_NEAR(r.weight_decay, (0.0153 * 1024 / kilostep) / (11.5 / kilostep) / 1024, 1e-15);
  EXPECT_EQ(models::lr_for_batch(models::recipe("lenet"), 7), models::recipe("lenet").lr);
  // The triangle: 0.2 at step 0, 1 at floor(0.23 T), 0.07 at T.
  EXPECT_DOUBLE_EQ(models::schedule_factor(r, 0, 480), 0.2);
  EXPECT_DOUBLE_EQ(models::schedule_factor(r, 110, 480), 1.0);
  EXPECT_NEAR(models::schedule_factor(r, 480, 480), 0.07, 1e-15);
  // The network: BN weight frozen, eps 1e-12, momentum 0.4 (airbench's 0.6).
  nn::Sequential net = models::resnet_fast();
  int bns = 0;
  for (const auto& m : net->modules()) {
    if (auto* bn = dynamic_cast<nn::BatchNormImplBase*>(m.get())) {
      ++bns;
      EXPECT_FALSE(bn->weight.requires_grad());
      EXPECT_TRUE(bn->bias.requires_grad());
      EXPECT_EQ(bn->options.eps(), 1e-12);
      EXPECT_EQ(bn->options.momentum(), 0.4);
    }
  }
  EXPECT_EQ(bns, 6);
}

}  // namespace
