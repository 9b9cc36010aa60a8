// Random fills: cuda::uniform, cuda::normal, cuda::randint, cuda::dropout_mask.
//
// Every value comes from Philox4x32-10 with the element -> counter mapping of
// src/core/philox.h, so a CPU and a CUDA tensor drawn from the same generator
// state agree: bit for bit for uniform, randint and dropout masks (integer
// arithmetic and exact scaling; the affine maps below are computed in double
// with explicitly rounded multiply and add, as the CPU computes them), and to
// float rounding for normal (log/sin/cos differ between the libraries).
// One thread computes one Philox counter and writes all the elements that
// counter feeds (4 float32 uniforms/normals/dropout decisions, 2 float64 values,
// 2 randint values), with one vector store when the output is aligned; the
// values are exactly those of philox::uniform_float/uniform_double/bits64/
// normal_float/normal_double for each element index.
//   uniform:  out = T(lo + (hi - lo) * u)            (u = uniform_float/_double)
//   normal:   out = T(mean + std * z)                (z = normal_float/_double)
//   randint:  out = low + bits64 % (high - low)      (int32/int64)
//   dropout:  out = uniform_float(i) >= float(p) ? T(1 / (1 - p)) : 0, for
//             float32 and float64 masks alike; p >= 1 gives zeros.
#include <cstdint>
#include <type_traits>

#include "core/backend.h"
#include "core/philox.h"
#include "cuda/cuda_utils.h"

namespace tandem {
namespace cuda {
namespace {

using philox::Uint4;

// ---- Per-counter value generators -------------------------------------------------------------

template <typename T>
struct UniformGen;

template <>
struct UniformGen<float> {
  static constexpr int kPerCounter = 4;
  double lo, range;
  __device__ __forceinline__ void operator()(const Uint4& r, float* v) const {
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const double u = static_cast<double>(philox::to_unit_float(philox::lane(r, l)));
      v[l] = static_cast<float>(__dadd_rn(lo, __dmul_rn(range, u)));
    }
  }
};

template <>
struct UniformGen<double> {
  static constexpr int kPerCounter = 2;
  double lo, range;
  __device__ __forceinline__ void operator()(const Uint4& r, double* v) const {
    v[0] = __dadd_rn(lo, __dmul_rn(range, philox::to_unit_double(r.x, r.y)));
    v[1] = __dadd_rn(lo, __dmul_rn(range, philox::to_unit_double(r.z, r.w)));
  }
};

template <typename T>
struct NormalGen;

// Box-Muller exactly as philox::normal_float: lanes (x, y) give elements 4c
// (cos) and 4c+1 (sin), lanes (z, w) give 4c+2 and 4c+3.
template <>
struct NormalGen<float> {
  static constexpr int kPerCounter = 4;
  double mean, std;
  __device__ __forceinline__ void operator()(const Uint4& r, float* v) const {
#pragma unroll
    for (int pair = 0; pair < 2; ++pair) {
      const float u1 = 1.0f - philox::to_unit_float(pair == 0 ? r.x : r.z);
      const float u2 = philox::to_unit_float(pair == 0 ? r.y : r.w);
      const float radius = sqrtf(-2.0f * logf(u1));
      const float theta = 6.2831853071795864769f * u2;
      const float z0 = radius * cosf(theta);
      const float z1 = radius * sinf(theta);
      v[2 * pair] = static_cast<float>(__dadd_rn(mean, __dmul_rn(std, static_cast<double>(z0))));
      v[2 * pair + 1] =
          static_cast<float>(__dadd_rn(mean, __dmul_rn(std, static_cast<double>(z1))));
    }
  }
};

// As philox::normal_double: the counter's two 53-bit uniforms give 2c and 2c+1.
template <>
struct NormalGen<double> {
  static constexpr int kPerCounter = 2;
  double mean, std;
  __device__ __forceinline__ void operator()(const Uint4& r, double* v) const {
    const double u1 = 1.0 - philox::to_unit_double(r.x, r.y);
    const double u2 = philox::to_unit_double(r.z, r.w);
    const double radius = sqrt(-2.0 * log(u1));
    const double theta = 6.283185307179586476925 * u2;
    v[0] = __dadd_rn(mean, __dmul_rn(std, radius * cos(theta)));
    v[1] = __dadd_rn(mean, __dmul_rn(std, radius * sin(theta)));
  }
};

// As philox::bits64: lanes (x, y) for element 2c, (z, w) for 2c+1.
template <typename T>
struct RandintGen {
  static constexpr int kPerCounter = 2;
  uint64_t low;    // as unsigned, so that low + offset wraps instead of overflowing
  uint64_t range;  // high - low, > 0
  __device__ __forceinline__ void operator()(const Uint4& r, T* v) const {
    const uint64_t b0 = (static_cast<uint64_t>(r.x) << 32) | r.y;
    const uint64_t b1 = (static_cast<uint64_t>(r.z) << 32) | r.w;
    v[0] = static_cast<T>(static_cast<int64_t>(low + b0 % range));
    v[1] = static_cast<T>(static_cast<int64_t>(low + b1 % range));
  }
};

// Dropout decisions use the float32 uniform of each element for every mask dtype.
template <typename T>
struct DropoutGen {
  static constexpr int kPerCounter = 4;
  float p;
  T scale;
  __device__ __forceinline__ void operator()(const Uint4& r, T* v) const {
#pragma unroll
    for (int l = 0; l < 4; ++l)
      v[l] = philox::to_unit_float(philox::lane(r, l)) >= p ? scale : T(0);
  }
};

// ---- Kernel ------------------------------------------------------------------------------------

// One thread per Philox counter c (grid-stride): elements [c * k, c * k + k).
template <typename T, typename Gen>
__global__ void philox_fill_kernel(T* out, int64_t n, uint64_t seed, uint64_t offset, Gen gen,
                                   int vector_store) {
  constexpr int k = Gen::kPerCounter;
  using Vec = AlignedVec<T, k>;
  const int64_t counters = ceil_div<int64_t>(n, k);
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < counters;
       c += nthreads) {
    const Uint4 r = philox::philox4x32_10(offset + static_cast<uint64_t>(c), seed);
    Vec v;
    gen(r, v.val);
    const int64_t i0 = c * k;
    if (vector_store != 0 && i0 + k <= n) {
      reinterpret_cast<Vec*>(out)[c] = v;
    } else {
#pragma unroll
      for (int l = 0; l < k; ++l) {
        if (i0 + l < n) out[i0 + l] = v.val[l];
      }
    }
  }
}

template <typename T, typename Gen>
void launch_philox_fill(T* out, int64_t n, uint64_t seed, uint64_t offset, const Gen& gen) {
  constexpr int k = Gen::kPerCounter;
  constexpr int kBlock = kBlockSize;
  const int64_t counters = ceil_div<int64_t>(n, k);
  const int vector_store = is_aligned_to(out, sizeof(T) * k) ? 1 : 0;
  const int grid = grid_for(counters, kBlock, kBlock);
  TANDEM_LAUNCH(grid, kBlock, 0, current_cuda_stream(), philox_fill_kernel<T, Gen>)
  (out, n, seed, offset, gen, vector_store);
}

}  // namespace

