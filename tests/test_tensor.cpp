// Tensor basics: factories and options, queries, views that share storage
// (and are contiguous: is_contiguous's meaning), layout copies, dtype
// conversion, copy_/fill_/item, host round trips, arange, empty tensors,
// printing, and the backends' element-size dispatch (visit_word).
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <cstring>
#include <random>
#include <sstream>
#include <type_traits>
#include <utility>

#include "core/fast_divmod.h"
#include "core/visit_word.h"
#include "test_util.h"

namespace {

using tandem::DType;
using tandem::Shape;
using tandem::Tensor;
using tt::expect_close;
using tt::expect_equal;

// ---- dtype / device / shape helpers ----------------------------------------------

TEST(DTypeTest, NamesSizesAndFloatingness) {
  EXPECT_STREQ(tandem::dtype_name(tandem::kFloat32), "float32");
  EXPECT_STREQ(tandem::dtype_name(tandem::kFloat64), "float64");
  EXPECT_STREQ(tandem::dtype_name(tandem::kInt32), "int32");
  EXPECT_STREQ(tandem::dtype_name(tandem::kInt64), "int64");
  EXPECT_STREQ(tandem::dtype_name(tandem::kUInt8), "uint8");
  EXPECT_EQ(tandem::element_size(tandem::kFloat32), 4u);
  EXPECT_EQ(tandem::element_size(tandem::kFloat64), 8u);
  EXPECT_EQ(tandem::element_size(tandem::kInt32), 4u);
  EXPECT_EQ(tandem::element_size(tandem::kInt64), 8u);
  EXPECT_EQ(tandem::element_size(tandem::kUInt8), 1u);
  EXPECT_TRUE(tandem::is_floating(tandem::kFloat32));
  EXPECT_TRUE(tandem::is_floating(tandem::kFloat64));
  EXPECT_FALSE(tandem::is_floating(tandem::kInt32));
  EXPECT_FALSE(tandem::is_floating(tandem::kInt64));
  EXPECT_FALSE(tandem::is_floating(tandem::kUInt8));
  std::ostringstream os;
  os << tandem::kInt64;
  EXPECT_EQ(os.str(), "int64");
}

TEST(DeviceTest, ParsesAndPrints) {
  const tandem::Device cpu("cpu");
  EXPECT_TRUE(cpu.is_cpu());
  EXPECT_EQ(cpu.str(), "cpu");
  const tandem::Device c1("cuda:1");
  EXPECT_TRUE(c1.is_cuda());
  EXPECT_EQ(c1.index(), 1);
  EXPECT_EQ(c1.str(), "cuda:1");
  const tandem::Device c0("cuda");
  EXPECT_EQ(c0.index(), 0);
  EXPECT_EQ(c0, tandem::Device(tandem::kCUDA, 0));
  EXPECT_NE(c0, c1);
  EXPECT_EQ(tandem::Device(tandem::kCPU, 3).index(), 0);  // CPU has no index
  std::ostringstream os;
  os << c1;
  EXPECT_EQ(os.str(), "cuda:1");
}

TEST(ShapeTest, StrAndNumel) {
  EXPECT_EQ(tandem::shape_str({64, 3072}), "[64, 3072]");
  EXPECT_EQ(tandem::shape_str({}), "[]");
  EXPECT_EQ(tandem::shape_numel({2, 3, 7}), 42);
  EXPECT_EQ(tandem::shape_numel({}), 1);
  EXPECT_EQ(tandem::shape_numel({4, 0, 3}), 0);
}

// ---- Factories -------------------------------------------------------------------

TEST(FactoryTest, ZerosOnesFullWithOptions) {
  for (DType dt : tt::all_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    const Shape shape{3, 7};
    Tensor z = tandem::zeros(shape, dt);
    Tensor o = tandem::ones(shape, tandem::dtype(dt));
    Tensor f = tandem::full(shape, 5.0, tandem::TensorOptions(dt).device(tandem::kCPU));
    for (const Tensor* t : {&z, &o, &f}) {
      EXPECT_EQ(t->dtype(), dt);
      EXPECT_EQ(t->sizes(), shape);
      EXPECT_EQ(t->numel(), 21);
      EXPECT_EQ(t->dim(), 2);
      EXPECT_TRUE(t->is_cpu());
      EXPECT_FALSE(t->is_cuda());
      EXPECT_FALSE(t->is_pinned());
      EXPECT_EQ(t->element_size(), tandem::element_size(dt));
      EXPECT_EQ(t->nbytes(), 21 * tandem::element_size(dt));
    }
    expect_close(z, tt::Ref{shape, std::vector<double>(21, 0.0)}, tt::exact());
    expect_close(o, tt::Ref{shape, std::vector<double>(21, 1.0)}, tt::exact());
    expect_close(f, tt::Ref{shape, std::vector<double>(21, 5.0)}, tt::exact());
  }
}

TEST(FactoryTest, DefaultsAreFloat32OnCpu) {
  Tensor t = tandem::zeros({2});
  EXPECT_EQ(t.dtype(), tandem::kFloat32);
  EXPECT_EQ(t.device(), tandem::Device(tandem::kCPU));
  Tensor e = tandem::empty({4, 5});
  EXPECT_EQ(e.sizes(), (Shape{4, 5}));
  EXPECT_EQ(e.dtype(), tandem::kFloat32);
}

TEST(FactoryTest, FullWithFractionalValue) {
  Tensor f = tandem::full({5}, -2.75, tandem::kFloat64);
  expect_close(f, tt::Ref{{5}, std::vector<double>(5, -2.75)}, tt::exact());
  Tensor g = tandem::full({3}, 0.1);  // float32: rounded once
  expect_close(g, tt::Ref{{3}, std::vector<double>(3, static_cast<double>(0.1f))}, tt::exact());
}

TEST(FactoryTest, LikeFactoriesKeepShapeAndDtype) {
  Tensor x = tt::random_tensor({2, 3, 4}, tandem::kFloat64);
  for (const Tensor& t : {tandem::empty_like(x), tandem::zeros_like(x), tandem::ones_like(x),
                          tandem::full_like(x, 3.5)}) {
    EXPECT_EQ(t.sizes(), x.sizes());
    EXPECT_EQ(t.dtype(), tandem::kFloat64);
    EXPECT_FALSE(t.is_same(x));
    EXPECT_NE(t.raw_data(), x.raw_data());
  }
  expect_close(tandem::zeros_like(x), tt::Ref{x.sizes(), std::vector<double>(24, 0.0)},
               tt::exact());
  expect_close(tandem::ones_like(x), tt::Ref{x.sizes(), std::vector<double>(24, 1.0)}, tt::exact());
  expect_close(tandem::full_like(x, 3.5), tt::Ref{x.sizes(), std::vector<double>(24, 3.5)},
               tt::exact());
  Tensor xi = tt::random_tensor({5}, tandem::kInt32, 0, 9);
  EXPECT_EQ(tandem::zeros_like(xi).dtype(), tandem::kInt32);
}

TEST(FactoryTest, FromVectorToVectorRoundTrip) {
  const std::vector<float> vf = {1.5f, -2.25f, 3.0f, 0.125f, 7.0f, -0.5f};
  Tensor t = tandem::from_vector(vf, {2, 3});
  EXPECT_EQ(t.dtype(), tandem::kFloat32);
  EXPECT_EQ(t.sizes(), (Shape{2, 3}));
  EXPECT_EQ(tandem::to_vector<float>(t), vf);

  const std::vector<int64_t> vi = {5, -3, 1LL << 40};
  Tensor ti = tandem::from_vector(vi);
  EXPECT_EQ(ti.dtype(), tandem::kInt64);
  EXPECT_EQ(ti.sizes(), (Shape{3}));
  EXPECT_EQ(tandem::to_vector<int64_t>(ti), vi);

  const std::vector<uint8_t> vu = {0, 255, 17};
  EXPECT_EQ(tandem::to_vector<uint8_t>(tandem::from_vector(vu)), vu);
  const std::vector<int32_t> v32 = {-7, 0, 2147483647};
  EXPECT_EQ(tandem::to_vector<int32_t>(tandem::from_vector(v32)), v32);
  const std::vector<double> vd = tt::uniform_values(33, -1e3, 1e3);
  EXPECT_EQ(tandem::to_vector<double>(tandem::from_vector(vd)), vd);

  // from_vector is a copy: changing the vector afterwards does not matter.
  std::vector<double> src = {1.0, 2.0};
  Tensor c = tandem::from_vector(src);
  src[0] = 99.0;
  EXPECT_EQ(tandem::to_vector<double>(c)[0], 1.0);
}

TEST(FactoryTest, FromVectorConvertsToRequestedDtype) {
  const std::vector<double> v = {1.25, -2.5, 3.0, 100.0};
  Tensor t = tandem::from_vector(v, {2, 2}, tandem::kFloat32);
  EXPECT_EQ(t.dtype(), tandem::kFloat32);
  EXPECT_EQ(tandem::to_vector<float>(t), (std::vector<float>{1.25f, -2.5f, 3.0f, 100.0f}));
  Tensor i = tandem::from_vector(std::vector<double>{1.0, 2.0, 3.0}, {3}, tandem::kInt32);
  EXPECT_EQ(tandem::to_vector<int32_t>(i), (std::vector<int32_t>{1, 2, 3}));
}

TEST(FactoryTest, FromBlobCopies) {
  std::vector<int32_t> host = {1, 2, 3, 4, 5, 6};
  Tensor t = tandem::from_blob(host.data(), {3, 2}, tandem::kInt32, tandem::kFloat64);
  EXPECT_EQ(t.dtype(), tandem::kFloat64);
  EXPECT_EQ(t.sizes(), (Shape{3, 2}));
  host[0] = 42;
  EXPECT_EQ(tandem::to_vector<double>(t), (std::vector<double>{1, 2, 3, 4, 5, 6}));
}

TEST(FactoryTest, Arange) {
  Tensor a = tandem::arange(5);
  EXPECT_EQ(a.dtype(), tandem::kInt64);
  EXPECT_EQ(tandem::to_vector<int64_t>(a), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  Tensor b = tandem::arange(2, 11, 3);
  EXPECT_EQ(tandem::to_vector<int64_t>(b), (std::vector<int64_t>{2, 5, 8}));
  Tensor c = tandem::arange(5, 0, -1);
  EXPECT_EQ(tandem::to_vector<int64_t>(c), (std::vector<int64_t>{5, 4, 3, 2, 1}));
  Tensor d = tandem::arange(0, 1, 0.25, tandem::kFloat32);
  EXPECT_EQ(d.dtype(), tandem::kFloat32);
  EXPECT_EQ(tandem::to_vector<float>(d), (std::vector<float>{0.0f, 0.25f, 0.5f, 0.75f}));
  Tensor e = tandem::arange(-1.5, 1.0, 0.5, tandem::kFloat64);
  EXPECT_EQ(tandem::to_vector<double>(e), (std::vector<double>{-1.5, -1.0, -0.5, 0.0, 0.5}));
  Tensor f = tandem::arange(4, tandem::kFloat64);
  EXPECT_EQ(tandem::to_vector<double>(f), (std::vector<double>{0, 1, 2, 3}));
  Tensor g = tandem::arange(0, 10, 3, tandem::kInt32);  // ceil(10 / 3) elements
  EXPECT_EQ(tandem::to_vector<int32_t>(g), (std::vector<int32_t>{0, 3, 6, 9}));
  EXPECT_EQ(tandem::arange(0, 1, 0.1, tandem::kFloat64).numel(), 10);
  EXPECT_EQ(tandem::arange(1, 2.5, 0.5, tandem::kFloat32).numel(), 3);
  EXPECT_EQ(tandem::arange(3, 3).numel(), 0);
  EXPECT_EQ(tandem::arange(0).numel(), 0);
  Tensor big = tandem::arange(1000003);
  const auto bv = tandem::to_vector<int64_t>(big);
  ASSERT_EQ(bv.size(), 1000003u);
  for (size_t i = 0; i < bv.size(); i += 9973) ASSERT_EQ(bv[i], static_cast<int64_t>(i));
  EXPECT_EQ(bv.back(), 1000002);
}

// ---- Queries -----------------------------------------------------------------

TEST(TensorTest, UndefinedTensor) {
  Tensor u;
  EXPECT_FALSE(u.defined());
  EXPECT_TRUE(tandem::zeros({1}).defined());
}

TEST(TensorTest, SizeWithNegativeDims) {
  Tensor t = tandem::empty({2, 3, 5});
  EXPECT_EQ(t.size(0), 2);
  EXPECT_EQ(t.size(2), 5);
  EXPECT_EQ(t.size(-1), 5);
  EXPECT_EQ(t.size(-3), 2);
  EXPECT_EQ(t.numel(), 30);
  EXPECT_TRUE(t.is_contiguous());
}

// is_contiguous() is always true because it is true: every view is one dense
// row-major range of its storage (element i of the view is element
// offset + i of the storage), and contiguous() returns the tensor itself.
TEST(TensorTest, EveryTensorIsContiguous) {
  const Tensor base = tt::random_tensor({5, 7, 3}, tandem::kFloat32);
  const float* p = base.data_ptr<float>();
  const std::vector<std::pair<Tensor, int64_t>> views = {
      {base, 0},
      {base.slice(0, 2, 5), 2 * 21},
      {base.select(0, 3), 3 * 21},
      {base[4].slice(0, 1, 6), 4 * 21 + 3},
      {base.view({35, 3}).narrow(0, 11, 9), 33},
      {base.flatten(), 0},
      {base.unsqueeze(1).squeeze(), 0},
      {base.slice(0, 1, 4).view({-1}), 21},
  };
  for (const auto& v : views) {
    const Tensor& t = v.first;
    SCOPED_TRACE(tandem::shape_str(t.sizes()));
    EXPECT_TRUE(t.is_contiguous());
    EXPECT_EQ(t.data_ptr<float>(), p + v.second);
    const std::vector<float> got = tandem::to_vector<float>(t);
    for (int64_t i = 0; i < t.numel(); ++i) EXPECT_EQ(got[static_cast<size_t>(i)], p[v.second + i]);
    const Tensor c = t.contiguous();
    EXPECT_TRUE(c.is_same(t));
  }
  // permute/transpose copy into a fresh contiguous tensor.
  const Tensor tr = base.transpose(0, 2);
  EXPECT_TRUE(tr.is_contiguous());
  EXPECT_NE(tr.data_ptr<float>(), p);
  EXPECT_EQ(tr.sizes(), Shape({3, 7, 5}));
  EXPECT_EQ(tr.contiguous().data_ptr<float>(), tr.data_ptr<float>());
}

// visit_word (core/visit_word.h), the element-size dispatch of both backends'
// permute/index_select/gather, picks the unsigned word of each dtype's size.
TEST(TensorTest, VisitWordMatchesEveryDtypeSize) {
  for (DType dt : tt::all_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    size_t got = 0;
    bool is_unsigned = false;
    tandem::visit_word(tandem::element_size(dt), "test", [&](auto word) {
      got = sizeof(word);
      is_unsigned = std::is_unsigned<decltype(word)>::value;
    });
    EXPECT_EQ(got, tandem::element_size(dt));
    EXPECT_TRUE(is_unsigned);
  }
  tt::expect_error([] { tandem::visit_word(3, "permute", [](auto) {}); },
                   "permute: unsupported element size 3");
}

TEST(TensorTest, ZeroDimTensor) {
  Tensor s = tandem::full({}, 2.5);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.item<double>(), 2.5);
  Tensor f = tandem::from_vector(std::vector<double>{4.0}, {});
  EXPECT_EQ(f.dim(), 0);
  EXPECT_EQ(f.item<float>(), 4.0f);
}

TEST(TensorTest, DataPtrPointsAtTheElements) {
  Tensor t = tandem::from_vector(std::vector<double>{1.0, 2.0, 3.0});
  double* p = t.data_ptr<double>();
  EXPECT_EQ(static_cast<void*>(p), t.raw_data());
  EXPECT_EQ(p[2], 3.0);
  p[1] = -8.0;
  EXPECT_EQ(tandem::to_vector<double>(t)[1], -8.0);
}

// ---- Views share storage ----------------------------------------------------------

TEST(ViewTest, ReshapeAndViewShareStorage) {
  Tensor x = tt::random_tensor({2, 3, 4}, tandem::kFloat32);
  const auto xv = tt::to_doubles(x);
  Tensor r = x.reshape({6, 4});
  Tensor v = x.view({4, -1});
  Tensor f = x.view({-1});
  EXPECT_EQ(r.sizes(), (Shape{6, 4}));
  EXPECT_EQ(v.sizes(), (Shape{4, 6}));
  EXPECT_EQ(f.sizes(), (Shape{24}));
  for (const Tensor& t : {r, v, f}) {
    EXPECT_EQ(t.raw_data(), x.raw_data());
    EXPECT_EQ(tt::to_doubles(t), xv);
  }
  // Writes through a view are visible in the base and vice versa.
  f.fill_(3.0);
  expect_close(x, tt::Ref{{2, 3, 4}, std::vector<double>(24, 3.0)}, tt::exact());
  x.fill_(-1.0);
  expect_close(r, tt::Ref{{6, 4}, std::vector<double>(24, -1.0)}, tt::exact());
}

TEST(ViewTest, Flatten) {
  Tensor x = tt::random_tensor({2, 3, 4}, tandem::kFloat64);
  EXPECT_EQ(x.flatten().sizes(), (Shape{24}));
  EXPECT_EQ(x.flatten(1).sizes(), (Shape{2, 12}));
  EXPECT_EQ(x.flatten(0, 1).sizes(), (Shape{6, 4}));
  EXPECT_EQ(x.flatten(-2, -1).sizes(), (Shape{2, 12}));
  EXPECT_EQ(x.flatten(1).raw_data(), x.raw_data());
  EXPECT_EQ(tt::to_doubles(x.flatten(1)), tt::to_doubles(x));
}

TEST(ViewTest, SqueezeUnsqueeze) {
  Tensor x = tt::random_tensor({1, 3, 1, 4}, tandem::kFloat32);
  EXPECT_EQ(x.squeeze().sizes(), (Shape{3, 4}));
  EXPECT_EQ(x.squeeze(0).sizes(), (Shape{3, 1, 4}));
  EXPECT_EQ(x.squeeze(2).sizes(), (Shape{1, 3, 4}));
  EXPECT_EQ(x.squeeze(-2).sizes(), (Shape{1, 3, 4}));
  EXPECT_EQ(x.squeeze().raw_data(), x.raw_data());
  Tensor y = tt::random_tensor({2, 3}, tandem::kFloat32);
  EXPECT_EQ(y.unsqueeze(0).sizes(), (Shape{1, 2, 3}));
  EXPECT_EQ(y.unsqueeze(1).sizes(), (Shape{2, 1, 3}));
  EXPECT_EQ(y.unsqueeze(2).sizes(), (Shape{2, 3, 1}));
  EXPECT_EQ(y.unsqueeze(-1).sizes(), (Shape{2, 3, 1}));
  EXPECT_EQ(y.unsqueeze(1).raw_data(), y.raw_data());
  EXPECT_EQ(tt::to_doubles(y.unsqueeze(1)), tt::to_doubles(y));
  Tensor ones = tandem::ones({1, 1});
  EXPECT_EQ(ones.squeeze().dim(), 0);
  EXPECT_EQ(ones.squeeze().numel(), 1);
}

TEST(ViewTest, SliceSelectNarrowAlias) {
  Tensor x = tt::random_tensor({5, 3}, tandem::kFloat64);
  const auto xv = tt::to_doubles(x);
  const char* base = static_cast<const char*>(x.raw_data());

  Tensor s = x.slice(0, 1, 4);
  EXPECT_EQ(s.sizes(), (Shape{3, 3}));
  EXPECT_EQ(static_cast<const char*>(s.raw_data()), base + 1 * 3 * sizeof(double));
  EXPECT_EQ(tt::to_doubles(s), std::vector<double>(xv.begin() + 3, xv.begin() + 12));

  Tensor r = x.select(0, 2);
  EXPECT_EQ(r.sizes(), (Shape{3}));
  EXPECT_EQ(static_cast<const char*>(r.raw_data()), base + 2 * 3 * sizeof(double));
  EXPECT_EQ(tt::to_doubles(r), std::vector<double>(xv.begin() + 6, xv.begin() + 9));
  EXPECT_EQ(tt::to_doubles(x[4]), std::vector<double>(xv.begin() + 12, xv.end()));
  EXPECT_EQ(tt::to_doubles(x.select(0, -1)), std::vector<double>(xv.begin() + 12, xv.end()));

  Tensor n = x.narrow(0, 3, 2);
  EXPECT_EQ(n.sizes(), (Shape{2, 3}));
  EXPECT_EQ(static_cast<const char*>(n.raw_data()), base + 3 * 3 * sizeof(double));

  // Writes through a slice change only those rows of the base.
  s.fill_(7.0);
  auto expected = xv;
  for (int i = 3; i < 12; ++i) expected[i] = 7.0;
  EXPECT_EQ(tt::to_doubles(x), expected);
  // A slice of a slice keeps the offset.
  Tensor ss = s.slice(0, 1, 2);
  EXPECT_EQ(static_cast<const char*>(ss.raw_data()), base + 2 * 3 * sizeof(double));
  Tensor empty_rows = x.slice(0, 2, 2);
  EXPECT_EQ(empty_rows.sizes(), (Shape{0, 3}));
}

TEST(ViewTest, ViewOfSliceKeepsOffset) {
  Tensor x = tandem::arange(12, tandem::kFloat32).view({4, 3});
  Tensor v = x.slice(0, 2, 4).view({-1});
  EXPECT_EQ(tandem::to_vector<float>(v), (std::vector<float>{6, 7, 8, 9, 10, 11}));
  EXPECT_EQ(tandem::to_vector<float>(x[1].unsqueeze(0)), (std::vector<float>{3, 4, 5}));
}

// ---- Layout copies --------------------------------------------------------------

TEST(LayoutTest, PermuteCopies) {
  const Shape shape{2, 3, 4};
  Tensor x = tt::random_tensor(shape, tandem::kFloat32);
  const auto xv = tt::to_doubles(x);
  const std::vector<Shape> perms = {{0, 1, 2}, {2, 0, 1}, {1, 2, 0}, {2, 1, 0}, {0, 2, 1}};
  for (const Shape& perm : perms) {
    SCOPED_TRACE(tt::str(perm));
    Tensor p = x.permute(perm);
    Shape out_shape(3);
    for (int i = 0; i < 3; ++i) out_shape[i] = shape[perm[i]];
    std::vector<double> ref(24);
    const auto in_strides = tt::strides_of(shape);
    for (int64_t f = 0; f < 24; ++f) {
      const auto oi = tt::unravel(f, out_shape);
      int64_t src = 0;
      for (int i = 0; i < 3; ++i) src += oi[i] * in_strides[perm[i]];
      ref[f] = xv[src];
    }
    expect_close(p, tt::Ref{out_shape, ref}, tt::exact());
    EXPECT_NE(p.raw_data(), x.raw_data());
  }
  // Negative dims in a permutation.
  expect_equal(x.permute({-1, 0, 1}), x.permute({2, 0, 1}));
  // A copy: writing to it leaves x alone.
  Tensor p = x.permute({1, 0, 2});
  p.fill_(0.0);
  EXPECT_EQ(tt::to_doubles(x), xv);
}

TEST(LayoutTest, TransposeAndT) {
  Tensor x = tt::random_tensor({7, 33}, tandem::kFloat64);
  const auto xv = tt::to_doubles(x);
  std::vector<double> ref(xv.size());
  for (int i = 0; i < 7; ++i)
    for (int j = 0; j < 33; ++j) ref[j * 7 + i] = xv[i * 33 + j];
  expect_close(x.t(), tt::Ref{{33, 7}, ref}, tt::exact());
  expect_close(x.transpose(0, 1), tt::Ref{{33, 7}, ref}, tt::exact());
  expect_close(x.transpose(-1, 0), tt::Ref{{33, 7}, ref}, tt::exact());
  Tensor y = tt::random_tensor({2, 3, 5}, tandem::kInt32, -9, 9);
  expect_equal(y.transpose(0, 2), y.permute({2, 1, 0}));
  expect_equal(y.transpose(1, 1), y);
}

// ---- Conversion and copies ----------------------------------------------------------

TEST(ConvertTest, ToDtypeAllPairs) {
  // Integers in [0, 200] are exact in every dtype.
  const auto values = tt::int_values(37, 0, 200);
  for (DType from : tt::all_dtypes()) {
    for (DType to : tt::all_dtypes()) {
      SCOPED_TRACE(std::string(tandem::dtype_name(from)) + " -> " + tandem::dtype_name(to));
      Tensor x = tt::make_tensor(values, {37}, from);
      Tensor y = x.to(to);
      EXPECT_EQ(y.dtype(), to);
      EXPECT_EQ(y.sizes(), x.sizes());
      expect_close(y, tt::Ref{{37}, values}, tt::exact());
      if (from == to) {
        EXPECT_TRUE(y.is_same(x)) << "to() with nothing to change returns *this";
      } else {
        EXPECT_NE(y.raw_data(), x.raw_data());
      }
    }
  }
}

TEST(ConvertTest, FloatToIntTruncatesTowardZero) {
  Tensor x = tandem::from_vector(std::vector<double>{2.7, -2.7, 0.4, -0.4, 100.99});
  EXPECT_EQ(tandem::to_vector<int64_t>(x.to(tandem::kInt64)),
            (std::vector<int64_t>{2, -2, 0, 0, 100}));
  EXPECT_EQ(tandem::to_vector<int32_t>(x.to(tandem::kInt32)),
            (std::vector<int32_t>{2, -2, 0, 0, 100}));
  // float64 -> float32 rounds to nearest.
  const auto v = tt::uniform_values(101, -1e4, 1e4);
  Tensor d = tandem::from_vector(v);
  const auto f = tandem::to_vector<float>(d.to(tandem::kFloat32));
  for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(f[i], static_cast<float>(v[i]));
}

TEST(ConvertTest, ToSameDeviceReturnsSelf) {
  Tensor x = tt::random_tensor({3}, tandem::kFloat32);
  EXPECT_TRUE(x.to(tandem::kCPU).is_same(x));
  EXPECT_TRUE(x.cpu().is_same(x));
  EXPECT_TRUE(x.to(tandem::Device(tandem::kCPU), tandem::kFloat32).is_same(x));
  Tensor y = x.to(tandem::Device(tandem::kCPU), tandem::kFloat64);
  EXPECT_EQ(y.dtype(), tandem::kFloat64);
  expect_close(y, x, tt::exact());
}

TEST(ConvertTest, CloneIsADeepCopy) {
  for (DType dt : tt::all_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    Tensor x = tt::random_tensor({4, 9}, dt, 0, 100);
    const auto xv = tt::to_doubles(x);
    Tensor c = x.clone();
    EXPECT_FALSE(c.is_same(x));
    EXPECT_NE(c.raw_data(), x.raw_data());
    EXPECT_EQ(c.dtype(), dt);
    expect_equal(c, x);
    c.fill_(1.0);
    EXPECT_EQ(tt::to_doubles(x), xv);
  }
  Tensor e = tandem::empty({0, 4});
  EXPECT_EQ(e.clone().sizes(), (Shape{0, 4}));
}

TEST(CopyTest, CopySameAndConvertingDtype) {
  Tensor src = tt::random_tensor({3, 5}, tandem::kFloat64, -50, 50);
  const auto sv = tt::to_doubles(src);
  Tensor dst = tandem::empty({3, 5}, tandem::kFloat64);
  tt::poison(dst);
  Tensor& ret = dst.copy_(src);
  EXPECT_EQ(&ret, &dst);
  EXPECT_EQ(tt::to_doubles(dst), sv);

  Tensor dst32 = tandem::empty({15}, tandem::kFloat32);  // same numel, other shape
  tt::poison(dst32);
  dst32.copy_(src);
  EXPECT_EQ(dst32.sizes(), (Shape{15}));
  expect_close(dst32, tt::Ref{{15}, tt::round_to_float(sv)}, tt::exact());

  Tensor ints = tt::random_tensor({15}, tandem::kInt32, -1000, 1000);
  Tensor dstd = tandem::empty({3, 5}, tandem::kFloat64);
  dstd.copy_(ints);
  expect_close(dstd, tt::Ref{{3, 5}, tt::to_doubles(ints)}, tt::exact());
}

TEST(CopyTest, OneElementSourceBroadcasts) {
  Tensor dst = tandem::empty({4, 6}, tandem::kFloat32);
  tt::poison(dst);
  dst.copy_(tandem::full({1}, -3.5, tandem::kFloat64));
  expect_close(dst, tt::Ref{{4, 6}, std::vector<double>(24, -3.5)}, tt::exact());
  dst.copy_(tandem::full({}, 2.0, tandem::kInt64));
  expect_close(dst, tt::Ref{{4, 6}, std::vector<double>(24, 2.0)}, tt::exact());
}

TEST(CopyTest, OneElementBroadcastKeepsInt64Exact) {
  const int64_t big = (1LL << 53) + 1;  // not representable as a double
  Tensor dst = tandem::zeros({3}, tandem::kInt64);
  dst.copy_(tandem::from_vector(std::vector<int64_t>{big}));
  EXPECT_EQ(tandem::to_vector<int64_t>(dst), std::vector<int64_t>(3, big));
}

TEST(CopyTest, OverlappingSlicesOfOneTensor) {
  // dst and src share storage and overlap: the values src had before the copy
  // (memmove semantics), never a smear, and no error.
  Tensor x = tandem::arange(10, tandem::kFloat32).view({10, 1});
  x.slice(0, 1, 10).copy_(x.slice(0, 0, 9));
  EXPECT_EQ(tandem::to_vector<float>(x), (std::vector<float>{0, 0, 1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST(CopyTest, OverlappingCopiesReadTheSourceFirst) {
  // Issue 18.4: copy_ between overlapping views of one tensor copies the
  // source's values as they were before the copy (memcpy on overlapping
  // ranges was undefined: AddressSanitizer's memcpy-param-overlap), in both
  // directions, for the one-element broadcast, and for a source that is the
  // destination's own bytes under another handle.
  for (int64_t n : {int64_t{9}, int64_t{40001}}) {
    SCOPED_TRACE("n " + std::to_string(n));
    Tensor x = tt::random_tensor({n, 3}, tandem::kFloat64);
    auto v = tt::to_doubles(x);
    x.slice(0, 1, n).copy_(x.slice(0, 0, n - 1));
    std::vector<double> ref(v.begin(), v.begin() + 3);
    ref.insert(ref.end(), v.begin(), v.end() - 3);
    expect_close(x, tt::Ref{{n, 3}, ref}, tt::exact());

    v = tt::to_doubles(x);
    x.slice(0, 0, n - 1).copy_(x.slice(0, 1, n));
    ref.assign(v.begin() + 3, v.end());
    ref.insert(ref.end(), v.end() - 3, v.end());
    expect_close(x, tt::Ref{{n, 3}, ref}, tt::exact());

    v = tt::to_doubles(x);
    x.copy_(x.detach());  // the same bytes, another handle
    expect_close(x, tt::Ref{{n, 3}, v}, tt::exact());

    Tensor flat = x.view({-1});
    const double kept = v[7];
    flat.copy_(flat.slice(0, 7, 8));  // one element of the destination, broadcast
    expect_close(x, tt::Ref{{n, 3}, std::vector<double>(static_cast<size_t>(3 * n), kept)},
                 tt::exact());
  }
}

TEST(CopyTest, CopyIntoASliceWritesTheBase) {
  Tensor base = tandem::zeros({4, 3}, tandem::kFloat64);
  Tensor src = tt::random_tensor({2, 3}, tandem::kFloat64);
  base.slice(0, 1, 3).copy_(src);
  const auto sv = tt::to_doubles(src);
  std::vector<double> ref(12, 0.0);
  for (int i = 0; i < 6; ++i) ref[3 + i] = sv[i];
  expect_close(base, tt::Ref{{4, 3}, ref}, tt::exact());
}

TEST(FillTest, FillAllDtypesAndViews) {
  for (DType dt : tt::all_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    Tensor t = tandem::empty({7, 33}, dt);
    Tensor& r = t.fill_(9.0);
    EXPECT_EQ(&r, &t);
    expect_close(t, tt::Ref{{7, 33}, std::vector<double>(231, 9.0)}, tt::exact());
    t.zero_();
    expect_close(t, tt::Ref{{7, 33}, std::vector<double>(231, 0.0)}, tt::exact());
  }
  Tensor x = tandem::zeros({3, 2});
  x[1].fill_(4.0);
  expect_close(x, tt::Ref{{3, 2}, {0, 0, 4, 4, 0, 0}}, tt::exact());
  Tensor big = tandem::empty({1000003}, tandem::kFloat32);
  big.fill_(0.5);
  const auto bv = tandem::to_vector<float>(big);
  EXPECT_EQ(std::count(bv.begin(), bv.end(), 0.5f), 1000003);
}

TEST(ItemTest, ItemConverts) {
  EXPECT_EQ(tandem::full({1}, 2.5).item<float>(), 2.5f);
  EXPECT_EQ(tandem::full({1}, 2.5).item<double>(), 2.5);
  EXPECT_EQ(tandem::full({1, 1}, -7, tandem::kInt64).item<int64_t>(), -7);
  EXPECT_EQ(tandem::full({}, 200, tandem::kUInt8).item<int>(), 200);
  EXPECT_EQ(tandem::full({1}, 3, tandem::kInt32).item<double>(), 3.0);
  const int64_t big = (1LL << 53) + 1;  // not representable as a double
  EXPECT_EQ(tandem::from_vector(std::vector<int64_t>{big}).item<int64_t>(), big);
  Tensor x = tt::random_tensor({5}, tandem::kFloat64);
  EXPECT_EQ(x[3].item<double>(), tt::to_doubles(x)[3]);
}

TEST(OffsetViewTest, ClonesConversionsAndLayoutOfSlices) {
  Tensor x = tt::random_tensor({6, 5}, tandem::kFloat64);
  const auto xv = tt::to_doubles(x);
  const std::vector<double> rows(xv.begin() + 10, xv.begin() + 25);  // rows 2..4
  Tensor s = x.slice(0, 2, 5);
  Tensor c = s.clone();
  EXPECT_EQ(c.sizes(), (Shape{3, 5}));
  EXPECT_EQ(tt::to_doubles(c), rows);
  EXPECT_EQ(c.nbytes(), 15 * sizeof(double));
  EXPECT_EQ(tt::to_doubles(s.to(tandem::kFloat32)), tt::round_to_float(rows));
  std::vector<double> rt(15);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 5; ++j)
      rt[static_cast<size_t>(j * 3 + i)] = rows[static_cast<size_t>(i * 5 + j)];
  tt::expect_close(s.t(), tt::Ref{{5, 3}, rt}, tt::exact());
  tt::expect_close(s.permute({1, 0}), tt::Ref{{5, 3}, rt}, tt::exact());
  EXPECT_EQ(s[1].view({5, 1})[3].item<double>(), xv[18]);
}

// ---- The test helpers themselves: they must be able to fail ---------------------------

TEST(TestUtilTest, ExpectCloseCatchesMismatches) {
  Tensor a = tandem::from_vector(std::vector<double>{1.0, 2.0, 3.0});
  Tensor b = tandem::from_vector(std::vector<double>{1.0, 2.5, 3.0});
  EXPECT_NONFATAL_FAILURE(tt::expect_close(a, b, tt::default_tol(tandem::kFloat64)),
                          "max |error| 0.5");
  EXPECT_NONFATAL_FAILURE(tt::expect_close(a, b, tt::default_tol(tandem::kFloat64)), "at [1]");
  EXPECT_NONFATAL_FAILURE(tt::expect_close(a, a.view({3, 1}), tt::exact()), "shape [3]");
  Tensor n = tandem::from_vector(std::vector<double>{1.0, NAN, 3.0});
  EXPECT_NONFATAL_FAILURE(tt::expect_close(n, a, tt::exact()), "1 of 3 values differ");
  EXPECT_NONFATAL_FAILURE(tt::expect_equal(a, a.to(tandem::kFloat32)), "dtype");
  tt::expect_close(n, n, tt::exact());  // NaN matches NaN
  // Within tolerance: |a - b| <= atol + rtol * |ref|.
  Tensor c = tandem::from_vector(std::vector<double>{1.0 + 1e-6, 2.0, 3.0});
  tt::expect_close(c, a, tt::Tol{0.0, 1.1e-6});
  EXPECT_NONFATAL_FAILURE(tt::expect_close(c, a, tt::Tol{0.0, 0.9e-6}), "differ");
  tt::expect_close(c, a, tt::Tol{1.1e-6, 0.0});
}

TEST(TestUtilTest, ReferenceHelpers) {
  Shape out;
  EXPECT_TRUE(tt::broadcast_ref({3, 1, 5}, {4, 5}, &out));
  EXPECT_EQ(out, (Shape{3, 4, 5}));
  EXPECT_FALSE(tt::broadcast_ref({2, 3}, {4}, &out));
  EXPECT_EQ(tt::broadcast_index({2, 3, 4}, {4, 5}), 3 * 5 + 4);
  EXPECT_EQ(tt::broadcast_index({2, 3, 4}, {1, 5}), 4);
  EXPECT_EQ(tt::unravel(23, {2, 3, 4}), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_DOUBLE_EQ(tt::nmse({1.0, 2.0}, {1.0, 2.0}), 0.0);
  EXPECT_DOUBLE_EQ(tt::nmse({2.0, 0.0}, {1.0, 0.0}), 1.0);
  const auto v = tt::away_from({0.0, 1e-5, -1e-5, 0.5}, {0.0}, 1e-3);
  EXPECT_EQ(v, (std::vector<double>{1e-3, 1e-3, -1e-3, 0.5}));
  Tensor p = tandem::zeros({4});
  tt::poison(p);
  for (double x : tt::to_doubles(p)) EXPECT_TRUE(std::isnan(x));
}

// ---- Empty tensors ----------------------------------------------------------------

TEST(EmptyTest, EmptyTensorsThroughOps) {
  Tensor e = tandem::empty({0});
  EXPECT_EQ(e.numel(), 0);
  EXPECT_EQ(e.nbytes(), 0u);
  Tensor e2 = tandem::zeros({2, 0, 3}, tandem::kFloat64);
  EXPECT_EQ(e2.numel(), 0);
  EXPECT_EQ(e2.dim(), 3);
  EXPECT_TRUE(tandem::to_vector<double>(e2).empty());
  EXPECT_EQ(e2.clone().sizes(), (Shape{2, 0, 3}));
  EXPECT_EQ(e2.to(tandem::kFloat32).sizes(), (Shape{2, 0, 3}));
  EXPECT_EQ(e2.view({0, 5}).sizes(), (Shape{0, 5}));
  EXPECT_EQ(e2.permute({2, 0, 1}).sizes(), (Shape{3, 2, 0}));
  EXPECT_EQ(e2.fill_(1.0).numel(), 0);
  EXPECT_EQ(tandem::relu(e2).sizes(), (Shape{2, 0, 3}));
  EXPECT_EQ((e2 + e2).sizes(), (Shape{2, 0, 3}));
  EXPECT_EQ((e2 * 2.0).sizes(), (Shape{2, 0, 3}));
  Tensor c = tandem::empty({0, 3});
  c.copy_(tandem::empty({0}));
  EXPECT_EQ(c.numel(), 0);
  EXPECT_EQ(tandem::from_vector(std::vector<float>{}).sizes(), (Shape{0}));
}

// ---- Printing ----------------------------------------------------------------------

std::string printed(const Tensor& t) {
  std::ostringstream os;
  os << t;
  return os.str();
}

TEST(PrintTest, SmallFloat32MatchesPyTorchRepr) {
  Tensor v = tandem::from_vector(std::vector<float>{1.5f, 2.25f, 3.125f});
  EXPECT_EQ(printed(v), "tensor([1.5000, 2.2500, 3.1250])");
  Tensor m = tandem::from_vector(std::vector<float>{1.5f, 2.25f, 3.125f, 4.75f}, {2, 2});
  EXPECT_EQ(printed(m), "tensor([[1.5000, 2.2500],\n        [3.1250, 4.7500]])");
  EXPECT_EQ(m.to_string(), printed(m));
}

TEST(PrintTest, NonDefaultDtypesNameTheDtype) {
  const std::string d = printed(tandem::from_vector(std::vector<double>{1.5, -2.25}));
  EXPECT_NE(d.find("tensor(["), std::string::npos) << d;
  EXPECT_NE(d.find("1.5000"), std::string::npos) << d;
  EXPECT_NE(d.find("-2.2500"), std::string::npos) << d;
  EXPECT_NE(d.find("dtype="), std::string::npos) << d;
  EXPECT_NE(d.find("float64"), std::string::npos) << d;

  const std::string i = printed(tandem::from_vector(std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(i.rfind("tensor([1, 2, 3]", 0), 0u) << i;
  EXPECT_NE(i.find("int32"), std::string::npos) << i;

  const std::string f = printed(tandem::from_vector(std::vector<float>{1.5f}));
  EXPECT_EQ(f.find("dtype"), std::string::npos) << "float32 is the default dtype: " << f;
}

TEST(PrintTest, MorePyTorchStyleStrings) {
  EXPECT_EQ(printed(tandem::full({}, 2.5)), "tensor(2.5000)");
  EXPECT_EQ(printed(tandem::from_vector(std::vector<float>{1.0f, 2.0f, 3.0f})),
            "tensor([1., 2., 3.])");
  EXPECT_EQ(printed(tandem::from_vector(std::vector<float>{1.5f, -2.25f})),
            "tensor([ 1.5000, -2.2500])");
  EXPECT_EQ(printed(tandem::empty({0})), "tensor([])");
  EXPECT_EQ(printed(tandem::from_vector(std::vector<int64_t>{3, -10, 7})),
            "tensor([  3, -10,   7])");
  EXPECT_EQ(printed(tandem::from_vector(std::vector<uint8_t>{0, 255})),
            "tensor([  0, 255], dtype=uint8)");
}

TEST(PrintTest, SlicesPrintTheirOwnRows) {
  Tensor x = tandem::arange(6, tandem::kFloat32).view({3, 2});
  EXPECT_EQ(printed(x.slice(0, 1, 3)), "tensor([[2., 3.],\n        [4., 5.]])");
}

TEST(PrintTest, LargeIntegersPrintExactly) {
  // 2^53 + 1 is not representable as a double; printing must not round it.
  const int64_t big = (1LL << 53) + 1;
  const std::string s = printed(tandem::from_vector(std::vector<int64_t>{big}));
  EXPECT_NE(s.find("9007199254740993"), std::string::npos) << s;
}

TEST(PrintTest, ContentOfLargerTensors) {
  const std::string s = printed(tandem::full({2, 3, 4}, 0.5));
  EXPECT_EQ(s.rfind("tensor([[[", 0), 0u) << s;
  EXPECT_NE(s.find("0.5000"), std::string::npos) << s;
  const std::string l = printed(tandem::arange(5));
  EXPECT_NE(l.find("0, 1, 2, 3, 4"), std::string::npos) << l;
}

// ---- FastDivmod (core/fast_divmod.h, the CUDA kernels' index arithmetic) ----------

void expect_divmod(const tandem::FastDivmod& f, uint32_t n) {
  const uint32_t d = f.divisor;
  uint32_t q = 0, r = 0;
  f.divmod(n, q, r);
  ASSERT_EQ(q, n / d) << n << " / " << d;
  ASSERT_EQ(r, n % d) << n << " % " << d;
  ASSERT_EQ(f.div(n), n / d) << n << " / " << d;
  ASSERT_EQ(f.mod(n), n % d) << n << " % " << d;
}

TEST(FastDivmodTest, MatchesDivisionAndModuloUpToInt32Max) {
  constexpr uint32_t kMax = INT32_MAX;
  std::vector<uint32_t> divisors = {1,
                                    2,
                                    3,
                                    5,
                                    7,
                                    10,
                                    31,
                                    32,
                                    33,
                                    1000,
                                    65535,
                                    65536,
                                    65537,
                                    1000003,
                                    (1u << 30) - 1,
                                    1u << 30,
                                    (1u << 30) + 1,
                                    kMax - 1,
                                    kMax};
  for (uint32_t k = 1; k < 31; ++k)
    divisors.insert(divisors.end(), {(1u << k) - 1, 1u << k, (1u << k) + 1});
  std::uniform_int_distribution<uint32_t> any(0, kMax);
  std::uniform_int_distribution<uint32_t> any_divisor(1, kMax);
  for (int k = 0; k < 200; ++k) divisors.push_back(any_divisor(tt::rng()));
  for (uint32_t d : divisors) {
    const tandem::FastDivmod f(d);
    // Edges: 0, around multiples of d, the top of the range.
    for (uint32_t n : {0u, 1u, d - 1, d, d + 1, kMax, kMax - 1, kMax - d + 1, (kMax / d) * d,
                       (kMax / d) * d - 1})
      if (n <= kMax) expect_divmod(f, n);
    for (int k = 0; k < 2000; ++k) expect_divmod(f, any(tt::rng()));
    // Small numerators (the common case: an index inside a small tensor).
    for (uint32_t n = 0; n < 3000; ++n) expect_divmod(f, n);
  }
}

TEST(FastDivmodTest, SixtyFourBitFallbackAndRangeChecks) {
  const tandem::Divmod<int64_t> f(1000003);
  int64_t q = 0, r = 0;
  f.divmod(int64_t{5} << 40, q, r);
  EXPECT_EQ(q, (int64_t{5} << 40) / 1000003);
  EXPECT_EQ(r, (int64_t{5} << 40) % 1000003);
  EXPECT_TRUE(tandem::fits_int32({0, 1, INT32_MAX}));
  EXPECT_FALSE(tandem::fits_int32({1, int64_t{INT32_MAX} + 1}));
  EXPECT_FALSE(tandem::fits_int32({-1}));
  tt::expect_error([] { tandem::FastDivmod bad(0); }, "FastDivmod: divisor 0 is outside");
  tt::expect_error([] { tandem::FastDivmod bad(int64_t{1} << 31); },
                   "FastDivmod: divisor 2147483648 is outside");
  tt::expect_error([] { tandem::Divmod<int64_t> bad(-3); }, "Divmod: divisor -3 is not positive");
}

}  // namespace

// Every unary op of op_list.h has its method form (x.rsqrt() is rsqrt(x)),
// generated from the list: each agrees bit for bit with its function on random
// positive inputs (rsqrt, log and sqrt need them).
TEST(TensorMethods, EveryUnaryOpHasItsMethodForm) {
  const Tensor x = tt::random_tensor({3, 5}, tandem::kFloat32, 0.25, 2.0);
#define TANDEM_CHECK_METHOD_(name, Enum)         \
  {                                              \
    SCOPED_TRACE(#name);                         \
    tt::expect_equal(x.name(), tandem::name(x)); \
  }
  TANDEM_UNARY_OPS(TANDEM_CHECK_METHOD_)
#undef TANDEM_CHECK_METHOD_
}
