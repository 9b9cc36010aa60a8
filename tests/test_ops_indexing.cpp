// Shape and indexing ops on the CPU against naive references: the slicing
// cases of the op registry (tandem/check.h: the shapes and aliasing of their
// pieces, exact gradients; their values are registry records), cat and stack on
// dims 0, 1 and last, index_select (dims 0, 1, last; int32 and int64 indices),
// gather, one_hot, and the adjoints scatter_add / index_add (repeated indices,
// every error message, CUDA against CPU where a device is present).
#include <gtest/gtest.h>
#include <tandem/check.h>
#include <tandem/tandem.h>

#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "test_util.h"

namespace {

using tandem::DType;
using tandem::Shape;
using tandem::Tensor;
using tt::expect_close;
using tt::Ref;

int64_t wrap(int64_t dim, int64_t nd) { return dim < 0 ? dim + nd : dim; }

Ref ref_cat(const std::vector<Tensor>& ts, int64_t dim) {
  const int64_t d = wrap(dim, ts[0].dim());
  Shape out = ts[0].sizes();
  out[static_cast<size_t>(d)] = 0;
  for (const Tensor& t : ts) out[static_cast<size_t>(d)] += t.size(d);
  const int64_t outer = tt::prod(out, 0, static_cast<size_t>(d));
  const int64_t inner = tt::prod(out, static_cast<size_t>(d) + 1, out.size());
  Ref r{out, {}};
  for (int64_t o = 0; o < outer; ++o)
    for (const Tensor& t : ts) {
      const auto v = tt::to_doubles(t);
      const int64_t chunk = t.size(d) * inner;
      r.values.insert(r.values.end(), v.begin() + o * chunk, v.begin() + (o + 1) * chunk);
    }
  return r;
}

class CatStackTest : public ::testing::TestWithParam<DType> {};

TEST_P(CatStackTest, CatOnEachDim) {
  const DType dt = GetParam();
  for (int64_t dim : {0, 1, 2, -1}) {
    SCOPED_TRACE("dim " + std::to_string(dim));
    std::vector<Tensor> ts;
    for (int64_t len : {2, 1, 0, 5}) {  // includes an empty piece
      Shape s{3, 4, 5};
      s[static_cast<size_t>(wrap(dim, 3))] = len;
      ts.push_back(tt::random_tensor(s, dt, -9, 9));
    }
    Tensor y = tandem::cat(ts, dim);
    EXPECT_EQ(y.dtype(), dt);
    expect_close(y, ref_cat(ts, dim), tt::exact());
  }
  // 1-D, a single tensor (a copy), the default dim 0.
  Tensor a = tt::random_tensor({7}, dt, -9, 9), b = tt::random_tensor({33}, dt, -9, 9);
  expect_close(tandem::cat({a, b}), ref_cat({a, b}, 0), tt::exact());
  Tensor single = tandem::cat({a});
  expect_close(single, a, tt::exact());
  EXPECT_NE(single.raw_data(), a.raw_data());
  Tensor big = tt::random_tensor({1000003}, dt, -9, 9);
  expect_close(tandem::cat({big, a}, 0), ref_cat({big, a}, 0), tt::exact());
}

TEST_P(CatStackTest, StackOnEachDim) {
  const DType dt = GetParam();
  std::vector<Tensor> ts;
  for (int i = 0; i < 3; ++i) ts.push_back(tt::random_tensor({2, 5, 4}, dt, -9, 9));
  // stack(ts, dim) == cat of each tensor unsqueezed at dim.
  for (int64_t dim : {0, 1, 2, 3, -1}) {
    SCOPED_TRACE("dim " + std::to_string(dim));
    const int64_t d = wrap(dim, 4);
    Ref ref;
    {
      std::vector<Tensor> expanded;
      for (const Tensor& t : ts) {
        Shape s = t.sizes();
        s.insert(s.begin() + d, 1);
        expanded.push_back(tt::make_tensor(tt::to_doubles(t), s, dt));
      }
      ref = ref_cat(expanded, d);
    }
    Tensor y = tandem::stack(ts, dim);
    EXPECT_EQ(y.dtype(), dt);
    expect_close(y, ref, tt::exact());
  }
  expect_close(tandem::stack({ts[0]}), Ref{{1, 2, 5, 4}, tt::to_doubles(ts[0])}, tt::exact());
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CatStackTest,
                         ::testing::Values(tandem::kFloat32, tandem::kFloat64, tandem::kInt32,
                                           tandem::kInt64, tandem::kUInt8),
                         [](const ::testing::TestParamInfo<DType>& param_info) {
                           return std::string(tandem::dtype_name(param_info.param));
                         });

// ---- Slicing (the registry's slice cases, tandem/check.h) --------------------------------
// Their values and gradients are registry records (test_registry.cpp,
// gradcheck); here what a record's one output cannot say: each piece's shape,
// dtype and aliasing, and the exact gradient of the cases too large for
// finite differences.

bool shares_storage(const Tensor& a, const Tensor& b) {
  return a.impl()->storage == b.impl()->storage;
}

class SliceCaseTest : public ::testing::TestWithParam<DType> {};

TEST_P(SliceCaseTest, PiecesHaveTheirShapesAndAliasing) {
  const DType dt = GetParam();
  for (const tandem::check::SliceCase& c : tandem::check::slice_cases()) {
    SCOPED_TRACE(c.call);
    const Tensor x = tt::random_tensor(c.input, dt, -9, 200);
    const std::vector<Tensor> pieces = c.fn(x);
    ASSERT_EQ(pieces.size(), c.pieces.size());
    for (size_t i = 0; i < pieces.size(); ++i) {
      SCOPED_TRACE("piece " + std::to_string(i));
      EXPECT_EQ(pieces[i].sizes(), c.pieces[i].shape);
      EXPECT_EQ(pieces[i].dtype(), dt);
      EXPECT_EQ(shares_storage(pieces[i], x), c.pieces[i].aliases);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, SliceCaseTest,
                         ::testing::Values(tandem::kFloat32, tandem::kFloat64, tandem::kInt64,
                                           tandem::kInt32, tandem::kUInt8),
                         [](const ::testing::TestParamInfo<DType>& param_info) {
                           return std::string(tandem::dtype_name(param_info.param));
                         });

// The gradient of sum_i sum(piece_i * w_i) is w_i at the picked positions and
// zero elsewhere: a scatter into zeros, checked by an index loop.
TEST(SliceTest, BackwardScattersIntoZeros) {
  for (const tandem::check::SliceCase& c : tandem::check::slice_cases()) {
    SCOPED_TRACE(c.call);
    Tensor x = tt::random_tensor(c.input, tandem::kFloat64).set_requires_grad(true);
    const std::vector<Tensor> pieces = c.fn(x);
    Tensor loss = tandem::zeros({}, tandem::kFloat64);
    std::vector<double> expected(static_cast<size_t>(x.numel()), 0.0);
    for (size_t i = 0; i < pieces.size(); ++i) {
      const Tensor w = tt::random_tensor(pieces[i].sizes(), tandem::kFloat64);
      loss = loss + (pieces[i] * w).sum();
      // Where each element of the piece came from: slice_reference on the
      // input's flat indices.
      std::vector<double> flat(expected.size());
      for (size_t k = 0; k < flat.size(); ++k) flat[k] = static_cast<double>(k);
      const auto from = tandem::check::slice_reference(flat, c.input, c.pieces[i]);
      const auto wv = tt::to_doubles(w);
      ASSERT_EQ(from.size(), wv.size());
      for (size_t k = 0; k < from.size(); ++k) expected[static_cast<size_t>(from[k])] += wv[k];
    }
    if (!loss.requires_grad()) continue;  // every piece empty
    loss.backward();
    expect_close(x.grad(), Ref{c.input, expected}, tt::exact());
  }
}

TEST(SliceTest, AliasesWriteThroughAndCopiesDoNot) {
  using namespace tandem::indexing;  // NOLINT(google-build-using-namespace)
  Tensor x = tandem::arange(24.0, tandem::kFloat32).view({2, 3, 4});
  x.slice(0, 1, 2).fill_(-1.0);  // dim 0: an alias
  x.index({0, 1}).fill_(-2.0);   // outer dims at one index: an alias
  x.slice(2, 0, 1).fill_(-3.0);  // a column: a copy, x unchanged
  x.select(1, 0).fill_(-4.0);    // a copy
  const auto v = tt::to_doubles(x);
  for (int64_t i = 0; i < 24; ++i) {
    const double want = i >= 12 ? -1.0 : (i >= 4 && i < 8) ? -2.0 : static_cast<double>(i);
    EXPECT_EQ(v[static_cast<size_t>(i)], want) << "element " << i;
  }
}

// The forms agree with each other where libtorch says they are the same.
TEST(SliceTest, EquivalentSpellings) {
  using namespace tandem::indexing;  // NOLINT(google-build-using-namespace)
  const Tensor x = tt::random_tensor({4, 5, 6}, tandem::kFloat32);
  tt::expect_equal(x.narrow(1, 1, 3), x.slice(1, 1, 4));
  tt::expect_equal(x.index({Slice(), Slice(1, 4)}), x.slice(1, 1, 4));
  tt::expect_equal(x.index({Ellipsis, 2}), x.select(2, 2));
  tt::expect_equal(x.index({Slice(), -1}), x.select(1, 4));
  tt::expect_equal(x.slice(2, -2), x.slice(2, 4, 6));
  tt::expect_equal(x.slice(1), x);
  tt::expect_equal(tandem::cat(x.chunk(3, 2), 2), x);
  tt::expect_equal(tandem::cat(x.split(2, 1), 1), x);
  tt::expect_equal(tandem::stack(x.unbind(2), 2), x);
  tt::expect_equal(x.index({None}), x.unsqueeze(0));
  tt::expect_equal(x[1], x.select(0, 1));
}

// ---- index_select ---------------------------------------------------------------------

Ref ref_index_select(const Tensor& x, int64_t dim, const std::vector<double>& idx) {
  const Shape& s = x.sizes();
  const int64_t d = wrap(dim, x.dim());
  const int64_t outer = tt::prod(s, 0, static_cast<size_t>(d)), n = s[static_cast<size_t>(d)];
  const int64_t inner = tt::prod(s, static_cast<size_t>(d) + 1, s.size());
  const auto v = tt::to_doubles(x);
  Shape out = s;
  out[static_cast<size_t>(d)] = static_cast<int64_t>(idx.size());
  Ref r{out, {}};
  for (int64_t o = 0; o < outer; ++o)
    for (double j : idx)
      for (int64_t i = 0; i < inner; ++i)
        r.values.push_back(v[static_cast<size_t>((o * n + static_cast<int64_t>(j)) * inner + i)]);
  return r;
}

class IndexSelectTest : public ::testing::TestWithParam<std::tuple<DType, DType>> {};

TEST_P(IndexSelectTest, Dims) {
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  struct Case {
    Shape x;
    int64_t dim;
    int64_t count;
  };
  const std::vector<Case> cases = {{{5, 7}, 0, 4},     {{5, 7}, 1, 9}, {{3, 5, 4}, 1, 6},
                                   {{3, 5, 4}, -1, 2}, {{33}, 0, 33},  {{5, 7}, 0, 0},
                                   {{1, 1}, 1, 3},     {{6, 2}, 0, 1}};
  for (const Case& c : cases) {
    SCOPED_TRACE("x " + tt::str(c.x) + " dim " + std::to_string(c.dim));
    Tensor x = tt::random_tensor(c.x, dt, -9, 9);
    const int64_t size = x.size(c.dim);
    const auto idx = tt::int_values(c.count, 0, size - 1);  // repeats allowed
    Tensor index = tt::make_tensor(idx, {c.count}, it);
    Tensor y = tandem::index_select(x, c.dim, index);
    EXPECT_EQ(y.dtype(), dt);
    expect_close(y, ref_index_select(x, c.dim, idx), tt::exact());
  }
  // Large: pick 1000003 rows of a small table (embedding lookup).
  Tensor table = tt::random_tensor({50, 3}, dt, -9, 9);
  const auto idx = tt::int_values(1000003, 0, 49);
  expect_close(tandem::index_select(table, 0, tt::make_tensor(idx, {1000003}, it)),
               ref_index_select(table, 0, idx), tt::exact());
}

INSTANTIATE_TEST_SUITE_P(Dtypes, IndexSelectTest,
                         ::testing::Combine(::testing::Values(tandem::kFloat32, tandem::kFloat64,
                                                              tandem::kInt64),
                                            ::testing::Values(tandem::kInt32, tandem::kInt64)),
                         [](const ::testing::TestParamInfo<std::tuple<DType, DType>>& param_info) {
                           return std::string(tandem::dtype_name(std::get<0>(param_info.param))) +
                                  "_index_" + tandem::dtype_name(std::get<1>(param_info.param));
                         });

// ---- gather --------------------------------------------------------------------------

class GatherTest : public ::testing::TestWithParam<std::tuple<DType, DType>> {};

TEST_P(GatherTest, GathersAlongDim) {
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  struct Case {
    Shape x;
    int64_t dim;
    int64_t idx_len;
  };
  const std::vector<Case> cases = {{{4, 6}, 1, 3},    {{4, 6}, 1, 1},     {{4, 6}, 0, 2},
                                   {{3, 5, 4}, 1, 7}, {{3, 5, 4}, -1, 2}, {{7, 1}, 1, 1},
                                   {{33, 10}, 1, 1}};
  for (const Case& c : cases) {
    SCOPED_TRACE("x " + tt::str(c.x) + " dim " + std::to_string(c.dim));
    Tensor x = tt::random_tensor(c.x, dt, -9, 9);
    const int64_t d = wrap(c.dim, x.dim());
    Shape is = c.x;
    is[static_cast<size_t>(d)] = c.idx_len;
    const auto idx = tt::int_values(tt::numel_of(is), 0, c.x[static_cast<size_t>(d)] - 1);
    Tensor index = tt::make_tensor(idx, is, it);
    // out[o][j][i] = x[o][index[o][j][i]][i]
    const int64_t outer = tt::prod(is, 0, static_cast<size_t>(d)), n = c.x[static_cast<size_t>(d)];
    const int64_t inner = tt::prod(is, static_cast<size_t>(d) + 1, is.size());
    const auto xv = tt::to_doubles(x);
    Ref ref{is, std::vector<double>(idx.size())};
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < c.idx_len; ++j)
        for (int64_t i = 0; i < inner; ++i) {
          const size_t at = static_cast<size_t>((o * c.idx_len + j) * inner + i);
          ref.values[at] =
              xv[static_cast<size_t>((o * n + static_cast<int64_t>(idx[at])) * inner + i)];
        }
    Tensor y = tandem::gather(x, c.dim, index);
    EXPECT_EQ(y.dtype(), dt);
    expect_close(y, ref, tt::exact());
  }
}

TEST(GatherTest2, PicksTargetLogProbabilities) {
  // The cross-entropy use: pick log_softmax[i][target[i]].
  Tensor logits = tt::random_tensor({5, 10}, tandem::kFloat64, -3, 3);
  const auto t = tt::int_values(5, 0, 9);
  Tensor target = tt::make_tensor(t, {5, 1}, tandem::kInt64);
  Tensor picked = tandem::gather(logits, 1, target);
  const auto lv = tt::to_doubles(logits);
  Ref ref{{5, 1}, {}};
  for (int i = 0; i < 5; ++i)
    ref.values.push_back(lv[static_cast<size_t>(i * 10 + static_cast<int>(t[i]))]);
  expect_close(picked, ref, tt::exact());
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GatherTest,
                         ::testing::Combine(::testing::Values(tandem::kFloat32, tandem::kFloat64,
                                                              tandem::kInt32),
                                            ::testing::Values(tandem::kInt32, tandem::kInt64)),
                         [](const ::testing::TestParamInfo<std::tuple<DType, DType>>& param_info) {
                           return std::string(tandem::dtype_name(std::get<0>(param_info.param))) +
                                  "_index_" + tandem::dtype_name(std::get<1>(param_info.param));
                         });

// ---- one_hot ---------------------------------------------------------------------------

TEST(OneHotTest, ShapesDtypesAndValues) {
  for (DType label_dt : {tandem::kInt32, tandem::kInt64}) {
    for (const Shape& ls : std::vector<Shape>{{5}, {2, 3}, {1}, {0}, {1000}}) {
      for (int64_t classes : {1, 4, 10}) {
        SCOPED_TRACE(std::string(tandem::dtype_name(label_dt)) + " labels " + tt::str(ls) +
                     " C=" + std::to_string(classes));
        const auto lv = tt::int_values(tt::numel_of(ls), 0, classes - 1);
        Tensor labels = tt::make_tensor(lv, ls, label_dt);
        Shape out = ls;
        out.push_back(classes);
        Ref ref{out, std::vector<double>(lv.size() * static_cast<size_t>(classes), 0.0)};
        for (size_t i = 0; i < lv.size(); ++i)
          ref.values[i * static_cast<size_t>(classes) + static_cast<size_t>(lv[i])] = 1.0;
        Tensor y = tandem::one_hot(labels, classes);
        EXPECT_EQ(y.dtype(), tandem::kInt64);
        expect_close(y, ref, tt::exact());
        for (DType out_dt : {tandem::kFloat32, tandem::kFloat64, tandem::kInt32, tandem::kUInt8}) {
          Tensor z = tandem::one_hot(labels, classes, out_dt);
          EXPECT_EQ(z.dtype(), out_dt);
          expect_close(z, ref, tt::exact());
        }
      }
    }
  }
}

// ---- scatter_add / index_add ---------------------------------------------------------

using IndexParam = std::tuple<DType, DType>;  // (values, index)

std::string index_param_name(const ::testing::TestParamInfo<IndexParam>& param_info) {
  return std::string(tandem::dtype_name(std::get<0>(param_info.param))) + "_index_" +
         tandem::dtype_name(std::get<1>(param_info.param));
}

// The naive reference: out = x, then for every (o, j, i) of src [outer, m, inner]
// in increasing order, out[o][index_at(o, j, i)][i] += src[o][j][i], accumulated
// in Acc. With Acc the tensors' own type this is exactly what the CPU backend
// promises (additions in index order), so the CPU must match it bit for bit.
template <typename Acc, typename IndexAt>
Ref ref_accumulate(const Tensor& x, int64_t d, const Tensor& src, const IndexAt& index_at) {
  const Shape& xs = x.sizes();
  const auto du = static_cast<size_t>(d);
  const int64_t outer = tt::prod(xs, 0, du), n = xs[du], inner = tt::prod(xs, du + 1, xs.size());
  const int64_t m = src.size(d);
  const auto xv = tt::to_doubles(x), sv = tt::to_doubles(src);
  std::vector<Acc> acc(xv.begin(), xv.end());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < m; ++j)
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t k = index_at(o, j, i);
        acc[static_cast<size_t>((o * n + k) * inner + i)] +=
            static_cast<Acc>(sv[static_cast<size_t>((o * m + j) * inner + i)]);
      }
  return Ref{xs, std::vector<double>(acc.begin(), acc.end())};
}

