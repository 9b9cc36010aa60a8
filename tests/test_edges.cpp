// Edge inputs of the layer ops, on each device (the CUDA instances skip
// without a device; TANDEM_REQUIRE_CUDA=1 makes that a failure):
// - empty inputs (a zero batch, zero channels, zero rows) of pooling, conv
//   (forward and backward), the losses, var and gather: PyTorch's answers
//   (an empty result of the right shape, a reduction over nothing: sum 0,
//   mean and var NaN; weight gradients of zeros);
// - inputs that are slices with a storage offset (tandem's aliasing slices:
//   a dim-0 range or index of a larger tensor, at an offset that is not a
//   multiple of 16 bytes) for conv, pooling, batch norm and the losses, forward
//   and backward, against the same op on an unshared copy. Batch norm's
//   running statistics are themselves such slices and must update in place.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using tandem::Device;
using tandem::DType;
using tandem::Reduction;
using tandem::Shape;
using tandem::Tensor;
using tandem::TensorOptions;

class Edges : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    if (GetParam().is_cuda()) TANDEM_SKIP_WITHOUT_CUDA();
  }
  Device dev() const { return GetParam(); }
  // float64 on the CPU (exact references), float32 on CUDA (cuDNN's types).
  DType dt() const { return dev().is_cuda() ? tandem::kFloat32 : tandem::kFloat64; }
  Tensor rand(const Shape& s) const { return tt::random_tensor(s, dt()).to(dev()); }
  Tensor leaf(const Shape& s) const { return rand(s).set_requires_grad(true); }
  tt::Tol tol() const { return tt::scaled(tt::default_tol(dt()), 8.0); }
};

INSTANTIATE_TEST_SUITE_P(Devices, Edges,
                         ::testing::Values(Device(tandem::kCPU), Device(tandem::kCUDA, 0)),
                         tt::device_param_name);

void expect_shape(const Tensor& t, const Shape& s, Device dev) {
  ASSERT_TRUE(t.defined());
  EXPECT_EQ(t.sizes(), s);
  EXPECT_EQ(t.device(), dev);
}

// A scalar: NaN, or exactly `value`.
void expect_scalar(const Tensor& t, double value) {
  ASSERT_EQ(t.numel(), 1);
  const double got = t.item<double>();
  if (std::isnan(value)) {
    EXPECT_TRUE(std::isnan(got)) << got;
  } else {
    EXPECT_EQ(got, value);
  }
}

void expect_all_zero(const Tensor& t) {
  ASSERT_TRUE(t.defined());
  for (double v : tt::to_doubles(t.cpu())) EXPECT_EQ(v, 0.0);
}

// ---- Empty inputs ------------------------------------------------------------------

TEST_P(Edges, PoolingOfAnEmptyBatchOrNoChannels) {
  using Pool = std::function<Tensor(const Tensor&)>;
  const std::vector<std::pair<const char*, Pool>> pools = {
      {"max_pool2d", [](const Tensor& x) { return tandem::max_pool2d(x, 2); }},
      {"avg_pool2d", [](const Tensor& x) { return tandem::avg_pool2d(x, 2); }},
      {"avg_pool2d padded", [](const Tensor& x) { return tandem::avg_pool2d(x, 3, 2, 1, false); }},
      {"adaptive_avg_pool2d", [](const Tensor& x) { return tandem::adaptive_avg_pool2d(x, 1); }},
  };
  for (const auto& [name, pool] : pools) {
    for (const Shape& in : {Shape{0, 3, 8, 6}, Shape{2, 0, 8, 6}}) {
      SCOPED_TRACE(std::string(name) + " of " + tandem::shape_str(in));
      const Tensor x = leaf(in);
      const Tensor y = pool(x);
      const Tensor ref = pool(tt::random_tensor({1, 1, 8, 6}, dt()));  // the window arithmetic
      expect_shape(y, {in[0], in[1], ref.size(2), ref.size(3)}, dev());
      y.sum().backward();
      expect_shape(x.grad(), in, dev());
    }
  }
}

