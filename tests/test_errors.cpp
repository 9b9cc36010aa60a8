// Every error a user can reach: the exception type (tandem::Error) and the
// message text. Messages start with the op name and a colon; the tests check
// stable substrings (the op name and the key values), not whole sentences,
// except where an exact message is part of the spec (matmul).
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <functional>
#include <initializer_list>
#include <string>

#include "test_util.h"

namespace {

using tandem::Shape;
using tandem::Tensor;

using tt::expect_error;

Tensor f32(const Shape& s) { return tt::random_tensor(s, tandem::kFloat32); }

// ---- Shapes ---------------------------------------------------------------------------

TEST(ErrorTest, MatmulShapeMismatchExactMessage) {
  Tensor a = tandem::zeros({64, 3072}), b = tandem::zeros({1024, 10});
  expect_error([&] { tandem::matmul(a, b); },
               "matmul: shapes [64, 3072] and [1024, 10] cannot be multiplied");
  try {
    tandem::matmul(a, b);
  } catch (const tandem::Error& e) {
    EXPECT_EQ(e.message(), "matmul: shapes [64, 3072] and [1024, 10] cannot be multiplied");
  }
  expect_error([&] { a.matmul(b); }, "matmul: shapes [64, 3072] and [1024, 10]");
}

TEST(ErrorTest, OtherMatrixProductMismatches) {
  expect_error([] { tandem::matmul(f32({3}), f32({4})); }, {"matmul", "[3]", "[4]"});
  expect_error([] { tandem::matmul(f32({2, 3}), f32({4})); }, {"matmul", "[2, 3]", "[4]"});
  expect_error(
      [] {
        tandem::matmul(f32({2, 3, 4}), f32({3, 4, 5}));
      },
      {"matmul", "[2, 3, 4]", "[3, 4, 5]"});
  expect_error([] { tandem::mm(f32({2, 3}), f32({4, 5})); }, {"mm", "[2, 3]", "[4, 5]"});
  expect_error(
      [] {
        tandem::mm(f32({2, 3, 4}), f32({4, 5}));
      },
      "mm: expected 2-D tensors, got [2, 3, 4] and [4, 5]");
  expect_error(
      [] {
        tandem::bmm(f32({2, 3, 4}), f32({3, 4, 5}));
      },
      {"bmm", "[2, 3, 4]", "[3, 4, 5]"});
  expect_error(
      [] {
        tandem::bmm(f32({3, 4}), f32({4, 5}));
      },
      "bmm: expected 3-D tensors, got [3, 4] and [4, 5]");
  expect_error([] { tandem::linear(f32({5, 33}), f32({7, 32})); }, {"linear", "33"});
  expect_error([] { tandem::linear(f32({5, 33}), f32({7, 33}), f32({6})); }, {"linear", "[6]"});
}

TEST(ErrorTest, BroadcastMismatchNamesTheOpAndShapes) {
  Tensor a = f32({2, 3}), b = f32({4});
  expect_error([&] { tandem::add(a, b); }, {"add: ", "[2, 3]", "[4]", "broadcast"});
  expect_error([&] { (void)(a + b); }, {"add", "[2, 3]", "[4]"});
  expect_error([&] { tandem::mul(a, b); }, {"mul: ", "[2, 3]", "[4]"});
  expect_error([&] { tandem::maximum(a, b); }, {"maximum: ", "[2, 3]", "[4]"});
  expect_error([&] { tandem::lt(a, b); }, {"lt: ", "[2, 3]", "[4]"});
  expect_error([&] { tandem::binary(tandem::BinaryOp::Sub, a, b); }, {"sub: ", "[2, 3]", "[4]"});
  expect_error(
      [] {
        tandem::broadcast_shapes({3, 1, 5}, {4, 6}, "myop");
      },
      {"myop: ", "[3, 1, 5]", "[4, 6]"});
  expect_error([&] { tandem::where(tandem::ones({5}, tandem::kUInt8), a, a); }, {"where", "[5]"});
}

TEST(ErrorTest, InPlaceOtherMustBroadcastToSelf) {
  Tensor x = f32({3});
  expect_error([&] { x.add_(f32({2, 3})); }, {"add", "[2, 3]", "[3]"});
  expect_error([&] { x.mul_(f32({4})); }, {"mul", "[4]", "[3]"});
  expect_error(
      [&] {
        x += f32({2, 3});
      },
      "add_: [2, 3] cannot be broadcast to the destination shape [3]");
  expect_error([&] { x.addcmul_(f32({4}), f32({4})); }, {"[4]", "[3]"});
}

// ---- dtypes ---------------------------------------------------------------------------

TEST(ErrorTest, DtypeMismatch) {
  Tensor a = f32({3}), b = tt::random_tensor({3}, tandem::kFloat64);
  expect_error([&] { tandem::add(a, b); }, {"add: ", "float32", "float64"});
  expect_error(
      [&] {
        tandem::mm(f32({2, 2}), tt::random_tensor({2, 2}, tandem::kFloat64));
      },
      {"mm", "float32", "float64"});
  expect_error([&] { tandem::cat({a, b}); }, {"cat", "float32", "float64"});
  expect_error([&] { tandem::where(tandem::ones({3}, tandem::kUInt8), a, b); },
               {"where", "float32", "float64"});
  expect_error([&] { a.add_(b); }, {"add", "float32", "float64"});
}

TEST(ErrorTest, UnsupportedDtype) {
  Tensor i64 = tandem::zeros({3}, tandem::kInt64);
  expect_error([&] { tandem::relu(i64); },
               "relu: dtype int64 is not supported (expected float32 or float64)");
  expect_error([&] { tandem::exp(tandem::zeros({3}, tandem::kInt32)); }, {"exp: ", "int32"});
  expect_error([&] { tandem::pow(i64, 2.0); }, {"pow: ", "int64"});
  expect_error([&] { tandem::mean(i64); }, {"mean", "int64"});
  expect_error([&] { tandem::var(i64); }, {"var", "int64"});
  expect_error([&] { tandem::softmax(i64, 0); }, {"softmax", "int64"});
  expect_error([&] { tandem::log_softmax(i64, 0); }, {"log_softmax", "int64"});
  expect_error(
      [&] {
        tandem::matmul(tandem::zeros({2, 2}, tandem::kInt64),
                       tandem::zeros({2, 2}, tandem::kInt64));
      },
      "matmul: dtype int64 is not supported (expected float32 or float64)");
  expect_error([&] { tandem::rand({3}, tandem::kInt64); },
               "uniform: dtype int64 is not supported (expected float32 or float64)");
  expect_error([&] { tandem::dropout(i64, 0.5); }, {"dropout", "int64"});
  expect_error([&] { tandem::index_select(f32({4}), 0, f32({2})); }, {"index_select", "float32"});
  expect_error([&] { tandem::gather(f32({2, 2}), 1, f32({2, 2})); }, {"gather", "float32"});
  expect_error([&] { tandem::one_hot(f32({2}), 3); }, {"one_hot", "float32"});
  expect_error([&] { tandem::where(f32({3}), f32({3}), f32({3})); }, {"where", "float32"});
}

// ---- dims -----------------------------------------------------------------------------

TEST(ErrorTest, DimOutOfRange) {
  Tensor x = f32({2, 3});
  expect_error([&] { tandem::sum(x, 3); }, "sum: dim 3 is out of range for a tensor of 2 dims");
  expect_error([&] { tandem::sum(x, -3); }, {"sum: ", "-3"});
  expect_error([&] { x.sum(2); }, {"sum: ", "dim 2"});
  expect_error([&] { tandem::mean(x, 2); }, {"mean: ", "dim 2"});
  expect_error([&] { tandem::max(x, 5); }, {"max: ", "dim 5"});
  expect_error([&] { tandem::argmax(x, 2, true); }, {"argmax: ", "dim 2"});
  expect_error([&] { tandem::var(x, int64_t{2}); }, {"var: ", "dim 2"});
  expect_error([&] { tandem::softmax(x, 2); }, {"softmax: ", "dim 2"});
  expect_error([&] { tandem::log_softmax(x, -3); }, {"log_softmax: ", "-3"});
  expect_error([&] { tandem::cat({x, x}, 2); }, {"cat: ", "dim 2"});
  expect_error([&] { tandem::stack({x, x}, 4); }, {"stack: ", "dim 4"});
  expect_error([&] { tandem::index_select(x, 2, tandem::zeros({1}, tandem::kInt64)); },
               {"index_select: ", "dim 2"});
  expect_error(
      [&] {
        tandem::gather(x, 2, tandem::zeros({2, 3}, tandem::kInt64));
      },
      {"gather: ", "dim 2"});
  expect_error([&] { x.unsqueeze(4); }, {"unsqueeze: ", "dim 4"});
  expect_error([&] { x.squeeze(2); }, {"squeeze: ", "dim 2"});
  expect_error([&] { x.transpose(0, 2); }, {"transpose: ", "dim 2"});
  expect_error([&] { x.flatten(0, 2); }, {"flatten: ", "dim 2"});
  expect_error([&] { x.size(2); }, {"size", "dim 2"});
}

TEST(ErrorTest, BadPermutation) {
  Tensor x = f32({2, 3});
  expect_error([&] { x.permute({0, 0}); }, {"permute: ", "[0, 0]"});
  expect_error([&] { x.permute({0}); }, {"permute: ", "[0]"});
  expect_error([&] { x.permute({0, 2}); }, {"permute: ", "[0, 2]"});
}

TEST(ErrorTest, ZeroDimTensorsStillValidateDims) {
  Tensor s = tandem::full({}, 1.0);
  expect_error([&] { tandem::sum(s, 3); }, {"sum: ", "dim 3"});
  expect_error([&] { tandem::argmax(s, -2); }, {"argmax: ", "-2"});
  expect_error([&] { tandem::softmax(s, 1); }, {"softmax: ", "dim 1"});
  expect_error([&] { s.size(0); }, "size: a 0-dim tensor has no dims");
  expect_error([&] { tandem::cat({s, s}); }, {"cat: ", "zero-dimensional"});
}

TEST(ErrorTest, MiscShapeErrors) {
  expect_error([] { f32({2, 3, 4}).t(); }, {"t: ", "[2, 3, 4]"});
  expect_error([] { f32({2, 3, 4}).flatten(2, 1); }, "flatten: start_dim 2 comes after end_dim 1");
  expect_error([] { tandem::matmul(tandem::full({}, 1.0), f32({3})); },
               "matmul: expected tensors of at least 1 dim, got [] and [3]");
  expect_error([] { tandem::linear(f32({2, 3}), f32({3})); }, {"linear: ", "weight"});
}

// ---- values -------------------------------------------------------------------------------

TEST(ErrorTest, BadScalarArguments) {
  Tensor x = f32({3});
  expect_error([&] { tandem::clamp(x, 1.0, 0.0); }, "clamp: lo (1) must not exceed hi (0)");
  expect_error([&] { x.clamp(2.0, -2.0); }, {"clamp", "lo (2)", "hi (-2)"});
  expect_error([&] { x.clamp_(1.0, 0.0); }, {"clamp_: ", "lo (1)"});
  expect_error([] { tandem::uniform({3}, 5.0, 1.0); }, {"uniform: ", "5", "1"});
  expect_error([] { tandem::uniform({3}, 0.0, INFINITY); },
               "uniform: need finite lo <= hi, got [0, inf)");
  expect_error([] { tandem::normal({3}, 0.0, -1.0); }, {"normal: ", "-1"});
  expect_error([] { tandem::randint(0, 10, {3}, tandem::kFloat32); }, {"randint: ", "float32"});
  expect_error([] { tandem::randn({3}, tandem::kInt32); },
               "normal: dtype int32 is not supported (expected float32 or float64)");
}

TEST(ErrorTest, IntegerDivisionByZero) {
  Tensor a = tandem::from_vector(std::vector<int64_t>{4, 5, 6});
  Tensor b = tandem::from_vector(std::vector<int64_t>{1, 0, 2});
  expect_error([&] { tandem::div(a, b); }, {"div", "division by zero"});
  expect_error([&] { tandem::div(a, 0.0); }, {"div", "division by zero"});
  expect_error([&] { a.div_(b); }, {"div", "division by zero"});
  expect_error(
      [&] { tandem::binary_scalar(tandem::BinaryOp::Div, b, 3.0, tandem::ScalarSide::Left); },
      {"div", "division by zero"});
  // Floating division by zero is IEEE, not an error.
  EXPECT_NO_THROW(tandem::div(f32({3}), tandem::zeros({3})));
}

// ---- views ------------------------------------------------------------------------------

TEST(ErrorTest, BadView) {
  Tensor x = f32({3, 4});
  expect_error(
      [&] {
        x.view({5, -1});
      },
      "view: shape [5, -1] is invalid for a tensor of 12 elements");
  expect_error([&] { x.view({-1, -1}); }, {"view: ", "[-1, -1]"});
  expect_error([&] { x.view({5, 3}); }, {"view: ", "[5, 3]", "12"});
  expect_error([&] { x.reshape({13}); }, {"view", "[13]", "12"});
  expect_error([&] { x.view({-2, 6}); }, {"view: ", "[-2, 6]"});
}

TEST(ErrorTest, BadSliceSelectNarrow) {
  using namespace tandem::indexing;  // NOLINT(google-build-using-namespace)
  Tensor x = f32({3, 4});
  expect_error([&] { x.select(0, 3); },
               "select: index 3 is out of range for dim 0 of size 3 (tensor [3, 4])");
  expect_error([&] { (void)x[5]; }, {"select: index 5", "dim 0 of size 3"});
  expect_error([&] { x.select(-1, -5); },
               "select: index -5 is out of range for dim 1 of size 4 (tensor [3, 4])");
  expect_error([&] { x.select(2, 0); },
               "select: dim 2 is out of range for a tensor of 2 dims [3, 4] (expected a dim in "
               "[-2, 1])");
  expect_error([&] { tandem::zeros({}).select(0, 0); },
               "select: cannot be applied to a 0-dim tensor");
  expect_error([&] { x.slice(2, 0, 1); }, {"slice: dim 2 is out of range", "[3, 4]"});
  expect_error([&] { x.slice(-3); }, {"slice: dim -3 is out of range", "[3, 4]"});
  expect_error([&] { x.slice(1, 0, 4, 0); },
               "slice: step must be positive, got 0 (dim 1 of [3, 4])");
  expect_error([&] { x.slice(1, 0, 4, -1); }, "slice: step must be positive, got -1");
  expect_error([&] { x.narrow(1, 5, 0); },
               "narrow: start 5 is out of range for dim 1 of size 4 (tensor [3, 4], expected a "
               "start in [-4, 4])");
  expect_error([&] { x.narrow(1, 2, 3); },
               "narrow: start 2 + length 3 exceeds dim 1 of size 4 (tensor [3, 4])");
  expect_error([&] { x.narrow(0, 0, -1); }, "narrow: length must be non-negative, got -1");
  expect_error([&] { x.narrow(-3, 0, 1); }, {"narrow: dim -3", "[3, 4]"});
  expect_error([&] { x.chunk(0, 1); }, "chunk: chunks must be positive, got 0");
  expect_error([&] { x.chunk(2, 2); }, {"chunk: dim 2", "[3, 4]"});
  expect_error([&] { x.split(0, 1); },
               "split: split_size 0 must be positive (0 only for an empty dim; dim 1 of [3, 4])");
  expect_error(
      [&] {
        x.split_with_sizes({1, 1}, 1);
      },
      "split_with_sizes: sizes [1, 1] sum to 2, not to dim 1 of size 4 (tensor [3, 4])");
  expect_error(
      [&] {
        x.split_with_sizes({5, -1}, 1);
      },
      "split_with_sizes: sizes [5, -1] must be non-negative");
  expect_error([&] { x.unbind(-3); }, {"unbind: dim -3", "[3, 4]"});
  expect_error([&] { x.index({0, 0, 0}); }, "index: 3 indices for a tensor of 2 dims [3, 4]");
  expect_error([&] { x.index({Ellipsis, 0, Ellipsis}); }, "index: at most one Ellipsis, got 2");
  expect_error(
      [&] {
        x.index({None, Slice(), 4});
      },
      "index: index 4 is out of range for dim 1 of size 4 (tensor [3, 4])");
  expect_error([&] { x.index({Slice(0, 3, 0)}); }, "index: step must be positive, got 0");
  expect_error([&] { Tensor().slice(0, 0, 1); }, "slice: input is an undefined tensor");
}

// ---- item / data_ptr ----------------------------------------------------------------------

TEST(ErrorTest, ItemNeedsOneElement) {
  expect_error([] { f32({2, 3}).item<float>(); }, "item: the tensor has 6 elements, expected 1");
  expect_error([] { f32({0}).item<float>(); }, {"item: ", "0 elements"});
}

TEST(ErrorTest, DataPtrWithTheWrongType) {
  expect_error([] { f32({2}).data_ptr<double>(); },
               "data_ptr: tensor has dtype float32 but float64 was requested");
  expect_error([] { tandem::zeros({2}, tandem::kInt32).data_ptr<int64_t>(); },
               {"data_ptr: ", "int32", "int64"});
  expect_error([] { tandem::zeros({2}, tandem::kUInt8).data_ptr<float>(); },
               {"data_ptr: ", "uint8", "float32"});
  expect_error([] { tandem::to_vector<double>(f32({2})); },
               "to_vector: tensor has dtype float32 but float64 was requested");
}

// ---- indices ----------------------------------------------------------------------------

TEST(ErrorTest, IndexOutOfRange) {
  Tensor x = f32({5, 2});
  expect_error(
      [&] {
        tandem::index_select(x, 0, tandem::from_vector(std::vector<int64_t>{1, 7}));
      },
      "index_select: index 7 is out of range for dimension of size 5");
  expect_error([&] { tandem::index_select(x, 0, tandem::from_vector(std::vector<int32_t>{-1})); },
               {"index_select: ", "-1", "5"});
  expect_error([&] { tandem::index_select(x, 1, tandem::from_vector(std::vector<int64_t>{2})); },
               {"index_select: ", "2"});
  expect_error(
      [&] {
        tandem::index_select(x, 0, tandem::zeros({2, 2}, tandem::kInt64));
      },
      "index_select: index must be 1-D, got [2, 2]");
  expect_error(
      [&] {
        tandem::gather(x, 1, tandem::full({5, 1}, 2, tandem::kInt64));
      },
      {"gather: ", "2"});
  expect_error([&] { tandem::gather(x, 1, tandem::zeros({5}, tandem::kInt64)); },
               "gather: index [5] must have as many dims as the input [5, 2]");
  expect_error(
      [&] {
        tandem::gather(x, 1, tandem::zeros({4, 1}, tandem::kInt64));
      },
      "gather: index [4, 1] and input [5, 2] must match in every dim except dim 1");
  expect_error(
      [] {
        tandem::one_hot(tandem::from_vector(std::vector<int64_t>{0, 3}), 3);
      },
      {"one_hot: ", "3"});
  expect_error([] { tandem::one_hot(tandem::from_vector(std::vector<int64_t>{-1}), 3); },
               {"one_hot: ", "-1"});
  expect_error([] { tandem::one_hot(tandem::from_vector(std::vector<int64_t>{0}), 0); },
               "one_hot: num_classes must be positive, got 0");
}

// ---- cat / stack -------------------------------------------------------------------------

TEST(ErrorTest, CatAndStack) {
  expect_error([] { tandem::cat({f32({2, 3}), f32({2, 4})}, 0); }, {"cat: ", "[2, 3]", "[2, 4]"});
  expect_error(
      [] {
        tandem::cat({f32({2, 3}), f32({2, 3, 1})}, 0);
      },
      "cat: tensor 1 has shape [2, 3, 1] but expected [2, 3] except in dim 0");
  expect_error([] { tandem::cat({}, 0); }, "cat: expected a non-empty list of tensors");
  expect_error([] { tandem::cat(std::vector<Tensor>{}); },
               "cat: expected a non-empty list of tensors");
  expect_error([] { tandem::stack({f32({2, 3}), f32({3, 2})}); }, {"stack: ", "[2, 3]", "[3, 2]"});
  expect_error([] { tandem::stack(std::vector<Tensor>{}); }, {"stack: ", "non-empty"});
}

// ---- random ----------------------------------------------------------------------------

TEST(ErrorTest, DropoutProbabilityOutOfRange) {
  Tensor x = f32({4});
  expect_error([&] { tandem::dropout(x, 1.5); }, "dropout: p must be in [0, 1], got 1.5");
  expect_error([&] { tandem::dropout(x, -0.25); }, {"dropout", "p must be in [0, 1]", "-0.25"});
  expect_error([&] { tandem::dropout(x, 1.5, false); }, {"dropout", "1.5"});
  expect_error([] { tandem::dropout_mask({4}, 2.0); }, {"dropout", "p must be in [0, 1]", "2"});
  expect_error([] { tandem::dropout_mask({4}, -1.0); }, {"dropout", "-1"});
}

TEST(ErrorTest, RandintEmptyRange) {
  expect_error([] { tandem::randint(5, 5, {3}); }, "randint: low (5) must be less than high (5)");
  expect_error([] { tandem::randint(7, 3, {3}); }, "randint: low (7) must be less than high (3)");
}

// ---- undefined tensors -------------------------------------------------------------------

TEST(ErrorTest, UndefinedTensorReachesAnOp) {
  Tensor u, x = f32({3});
  expect_error([&] { tandem::relu(u); }, "relu: input is an undefined tensor");
  expect_error([&] { tandem::add(u, x); }, "add: first input is an undefined tensor");
  expect_error([&] { tandem::add(x, u); }, "add: second input is an undefined tensor");
  expect_error([&] { tandem::sum(u); }, "sum: input is an undefined tensor");
  expect_error([&] { tandem::softmax(u, 0); }, "softmax: input is an undefined tensor");
  expect_error([&] { tandem::matmul(u, x); }, "matmul: first input is an undefined tensor");
  expect_error([&] { tandem::cat({x, u}); }, "cat: input is an undefined tensor");
  expect_error([&] { tandem::index_select(x, 0, u); },
               "index_select: index is an undefined tensor");
  expect_error([&] { tandem::where(u, x, x); }, "where: condition is an undefined tensor");
  expect_error([&] { tandem::dropout(u, 0.5); }, "dropout: input is an undefined tensor");
  expect_error([&] { x.add_(u); }, "add_: second input is an undefined tensor");
  expect_error([&] { x.copy_(u); }, "copy_: source is an undefined tensor");
  expect_error([&] { (void)u.sizes(); }, "Tensor: the tensor is undefined (default-constructed)");
  expect_error([&] { (void)u.numel(); }, "Tensor: the tensor is undefined (default-constructed)");
  expect_error([&] { u.clone(); }, "Tensor: the tensor is undefined (default-constructed)");
}

// ---- copies, factories, devices -------------------------------------------------------------

TEST(ErrorTest, CopyNumelMismatch) {
  Tensor d = f32({3, 2});
  expect_error([&] { d.copy_(f32({5})); }, {"copy_: ", "[5]", "[3, 2]"});
  expect_error([&] { d.copy_(f32({0})); },
               "copy_: source float32[0] on cpu does not match destination float32[3, 2] on cpu");
}

TEST(ErrorTest, BadFactoryArguments) {
  expect_error([] { tandem::zeros({2, -1}); }, "-1");
  expect_error([] { tandem::arange(0, 10, 0); },
               "arange: need finite start/end and a non-zero step, got start=0 end=10 step=0");
  expect_error([] { tandem::arange(0, 10, -1); }, "arange: step -1 does not go from 0 towards 10");
  expect_error(
      [] {
        tandem::from_vector(std::vector<float>{1, 2, 3}, {2, 2});
      },
      {"from_vector: ", "[2, 2]", "3"});
  expect_error([] { tandem::from_blob(nullptr, {2}, tandem::kFloat32, tandem::kFloat32); },
               "from_blob: null data pointer for 2 elements");
  expect_error([] { tandem::Device("gpu:0"); }, "gpu:0");
  expect_error([] { tandem::Device("cuda:x"); }, "cuda:x");
}

TEST(ErrorTest, MaxOfEmpty) {
  expect_error([] { tandem::max(tandem::empty({0})); },
               "max: cannot reduce over an empty dimension (input float32[0] on cpu)");
  expect_error([] { tandem::argmin(tandem::empty({0})); },
               "argmin: cannot reduce over an empty dimension (input float32[0] on cpu)");
  expect_error(
      [] {
        tandem::max(tandem::empty({3, 0}), 1);
      },
      "max: cannot reduce over an empty dimension (input float32[3, 0] on cpu)");
}

TEST(ErrorTest, CudaTensorWithoutADevice) {
  TANDEM_SKIP_IF(CudaPresent, tandem::cuda::is_available(), "a CUDA device is present");
  const char* expected = tandem::cuda::is_built() ? "no CUDA device" : "built without CUDA support";
  expect_error([] { tandem::zeros({2}, tandem::Device(tandem::kCUDA)); }, {"CUDA", expected});
  expect_error([] { tandem::zeros({2}).to(tandem::kCUDA); }, {"CUDA", expected});
  expect_error([] { tandem::zeros({2}).cuda(); }, {"cuda: ", expected});
  expect_error([] { tandem::rand({2}, tandem::Device(tandem::kCUDA)); }, {"cuda: ", expected});
  expect_error([] { tandem::empty({2}, tandem::TensorOptions().pinned_memory(true)); }, "CUDA");
  EXPECT_EQ(tandem::cuda::device_count(), 0);
}

// The skip mechanism (tests/test_skip.h): a skip that tests/expected_skips.h
// does not list for this test is refused, and a missing device is refused
// under TANDEM_REQUIRE_CUDA=1.
TEST(SkipList, ASkipTheListDoesNotHoldIsRefused) {
  const std::string why = tt::unexpected_skip(tt::SkipWhen::CudaPresent, "CudaPresent");
  EXPECT_NE(why.find("tests/expected_skips.h does not list (SkipList."
                     "ASkipTheListDoesNotHoldIsRefused, CudaPresent)"),
            std::string::npos)
      << why;
  EXPECT_FALSE(tt::unexpected_skip(tt::SkipWhen::Asan, "Asan").empty());
  EXPECT_EQ(tt::unexpected_skip(tt::SkipWhen::NoCuda, "NoCuda").empty(), !tt::cuda_required());
  EXPECT_TRUE(tt::glob_match("*/Suite.Name/*", "Devices/Suite.Name/cuda"));
  EXPECT_TRUE(tt::glob_match("Suite.Name", "Suite.Name"));
  EXPECT_FALSE(tt::glob_match("Suite.Name", "Suite.Name2"));
  EXPECT_FALSE(tt::glob_match("Suite.*", "Other.Name"));
}

TEST(ErrorTest, StreamsWithoutADevice) {
  TANDEM_SKIP_IF(CudaPresent, tandem::cuda::is_available(), "a CUDA device is present");
  const bool built = tandem::cuda::is_built();
  const char* expected = built ? "no CUDA device" : "built without CUDA support";
  expect_error([] { tandem::cuda::set_current_stream(tandem::cuda::Stream()); }, expected);
  expect_error([] { tandem::cuda::StreamGuard guard{tandem::cuda::Stream()}; }, expected);
  expect_error([] { tandem::cuda::record_stream(tandem::zeros({2}), tandem::cuda::Stream()); },
               {"record_stream", built ? "expected a CUDA tensor" : "built without CUDA support"});
}

TEST(ErrorTest, DeviceMismatch) {
  TANDEM_SKIP_WITHOUT_CUDA();
  Tensor c = tt::random_tensor({3}, tandem::kFloat32).cuda();
  Tensor h = f32({3});
  expect_error([&] { tandem::add(c, h); }, {"add: ", "cpu", "cuda:0"});
  expect_error([&] { tandem::matmul(c.view({1, 3}), h.view({3, 1})); }, {"matmul", "cpu", "cuda"});
  expect_error([&] { tandem::cat({c, h}); }, {"cat", "cpu", "cuda"});
  expect_error([&] { tandem::index_select(c, 0, tandem::zeros({1}, tandem::kInt64)); },
               {"index_select", "cpu", "cuda"});
  expect_error([&] { c.add_(h); }, {"add", "cpu", "cuda"});
  expect_error([&] { tandem::where(tandem::ones({3}, tandem::kUInt8), c, c); },
               {"where", "cpu", "cuda"});
  expect_error([&] { (void)c.data_ptr<double>(); },
               "data_ptr: tensor has dtype float32 but float64 was requested");
  expect_error([] { tandem::zeros({2}, tandem::Device(tandem::kCUDA, 64)); },
               "cuda: device 64 requested but only");
  expect_error(
      [] { tandem::empty({2}, tandem::TensorOptions().device(tandem::kCUDA).pinned_memory(true)); },
      {"pinned_memory", "CPU"});
}

// ---- the message carries file:line in what() ---------------------------------------

TEST(ErrorTest, WhatIncludesLocation) {
  try {
    tandem::sum(f32({2, 3}), 3);
    FAIL() << "no exception";
  } catch (const tandem::Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind(e.message(), 0), 0u) << what;
    EXPECT_NE(what.find(":"), std::string::npos) << what;
  }
  try {
    TANDEM_CHECK(1 + 1 == 3, "mytest: ", 42, " is not ", 7);
    FAIL() << "no exception";
  } catch (const tandem::Error& e) {
    EXPECT_EQ(e.message(), "mytest: 42 is not 7");
    EXPECT_NE(std::string(e.what()).find("test_errors.cpp"), std::string::npos) << e.what();
  }
}

}  // namespace