Ref ref_scatter_add(const Tensor& x, int64_t dim, const std::vector<double>& idx,
                    const Tensor& src) {
  const int64_t d = wrap(dim, x.dim());
  const int64_t m = src.size(d);
  const int64_t inner = tt::prod(x.sizes(), static_cast<size_t>(d) + 1, x.sizes().size());
  auto at = [&](int64_t o, int64_t j, int64_t i) {
    return static_cast<int64_t>(idx[static_cast<size_t>((o * m + j) * inner + i)]);
  };
  return x.dtype() == tandem::kFloat32 ? ref_accumulate<float>(x, d, src, at)
                                       : ref_accumulate<double>(x, d, src, at);
}

Ref ref_index_add(const Tensor& x, int64_t dim, const std::vector<double>& idx, const Tensor& src) {
  const int64_t d = wrap(dim, x.dim());
  auto at = [&](int64_t, int64_t j, int64_t) {
    return static_cast<int64_t>(idx[static_cast<size_t>(j)]);
  };
  return x.dtype() == tandem::kFloat32 ? ref_accumulate<float>(x, d, src, at)
                                       : ref_accumulate<double>(x, d, src, at);
}

struct ScatterCase {
  Shape x;
  int64_t dim;
  int64_t len;  // index length along dim
};

