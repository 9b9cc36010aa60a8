// conv2d, pooling and batch norm: forward against naive float64 references on
// random shapes (odd sizes, stride, padding, dilation, groups, batch 1), the
// CUDA paths no registry record covers (cuDNN modes and handles, ties, NaN,
// huge channel counts and batches), the modules (shapes, running
// statistics, errors naming the layer), and a LeNet and a ResNet-block net on
// both devices. Gradients against finite differences are in grad_cases.h.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#if TANDEM_WITH_CUDA
#include <cuda_runtime.h>  // cudaMemGetInfo
#endif

#include "core/conv_chunk.h"
#include "core/cuda_services.h"
#include "test_util.h"

namespace {

using namespace tandem;  // NOLINT

// ---- Naive float64 references -----------------------------------------------------------

struct ConvCfg {
  int64_t n, c, h, w, k, r, s;
  Size2 stride{1}, pad{0}, dil{1};
  int64_t groups = 1;
  bool bias = true;
};

std::ostream& operator<<(std::ostream& os, const ConvCfg& g) {
  return os << "n" << g.n << " c" << g.c << " " << g.h << "x" << g.w << " k" << g.k << " " << g.r
            << "x" << g.s << " stride" << g.stride << " pad" << g.pad << " dil" << g.dil
            << " groups" << g.groups << (g.bias ? " bias" : "");
}

int64_t out_size(int64_t in, int64_t pad, int64_t dil, int64_t k, int64_t stride) {
  return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

std::vector<double> ref_conv(const std::vector<double>& x, const std::vector<double>& w,
                             const std::vector<double>& b, const ConvCfg& g) {
  const int64_t p = out_size(g.h, g.pad.h, g.dil.h, g.r, g.stride.h);
  const int64_t q = out_size(g.w, g.pad.w, g.dil.w, g.s, g.stride.w);
  const int64_t cg = g.c / g.groups, kg = g.k / g.groups;
  std::vector<double> y(static_cast<size_t>(g.n * g.k * p * q));
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t k = 0; k < g.k; ++k)
      for (int64_t i = 0; i < p; ++i)
        for (int64_t j = 0; j < q; ++j) {
          double acc = g.bias ? b[k] : 0.0;
          const int64_t grp = k / kg;
          for (int64_t cc = 0; cc < cg; ++cc)
            for (int64_t u = 0; u < g.r; ++u)
              for (int64_t v = 0; v < g.s; ++v) {
                const int64_t yy = i * g.stride.h - g.pad.h + u * g.dil.h;
                const int64_t xx = j * g.stride.w - g.pad.w + v * g.dil.w;
                if (yy < 0 || yy >= g.h || xx < 0 || xx >= g.w) continue;
                const int64_t c = grp * cg + cc;
                acc += w[((k * cg + cc) * g.r + u) * g.s + v] *
                       x[((n * g.c + c) * g.h + yy) * g.w + xx];
              }
          y[((n * g.k + k) * p + i) * q + j] = acc;
        }
  return y;
}

struct PoolCfg {
  int64_t n, c, h, w;
  Size2 kernel, stride, pad;
  bool include_pad = true;
};

std::ostream& operator<<(std::ostream& os, const PoolCfg& g) {
  return os << "n" << g.n << " c" << g.c << " " << g.h << "x" << g.w << " kernel" << g.kernel
            << " stride" << g.stride << " pad" << g.pad;
}

enum class PoolKind { Max, Avg };

std::vector<double> ref_pool(const std::vector<double>& x, const PoolCfg& g, PoolKind kind) {
  const int64_t oh = (g.h + 2 * g.pad.h - g.kernel.h) / g.stride.h + 1;
  const int64_t ow = (g.w + 2 * g.pad.w - g.kernel.w) / g.stride.w + 1;
  std::vector<double> y;
  for (int64_t plane = 0; plane < g.n * g.c; ++plane)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        double best = -INFINITY, sum = 0.0;
        int64_t count = 0;
        for (int64_t u = 0; u < g.kernel.h; ++u)
          for (int64_t v = 0; v < g.kernel.w; ++v) {
            const int64_t yy = i * g.stride.h - g.pad.h + u, xx = j * g.stride.w - g.pad.w + v;
            if (yy < 0 || yy >= g.h || xx < 0 || xx >= g.w) continue;
            const double val = x[(plane * g.h + yy) * g.w + xx];
            best = std::max(best, val);
            sum += val;
            ++count;
          }
        const double div = g.include_pad ? static_cast<double>(g.kernel.h * g.kernel.w)
                                         : static_cast<double>(count);
        y.push_back(kind == PoolKind::Max ? best : sum / div);
      }
  return y;
}

std::vector<double> ref_adaptive(const std::vector<double>& x, int64_t planes, int64_t h, int64_t w,
                                 int64_t oh, int64_t ow) {
  std::vector<double> y;
  for (int64_t plane = 0; plane < planes; ++plane)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        const int64_t r0 = static_cast<int64_t>(std::floor(static_cast<double>(i * h) / oh));
        const int64_t r1 = static_cast<int64_t>(std::ceil(static_cast<double>((i + 1) * h) / oh));
        const int64_t c0 = static_cast<int64_t>(std::floor(static_cast<double>(j * w) / ow));
        const int64_t c1 = static_cast<int64_t>(std::ceil(static_cast<double>((j + 1) * w) / ow));
        double sum = 0.0;
        for (int64_t u = r0; u < r1; ++u)
          for (int64_t v = c0; v < c1; ++v) sum += x[(plane * h + u) * w + v];
        y.push_back(sum / static_cast<double>((r1 - r0) * (c1 - c0)));
      }
  return y;
}

// Per-channel statistics over [n, c, m]: y, batch mean and biased variance.
struct BnRef {
  std::vector<double> y, mean, var;
};
BnRef ref_batch_norm(const std::vector<double>& x, const std::vector<double>& gamma,
                     const std::vector<double>& beta, int64_t n, int64_t c, int64_t m, double eps) {
  BnRef r{std::vector<double>(x.size()), std::vector<double>(c), std::vector<double>(c)};
  for (int64_t ch = 0; ch < c; ++ch) {
    double s = 0.0;
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < m; ++i) s += x[(b * c + ch) * m + i];
    const double mean = s / static_cast<double>(n * m);
    double sq = 0.0;
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < m; ++i) sq += std::pow(x[(b * c + ch) * m + i] - mean, 2);
    const double var = sq / static_cast<double>(n * m);
    r.mean[ch] = mean;
    r.var[ch] = var;
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < m; ++i) {
        const size_t at = static_cast<size_t>((b * c + ch) * m + i);
        r.y[at] = (x[at] - mean) / std::sqrt(var + eps) * gamma[ch] + beta[ch];
      }
  }
  return r;
}

// float32 sums of up to a few hundred products: looser than the elementwise default.
tt::Tol sum_tol(DType dt) { return tt::scaled(tt::default_tol(dt), dt == kFloat32 ? 20.0 : 10.0); }

std::vector<ConvCfg> conv_configs() {
  return {
      {2, 3, 7, 6, 4, 3, 2},
      {1, 2, 8, 8, 3, 3, 3, Size2(2), Size2(1)},
      {3, 4, 9, 7, 6, 3, 2, {1, 2}, {2, 1}, {2, 1}, 2, false},
      {1, 6, 5, 5, 6, 3, 3, 1, 1, 1, 6},  // depthwise
      {2, 5, 6, 11, 7, 1, 1},             // 1x1
      {1, 1, 1, 1, 2, 1, 1},              // one pixel
      {2, 3, 4, 4, 2, 4, 4},              // kernel = whole image
      {2, 8, 10, 10, 16, 3, 3, Size2(2), Size2(1), Size2(1), 4},
      {1, 3, 13, 12, 5, 5, 5, 3, 2, 1, 1, false},
  };
}

// ---- conv2d ------------------------------------------------------------------------------

TEST(Conv2d, ForwardMatchesNaiveReferenceOnRandomShapes) {
  for (DType dt : tt::float_dtypes()) {
    for (const ConvCfg& g : conv_configs()) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " " << g);
      const Tensor x = tt::random_tensor({g.n, g.c, g.h, g.w}, dt);
      const Tensor w = tt::random_tensor({g.k, g.c / g.groups, g.r, g.s}, dt);
      const Tensor b = g.bias ? tt::random_tensor({g.k}, dt) : Tensor();
      const Tensor y = conv2d(x, w, b, g.stride, g.pad, g.dil, g.groups);
      const int64_t p = out_size(g.h, g.pad.h, g.dil.h, g.r, g.stride.h);
      const int64_t q = out_size(g.w, g.pad.w, g.dil.w, g.s, g.stride.w);
      ASSERT_EQ(y.sizes(), (Shape{g.n, g.k, p, q}));
      const auto ref = ref_conv(tt::to_doubles(x), tt::to_doubles(w),
                                g.bias ? tt::to_doubles(b) : std::vector<double>(), g);
      EXPECT_TRUE(tt::values_close(tt::to_doubles(y), y.sizes(), ref, y.sizes(), sum_tol(dt)));
    }
  }
}

