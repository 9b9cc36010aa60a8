// CUDA tensors held against CPU ones: factories on the device, round trips
// and copies across devices, dtype conversions, views/fill/clone/item, pinned
// memory. CPU counterparts: test_tensor.cpp. Skipped without a CUDA device.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <algorithm>
#include <string>
#include <vector>

#include "test_cuda_util.h"
#include "test_util.h"

namespace {

using namespace tt::cuda_parity;  // NOLINT(google-build-using-namespace)

// ---- Factories, copies, conversions -----------------------------------------------

TEST_F(CudaTest, FactoriesOnTheDevice) {
  for (DType dt : tt::all_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    const auto opts = tandem::TensorOptions(dt).device(kGpu);
    Tensor z = tandem::zeros({7, 33}, opts);
    EXPECT_TRUE(z.is_cuda());
    EXPECT_EQ(z.device(), kGpu);
    EXPECT_EQ(z.dtype(), dt);
    tt::expect_equal(z.cpu(), tandem::zeros({7, 33}, dt));
    tt::expect_equal(tandem::ones({5}, opts).cpu(), tandem::ones({5}, dt));
    tt::expect_equal(tandem::full({3, 3}, 7.0, opts).cpu(), tandem::full({3, 3}, 7.0, dt));
    EXPECT_TRUE(tandem::zeros_like(z).is_cuda());
    EXPECT_EQ(tandem::empty({0}, opts).numel(), 0);
  }
  tt::expect_equal(
      tandem::arange(0, 100, 3, tandem::TensorOptions(tandem::kInt64).device(kGpu)).cpu(),
      tandem::arange(0, 100, 3));
  tt::expect_equal(
      tandem::arange(1000003, tandem::TensorOptions(tandem::kFloat32).device(kGpu)).cpu(),
      tandem::arange(1000003, tandem::kFloat32));
  Tensor h = tt::random_tensor({4, 5}, tandem::kFloat64);
  tt::expect_equal(tandem::from_vector(tt::to_doubles(h), {4, 5},
                                       tandem::TensorOptions(tandem::kFloat64).device(kGpu))
                       .cpu(),
                   h);
}

TEST_F(CudaTest, RoundTripsEveryDtype) {
  for (DType dt : tt::all_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    for (const Shape& s : parity_shapes()) {
      Tensor x = tt::random_tensor(s, dt, -100, 100);
      Tensor g = x.to(kGpu);
      EXPECT_TRUE(g.is_cuda());
      EXPECT_EQ(g.sizes(), s);
      EXPECT_TRUE(g.to(kGpu).is_same(g));
      tt::expect_equal(g.cpu(), x);
      tt::expect_equal(g.cuda().to(tandem::kCPU), x);
    }
  }
}

TEST_F(CudaTest, DtypeConversionOnTheDeviceMatchesTheCpu) {
  const auto values = tt::int_values(1001, 0, 200);
  for (DType from : tt::all_dtypes())
    for (DType to : tt::all_dtypes()) {
      SCOPED_TRACE(std::string(tandem::dtype_name(from)) + " -> " + tandem::dtype_name(to));
      Tensor x = tt::make_tensor(values, {1001}, from);
      expect_parity(x.cuda().to(to), x.to(to), tt::exact());
      expect_parity(x.to(kGpu, to), x.to(to), tt::exact());
    }
  Tensor f = tt::random_tensor({1000}, tandem::kFloat64, -1e3, 1e3);
  expect_parity(f.cuda().to(tandem::kFloat32), f.to(tandem::kFloat32), tt::exact());
  expect_parity(f.cuda().to(tandem::kInt32), f.to(tandem::kInt32), tt::exact());
}

TEST_F(CudaTest, CopyAcrossDevices) {
  Tensor src = tt::random_tensor({33, 7}, tandem::kFloat64);
  // host -> device, converting dtype
  Tensor d = tandem::empty({33, 7}, tandem::TensorOptions(tandem::kFloat32).device(kGpu));
  tt::poison(d);
  d.copy_(src);
  expect_parity(d, src.to(tandem::kFloat32), tt::exact());
  // device -> host
  Tensor h = tandem::empty({231}, tandem::kFloat64);
  tt::poison(h);
  h.copy_(src.cuda());
  tt::expect_equal(h, src.view({-1}));
  // device -> device, converting dtype
  Tensor dd = tandem::empty({33, 7}, tandem::TensorOptions(tandem::kInt64).device(kGpu));
  dd.copy_(d);
  expect_parity(dd, src.to(tandem::kFloat32).to(tandem::kInt64), tt::exact());
  // one-element source broadcast, from either device
  Tensor b = tandem::empty({4, 6}, tandem::TensorOptions(tandem::kFloat32).device(kGpu));
  b.copy_(tandem::full({1}, 2.5));
  expect_parity(b, tandem::full({4, 6}, 2.5), tt::exact());
  b.copy_(tandem::full({}, -1.0, tandem::TensorOptions(tandem::kFloat64).device(kGpu)));
  expect_parity(b, tandem::full({4, 6}, -1.0), tt::exact());
  // into a slice of a device tensor
  Tensor base = tandem::zeros({4, 3}, tandem::TensorOptions(tandem::kFloat64).device(kGpu));
  Tensor rows = tt::random_tensor({2, 3}, tandem::kFloat64);
  base.slice(0, 1, 3).copy_(rows);
  Tensor ref = tandem::zeros({4, 3}, tandem::kFloat64);
  ref.slice(0, 1, 3).copy_(rows);
  expect_parity(base, ref, tt::exact());
  // large
  Tensor big = tt::random_tensor({1000003}, tandem::kFloat32);
  Tensor bg = tandem::empty({1000003}, tandem::TensorOptions(tandem::kFloat32).device(kGpu));
  bg.copy_(big);
  tt::expect_equal(bg.cpu(), big);
}

// Reversing 18 dims of size 2 merges none: more than the gather kernel's 16
// merged dims, so it runs as one launch per index of the outer dims (once an
// error on CUDA only). Also odd sizes, and 8- and 4-byte words.
TEST_F(CudaTest, PermuteOfMoreThanSixteenMergedDimsMatchesCpu) {
  const Shape odd = {2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2};  // 17 dims
  for (const Shape& shape : std::vector<Shape>{Shape(18, 2), odd}) {
    const Tensor x = tt::random_tensor(shape, tandem::kFloat64);
    Shape perm(shape.size());
    for (size_t d = 0; d < perm.size(); ++d) perm[d] = static_cast<int64_t>(perm.size() - 1 - d);
    tt::expect_equal(x.cuda().permute(perm).cpu(), x.permute(perm));
    const Tensor xf = x.to(tandem::kFloat32);
    tt::expect_equal(xf.cuda().permute(perm).cpu(), xf.permute(perm));
  }
}

TEST_F(CudaTest, ViewsFillCloneItemAndLayoutOnTheDevice) {
  Tensor x = tt::random_tensor({5, 3, 4}, tandem::kFloat32);
  Tensor g = x.cuda();
  const char* base = static_cast<const char*>(g.raw_data());
  EXPECT_EQ(g.view({15, 4}).raw_data(), g.raw_data());
  EXPECT_EQ(g.flatten().raw_data(), g.raw_data());
  EXPECT_EQ(static_cast<const char*>(g.slice(0, 2, 4).raw_data()), base + 2 * 12 * sizeof(float));
  EXPECT_EQ(static_cast<const char*>(g[3].raw_data()), base + 3 * 12 * sizeof(float));
  tt::expect_equal(g.slice(0, 2, 4).cpu(), x.slice(0, 2, 4));
  tt::expect_equal(g.permute({2, 0, 1}).cpu(), x.permute({2, 0, 1}));
  tt::expect_equal(g.transpose(0, 2).cpu(), x.transpose(0, 2));
  tt::expect_equal(g[1].t().cpu(), x[1].t());
  Tensor c = g.clone();
  EXPECT_TRUE(c.is_cuda());
  EXPECT_NE(c.raw_data(), g.raw_data());
  tt::expect_equal(c.cpu(), x);
  EXPECT_EQ(g[2][1].view({-1}).slice(0, 3, 4).item<float>(),
            tandem::to_vector<float>(x)[2 * 12 + 1 * 4 + 3]);
  g.slice(0, 1, 2).fill_(9.0);
  x.slice(0, 1, 2).fill_(9.0);
  tt::expect_equal(g.cpu(), x);
  Tensor big = tandem::empty({1000003}, tandem::TensorOptions(tandem::kFloat64).device(kGpu));
  big.fill_(-0.5);
  tt::expect_equal(big.cpu(), tandem::full({1000003}, -0.5, tandem::kFloat64));
}

TEST_F(CudaTest, PinnedMemory) {
  Tensor p = tandem::empty({1000003}, tandem::TensorOptions(tandem::kFloat32).pinned_memory(true));
  EXPECT_TRUE(p.is_pinned());
  EXPECT_TRUE(p.is_cpu());
  Tensor src = tt::random_tensor({1000003}, tandem::kFloat32);
  p.copy_(src);
  Tensor g = p.cuda();
  EXPECT_TRUE(g.is_cuda());
  tt::expect_equal(g.cpu(), src);
  Tensor back =
      tandem::empty({1000003}, tandem::TensorOptions(tandem::kFloat32).pinned_memory(true));
  back.copy_(g);
  tandem::cuda::synchronize();
  tt::expect_equal(back, src);
  EXPECT_FALSE(src.is_pinned());
}

// Issue 18 item 3: every copy from a pinned block used to leave one CUDA event
// behind on the block until it was freed (10^5 copies: 10^5 events). Now a
// block holds at most one event per stream it was copied on.
TEST_F(CudaTest, RepeatedCopiesFromPinnedMemoryKeepTheEventCountBounded) {
  const tandem::TensorOptions pinned = tandem::TensorOptions(tandem::kFloat32).pinned_memory(true);
  Tensor p = tandem::empty({1001}, pinned);
  p.copy_(tt::random_tensor({1001}, tandem::kFloat32));
  Tensor g = tandem::empty({1001}, tandem::TensorOptions(tandem::kFloat32).device(kGpu));
  const uint64_t before = tandem::cuda::memory_stats().pinned_pending_events;
  uint64_t most = 0;
  for (int i = 0; i < 100000; ++i) {
    g.copy_(p);
    if (i % 997 == 0) most = std::max(most, tandem::cuda::memory_stats().pinned_pending_events);
  }
  most = std::max(most, tandem::cuda::memory_stats().pinned_pending_events);
  EXPECT_LE(most, before + 1) << "one pinned block copied on one stream";
  // A second stream adds one more event, not one per copy.
  const tandem::cuda::Stream original = tandem::cuda::current_stream();
  tandem::cuda::set_current_stream(tandem::cuda::new_stream());
  for (int i = 0; i < 1000; ++i) g.copy_(p);
  EXPECT_LE(tandem::cuda::memory_stats().pinned_pending_events, before + 2);
  tandem::cuda::synchronize();
  tandem::cuda::set_current_stream(original);
  tt::expect_equal(g.cpu(), p);
}

}  // namespace