// Odd sizes, every dim, more indices than rows (so repeats are certain), one
// element, inner blocks wider than the CPU's 64-column tasks and the CUDA
// row kernel's threshold, enough work for OpenMP, and an empty source.
const std::vector<ScatterCase>& scatter_cases() {
  static const std::vector<ScatterCase> cases = {
      {{4, 6}, 1, 3},     {{4, 6}, 1, 9},      {{4, 6}, 0, 2},      {{3, 5, 4}, 1, 7},
      {{3, 5, 4}, -1, 2}, {{3, 5, 4}, 0, 5},   {{7, 1}, 1, 1},      {{33, 10}, 1, 1},
      {{1}, 0, 7},        {{2, 3, 130}, 1, 4}, {{4, 3, 200}, 1, 5}, {{1001, 7}, 1, 33},
      {{2, 3}, 1, 0}};
  return cases;
}

class ScatterAddTest : public ::testing::TestWithParam<IndexParam> {};

TEST_P(ScatterAddTest, MatchesIndexOrderReference) {
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  for (const ScatterCase& c : scatter_cases()) {
    SCOPED_TRACE("x " + tt::str(c.x) + " dim " + std::to_string(c.dim) + " len " +
                 std::to_string(c.len));
    Tensor x = tt::random_tensor(c.x, dt, -2, 2);
    const Tensor x_before = x.clone();
    const int64_t d = wrap(c.dim, x.dim());
    Shape is = c.x;
    is[static_cast<size_t>(d)] = c.len;
    const auto idx = tt::int_values(tt::numel_of(is), 0, c.x[static_cast<size_t>(d)] - 1);
    Tensor src = tt::random_tensor(is, dt, -2, 2);
    Tensor y = tandem::scatter_add(x, c.dim, tt::make_tensor(idx, is, it), src);
    EXPECT_EQ(y.dtype(), dt);
    expect_close(y, ref_scatter_add(x, c.dim, idx, src), tt::exact());
    tt::expect_equal(x, x_before);  // out of place
  }
}