TEST(Conv2d, ChwInputIsABatchOfOne) {
  const Tensor x = tt::random_tensor({3, 6, 5}, kFloat64);
  const Tensor w = tt::random_tensor({2, 3, 3, 3}, kFloat64);
  const Tensor y = conv2d(x, w, Tensor(), 1, 1);
  ASSERT_EQ(y.sizes(), (Shape{2, 6, 5}));
  tt::expect_close(y, conv2d(x.unsqueeze(0), w, Tensor(), 1, 1).squeeze(0), tt::exact());
}

// The naive adjoints of ref_conv: each product x * w of the forward sends
// go * w to grad_x and go * x to grad_w.
struct ConvGradsRef {
  std::vector<double> x, w;
};
ConvGradsRef ref_conv_grads(const std::vector<double>& x, const std::vector<double>& w,
                            const std::vector<double>& go, const ConvCfg& g) {
  const int64_t p = out_size(g.h, g.pad.h, g.dil.h, g.r, g.stride.h);
  const int64_t q = out_size(g.w, g.pad.w, g.dil.w, g.s, g.stride.w);
  const int64_t cg = g.c / g.groups, kg = g.k / g.groups;
  ConvGradsRef out{std::vector<double>(x.size(), 0.0), std::vector<double>(w.size(), 0.0)};
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t k = 0; k < g.k; ++k)
      for (int64_t i = 0; i < p; ++i)
        for (int64_t j = 0; j < q; ++j) {
          const double gy = go[((n * g.k + k) * p + i) * q + j];
          for (int64_t cc = 0; cc < cg; ++cc)
            for (int64_t u = 0; u < g.r; ++u)
              for (int64_t v = 0; v < g.s; ++v) {
                const int64_t yy = i * g.stride.h - g.pad.h + u * g.dil.h;
                const int64_t xx = j * g.stride.w - g.pad.w + v * g.dil.w;
                if (yy < 0 || yy >= g.h || xx < 0 || xx >= g.w) continue;
                const int64_t xi = ((n * g.c + (k / kg) * cg + cc) * g.h + yy) * g.w + xx;
                const int64_t wi = ((k * cg + cc) * g.r + u) * g.s + v;
                out.x[xi] += gy * w[wi];
                out.w[wi] += gy * x[xi];
              }
        }
  return out;
}

TEST(Conv2d, LargeBatchSpansSeveralIm2colChunksAndMatchesPerSample) {
  // The im2col path (float64, and float32 under TANDEM_CPU_ONEDNN=0: the ctest
  // variant Conv2d.WithoutOneDnn) unfolds at most 64 MiB of columns at a time
  // (kColBudget, cpu/conv.cpp). A sample here unfolds to 16*3*3 x 32*32 values,
  // 1.1 MiB in float64, so 130 samples run in chunks of 56, 56 and 18 (float32:
  // 113 and 17), and grad_w accumulates across the chunks. Forward and all
  // gradients against the naive loops; a few samples alone give the same rows.
  const ConvCfg g{130, 16, 32, 32, 2, 3, 3, Size2(1), Size2(1)};
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(dtype_name(dt));
    const Tensor x = tt::random_tensor({g.n, g.c, g.h, g.w}, dt).set_requires_grad(true);
    const Tensor w = tt::random_tensor({g.k, g.c, g.r, g.s}, dt).set_requires_grad(true);
    const Tensor b = tt::random_tensor({g.k}, dt).set_requires_grad(true);
    const Tensor y = conv2d(x, w, b, g.stride, g.pad);
    ASSERT_EQ(y.sizes(), (Shape{g.n, g.k, g.h, g.w}));
    const Tensor go = tt::random_tensor(y.sizes(), dt);
    y.backward(go);
    const auto xv = tt::to_doubles(x.detach()), wv = tt::to_doubles(w.detach()),
               gov = tt::to_doubles(go);
    EXPECT_TRUE(tt::values_close(tt::to_doubles(y), y.sizes(),
                                 ref_conv(xv, wv, tt::to_doubles(b.detach()), g), y.sizes(),
                                 sum_tol(dt)));
    const ConvGradsRef ref = ref_conv_grads(xv, wv, gov, g);
    EXPECT_TRUE(
        tt::values_close(tt::to_doubles(x.grad()), x.sizes(), ref.x, x.sizes(), sum_tol(dt)));
    // grad_w sums 130 x 32 x 32 products: float32 keeps ~1e-5 of it.
    const tt::Tol wtol = dt == kFloat32 ? tt::Tol{1e-4, 1e-3} : sum_tol(dt);
    EXPECT_TRUE(tt::values_close(tt::to_doubles(w.grad()), w.sizes(), ref.w, w.sizes(), wtol));
    std::vector<double> gb(static_cast<size_t>(g.k), 0.0);
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t k = 0; k < g.k; ++k)
        for (int64_t i = 0; i < g.h * g.w; ++i) gb[k] += gov[(n * g.k + k) * g.h * g.w + i];
    tt::expect_close(b.grad(), tt::Ref{{g.k}, gb}, wtol);
    for (int64_t i : {0, 56, 129}) {  // the first sample of the first, second and last chunks
      NoGradGuard no_grad;
      const Tensor yi = conv2d(x.detach().slice(0, i, i + 1), w.detach(), b.detach(), 1, 1);
      tt::expect_close(y.detach().slice(0, i, i + 1), yi, sum_tol(dt));
    }
  }
}

TEST(Conv2d, BackwardMatchesNaiveAdjoint) {
  // <conv(x), g> is linear in x and in w: its gradients equal the naive
  // reference applied to unit vectors, checked here through random projections.
  const ConvCfg g{2, 4, 7, 6, 6, 3, 2, {2, 1}, {1, 1}, {1, 2}, 2, true};
  const Tensor x = tt::random_tensor({g.n, g.c, g.h, g.w}, kFloat64).set_requires_grad(true);
  const Tensor w =
      tt::random_tensor({g.k, g.c / g.groups, g.r, g.s}, kFloat64).set_requires_grad(true);
  const Tensor b = tt::random_tensor({g.k}, kFloat64).set_requires_grad(true);
  const Tensor y = conv2d(x, w, b, g.stride, g.pad, g.dil, g.groups);
  const Tensor go = tt::random_tensor(y.sizes(), kFloat64);
  (y * go).sum().backward();
  // d<conv(x), go>/dx . dx = <conv_nobias(dx), go> for a random direction dx.
  ConvCfg nb = g;
  nb.bias = false;
  const auto gov = tt::to_doubles(go);
  auto dot = [](const std::vector<double>& a, const std::vector<double>& c) {
    double s = 0.0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * c[i];
    return s;
  };
  for (int trial = 0; trial < 3; ++trial) {
    const auto dx = tt::to_doubles(tt::random_tensor(x.sizes(), kFloat64));
    const auto dw = tt::to_doubles(tt::random_tensor(w.sizes(), kFloat64));
    const double want_x = dot(ref_conv(dx, tt::to_doubles(w), {}, nb), gov);
    const double want_w = dot(ref_conv(tt::to_doubles(x), dw, {}, nb), gov);
    EXPECT_NEAR(dot(tt::to_doubles(x.grad()), dx), want_x, 1e-9 * (1 + std::fabs(want_x)));
    EXPECT_NEAR(dot(tt::to_doubles(w.grad()), dw), want_w, 1e-9 * (1 + std::fabs(want_w)));
  }
  // The bias gradient is go summed over n, p, q.
  const auto gb = tt::to_doubles(b.grad());
  const int64_t pq = y.size(2) * y.size(3);
  for (int64_t k = 0; k < g.k; ++k) {
    double s = 0.0;
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t i = 0; i < pq; ++i) s += gov[(n * g.k + k) * pq + i];
    EXPECT_NEAR(gb[k], s, 1e-12 * (1 + std::fabs(s)));
  }
}

TEST(Conv2d, Float32BackwardMatchesFloat64OnRandomShapes) {
  // float32 convolutions run through oneDNN, float64 ones through im2col +
  // GEMM (checked against the naive adjoint above): the two must agree on
  // every configuration (strides, padding, dilation, groups, 1x1, whole-image
  // kernels, odd sizes).
  for (const ConvCfg& g : conv_configs()) {
    SCOPED_TRACE(::testing::Message() << g);
    const Tensor x64 = tt::random_tensor({g.n, g.c, g.h, g.w}, kFloat64);
    const Tensor w64 = tt::random_tensor({g.k, g.c / g.groups, g.r, g.s}, kFloat64);
    const Tensor b64 = g.bias ? tt::random_tensor({g.k}, kFloat64) : Tensor();
    const Tensor go64 =
        tt::random_tensor({g.n, g.k, out_size(g.h, g.pad.h, g.dil.h, g.r, g.stride.h),
                           out_size(g.w, g.pad.w, g.dil.w, g.s, g.stride.w)},
                          kFloat64);
    auto grads = [&](DType dt) {
      // Fresh leaves (to() of the same dtype would alias the shared inputs).
      auto leaf = [dt](const Tensor& t) { return t.to(dt).clone().set_requires_grad(true); };
      Tensor x = leaf(x64), w = leaf(w64), b = g.bias ? leaf(b64) : Tensor();
      Tensor y = conv2d(x, w, b, g.stride, g.pad, g.dil, g.groups);
      (y * go64.to(dt)).sum().backward();
      return std::vector<Tensor>{y, x.grad(), w.grad()};
    };
    const auto want = grads(kFloat64), got = grads(kFloat32);
    for (size_t i = 0; i < want.size(); ++i) {
      SCOPED_TRACE(i == 0 ? "y" : i == 1 ? "grad x" : "grad w");
      EXPECT_TRUE(tt::values_close(tt::to_doubles(got[i]), got[i].sizes(), tt::to_doubles(want[i]),
                                   want[i].sizes(), sum_tol(kFloat32)));
    }
  }
}

