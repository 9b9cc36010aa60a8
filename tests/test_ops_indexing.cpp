// Shape and indexing ops on the CPU against naive references: cat and stack on
// dims 0, 1 and last, index_select (dims 0, 1, last; int32 and int64 indices),
// gather, one_hot.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <string>
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

}  // namespace