TEST_P(ScatterAddTest, EveryIndexTheSame) {
  // 100003 additions into one element: any lost update or reordering shows.
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  Tensor x = tt::random_tensor({5}, dt);
  const std::vector<double> idx(100003, 2.0);
  Tensor src = tt::random_tensor({100003}, dt);
  expect_close(tandem::scatter_add(x, 0, tt::make_tensor(idx, {100003}, it), src),
               ref_scatter_add(x, 0, idx, src), tt::exact());
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ScatterAddTest,
                         ::testing::Combine(::testing::Values(tandem::kFloat32, tandem::kFloat64),
                                            ::testing::Values(tandem::kInt32, tandem::kInt64)),
                         index_param_name);

class IndexAddTest : public ::testing::TestWithParam<IndexParam> {};

TEST_P(IndexAddTest, MatchesIndexOrderReference) {
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  for (const ScatterCase& c : scatter_cases()) {
    SCOPED_TRACE("x " + tt::str(c.x) + " dim " + std::to_string(c.dim) + " len " +
                 std::to_string(c.len));
    Tensor x = tt::random_tensor(c.x, dt, -2, 2);
    const Tensor x_before = x.clone();
    const int64_t d = wrap(c.dim, x.dim());
    const auto idx = tt::int_values(c.len, 0, c.x[static_cast<size_t>(d)] - 1);
    Shape ss = c.x;
    ss[static_cast<size_t>(d)] = c.len;
    Tensor src = tt::random_tensor(ss, dt, -2, 2);
    Tensor y = tandem::index_add(x, c.dim, tt::make_tensor(idx, {c.len}, it), src);
    EXPECT_EQ(y.dtype(), dt);
    expect_close(y, ref_index_add(x, c.dim, idx, src), tt::exact());
    tt::expect_equal(x, x_before);
  }
  // A 0-dim index adds one slice.
  Tensor x = tt::random_tensor({5, 3}, dt);
  Tensor src = tt::random_tensor({1, 3}, dt);
  expect_close(tandem::index_add(x, 0, tt::make_tensor({4}, {}, it), src),
               ref_index_add(x, 0, {4}, src), tt::exact());
  // Embedding-gradient shape: 100003 rows into a 50-row table.
  Tensor table = tt::random_tensor({50, 3}, dt);
  const auto idx = tt::int_values(100003, 0, 49);
  Tensor rows = tt::random_tensor({100003, 3}, dt);
  expect_close(tandem::index_add(table, 0, tt::make_tensor(idx, {100003}, it), rows),
               ref_index_add(table, 0, idx, rows), tt::exact());
}

