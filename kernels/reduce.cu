// Reductions: cuda::reduce (sum, mean, max, min, argmax, argmin).
//
// x is viewed as [outer, n, inner] (contiguous) and reduced over n into out
// [outer, inner]:
//   - whole tensor (outer == 1 && inner == 1): CUB DeviceReduce::TransformReduce
//     into a one-element accumulator, temporary storage from the caching
//     allocator, then a one-thread kernel converts (and divides for mean).
//   - inner == 1 (rows): one warp per row for n <= 1024, otherwise one block per
//     row; warp-shuffle (+ shared memory) reduction. When there are too few rows
//     to fill the GPU, each row is split into chunks whose partial results are
//     reduced by a second, small pass.
//   - inner > 1 (columns): one thread per (outer, inner) column looping over n,
//     so neighbouring threads read neighbouring addresses; split into chunks of n
//     the same way when there are few columns. Very short rows (n <= 16) also use
//     this kernel with inner == 1 (one thread per row).
// Accumulation: float32/float64 sums in double, integer sums in int64 (wrapping),
// as on the CPU. Sum of int32/uint8 writes int64; mean divides the double sum
// by n. The order of additions differs from the CPU's, so float sums agree to
// rounding, not bit for bit.
// Max/min/argmax/argmin carry (value, index): NaN counts as the extreme (max/min
// return NaN, argmax/argmin the index of the first NaN), otherwise ties go to
// the smallest index (first occurrence, as on the CPU). Max and min share their
// CUB instantiation with argmax and argmin.
// Every combine() is associative and commutative, so results do not depend on
// the launch geometry beyond float rounding of sums, and are deterministic.
#include <algorithm>
#include <cstdint>
#if !defined(TANDEM_EMU)
#include <cub/device/device_reduce.cuh>
#include <cub/iterator/arg_index_input_iterator.cuh>
#endif
#include <limits>
#include <type_traits>

#include "core/backend.h"
#include "cuda/cuda_utils.h"

namespace tandem {
namespace cuda {
namespace {

template <typename T>
struct ArgPair {
  T v;
  int64_t i;
};

template <typename T>
__device__ __forceinline__ ArgPair<T> shfl_xor(ArgPair<T> p, int lane_mask) {
  return ArgPair<T>{::tandem::cuda::shfl_xor(p.v, lane_mask),
                    ::tandem::cuda::shfl_xor(p.i, lane_mask)};
}

template <typename T>
__host__ __device__ __forceinline__ bool is_nan(T v) {
  if constexpr (std::is_floating_point<T>::value) {
    return v != v;
  } else {
    return false;
  }
}

#if defined(TANDEM_EMU)
// cub::DeviceReduce::TransformReduce on the emulated device: the same contract
// (a null `temp` is the size query; otherwise *out = init combined with
// transform(x[i], i) for every i < n), run on the host in `stream`'s order as
// a left fold. CUB's order of combination differs, which only matters for the
// rounding of float sums (every combine here is associative and commutative).
template <typename In, typename Acc, typename Combine, typename Transform>
cudaError_t emu_transform_reduce(void* temp, size_t& temp_bytes, const In* x, int64_t n, Acc* out,
                                 Combine combine, Transform transform, Acc init,
                                 cudaStream_t stream) {
  constexpr const char* kWhat = "cub::DeviceReduce::TransformReduce";
  if (temp == nullptr) {
    temp_bytes = 16;  // CUB never asks for zero bytes either
    return cudaSuccess;
  }
  ::tandem::emu::enqueue(stream, kWhat, [=] {
    if (!::tandem::emu::check_device_range(kWhat, "d_temp_storage", temp, temp_bytes) ||
        !::tandem::emu::check_device_range(kWhat, "d_in", x, static_cast<size_t>(n) * sizeof(In)) ||
        !::tandem::emu::check_device_range(kWhat, "d_out", out, sizeof(Acc))) {
      return;
    }
    Acc acc = init;
    for (int64_t i = 0; i < n; ++i) acc = combine(acc, transform(x[i], i));
    *out = acc;
  });
  return cudaSuccess;
}
#endif

// ---- Reducers: identity, element -> accumulator, combine, accumulator -> output ----

enum class SumKind : int8_t { Sum, Mean };

template <typename T>
using SumAcc = std::conditional_t<std::is_floating_point<T>::value, double, int64_t>;

// Adds through a functor type of its own so that Sum and Mean (same T) share
// one CUB instantiation.
template <typename Acc>
struct SumCombine {
  __host__ __device__ __forceinline__ Acc operator()(const Acc& a, const Acc& b) const {
    if constexpr (std::is_floating_point<Acc>::value) {
      return a + b;
    } else {
      return static_cast<Acc>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));  // wraps
    }
  }
};

template <typename T, typename Acc>
struct CastTo {
  __host__ __device__ __forceinline__ Acc operator()(const T& v) const {
    return static_cast<Acc>(v);
  }
};

template <typename T, SumKind kind>
struct SumReducer {
  using In = T;
  using Acc = SumAcc<T>;
  // Sum of int32/uint8 widens to int64; mean keeps the (floating) dtype.
  using Out = std::conditional_t<std::is_floating_point<T>::value, T, int64_t>;

