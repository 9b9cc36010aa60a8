// Shape and indexing ops on the device, what the registry's records cannot
// say: the aliasing of the slicing cases and out-of-range indices. (cat,
// stack, permutes, index_select, gather, scatter_add, index_add and one_hot
// at odd sizes with int32 and int64 indices, and the slicing values: the
// registry's "copy", "index" and "slice" records, test_registry.cpp.) CPU
// references: test_ops_indexing.cpp. Skipped without a CUDA device.
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