INSTANTIATE_TEST_SUITE_P(Dtypes, IndexAddTest,
                         ::testing::Combine(::testing::Values(tandem::kFloat32, tandem::kFloat64),
                                            ::testing::Values(tandem::kInt32, tandem::kInt64)),
                         index_param_name);

TEST(ScatterAddErrors, EveryMessage) {
  using tt::expect_error;
  const Tensor x = tt::random_tensor({3, 4}, tandem::kFloat32);
  const Tensor idx = tt::make_tensor({0, 1, 2, 3, 0, 0}, {3, 2}, tandem::kInt64);
  const Tensor src = tt::random_tensor({3, 2}, tandem::kFloat32);
  expect_error([&] { tandem::scatter_add(Tensor(), 1, idx, src); },
               "scatter_add: input is an undefined tensor");
  expect_error([&] { tandem::scatter_add(x, 1, Tensor(), src); },
               "scatter_add: index is an undefined tensor");
  expect_error([&] { tandem::scatter_add(x, 1, idx, Tensor()); },
               "scatter_add: source is an undefined tensor");
  expect_error([&] { tandem::scatter_add(x, 1, idx, src.to(tandem::kFloat64)); },
               {"scatter_add: expected tensors of the same dtype", "float32[3, 4]", "float64[3, 2]",
                ".to(dtype)"});
  expect_error([&] { tandem::scatter_add(x.to(tandem::kInt32), 1, idx, src.to(tandem::kInt32)); },
               "scatter_add: dtype int32 is not supported (expected float32 or float64)");
  for (DType bad : {tandem::kFloat32, tandem::kUInt8}) {
    expect_error([&] { tandem::scatter_add(x, 1, idx.to(bad), src); },
                 {"scatter_add: index dtype ", tandem::dtype_name(bad),
                  " is not supported (expected int64 or int32)"});
  }
  expect_error([&] { tandem::scatter_add(x, 1, idx.view({6}), src); },
               "scatter_add: index [6] and source [3, 2] must have the same shape and as many "
               "dims as the input [3, 4]");
  expect_error(
      [&] {
        tandem::scatter_add(x, 1, idx, tt::random_tensor({3, 3}, tandem::kFloat32));
      },
      "scatter_add: index [3, 2] and source [3, 3] must have the same shape");
  expect_error(
      [&] {
        tandem::scatter_add(tandem::zeros({}), 0, tt::make_tensor({0}, {}, tandem::kInt64),
                            tandem::zeros({}));
      },
      "as many dims as the input []");
  expect_error([&] { tandem::scatter_add(x, 2, idx, src); },
               "scatter_add: dim 2 is out of range for a tensor of 2 dims");
  expect_error([&] { tandem::scatter_add(x, -3, idx, src); },
               "scatter_add: dim -3 is out of range for a tensor of 2 dims");
  expect_error(
      [&] {
        tandem::scatter_add(x, 1, tt::make_tensor({0, 1, 2, 3}, {2, 2}, tandem::kInt64),
                            tt::random_tensor({2, 2}, tandem::kFloat32));
      },
      "scatter_add: index [2, 2] and input [3, 4] must match in every dim except dim 1");
  expect_error(
      [&] {
        tandem::scatter_add(tandem::zeros({0, 4}), 0, tandem::zeros({2, 4}, tandem::kInt64),
                            tandem::zeros({2, 4}));
      },
      "scatter_add: cannot scatter into an empty dimension");
  // Out-of-range indices (checked by the CPU backend), either index dtype.
  for (DType it : {tandem::kInt32, tandem::kInt64}) {
    expect_error(
        [&] {
          tandem::scatter_add(x, 1, tt::make_tensor({0, 1, 2, 4, 0, 0}, {3, 2}, it), src);
        },
        "scatter_add: index 4 is out of range for dimension of size 4");
    expect_error(
        [&] {
          tandem::scatter_add(x, 0, tt::make_tensor({0, 1, 2, 0, -1, 0, 1, 2}, {2, 4}, it),
                              tt::random_tensor({2, 4}, tandem::kFloat32));
        },
        "scatter_add: index -1 is out of range for dimension of size 3");
  }
}

