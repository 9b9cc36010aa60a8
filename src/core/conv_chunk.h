// How src/cuda/cudnn_conv.cpp splits a convolution's batch so that no tensor
// handed to cuDNN has more elements than its descriptors take (int strides:
// 2^31 - 1). Plain C++ so that the CPU tests check the arithmetic.
#pragma once

#include <cstdint>
#include <limits>

#include "core/backend.h"

namespace tandem {
namespace conv {

constexpr int64_t kMaxCudnnElements = std::numeric_limits<int32_t>::max();

// Samples per cuDNN call: the largest count whose input [nb, c, h, w] and
// output [nb, k, p, q] both stay within `max_elements` (all of s.n when the
// whole batch does); 0 when a single sample is already too large.
inline int64_t batch_chunk(const ConvShape& s, int64_t max_elements = kMaxCudnnElements) {
  const int64_t per_x = s.c * s.h * s.w, per_y = s.k * s.p * s.q;
  const int64_t per_sample = per_x > per_y ? per_x : per_y;
  if (per_sample <= 0) return s.n;
  const int64_t fit = max_elements / per_sample;
  return fit < s.n ? fit : s.n;
}

}  // namespace conv
}  // namespace tandem