TEST(Conv2d, ArgumentErrorsNameTheProblem) {
  const Tensor x = tt::random_tensor({2, 3, 8, 8}, kFloat32);
  const Tensor w = tt::random_tensor({4, 3, 3, 3}, kFloat32);
  tt::expect_error(
      [&] {
        conv2d(x, tt::random_tensor({4, 2, 3, 3}, kFloat32));
      },
      {"conv2d", "3 channels", "expects 2"});
  tt::expect_error([&] { conv2d(x, w, Tensor(), 0); }, {"conv2d", "stride must be >= 1"});
  tt::expect_error([&] { conv2d(x, w, Tensor(), 1, -1); }, {"conv2d", "padding must be >= 0"});
  tt::expect_error([&] { conv2d(x, w, Tensor(), 1, 0, 0); }, {"conv2d", "dilation must be >= 1"});
  tt::expect_error([&] { conv2d(x, w, Tensor(), 1, 0, 1, 2); }, {"conv2d", "groups"});
  tt::expect_error(
      [&] {
        conv2d(x, tt::random_tensor({4, 1, 3, 3}, kFloat32), Tensor(), 1, 0, 1, 3);
      },
      {"conv2d", "out_channels 4 is not divisible by groups 3"});
  tt::expect_error(
      [&] {
        conv2d(x, tt::random_tensor({4, 3, 9, 9}, kFloat32));
      },
      {"conv2d", "smaller than the (dilated) kernel"});
  tt::expect_error([&] { conv2d(x, w, tt::random_tensor({5}, kFloat32)); },
                   {"conv2d", "bias [5]", "out_channels 4"});
  tt::expect_error(
      [&] { conv2d(x, w.to(kFloat64)); },
      {"conv2d: expected tensors of the same dtype", "float32[2, 3, 8, 8]", "float64[4, 3, 3, 3]"});
  tt::expect_error(
      [&] {
        conv2d(tt::random_tensor({3, 8}, kFloat32), w);
      },
      {"conv2d", "[N, C, H, W]", "[3, 8]"});
  tt::expect_error(
      [&] {
        conv2d(x, tt::random_tensor({4, 3, 3}, kFloat32));
      },
      {"conv2d", "weight must be 4-D"});
  tt::expect_error(
      [&] {
        conv2d(tt::random_tensor({2, 3, 8, 8}, kInt32), w);
      },
      "conv2d: dtype int32 is not supported (expected float32 or float64)");
}

// The batch split of the cuDNN path (issue 18 item 6): no chunk's input or
// output may exceed cuDNN's 2^31 - 1 elements.
TEST(Conv2d, CudnnBatchChunksKeepEveryTensorUnderTheLimit) {
  ConvShape s{};
  s.n = 7, s.c = 10, s.h = 10, s.w = 10, s.k = 5, s.r = 3, s.s = 3, s.p = 10, s.q = 10;
  s.stride_h = s.stride_w = s.pad_h = s.pad_w = s.dil_h = s.dil_w = s.groups = 1;
  EXPECT_EQ(conv::batch_chunk(s), 7);        // the whole batch fits
  EXPECT_EQ(conv::batch_chunk(s, 4500), 4);  // x: 1000 per sample
  s.k = 30;                                  // y: 3000 per sample, larger than x
  EXPECT_EQ(conv::batch_chunk(s, 4500), 1);
  EXPECT_EQ(conv::batch_chunk(s, 2999), 0);                  // one sample is too large
  s.n = 33, s.c = 1, s.h = s.w = s.p = s.q = 8192, s.k = 1;  // 2.2e9 elements
  const int64_t chunk = conv::batch_chunk(s);
  EXPECT_EQ(chunk, 31);
  EXPECT_LE(chunk * s.c * s.h * s.w, conv::kMaxCudnnElements);
  EXPECT_GT((chunk + 1) * s.c * s.h * s.w, conv::kMaxCudnnElements);
}

TEST(Conv2d, EmptyBatchGivesEmptyOutput) {
  const Tensor y = conv2d(tt::random_tensor({0, 3, 8, 8}, kFloat32),
                          tt::random_tensor({4, 3, 3, 3}, kFloat32), Tensor(), 1, 1);
  EXPECT_EQ(y.sizes(), (Shape{0, 4, 8, 8}));
}

// ---- pooling -----------------------------------------------------------------------------

std::vector<PoolCfg> pool_configs() {
  return {
      {2, 3, 8, 8, 2, 2, 0},        {1, 2, 7, 9, 3, 2, 1}, {3, 1, 5, 6, {2, 3}, {1, 2}, {1, 0}},
      {2, 4, 7, 7, 3, 3, 1, false}, {1, 1, 1, 1, 1, 1, 0}, {2, 2, 6, 5, {6, 5}, 1, 0},  // global
  };
}

TEST(Pool2d, MaxAndAvgMatchNaiveReference) {
  for (DType dt : tt::float_dtypes()) {
    for (const PoolCfg& g : pool_configs()) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " " << g);
      const Tensor x = tt::random_tensor({g.n, g.c, g.h, g.w}, dt);
      const auto xv = tt::to_doubles(x);
      const Tensor ymax = max_pool2d(x, g.kernel, g.stride, g.pad);
      EXPECT_TRUE(tt::values_close(tt::to_doubles(ymax), ymax.sizes(),
                                   ref_pool(xv, g, PoolKind::Max), ymax.sizes(), tt::exact()));
      const Tensor yavg = avg_pool2d(x, g.kernel, g.stride, g.pad, g.include_pad);
      EXPECT_TRUE(tt::values_close(tt::to_doubles(yavg), yavg.sizes(),
                                   ref_pool(xv, g, PoolKind::Avg), yavg.sizes(), sum_tol(dt)));
    }
  }
}

TEST(Pool2d, StrideDefaultsToKernel) {
  const Tensor x = tt::random_tensor({1, 2, 8, 6}, kFloat32);
  EXPECT_EQ(max_pool2d(x, 2).sizes(), (Shape{1, 2, 4, 3}));
  EXPECT_EQ(avg_pool2d(x, {4, 3}).sizes(), (Shape{1, 2, 2, 2}));
  EXPECT_EQ(max_pool2d(x.squeeze(0), 2).sizes(), (Shape{2, 4, 3}));
}

TEST(Pool2d, AdaptiveAvgMatchesReferenceIncludingGlobal) {
  for (DType dt : tt::float_dtypes()) {
    for (auto dims : std::vector<std::array<int64_t, 4>>{
             {7, 5, 3, 2}, {8, 8, 1, 1}, {5, 7, 5, 7}, {4, 6, 6, 4}, {3, 3, 2, 2}}) {
      const int64_t h = dims[0], w = dims[1], oh = dims[2], ow = dims[3];
      SCOPED_TRACE(::testing::Message()
                   << dtype_name(dt) << " " << h << "x" << w << " -> " << oh << "x" << ow);
      const Tensor x = tt::random_tensor({2, 3, h, w}, dt);
      const Tensor y = adaptive_avg_pool2d(x, {oh, ow});
      ASSERT_EQ(y.sizes(), (Shape{2, 3, oh, ow}));
      EXPECT_TRUE(tt::values_close(tt::to_doubles(y), y.sizes(),
                                   ref_adaptive(tt::to_doubles(x), 6, h, w, oh, ow), y.sizes(),
                                   sum_tol(dt)));
    }
  }
  // Global pooling is the mean over the plane.
  const Tensor x = tt::random_tensor({2, 3, 5, 4}, kFloat64);
  tt::expect_close(adaptive_avg_pool2d(x, 1).view({2, 3}), mean(x.view({2, 3, 20}), 2));
}

TEST(Pool2d, MaxPoolTiesRouteTheGradientToTheFirstMaximum) {
  // Every window of a constant image is one big tie: the first element (row-major) wins.
  const Tensor x = full({1, 1, 4, 4}, 1.5, kFloat64).set_requires_grad(true);
  const Tensor y = max_pool2d(x, 2);
  y.sum().backward();
  std::vector<double> want(16, 0.0);
  for (int64_t i : {0, 2, 8, 10}) want[i] = 1.0;
  EXPECT_EQ(tt::to_doubles(x.grad()), want);
  // Overlapping windows accumulate at a shared maximum.
  const Tensor z =
      tt::make_tensor({0, 0, 0, 0, 9, 0, 0, 0, 0}, {1, 1, 3, 3}, kFloat64).set_requires_grad(true);
  max_pool2d(z, 2, Size2(1)).sum().backward();
  EXPECT_DOUBLE_EQ(tt::to_doubles(z.grad())[4], 4.0);
}

