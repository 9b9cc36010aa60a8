// TANDEM_HD marks a function written once for the host and the device: the
// CPU backend calls it as an inline function, nvcc compiles it for both sides.
// Headers of shared semantics (src/core/*_math.h, philox.h, convert.h,
// pool_window.h, fast_divmod.h) include this and nothing above src/core/.
#pragma once

#if defined(__CUDACC__)
#define TANDEM_HD __host__ __device__ __forceinline__
#else
#define TANDEM_HD inline
#endif
