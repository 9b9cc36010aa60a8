// The CUDA backend held against the CPU one: every op (the X-macro lists plus
// the rest listed explicitly) runs on both devices with the same random inputs
// and must agree within the tolerance table; RNG streams must be identical;
// the caching allocator must reuse memory and keep honest statistics; copies
// across devices and pinned memory must round-trip. Every test is skipped, with
// the reason printed, when no CUDA device is available.
// core/philox.h comes first: its unqualified sqrt/log/cos/sin on doubles would
// otherwise find tandem::sqrt(const Tensor&) etc. from ops.h (name hiding).
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "core/philox.h"
#include "op_cases.h"
#include "test_util.h"

namespace {

using tandem::BinaryOp;
using tandem::Device;
using tandem::DType;
using tandem::ReduceOp;
using tandem::ScalarSide;
using tandem::Shape;
using tandem::Tensor;
using tandem::UnaryOp;
using tt::Tol;

const Device kGpu(tandem::kCUDA, 0);

// A CUDA result checked against the CPU result: it must live on the GPU and
// match within `tol`.
void expect_parity(const Tensor& gpu, const Tensor& cpu, Tol tol,
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
void poison_output(const Shape& shape, DType dt) { tt::poison_next_allocation(shape, dt, kGpu); }

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override { TANDEM_SKIP_WITHOUT_CUDA(); }
};

template <typename P>
class CudaParamTest : public ::testing::TestWithParam<P> {
 protected:
  void SetUp() override { TANDEM_SKIP_WITHOUT_CUDA(); }
};

std::string dtype_param_name(const ::testing::TestParamInfo<DType>& param_info) {
  return tandem::dtype_name(param_info.param);
}

const std::vector<Shape>& parity_shapes() {
  static const std::vector<Shape> s = {{}, {1}, {7}, {33}, {3, 7, 5}, {0}, {2, 0, 3}, {1000003}};
  return s;
}

// CUDA's expf/logf/tanhf/rsqrtf are accurate to about 2 ulp and glibc's to
// about 1; the two results may differ by the sum, so transcendental ops get
// 4x the table.
bool transcendental(UnaryOp op) {
  switch (op) {
    case UnaryOp::Sigmoid:
    case UnaryOp::Tanh:
    case UnaryOp::Exp:
    case UnaryOp::Log:
    case UnaryOp::Sqrt:
    case UnaryOp::Rsqrt:
    case UnaryOp::Pow:
    case UnaryOp::Erf:
      return true;
    case UnaryOp::Relu:
    case UnaryOp::Neg:
    case UnaryOp::Abs:
    case UnaryOp::Square:
    case UnaryOp::Clamp:
      return false;
  }
  return true;
}
Tol unary_tol(UnaryOp op, DType dt) {
  return transcendental(op) ? tt::scaled(tt::default_tol(dt), 4.0) : tt::default_tol(dt);
}

Tensor unary_input(UnaryOp op, const Shape& shape, DType dt) {
  switch (op) {
    case UnaryOp::Log:
    case UnaryOp::Sqrt:
    case UnaryOp::Rsqrt:
    case UnaryOp::Pow:
      return tt::random_tensor(shape, dt, 0.05, 20.0);
    case UnaryOp::Exp:
      return tt::random_tensor(shape, dt, -20.0, 20.0);
    default:
      return tt::random_tensor(shape, dt, -8.0, 8.0);
  }
}

// ---- Device queries and switches ------------------------------------------------

TEST_F(CudaTest, DeviceQueries) {
  EXPECT_TRUE(tandem::cuda::is_built());
  EXPECT_GE(tandem::cuda::device_count(), 1);
  EXPECT_FALSE(tandem::cuda::device_name(0).empty());
  tandem::cuda::synchronize();
  tandem::cuda::synchronize(0);
}

TEST_F(CudaTest, Tf32IsOffByDefaultAndSwitchable) {
  EXPECT_FALSE(tandem::cuda::allow_tf32());
  tandem::cuda::set_allow_tf32(true);
  EXPECT_TRUE(tandem::cuda::allow_tf32());
  tandem::cuda::set_allow_tf32(false);
  EXPECT_FALSE(tandem::cuda::allow_tf32());
}

TEST_F(CudaTest, SyncDebugSwitch) {
  const bool before = tandem::cuda::sync_debug();
  tandem::cuda::set_sync_debug(true);
  EXPECT_TRUE(tandem::cuda::sync_debug());
  // Ops still work with a synchronise after every launch.
  Tensor x = tt::random_tensor({1000}, tandem::kFloat32);
  expect_parity(tandem::relu(x.cuda()), tandem::relu(x), tt::default_tol(tandem::kFloat32));
  tandem::cuda::set_sync_debug(false);
  EXPECT_FALSE(tandem::cuda::sync_debug());
  tandem::cuda::set_sync_debug(before);
}

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
  base.slice(1, 3).copy_(rows);
  Tensor ref = tandem::zeros({4, 3}, tandem::kFloat64);
  ref.slice(1, 3).copy_(rows);
  expect_parity(base, ref, tt::exact());
  // large
  Tensor big = tt::random_tensor({1000003}, tandem::kFloat32);
  Tensor bg = tandem::empty({1000003}, tandem::TensorOptions(tandem::kFloat32).device(kGpu));
  bg.copy_(big);
  tt::expect_equal(bg.cpu(), big);
}