TEST(Pool2d, TwoByTwoMaxPoolPicksTheFirstMaximumOrNaNOnRandomTiesAndNaNs) {
  // The 2x2 stride-2 fast path against a naive scan: values from a few
  // integers (many ties), NaNs and -infs sprinkled in; odd plane sizes (the
  // last row and column are not covered by any window).
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> pick(0, 9);
  const int64_t n = 3, c = 2, h = 9, w = 19, oh = h / 2, ow = w / 2;
  std::vector<double> v(n * c * h * w);
  for (double& e : v) {
    const int r = pick(rng);
    e = r == 0   ? std::numeric_limits<double>::quiet_NaN()
        : r == 1 ? -std::numeric_limits<double>::infinity()
                 : static_cast<double>(r % 3);
  }
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(dtype_name(dt));
    const Tensor x = tt::make_tensor(v, {n, c, h, w}, dt).set_requires_grad(true);
    const Tensor y = max_pool2d(x, 2);
    ASSERT_EQ(y.sizes(), (Shape{n, c, oh, ow}));
    y.sum().backward();
    const auto got = tt::to_doubles(y), grad = tt::to_doubles(x.grad());
    std::vector<double> want_grad(v.size(), 0.0);
    for (int64_t p = 0; p < n * c; ++p) {
      for (int64_t i = 0; i < oh; ++i) {
        for (int64_t j = 0; j < ow; ++j) {
          int64_t best = -1;
          for (int64_t u = 2 * i; u < 2 * i + 2 && !(best >= 0 && std::isnan(v[best])); ++u) {
            for (int64_t t = 2 * j; t < 2 * j + 2; ++t) {
              const int64_t at = (p * h + u) * w + t;
              if (best < 0 || std::isnan(v[at]) || v[at] > v[best]) best = at;
              if (std::isnan(v[best])) break;
            }
          }
          const double out = got[(p * oh + i) * ow + j];
          if (std::isnan(v[best])) {
            EXPECT_TRUE(std::isnan(out)) << p << " " << i << " " << j;
          } else {
            EXPECT_EQ(out, v[best]) << p << " " << i << " " << j;
          }
          want_grad[best] += 1.0;
        }
      }
    }
    EXPECT_EQ(grad, want_grad);
  }
}

TEST(Pool2d, MaxPoolPropagatesNaN) {
  std::vector<double> v(16, 0.0);
  v[5] = std::numeric_limits<double>::quiet_NaN();
  const Tensor y = max_pool2d(tt::make_tensor(v, {1, 1, 4, 4}, kFloat32), 2);
  const auto out = tt::to_doubles(y);
  EXPECT_TRUE(std::isnan(out[0]));
  EXPECT_EQ(out[1], 0.0);
}

TEST(Pool2d, ArgumentErrors) {
  const Tensor x = tt::random_tensor({1, 2, 4, 4}, kFloat32);
  tt::expect_error([&] { max_pool2d(x, 0); }, {"max_pool2d", "kernel_size must be >= 1"});
  tt::expect_error([&] { max_pool2d(x, 2, Size2(0)); }, {"max_pool2d", "stride"});
  tt::expect_error([&] { max_pool2d(x, 2, std::nullopt, 2); }, {"max_pool2d", "at most half"});
  tt::expect_error([&] { avg_pool2d(x, 5); }, {"avg_pool2d", "smaller than the kernel"});
  tt::expect_error(
      [&] {
        avg_pool2d(tt::random_tensor({4, 4}, kFloat32), 2);
      },
      {"avg_pool2d", "[N, C, H, W]"});
  tt::expect_error([&] { adaptive_avg_pool2d(x, 0); }, {"adaptive_avg_pool2d", "output_size"});
}

// An input of height or width 0 with 2 * padding == kernel would give windows
// made of padding only (no value to take the maximum or mean of, no index to
// route a gradient to): refused at the argument check on every device, as
// PyTorch refuses an empty plane. Empty batches and zero channels stay allowed.
void expect_empty_plane_refused(const Device& dev) {
  for (const Shape& shape : std::vector<Shape>{{1, 2, 0, 3}, {2, 1, 3, 0}, {1, 0, 0}}) {
    SCOPED_TRACE(shape_str(shape));
    const Tensor x = zeros(shape, TensorOptions(kFloat32).device(dev)).set_requires_grad(true);
    const std::string s = shape_str(shape);
    tt::expect_error([&] { max_pool2d(x, 2, std::nullopt, 1); },
                     {"max_pool2d", s.c_str(), "has an empty plane"});
    tt::expect_error([&] { avg_pool2d(x, 2, Size2(1), 1); },
                     {"avg_pool2d", s.c_str(), "has an empty plane"});
    tt::expect_error([&] { adaptive_avg_pool2d(x, 1); },
                     {"adaptive_avg_pool2d", s.c_str(), "has an empty plane"});
  }
  const Tensor no_channels = zeros({2, 0, 4, 4}, TensorOptions(kFloat32).device(dev));
  EXPECT_EQ(max_pool2d(no_channels, 2).sizes(), (Shape{2, 0, 2, 2}));
  EXPECT_EQ(avg_pool2d(no_channels, 2).sizes(), (Shape{2, 0, 2, 2}));
}

TEST(Pool2d, EmptyPlaneIsAnError) { expect_empty_plane_refused(Device(kCPU)); }

// ---- batch norm --------------------------------------------------------------------------

TEST(BatchNorm, TrainingMatchesReferenceAndUpdatesRunningStats) {
  for (DType dt : tt::float_dtypes()) {
    for (Shape shape : std::vector<Shape>{{8, 3}, {4, 5, 3, 2}, {2, 4, 7}, {1, 2, 3, 3}}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " " << shape_str(shape));
      const int64_t n = shape[0], c = shape[1], m = tt::numel_of(shape) / (n * c);
      const Tensor x = tt::random_tensor(shape, dt, -2.0, 3.0);
      const Tensor gamma = tt::random_tensor({c}, dt, 0.5, 1.5);
      const Tensor beta = tt::random_tensor({c}, dt);
      Tensor rm = tt::random_tensor({c}, dt), rv = tt::random_tensor({c}, dt, 0.5, 2.0);
      const auto rm0 = tt::to_doubles(rm), rv0 = tt::to_doubles(rv);
      const double momentum = 0.3, eps = 1e-4;
      const Tensor y = batch_norm(x, rm, rv, gamma, beta, true, momentum, eps);
      const BnRef ref = ref_batch_norm(tt::to_doubles(x), tt::to_doubles(gamma),
                                       tt::to_doubles(beta), n, c, m, eps);
      EXPECT_TRUE(tt::values_close(tt::to_doubles(y), y.sizes(), ref.y, y.sizes(), sum_tol(dt)));
      std::vector<double> want_m(c), want_v(c);
      for (int64_t ch = 0; ch < c; ++ch) {
        const double unbiased =
            ref.var[ch] * static_cast<double>(n * m) / static_cast<double>(n * m - 1);
        want_m[ch] = (1 - momentum) * rm0[ch] + momentum * ref.mean[ch];
        want_v[ch] = (1 - momentum) * rv0[ch] + momentum * unbiased;
      }
      EXPECT_TRUE(
          tt::values_close(tt::to_doubles(rm), rm.sizes(), want_m, rm.sizes(), sum_tol(dt)));
      EXPECT_TRUE(
          tt::values_close(tt::to_doubles(rv), rv.sizes(), want_v, rv.sizes(), sum_tol(dt)));
    }
  }
}

// Adjoint of the training forward over [n, c, m] (backend_decls.inc), in float64.
std::vector<double> ref_batch_norm_grad_x(const std::vector<double>& x,
                                          const std::vector<double>& gy,
                                          const std::vector<double>& gamma, const BnRef& f,
                                          int64_t n, int64_t c, int64_t m, double eps) {
  std::vector<double> gx(x.size());
  const double count = static_cast<double>(n * m);
  for (int64_t ch = 0; ch < c; ++ch) {
    const double invstd = 1.0 / std::sqrt(f.var[ch] + eps);
    double sum_gy = 0.0, sum_gy_xhat = 0.0;
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < m; ++i) {
        const size_t at = static_cast<size_t>((b * c + ch) * m + i);
        sum_gy += gy[at];
        sum_gy_xhat += gy[at] * (x[at] - f.mean[ch]) * invstd;
      }
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < m; ++i) {
        const size_t at = static_cast<size_t>((b * c + ch) * m + i);
        const double xhat = (x[at] - f.mean[ch]) * invstd;
        gx[at] = gamma[ch] * invstd / count * (count * gy[at] - sum_gy - xhat * sum_gy_xhat);
      }
  }
  return gx;
}

