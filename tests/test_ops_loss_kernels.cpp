// The fused softmax cross-entropy backend kernels (core/backend.h), called
// directly: cpu::cross_entropy_forward / cpu::cross_entropy_backward against a
// long-double reference computed here from the contract's formulas (random
// logits, odd sizes, label smoothing 0 and 0.1, int32 and int64 targets,
// logits of magnitude 1e4, a -inf logit, out-of-range targets), and
// cuda:: against cpu:: (skipped without a device). At the end, every public
// loss (cross_entropy, nll_loss, mse_loss, binary_cross_entropy and its logits
// form) with each reduction against float64 loops on both devices; their
// gradients are in test_autograd.cpp and test_gradcheck.cpp.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "core/backend.h"
#include "test_util.h"

namespace {

using tandem::DType;
using tandem::Shape;
using tandem::Tensor;
using tandem::TensorOptions;
using tt::Ref;

// ---- Reference -------------------------------------------------------------------------

// The contract's formulas in long double (64-bit mantissa: the cancellation in
// lse - x_t at magnitude 1e4 costs 4 of 19 digits). stats: (m, log s) per row.
struct CeRef {
  std::vector<double> loss, stats;
};

CeRef ref_forward(const std::vector<double>& x, const std::vector<double>& target, int64_t rows,
                  int64_t classes, double smoothing) {
  CeRef out;
  const long double eps = smoothing, c = static_cast<long double>(classes);
  for (int64_t r = 0; r < rows; ++r) {
    const double* row = x.data() + r * classes;
    long double m = -std::numeric_limits<long double>::infinity(), s = 0, total = 0;
    for (int64_t j = 0; j < classes; ++j) m = std::max(m, static_cast<long double>(row[j]));
    for (int64_t j = 0; j < classes; ++j) {
      s += std::exp(static_cast<long double>(row[j]) - m);
      if (smoothing > 0) total += row[j];
    }
    const long double lse = m + std::log(s);
    const long double xt = row[static_cast<int64_t>(target[static_cast<size_t>(r)])];
    out.stats.push_back(static_cast<double>(m));
    out.stats.push_back(static_cast<double>(std::log(s)));
    out.loss.push_back(static_cast<double>(lse - (1 - eps) * xt - (eps / c) * total));
  }
  return out;
}

// grad[r][j] = g[r] * (exp((x - m[r]) - log_s[r]) - (1 - eps)[j == t] - eps / C),
// with the stats (m, log_s) the kernel is given.
std::vector<double> ref_backward(const std::vector<double>& x, const std::vector<double>& target,
                                 const std::vector<double>& stats, const std::vector<double>& g,
                                 int64_t rows, int64_t classes, double smoothing) {
  std::vector<double> out;
  const long double eps = smoothing, c = static_cast<long double>(classes);
  for (int64_t r = 0; r < rows; ++r) {
    const auto t = static_cast<int64_t>(target[static_cast<size_t>(r)]);
    for (int64_t j = 0; j < classes; ++j) {
      const long double p =
          std::exp((static_cast<long double>(x[static_cast<size_t>(r * classes + j)]) -
                    static_cast<long double>(stats[static_cast<size_t>(2 * r)])) -
                   static_cast<long double>(stats[static_cast<size_t>(2 * r + 1)]));
      const long double hit = j == t ? 1 - eps : 0;
      out.push_back(static_cast<double>(g[static_cast<size_t>(r)] * (p - hit - eps / c)));
    }
  }
  return out;
}

// ---- Calling the backends ------------------------------------------------------------------

// Poisoned outputs of the right shape on `dev`, so an element a kernel skips
// shows up as NaN.
Tensor poisoned(const Shape& shape, DType dt, tandem::Device dev) {
  Tensor t = tandem::empty(shape, TensorOptions(dt).device(dev));
  tt::poison(t);
  return t;
}

struct Forward {
  Tensor loss, stats;  // stats: float64 [rows, 2], (m, log s)
};

Forward cpu_forward(const Tensor& logits, const Tensor& target, double smoothing) {
  Forward f{poisoned({logits.size(0)}, logits.dtype(), tandem::kCPU),
            poisoned({logits.size(0), 2}, tandem::kFloat64, tandem::kCPU)};
  tandem::cpu::cross_entropy_forward(logits, target, smoothing, f.loss, f.stats);
  return f;
}

Tensor cpu_backward(const Tensor& logits, const Tensor& target, const Tensor& stats,
                    const Tensor& grad_loss, double smoothing) {
  Tensor grad = poisoned(logits.sizes(), logits.dtype(), tandem::kCPU);
  tandem::cpu::cross_entropy_backward(logits, target, stats, grad_loss, smoothing, grad);
  return grad;
}

// Checks forward and backward on the CPU against the reference.
void check_cpu(const Tensor& logits, const Tensor& target, double smoothing, tt::Tol tol,
               const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  const int64_t rows = logits.size(0), classes = logits.size(1);
  const auto xv = tt::to_doubles(logits), tv = tt::to_doubles(target);
  const Forward f = cpu_forward(logits, target, smoothing);
  const CeRef ref = ref_forward(xv, tv, rows, classes, smoothing);
  tt::expect_close(f.loss, Ref{{rows}, ref.loss}, tol, file, line);
  // The stats are double whatever the logits' dtype (m exact, log s to double).
  tt::expect_close(f.stats, Ref{{rows, 2}, ref.stats}, tt::default_tol(tandem::kFloat64), file,
                   line);
  const Tensor g = tt::random_tensor({rows}, logits.dtype(), -2, 2);
  const Tensor grad = cpu_backward(logits, target, f.stats, g, smoothing);
  tt::expect_close(grad,
                   Ref{{rows, classes},
                       ref_backward(xv, tv, tt::to_doubles(f.stats), tt::to_doubles(g), rows,
                                    classes, smoothing)},
                   tol, file, line);
}

using LossParam = std::tuple<DType, DType>;  // (logits, target)

std::string loss_param_name(const ::testing::TestParamInfo<LossParam>& param_info) {
  return std::string(tandem::dtype_name(std::get<0>(param_info.param))) + "_target_" +
         tandem::dtype_name(std::get<1>(param_info.param));
}

std::string describe_case(int64_t rows, int64_t classes, double smoothing) {
  return "rows " + std::to_string(rows) + " classes " + std::to_string(classes) + " smoothing " +
         std::to_string(smoothing);
}

// ---- CPU against the reference --------------------------------------------------------------

class CrossEntropyKernelTest : public ::testing::TestWithParam<LossParam> {};

TEST_P(CrossEntropyKernelTest, RandomLogitsOddSizes) {
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  for (int64_t rows : {1, 7, 33}) {
    for (int64_t classes : {1, 10, 1000}) {
      for (double smoothing : {0.0, 0.1}) {
        SCOPED_TRACE(describe_case(rows, classes, smoothing));
        const Tensor logits = tt::random_tensor({rows, classes}, dt, -6, 6);
        const Tensor target = tt::make_tensor(tt::int_values(rows, 0, classes - 1), {rows}, it);
        check_cpu(logits, target, smoothing, tt::default_tol(dt));
      }
    }
  }
}

TEST_P(CrossEntropyKernelTest, ManyRowsRunInParallel) {
  // Enough work for the OpenMP path; full label smoothing as the edge case.
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  for (double smoothing : {0.0, 1.0}) {
    SCOPED_TRACE(describe_case(2049, 37, smoothing));
    const Tensor logits = tt::random_tensor({2049, 37}, dt, -6, 6);
    const Tensor target = tt::make_tensor(tt::int_values(2049, 0, 36), {2049}, it);
    check_cpu(logits, target, smoothing, tt::default_tol(dt));
  }
}

TEST_P(CrossEntropyKernelTest, LogitsOfMagnitude1e4) {
  // exp(1e4) overflows any float type: the max must be subtracted. Logits all
  // near +1e4 or -1e4 (the loss is O(1), so lse - x_t would cancel 4 digits),
  // and spread over [-1e4, 1e4] (the loss is O(1e4)).
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  const int64_t rows = 7, classes = 33;
  for (double centre : {1e4, -1e4}) {
    for (double smoothing : {0.0, 0.1}) {
      SCOPED_TRACE("centre " + std::to_string(centre) + " smoothing " + std::to_string(smoothing));
      const Tensor logits = tt::random_tensor({rows, classes}, dt, centre - 3, centre + 3);
      const Tensor target = tt::make_tensor(tt::int_values(rows, 0, classes - 1), {rows}, it);
      const Forward f = cpu_forward(logits, target, smoothing);
      for (double v : tt::to_doubles(f.loss)) {
        EXPECT_TRUE(std::isfinite(v)) << v;
        EXPECT_GE(v, 0.0);
      }
      check_cpu(logits, target, smoothing, tt::default_tol(dt));
    }
  }
  const Tensor wide = tt::random_tensor({rows, classes}, dt, -1e4, 1e4);
  const Tensor target = tt::make_tensor(tt::int_values(rows, 0, classes - 1), {rows}, it);
  check_cpu(wide, target, 0.1, tt::default_tol(dt));
}

TEST_P(CrossEntropyKernelTest, MaskedLogitWithoutSmoothingIsFinite) {
  // A -inf logit (a masked class) that is not the target contributes nothing
  // without smoothing; with smoothing the loss is +inf (its log-probability is).
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  const double inf = std::numeric_limits<double>::infinity();
  const Tensor logits = tt::make_tensor({0.5, -inf, 2.0, -1.0, 0.0, -inf}, {2, 3}, dt);
  const Tensor target = tt::make_tensor({0, 1}, {2}, it);
  Forward f = cpu_forward(logits, target, 0.0);
  const double lse0 = std::log(std::exp(0.5) + std::exp(2.0));
  const double lse1 = std::log(std::exp(-1.0) + std::exp(0.0));
  tt::expect_close(f.loss, Ref{{2}, {lse0 - 0.5, lse1}}, tt::default_tol(dt));
  tt::expect_close(f.stats, Ref{{2, 2}, {2.0, lse0 - 2.0, 0.0, lse1}},
                   tt::default_tol(tandem::kFloat64));
  f = cpu_forward(logits, target, 0.1);
  EXPECT_EQ(tt::to_doubles(f.loss)[0], inf);
  const Tensor grad =
      cpu_backward(logits, target, f.stats, tt::make_tensor({1.0, 1.0}, {2}, dt), 0.0);
  const auto gv = tt::to_doubles(grad);
  EXPECT_EQ(gv[1], 0.0);  // exp(-inf - m - log s) = 0, not the target: no gradient
  for (double v : gv) EXPECT_TRUE(std::isfinite(v)) << v;
}

TEST_P(CrossEntropyKernelTest, OutOfRangeTargetThrowsOnTheCpu) {
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  const Tensor logits = tt::random_tensor({4, 10}, dt);
  const Tensor stats = tandem::zeros({4, 2}, tandem::kFloat64), g = tandem::ones({4}, dt);
  Tensor loss = tandem::empty({4}, dt), out_stats = tandem::empty({4, 2}, tandem::kFloat64);
  Tensor grad = tandem::empty({4, 10}, dt);
  for (double bad : {10.0, -1.0}) {
    SCOPED_TRACE("target " + std::to_string(bad));
    const Tensor target = tt::make_tensor({0, 9, 3, bad}, {4}, it);
    const std::string msg = "cross_entropy: target " + std::to_string(static_cast<int>(bad)) +
                            " of row 3 is out of range [0, 10)";
    tt::expect_error(
        [&] { tandem::cpu::cross_entropy_forward(logits, target, 0.0, loss, out_stats); },
        msg.c_str());
    tt::expect_error(
        [&] { tandem::cpu::cross_entropy_backward(logits, target, stats, g, 0.1, grad); },
        msg.c_str());
    // Through the public op, which a user reaches.
    tt::expect_error([&] { tandem::cross_entropy(logits, target); }, msg.c_str());
  }
}

TEST_P(CrossEntropyKernelTest, InconsistentArgumentsThrow) {
  // Not reachable through cross_entropy (it shapes the arguments), but a
  // backend caller that gets them wrong gets an error rather than a bad read.
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  const Tensor logits = tt::random_tensor({4, 10}, dt);
  const Tensor target = tt::make_tensor({0, 1, 2, 3}, {4}, it);
  Tensor loss = tandem::empty({4}, dt), stats = tandem::empty({4, 2}, tandem::kFloat64);
  tt::expect_error(
      [&] { tandem::cpu::cross_entropy_forward(logits.view({40}), target, 0.0, loss, stats); },
      "cross_entropy: expected logits [rows, classes], got [40]");
  tt::expect_error(
      [&] { tandem::cpu::cross_entropy_forward(logits, target.slice(0, 0, 3), 0.0, loss, stats); },
      "cross_entropy: target has 3 elements for 4 rows");
  Tensor short_loss = tandem::empty({3}, dt);
  tt::expect_error(
      [&] { tandem::cpu::cross_entropy_forward(logits, target, 0.0, short_loss, stats); },
      "cross_entropy: loss must be [4] of the logits' dtype, got");
  // The stats are float64 [rows, 2] whatever the logits' dtype.
  Tensor bad_stats = tandem::empty({4}, tandem::kFloat64);
  tt::expect_error(
      [&] { tandem::cpu::cross_entropy_forward(logits, target, 0.0, loss, bad_stats); },
      "cross_entropy: stats must be float64[4, 2], got float64[4]");
  Tensor grad = tandem::empty({4, 10}, dt);
  tt::expect_error(
      [&] { tandem::cpu::cross_entropy_backward(logits, target, bad_stats, loss, 0.0, grad); },
      "cross_entropy backward: stats must be float64[4, 2], got float64[4]");
  Tensor short_grad = tandem::empty({4, 9}, dt);
  tt::expect_error(
      [&] { tandem::cpu::cross_entropy_backward(logits, target, stats, loss, 0.0, short_grad); },
      "cross_entropy backward: grad_loss must be [4] and grad_logits like the logits");
  tt::expect_error(
      [&] {
        tandem::cpu::cross_entropy_forward(logits, target.to(tandem::kFloat32), 0.0, loss, stats);
      },
      "cross_entropy: index dtype float32 is not supported (expected int64 or int32)");
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CrossEntropyKernelTest,
                         ::testing::Combine(::testing::Values(tandem::kFloat32, tandem::kFloat64),
                                            ::testing::Values(tandem::kInt32, tandem::kInt64)),
                         loss_param_name);

// ---- The public op in float32 against float64 at large logits ---------------------------

// The gradient of cross_entropy(x, t, reduction, eps) in long double from the
// float32 logits' values: w_r (softmax(x_r) - (1 - eps) onehot(t_r) - eps / C),
// with w_r = 1 (sum), 1 / rows (mean) or the upstream gradient g_r (none).
std::vector<double> ref_public_grad(const std::vector<double>& x, const std::vector<double>& target,
                                    const std::vector<double>& w, int64_t rows, int64_t classes,
                                    double smoothing) {
  std::vector<double> out;
  const long double eps = smoothing, c = static_cast<long double>(classes);
  for (int64_t r = 0; r < rows; ++r) {
    const double* row = x.data() + r * classes;
    long double m = -std::numeric_limits<long double>::infinity(), s = 0;
    for (int64_t j = 0; j < classes; ++j) m = std::max(m, static_cast<long double>(row[j]));
    for (int64_t j = 0; j < classes; ++j) s += std::exp(static_cast<long double>(row[j]) - m);
    const auto t = static_cast<int64_t>(target[static_cast<size_t>(r)]);
    for (int64_t j = 0; j < classes; ++j) {
      const long double p = std::exp(static_cast<long double>(row[j]) - m) / s;
      const long double hit = j == t ? 1 - eps : 0;
      out.push_back(static_cast<double>(w[static_cast<size_t>(r)] * (p - hit - eps / c)));
    }
  }
  return out;
}

// Each test runs once per device; the CUDA instance skips (a failure under
// TANDEM_REQUIRE_CUDA=1) without a device instead of vanishing from a loop.
class CrossEntropyPrecision : public ::testing::TestWithParam<tandem::Device> {
 protected:
  void SetUp() override {
    if (GetParam().is_cuda()) TANDEM_SKIP_WITHOUT_CUDA();
  }
};
INSTANTIATE_TEST_SUITE_P(Devices, CrossEntropyPrecision,
                         ::testing::Values(tandem::Device(tandem::kCPU),
                                           tandem::Device(tandem::kCUDA, 0)),
                         tt::device_param_name);

TEST_P(CrossEntropyPrecision, Float32GradientMatchesFloat64AtLargeLogits) {
  // Regression (issue 18.1): the backward recomputed softmax from an lse rounded
  // to float32, so at |x| ~ 1e4 the probabilities were off by ~1e-4 relative and
  // the gradient rows no longer summed to 0. Rows are centred at +-magnitude with
  // a spread of a few units, so no class has a negligible probability.
  using tandem::Reduction;
  const int64_t rows = 7;
  const tandem::Device dev = GetParam();
  {
    for (int64_t classes : {33, 1025}) {  // CUDA: warp- and block-per-row kernels
      for (double magnitude : {1e2, 1e4, 1e6}) {
        for (Reduction reduction : {Reduction::Sum, Reduction::Mean, Reduction::None}) {
          for (double smoothing : {0.0, 0.1}) {
            SCOPED_TRACE(dev.str() + " " + describe_case(rows, classes, smoothing) + " magnitude " +
                         std::to_string(magnitude) + " reduction " +
                         std::to_string(static_cast<int>(reduction)));
            std::vector<double> xv = tt::uniform_values(rows * classes, -4.0, 4.0);
            const auto signs = tt::int_values(rows, 0, 1);
            for (int64_t r = 0; r < rows; ++r) {
              const double centre = signs[static_cast<size_t>(r)] > 0 ? magnitude : -magnitude;
              for (int64_t j = 0; j < classes; ++j)
                xv[static_cast<size_t>(r * classes + j)] += centre;
            }
            const Tensor logits = tt::make_tensor(xv, {rows, classes}, tandem::kFloat32)
                                      .to(dev)
                                      .set_requires_grad(true);
            const Tensor target =
                tt::make_tensor(tt::int_values(rows, 0, classes - 1), {rows}, tandem::kInt64)
                    .to(dev);
            const Tensor loss = tandem::cross_entropy(logits, target, reduction, smoothing);
            std::vector<double> w(static_cast<size_t>(rows), 1.0);
            if (reduction == Reduction::None) {
              const Tensor g = tt::random_tensor({rows}, tandem::kFloat32, 0.5, 2.0);
              w = tt::to_doubles(g);
              loss.backward(g.to(dev));
            } else {
              if (reduction == Reduction::Mean) w.assign(w.size(), 1.0 / static_cast<double>(rows));
              loss.backward();
            }
            const auto ref = ref_public_grad(tt::to_doubles(logits.detach()),
                                             tt::to_doubles(target), w, rows, classes, smoothing);
            tt::expect_close(logits.grad().cpu(), Ref{{rows, classes}, ref}, tt::Tol{1e-6, 1e-9});
          }
        }
      }
    }
  }
}

TEST_P(CrossEntropyPrecision, IssueExampleRowSumsToZero) {
  // logits [[10000, 9999]], target 0, sum: exactly -+ 1 / (1 + e).
  const tandem::Device dev = GetParam();
  {
    const Tensor logits = tt::make_tensor({10000.0, 9999.0}, {1, 2}, tandem::kFloat32)
                              .to(dev)
                              .set_requires_grad(true);
    const Tensor target = tt::make_tensor({0}, {1}, tandem::kInt64).to(dev);
    tandem::cross_entropy(logits, target, tandem::Reduction::Sum).backward();
    const double q = 1.0 / (1.0 + std::exp(1.0));
    tt::expect_close(logits.grad().cpu(), Ref{{1, 2}, {-q, q}}, tt::Tol{1e-6, 0.0});
  }
}

// ---- CUDA against the CPU (skipped without a device) ------------------------------------

class CrossEntropyCudaTest : public ::testing::TestWithParam<LossParam> {
 protected:
  void SetUp() override { TANDEM_SKIP_WITHOUT_CUDA(); }
};

#if TANDEM_WITH_CUDA
const tandem::Device kGpu(tandem::kCUDA, 0);

Forward cuda_forward(const Tensor& logits, const Tensor& target, double smoothing) {
  const Tensor x = logits.cuda(), t = target.cuda();
  Forward f{poisoned({logits.size(0)}, logits.dtype(), kGpu),
            poisoned({logits.size(0), 2}, tandem::kFloat64, kGpu)};
  tandem::cuda::cross_entropy_forward(x, t, smoothing, f.loss, f.stats);
  return f;
}

Tensor cuda_backward(const Tensor& logits, const Tensor& target, const Tensor& stats,
                     const Tensor& grad_loss, double smoothing) {
  const Tensor x = logits.cuda(), t = target.cuda(), l = stats.cuda(), g = grad_loss.cuda();
  Tensor grad = poisoned(logits.sizes(), logits.dtype(), kGpu);
  tandem::cuda::cross_entropy_backward(x, t, l, g, smoothing, grad);
  return grad;
}

// expf on the GPU and exp on the CPU (double there, in the logits' type here)
// differ by a few ulp; the sums are accumulated in double on both.
tt::Tol parity_tol(DType dt) { return tt::scaled(tt::default_tol(dt), 4.0); }

void check_parity(const Tensor& logits, const Tensor& target, double smoothing,
                  const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  const DType dt = logits.dtype();
  const Forward cpu = cpu_forward(logits, target, smoothing);
  const Forward gpu = cuda_forward(logits, target, smoothing);
  tt::expect_close(gpu.loss.cpu(), cpu.loss, parity_tol(dt), file, line);
  // log s from float exps (float32) agrees to float rounding.
  tt::expect_close(gpu.stats.cpu(), cpu.stats, parity_tol(dt), file, line);
  // Backward from the same stats on both devices, so only the kernels differ.
  const Tensor g = tt::random_tensor({logits.size(0)}, dt, -2, 2);
  tt::expect_close(cuda_backward(logits, target, cpu.stats, g, smoothing).cpu(),
                   cpu_backward(logits, target, cpu.stats, g, smoothing), parity_tol(dt), file,
                   line);
}
#endif

TEST_P(CrossEntropyCudaTest, MatchesCpu) {
#if TANDEM_WITH_CUDA
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  // Classes cover the warp-per-row forward (<= 1024), the block-per-row one,
  // and both backward kernels (flat below 512 classes, block per row above).
  for (int64_t rows : {1, 7, 33, 2049}) {
    for (int64_t classes : {1, 10, 511, 1000, 1025, 4099}) {
      if (rows * classes > 2000000) continue;
      for (double smoothing : {0.0, 0.1}) {
        SCOPED_TRACE(describe_case(rows, classes, smoothing));
        const Tensor logits = tt::random_tensor({rows, classes}, dt, -6, 6);
        const Tensor target = tt::make_tensor(tt::int_values(rows, 0, classes - 1), {rows}, it);
        check_parity(logits, target, smoothing);
      }
    }
  }
#endif
}

TEST_P(CrossEntropyCudaTest, LogitsOfMagnitude1e4) {
#if TANDEM_WITH_CUDA
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  for (int64_t classes : {33, 3000}) {
    for (double centre : {1e4, -1e4}) {
      for (double smoothing : {0.0, 0.1}) {
        SCOPED_TRACE(describe_case(7, classes, smoothing) + " centre " + std::to_string(centre));
        const Tensor logits = tt::random_tensor({7, classes}, dt, centre - 3, centre + 3);
        const Tensor target = tt::make_tensor(tt::int_values(7, 0, classes - 1), {7}, it);
        const Forward gpu = cuda_forward(logits, target, smoothing);
        const CeRef ref =
            ref_forward(tt::to_doubles(logits), tt::to_doubles(target), 7, classes, smoothing);
        tt::expect_close(gpu.loss.cpu(), Ref{{7}, ref.loss}, parity_tol(dt));
        check_parity(logits, target, smoothing);
      }
    }
  }
  const Tensor wide = tt::random_tensor({7, 1000}, dt, -1e4, 1e4);
  check_parity(wide, tt::make_tensor(tt::int_values(7, 0, 999), {7}, it), 0.1);
#endif
}

TEST_P(CrossEntropyCudaTest, MaskedLogitMatchesCpu) {
#if TANDEM_WITH_CUDA
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  const double inf = std::numeric_limits<double>::infinity();
  const Tensor logits = tt::make_tensor({0.5, -inf, 2.0, -1.0, 0.0, -inf}, {2, 3}, dt);
  const Tensor target = tt::make_tensor({0, 1}, {2}, it);
  for (double smoothing : {0.0, 0.1}) {
    SCOPED_TRACE("smoothing " + std::to_string(smoothing));
    const Forward cpu = cpu_forward(logits, target, smoothing);
    const Forward gpu = cuda_forward(logits, target, smoothing);
    tt::expect_close(gpu.loss.cpu(), cpu.loss, parity_tol(dt));
    tt::expect_close(gpu.stats.cpu(), cpu.stats, parity_tol(dt));
  }
#endif
}

TEST_P(CrossEntropyCudaTest, OutOfRangeTargetGivesNanRow) {
#if TANDEM_WITH_CUDA
  // The CPU throws; CUDA cannot check without a sync and writes NaN for the
  // row's loss and gradient. The other rows are unaffected.
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  for (int64_t classes : {10, 2000}) {  // both forward and both backward kernels
    SCOPED_TRACE("classes " + std::to_string(classes));
    const Tensor logits = tt::random_tensor({4, classes}, dt);
    const std::vector<double> bad = {0, static_cast<double>(classes), 3, -1};
    const std::vector<double> good = {0, 0, 3, 0};
    const Forward gpu = cuda_forward(logits, tt::make_tensor(bad, {4}, it), 0.1);
    const Forward cpu = cpu_forward(logits, tt::make_tensor(good, {4}, it), 0.1);
    const auto gl = tt::to_doubles(gpu.loss), cl = tt::to_doubles(cpu.loss);
    EXPECT_TRUE(std::isnan(gl[1]) && std::isnan(gl[3])) << gl[1] << " " << gl[3];
    EXPECT_TRUE(tt::value_close(gl[0], cl[0], parity_tol(dt)));
    EXPECT_TRUE(tt::value_close(gl[2], cl[2], parity_tol(dt)));
    tt::expect_close(gpu.stats.cpu(), cpu.stats, parity_tol(dt));  // no target needed

    const Tensor g = tandem::ones({4}, dt);
    const auto gg =
        tt::to_doubles(cuda_backward(logits, tt::make_tensor(bad, {4}, it), cpu.stats, g, 0.1));
    const auto cg =
        tt::to_doubles(cpu_backward(logits, tt::make_tensor(good, {4}, it), cpu.stats, g, 0.1));
    for (int64_t j = 0; j < classes; ++j) {
      const auto k = [&](int64_t r) { return static_cast<size_t>(r * classes + j); };
      EXPECT_TRUE(std::isnan(gg[k(1)]) && std::isnan(gg[k(3)])) << "column " << j;
      EXPECT_TRUE(tt::value_close(gg[k(0)], cg[k(0)], parity_tol(dt))) << "column " << j;
      EXPECT_TRUE(tt::value_close(gg[k(2)], cg[k(2)], parity_tol(dt))) << "column " << j;
    }
  }
#endif
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CrossEntropyCudaTest,
                         ::testing::Combine(::testing::Values(tandem::kFloat32, tandem::kFloat64),
                                            ::testing::Values(tandem::kInt32, tandem::kInt64)),
                         loss_param_name);

// ---- The public losses against float64 loops ------------------------------------------------

// nll_loss, mse_loss, the two binary cross-entropies and cross_entropy's
// reductions and label smoothing, through the public functions, against each
// loss's textbook formula in long double (written apart from the library's
// composition: log-softmax for cross_entropy, log1p(exp(-x)) for the logits
// form), reduced here. The reference takes the inputs as the tensors hold
// them, so float32 inputs are compared after their rounding.
using tandem::Reduction;

std::string reduction_name(Reduction r) {
  return r == Reduction::Mean ? "mean" : r == Reduction::Sum ? "sum" : "none";
}

// Per-element (or per-row) losses reduced as `r` asks: one value, or all.
Ref reduce_ref(const std::vector<long double>& per, const Shape& none_shape, Reduction r) {
  if (r == Reduction::None) return Ref{none_shape, std::vector<double>(per.begin(), per.end())};
  long double total = 0;
  for (long double v : per) total += v;
  if (r == Reduction::Mean) total /= static_cast<long double>(per.size());
  return Ref{{}, {static_cast<double>(total)}};
}

// Rows of scores [rows, classes] (a 1-D input is one row) and a target per row.
std::vector<long double> ref_cross_entropy_rows(const std::vector<double>& x,
                                                const std::vector<double>& target, int64_t classes,
                                                double smoothing) {
  std::vector<long double> out;
  const int64_t rows = static_cast<int64_t>(target.size());
  for (int64_t r = 0; r < rows; ++r) {
    const double* row = x.data() + r * classes;
    long double m = row[0], s = 0, sum_lp = 0;
    for (int64_t j = 1; j < classes; ++j) m = std::max(m, static_cast<long double>(row[j]));
    for (int64_t j = 0; j < classes; ++j) s += std::exp(static_cast<long double>(row[j]) - m);
    const long double lse = m + std::log(s);
    for (int64_t j = 0; j < classes; ++j) sum_lp += row[j] - lse;
    const long double lp_t = row[static_cast<int64_t>(target[static_cast<size_t>(r)])] - lse;
    const long double eps = smoothing;
    out.push_back(-(1 - eps) * lp_t - eps / static_cast<long double>(classes) * sum_lp);
  }
  return out;
}

std::vector<long double> ref_nll_rows(const std::vector<double>& lp,
                                      const std::vector<double>& target, int64_t classes) {
  std::vector<long double> out;
  for (size_t r = 0; r < target.size(); ++r)
    out.push_back(-static_cast<long double>(
        lp[r * static_cast<size_t>(classes) + static_cast<size_t>(target[r])]));
  return out;
}

// -(t log p + (1 - t) log(1 - p)), each log clamped at -100 (PyTorch's rule).
std::vector<long double> ref_bce(const std::vector<double>& p, const std::vector<double>& t) {
  std::vector<long double> out;
  for (size_t i = 0; i < p.size(); ++i) {
    const long double lp = std::max(std::log(static_cast<long double>(p[i])), -100.0L);
    const long double lq = std::max(std::log(1.0L - p[i]), -100.0L);
    out.push_back(-(t[i] * lp + (1.0L - t[i]) * lq));
  }
  return out;
}

// -(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))), with log sigmoid(x) =
// -log1p(exp(-x)) and log(1 - sigmoid(x)) = -log1p(exp(x)).
std::vector<long double> ref_bce_with_logits(const std::vector<double>& x,
                                             const std::vector<double>& t) {
  std::vector<long double> out;
  for (size_t i = 0; i < x.size(); ++i) {
    const long double xi = x[i];
    out.push_back(t[i] * std::log1p(std::exp(-xi)) + (1.0L - t[i]) * std::log1p(std::exp(xi)));
  }
  return out;
}

// Few-ulp functions (exp, log, log1p) in the input's type and a float32 sum of
// up to a few hundred terms; float64 is held close to its own rounding.
tt::Tol public_loss_tol(DType dt) {
  return dt == tandem::kFloat32 ? tt::scaled(tt::default_tol(dt), 10.0) : tt::Tol{1e-12, 1e-13};
}

void check_public_losses(DType dt, tandem::Device dev) {
  const tt::Tol tol = public_loss_tol(dt);
  const auto on = [&](const Tensor& t) { return t.to(dev); };
  const std::vector<Reduction> reductions = {Reduction::Mean, Reduction::Sum, Reduction::None};
  // Class losses: [rows, classes] with one target per row, and [C] with a 0-dim one.
  struct ClassShape {
    Shape scores, target;
  };
  for (const ClassShape& cs : std::vector<ClassShape>{{{37, 11}, {37}}, {{1, 1}, {1}}, {{9}, {}}}) {
    const int64_t classes = cs.scores.back();
    const int64_t rows = tt::numel_of(cs.target);
    for (DType it : {tandem::kInt64, tandem::kInt32}) {
      const Tensor x = tt::random_tensor(cs.scores, dt, -4, 4);
      const Tensor target = tt::make_tensor(tt::int_values(rows, 0, classes - 1), cs.target, it);
      const auto xv = tt::to_doubles(x), tv = tt::to_doubles(target);
      for (Reduction r : reductions) {
        SCOPED_TRACE(tt::str(cs.scores) + " " + tandem::dtype_name(it) + " " + reduction_name(r));
        for (double smoothing : {0.0, 0.1, 1.0}) {
          SCOPED_TRACE("cross_entropy smoothing " + std::to_string(smoothing));
          const Tensor loss = tandem::cross_entropy(on(x), on(target), r, smoothing);
          tt::expect_close(
              loss.cpu(),
              reduce_ref(ref_cross_entropy_rows(xv, tv, classes, smoothing), cs.target, r), tol);
        }
        SCOPED_TRACE("nll_loss");
        // Any scores will do (nll_loss picks and negates); these are not normalised.
        tt::expect_close(tandem::nll_loss(on(x), on(target), r).cpu(),
                         reduce_ref(ref_nll_rows(xv, tv, classes), cs.target, r), tol);
      }
    }
  }
  // Elementwise losses on [5, 7, 3].
  const Shape shape = {5, 7, 3};
  const int64_t n = tt::numel_of(shape);
  const Tensor a = tt::random_tensor(shape, dt, -3, 3), b = tt::random_tensor(shape, dt, -3, 3);
  // Probabilities with exact 0 and 1 at the first four places (the -100 clamp),
  // and soft targets in [0, 1].
  std::vector<double> pv = tt::uniform_values(n, 0.01, 0.99);
  pv[0] = 0.0, pv[1] = 1.0, pv[2] = 0.0, pv[3] = 1.0;
  const Tensor p = tt::make_tensor(pv, shape, dt), t = tt::random_tensor(shape, dt, 0, 1);
  // Logits in [-8, 8] and two far out (the stable form's log term underflows).
  std::vector<double> lv = tt::uniform_values(n, -8, 8);
  lv[0] = 30.0, lv[1] = -30.0;
  const Tensor logits = tt::make_tensor(lv, shape, dt);
  const auto av = tt::to_doubles(a), bv = tt::to_doubles(b), prv = tt::to_doubles(p),
             tv = tt::to_doubles(t), lrv = tt::to_doubles(logits);
  std::vector<long double> mse;
  for (size_t i = 0; i < av.size(); ++i)
    mse.push_back((static_cast<long double>(av[i]) - bv[i]) *
                  (static_cast<long double>(av[i]) - bv[i]));
  for (Reduction r : reductions) {
    SCOPED_TRACE(reduction_name(r));
    SCOPED_TRACE("mse_loss");
    tt::expect_close(tandem::mse_loss(on(a), on(b), r).cpu(), reduce_ref(mse, shape, r), tol);
    SCOPED_TRACE("binary_cross_entropy");
    tt::expect_close(tandem::binary_cross_entropy(on(p), on(t), r).cpu(),
                     reduce_ref(ref_bce(prv, tv), shape, r), tol);
    SCOPED_TRACE("binary_cross_entropy_with_logits");
    tt::expect_close(tandem::binary_cross_entropy_with_logits(on(logits), on(t), r).cpu(),
                     reduce_ref(ref_bce_with_logits(lrv, tv), shape, r), tol);
  }
}

class PublicLossTest : public ::testing::TestWithParam<DType> {};

TEST_P(PublicLossTest, EveryLossAndReductionMatchesFloat64Loops) {
  check_public_losses(GetParam(), tandem::kCPU);
}

TEST_P(PublicLossTest, EveryLossAndReductionMatchesFloat64LoopsOnCuda) {
  TANDEM_SKIP_WITHOUT_CUDA();
  check_public_losses(GetParam(), tandem::Device(tandem::kCUDA, 0));
}

INSTANTIATE_TEST_SUITE_P(Floating, PublicLossTest,
                         ::testing::Values(tandem::kFloat32, tandem::kFloat64),
                         [](const ::testing::TestParamInfo<DType>& param_info) {
                           return std::string(tandem::dtype_name(param_info.param));
                         });

TEST(PublicLossErrors, BinaryCrossEntropyWithLogitsNamesTheProblem) {
  const char* op = "binary_cross_entropy_with_logits";
  const Tensor x = tt::random_tensor({2, 3}, tandem::kFloat32);
  tt::expect_error(
      [&] {
        tandem::binary_cross_entropy_with_logits(x, tt::random_tensor({3, 2}, tandem::kFloat32));
      },
      {op, ": input [2, 3] and target [3, 2] must have the same shape"});
  tt::expect_error(
      [&] {
        tandem::binary_cross_entropy_with_logits(x, tt::random_tensor({2, 3}, tandem::kFloat64));
      },
      {op, ": expected tensors of the same dtype", "float32", "float64"});
  tt::expect_error(
      [&] {
        tandem::binary_cross_entropy_with_logits(tandem::zeros({2, 3}, tandem::kInt64),
                                                 tandem::zeros({2, 3}, tandem::kInt64));
      },
      {op, ": dtype int64 is not supported (expected float32 or float64)"});
  tt::expect_error([&] { tandem::binary_cross_entropy_with_logits(x, Tensor()); },
                   {op, ": target is an undefined tensor"});
  tt::expect_error([&] { tandem::binary_cross_entropy_with_logits(Tensor(), x); },
                   {op, ": input is an undefined tensor"});
}

}  // namespace