// One case per remaining user-reachable message of the core and ops layers, each
// checked for the op name and the values it reports.
TEST(ErrorTest, CoreAndOpsMessagesNameTheProblem) {
  using tandem::kFloat32;
  using tandem::kInt64;
  const Tensor x = f32({2, 3});
  expect_error([] { tandem::uniform({2}, 1.0, 0.0); }, {"uniform: need finite lo <= hi", "[1, 0)"});
  expect_error([] { tandem::normal({2}, 0.0, -1.0); }, {"normal: ", "std=-1"});
  expect_error(
      [&] {
        tandem::linear(x, f32({4, 3}), f32({5}));
      },
      {"linear: bias [5]", "out_features 4"});
  expect_error(
      [&] {
        tandem::linear(x, f32({4, 5}));
      },
      {"linear: input [2, 3] has 3 features", "weight [4, 5] expects 5"});
  expect_error(
      [&] {
        tandem::gather(x, 1, tandem::zeros({3, 3}, kInt64));
      },
      {"gather: index [3, 3] and input [2, 3]", "every dim except dim 1"});
  expect_error(
      [&] {
        tandem::where(tandem::ones({2, 3}), x, x);
      },
      {"where: the condition must be a uint8 mask", "float32[2, 3]"});
  expect_error([] { tandem::Device("gpu:0"); }, {"Device: invalid device string 'gpu:0'"});
  expect_error([] { tandem::Device("cuda:x"); }, {"Device: invalid device string 'cuda:x'"});
  expect_error([] { tandem::empty({2, -1}); }, {"empty: negative dimension", "[2, -1]"});
  expect_error(
      [&] {
        tandem::stack({x, f32({3, 2})});
      },
      {"stack: tensor 1 has shape [3, 2]", "tensor 0 has [2, 3]"});
  expect_error([] { f32({2, 3, 4}).flatten(2, 1); }, {"flatten: start_dim 2", "end_dim 1"});
  expect_error(
      [&] {
        Tensor y = f32({4});
        y.copy_(x);
      },
      {"copy_: source float32[2, 3]", "destination float32[4]"});
  expect_error([&] { tandem::to_vector<double>(x); },
               {"to_vector: tensor has dtype float32", "float64 was requested"});
  expect_error(
      [&] {
        tandem::index_select(x, 0, tandem::zeros({1, 1}, kInt64));
      },
      {"index_select: index must be 1-D", "[1, 1]"});
  expect_error([] { tandem::one_hot(tandem::zeros({2}, kInt64), 0); },
               {"one_hot: num_classes must be positive", "got 0"});
  expect_error(
      [] {
        tandem::max(f32({2, 0}), 1);
      },
      {"max: cannot reduce over an empty dimension", "float32[2, 0]"});
  expect_error([&] { tandem::mm(f32({2, 3, 4}), x); }, {"mm: expected 2-D tensors", "[2, 3, 4]"});
  expect_error([&] { tandem::bmm(x, x); }, {"bmm: expected 3-D tensors", "[2, 3]"});
  expect_error(
      [&] {
        Tensor y = f32({3});
        y.add_(x);
      },
      {"add_: [2, 3] cannot be broadcast to the destination shape [3]"});
  expect_error(
      [] {
        tandem::empty({2},
                      tandem::TensorOptions(tandem::Device(tandem::kCUDA)).pinned_memory(true));
      },
      "pinned_memory applies to CPU tensors only");
  expect_error(
      [] {
        tandem::cat({tandem::full({}, 1.0), tandem::full({}, 2.0)});
      },
      "cat: zero-dimensional tensors cannot be concatenated");
  expect_error(
      [] {
        tandem::index_select(f32({0, 3}), 0, tandem::zeros({2}, kInt64));
      },
      "index_select: cannot select from an empty dimension");
  expect_error([] { tandem::div(tandem::ones({3}, kInt64), tandem::zeros({3}, kInt64)); },
               "div: integer division by zero");
  expect_error([] { tandem::div(tandem::ones({3}, kInt64), 0.0); },
               "div: integer division by zero");
  expect_error([&] { tandem::add(x, Tensor()); }, "add: second input is an undefined tensor");
  expect_error([] { tandem::randint(0, 5, {2}, kFloat32); },
               {"randint: dtype float32 is not supported", "int64 or int32"});
  expect_error([] { tandem::dropout_mask({2}, 0.5, kInt64); },
               {"dropout: dtype int64 is not supported"});
  expect_error([&] { x.clamp(1.0, 0.0); }, {"clamp: lo (1) must not exceed hi (0)"});
  expect_error([] { tandem::arange(0.0, 5.0, 0.0); }, {"arange: ", "non-zero step"});
  expect_error([] { tandem::arange(5.0, 0.0, 1.0); }, {"arange: step 1 does not go from 5"});
  expect_error(
      [] {
        tandem::from_vector<float>({1.f, 2.f}, {3});
      },
      {"from_vector: 2 values do not fill shape [3]"});
}