// Issue 18 item 5: the CUDA kernels once put channels on gridDim.y (limit
// 65535); 70000 features must work on both devices.
TEST(BatchNorm, SeventyThousandChannelsMatchReference) {
  const int64_t c = 70000;
  for (Shape shape : std::vector<Shape>{{3, c}, {2, c, 3}}) {
    SCOPED_TRACE(shape_str(shape));
    const int64_t n = shape[0], m = tt::numel_of(shape) / (n * c);
    const Tensor x = tt::random_tensor(shape, kFloat64, -2.0, 3.0).set_requires_grad(true);
    const Tensor gamma = tt::random_tensor({c}, kFloat64, 0.5, 1.5).set_requires_grad(true);
    const Tensor beta = tt::random_tensor({c}, kFloat64).set_requires_grad(true);
    const double eps = 1e-5;
    const Tensor y = batch_norm(x, Tensor(), Tensor(), gamma, beta, true, 0.1, eps);
    const auto xv = tt::to_doubles(x), gv = tt::to_doubles(gamma);
    const BnRef ref = ref_batch_norm(xv, gv, tt::to_doubles(beta), n, c, m, eps);
    EXPECT_TRUE(
        tt::values_close(tt::to_doubles(y), y.sizes(), ref.y, y.sizes(), sum_tol(kFloat64)));
    const Tensor gy = tt::random_tensor(shape, kFloat64);
    y.backward(gy);
    const auto want_gx = ref_batch_norm_grad_x(xv, tt::to_doubles(gy), gv, ref, n, c, m, eps);
    EXPECT_TRUE(tt::values_close(tt::to_doubles(x.grad()), x.grad().sizes(), want_gx, shape,
                                 sum_tol(kFloat64)));
  }
}

// float32 values 1000 + 0.01 * randn: |mean| / std = 1e5, so the mean rounded
// to float32 (off by up to 3e-5, half an ulp at 1000) would shift every
// normalised value by up to 3e-3. Shape [64, 1] (BatchNorm1d, one channel).
Tensor far_from_zero_batch() {
  std::normal_distribution<double> normal;
  std::vector<double> v(64);
  for (double& e : v) e = 1000.0 + 0.01 * normal(tt::rng());
  return tt::make_tensor(tt::round_to_float(v), {64, 1}, kFloat32);
}

// The statistics are double on both devices and the normalisation uses the
// double mean (the kernel header's DIFFERENCE FROM THE CPU: none), so a
// channel whose mean is far from zero relative to its spread normalises as
// the float64 reference does; forward and backward.
TEST(BatchNorm, LargeMeanSmallSpreadMatchesFloat64Reference) {
  const Tensor x = far_from_zero_batch().set_requires_grad(true);
  const Tensor gamma = tt::random_tensor({1}, kFloat32, 0.5, 1.5).set_requires_grad(true);
  const Tensor beta = tt::random_tensor({1}, kFloat32).set_requires_grad(true);
  const double eps = 1e-5;
  const Tensor y = batch_norm(x, Tensor(), Tensor(), gamma, beta, true, 0.1, eps);
  const auto xv = tt::to_doubles(x), gv = tt::to_doubles(gamma);
  const BnRef ref = ref_batch_norm(xv, gv, tt::to_doubles(beta), 64, 1, 1, eps);
  EXPECT_TRUE(
      tt::values_close(tt::to_doubles(y), y.sizes(), ref.y, y.sizes(), tt::default_tol(kFloat32)));
  const Tensor gy = tt::random_tensor({64, 1}, kFloat32);
  y.backward(gy);
  const auto gyv = tt::to_doubles(gy);
  const auto want_gx = ref_batch_norm_grad_x(xv, gyv, gv, ref, 64, 1, 1, eps);
  double want_gw = 0.0;
  for (size_t i = 0; i < xv.size(); ++i)
    want_gw += gyv[i] * (xv[i] - ref.mean[0]) / std::sqrt(ref.var[0] + eps);
  // grad_x is about gamma / std = 100 times gy: relative tolerance.
  EXPECT_TRUE(tt::values_close(tt::to_doubles(x.grad()), x.grad().sizes(), want_gx, {64, 1},
                               tt::with_atol(tt::default_tol(kFloat32), 1e-4)));
  EXPECT_TRUE(tt::values_close(tt::to_doubles(gamma.grad()), {1}, {want_gw}, {1},
                               tt::default_tol(kFloat32)));
}

TEST(BatchNorm, InputOverlappingTheRunningStatisticsIsReadFirst) {
  // Issue 18.4: running_mean and running_var are views of the input shifted by
  // one element (running_mean[k] is input[0][k + 1]), so updating channel k's
  // statistics overwrites input that channel k + 1 has yet to read. The result
  // must be that of the same call on copies.
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    const int64_t n = 7, c = 5;
    Tensor x = tt::random_tensor({n, c}, dt, 0.5, 2.0);
    Tensor xc = x.clone();
    Tensor rm = x.view({-1}).slice(0, 1, c + 1), rv = x.view({-1}).slice(0, c + 1, 2 * c + 1);
    Tensor rmc = rm.clone(), rvc = rv.clone();
    const Tensor w = tt::random_tensor({c}, dt, 0.5, 1.5), b = tt::random_tensor({c}, dt);
    const Tensor y = tandem::batch_norm(x, rm, rv, w, b, /*training=*/true, 0.3);
    const Tensor yc = tandem::batch_norm(xc, rmc, rvc, w, b, /*training=*/true, 0.3);
    tt::expect_close(y, yc, tt::exact());
    tt::expect_close(rm, rmc, tt::exact());
    tt::expect_close(rv, rvc, tt::exact());
  }
}

TEST(BatchNorm, EvalUsesRunningStatistics) {
  const Tensor x = tt::random_tensor({3, 2, 2, 2}, kFloat64);
  const Tensor rm = tt::random_tensor({2}, kFloat64), rv = tt::random_tensor({2}, kFloat64, 0.5, 2);
  const Tensor w = tt::random_tensor({2}, kFloat64), b = tt::random_tensor({2}, kFloat64);
  const Tensor y = batch_norm(x, rm, rv, w, b, false, 0.1, 1e-5);
  const auto xv = tt::to_doubles(x), m = tt::to_doubles(rm), v = tt::to_doubles(rv),
             wv = tt::to_doubles(w), bv = tt::to_doubles(b);
  std::vector<double> want(xv.size());
  for (size_t i = 0; i < xv.size(); ++i) {
    const size_t ch = (i / 4) % 2;
    want[i] = (xv[i] - m[ch]) / std::sqrt(v[ch] + 1e-5) * wv[ch] + bv[ch];
  }
  EXPECT_TRUE(
      tt::values_close(tt::to_doubles(y), y.sizes(), want, y.sizes(), tt::default_tol(kFloat64)));
}

TEST(BatchNorm, ArgumentErrors) {
  const Tensor x = tt::random_tensor({4, 3, 2, 2}, kFloat32);
  const Tensor c3 = tt::random_tensor({3}, kFloat32), c2 = tt::random_tensor({2}, kFloat32);
  tt::expect_error([&] { batch_norm(x, Tensor(), Tensor(), c2, Tensor(), true); },
                   {"batch_norm", "weight [2]", "3 channels"});
  tt::expect_error([&] { batch_norm(x, c3, Tensor(), c3, c3, true); }, {"batch_norm", "both"});
  tt::expect_error([&] { batch_norm(x, Tensor(), Tensor(), c3, c3, false); },
                   {"batch_norm", "eval mode needs running_mean"});
  tt::expect_error(
      [&] {
        batch_norm(tt::random_tensor({1, 3}, kFloat32), Tensor(), Tensor(), c3, c3, true);
      },
      {"batch_norm", "more than one value per channel"});
  tt::expect_error([&] { batch_norm(x, Tensor(), Tensor(), c3, c3, true, 1.5); },
                   {"batch_norm", "momentum"});
  tt::expect_error(
      [&] { batch_norm(tt::random_tensor({4}, kFloat32), Tensor(), Tensor(), c3, c3, true); },
      {"batch_norm", "[N, C]"});
}

// ---- modules -----------------------------------------------------------------------------

TEST(ConvModules, ShapesParametersAndPrinting) {
  nn::Conv2d conv(nn::Conv2dOptions(3, 8, 3).stride(2).padding(1));
  EXPECT_EQ(conv->weight.sizes(), (Shape{8, 3, 3, 3}));
  EXPECT_EQ(conv->bias.sizes(), (Shape{8}));
  EXPECT_EQ(conv->parameters().size(), 2u);
  EXPECT_EQ(conv->forward(tt::random_tensor({2, 3, 9, 9}, kFloat32)).sizes(), (Shape{2, 8, 5, 5}));
  // PyTorch's default init: |w| <= 1/sqrt(fan_in) (kaiming_uniform with a = sqrt(5)).
  const double bound = 1.0 / std::sqrt(27.0);
  for (double v : tt::to_doubles(conv->weight)) EXPECT_LE(std::fabs(v), bound + 1e-7);
  std::ostringstream os;
  conv->pretty_print(os);
  EXPECT_EQ(os.str(), "Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))");

  nn::Conv2d grouped(nn::Conv2dOptions(4, 6, {3, 1}).groups(2).bias(false));
  EXPECT_EQ(grouped->weight.sizes(), (Shape{6, 2, 3, 1}));
  EXPECT_FALSE(grouped->bias.defined());
  EXPECT_EQ(grouped->parameters().size(), 1u);

  nn::MaxPool2d mp(nn::MaxPool2dOptions(2));
  nn::AvgPool2d ap(nn::AvgPool2dOptions(3).stride(1).padding(1));
  nn::AdaptiveAvgPool2d gap(1);
  const Tensor x = tt::random_tensor({2, 4, 6, 6}, kFloat32);
  EXPECT_EQ(mp->forward(x).sizes(), (Shape{2, 4, 3, 3}));
  EXPECT_EQ(ap->forward(x).sizes(), (Shape{2, 4, 6, 6}));
  EXPECT_EQ(gap->forward(x).sizes(), (Shape{2, 4, 1, 1}));
}