TEST_F(CudaTest, ViewsFillCloneItemAndLayoutOnTheDevice) {
  Tensor x = tt::random_tensor({5, 3, 4}, tandem::kFloat32);
  Tensor g = x.cuda();
  const char* base = static_cast<const char*>(g.raw_data());
  EXPECT_EQ(g.view({15, 4}).raw_data(), g.raw_data());
  EXPECT_EQ(g.flatten().raw_data(), g.raw_data());
  EXPECT_EQ(static_cast<const char*>(g.slice(2, 4).raw_data()), base + 2 * 12 * sizeof(float));
  EXPECT_EQ(static_cast<const char*>(g[3].raw_data()), base + 3 * 12 * sizeof(float));
  tt::expect_equal(g.slice(2, 4).cpu(), x.slice(2, 4));
  tt::expect_equal(g.permute({2, 0, 1}).cpu(), x.permute({2, 0, 1}));
  tt::expect_equal(g.transpose(0, 2).cpu(), x.transpose(0, 2));
  tt::expect_equal(g[1].t().cpu(), x[1].t());
  Tensor c = g.clone();
  EXPECT_TRUE(c.is_cuda());
  EXPECT_NE(c.raw_data(), g.raw_data());
  tt::expect_equal(c.cpu(), x);
  EXPECT_EQ(g[2][1].view({-1}).slice(3, 4).item<float>(),
            tandem::to_vector<float>(x)[2 * 12 + 1 * 4 + 3]);
  g.slice(1, 2).fill_(9.0);
  x.slice(1, 2).fill_(9.0);
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

// ---- Elementwise parity ----------------------------------------------------------------

class UnaryParity : public CudaParamTest<std::tuple<size_t, DType>> {};

TEST_P(UnaryParity, MatchesCpu) {
  const auto& c = tt::unary_cases()[std::get<0>(GetParam())];
  const DType dt = std::get<1>(GetParam());
  for (const Shape& s : parity_shapes()) {
    SCOPED_TRACE("shape " + tt::str(s));
    Tensor x = unary_input(c.op, s, dt);
    Tensor xg = x.cuda();
    poison_output(s, dt);
    expect_parity(c.fn(xg), c.fn(x), unary_tol(c.op, dt));
    expect_parity(tandem::unary(c.op, xg), tandem::unary(c.op, x), unary_tol(c.op, dt));
    tt::expect_equal(xg.cpu(), x);  // the input is untouched
  }
}

INSTANTIATE_TEST_SUITE_P(AllUnaryOps, UnaryParity,
                         ::testing::Combine(::testing::Range<size_t>(0, tt::unary_cases().size()),
                                            ::testing::Values(tandem::kFloat32, tandem::kFloat64)),
                         [](const ::testing::TestParamInfo<std::tuple<size_t, DType>>& param_info) {
                           return std::string(
                                      tt::unary_cases()[std::get<0>(param_info.param)].name) +
                                  "_" + tandem::dtype_name(std::get<1>(param_info.param));
                         });

class ParamUnaryParity : public CudaParamTest<DType> {};

TEST_P(ParamUnaryParity, PowAndClamp) {
  const DType dt = GetParam();
  for (const Shape& s : parity_shapes()) {
    SCOPED_TRACE("shape " + tt::str(s));
    Tensor pos = tt::random_tensor(s, dt, 0.05, 4.0);
    Tensor any = tt::random_tensor(s, dt, -3.0, 3.0);
    for (double p : {0.5, 2.5, -0.5})
      expect_parity(tandem::pow(pos.cuda(), p), tandem::pow(pos, p), unary_tol(UnaryOp::Pow, dt));
    for (double p : {2.0, 3.0, 0.0}) {
      expect_parity(tandem::pow(any.cuda(), p), tandem::pow(any, p), unary_tol(UnaryOp::Pow, dt));
      expect_parity(tandem::unary(UnaryOp::Pow, any.cuda(), p), tandem::pow(any, p),
                    unary_tol(UnaryOp::Pow, dt));
    }
    expect_parity(tandem::clamp(any.cuda(), -0.5, 0.25), tandem::clamp(any, -0.5, 0.25),
                  tt::exact());
    expect_parity(tandem::unary(UnaryOp::Clamp, any.cuda(), -1.0, 2.0),
                  tandem::clamp(any, -1.0, 2.0), tt::exact());
  }
}

INSTANTIATE_TEST_SUITE_P(Floating, ParamUnaryParity,
                         ::testing::Values(tandem::kFloat32, tandem::kFloat64), dtype_param_name);

struct Operands {
  Tensor a, b;
};
Operands binary_operands(BinaryOp op, DType dt, const Shape& sa, const Shape& sb) {
  if (tandem::is_comparison(op)) {
    // A small set of values so that ties are common.
    auto grid = [&](const Shape& s) {
      auto v = tt::int_values(tt::numel_of(s), -4, 4);
      if (dt == tandem::kUInt8)
        for (auto& x : v) x += 4;
      else if (tandem::is_floating(dt))
        for (auto& x : v) x *= 0.25;
      return tt::make_tensor(v, s, dt);
    };
    return {grid(sa), grid(sb)};
  }
  if (dt == tandem::kUInt8)
    return {tt::random_tensor(sa, dt, 8, 15), tt::random_tensor(sb, dt, 1, 4)};
  if (!tandem::is_floating(dt)) {
    if (op == BinaryOp::Div)
      return {tt::random_tensor(sa, dt, 0, 100), tt::random_tensor(sb, dt, 1, 9)};
    return {tt::random_tensor(sa, dt, -50, 50), tt::random_tensor(sb, dt, -50, 50)};
  }
  if (op == BinaryOp::Div)
    return {tt::random_tensor(sa, dt, -2, 2), tt::random_nonzero(sb, dt, 0.25, 2.0)};
  return {tt::random_tensor(sa, dt, -2, 2), tt::random_tensor(sb, dt, -2, 2)};
}

class BinaryParity : public CudaParamTest<std::tuple<size_t, DType>> {};

TEST_P(BinaryParity, MatchesCpuWithBroadcasting) {
  const auto& c = tt::binary_cases()[std::get<0>(GetParam())];
  const DType dt = std::get<1>(GetParam());
  const std::vector<std::pair<Shape, Shape>> pairs = {{{7}, {7}},
                                                      {{}, {}},
                                                      {{1}, {1}},
                                                      {{3, 7, 5}, {3, 7, 5}},
                                                      {{3, 1, 5}, {4, 5}},
                                                      {{4, 5}, {3, 1, 5}},
                                                      {{2, 1}, {1, 3}},
                                                      {{}, {2, 3}},
                                                      {{2, 3}, {}},
                                                      {{33}, {1}},
                                                      {{0}, {0}},
                                                      {{0, 3}, {3}},
                                                      {{1000003}, {1000003}},
                                                      {{1000003}, {1}},
                                                      {{1000, 1}, {1, 1001}}};
  for (const auto& sh : pairs) {
    SCOPED_TRACE(tt::str(sh.first) + " and " + tt::str(sh.second));
    const Operands in = binary_operands(c.op, dt, sh.first, sh.second);
    const Tensor ag = in.a.cuda(), bg = in.b.cuda();
    Tensor cpu = tt::call_named(c.op, in.a, in.b);
    poison_output(cpu.sizes(), cpu.dtype());
    expect_parity(tt::call_named(c.op, ag, bg), cpu, tt::default_tol(dt));
    expect_parity(tandem::binary(c.op, ag, bg, 2.0), tandem::binary(c.op, in.a, in.b, 2.0),
                  tt::default_tol(dt));
  }
}

TEST_P(BinaryParity, ScalarOnEitherSide) {
  const auto& c = tt::binary_cases()[std::get<0>(GetParam())];
  const DType dt = std::get<1>(GetParam());
  const bool integral = !tandem::is_floating(dt);
  double s_right = 0.75, s_left = -1.5, lo = -2.0, hi = 2.0;
  if (tandem::is_comparison(c.op)) {
    s_right = s_left = integral ? 2.0 : 0.25;
  } else if (dt == tandem::kUInt8) {
    s_right = 2.0, s_left = 16.0, lo = 2.0, hi = 15.0;
  } else if (integral) {
    s_right = 3.0, s_left = 7.0;
    lo = c.op == BinaryOp::Div ? 1.0 : -50.0;
    hi = c.op == BinaryOp::Div ? 100.0 : 50.0;
  }
  for (const Shape& s : parity_shapes()) {
    SCOPED_TRACE("shape " + tt::str(s));
    Tensor a = (!integral && c.op == BinaryOp::Div) ? tt::random_nonzero(s, dt, 0.25, 2.0)
                                                    : tt::random_tensor(s, dt, lo, hi);
    if (tandem::is_comparison(c.op)) a = binary_operands(c.op, dt, s, {}).a;
    const Tensor ag = a.cuda();
    expect_parity(tandem::binary_scalar(c.op, ag, s_right), tandem::binary_scalar(c.op, a, s_right),
                  tt::default_tol(dt));
    expect_parity(tandem::binary_scalar(c.op, ag, s_left, ScalarSide::Left),
                  tandem::binary_scalar(c.op, a, s_left, ScalarSide::Left), tt::default_tol(dt));
    expect_parity(tt::call_named_scalar(c.op, ag, s_right), tt::call_named_scalar(c.op, a, s_right),
                  tt::default_tol(dt));
  }
}

INSTANTIATE_TEST_SUITE_P(AllBinaryOps, BinaryParity,
                         ::testing::Combine(::testing::Range<size_t>(0, tt::binary_cases().size()),
                                            ::testing::Values(tandem::kFloat32, tandem::kFloat64,
                                                              tandem::kInt32, tandem::kInt64,
                                                              tandem::kUInt8)),
                         [](const ::testing::TestParamInfo<std::tuple<size_t, DType>>& param_info) {
                           return std::string(
                                      tt::binary_cases()[std::get<0>(param_info.param)].name) +
                                  "_" + tandem::dtype_name(std::get<1>(param_info.param));
                         });

class InPlaceParity : public CudaParamTest<DType> {};

TEST_P(InPlaceParity, AllInPlaceForms) {
  const DType dt = GetParam();
  const Tol tol = tt::scaled(tt::default_tol(dt), 2.0);  // addcmul/addcdiv round twice
  for (const Shape& os : std::vector<Shape>{{3, 4, 5}, {4, 5}, {1}, {}}) {
    SCOPED_TRACE("other " + tt::str(os));
    const Tensor x0 = tt::random_tensor({3, 4, 5}, dt, 0.1, 2.0);
    const Tensor o = tt::random_nonzero(os, dt, 0.5, 2.0);
    const Tensor og = o.cuda();
    auto run = [&](auto op) {
      Tensor h = x0.clone();
      Tensor g = x0.cuda();
      void* p = g.raw_data();
      Tensor& r = op(g, og);
      EXPECT_EQ(&r, &g);
      EXPECT_EQ(g.raw_data(), p);
      op(h, o);
      expect_parity(g, h, tol);
    };
    run([](Tensor& t, const Tensor& u) -> Tensor& { return t.add_(u); });
    run([](Tensor& t, const Tensor& u) -> Tensor& { return t.add_(u, -0.5); });
    run([](Tensor& t, const Tensor& u) -> Tensor& { return t.sub_(u, 2.0); });
    run([](Tensor& t, const Tensor& u) -> Tensor& { return t.mul_(u); });
    run([](Tensor& t, const Tensor& u) -> Tensor& { return t.div_(u); });
    run([](Tensor& t, const Tensor& u) -> Tensor& { return t += u; });
    run([](Tensor& t, const Tensor& u) -> Tensor& { return t /= u; });
    run([](Tensor& t, const Tensor&) -> Tensor& { return t.add_(1.5); });
    run([](Tensor& t, const Tensor&) -> Tensor& { return t.sub_(0.5); });
    run([](Tensor& t, const Tensor&) -> Tensor& { return t.mul_(-3.0); });
    run([](Tensor& t, const Tensor&) -> Tensor& { return t.div_(4.0); });
    run([](Tensor& t, const Tensor&) -> Tensor& { return t.clamp_(0.5, 1.5); });
    run([](Tensor& t, const Tensor&) -> Tensor& { return t.sqrt_(); });
    run([](Tensor& t, const Tensor&) -> Tensor& { return t.sub_(1.0).relu_(); });
    run([](Tensor& t, const Tensor& u) -> Tensor& { return t.addcmul_(u, u, -0.3); });
    run([](Tensor& t, const Tensor& u) -> Tensor& { return t.addcdiv_(u, u.square(), 0.7); });
  }
}

INSTANTIATE_TEST_SUITE_P(Floating, InPlaceParity,
                         ::testing::Values(tandem::kFloat32, tandem::kFloat64), dtype_param_name);

// Issue 18.4 on the device: an operand that overlaps the destination is read
// as it was before the op (copied first), and copy_ between overlapping views
// stages through a temporary (cudaMemcpyAsync on overlapping ranges is
// undefined). Held against the CPU, whose result is checked in
// test_ops_elementwise.cpp / test_tensor.cpp.
TEST_F(CudaTest, InPlaceOverlappingOperandsMatchCpu) {
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    const Tensor x0 = tt::random_nonzero({100003}, dt, 1.0, 9.0);
    const Tensor m0 = tt::random_nonzero({1001, 33}, dt, 1.0, 9.0);
    auto run = [&](const Tensor& start, auto op) {
      Tensor h = start.clone();
      Tensor g = start.cuda();
      op(g);
      op(h);
      expect_parity(g, h, tt::default_tol(dt));
    };
    run(x0, [](Tensor& x) { x.div_(x[0]); });
    run(x0, [](Tensor& x) { x.sub_(x[50001]); });
    run(m0, [](Tensor& m) { m.sub_(m[0]); });
    run(m0, [](Tensor& m) { m.mul_(m[500]); });
    run(m0, [](Tensor& m) { m.slice(1, 1001).add_(m.slice(0, 1000), 2.0); });
    run(m0, [](Tensor& m) { m.slice(0, 1000).copy_(m.slice(1, 1001)); });
    run(m0, [](Tensor& m) { m.slice(1, 1001).copy_(m.slice(0, 1000)); });
    run(m0, [](Tensor& m) { m.copy_(m.detach()); });
  }
}