  __device__ __forceinline__ static Acc identity() { return Acc(0); }
  __device__ __forceinline__ static Acc make(T v, int64_t) { return static_cast<Acc>(v); }
  __device__ __forceinline__ static Acc combine(const Acc& a, const Acc& b) {
    return SumCombine<Acc>()(a, b);
  }
  __device__ __forceinline__ static Out finalize(const Acc& a, int64_t n) {
    if constexpr (kind == SumKind::Mean) {
      return static_cast<Out>(a / static_cast<double>(n));
    } else {
      return static_cast<Out>(a);
    }
  }

  static void cub_reduce(void* temp, size_t& temp_bytes, const T* x, int64_t n, Acc* acc,
                         cudaStream_t stream) {
#if defined(TANDEM_EMU)
    TANDEM_CUDA_CHECK(emu_transform_reduce(
        temp, temp_bytes, x, n, acc, SumCombine<Acc>(),
        [](const T& v, int64_t) { return CastTo<T, Acc>()(v); }, identity_host(), stream));
#else
    TANDEM_CUDA_CHECK(cub::DeviceReduce::TransformReduce(
        temp, temp_bytes, x, acc, n, SumCombine<Acc>(), CastTo<T, Acc>(), identity_host(), stream));
#endif
  }
  static Acc identity_host() { return Acc(0); }
};

enum class Extremum : int8_t { Max, Min };
enum class ExtremumResult : int8_t { Value, Index };

template <typename T, Extremum dir>
struct ExtremumCombine {
  // NaN beats everything; among equals (or NaNs) the smaller index wins.
  __host__ __device__ __forceinline__ ArgPair<T> operator()(const ArgPair<T>& a,
                                                            const ArgPair<T>& b) const {
    const bool a_nan = is_nan(a.v);
    const bool b_nan = is_nan(b.v);
    if (a_nan || b_nan) {
      if (a_nan && b_nan) return a.i <= b.i ? a : b;
      return a_nan ? a : b;
    }
    const bool a_better = dir == Extremum::Max ? a.v > b.v : a.v < b.v;
    const bool b_better = dir == Extremum::Max ? b.v > a.v : b.v < a.v;
    if (a_better) return a;
    if (b_better) return b;
    return a.i <= b.i ? a : b;
  }
};

#if !defined(TANDEM_EMU)
template <typename T>
struct MakeArgPair {
  __host__ __device__ __forceinline__ ArgPair<T> operator()(
      const cub::KeyValuePair<int64_t, T>& kv) const {
    return ArgPair<T>{kv.value, kv.key};
  }
};
#endif

template <typename T, Extremum dir, ExtremumResult result>
struct ExtremumReducer {
  using In = T;
  using Acc = ArgPair<T>;
  using Out = std::conditional_t<result == ExtremumResult::Value, T, int64_t>;