TEST(ConvModules, BatchNormTracksRunningStatsAndSwitchesWithEval) {
  nn::BatchNorm2d bn(4);
  EXPECT_EQ(bn->parameters().size(), 2u);
  EXPECT_EQ(bn->buffers().size(), 3u);
  const Tensor x = tt::random_tensor({6, 4, 3, 3}, kFloat32, 1.0, 3.0);
  const Tensor y = bn->forward(x);
  // Training output: zero mean, unit variance per channel (weight 1, bias 0).
  const Tensor per_channel = y.permute({1, 0, 2, 3}).reshape({4, -1});
  for (double v : tt::to_doubles(mean(per_channel, 1))) EXPECT_NEAR(v, 0.0, 1e-5);
  for (double v : tt::to_doubles(var(per_channel, 1, false))) EXPECT_NEAR(v, 1.0, 1e-3);
  EXPECT_EQ(tt::to_doubles(bn->num_batches_tracked)[0], 1.0);
  // Running mean moved 10% of the way from 0 to the batch mean (~2).
  for (double v : tt::to_doubles(bn->running_mean)) EXPECT_NEAR(v, 0.2, 0.05);
  bn->eval();
  const Tensor ye = bn->forward(x);
  const Tensor want = batch_norm(x, bn->running_mean, bn->running_var, bn->weight, bn->bias, false);
  tt::expect_close(ye, want);
  EXPECT_EQ(tt::to_doubles(bn->num_batches_tracked)[0], 1.0);  // eval does not count

  // Without running statistics, eval normalises with the batch's own.
  nn::BatchNorm1d plain(nn::BatchNormOptions(3).affine(false).track_running_stats(false));
  EXPECT_EQ(plain->parameters().size(), 0u);
  EXPECT_EQ(plain->buffers().size(), 0u);
  plain->eval();
  const Tensor x1 = tt::random_tensor({5, 3}, kFloat64);
  tt::expect_close(plain->forward(x1),
                   batch_norm(x1, Tensor(), Tensor(), Tensor(), Tensor(), true));
  // The state dict carries the buffers, so a checkpoint restores eval behaviour.
  const auto sd = bn->state_dict();
  EXPECT_EQ(sd.size(), 5u);
}

TEST(ConvModules, ShapeErrorsNameTheLayerAndBothShapes) {
  nn::Conv2d conv(3, 8, 3);
  tt::expect_error(
      [&] {
        conv->forward(tt::random_tensor({2, 4, 8, 8}, kFloat32));
      },
      {"Conv2d(3, 8", "expected input with 3 channels", "[2, 4, 8, 8]"});
  tt::expect_error(
      [&] {
        conv->forward(tt::random_tensor({2, 3, 2, 2}, kFloat32));
      },
      {"Conv2d(3, 8", "smaller than"});
  nn::BatchNorm2d bn(8);
  tt::expect_error(
      [&] {
        bn->forward(tt::random_tensor({2, 6, 4, 4}, kFloat32));
      },
      {"BatchNorm2d(8", "C = 8", "[2, 6, 4, 4]"});
  tt::expect_error(
      [&] {
        bn->forward(tt::random_tensor({2, 8}, kFloat32));
      },
      {"BatchNorm2d(8", "[2, 8]"});
  nn::MaxPool2d mp(nn::MaxPool2dOptions(3));
  tt::expect_error(
      [&] {
        mp->forward(tt::random_tensor({1, 1, 2, 2}, kFloat32));
      },
      {"MaxPool2d(kernel_size=(3, 3)", "smaller than the kernel"});
  // A Linear after Flatten with the wrong in_features: the message says which
  // layer of the Sequential, what it expected and what it got.
  nn::Sequential net(nn::Conv2d(3, 6, 5), nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2)),
                     nn::Flatten(), nn::Linear(400, 10));
  tt::expect_error(
      [&] {
        net->forward(tt::random_tensor({2, 3, 32, 32}, kFloat32));
      },
      {"Sequential layer 4", "Linear(in_features=400", "[2, 1176]"});
  tt::expect_error([] { nn::Conv2d(nn::Conv2dOptions(3, 8, 3).groups(2)); },
                   {"Conv2d", "divisible by groups 2"});
  tt::expect_error([] { nn::BatchNorm2d(0); }, {"BatchNorm2d", "num_features"});
}

TEST(ConvModules, SequentialTakesASequentialAsItsFirstLayer) {
  nn::Sequential stem(nn::Conv2d(3, 4, 3), nn::ReLU());
  nn::Sequential net(stem, nn::Flatten(), nn::Linear(4 * 6 * 6, 2));
  EXPECT_EQ(net->size(), 3u);
  EXPECT_EQ(net->forward(tt::random_tensor({2, 3, 8, 8}, kFloat32)).sizes(), (Shape{2, 2}));
  nn::Sequential copy(net);  // one holder argument still copies the handle
  EXPECT_EQ(copy.get(), net.get());
}

// ---- whole nets --------------------------------------------------------------------------

// The classic CIFAR-10 tutorial LeNet.
nn::Sequential make_lenet() {
  return nn::Sequential(nn::Conv2d(3, 6, 5), nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2)),
                        nn::Conv2d(6, 16, 5), nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2)),
                        nn::Flatten(), nn::Linear(16 * 5 * 5, 120), nn::ReLU(), nn::Linear(120, 84),
                        nn::ReLU(), nn::Linear(84, 10));
}

// conv-bn-relu stem, one residual block with a projection shortcut, global pool, fc.
nn::Sequential make_resnet_block_net() {
  nn::Sequential body(nn::Conv2d(nn::Conv2dOptions(8, 16, 3).stride(2).padding(1).bias(false)),
                      nn::BatchNorm2d(16), nn::ReLU(),
                      nn::Conv2d(nn::Conv2dOptions(16, 16, 3).padding(1).bias(false)),
                      nn::BatchNorm2d(16));
  nn::Sequential shortcut(nn::Conv2d(nn::Conv2dOptions(8, 16, 1).stride(2).bias(false)),
                          nn::BatchNorm2d(16));
  return nn::Sequential(nn::Conv2d(nn::Conv2dOptions(3, 8, 3).padding(1).bias(false)),
                        nn::BatchNorm2d(8), nn::ReLU(), nn::Residual(body, shortcut), nn::ReLU(),
                        nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(16, 10));
}

void train_step_decreases_loss(nn::Sequential net, const Tensor& x, const Tensor& labels) {
  optim::SGD opt(net->parameters(), optim::SGDOptions(0.02).momentum(0.9));
  double first = 0.0, last = 0.0;
  for (int step = 0; step < 60; ++step) {
    opt.zero_grad();
    Tensor loss = cross_entropy(net->forward(x), labels);
    loss.backward();
    opt.step();
    const double v = tt::to_doubles(loss)[0];
    if (step == 0) first = v;
    last = v;
  }
  EXPECT_LT(last, first * 0.7) << "first " << first << " last " << last;
}

TEST(Nets, LeNetTrainsOnAFixedBatchOnTheCpu) {
  const Tensor x = tt::random_tensor({8, 3, 32, 32}, kFloat32);
  const Tensor labels = tt::random_tensor({8}, kInt64, 0, 9);
  nn::Sequential net = make_lenet();
  EXPECT_EQ(net->forward(x).sizes(), (Shape{8, 10}));
  train_step_decreases_loss(net, x, labels);
}

TEST(Nets, ResNetBlockNetTrainsOnAFixedBatchOnTheCpu) {
  const Tensor x = tt::random_tensor({8, 3, 16, 16}, kFloat32);
  const Tensor labels = tt::random_tensor({8}, kInt64, 0, 9);
  nn::Sequential net = make_resnet_block_net();
  EXPECT_EQ(net->forward(x).sizes(), (Shape{8, 10}));
  train_step_decreases_loss(net, x, labels);
}

// ||actual - ref|| / ||ref|| over the whole tensor, in float64: one number
// per tensor, so a few percent off in any part of it shows, where an absolute
// tolerance scaled for the largest values would let small entries drift.
double relative_error(const Tensor& actual, const Tensor& ref) {
  EXPECT_EQ(actual.sizes(), ref.sizes());
  const auto a = tt::to_doubles(actual), r = tt::to_doubles(ref);
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < std::min(a.size(), r.size()); ++i) {
    diff += (a[i] - r[i]) * (a[i] - r[i]);
    norm += r[i] * r[i];
  }
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