TEST(IndexAddErrors, EveryMessage) {
  using tt::expect_error;
  const Tensor x = tt::random_tensor({3, 4}, tandem::kFloat32);
  const Tensor idx = tt::make_tensor({2, 0}, {2}, tandem::kInt64);
  const Tensor src = tt::random_tensor({2, 4}, tandem::kFloat32);
  expect_error([&] { tandem::index_add(Tensor(), 0, idx, src); },
               "index_add: input is an undefined tensor");
  expect_error([&] { tandem::index_add(x, 0, Tensor(), src); },
               "index_add: index is an undefined tensor");
  expect_error([&] { tandem::index_add(x, 0, idx, Tensor()); },
               "index_add: source is an undefined tensor");
  expect_error([&] { tandem::index_add(x, 0, idx, src.to(tandem::kFloat64)); },
               {"index_add: expected tensors of the same dtype", "float32[3, 4]", "float64[2, 4]"});
  expect_error([&] { tandem::index_add(x.to(tandem::kInt64), 0, idx, src.to(tandem::kInt64)); },
               "index_add: dtype int64 is not supported (expected float32 or float64)");
  for (DType bad : {tandem::kFloat64, tandem::kUInt8}) {
    expect_error([&] { tandem::index_add(x, 0, idx.to(bad), src); },
                 {"index_add: index dtype ", tandem::dtype_name(bad),
                  " is not supported (expected int64 or int32)"});
  }
  expect_error(
      [&] {
        tandem::index_add(x, 0, idx.view({1, 2}), src);
      },
      "index_add: index must be 1-D, got [1, 2]");
  expect_error(
      [&] {
        tandem::index_add(tandem::zeros({}), 0, tt::make_tensor({0}, {1}, tandem::kInt64),
                          tandem::zeros({1}));
      },
      "index_add: the input must have at least one dim");
  expect_error([&] { tandem::index_add(x, 2, idx, src); },
               "index_add: dim 2 is out of range for a tensor of 2 dims");
  expect_error([&] { tandem::index_add(x, 1, idx, src); },
               "index_add: source [2, 4] must have shape [3, 2] (the input's with dim 1 of the "
               "index's length)");
  expect_error(
      [&] {
        tandem::index_add(tandem::zeros({0, 4}), 0, idx, tandem::zeros({2, 4}));
      },
      "index_add: cannot add into an empty dimension");
  for (DType it : {tandem::kInt32, tandem::kInt64}) {
    expect_error(
        [&] {
          tandem::index_add(x, 0, tt::make_tensor({2, 3}, {2}, it), src);
        },
        "index_add: index 3 is out of range for dimension of size 3");
    expect_error(
        [&] {
          tandem::index_add(x, 0, tt::make_tensor({-1, 0}, {2}, it), src);
        },
        "index_add: index -1 is out of range for dimension of size 3");
  }
}