TEST_F(CudaTest, WhereParity) {
  for (DType dt : {tandem::kFloat32, tandem::kFloat64, tandem::kInt64}) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    const std::vector<std::array<Shape, 3>> cases = {{Shape{7}, Shape{7}, Shape{7}},
                                                     {Shape{3, 1}, Shape{3, 4}, Shape{4}},
                                                     {Shape{2, 3}, Shape{}, Shape{1, 3}},
                                                     {Shape{0}, Shape{0}, Shape{1}},
                                                     {Shape{1000003}, Shape{1000003}, Shape{}}};
    for (const auto& sh : cases) {
      Tensor cond = tt::random_tensor(sh[0], tandem::kUInt8, 0, 1);
      Tensor a = tt::random_tensor(sh[1], dt, -9, 9), b = tt::random_tensor(sh[2], dt, -9, 9);
      expect_parity(tandem::where(cond.cuda(), a.cuda(), b.cuda()), tandem::where(cond, a, b),
                    tt::exact());
      expect_parity(tandem::where(cond.cuda(), a.cuda(), 2.0), tandem::where(cond, a, 2.0),
                    tt::exact());
      expect_parity(tandem::gt(a.cuda(), 0.0), tandem::gt(a, 0.0), tt::exact());
    }
  }
}

// ---- Reductions ----------------------------------------------------------------------