  __host__ __device__ __forceinline__ static Acc identity() {
    T worst;
    if constexpr (std::is_floating_point<T>::value) {
      worst = dir == Extremum::Max ? -std::numeric_limits<T>::infinity()
                                   : std::numeric_limits<T>::infinity();
    } else {
      worst =
          dir == Extremum::Max ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
    }
    return Acc{worst, std::numeric_limits<int64_t>::max()};
  }
  __device__ __forceinline__ static Acc make(T v, int64_t i) { return Acc{v, i}; }
  __device__ __forceinline__ static Acc combine(const Acc& a, const Acc& b) {
    return ExtremumCombine<T, dir>()(a, b);
  }
  __device__ __forceinline__ static Out finalize(const Acc& a, int64_t) {
    if constexpr (result == ExtremumResult::Value) {
      return a.v;
    } else {
      return a.i;
    }
  }

  // Independent of `result`: max and argmax share one CUB instantiation.
  static void cub_reduce(void* temp, size_t& temp_bytes, const T* x, int64_t n, Acc* acc,
                         cudaStream_t stream) {
#if defined(TANDEM_EMU)
    // ArgIndexInputIterator + MakeArgPair: the pair (x[i], i).
    TANDEM_CUDA_CHECK(emu_transform_reduce(
        temp, temp_bytes, x, n, acc, ExtremumCombine<T, dir>(),
        [](const T& v, int64_t i) {
          return Acc{v, i};
        },
        identity(), stream));
#else
    cub::ArgIndexInputIterator<const T*, int64_t> in(x);
    TANDEM_CUDA_CHECK(cub::DeviceReduce::TransformReduce(temp, temp_bytes, in, acc, n,
                                                         ExtremumCombine<T, dir>(),
                                                         MakeArgPair<T>(), identity(), stream));
#endif
  }
};

// ---- Sources and sinks of the dim-reduction kernels ----------------------------------------

// Reads x; j is the element's position along the reduced dim (for arg*).
template <typename R>
struct RawSource {
  const typename R::In* x;
  __device__ __forceinline__ typename R::Acc load(int64_t offset, int64_t j) const {
    return R::make(x[offset], j);
  }
};

// Reads partial accumulators of a first pass (they carry their own indices).
template <typename R>
struct PartialSource {
  const typename R::Acc* p;
  __device__ __forceinline__ typename R::Acc load(int64_t offset, int64_t) const {
    return p[offset];
  }
};

template <typename R>
struct FinalSink {
  typename R::Out* out;
  int64_t n;  // the full length of the reduced dim (mean divides by it)
  __device__ __forceinline__ void store(int64_t idx, const typename R::Acc& acc) const {
    out[idx] = R::finalize(acc, n);
  }
};

template <typename R>
struct PartialSink {
  typename R::Acc* p;
  __device__ __forceinline__ void store(int64_t idx, const typename R::Acc& acc) const {
    p[idx] = acc;
  }
};

template <typename R>
struct CombineFn {
  __device__ __forceinline__ typename R::Acc operator()(const typename R::Acc& a,
                                                        const typename R::Acc& b) const {
    return R::combine(a, b);
  }
};

// ---- Kernels ------------------------------------------------------------------------------------

template <typename R>
__global__ void reduce_finalize_kernel(const typename R::Acc* acc, typename R::Out* out,
                                       int64_t n) {
  out[0] = R::finalize(acc[0], n);
}

// inner == 1, short rows: one warp per row (grid-stride over rows).
template <typename R>
__global__ void reduce_rows_warp_kernel(const typename R::In* x, int64_t rows, int64_t n,
                                        FinalSink<R> sink) {
  using Acc = typename R::Acc;
  const int lane = static_cast<int>(threadIdx.x % kWarpSize);
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarpSize;
  for (int64_t row = warp; row < rows; row += nwarps) {
    const typename R::In* xr = x + row * n;
    Acc acc = R::identity();
    for (int64_t j = lane; j < n; j += kWarpSize) acc = R::combine(acc, R::make(xr[j], j));
    acc = warp_allreduce(acc, CombineFn<R>());
    if (lane == 0) sink.store(row, acc);
  }
}

// inner == 1, long rows: one block per (row, chunk); task = row * chunks + chunk
// is also the sink index ([rows, chunks] partials, or rows when chunks == 1).
template <typename R, int kBlock, typename Sink>
__global__ void __launch_bounds__(kBlock)
    reduce_rows_block_kernel(const typename R::In* x, int64_t rows, int64_t n, int64_t chunk_len,
                             int64_t chunks, Sink sink) {
  using Acc = typename R::Acc;
  constexpr int kWarps = kBlock / kWarpSize;
  TANDEM_SHARED(Acc, warp_results, [kWarps]);
  const int lane = static_cast<int>(threadIdx.x % kWarpSize);
  const int warp = static_cast<int>(threadIdx.x / kWarpSize);
  for (int64_t task = blockIdx.x; task < rows * chunks; task += gridDim.x) {
    const int64_t row = task / chunks;
    const int64_t j0 = (task % chunks) * chunk_len;
    const int64_t j1 = j0 + chunk_len < n ? j0 + chunk_len : n;
    const typename R::In* xr = x + row * n;
    Acc acc = R::identity();
#pragma unroll 4
    for (int64_t j = j0 + threadIdx.x; j < j1; j += kBlock)
      acc = R::combine(acc, R::make(xr[j], j));
    acc = warp_allreduce(acc, CombineFn<R>());
    if (lane == 0) warp_results[warp] = acc;
    __syncthreads();
    if (warp == 0) {
      acc = lane < kWarps ? warp_results[lane] : R::identity();
      acc = warp_allreduce(acc, CombineFn<R>());
      if (lane == 0) sink.store(task, acc);
    }
    __syncthreads();  // warp_results is reused by the next task
  }
}

// Columns: one thread per (outer, chunk, inner) task looping over its chunk of
// n; task = (o * chunks + c) * inner + i is also the sink index.
template <typename R, typename Source, typename Sink>
__global__ void reduce_cols_kernel(Source src, int64_t outer, int64_t n, int64_t inner,
                                   int64_t chunk_len, int64_t chunks, Sink sink) {
  using Acc = typename R::Acc;
  const int64_t tasks = outer * chunks * inner;
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < tasks;
       t += nthreads) {
    const int64_t i = t % inner;
    const int64_t oc = t / inner;
    const int64_t c = oc % chunks;
    const int64_t o = oc / chunks;
    const int64_t j0 = c * chunk_len;
    const int64_t j1 = j0 + chunk_len < n ? j0 + chunk_len : n;
    int64_t offset = (o * n + j0) * inner + i;
    Acc acc = R::identity();
    for (int64_t j = j0; j < j1; ++j, offset += inner) acc = R::combine(acc, src.load(offset, j));
    sink.store(t, acc);
  }
}