// ---- scatter_add / index_add: CUDA against the CPU (skipped without a device) ---------

class ScatterCudaTest : public ::testing::TestWithParam<IndexParam> {
 protected:
  void SetUp() override { TANDEM_SKIP_WITHOUT_CUDA(); }
};

// atomicAdd adds repeated indices in any order: a few float roundings apart
// from the CPU's index order, so 4x the table (the cases add at most ~10 terms
// per element); the long sums are compared by normalised MSE.
tt::Tol scatter_tol(DType dt) { return tt::scaled(tt::default_tol(dt), 4.0); }
double long_sum_nmse(DType dt) { return dt == tandem::kFloat32 ? 1e-9 : 1e-24; }

TEST_P(ScatterCudaTest, ScatterAddMatchesCpu) {
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  for (const ScatterCase& c : scatter_cases()) {
    SCOPED_TRACE("x " + tt::str(c.x) + " dim " + std::to_string(c.dim));
    Tensor x = tt::random_tensor(c.x, dt, -2, 2);
    const int64_t d = wrap(c.dim, x.dim());
    Shape is = c.x;
    is[static_cast<size_t>(d)] = c.len;
    Tensor index = tt::make_tensor(
        tt::int_values(tt::numel_of(is), 0, c.x[static_cast<size_t>(d)] - 1), is, it);
    Tensor src = tt::random_tensor(is, dt, -2, 2);
    Tensor cpu = tandem::scatter_add(x, c.dim, index, src);
    Tensor gpu = tandem::scatter_add(x.cuda(), c.dim, index.cuda(), src.cuda());
    ASSERT_TRUE(gpu.is_cuda());
    expect_close(gpu.cpu(), cpu, scatter_tol(dt));
  }
  Tensor x = tt::random_tensor({5}, dt);
  Tensor index = tt::make_tensor(tt::int_values(100003, 0, 4), {100003}, it);
  Tensor src = tt::random_tensor({100003}, dt);
  EXPECT_LT(tt::nmse(tt::to_doubles(tandem::scatter_add(x.cuda(), 0, index.cuda(), src.cuda())),
                     tt::to_doubles(tandem::scatter_add(x, 0, index, src))),
            long_sum_nmse(dt));
}

