// The RNG on the device: rand, uniform, dropout masks and randint bit-identical
// to the CPU (the same Philox streams and offsets), randn within rounding. CPU
// tests: test_random.cpp. Skipped without a CUDA device.
// core/philox.h: the documented mapping that rand is checked against.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <string>
#include <vector>

#include "core/philox.h"
#include "test_cuda_util.h"
#include "test_util.h"

namespace {

using namespace tt::cuda_parity;  // NOLINT(google-build-using-namespace)

// ---- RNG ----------------------------------------------------------------------------

TEST_F(CudaTest, RandIsBitIdenticalToTheCpu) {
  for (DType dt : tt::float_dtypes()) {
    for (const Shape& s : std::vector<Shape>{{1}, {7}, {33}, {1000003}}) {
      SCOPED_TRACE(std::string(tandem::dtype_name(dt)) + " " + tt::str(s));
      tandem::Generator hc(1234), hg(1234);
      hc.set_offset(17);
      hg.set_offset(17);
      Tensor c = tandem::rand(s, dt, &hc);
      Tensor g = tandem::rand(s, tandem::TensorOptions(dt).device(kGpu), &hg);
      EXPECT_EQ(hc.offset(), hg.offset());
      expect_parity(g, c, tt::exact());
      // lo + (hi - lo) * u may be contracted to an FMA by nvcc: one rounding apart.
      expect_parity(tandem::uniform(s, -2.0, 3.0, tandem::TensorOptions(dt).device(kGpu), &hg),
                    tandem::uniform(s, -2.0, 3.0, dt, &hc), tt::default_tol(dt));
    }
  }
  // Against the documented mapping directly, on the default generator.
  tandem::manual_seed(99);
  const auto v = tandem::to_vector<float>(tandem::rand({1001}, kGpu).cpu());
  for (uint64_t i = 0; i < v.size(); ++i)
    ASSERT_EQ(v[i], tandem::philox::uniform_float(99, 0, i)) << i;
}

TEST_F(CudaTest, DropoutMaskAndRandintAreBitIdentical) {
  for (DType dt : tt::float_dtypes())
    for (double p : {0.0, 0.1, 0.5, 1.0}) {
      SCOPED_TRACE(std::string(tandem::dtype_name(dt)) + " p " + std::to_string(p));
      tandem::Generator hc(77), hg(77);
      Tensor c = tandem::dropout_mask({1000003}, p, dt, &hc);
      Tensor g = tandem::dropout_mask({1000003}, p, tandem::TensorOptions(dt).device(kGpu), &hg);
      EXPECT_EQ(hc.offset(), hg.offset());
      expect_parity(g, c, tt::exact());
      Tensor x = tt::random_tensor({4097}, dt);
      tandem::Generator dc(5), dg(5);
      expect_parity(tandem::dropout(x.cuda(), p, true, &dg), tandem::dropout(x, p, true, &dc),
                    tt::exact());
    }
  for (DType it : {tandem::kInt32, tandem::kInt64}) {
    tandem::Generator hc(3), hg(3);
    expect_parity(tandem::randint(-7, 1000, {100003}, tandem::TensorOptions(it).device(kGpu), &hg),
                  tandem::randint(-7, 1000, {100003}, it, &hc), tt::exact());
  }
  Tensor x = tt::random_tensor({9}, tandem::kFloat32).cuda();
  EXPECT_TRUE(tandem::dropout(x, 0.5, false).is_same(x));
}

TEST_F(CudaTest, RandnMatchesTheCpuWithinRounding) {
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    tandem::Generator hc(2024), hg(2024);
    Tensor c = tandem::randn({1000003}, dt, &hc);
    Tensor g = tandem::randn({1000003}, tandem::TensorOptions(dt).device(kGpu), &hg);
    EXPECT_EQ(hc.offset(), hg.offset());
    // Box-Muller through logf/sinf/cosf: a few ulps apart on the two devices;
    // sqrt(-2 log u) amplifies the log's error near u = 1, hence the atol.
    expect_parity(g, c, dt == tandem::kFloat32 ? Tol{1e-5, 1e-5} : Tol{1e-12, 1e-12});
    expect_parity(tandem::normal({1001}, 3.0, 2.0, tandem::TensorOptions(dt).device(kGpu), &hg),
                  tandem::normal({1001}, 3.0, 2.0, dt, &hc),
                  dt == tandem::kFloat32 ? Tol{1e-5, 3e-5} : Tol{1e-12, 1e-12});
  }
}

}  // namespace