// Different summation orders on the two devices: each side's error is below
// eps * sqrt(n) * sum|x| (see test_ops_reduce.cpp), so allow twice that.
Tol reduce_parity_tol(ReduceOp op, DType dt, int64_t n) {
  if (!tandem::is_floating(dt)) return tt::exact();
  const Tol base = tt::default_tol(dt);
  const double walk =
      2.0 * tt::epsilon(dt) * std::sqrt(static_cast<double>(n)) * static_cast<double>(n);
  if (op == ReduceOp::Sum) return {base.rtol, base.atol + walk};
  if (op == ReduceOp::Mean) return {base.rtol, base.atol + walk / static_cast<double>(n)};
  return tt::exact();  // max/min/argmax/argmin pick an element: exact
}

Tensor reduce_input(const Shape& s, DType dt) {
  if (dt == tandem::kUInt8) return tt::random_tensor(s, dt, 0, 255);
  if (!tandem::is_floating(dt)) return tt::random_tensor(s, dt, -3, 3);  // many ties
  return tt::random_tensor(s, dt, -1, 1);
}

class ReduceParity : public CudaParamTest<std::tuple<size_t, DType>> {};

std::vector<std::tuple<size_t, DType>> reduce_params() {
  std::vector<std::tuple<size_t, DType>> p;
  for (size_t i = 0; i < tt::reduce_cases().size(); ++i)
    for (DType dt : tt::all_dtypes())
      if (tt::reduce_supports(tt::reduce_cases()[i].op, dt)) p.emplace_back(i, dt);
  return p;
}

TEST_P(ReduceParity, AllAndEachDim) {
  const auto& c = tt::reduce_cases()[std::get<0>(GetParam())];
  const DType dt = std::get<1>(GetParam());
  for (const Shape& s : std::vector<Shape>{
           {}, {7}, {1}, {3, 7, 5}, {1, 33}, {4, 1, 6}, {1000003}, {1000, 1001}, {3, 70000}}) {
    SCOPED_TRACE("shape " + tt::str(s));
    Tensor x = reduce_input(s, dt);
    Tensor xg = x.cuda();
    expect_parity(tt::call_reduce_all(c.op, xg), tt::call_reduce_all(c.op, x),
                  reduce_parity_tol(c.op, dt, x.numel()));
    expect_parity(tandem::reduce(c.op, xg), tandem::reduce(c.op, x),
                  reduce_parity_tol(c.op, dt, x.numel()));
    for (int64_t dim = x.dim() > 0 ? -1 : 0; dim < x.dim(); ++dim)
      for (bool keepdim : {false, true}) {
        SCOPED_TRACE("dim " + std::to_string(dim) + (keepdim ? " keepdim" : ""));
        Tensor cpu = tt::call_reduce_dim(c.op, x, dim, keepdim);
        poison_output(cpu.sizes(), cpu.dtype());
        expect_parity(tt::call_reduce_dim(c.op, xg, dim, keepdim), cpu,
                      reduce_parity_tol(c.op, dt, x.size(dim)));
      }
  }
  // Empty inputs.
  Tensor e = tandem::empty({0, 3}, dt);
  if (c.op == ReduceOp::Sum)
    expect_parity(tandem::sum(e.cuda(), 0), tandem::sum(e, 0), tt::exact());
  expect_parity(tt::call_reduce_dim(c.op, e.cuda(), 1, false),
                tt::call_reduce_dim(c.op, e, 1, false), tt::exact());
}

TEST_F(CudaTest, LargeSumsByNormalisedError) {
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean})
    for (DType dt : tt::float_dtypes()) {
      SCOPED_TRACE(std::string(tandem::op_name(op)) + " " + tandem::dtype_name(dt));
      Tensor x = tt::random_tensor({4096, 513}, dt, 0, 1);
      for (int64_t dim : {0, 1}) {
        const auto g = tt::to_doubles(tt::call_reduce_dim(op, x.cuda(), dim, false));
        const auto h = tt::to_doubles(tt::call_reduce_dim(op, x, dim, false));
        // Float32 sums of 4096 terms on the CPU carry a relative error of ~1e-6.
        EXPECT_LT(tt::nmse(g, h), dt == tandem::kFloat32 ? 1e-10 : 1e-26);
      }
    }
}

INSTANTIATE_TEST_SUITE_P(AllReduceOps, ReduceParity, ::testing::ValuesIn(reduce_params()),
                         [](const ::testing::TestParamInfo<std::tuple<size_t, DType>>& param_info) {
                           return std::string(
                                      tt::reduce_cases()[std::get<0>(param_info.param)].name) +
                                  "_" + tandem::dtype_name(std::get<1>(param_info.param));
                         });