TEST_P(ScatterCudaTest, IndexAddMatchesCpu) {
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  for (const ScatterCase& c : scatter_cases()) {
    SCOPED_TRACE("x " + tt::str(c.x) + " dim " + std::to_string(c.dim));
    Tensor x = tt::random_tensor(c.x, dt, -2, 2);
    const int64_t d = wrap(c.dim, x.dim());
    Tensor index =
        tt::make_tensor(tt::int_values(c.len, 0, c.x[static_cast<size_t>(d)] - 1), {c.len}, it);
    Shape ss = c.x;
    ss[static_cast<size_t>(d)] = c.len;
    Tensor src = tt::random_tensor(ss, dt, -2, 2);
    Tensor cpu = tandem::index_add(x, c.dim, index, src);
    Tensor gpu = tandem::index_add(x.cuda(), c.dim, index.cuda(), src.cuda());
    ASSERT_TRUE(gpu.is_cuda());
    expect_close(gpu.cpu(), cpu, scatter_tol(dt));
  }
  Tensor table = tt::random_tensor({50, 3}, dt);
  Tensor index = tt::make_tensor(tt::int_values(100003, 0, 49), {100003}, it);
  Tensor rows = tt::random_tensor({100003, 3}, dt);
  EXPECT_LT(tt::nmse(tt::to_doubles(tandem::index_add(table.cuda(), 0, index.cuda(), rows.cuda())),
                     tt::to_doubles(tandem::index_add(table, 0, index, rows))),
            long_sum_nmse(dt));
}

TEST_P(ScatterCudaTest, OutOfRangeIndicesAreSkipped) {
  // The CPU throws (tested above); CUDA cannot check without a sync and skips
  // the addition. Reference: the CPU result with those source elements zeroed.
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  Tensor x = tt::random_tensor({3, 4}, dt);
  Tensor src = tt::random_tensor({3, 2}, dt);
  const std::vector<double> bad = {0, 4, -1, 3, 2, 2};
  std::vector<double> fixed = bad, sv = tt::to_doubles(src);
  for (size_t k = 0; k < bad.size(); ++k) {
    if (bad[k] < 0 || bad[k] >= 4) {
      fixed[k] = 0;
      sv[k] = 0;
    }
  }
  Tensor gpu =
      tandem::scatter_add(x.cuda(), 1, tt::make_tensor(bad, {3, 2}, it).cuda(), src.cuda());
  expect_close(gpu.cpu(),
               tandem::scatter_add(x, 1, tt::make_tensor(fixed, {3, 2}, it),
                                   tt::make_tensor(sv, {3, 2}, dt)),
               tt::exact());

  // index_add: rows whose index is out of range add nothing (flat and row kernels).
  for (int64_t inner : {3, 300}) {
    SCOPED_TRACE("inner " + std::to_string(inner));
    Tensor table = tt::random_tensor({2, 4, inner}, dt);
    Tensor rows = tt::random_tensor({2, 3, inner}, dt);
    Tensor g = tandem::index_add(table.cuda(), 1, tt::make_tensor({1, 7, -2}, {3}, it).cuda(),
                                 rows.cuda());
    Tensor keep = tandem::index_select(rows, 1, tt::make_tensor({0}, {1}, tandem::kInt64));
    expect_close(g.cpu(), tandem::index_add(table, 1, tt::make_tensor({1}, {1}, it), keep),
                 tt::exact());
  }
}

TEST_P(ScatterCudaTest, DeviceMismatchIsAnError) {
  const DType dt = std::get<0>(GetParam());
  const DType it = std::get<1>(GetParam());
  Tensor x = tt::random_tensor({3, 4}, dt);
  Tensor idx = tt::make_tensor({0, 1, 2, 3, 0, 0}, {3, 2}, it);
  Tensor src = tt::random_tensor({3, 2}, dt);
  tt::expect_error(
      [&] { tandem::scatter_add(x.cuda(), 1, idx, src.cuda()); },
      {"scatter_add: expected tensors on the same device", "cuda:0", "cpu", ".to(device)"});
  tt::expect_error([&] { tandem::scatter_add(x.cuda(), 1, idx.cuda(), src); },
                   {"scatter_add: expected tensors on the same device", "cuda:0", "cpu"});
  Tensor row_idx = tt::make_tensor({2, 0}, {2}, it);
  Tensor rows = tt::random_tensor({2, 4}, dt);
  tt::expect_error([&] { tandem::index_add(x.cuda(), 0, row_idx, rows.cuda()); },
                   {"index_add: expected tensors on the same device", "cuda:0", "cpu"});
  tt::expect_error([&] { tandem::index_add(x.cuda(), 0, row_idx.cuda(), rows); },
                   {"index_add: expected tensors on the same device", "cuda:0", "cpu"});
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ScatterCudaTest,
                         ::testing::Combine(::testing::Values(tandem::kFloat32, tandem::kFloat64),
                                            ::testing::Values(tandem::kInt32, tandem::kInt64)),
                         index_param_name);

}  // namespace