void uniform(Tensor& out, uint64_t seed, uint64_t offset, double lo, double hi) {
  const int64_t n = out.numel();
  if (n == 0) return;
  TANDEM_DISPATCH_FLOATING(out.dtype(), "uniform (cuda)", [&] {
    launch_philox_fill(out.data_ptr<scalar_t>(), n, seed, offset,
                       UniformGen<scalar_t>{lo, hi - lo});
  });
}

void normal(Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) {
  const int64_t n = out.numel();
  if (n == 0) return;
  TANDEM_DISPATCH_FLOATING(out.dtype(), "normal (cuda)", [&] {
    launch_philox_fill(out.data_ptr<scalar_t>(), n, seed, offset, NormalGen<scalar_t>{mean, std});
  });
}

void randint(Tensor& out, uint64_t seed, uint64_t offset, int64_t low, int64_t high) {
  const int64_t n = out.numel();
  TANDEM_CHECK(high > low, "randint (cuda): empty range [", low, ", ", high, ")");
  if (n == 0) return;
  const uint64_t ulow = static_cast<uint64_t>(low);
  const uint64_t range = static_cast<uint64_t>(high) - ulow;
  TANDEM_DISPATCH_INDEX(out.dtype(), "randint (cuda)", [&] {
    launch_philox_fill(out.data_ptr<scalar_t>(), n, seed, offset,
                       RandintGen<scalar_t>{ulow, range});
  });
}

void dropout_mask(Tensor& out, uint64_t seed, uint64_t offset, double p) {
  const int64_t n = out.numel();
  if (n == 0) return;
  TANDEM_DISPATCH_FLOATING(out.dtype(), "dropout_mask (cuda)", [&] {
    if (p >= 1.0) {  // nothing is kept (and 1 / (1 - p) would be inf)
      TANDEM_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, out.nbytes(), current_cuda_stream()));
      return;
    }
    const auto scale = static_cast<scalar_t>(1.0 / (1.0 - p));
    launch_philox_fill(out.data_ptr<scalar_t>(), n, seed, offset,
                       DropoutGen<scalar_t>{static_cast<float>(p), scale});
  });
}

}  // namespace cuda
}  // namespace tandem
