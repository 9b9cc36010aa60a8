// Random numbers: Philox4x32-10 known-answer vectors (Random123), the
// Generator's (seed, offset) bookkeeping, the documented element -> counter
// mapping of rand/randn/uniform/normal/randint/dropout_mask (recomputed here
// from src/core/philox.h), reproducibility, and statistical sanity.
// core/philox.h comes first: its unqualified sqrt/log/cos/sin on doubles would
// otherwise find tandem::sqrt(const Tensor&) etc. from ops.h (name hiding).
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "core/philox.h"
#include "test_util.h"

namespace {

namespace ph = tandem::philox;
using tandem::Generator;
using tandem::Shape;
using tandem::Tensor;

void expect_uint4(const ph::Uint4& r, uint32_t x, uint32_t y, uint32_t z, uint32_t w) {
  EXPECT_EQ(r.x, x);
  EXPECT_EQ(r.y, y);
  EXPECT_EQ(r.z, z);
  EXPECT_EQ(r.w, w);
}

// ---- Philox -------------------------------------------------------------------------

TEST(PhiloxTest, Random123KnownAnswers) {
  expect_uint4(ph::philox4x32_10(ph::Uint4{0, 0, 0, 0}, 0, 0), 0x6627e8d5u, 0xe169c58du,
               0xbc57ac4cu, 0x9b00dbd8u);
  expect_uint4(ph::philox4x32_10(ph::Uint4{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                                 0xa4093822u, 0x299f31d0u),
               0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u);
  expect_uint4(ph::philox4x32_10(ph::Uint4{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                                 0xffffffffu, 0xffffffffu),
               0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu);
}

TEST(PhiloxTest, SixtyFourBitCounterForm) {
  const uint64_t counter = 0x0123456789abcdefULL, seed = 0xfedcba9876543210ULL;
  const ph::Uint4 a = ph::philox4x32_10(counter, seed);
  const ph::Uint4 b =
      ph::philox4x32_10(ph::Uint4{0x89abcdefu, 0x01234567u, 0u, 0u}, 0x76543210u, 0xfedcba98u);
  expect_uint4(a, b.x, b.y, b.z, b.w);
  EXPECT_EQ(ph::lane(a, 0), a.x);
  EXPECT_EQ(ph::lane(a, 1), a.y);
  EXPECT_EQ(ph::lane(a, 2), a.z);
  EXPECT_EQ(ph::lane(a, 3), a.w);
}

TEST(PhiloxTest, UnitConversionsStayInRange) {
  EXPECT_EQ(ph::to_unit_float(0u), 0.0f);
  EXPECT_EQ(ph::to_unit_float(0xffffffffu), 1.0f - 1.0f / 16777216.0f);
  EXPECT_LT(ph::to_unit_float(0xffffffffu), 1.0f);
  EXPECT_EQ(ph::to_unit_double(0u, 0u), 0.0);
  EXPECT_EQ(ph::to_unit_double(0xffffffffu, 0xffffffffu), 1.0 - 1.0 / 9007199254740992.0);
  EXPECT_EQ(ph::counters_for(0, ph::Stream::Float32), 0u);
  EXPECT_EQ(ph::counters_for(1, ph::Stream::Float32), 1u);
  EXPECT_EQ(ph::counters_for(4, ph::Stream::Float32), 1u);
  EXPECT_EQ(ph::counters_for(5, ph::Stream::Float32), 2u);
  EXPECT_EQ(ph::counters_for(1, ph::Stream::Float64), 1u);
  EXPECT_EQ(ph::counters_for(2, ph::Stream::Float64), 1u);
  EXPECT_EQ(ph::counters_for(3, ph::Stream::Float64), 2u);
  // Box-Muller never sees log(0): the extreme uniform gives a finite normal.
  for (uint64_t i = 0; i < 4096; ++i) {
    ASSERT_TRUE(std::isfinite(ph::normal_float(7, 0, i)));
    ASSERT_TRUE(std::isfinite(ph::normal_double(7, 0, i)));
  }
}

// ---- Generator ------------------------------------------------------------------------

TEST(GeneratorTest, SeedAndOffsetBookkeeping) {
  Generator g(123);
  EXPECT_EQ(g.seed(), 123u);
  EXPECT_EQ(g.offset(), 0u);
  EXPECT_EQ(g.reserve(5), 0u);
  EXPECT_EQ(g.offset(), 5u);
  EXPECT_EQ(g.reserve(2), 5u);
  EXPECT_EQ(g.offset(), 7u);
  g.set_offset(100);
  EXPECT_EQ(g.offset(), 100u);
  g.manual_seed(9);
  EXPECT_EQ(g.seed(), 9u);
  EXPECT_EQ(g.offset(), 0u);
  Generator d;
  EXPECT_EQ(d.seed(), 67280421310721ULL);
}

TEST(GeneratorTest, ReserveIsThreadSafe) {
  Generator g(1);
  const int threads = 4, per_thread = 2000;
  std::vector<std::vector<uint64_t>> got(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) got[static_cast<size_t>(t)].push_back(g.reserve(3));
    });
  for (auto& th : pool) th.join();
  std::set<uint64_t> all;
  for (const auto& v : got) all.insert(v.begin(), v.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(threads * per_thread));
  EXPECT_EQ(g.offset(), static_cast<uint64_t>(3 * threads * per_thread));
  for (uint64_t v : all) ASSERT_EQ(v % 3, 0u);
}

TEST(GeneratorTest, ManualSeedSetsTheDefaultGenerator) {
  tandem::manual_seed(42);
  EXPECT_EQ(tandem::default_generator().seed(), 42u);
  EXPECT_EQ(tandem::default_generator().offset(), 0u);
  Tensor a = tandem::rand({100});
  EXPECT_EQ(tandem::default_generator().offset(), 25u);
  const auto av = tandem::to_vector<float>(a);
  for (uint64_t i = 0; i < 100; ++i) ASSERT_EQ(av[i], ph::uniform_float(42, 0, i)) << i;
  tandem::manual_seed(42);
  EXPECT_EQ(tandem::to_vector<float>(tandem::rand({100})), av);
  Tensor b = tandem::rand({100});  // the offset advanced: a new stream
  EXPECT_NE(tandem::to_vector<float>(b), av);
}

// ---- The element -> counter mapping -------------------------------------------------

TEST(RandTest, Float32MappingAndOffsetAdvance) {
  const uint64_t seed = 0x1234abcd5678ULL;
  Generator g(seed);
  Tensor a = tandem::rand({1001}, {}, &g);
  EXPECT_EQ(a.dtype(), tandem::kFloat32);
  EXPECT_EQ(g.offset(), ph::counters_for(1001, ph::Stream::Float32));
  const auto av = tandem::to_vector<float>(a);
  for (uint64_t i = 0; i < av.size(); ++i) ASSERT_EQ(av[i], ph::uniform_float(seed, 0, i)) << i;
  const uint64_t off = g.offset();
  Tensor b = tandem::rand({3, 7}, {}, &g);
  EXPECT_EQ(b.sizes(), (Shape{3, 7}));
  const auto bv = tandem::to_vector<float>(b);
  for (uint64_t i = 0; i < bv.size(); ++i) ASSERT_EQ(bv[i], ph::uniform_float(seed, off, i)) << i;
  EXPECT_EQ(g.offset(), off + ph::counters_for(21, ph::Stream::Float32));
  // An empty tensor takes no counters.
  const uint64_t before = g.offset();
  EXPECT_EQ(tandem::rand({0}, {}, &g).numel(), 0);
  EXPECT_EQ(g.offset(), before);
}

TEST(RandTest, Float64Mapping) {
  const uint64_t seed = 99;
  Generator g(seed);
  g.set_offset(1000);
  Tensor a = tandem::rand({1001}, tandem::kFloat64, &g);
  EXPECT_EQ(a.dtype(), tandem::kFloat64);
  EXPECT_EQ(g.offset(), 1000 + ph::counters_for(1001, ph::Stream::Float64));
  const auto av = tandem::to_vector<double>(a);
  for (uint64_t i = 0; i < av.size(); ++i) ASSERT_EQ(av[i], ph::uniform_double(seed, 1000, i)) << i;
}

// Normals go through logf/sinf/cosf; the library's copy of the same inline code
// may be vectorised differently, so allow a couple of ulps.
template <typename T>
void expect_ulps(T actual, T expected, int ulps, uint64_t i) {
  const T tol = ulps * std::numeric_limits<T>::epsilon() * std::max<T>(std::fabs(expected), T(1));
  ASSERT_LE(std::fabs(actual - expected), tol) << "element " << i;
}

TEST(RandnTest, Float32AndFloat64Mapping) {
  const uint64_t seed = 2024;
  Generator g(seed);
  Tensor a = tandem::randn({1003}, {}, &g);
  EXPECT_EQ(g.offset(), ph::counters_for(1003, ph::Stream::Float32));
  const auto av = tandem::to_vector<float>(a);
  for (uint64_t i = 0; i < av.size(); ++i) expect_ulps(av[i], ph::normal_float(seed, 0, i), 4, i);
  const uint64_t off = g.offset();
  Tensor b = tandem::randn({1003}, tandem::kFloat64, &g);
  EXPECT_EQ(g.offset(), off + ph::counters_for(1003, ph::Stream::Float64));
  const auto bv = tandem::to_vector<double>(b);
  for (uint64_t i = 0; i < bv.size(); ++i)
    expect_ulps(bv[i], ph::normal_double(seed, off, i), 4, i);
}

TEST(UniformNormalTest, AffineInTheUnitStreams) {
  const uint64_t seed = 31337;
  for (tandem::DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    const bool f32 = dt == tandem::kFloat32;
    Generator g(seed);
    Tensor u = tandem::uniform({777}, -3.0, 5.0, dt, &g);
    const auto uv = tt::to_doubles(u);
    for (uint64_t i = 0; i < uv.size(); ++i) {
      const double unit = f32 ? ph::uniform_float(seed, 0, i) : ph::uniform_double(seed, 0, i);
      ASSERT_NEAR(uv[i], -3.0 + 8.0 * unit, f32 ? 8e-6 : 1e-14) << i;
      ASSERT_GE(uv[i], -3.0);
      ASSERT_LE(uv[i], 5.0);
    }
    Generator h(seed);
    Tensor n = tandem::normal({777}, 10.0, 0.5, dt, &h);
    const auto nv = tt::to_doubles(n);
    for (uint64_t i = 0; i < nv.size(); ++i) {
      const double z = f32 ? ph::normal_float(seed, 0, i) : ph::normal_double(seed, 0, i);
      ASSERT_NEAR(nv[i], 10.0 + 0.5 * z, f32 ? 1e-5 : 1e-13) << i;
    }
  }
}

// ---- Reproducibility ---------------------------------------------------------------

TEST(ReproducibilityTest, SameSeedSameValuesDifferentSeedsDiffer) {
  auto draw = [](uint64_t seed, int which) {
    Generator g(seed);
    switch (which) {
      case 0:
        return tt::to_doubles(tandem::rand({4096}, {}, &g));
      case 1:
        return tt::to_doubles(tandem::randn({4096}, tandem::kFloat64, &g));
      case 2:
        return tt::to_doubles(tandem::randint(0, 1000000, {4096}, tandem::kInt64, &g));
      default:
        return tt::to_doubles(tandem::dropout_mask({4096}, 0.5, {}, &g));
    }
  };
  for (int which = 0; which < 4; ++which) {
    SCOPED_TRACE(which);
    const auto a = draw(5, which), b = draw(5, which), c = draw(6, which);
    EXPECT_EQ(a, b);
    size_t same = 0;
    for (size_t i = 0; i < a.size(); ++i) same += a[i] == c[i];
    // Dropout masks are 0/scale: about half agree by chance; the others almost never.
    EXPECT_LT(same, which == 3 ? a.size() * 6 / 10 : a.size() / 100);
  }
}

TEST(ReproducibilityTest, SuccessiveCallsDiffer) {
  Generator g(77);
  const auto a = tt::to_doubles(tandem::rand({1000}, tandem::kFloat64, &g));
  const auto b = tt::to_doubles(tandem::rand({1000}, tandem::kFloat64, &g));
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  EXPECT_EQ(same, 0u);
  // The same holds for the default generator.
  tandem::manual_seed(3);
  const auto c = tt::to_doubles(tandem::randn({1000}));
  const auto d = tt::to_doubles(tandem::randn({1000}));
  EXPECT_NE(c, d);
}

// ---- Statistics ----------------------------------------------------------------------

struct Moments {
  double mean, var, min, max;
};
Moments moments(const std::vector<double>& v) {
  Moments m{0.0, 0.0, v.empty() ? 0.0 : v[0], v.empty() ? 0.0 : v[0]};
  for (double x : v) {
    m.mean += x;
    m.min = std::min(m.min, x);
    m.max = std::max(m.max, x);
  }
  m.mean /= static_cast<double>(v.size());
  for (double x : v) m.var += (x - m.mean) * (x - m.mean);
  m.var /= static_cast<double>(v.size() - 1);
  return m;
}

// Bounds are ~7 standard errors for 1e6 samples.
TEST(StatisticsTest, RandIsUniform) {
  for (tandem::DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    Generator g(11);
    const auto v = tt::to_doubles(tandem::rand({1000000}, dt, &g));
    const Moments m = moments(v);
    EXPECT_NEAR(m.mean, 0.5, 2e-3);
    EXPECT_NEAR(m.var, 1.0 / 12.0, 1e-3);
    EXPECT_GE(m.min, 0.0);
    EXPECT_LT(m.max, 1.0);
    std::vector<int> hist(10, 0);
    for (double x : v) hist[static_cast<size_t>(x * 10)]++;
    for (int h : hist) EXPECT_NEAR(h / 1e6, 0.1, 2.5e-3);
  }
}

TEST(StatisticsTest, RandnIsStandardNormal) {
  for (tandem::DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    Generator g(12);
    const auto v = tt::to_doubles(tandem::randn({1000000}, dt, &g));
    const Moments m = moments(v);
    EXPECT_NEAR(m.mean, 0.0, 7e-3);
    EXPECT_NEAR(m.var, 1.0, 1e-2);
    size_t within1 = 0;
    for (double x : v) within1 += std::fabs(x) < 1.0;
    EXPECT_NEAR(within1 / 1e6, 0.6826894921, 3.5e-3);
    for (double x : v) ASSERT_TRUE(std::isfinite(x));
  }
  Generator g(13);
  const Moments m = moments(tt::to_doubles(tandem::normal({1000000}, -2.0, 3.0, {}, &g)));
  EXPECT_NEAR(m.mean, -2.0, 2.1e-2);
  EXPECT_NEAR(m.var, 9.0, 9e-2);
}

TEST(RandintTest, RangeDtypeAndStatistics) {
  Generator g(21);
  Tensor r = tandem::randint(0, 10, {1000000}, tandem::kInt64, &g);
  EXPECT_EQ(r.dtype(), tandem::kInt64);
  EXPECT_EQ(g.offset(), ph::counters_for(1000000, ph::Stream::Float64));
  const auto v = tandem::to_vector<int64_t>(r);
  std::vector<int> hist(10, 0);
  for (int64_t x : v) {
    ASSERT_GE(x, 0);
    ASSERT_LT(x, 10);
    hist[static_cast<size_t>(x)]++;
  }
  for (int h : hist) EXPECT_NEAR(h / 1e6, 0.1, 2.5e-3);
  // Negative ranges, a one-value range, int32 output and the default dtype.
  const auto n = tt::to_doubles(tandem::randint(-5, 5, {10000}, tandem::kInt32, &g));
  EXPECT_EQ(*std::min_element(n.begin(), n.end()), -5);
  EXPECT_EQ(*std::max_element(n.begin(), n.end()), 4);
  Tensor one = tandem::randint(3, 4, {50}, tandem::kInt64, &g);
  EXPECT_EQ(tandem::to_vector<int64_t>(one), std::vector<int64_t>(50, 3));
  EXPECT_EQ(tandem::randint(0, 2, {4}).dtype(), tandem::kInt64);
  // A range wider than 32 bits uses the high bits too.
  const int64_t big = 1LL << 40;
  const auto w = tandem::to_vector<int64_t>(tandem::randint(0, big, {10000}, tandem::kInt64, &g));
  int64_t mx = 0;
  for (int64_t x : w) {
    ASSERT_GE(x, 0);
    ASSERT_LT(x, big);
    mx = std::max(mx, x);
  }
  EXPECT_GT(mx, big / 2);
  EXPECT_NEAR(moments(std::vector<double>(w.begin(), w.end())).mean / static_cast<double>(big), 0.5,
              0.02);
}

// ---- Dropout --------------------------------------------------------------------------

TEST(DropoutMaskTest, ValuesFollowTheUniformStream) {
  const uint64_t seed = 555;
  for (double p : {0.1, 0.5, 0.9}) {
    SCOPED_TRACE("p = " + std::to_string(p));
    Generator g(seed);
    Tensor m = tandem::dropout_mask({4099}, p, {}, &g);
    EXPECT_EQ(m.dtype(), tandem::kFloat32);
    EXPECT_EQ(g.offset(), ph::counters_for(4099, ph::Stream::Float32));
    const auto mv = tandem::to_vector<float>(m);
    const float scale = static_cast<float>(1.0 / (1.0 - p));
    // Element i is kept according to uniform_float(seed, 0, i). Which side of
    // the threshold counts as "keep" is not documented; accept either
    // convention, but the whole mask must follow one of them.
    bool keep_low = true, keep_high = true;  // u < 1-p  /  u >= p
    for (uint64_t i = 0; i < mv.size(); ++i) {
      ASSERT_TRUE(mv[i] == 0.0f || std::fabs(mv[i] - scale) <= 1e-6f * scale) << i << ": " << mv[i];
      const bool kept = mv[i] != 0.0f;
      const float u = ph::uniform_float(seed, 0, i);
      keep_low = keep_low && (kept == (u < static_cast<float>(1.0 - p)));
      keep_high = keep_high && (kept == (u >= static_cast<float>(p)));
    }
    EXPECT_TRUE(keep_low || keep_high) << "the mask does not follow the documented uniform stream";
  }
}

TEST(DropoutMaskTest, KeepFractionAndScale) {
  for (tandem::DType dt : tt::float_dtypes()) {
    for (double p : {0.2, 0.5, 0.75}) {
      SCOPED_TRACE(std::string(tandem::dtype_name(dt)) + " p = " + std::to_string(p));
      Generator g(8);
      const auto v = tt::to_doubles(tandem::dropout_mask({1000000}, p, dt, &g));
      const double scale =
          dt == tandem::kFloat32 ? static_cast<float>(1.0 / (1.0 - p)) : 1.0 / (1.0 - p);
      size_t kept = 0;
      for (double x : v) {
        ASSERT_TRUE(x == 0.0 || std::fabs(x - scale) <= 1e-6 * scale) << x;
        kept += x != 0.0;
      }
      EXPECT_NEAR(kept / 1e6, 1.0 - p, 3e-3);
      // Inverted scaling keeps the expectation: mean(mask) ~ 1.
      EXPECT_NEAR(moments(v).mean, 1.0, 1.5e-2);
    }
  }
}

TEST(DropoutMaskTest, EdgeProbabilities) {
  Generator g(4);
  const auto zero = tt::to_doubles(tandem::dropout_mask({1001}, 0.0, {}, &g));
  EXPECT_EQ(zero, std::vector<double>(1001, 1.0));
  const auto one = tt::to_doubles(tandem::dropout_mask({1001}, 1.0, tandem::kFloat64, &g));
  EXPECT_EQ(one, std::vector<double>(1001, 0.0));  // no inf, no NaN
  EXPECT_EQ(tandem::dropout_mask({0}, 0.5, {}, &g).numel(), 0);
}

TEST(DropoutTest, TrainingMultipliesByTheMask) {
  for (tandem::DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    Tensor x = tt::random_tensor({7, 33}, dt, -3, 3);
    Generator g1(19), g2(19);
    Tensor y = tandem::dropout(x, 0.3, true, &g1);
    Tensor mask = tandem::dropout_mask(x.sizes(), 0.3, dt, &g2);
    EXPECT_EQ(g1.offset(), g2.offset());
    const auto xv = tt::to_doubles(x), mv = tt::to_doubles(mask);
    tt::Ref ref{x.sizes(), xv};
    for (size_t i = 0; i < xv.size(); ++i) ref.values[i] = xv[i] * mv[i];
    tt::expect_close(y, ref, tt::default_tol(dt));
    EXPECT_EQ(tt::to_doubles(x), xv) << "dropout must not change its input";
  }
}

TEST(DropoutTest, EvalModeAndEdgeProbabilities) {
  Tensor x = tt::random_tensor({5, 9}, tandem::kFloat32);
  Generator g(1);
  Tensor e = tandem::dropout(x, 0.5, false, &g);
  EXPECT_TRUE(e.is_same(x)) << "dropout in eval mode returns x itself";
  EXPECT_EQ(g.offset(), 0u) << "eval mode draws no random numbers";
  tt::expect_equal(tandem::dropout(x, 0.0, true, &g), x);
  const auto z = tt::to_doubles(tandem::dropout(x, 1.0, true, &g));
  EXPECT_EQ(z, std::vector<double>(45, 0.0));
}

}  // namespace
