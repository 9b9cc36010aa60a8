// Shape and indexing ops on the device: the aliasing of the registry's slicing
// cases (their values and backward: the "slice" records), cat, stack, index_select, gather,
// scatter_add, index_add, one_hot, the FastDivmod paths at odd sizes, general
// permutes, out-of-range indices. CPU references: test_ops_indexing.cpp.
// Skipped without a CUDA device.
#include <gtest/gtest.h>
#include <tandem/check.h>
#include <tandem/tandem.h>

#include <string>
#include <vector>

#include "test_cuda_util.h"
#include "test_util.h"

namespace {

using namespace tt::cuda_parity;  // NOLINT(google-build-using-namespace)

// ---- Shape and indexing ops -------------------------------------------------------------

class IndexingParity : public CudaParamTest<DType> {};

TEST_P(IndexingParity, CatStack) {
  const DType dt = GetParam();
  for (int64_t dim : {0, 1, 2, -1}) {
    SCOPED_TRACE("dim " + std::to_string(dim));
    std::vector<Tensor> h, g;
    for (int64_t len : {2, 1, 0, 5}) {
      Shape s{3, 4, 5};
      s[static_cast<size_t>(dim < 0 ? dim + 3 : dim)] = len;
      h.push_back(tt::random_tensor(s, dt, -9, 9));
      g.push_back(h.back().cuda());
    }
    Tensor cpu = tandem::cat(h, dim);
    poison_output(cpu.sizes(), dt);
    expect_parity(tandem::cat(g, dim), cpu, tt::exact());
  }
  std::vector<Tensor> h, g;
  for (int i = 0; i < 3; ++i) {
    h.push_back(tt::random_tensor({2, 5, 4}, dt, -9, 9));
    g.push_back(h.back().cuda());
  }
  for (int64_t dim : {0, 1, 2, 3, -1})
    expect_parity(tandem::stack(g, dim), tandem::stack(h, dim), tt::exact());
  Tensor big = tt::random_tensor({1000003}, dt, -9, 9);
  expect_parity(tandem::cat({big.cuda(), big.cuda()}), tandem::cat({big, big}), tt::exact());
}

TEST_P(IndexingParity, IndexSelectGatherOneHot) {
  const DType dt = GetParam();
  for (DType it : {tandem::kInt32, tandem::kInt64}) {
    SCOPED_TRACE(tandem::dtype_name(it));
    Tensor x = tt::random_tensor({5, 7, 3}, dt, -9, 9);
    for (int64_t dim : {0, 1, 2, -1}) {
      const int64_t size = x.size(dim);
      Tensor idx = tt::make_tensor(tt::int_values(9, 0, size - 1), {9}, it);
      Tensor cpu = tandem::index_select(x, dim, idx);
      poison_output(cpu.sizes(), dt);
      expect_parity(tandem::index_select(x.cuda(), dim, idx.cuda()), cpu, tt::exact());
    }
    Tensor table = tt::random_tensor({50, 3}, dt, -9, 9);
    Tensor many = tt::make_tensor(tt::int_values(1000003, 0, 49), {1000003}, it);
    expect_parity(tandem::index_select(table.cuda(), 0, many.cuda()),
                  tandem::index_select(table, 0, many), tt::exact());
    Tensor g2 = tt::random_tensor({4, 6}, dt, -9, 9);
    Tensor gi = tt::make_tensor(tt::int_values(12, 0, 5), {4, 3}, it);
    expect_parity(tandem::gather(g2.cuda(), 1, gi.cuda()), tandem::gather(g2, 1, gi), tt::exact());
    Tensor g0 = tt::make_tensor(tt::int_values(12, 0, 3), {2, 6}, it);
    expect_parity(tandem::gather(g2.cuda(), 0, g0.cuda()), tandem::gather(g2, 0, g0), tt::exact());
    Tensor labels = tt::make_tensor(tt::int_values(33, 0, 9), {3, 11}, it);
    expect_parity(tandem::one_hot(labels.cuda(), 10), tandem::one_hot(labels, 10), tt::exact());
    expect_parity(tandem::one_hot(labels.cuda(), 10, dt), tandem::one_hot(labels, 10, dt),
                  tt::exact());
  }
}

// Issue 18 item 9: gather, scatter_add, index_select/index_add (flat kernels)
// and the general permute split indices with FastDivmod (32-bit) when sizes
// fit; odd sizes put quotients and remainders off the powers of two.
TEST_P(IndexingParity, OddSizesThroughTheDivmodPaths) {
  const DType dt = GetParam();
  const bool floating = dt == tandem::kFloat32 || dt == tandem::kFloat64;
  for (DType it : {tandem::kInt32, tandem::kInt64}) {
    Tensor x = tt::random_tensor({7, 13, 11}, dt, -9, 9);
    const Tensor xg = x.cuda();
    for (int64_t dim : {0, 1, 2}) {
      SCOPED_TRACE(std::string(tandem::dtype_name(it)) + " dim " + std::to_string(dim));
      Shape is = x.sizes();
      is[static_cast<size_t>(dim)] = 5;  // fewer entries than x along dim
      const int64_t n = is[0] * is[1] * is[2];
      Tensor gi = tt::make_tensor(tt::int_values(n, 0, x.size(dim) - 1), is, it);
      Tensor cpu = tandem::gather(x, dim, gi);
      poison_output(cpu.sizes(), dt);
      expect_parity(tandem::gather(xg, dim, gi.cuda()), cpu, tt::exact());
      Tensor sel = tt::make_tensor(tt::int_values(9, 0, x.size(dim) - 1), {9}, it);
      cpu = tandem::index_select(x, dim, sel);
      poison_output(cpu.sizes(), dt);
      expect_parity(tandem::index_select(xg, dim, sel.cuda()), cpu, tt::exact());
      if (floating) {
        // Repeated indices: atomics add in any order.
        const Tol tol = tt::scaled(tt::default_tol(dt), 4.0);
        Tensor src = tt::random_tensor(is, dt, -1, 1);
        expect_parity(tandem::scatter_add(xg, dim, gi.cuda(), src.cuda()),
                      tandem::scatter_add(x, dim, gi, src), tol);
        Shape ss = x.sizes();
        ss[static_cast<size_t>(dim)] = 9;
        Tensor src2 = tt::random_tensor(ss, dt, -1, 1);
        expect_parity(tandem::index_add(xg, dim, sel.cuda(), src2.cuda()),
                      tandem::index_add(x, dim, sel, src2), tol);
      }
    }
  }
  // General permute (no 2-D transpose underneath), odd sizes.
  Tensor p = tt::random_tensor({3, 5, 7, 11}, dt, -9, 9);
  const Tensor pg = p.cuda();
  for (const Shape& perm : std::vector<Shape>{
           {0, 2, 1, 3}, {3, 1, 2, 0}, {2, 0, 3, 1}, {1, 3, 0, 2}, {3, 2, 1, 0}, {0, 3, 2, 1}}) {
    SCOPED_TRACE("permute " + tt::str(perm));
    Tensor cpu = p.permute(perm);
    poison_output(cpu.sizes(), dt);
    expect_parity(pg.permute(perm), cpu, tt::exact());
  }
}

// The slicing cases on the device alias exactly where they do on the CPU
// (their values: the registry's "slice" records).
TEST_P(IndexingParity, SliceCasesAlias) {
  const DType dt = GetParam();
  for (const tandem::check::SliceCase& c : tandem::check::slice_cases()) {
    SCOPED_TRACE(c.call);
    const Tensor g = tt::random_tensor(c.input, dt, -9, 200).cuda();
    const std::vector<Tensor> gpu = c.fn(g);
    ASSERT_EQ(gpu.size(), c.pieces.size());
    for (size_t i = 0; i < gpu.size(); ++i) {
      SCOPED_TRACE("piece " + std::to_string(i));
      EXPECT_EQ(gpu[i].sizes(), c.pieces[i].shape);
      EXPECT_EQ(gpu[i].impl()->storage == g.impl()->storage, c.pieces[i].aliases);
    }
  }
}

TEST_F(CudaTest, OutOfRangeIndicesOnTheDeviceGiveZeros) {
  // Documented: on CUDA, out-of-range indices yield 0 rather than throwing.
  Tensor x = tt::random_tensor({5, 3}, tandem::kFloat32, 1, 2);
  Tensor idx = tandem::from_vector(std::vector<int64_t>{1, 7, 2}).cuda();
  Tensor y = tandem::index_select(x.cuda(), 0, idx).cpu();
  const auto yv = tt::to_doubles(y), xv = tt::to_doubles(x);
  for (int j = 0; j < 3; ++j) {
    EXPECT_EQ(yv[static_cast<size_t>(j)], xv[static_cast<size_t>(3 + j)]);
    EXPECT_EQ(yv[static_cast<size_t>(3 + j)], 0.0);
    EXPECT_EQ(yv[static_cast<size_t>(6 + j)], xv[static_cast<size_t>(6 + j)]);
  }
  Tensor oh = tandem::one_hot(tandem::from_vector(std::vector<int64_t>{1, 9}).cuda(), 3).cpu();
  EXPECT_EQ(tandem::to_vector<int64_t>(oh), (std::vector<int64_t>{0, 1, 0, 0, 0, 0}));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, IndexingParity,
                         ::testing::Values(tandem::kFloat32, tandem::kFloat64, tandem::kInt32,
                                           tandem::kInt64, tandem::kUInt8),
                         dtype_param_name);

}  // namespace