class VarSoftmaxParity : public CudaParamTest<DType> {};

TEST_P(VarSoftmaxParity, Var) {
  const DType dt = GetParam();
  // Two-pass variance with device-specific summation order.
  const Tol tol = tt::scaled(tt::default_tol(dt), 8.0);
  for (const Shape& s : std::vector<Shape>{{7}, {3, 7, 5}, {2, 33}, {1000003}}) {
    Tensor x = tt::random_tensor(s, dt, -1, 1);
    for (bool unbiased : {true, false}) {
      SCOPED_TRACE("shape " + tt::str(s) + (unbiased ? " unbiased" : " biased"));
      expect_parity(tandem::var(x.cuda(), unbiased), tandem::var(x, unbiased),
                    tt::with_atol(tol, dt == tandem::kFloat32 ? 1e-4 : 1e-10));
      for (int64_t dim = -1; dim < x.dim(); ++dim)
        for (bool keepdim : {false, true})
          expect_parity(tandem::var(x.cuda(), dim, unbiased, keepdim),
                        tandem::var(x, dim, unbiased, keepdim),
                        tt::with_atol(tol, dt == tandem::kFloat32 ? 1e-4 : 1e-10));
    }
  }
}

TEST_P(VarSoftmaxParity, SoftmaxAndLogSoftmax) {
  const DType dt = GetParam();
  const Tol tol = tt::scaled(tt::default_tol(dt), 4.0);  // expf/logf on both sides
  for (const Shape& s :
       std::vector<Shape>{{7}, {1}, {3, 7, 5}, {4, 33}, {2, 1, 3}, {0, 5}, {64, 1000}, {3, 4097}}) {
    Tensor x = tt::random_tensor(s, dt, -5, 5);
    const Tensor xg = x.cuda();
    for (int64_t dim = -1; dim < x.dim(); ++dim) {
      SCOPED_TRACE("shape " + tt::str(s) + " dim " + std::to_string(dim));
      Tensor cpu = tandem::softmax(x, dim);
      poison_output(cpu.sizes(), dt);
      expect_parity(tandem::softmax(xg, dim), cpu, tol);
      poison_output(cpu.sizes(), dt);
      expect_parity(tandem::log_softmax(xg, dim), tandem::log_softmax(x, dim), tol);
    }
  }
  Tensor big = tt::random_tensor({8, 1000}, dt, -1e4, 1e4);
  Tensor sg = tandem::softmax(big.cuda(), 1), lg = tandem::log_softmax(big.cuda(), 1);
  for (double v : tt::to_doubles(sg)) ASSERT_TRUE(std::isfinite(v));
  for (double v : tt::to_doubles(lg)) ASSERT_TRUE(std::isfinite(v));
  expect_parity(sg, tandem::softmax(big, 1), tol);
  expect_parity(lg, tandem::log_softmax(big, 1), tol);
  Tensor row = tt::random_tensor({1000003}, dt, -3, 3);
  EXPECT_LT(tt::nmse(tt::to_doubles(tandem::softmax(row.cuda(), 0)),
                     tt::to_doubles(tandem::softmax(row, 0))),
            dt == tandem::kFloat32 ? 1e-10 : 1e-24);
}