TEST_P(Edges, ConvOfAnEmptyBatch) {
  const Tensor x = leaf({0, 3, 9, 7});
  const Tensor w = leaf({4, 3, 3, 3});
  const Tensor b = leaf({4});
  const Tensor y = tandem::conv2d(x, w, b, 2, 1);
  expect_shape(y, {0, 4, 5, 4}, dev());
  y.sum().backward();
  expect_shape(x.grad(), {0, 3, 9, 7}, dev());
  expect_shape(w.grad(), {4, 3, 3, 3}, dev());
  expect_shape(b.grad(), {4}, dev());
  expect_all_zero(w.grad());  // a sum over no samples
  expect_all_zero(b.grad());
  // Grouped: the same.
  const Tensor xg = leaf({0, 4, 6, 6});
  const Tensor wg = leaf({6, 2, 3, 3});
  const Tensor yg = tandem::conv2d(xg, wg, Tensor(), 1, 1, 1, 2);
  expect_shape(yg, {0, 6, 6, 6}, dev());
  yg.sum().backward();
  expect_all_zero(wg.grad());
}

TEST_P(Edges, LossesOfZeroRows) {
  struct Loss {
    const char* name;
    std::function<Tensor(Reduction)> fn;
    Tensor input;
    Shape none_shape;  // Reduction::None: per row (class losses) or per element
  };
  const Tensor logits = leaf({0, 5});
  const Tensor target_idx = tandem::zeros({0}, TensorOptions(tandem::kInt64).device(dev()));
  const Tensor pred = leaf({0, 3});
  const Tensor probs = tt::random_tensor({0, 3}, dt(), 0.1, 0.9).to(dev()).set_requires_grad(true);
  const Tensor target = rand({0, 3});
  const std::vector<Loss> losses = {
      {"cross_entropy",
       [&](Reduction r) { return tandem::cross_entropy(logits, target_idx, r); },
       logits,
       {0}},
      {"cross_entropy smoothed",
       [&](Reduction r) { return tandem::cross_entropy(logits, target_idx, r, 0.1); },
       logits,
       {0}},
      {"nll_loss",
       [&](Reduction r) { return tandem::nll_loss(tandem::log_softmax(logits, 1), target_idx, r); },
       logits,
       {0}},
      {"mse_loss", [&](Reduction r) { return tandem::mse_loss(pred, target, r); }, pred, {0, 3}},
      {"binary_cross_entropy",
       [&](Reduction r) { return tandem::binary_cross_entropy(probs, tandem::abs(target), r); },
       probs,
       {0, 3}},
      {"binary_cross_entropy_with_logits",
       [&](Reduction r) {
         return tandem::binary_cross_entropy_with_logits(pred, tandem::abs(target), r);
       },
       pred,
       {0, 3}},
  };
  for (const Loss& l : losses) {
    SCOPED_TRACE(l.name);
    const Tensor none = l.fn(Reduction::None);
    expect_shape(none, l.none_shape, dev());
    // PyTorch: the sum over no rows is 0, their mean 0 / 0 = NaN.
    const Tensor sum = l.fn(Reduction::Sum);
    expect_shape(sum, {}, dev());
    expect_scalar(sum, 0.0);
    expect_scalar(l.fn(Reduction::Mean), std::nan(""));
    sum.backward();
    expect_shape(l.input.grad(), l.input.sizes(), dev());
    l.input.grad().zero_();
  }
}

TEST_P(Edges, VarOfNothing) {
  // PyTorch: NaN where a variance has no elements (or, unbiased, one).
  expect_scalar(tandem::var(rand({0})), std::nan(""));
  expect_scalar(tandem::var(rand({0}), false), std::nan(""));
  expect_scalar(tandem::var(rand({1})), std::nan(""));
  expect_scalar(tandem::var(rand({1}), false), 0.0);
  const Tensor rows = tandem::var(rand({3, 0}), 1);
  expect_shape(rows, {3}, dev());
  for (double v : tt::to_doubles(rows.cpu())) EXPECT_TRUE(std::isnan(v)) << v;
  const Tensor cols = tandem::var(rand({0, 4}), 0, true, true);
  expect_shape(cols, {1, 4}, dev());
  for (double v : tt::to_doubles(cols.cpu())) EXPECT_TRUE(std::isnan(v)) << v;
  expect_shape(tandem::var(rand({3, 0}), 0), {0}, dev());
}