// ---- Host launchers
// -----------------------------------------------------------------------------------

constexpr int64_t kWarpRowMax = 1024;  // rows up to this long: a warp per row
constexpr int64_t kThreadRowMax = 16;  // rows up to this long: a thread per row
constexpr int64_t kMaxChunks = 1024;

template <typename R>
void reduce_all(const typename R::In* x, int64_t n, typename R::Out* out) {
  using Acc = typename R::Acc;
  cudaStream_t stream = current_cuda_stream();
  detail::DeviceWorkspace acc(sizeof(Acc));
  size_t temp_bytes = 0;
  R::cub_reduce(nullptr, temp_bytes, x, n, acc.as<Acc>(), stream);
  // Never hand CUB a null pointer here: that means "size query" to it.
  detail::DeviceWorkspace temp(std::max<size_t>(temp_bytes, 16));
  R::cub_reduce(temp.data(), temp_bytes, x, n, acc.as<Acc>(), stream);
  TANDEM_CUDA_CHECK_LAUNCH(cub::DeviceReduce::TransformReduce);
  TANDEM_LAUNCH(1, 1, 0, stream, reduce_finalize_kernel<R>)(acc.as<Acc>(), out, n);
}

// Columns (and very short rows): reduce [outer, n, inner] over n.
template <typename R>
void reduce_cols(const typename R::In* x, int64_t outer, int64_t n, int64_t inner,
                 typename R::Out* out) {
  using Acc = typename R::Acc;
  constexpr int kBlock = kBlockSize;
  cudaStream_t stream = current_cuda_stream();
  const int64_t columns = outer * inner;
  const int64_t target_threads = static_cast<int64_t>(detail::multiprocessor_count()) * 2048;
  int64_t chunks = 1;
  if (columns < target_threads / 2 && n >= 64) {
    chunks = std::min({ceil_div(target_threads, columns), n / 32, kMaxChunks});
    chunks = std::max<int64_t>(chunks, 1);
  }
  const RawSource<R> src{x};
  if (chunks == 1) {
    const int grid = grid_for(columns, kBlock, kBlock);
    TANDEM_LAUNCH(grid, kBlock, 0, stream, reduce_cols_kernel<R, RawSource<R>, FinalSink<R>>)
    (src, outer, n, inner, n, 1, FinalSink<R>{out, n});
    return;
  }
  const int64_t chunk_len = ceil_div(n, chunks);
  chunks = ceil_div(n, chunk_len);
  detail::DeviceWorkspace partial(static_cast<size_t>(columns * chunks) * sizeof(Acc));
  int grid = grid_for(columns * chunks, kBlock, kBlock);
  TANDEM_LAUNCH(grid, kBlock, 0, stream, reduce_cols_kernel<R, RawSource<R>, PartialSink<R>>)
  (src, outer, n, inner, chunk_len, chunks, PartialSink<R>{partial.as<Acc>()});
  grid = grid_for(columns, kBlock, kBlock);
  TANDEM_LAUNCH(grid, kBlock, 0, stream, reduce_cols_kernel<R, PartialSource<R>, FinalSink<R>>)
  (PartialSource<R>{partial.as<Acc>()}, outer, chunks, inner, chunks, 1, FinalSink<R>{out, n});
}