// The bound on relative_error between the devices: float32 sums a few
// thousand products per value in a different order on each (oneDNN and the
// GEMMs here, cuDNN's algorithms there); float64 the same at its precision.
double device_relative_bound(DType dt) { return dt == kFloat32 ? 1e-5 : 1e-11; }

// The same net, same weights, same batch on CPU and CUDA: output, loss, every
// parameter gradient and the BN running statistics agree, each tensor by
// relative norm.
void expect_net_matches_on_cuda(nn::Sequential cpu_net, nn::Sequential cuda_net, const Tensor& x,
                                const Tensor& labels, DType dt) {
  cpu_net->to(dt);
  cuda_net->to(dt);
  {
    NoGradGuard no_grad;
    const auto src = cpu_net->state_dict();
    auto dst = cuda_net->state_dict();
    for (size_t i = 0; i < src.size(); ++i) dst[i].second.copy_(src[i].second);
  }
  cuda_net->to(Device(kCUDA));
  const Tensor xc = x.to(dt);
  const Tensor out_cpu = cpu_net->forward(xc);
  const Tensor out_cuda = cuda_net->forward(xc.to(Device(kCUDA)));
  const double bound = device_relative_bound(dt);
  EXPECT_LE(relative_error(out_cuda, out_cpu), bound) << "output";
  const Tensor loss_cpu = cross_entropy(out_cpu, labels);
  const Tensor loss_cuda = cross_entropy(out_cuda, labels.to(Device(kCUDA)));
  EXPECT_LE(relative_error(loss_cuda, loss_cpu), bound) << "loss";
  loss_cpu.backward();
  loss_cuda.backward();
  const auto pc = cpu_net->named_parameters(), pg = cuda_net->named_parameters();
  ASSERT_EQ(pc.size(), pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    ASSERT_TRUE(pg[i].second.grad().defined()) << pc[i].first;
    EXPECT_LE(relative_error(pg[i].second.grad(), pc[i].second.grad()), bound)
        << "gradient of " << pc[i].first;
  }
  const auto bc = cpu_net->named_buffers(), bg = cuda_net->named_buffers();
  for (size_t i = 0; i < bc.size(); ++i) {
    EXPECT_LE(relative_error(bg[i].second, bc[i].second), bound) << bc[i].first;
  }
}

TEST(Nets, LeNetMatchesOnCuda) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const Tensor x = tt::random_tensor({4, 3, 32, 32}, kFloat32);
  const Tensor labels = tt::random_tensor({4}, kInt64, 0, 9);
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(dtype_name(dt));
    expect_net_matches_on_cuda(make_lenet(), make_lenet(), x, labels, dt);
  }
}

TEST(Nets, ResNetBlockNetMatchesOnCuda) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const Tensor x = tt::random_tensor({4, 3, 16, 16}, kFloat32);
  const Tensor labels = tt::random_tensor({4}, kInt64, 0, 9);
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(dtype_name(dt));
    expect_net_matches_on_cuda(make_resnet_block_net(), make_resnet_block_net(), x, labels, dt);
  }
}

// ---- CUDA against CPU: what a registry record cannot say ------------------------------------
// (conv2d, pooling and batch norm at odd and CIFAR sizes, forward and backward
// against the CPU: the registry's conv, pool and batch_norm records,
// test_registry.cpp.) Here: more than 65535 channels, cuDNN handles and
// plans, determinism modes, ties and NaN routing, chunked batches.

// Issue 18 item 5: channels on the grid's x axis (once gridDim.y, which
// failed above 65535 channels); forward, running statistics and backward.
TEST(ConvCuda, BatchNormWithSeventyThousandChannelsMatchesCpu) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const Device gpu(kCUDA);
  const int64_t c = 70000;
  for (DType dt : tt::float_dtypes()) {
    for (Shape shape : std::vector<Shape>{{5, c}, {2, c, 3}}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " " << shape_str(shape));
      const Tensor x = tt::random_tensor(shape, dt, -2.0, 3.0).set_requires_grad(true);
      const Tensor w = tt::random_tensor({c}, dt, 0.5, 1.5).set_requires_grad(true);
      const Tensor b = tt::random_tensor({c}, dt).set_requires_grad(true);
      const Tensor xg = x.detach().to(gpu).set_requires_grad(true);
      const Tensor wg = w.detach().to(gpu).set_requires_grad(true);
      const Tensor bg = b.detach().to(gpu).set_requires_grad(true);
      Tensor rm = tt::random_tensor({c}, dt), rv = tt::random_tensor({c}, dt, 0.5, 2.0);
      Tensor rmg = rm.to(gpu), rvg = rv.to(gpu);
      const Tensor y = batch_norm(x, rm, rv, w, b, true, 0.1, 1e-5);
      const Tensor yg = batch_norm(xg, rmg, rvg, wg, bg, true, 0.1, 1e-5);
      const tt::Tol tol = sum_tol(dt);
      tt::expect_close(yg, y, tol);
      tt::expect_close(rmg, rm, tol);
      tt::expect_close(rvg, rv, tol);
      const Tensor go = tt::random_tensor(shape, dt);
      y.backward(go);
      yg.backward(go.to(gpu));
      tt::expect_close(xg.grad(), x.grad(), tol);
      tt::expect_close(wg.grad(), w.grad(), tol);
      tt::expect_close(bg.grad(), b.grad(), tol);
    }
  }
}

// cuDNN handles are per thread, pooled when a thread exits and destroyed by
// empty_cache: convolutions in threads before and after (reusing a pooled
// handle, then creating a new one) all match the CPU.
TEST(ConvCuda, CudnnHandlesOfExitedThreadsAreReusedAndReleased) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const Device gpu(kCUDA);
  const Tensor x = tt::random_tensor({2, 3, 9, 8}, kFloat32);
  const Tensor w = tt::random_tensor({4, 3, 3, 3}, kFloat32);
  const Tensor want = conv2d(x, w, Tensor(), 1, 1);
  const Tensor xg = x.to(gpu), wg = w.to(gpu);
  tandem::cuda::synchronize();
  const auto conv_in_thread = [&] {
    Tensor got;
    std::thread t([&] {
      got = conv2d(xg, wg, Tensor(), 1, 1);
      tandem::cuda::synchronize();
    });
    t.join();
    return got;
  };
  const tt::Tol tol = tt::scaled(tt::default_tol(kFloat32), 100.0);  // cuDNN's order
  tt::expect_close(conv_in_thread(), want, tol);  // creates a handle, pooled at exit
  tt::expect_close(conv_in_thread(), want, tol);  // reuses it
  tandem::cuda::empty_cache();                    // destroys it
  tt::expect_close(conv_in_thread(), want, tol);  // a new one
  tt::expect_close(conv2d(xg, wg, Tensor(), 1, 1), want, tol);
}

// The same argument check as on the CPU (the CUDA backward once threw
// "FastDivmod: divisor 0" here).
TEST(ConvCuda, PoolingEmptyPlaneIsAnError) {
  TANDEM_SKIP_WITHOUT_CUDA();
  expect_empty_plane_refused(Device(kCUDA));
}

// Both devices normalise with the double mean (kernels/batch_norm.cu):
// x = 1000 + 0.01 * randn agrees to 1e-5, forward and backward.
TEST(ConvCuda, BatchNormLargeMeanSmallSpreadMatchesCpu) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const Device gpu(kCUDA);
  const Tensor x = far_from_zero_batch().set_requires_grad(true);
  const Tensor xg = x.detach().to(gpu).set_requires_grad(true);
  const Tensor w = tt::random_tensor({1}, kFloat32, 0.5, 1.5).set_requires_grad(true);
  const Tensor wg = w.detach().to(gpu).set_requires_grad(true);
  Tensor rm = zeros({1}), rv = ones({1});
  Tensor rmg = rm.to(gpu), rvg = rv.to(gpu);
  const Tensor y = batch_norm(x, rm, rv, w, Tensor(), true, 0.1, 1e-5);
  const Tensor yg = batch_norm(xg, rmg, rvg, wg, Tensor(), true, 0.1, 1e-5);
  const tt::Tol tol{1e-5, 1e-5};
  tt::expect_close(yg, y, tol);
  tt::expect_close(rmg, rm, tol);
  tt::expect_close(rvg, rv, tol);
  const Tensor go = tt::random_tensor({64, 1}, kFloat32);
  y.backward(go);
  yg.backward(go.to(gpu));
  tt::expect_close(xg.grad(), x.grad(), tol);
  tt::expect_close(wg.grad(), w.grad(), tol);
}

TEST(ConvCuda, PoolingTiesAndNaNMatchCpu) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const Device gpu(kCUDA);
  std::vector<double> v(2 * 36);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i % 3);  // many ties
  v[7] = std::numeric_limits<double>::quiet_NaN();
  const Tensor x = tt::make_tensor(v, {1, 2, 6, 6}, kFloat64).set_requires_grad(true);
  const Tensor xg = x.detach().to(gpu).set_requires_grad(true);
  const Tensor y = max_pool2d(x, 3, Size2(2), 1), yg = max_pool2d(xg, 3, Size2(2), 1);
  tt::expect_equal(yg, y);
  const Tensor go = tt::random_tensor(y.sizes(), kFloat64);
  y.backward(go);
  yg.backward(go.to(gpu));
  tt::expect_close(xg.grad(), x.grad(), tt::default_tol(kFloat64));
}

