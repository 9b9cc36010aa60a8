// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11), written once for host and device. Everything here is integer
// arithmetic or exact float scaling, so uniform floats and dropout masks are
// bit-identical on CPU and CUDA; normals go through log/sin/cos and agree to
// within float rounding.
//
// Element -> counter mapping (shared by both backends; `offset` comes from the
// Generator, which reserves the counters an op uses):
//   uniform/dropout float32 : element i -> counter offset + i/4, lane i%4
//   uniform float64         : element i -> counter offset + i/2, lanes 2(i%2), 2(i%2)+1
//   normal float32          : element i -> counter offset + i/4; lanes (0,1) give
//                             elements 4c, 4c+1 and lanes (2,3) give 4c+2, 4c+3
//                             by Box-Muller
//   normal float64          : element i -> counter offset + i/2; the two 53-bit
//                             uniforms of the counter give elements 2c, 2c+1
//   randint                 : element i -> counter offset + i/2, lanes as float64
// counters_for() says how many counters an op of n elements reserves.
// Dropout keeps element i iff uniform_float(i) >= float(p) (for float32 and
// float64 masks alike) and writes 1/(1-p) there, 0 elsewhere.
// Math functions are called as ::name so that tandem::sqrt(const Tensor&) and
// friends never capture them.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/hd.h"

namespace tandem {
namespace philox {

struct Uint4 {
  uint32_t x, y, z, w;
};

TANDEM_HD uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// 10 rounds of Philox4x32 on a full 128-bit counter and 64-bit key (the
// Random123 reference form; its known-answer vectors test this).
TANDEM_HD Uint4 philox4x32_10(Uint4 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo(kM0, c.x, &hi0);
    const uint32_t lo1 = mulhilo(kM1, c.z, &hi1);
    c = Uint4{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
    k0 += kW0;
    k1 += kW1;
  }
  return c;
}

// tandem's use: counter (lo, hi, 0, 0) of a 64-bit counter, key = the seed.
TANDEM_HD Uint4 philox4x32_10(uint64_t counter, uint64_t seed) {
  return philox4x32_10(
      Uint4{static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u, 0u},
      static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

TANDEM_HD uint32_t lane(const Uint4& r, int i) {
  return i == 0 ? r.x : (i == 1 ? r.y : (i == 2 ? r.z : r.w));
}

// [0, 1) with 24 random bits: exact on every device.
TANDEM_HD float to_unit_float(uint32_t v) {
  return static_cast<float>(v >> 8) * (1.0f / 16777216.0f);
}
// [0, 1) with 53 random bits.
TANDEM_HD double to_unit_double(uint32_t a, uint32_t b) {
  const uint64_t v = (static_cast<uint64_t>(a >> 5) << 26) | static_cast<uint64_t>(b >> 6);
  return static_cast<double>(v) * (1.0 / 9007199254740992.0);
}

enum class Stream : int8_t { Float32, Float64 };

TANDEM_HD uint64_t counters_for(uint64_t n, Stream s) {
  return s == Stream::Float32 ? (n + 3) / 4 : (n + 1) / 2;
}

// The uniform [0, 1) float32 of element i.
TANDEM_HD float uniform_float(uint64_t seed, uint64_t offset, uint64_t i) {
  return to_unit_float(lane(philox4x32_10(offset + i / 4, seed), static_cast<int>(i % 4)));
}
// The uniform [0, 1) float64 of element i.
TANDEM_HD double uniform_double(uint64_t seed, uint64_t offset, uint64_t i) {
  const Uint4 r = philox4x32_10(offset + i / 2, seed);
  return (i % 2 == 0) ? to_unit_double(r.x, r.y) : to_unit_double(r.z, r.w);
}
// 64 random bits of element i (randint).
TANDEM_HD uint64_t bits64(uint64_t seed, uint64_t offset, uint64_t i) {
  const Uint4 r = philox4x32_10(offset + i / 2, seed);
  return (i % 2 == 0) ? ((static_cast<uint64_t>(r.x) << 32) | r.y)
                      : ((static_cast<uint64_t>(r.z) << 32) | r.w);
}

// Box-Muller: u1 in [0, 1) is flipped to (0, 1] so log never sees 0.
TANDEM_HD float normal_float(uint64_t seed, uint64_t offset, uint64_t i) {
  const Uint4 r = philox4x32_10(offset + i / 4, seed);
  const int pair = static_cast<int>((i % 4) / 2);
  const float u1 = 1.0f - to_unit_float(pair == 0 ? r.x : r.z);
  const float u2 = to_unit_float(pair == 0 ? r.y : r.w);
  const float radius = ::sqrtf(-2.0f * ::logf(u1));
  const float theta = 6.2831853071795864769f * u2;
  return (i % 2 == 0) ? radius * ::cosf(theta) : radius * ::sinf(theta);
}
TANDEM_HD double normal_double(uint64_t seed, uint64_t offset, uint64_t i) {
  const Uint4 r = philox4x32_10(offset + i / 2, seed);
  const double u1 = 1.0 - to_unit_double(r.x, r.y);
  const double u2 = to_unit_double(r.z, r.w);
  const double radius = ::sqrt(-2.0 * ::log(u1));
  const double theta = 6.283185307179586476925 * u2;
  return (i % 2 == 0) ? radius * ::cos(theta) : radius * ::sin(theta);
}

}  // namespace philox
}  // namespace tandem