// Rows (inner == 1, n > kThreadRowMax).
template <typename R>
void reduce_rows(const typename R::In* x, int64_t rows, int64_t n, typename R::Out* out) {
  using Acc = typename R::Acc;
  cudaStream_t stream = current_cuda_stream();
  if (n <= kWarpRowMax) {
    constexpr int kBlock = kBlockSize;
    const int grid = grid_for(rows * kWarpSize, kBlock, kBlock);
    TANDEM_LAUNCH(grid, kBlock, 0, stream, reduce_rows_warp_kernel<R>)
    (x, rows, n, FinalSink<R>{out, n});
    return;
  }
  constexpr int kBlock = 512;
  const int64_t target_blocks =
      static_cast<int64_t>(detail::multiprocessor_count()) * (2048 / kBlock) * 2;
  int64_t chunks = 1;
  if (rows < target_blocks) {
    chunks = std::min({ceil_div(target_blocks, rows), n / (int64_t{kBlock} * 8), kMaxChunks});
    chunks = std::max<int64_t>(chunks, 1);
  }
  if (chunks == 1) {
    const int grid = grid_for(rows, 1, kBlock);
    TANDEM_LAUNCH(grid, kBlock, 0, stream, reduce_rows_block_kernel<R, kBlock, FinalSink<R>>)
    (x, rows, n, n, 1, FinalSink<R>{out, n});
    return;
  }
  const int64_t chunk_len = ceil_div(n, chunks);
  chunks = ceil_div(n, chunk_len);
  detail::DeviceWorkspace partial(static_cast<size_t>(rows * chunks) * sizeof(Acc));
  const int grid = grid_for(rows * chunks, 1, kBlock);
  TANDEM_LAUNCH(grid, kBlock, 0, stream, reduce_rows_block_kernel<R, kBlock, PartialSink<R>>)
  (x, rows, n, chunk_len, chunks, PartialSink<R>{partial.as<Acc>()});
  // Second pass: [rows, chunks] partials, a thread per row.
  constexpr int kBlock2 = kBlockSize;
  const int grid2 = grid_for(rows, kBlock2, kBlock2);
  TANDEM_LAUNCH(grid2, kBlock2, 0, stream, reduce_cols_kernel<R, PartialSource<R>, FinalSink<R>>)
  (PartialSource<R>{partial.as<Acc>()}, rows, chunks, 1, chunks, 1, FinalSink<R>{out, n});
}