// Issue 18 item 9: softmax over dim 0 of a tall, narrow tensor splits each
// column into chunks (max and sum-exp partials combined by the log-sum-exp
// rule, then a pass per element). Shapes with few columns and long dims, a
// column of -inf in one chunk only, and a whole column of -inf (NaN, as on
// the CPU).
TEST_P(VarSoftmaxParity, TallNarrowSoftmaxOverDimZero) {
  const DType dt = GetParam();
  const Tol tol = tt::scaled(tt::default_tol(dt), 4.0);  // expf/logf on both sides
  for (const Shape& s : std::vector<Shape>{
           {100003, 3}, {4097, 1}, {4097, 2}, {65, 1, 2}, {2049, 5, 3}, {3, 30011, 2}}) {
    Tensor x = tt::random_tensor(s, dt, -5, 5);
    const Tensor xg = x.cuda();
    for (int64_t dim : {int64_t{0}, int64_t{1}}) {
      SCOPED_TRACE("shape " + tt::str(s) + " dim " + std::to_string(dim));
      Tensor cpu = tandem::softmax(x, dim);
      poison_output(cpu.sizes(), dt);
      expect_parity(tandem::softmax(xg, dim), cpu, tol);
      poison_output(cpu.sizes(), dt);
      expect_parity(tandem::log_softmax(xg, dim), tandem::log_softmax(x, dim), tol);
    }
  }
  // Column 0: -inf in its first 5000 entries (whole chunks); column 1: all
  // -inf (NaN on both devices); column 2: finite, with a large spread.
  const int64_t rows = 20011;
  std::vector<double> v = tt::to_doubles(tt::random_tensor({rows, 3}, dt, -50, 50));
  for (int64_t r = 0; r < rows; ++r) {
    if (r < 5000) v[static_cast<size_t>(r * 3)] = -INFINITY;
    v[static_cast<size_t>(r * 3 + 1)] = -INFINITY;
  }
  Tensor x = tt::make_tensor(v, {rows, 3}, dt);
  for (bool take_log : {false, true}) {
    SCOPED_TRACE(take_log ? "log_softmax with -inf" : "softmax with -inf");
    const std::vector<double> gpu =
        tt::to_doubles(take_log ? tandem::log_softmax(x.cuda(), 0) : tandem::softmax(x.cuda(), 0));
    const std::vector<double> cpu =
        tt::to_doubles(take_log ? tandem::log_softmax(x, 0) : tandem::softmax(x, 0));
    for (size_t e = 0; e < cpu.size(); ++e) {
      if (std::isnan(cpu[e])) {
        ASSERT_TRUE(std::isnan(gpu[e])) << "element " << e << ": " << gpu[e];
      } else if (std::isinf(cpu[e])) {
        ASSERT_EQ(gpu[e], cpu[e]) << "element " << e;
      } else {
        ASSERT_NEAR(gpu[e], cpu[e], tol.atol + tol.rtol * std::abs(cpu[e])) << "element " << e;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Floating, VarSoftmaxParity,
                         ::testing::Values(tandem::kFloat32, tandem::kFloat64), dtype_param_name);

// ---- Matrix products (cuBLAS) ------------------------------------------------------------

// cuBLAS and OpenBLAS both accumulate float32 in float32 with their own blocking
// and FMA use (TF32 is off by default), so the difference grows with k; inputs
// are in [-1, 1].
Tol gemm_parity_tol(DType dt, int64_t k) {
  if (dt == tandem::kFloat64) return tt::scaled(tt::default_tol(dt), 2.0);
  return {1e-5, 1e-5 + 4.0 * static_cast<double>(k) * tt::epsilon(dt)};
}

class BlasParity : public CudaParamTest<DType> {};

TEST_P(BlasParity, MmBmmMatmulLinear) {
  const DType dt = GetParam();
  ASSERT_FALSE(tandem::cuda::allow_tf32());
  const int64_t m = 7, k = 33, n = 5;
  const std::vector<std::pair<Shape, Shape>> mm_cases = {
      {{m, k}, {k, n}}, {{1, 1}, {1, 1}}, {{65, 129}, {129, 67}}, {{256, 512}, {512, 96}}};
  for (const auto& c : mm_cases) {
    SCOPED_TRACE("mm " + tt::str(c.first) + " x " + tt::str(c.second));
    Tensor a = tt::random_tensor(c.first, dt), b = tt::random_tensor(c.second, dt);
    Tensor cpu = tandem::mm(a, b);
    poison_output(cpu.sizes(), dt);
    expect_parity(tandem::mm(a.cuda(), b.cuda()), cpu, gemm_parity_tol(dt, c.first.back()));
  }
  Tensor ba = tt::random_tensor({3, m, k}, dt), bb = tt::random_tensor({3, k, n}, dt);
  expect_parity(tandem::bmm(ba.cuda(), bb.cuda()), tandem::bmm(ba, bb), gemm_parity_tol(dt, k));
  const std::vector<std::pair<Shape, Shape>> matmul_cases = {{{k}, {k}},
                                                             {{m, k}, {k}},
                                                             {{k}, {k, n}},
                                                             {{m, k}, {k, n}},
                                                             {{3, m, k}, {k, n}},
                                                             {{2, 3, m, k}, {k, n}},
                                                             {{3, m, k}, {3, k, n}},
                                                             {{2, 3, m, k}, {2, 3, k, n}}};
  for (const auto& c : matmul_cases) {
    SCOPED_TRACE("matmul " + tt::str(c.first) + " x " + tt::str(c.second));
    Tensor a = tt::random_tensor(c.first, dt), b = tt::random_tensor(c.second, dt);
    expect_parity(tandem::matmul(a.cuda(), b.cuda()), tandem::matmul(a, b), gemm_parity_tol(dt, k));
  }
  Tensor x = tt::random_tensor({2, 9, k}, dt), w = tt::random_tensor({n, k}, dt),
         bias = tt::random_tensor({n}, dt);
  expect_parity(tandem::linear(x.cuda(), w.cuda()), tandem::linear(x, w), gemm_parity_tol(dt, k));
  expect_parity(tandem::linear(x.cuda(), w.cuda(), bias.cuda()), tandem::linear(x, w, bias),
                gemm_parity_tol(dt, k));
  // Empty operands.
  const auto opts = tandem::TensorOptions(dt).device(kGpu);
  expect_parity(tandem::mm(tandem::empty({3, 0}, opts), tandem::empty({0, 4}, opts)),
                tandem::zeros({3, 4}, dt), tt::exact());
  EXPECT_EQ(tandem::bmm(tandem::empty({0, 2, 3}, opts), tandem::empty({0, 3, 4}, opts)).sizes(),
            (Shape{0, 2, 4}));
}

TEST_F(CudaTest, Tf32GemmIsLessPreciseButClose) {
  const DType dt = tandem::kFloat32;  // TF32 affects float32 only
  Tensor a = tt::random_tensor({128, 256}, dt), b = tt::random_tensor({256, 64}, dt);
  tandem::cuda::set_allow_tf32(true);
  Tensor fast = tandem::mm(a.cuda(), b.cuda());
  tandem::cuda::set_allow_tf32(false);
  // TF32 keeps a 10-bit mantissa: a relative error of ~1e-3 per product.
  EXPECT_LT(tt::nmse(tt::to_doubles(fast), tt::to_doubles(tandem::mm(a, b))), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Floating, BlasParity,
                         ::testing::Values(tandem::kFloat32, tandem::kFloat64), dtype_param_name);

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

// ---- Parity classes (docs/design.md, "Parity") ---------------------------------------------

// Issue 18 item 8: the ops the design doc lists as bit-identical across
// devices, checked with zero tolerance on random inputs of odd sizes.
TEST_F(CudaTest, OpsDocumentedAsBitIdenticalAreBitIdentical) {
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    const Tensor a = tt::random_tensor({7, 33, 5}, dt, -3.0, 3.0);
    const Tensor b = tt::random_nonzero({7, 33, 5}, dt, 0.1, 3.0);
    const Tensor row = tt::random_tensor({33, 1}, dt);
    const Tensor ag = a.cuda(), bg = b.cuda(), rowg = row.cuda();
    const Tol ex = tt::exact();
    expect_parity(tandem::add(ag, bg, 0.37), tandem::add(a, b, 0.37), ex);
    expect_parity(tandem::sub(ag, rowg, -1.7), tandem::sub(a, row, -1.7), ex);  // broadcast
    expect_parity(tandem::mul(ag, bg), tandem::mul(a, b), ex);
    expect_parity(tandem::div(ag, bg), tandem::div(a, b), ex);
    expect_parity(tandem::add(ag, 0.1), tandem::add(a, 0.1), ex);
    expect_parity(ag * 0.3, a * 0.3, ex);
    expect_parity(1.25 / bg, 1.25 / b, ex);
    expect_parity(tandem::maximum(ag, bg), tandem::maximum(a, b), ex);
    expect_parity(tandem::minimum(ag, rowg), tandem::minimum(a, row), ex);
    expect_parity(tandem::relu(ag), tandem::relu(a), ex);
    expect_parity(tandem::neg(ag), tandem::neg(a), ex);
    expect_parity(tandem::abs(ag), tandem::abs(a), ex);
    expect_parity(tandem::square(ag), tandem::square(a), ex);
    expect_parity(tandem::clamp(ag, -0.5, 0.75), tandem::clamp(a, -0.5, 0.75), ex);
    expect_parity(tandem::lt(ag, bg), tandem::lt(a, b), ex);
    expect_parity(tandem::where(tandem::gt(ag, 0.0), ag, bg),
                  tandem::where(tandem::gt(a, 0.0), a, b), ex);
    for (int64_t dim = 0; dim < 3; ++dim) {
      expect_parity(tandem::max(ag, dim), tandem::max(a, dim), ex);
      expect_parity(tandem::argmin(ag, dim), tandem::argmin(a, dim), ex);
    }
    expect_parity(tandem::max(ag), tandem::max(a), ex);
    expect_parity(ag.permute({2, 0, 1}), a.permute({2, 0, 1}), ex);
    const Tensor idx = tandem::randint(0, 33, {7, 9, 5}, tandem::kInt64);
    expect_parity(tandem::gather(ag, 1, idx.cuda()), tandem::gather(a, 1, idx), ex);
    expect_parity(ag.to(tandem::kInt32), a.to(tandem::kInt32), ex);
    const Tensor img = tt::random_tensor({3, 5, 13, 11}, dt);
    expect_parity(tandem::max_pool2d(img.cuda(), 3, tandem::Size2(2), 1),
                  tandem::max_pool2d(img, 3, tandem::Size2(2), 1), ex);
  }
  const Tensor ints = tandem::randint(-1000, 1000, {1000003}, tandem::kInt64);
  expect_parity(tandem::sum(ints.cuda()), tandem::sum(ints), tt::exact());
}

// ---- The caching allocator ------------------------------------------------------------

TEST_F(CudaTest, FreedBlocksAreReused) {
  const Shape s{1 << 18};
  { Tensor warm = tandem::empty(s, kGpu); }
  tandem::cuda::synchronize();
  const auto before = tandem::cuda::memory_stats();
  for (int i = 0; i < 5; ++i) {
    Tensor t = tandem::empty(s, kGpu);
    t.fill_(1.0);
  }
  tandem::cuda::synchronize();
  const auto after = tandem::cuda::memory_stats();
  EXPECT_EQ(after.num_device_allocs, before.num_device_allocs)
      << "same-size allocations must hit the cache";
  EXPECT_GE(after.num_alloc_requests, before.num_alloc_requests + 5);
}

TEST_F(CudaTest, AllocatedBytesGrowAndShrinkAndPeakIsTracked) {
  tandem::cuda::synchronize();
  const auto s0 = tandem::cuda::memory_stats();
  tandem::cuda::reset_peak_memory_stats();
  EXPECT_EQ(tandem::cuda::memory_stats().peak_allocated_bytes, s0.allocated_bytes);
  const size_t bytes = 4u << 20;
  {
    Tensor a = tandem::empty({static_cast<int64_t>(bytes / 4)}, kGpu);
    const auto s1 = tandem::cuda::memory_stats();
    EXPECT_GE(s1.allocated_bytes, s0.allocated_bytes + bytes);
    EXPECT_GE(s1.reserved_bytes, s1.allocated_bytes);
    EXPECT_EQ(s1.reserved_bytes, s1.allocated_bytes + s1.cached_bytes);
    {
      Tensor b = tandem::empty({static_cast<int64_t>(bytes / 4)}, kGpu);
      EXPECT_GE(tandem::cuda::memory_stats().allocated_bytes, s0.allocated_bytes + 2 * bytes);
    }
    EXPECT_GE(tandem::cuda::memory_stats().peak_allocated_bytes, s0.allocated_bytes + 2 * bytes);
  }
  tandem::cuda::synchronize();
  const auto s2 = tandem::cuda::memory_stats();
  EXPECT_EQ(s2.allocated_bytes, s0.allocated_bytes);
  EXPECT_GE(s2.peak_allocated_bytes, s0.allocated_bytes + 2 * bytes);
  EXPECT_GE(s2.cached_bytes, 2 * bytes);
}

TEST_F(CudaTest, NoGrowthOverRepeatedSteps) {
  Tensor x = tt::random_tensor({64, 128}, tandem::kFloat32).cuda();
  Tensor w = tt::random_tensor({32, 128}, tandem::kFloat32).cuda();
  Tensor b = tt::random_tensor({32}, tandem::kFloat32).cuda();
  Tensor labels = tandem::randint(0, 32, {64}, tandem::TensorOptions(tandem::kInt64).device(kGpu));
  auto step = [&] {
    Tensor h = tandem::relu(tandem::linear(x, w, b));
    Tensor lp = tandem::log_softmax(h, 1);
    Tensor loss = tandem::neg(tandem::mean(tandem::gather(lp, 1, labels.view({64, 1}))));
    Tensor m = tandem::dropout(h, 0.1);
    w.add_(tandem::matmul(m.t(), x), -1e-3);
    return loss.item<float>();
  };
  for (int i = 0; i < 3; ++i) step();  // warm-up fills the cache
  tandem::cuda::synchronize();
  const auto before = tandem::cuda::memory_stats();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(std::isfinite(step()));
  tandem::cuda::synchronize();
  const auto after = tandem::cuda::memory_stats();
  EXPECT_EQ(after.num_device_allocs, before.num_device_allocs);
  EXPECT_EQ(after.reserved_bytes, before.reserved_bytes);
  EXPECT_EQ(after.allocated_bytes, before.allocated_bytes);
}

TEST_F(CudaTest, EmptyCacheReturnsFreeBlocks) {
  { Tensor t = tandem::empty({1 << 20}, kGpu); }
  tandem::cuda::synchronize();
  const auto s0 = tandem::cuda::memory_stats();
  EXPECT_GT(s0.cached_bytes, 0u);
  tandem::cuda::empty_cache();
  const auto s1 = tandem::cuda::memory_stats();
  EXPECT_EQ(s1.cached_bytes, 0u);
  EXPECT_EQ(s1.reserved_bytes, s1.allocated_bytes);
  EXPECT_GT(s1.num_device_frees, s0.num_device_frees);
  // Allocation still works after emptying the cache.
  Tensor t = tandem::ones({1 << 20}, kGpu);
  EXPECT_EQ(tandem::sum(t).item<double>(), static_cast<double>(1 << 20));
}

TEST_F(CudaTest, OutOfMemoryIsAnError) {
  const int64_t huge = int64_t{1} << 42;  // 16 TiB of float32
  try {
    Tensor t = tandem::empty({huge}, kGpu);
    FAIL() << "allocating 16 TiB succeeded";
  } catch (const tandem::OutOfMemoryError& e) {
    EXPECT_FALSE(e.message().empty());
  }
  EXPECT_THROW(tandem::empty({huge}, kGpu), tandem::Error);
  // The allocator is still usable.
  Tensor ok = tandem::full({1000}, 2.0, kGpu);
  EXPECT_EQ(tandem::sum(ok).item<double>(), 2000.0);
}

// ---- Streams ---------------------------------------------------------------------------

TEST_F(CudaTest, OpsOnANewStream) {
  const tandem::cuda::Stream original = tandem::cuda::current_stream();
  const tandem::cuda::Stream s = tandem::cuda::new_stream();
  EXPECT_NE(s.handle(), original.handle());
  tandem::cuda::set_current_stream(s);
  EXPECT_EQ(tandem::cuda::current_stream().handle(), s.handle());
  Tensor x = tt::random_tensor({1000003}, tandem::kFloat32);
  Tensor y = tandem::exp(x.cuda());
  s.synchronize();
  tandem::cuda::set_current_stream(original);
  expect_parity(y, tandem::exp(x), unary_tol(UnaryOp::Exp, tandem::kFloat32));
}

// Issue 18 item 7: the current stream is per host thread.
TEST_F(CudaTest, CurrentStreamIsPerThread) {
  const tandem::cuda::Stream main_stream = tandem::cuda::current_stream();
  const tandem::cuda::Stream other = tandem::cuda::new_stream();
  void* seen_in_thread = nullptr;
  void* after_set_in_thread = nullptr;
  std::thread worker([&] {
    seen_in_thread = tandem::cuda::current_stream().handle();
    tandem::cuda::set_current_stream(other);
    after_set_in_thread = tandem::cuda::current_stream().handle();
    Tensor y = tandem::exp(tandem::ones({1001}, kGpu));
    other.synchronize();
  });
  worker.join();
  EXPECT_EQ(seen_in_thread, main_stream.handle()) << "a new thread starts on the default stream";
  EXPECT_EQ(after_set_in_thread, other.handle());
  EXPECT_EQ(tandem::cuda::current_stream().handle(), main_stream.handle())
      << "another thread's set_current_stream must not move this thread's work";
  {
    tandem::cuda::StreamGuard guard(other);
    EXPECT_EQ(tandem::cuda::current_stream().handle(), other.handle());
  }
  EXPECT_EQ(tandem::cuda::current_stream().handle(), main_stream.handle());
}

// Issue 18 item 7: a block used on another stream (record_stream) is not
// handed out again until that stream has done the work queued on it.
TEST_F(CudaTest, RecordStreamKeepsABlockFromReuseUntilTheOtherStreamIsDone) {
  tandem::cuda::synchronize();
  tandem::cuda::empty_cache();  // so that only this test's blocks are cached
  const tandem::cuda::Stream side = tandem::cuda::new_stream();
  const Shape shape{1 << 20};
  Tensor a = tt::random_tensor({1536, 1536}, tandem::kFloat64).cuda();
  Tensor x = tandem::empty(shape, kGpu);  // allocated on the main stream
  void* const x_ptr = x.raw_data();
  Tensor busy;
  {
    tandem::cuda::StreamGuard guard(side);
    // Enough work on the side stream to still be running when x is freed.
    busy = a;
    for (int i = 0; i < 40; ++i) busy = tandem::matmul(busy, a) * (1.0 / 1536.0);
    Tensor read = tandem::sum(x.view({1024, 1024}), 1);  // x used on the side stream
    tandem::cuda::record_stream(x, side);
    tandem::cuda::record_stream(read, tandem::cuda::current_stream());  // no-op: its own stream
  }
  x = Tensor();  // freed while the side stream may still read it
  Tensor y = tandem::empty(shape, kGpu);
  EXPECT_NE(y.raw_data(), x_ptr) << "reused while the side stream still had work queued";
  side.synchronize();
  y = Tensor();
  Tensor z = tandem::empty(shape, kGpu);
  Tensor w = tandem::empty(shape, kGpu);
  EXPECT_TRUE(z.raw_data() == x_ptr || w.raw_data() == x_ptr)
      << "the block must come back once the side stream is done";
  EXPECT_TRUE(std::isfinite(tandem::sum(busy).item<double>()));
}

TEST_F(CudaTest, RecordStreamErrors) {
  const tandem::cuda::Stream s = tandem::cuda::current_stream();
  tt::expect_error([&] { tandem::cuda::record_stream(Tensor(), s); },
                   {"cuda::record_stream", "undefined"});
  tt::expect_error([&] { tandem::cuda::record_stream(tandem::ones({3}), s); },
                   {"cuda::record_stream", "expected a CUDA tensor", "cpu", "[3]"});
  if (tandem::cuda::device_count() > 1) {
    tt::expect_error(
        [&] { tandem::cuda::record_stream(tandem::ones({3}, kGpu), tandem::cuda::new_stream(1)); },
        {"cuda::record_stream", "cuda:1"});
  }
}

// Issue 18 item 7: each (cuBLAS handle, stream) pair has its own workspace, so
// GEMMs on two streams from one thread do not share cuBLAS scratch memory.
TEST_F(CudaTest, GemmsOnTwoStreamsMatchTheCpu) {
  const tandem::cuda::Stream s1 = tandem::cuda::new_stream(), s2 = tandem::cuda::new_stream();
  const Tensor a = tt::random_tensor({257, 129}, tandem::kFloat32);
  const Tensor b = tt::random_tensor({129, 191}, tandem::kFloat32);
  const Tensor ag = a.cuda(), bg = b.cuda();
  std::vector<Tensor> r1, r2;
  for (int i = 0; i < 8; ++i) {
    {
      tandem::cuda::StreamGuard g(s1);
      r1.push_back(tandem::matmul(ag, bg));
    }
    {
      tandem::cuda::StreamGuard g(s2);
      r2.push_back(tandem::matmul(ag, bg));
    }
  }
  s1.synchronize();
  s2.synchronize();
  const Tensor want = tandem::matmul(a, b);
  const Tol tol = tt::scaled(tt::default_tol(tandem::kFloat32), 20.0);  // GEMM order
  for (int i = 0; i < 8; ++i) {
    tt::expect_close(r1[static_cast<size_t>(i)].cpu(), want, tol);
    tt::expect_close(r2[static_cast<size_t>(i)].cpu(), want, tol);
  }
}

}  // namespace