TEST_P(Edges, GatherOfAnEmptyIndex) {
  const Tensor x = leaf({3, 4});
  const auto idx = [&](const Shape& s) {
    return tandem::zeros(s, TensorOptions(tandem::kInt64).device(dev()));
  };
  const Tensor cols = tandem::gather(x, 1, idx({3, 0}));
  expect_shape(cols, {3, 0}, dev());
  expect_shape(tandem::gather(x, 0, idx({0, 4})), {0, 4}, dev());
  expect_shape(tandem::gather(rand({0, 4}), 1, idx({0, 2})), {0, 2}, dev());
  expect_shape(tandem::gather(rand({3, 0}), 0, idx({2, 0})), {2, 0}, dev());
  cols.sum().backward();
  expect_shape(x.grad(), {3, 4}, dev());
  expect_all_zero(x.grad());
  // Out of range is still checked when the gathered dim is empty.
  tt::expect_error([&] { tandem::gather(rand({3, 0}), 1, idx({3, 1})); }, "gather: ");
}

// ---- Slices with a storage offset ------------------------------------------------------

// A [rows, ...] slice of a larger tensor: rows 1..rows of a [rows + 2, ...]
// tensor, so it starts `inner` elements into the storage (an odd count below,
// not a multiple of 16 bytes) and the row after it is someone else's.
Tensor offset_slice(const Tensor& base, int64_t rows) { return base.slice(0, 1, 1 + rows); }

// op(slice) against op(an unshared copy), forward and input gradients. The
// base's rows outside the slice get no gradient.
void expect_offset_invariant(const Tensor& base, int64_t rows,
                             const std::function<Tensor(const Tensor&)>& op, tt::Tol tol) {
  const Tensor b = base.detach().set_requires_grad(true);
  const Tensor slice = offset_slice(b, rows);
  ASSERT_EQ(slice.raw_data(),
            static_cast<const char*>(b.raw_data()) + slice.numel() / rows * b.element_size())
      << "the slice must alias its base at an offset";
  const Tensor copy =
      tt::make_tensor(tt::to_doubles(slice.detach().cpu()), slice.sizes(), b.dtype())
          .to(b.device())
          .set_requires_grad(true);
  const Tensor y = op(slice), y_ref = op(copy);
  tt::expect_close(y.cpu(), y_ref.cpu(), tol);
  const Tensor g = tt::random_tensor(y.sizes(), y.dtype()).to(y.device());
  y.backward(g);
  y_ref.backward(g);
  const Tensor grad = b.grad().cpu();
  tt::expect_close(grad.slice(0, 1, 1 + rows), copy.grad().cpu(), tol);
  expect_all_zero(grad.slice(0, 0, 1));
  expect_all_zero(grad.slice(0, 1 + rows));
}

TEST_P(Edges, ConvOfASliceWithAnOffset) {
  const Tensor w = rand({4, 3, 3, 3}), bias = rand({4});
  // 3 x 5 x 7 = 105 elements a sample: the slice starts 105 elements in.
  expect_offset_invariant(
      rand({5, 3, 5, 7}), 3, [&](const Tensor& x) { return tandem::conv2d(x, w, bias, 1, 1); },
      tol());
  // The weight and bias as offset slices too (an index of dim 0 aliases).
  const Tensor wb = rand({3, 4, 3, 3, 3}), bb = rand({3, 4});
  const Tensor x = rand({2, 3, 5, 7});
  tt::expect_close(tandem::conv2d(x, wb.select(0, 1), bb.select(0, 1), 1, 1).cpu(),
                   tandem::conv2d(x, wb.select(0, 1).clone(), bb.select(0, 1).clone(), 1, 1).cpu(),
                   tol());
}

TEST_P(Edges, PoolingOfASliceWithAnOffset) {
  const Tensor base = rand({4, 3, 5, 7});
  expect_offset_invariant(
      base, 2, [](const Tensor& x) { return tandem::max_pool2d(x, 2); }, tol());
  expect_offset_invariant(
      base, 2, [](const Tensor& x) { return tandem::avg_pool2d(x, 3, 2, 1, false); }, tol());
  expect_offset_invariant(
      base, 2,
      [](const Tensor& x) {
        return tandem::adaptive_avg_pool2d(x, {2, 3});
      },
      tol());
}