template <typename R>
void run_reduce(const char* name, const Tensor& x, Tensor& out, int64_t outer, int64_t n,
                int64_t inner) {
  using Out = typename R::Out;
  TANDEM_CHECK(out.dtype() == dtype_of<Out>::value, "reduce (cuda): ", name, " of ",
               dtype_name(x.dtype()), " writes ", dtype_name(dtype_of<Out>::value), ", but out is ",
               dtype_name(out.dtype()));
  TANDEM_CHECK(n >= 1, "reduce (cuda): ", name, " over an empty dim");
  const typename R::In* xp = x.data_ptr<typename R::In>();
  Out* op = out.data_ptr<Out>();
  if (outer == 1 && inner == 1) {
    reduce_all<R>(xp, n, op);
  } else if (inner == 1 && n > kThreadRowMax) {
    reduce_rows<R>(xp, outer, n, op);
  } else {
    reduce_cols<R>(xp, outer, n, inner, op);
  }
}

template <typename T>
void reduce_typed(ReduceOp op, const Tensor& x, Tensor& out, int64_t outer, int64_t n,
                  int64_t inner) {
  switch (op) {
    case ReduceOp::Sum:
      return run_reduce<SumReducer<T, SumKind::Sum>>("sum", x, out, outer, n, inner);
    case ReduceOp::Mean:
      if constexpr (std::is_floating_point<T>::value) {
        return run_reduce<SumReducer<T, SumKind::Mean>>("mean", x, out, outer, n, inner);
      } else {
        TANDEM_FAIL("reduce (cuda): mean of ", dtype_name(x.dtype()),
                    " is not supported (expected float32 or float64)");
      }
    case ReduceOp::Max:
      return run_reduce<ExtremumReducer<T, Extremum::Max, ExtremumResult::Value>>("max", x, out,
                                                                                  outer, n, inner);
    case ReduceOp::Min:
      return run_reduce<ExtremumReducer<T, Extremum::Min, ExtremumResult::Value>>("min", x, out,
                                                                                  outer, n, inner);
    case ReduceOp::ArgMax:
      return run_reduce<ExtremumReducer<T, Extremum::Max, ExtremumResult::Index>>("argmax", x, out,
                                                                                  outer, n, inner);
    case ReduceOp::ArgMin:
      return run_reduce<ExtremumReducer<T, Extremum::Min, ExtremumResult::Index>>("argmin", x, out,
                                                                                  outer, n, inner);
  }
  TANDEM_FAIL("reduce (cuda): unknown op ", static_cast<int>(op));
}

}  // namespace

void reduce(ReduceOp op, const Tensor& x, Tensor& out, int64_t outer, int64_t n, int64_t inner) {
  TANDEM_DISPATCH_ALL(x.dtype(), "reduce (cuda)",
                      [&] { reduce_typed<scalar_t>(op, x, out, outer, n, inner); });
}

}  // namespace cuda
}  // namespace tandem