TEST(ConvCuda, DeterministicModeRepeatsBitForBitAndBenchmarkModeAgrees) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const Device gpu(kCUDA);
  const Tensor xc = tt::random_tensor({16, 32, 16, 16}, kFloat32);
  const Tensor wc = tt::random_tensor({32, 32, 3, 3}, kFloat32, -0.1, 0.1);
  // The CPU's output and gradients of sum(conv) are what every mode is held to.
  const Tensor x_cpu = xc.clone().set_requires_grad(true);
  const Tensor w_cpu = wc.clone().set_requires_grad(true);
  const Tensor y_cpu = conv2d(x_cpu, w_cpu, Tensor(), 1, 1);
  y_cpu.sum().backward();
  struct Run {
    Tensor y, x_grad, w_grad;
  };
  auto run = [&] {
    const Tensor x = xc.to(gpu).set_requires_grad(true);
    const Tensor w = wc.to(gpu).set_requires_grad(true);
    const Tensor y = conv2d(x, w, Tensor(), 1, 1);
    y.sum().backward();
    return Run{y.detach(), x.grad(), w.grad()};
  };
  const double bound = device_relative_bound(kFloat32);
  auto expect_matches_cpu = [&](const Run& r, const char* mode) {
    EXPECT_LE(relative_error(r.y, y_cpu), bound) << mode << ": output";
    EXPECT_LE(relative_error(r.x_grad, x_cpu.grad()), bound) << mode << ": grad x";
    EXPECT_LE(relative_error(r.w_grad, w_cpu.grad()), bound) << mode << ": grad w";
  };
  expect_matches_cpu(run(), "default");
  cuda::set_cudnn_deterministic(true);
  const Run det = run(), det_again = run();
  cuda::set_cudnn_deterministic(false);
  expect_matches_cpu(det, "deterministic");
  tt::expect_equal(det_again.y, det.y);
  tt::expect_equal(det_again.x_grad, det.x_grad);
  tt::expect_equal(det_again.w_grad, det.w_grad);
  cuda::set_cudnn_benchmark(true);
  const Run bench = run(), bench_again = run();  // the second reuses the cached choice
  cuda::set_cudnn_benchmark(false);
  expect_matches_cpu(bench, "benchmark");
  expect_matches_cpu(bench_again, "benchmark, cached");
  tt::expect_equal(bench_again.y, bench.y);
}

// Issue 18 item 6: float64 with groups and dilation is where cuDNN's first
// choice may be refused at run time; every mode must still run and match.
TEST(ConvCuda, Float64GroupsAndDilationRunInEveryMode) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const Device gpu(kCUDA);
  const std::vector<ConvCfg> cfgs = {
      {3, 6, 11, 9, 9, 3, 3, Size2(1), Size2(2), Size2(2), 3},
      {2, 4, 13, 10, 8, 3, 2, {2, 1}, {1, 2}, {3, 2}, 2, false},
      {1, 8, 9, 9, 8, 3, 3, Size2(1), Size2(2), Size2(2), 8},  // depthwise, dilated
  };
  for (int mode = 0; mode < 3; ++mode) {
    cuda::set_cudnn_deterministic(mode == 1);
    cuda::set_cudnn_benchmark(mode == 2);
    for (const ConvCfg& g : cfgs) {
      SCOPED_TRACE(::testing::Message() << "mode " << mode << " " << g);
      const Tensor x = tt::random_tensor({g.n, g.c, g.h, g.w}, kFloat64).set_requires_grad(true);
      const Tensor w =
          tt::random_tensor({g.k, g.c / g.groups, g.r, g.s}, kFloat64).set_requires_grad(true);
      const Tensor xg = x.detach().to(gpu).set_requires_grad(true);
      const Tensor wg = w.detach().to(gpu).set_requires_grad(true);
      const Tensor y = conv2d(x, w, Tensor(), g.stride, g.pad, g.dil, g.groups);
      const Tensor yg = conv2d(xg, wg, Tensor(), g.stride, g.pad, g.dil, g.groups);
      const tt::Tol tol = tt::scaled(tt::default_tol(kFloat64), 100.0);
      tt::expect_close(yg, y, tol);
      const Tensor go = tt::random_tensor(y.sizes(), kFloat64);
      y.backward(go);
      yg.backward(go.to(gpu));
      tt::expect_close(xg.grad(), x.grad(), tol);
      tt::expect_close(wg.grad(), w.grad(), tol);
    }
  }
  cuda::set_cudnn_deterministic(false);
  cuda::set_cudnn_benchmark(false);
}

// Issue 18 item 6: descriptors and the algorithm are kept per shape, so
// repeated training steps make no new plans and no heuristic queries.
TEST(ConvCuda, RepeatedStepsReuseThePlan) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const Device gpu(kCUDA);
  const Tensor x = tt::random_tensor({5, 7, 15, 13}, kFloat32).to(gpu).set_requires_grad(true);
  const Tensor w = tt::random_tensor({9, 7, 3, 3}, kFloat32).to(gpu).set_requires_grad(true);
  auto step = [&] { conv2d(x, w, Tensor(), 1, 1).sum().backward(); };
  step();
  const auto before = cuda::detail::conv_cache_stats();
  EXPECT_GE(before.plans, 1u);
  for (int i = 0; i < 5; ++i) step();
  const auto after = cuda::detail::conv_cache_stats();
  EXPECT_EQ(after.plans, before.plans);
  EXPECT_EQ(after.heuristic_queries, before.heuristic_queries);
}

// Issue 18 item 6: an input of more than 2^31 elements runs in chunks of the
// batch (31 + 2 samples here); the filter gradient accumulates over them.
// 1x1 kernel, so y = w x + b and the gradients have closed forms. At most four
// tensors of 8.9 GB are alive at once: the test skips (an expected skip) when
// the device has less free memory, and an out-of-memory error inside the ops
// is a failure like any other.
TEST(ConvCuda, BatchBeyondTwoToThe31ElementsRunsInChunks) {
  TANDEM_SKIP_WITHOUT_CUDA();
  TANDEM_SKIP_IF(Emulated, TANDEM_CUDA_EMULATED,
                 "its 2.2e9-element tensors need about 40 GB, more than this machine's memory "
                 "(the chunking runs on a GPU)");
  const Device gpu(kCUDA);
  const int64_t n = 33, side = 8192;  // 2.2e9 float32 elements, 8.9 GB per tensor
#if TANDEM_WITH_CUDA
  const size_t tensor_bytes = static_cast<size_t>(n * side * side) * sizeof(float);
  cuda::synchronize();
  cuda::empty_cache();
  size_t free_bytes = 0, total_bytes = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total_bytes), cudaSuccess);
  TANDEM_SKIP_IF(SmallDevice, free_bytes < 4 * tensor_bytes + (size_t{2} << 30),
                 "needs about 40 GB of free device memory, " << (free_bytes >> 20) << " MiB free");
#endif
  Tensor x =
      tandem::rand({n, 1, side, side}, TensorOptions(kFloat32).device(gpu)).set_requires_grad(true);
  const Tensor w =
      full({1, 1, 1, 1}, 0.75, TensorOptions(kFloat32).device(gpu)).set_requires_grad(true);
  const Tensor b = full({1}, -0.25, TensorOptions(kFloat32).device(gpu));
  {
    Tensor y = conv2d(x, w, b);
    const double want_max = max(x.detach()).item<double>() * 0.75 - 0.25;
    EXPECT_NEAR(max(y).item<double>(), want_max, 1e-6);
    const Tensor last = y.detach().select(0, n - 1);  // in the second chunk
    const Tensor ref_last = x.detach().select(0, n - 1) * 0.75 - 0.25;
    EXPECT_LE(max(abs(last - ref_last)).item<double>(), 1e-6);
    y.backward(ones(y.sizes(), TensorOptions(kFloat32).device(gpu)));
  }  // y and its gradient freed: x, x.grad and two temporaries below
  EXPECT_LE(max(abs(x.grad() - 0.75)).item<double>(), 1e-6);
  const double sum_x = sum(x.detach()).item<double>();        // accumulated in double
  EXPECT_NEAR(w.grad().item<double>(), sum_x, 1e-3 * sum_x);  // float32 in cuDNN
}

TEST(ConvCuda, SwitchesRoundTrip) {
  // Valid in every build: without CUDA they just keep their value.
  const bool b0 = cuda::cudnn_benchmark(), d0 = cuda::cudnn_deterministic();
  cuda::set_cudnn_benchmark(!b0);
  cuda::set_cudnn_deterministic(!d0);
  EXPECT_EQ(cuda::cudnn_benchmark(), !b0);
  EXPECT_EQ(cuda::cudnn_deterministic(), !d0);
  cuda::set_cudnn_benchmark(b0);
  cuda::set_cudnn_deterministic(d0);
  if (!cuda::is_built()) {
    EXPECT_EQ(cuda::cudnn_version(), 0);
  }
}

}  // namespace