TEST_P(Edges, BatchNormOfASliceWithAnOffsetAndOffsetRunningStats) {
  const int64_t c = 3;
  const Tensor affine = rand({3, c});  // weight and bias: rows 1 and 2, 3 and 6 elements in
  const Tensor weight = affine.select(0, 1), bias = affine.select(0, 2);
  for (bool training : {true, false}) {
    SCOPED_TRACE(training ? "training" : "eval");
    // The running mean and variance: parts of row 1 of a shared buffer,
    // 2c + 1 and 3c + 1 elements in.
    const Tensor stats = tt::random_tensor({2, 2 * c + 1}, dt(), 0.5, 1.5).to(dev());
    const Tensor rm = stats.select(0, 1).slice(0, 0, c);
    const Tensor rv = stats.select(0, 1).slice(0, c, 2 * c);
    const Tensor rm_ref = rm.clone(), rv_ref = rv.clone();  // unshared copies
    const Tensor before = stats.cpu().clone();
    bool first = true;  // the slice goes first, then its copy
    expect_offset_invariant(
        rand({4, c, 5, 3}), 2,
        [&](const Tensor& x) {
          const bool on_slice = first;
          first = false;
          return tandem::batch_norm(x, on_slice ? rm : rm_ref, on_slice ? rv : rv_ref, weight, bias,
                                    training, 0.1, 1e-5);
        },
        tol());
    const Tensor after = stats.cpu();
    tt::expect_close(after.select(0, 1).slice(0, 0, c), rm_ref.cpu(), tol());
    tt::expect_close(after.select(0, 1).slice(0, c, 2 * c), rv_ref.cpu(), tol());
    // What is not a running statistic stays as it was.
    tt::expect_close(after.select(0, 0), before.select(0, 0), tt::exact());
    EXPECT_EQ(after.select(0, 1)[2 * c].item<double>(), before.select(0, 1)[2 * c].item<double>());
    const double moved =
        tandem::max(tandem::abs(after.select(0, 1) - before.select(0, 1))).item<double>();
    if (training) {
      EXPECT_GT(moved, 1e-3) << "the running statistics were not updated in place";
    } else {
      EXPECT_EQ(moved, 0.0);
    }
  }
}

TEST_P(Edges, LossesOfSlicesWithAnOffset) {
  const int64_t rows = 3, classes = 5;  // the slice starts 5 elements in
  const Tensor idx_base = tt::random_tensor({rows + 2}, tandem::kInt64, 0, classes - 1).to(dev());
  const Tensor target_idx = offset_slice(idx_base, rows);
  const Tensor target = tandem::abs(rand({rows, classes}));
  for (Reduction r : {Reduction::None, Reduction::Mean, Reduction::Sum}) {
    SCOPED_TRACE(static_cast<int>(r));
    const Tensor base = rand({rows + 2, classes});
    expect_offset_invariant(
        base, rows, [&](const Tensor& x) { return tandem::cross_entropy(x, target_idx, r, 0.1); },
        tol());
    expect_offset_invariant(
        base, rows,
        [&](const Tensor& x) { return tandem::nll_loss(tandem::log_softmax(x, 1), target_idx, r); },
        tol());
    expect_offset_invariant(
        base, rows, [&](const Tensor& x) { return tandem::mse_loss(x, target, r); }, tol());
    expect_offset_invariant(
        base, rows,
        [&](const Tensor& x) { return tandem::binary_cross_entropy_with_logits(x, target, r); },
        tol());
    expect_offset_invariant(
        tandem::sigmoid(base), rows,
        [&](const Tensor& x) { return tandem::binary_cross_entropy(x, target, r); }, tol());
  }
  // The target slice against an unshared copy of it.
  const Tensor logits = rand({rows, classes});
  tt::expect_close(tandem::cross_entropy(logits, target_idx, Reduction::None).cpu(),
                   tandem::cross_entropy(logits, target_idx.clone(), Reduction::None).cpu(), tol());
}

}  // namespace
