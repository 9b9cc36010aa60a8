// Shared by the CUDA parity tests (tests/test_cuda_*.cpp, one test program,
// tandem_test_cuda): the fixtures that skip without a CUDA device, the parity
// check of a CUDA result against the CPU one, output poisoning, the common
// shapes and the unary tolerance class. Each test_cuda_<family>.cpp sits next
// to the CPU tests of that family (test_ops_<family>.cpp, test_tensor.cpp,
// test_random.cpp). The fixtures live in a named namespace: gtest requires one
// fixture class per test suite across all the files of a program.
#pragma once

#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <string>
#include <vector>

#include "test_util.h"

namespace tt::cuda_parity {

using tandem::BinaryOp;
using tandem::Device;
using tandem::DType;
using tandem::ReduceOp;
using tandem::ScalarSide;
using tandem::Shape;
using tandem::Tensor;
using tandem::UnaryOp;
using tt::Tol;

inline const Device kGpu(tandem::kCUDA, 0);

// A CUDA result checked against the CPU result: it must live on the GPU and
// match within `tol`.
inline void expect_parity(const Tensor& gpu, const Tensor& cpu, Tol tol,
                          const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  if (!gpu.is_cuda()) {
    ADD_FAILURE_AT(file, line) << "the result of a CUDA op is on " << gpu.device().str();
    return;
  }
  if (gpu.dtype() != cpu.dtype()) {
    ADD_FAILURE_AT(file, line) << "dtype " << tandem::dtype_name(gpu.dtype()) << " on CUDA but "
                               << tandem::dtype_name(cpu.dtype()) << " on the CPU";
  }
  tt::expect_close(gpu.cpu(), cpu, tol, file, line);
}

// Poisons the cached block that the next CUDA allocation of this size reuses,
// so an output element the kernel forgets to write shows up as NaN/garbage.
inline void poison_output(const Shape& shape, DType dt) {
  tt::poison_next_allocation(shape, dt, kGpu);
}

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override { TANDEM_SKIP_WITHOUT_CUDA(); }
};

template <typename P>
class CudaParamTest : public ::testing::TestWithParam<P> {
 protected:
  void SetUp() override { TANDEM_SKIP_WITHOUT_CUDA(); }
};

inline std::string dtype_param_name(const ::testing::TestParamInfo<DType>& param_info) {
  return tandem::dtype_name(param_info.param);
}

inline const std::vector<Shape>& parity_shapes() {
  static const std::vector<Shape> s = {{}, {1}, {7}, {33}, {3, 7, 5}, {0}, {2, 0, 3}, {1000003}};
  return s;
}

}  // namespace tt::cuda_parity
