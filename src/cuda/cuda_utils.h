// CUDA helpers shared by src/cuda/*.cpp and kernels/*.cu (CUDA builds only):
//   - TANDEM_CUDA_CHECK(stmt): one checking macro for cudaError_t, cublasStatus_t
//     and cudnnStatus_t; throws tandem::Error with the statement text.
//   - TANDEM_CUDA_CHECK_LAUNCH(kernel): after every launch (and library call);
//     with cuda::sync_debug() on it also synchronises the current stream, so an
//     asynchronous fault is reported at the kernel that caused it.
//   - launch helpers (ceil_div, kBlockSize, grid_for), the current stream, the
//     per-thread cuBLAS handle, a RAII device workspace from the caching
//     allocator (CUB temporary storage);
//   - TANDEM_LAUNCH and TANDEM_SHARED, the launch and shared-memory forms every
//     kernel uses so that it also runs on the emulated device (src/emu);
//   - under nvcc and the emulated device: small device helpers (aligned
//     vectors, warp shuffles, value conversions that match the CPU backend,
//     32- or 64-bit index arithmetic with core/fast_divmod.h).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#if defined(TANDEM_EMU)
#include "emu/device.h"
#endif

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "core/convert.h"
#include "core/cuda_services.h"
#include "core/fast_divmod.h"
#include "core/visit_word.h"
#include "tandem/cuda.h"
#include "tandem/error.h"

namespace tandem {
namespace cuda {
namespace detail {

// Devices beyond this are not supported: per-device state lives in fixed
// tables, which keeps the hot paths lock-free.
constexpr int kMaxDevices = 64;

// Counts one host-blocking wait on the device (cuda::host_sync_count): called
// next to every cudaStreamSynchronize, cudaEventSynchronize and
// cudaDeviceSynchronize of tandem's own code.
void count_host_sync();

// ---- Error checking ---------------------------------------------------------------

[[noreturn]] void throw_status(cudaError_t status, const char* stmt, const char* file, int line);
[[noreturn]] void throw_status(cublasStatus_t status, const char* stmt, const char* file, int line);
[[noreturn]] void throw_status(cudnnStatus_t status, const char* stmt, const char* file, int line);

inline void check_status(cudaError_t status, const char* stmt, const char* file, int line) {
  if (status != cudaSuccess) throw_status(status, stmt, file, line);
}
inline void check_status(cublasStatus_t status, const char* stmt, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) throw_status(status, stmt, file, line);
}
inline void check_status(cudnnStatus_t status, const char* stmt, const char* file, int line) {
  if (status != CUDNN_STATUS_SUCCESS) throw_status(status, stmt, file, line);
}

// cudaGetLastError after a launch; with sync_debug() also synchronises the
// current stream and reports a fault as coming from `what`.
void check_launch(const char* what, const char* file, int line);

// ---- Devices and streams ----------------------------------------------------------

// Number of visible devices (0 when there is no driver or device; never throws).
int visible_device_count();
// Throws "cuda: no CUDA device is available (...)" or "cuda: device 3 requested
// but only 1 CUDA device(s) are visible".
void check_device_index(int device);
// The calling thread's current device (throws when no device is available).
int current_device();
// The calling thread's current stream of `device` (tandem's default stream of
// the device unless this thread's set_current_stream chose another).
cudaStream_t stream_for_device(int device);
// tandem's default stream of `device`: one non-blocking stream per device,
// shared by all threads, created on first use.
cudaStream_t default_stream(int device);
// Streaming multiprocessors of the current device (cached).
int multiprocessor_count();

// ---- cuBLAS -----------------------------------------------------------------------

// The calling thread's cuBLAS handle for the current device (created lazily,
// returned to a pool when the thread exits). Each call binds it to the current
// stream and sets the math mode from allow_tf32().
cublasHandle_t current_cublas_handle();

// Called by cuda::empty_cache() before the allocator releases its cache: the
// cuBLAS workspaces (one per handle and stream; each stream synchronised, each
// handle's workspace reset with cublasSetWorkspace) go back to the cache, and
// the cuDNN handles of exited threads are destroyed. Not to be run while
// another thread is calling cuBLAS/cuDNN (as PyTorch's clearCublasWorkspaces).
void release_cublas_workspaces();
void release_cudnn_handles();

// ---- Workspace ----------------------------------------------------------------------

// Marks a pinned host pointer as read by an asynchronous copy just queued on
// `stream` of `device`: the pinned allocator does not hand its block out again
// before the stream has passed the copy (no-op for memory it does not own).
void record_pinned_use(const void* ptr, int device, cudaStream_t stream);

// Scratch device memory from the caching allocator on the current device. The
// memory goes back to the pool (not to the driver) when this object dies; the
// pool hands it out again only for work on the same stream, so it is safe to
// drop the workspace right after enqueueing the kernels that use it.
class DeviceWorkspace {
 public:
  explicit DeviceWorkspace(size_t nbytes)
      : nbytes_(nbytes), mem_(allocate_device(nbytes, current_device())) {}
  DeviceWorkspace(const DeviceWorkspace&) = delete;
  DeviceWorkspace& operator=(const DeviceWorkspace&) = delete;
  DeviceWorkspace(DeviceWorkspace&&) = default;
  DeviceWorkspace& operator=(DeviceWorkspace&&) = default;
  ~DeviceWorkspace() = default;

  void* data() const { return mem_.get(); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(mem_.get());
  }
  size_t size() const { return nbytes_; }

 private:
  size_t nbytes_;
  std::shared_ptr<void> mem_;
};

}  // namespace detail

// The stream every tandem kernel, copy and library call of the current device
// is enqueued on.
inline cudaStream_t current_cuda_stream() {
  return detail::stream_for_device(detail::current_device());
}

// ---- Launch configuration --------------------------------------------------------------

// Default threads per block; a launcher names its own `constexpr int kBlock`
// (usually this) so that the number is visible where the kernel is launched.
constexpr int kBlockSize = 256;
// Grid-stride kernels are launched with at most this many waves of resident
// blocks; more blocks only add scheduling overhead.
constexpr int kMaxWaves = 4;

template <typename T>
constexpr __host__ __device__ T ceil_div(T a, T b) {
  return (a + b - 1) / b;
}

// Blocks for `work_per_block`-sized pieces of `work` (>= 1, capped at a few waves
// of full occupancy on the current device).
inline int grid_for(int64_t work, int64_t work_per_block, int block) {
  const int64_t max_blocks =
      static_cast<int64_t>(detail::multiprocessor_count()) * (2048 / block) * kMaxWaves;
  int64_t blocks = ceil_div<int64_t>(work, work_per_block);
  if (blocks > max_blocks) blocks = max_blocks;
  if (blocks < 1) blocks = 1;
  return static_cast<int>(blocks);
}

}  // namespace cuda
}  // namespace tandem

#define TANDEM_CUDA_CHECK(stmt) \
  ::tandem::cuda::detail::check_status((stmt), #stmt, __FILE__, __LINE__)

// TANDEM_CUDA_CHECK_LAUNCH(my_kernel<float>) right after my_kernel<<<...>>>(...).
#define TANDEM_CUDA_CHECK_LAUNCH(...) \
  ::tandem::cuda::detail::check_launch(#__VA_ARGS__, __FILE__, __LINE__)

// ---- Launches and shared memory (nvcc and the emulated device) ---------------------------
#if defined(__CUDACC__) || defined(TANDEM_EMU)
namespace tandem {
namespace cuda {
namespace detail {

// The one way tandem launches a kernel (see TANDEM_LAUNCH).
template <typename Kernel>
struct Launcher {
  const char* name;
  Kernel kernel;
  dim3 grid;
  dim3 block;
  size_t shared_bytes;
  cudaStream_t stream;
  const char* file;
  int line;

  template <typename... Args>
  void operator()(Args&&... args) const {
#if defined(TANDEM_EMU)
    (void)::tandem::emu::launch(name, file, kernel, grid, block, shared_bytes, stream,
                                std::forward<Args>(args)...);
#else
    kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
#endif
    check_launch(name, file, line);
  }
};

template <typename Kernel>
Launcher<Kernel> make_launcher(const char* name, Kernel kernel, dim3 grid, dim3 block,
                               size_t shared_bytes, cudaStream_t stream, const char* file,
                               int line) {
  return Launcher<Kernel>{name, kernel, grid, block, shared_bytes, stream, file, line};
}

}  // namespace detail
}  // namespace cuda
}  // namespace tandem

// TANDEM_LAUNCH(grid, block, shared_bytes, stream, kernel<T, Fn>)(args...):
// kernel<<<grid, block, shared_bytes, stream>>>(args...) under nvcc, the
// emulated device's launch in the emulated build; either way the launch is
// checked (TANDEM_CUDA_CHECK_LAUNCH's semantics). The kernel comes last so that
// template arguments need no parentheses.
#define TANDEM_LAUNCH(grid, block, shared_bytes, stream, ...)                       \
  ::tandem::cuda::detail::make_launcher(#__VA_ARGS__, __VA_ARGS__, (grid), (block), \
                                        (shared_bytes), (stream), __FILE__, __LINE__)

// TANDEM_KERNEL_BOUNDS(my_kernel, kBlock), at namespace scope after a kernel
// declared `__global__ void __launch_bounds__(kBlock) my_kernel(...)`: the
// same bound for the emulated device, which cannot read the attribute and
// refuses a larger block as the hardware does (cudaErrorLaunchOutOfResources).
// Under nvcc it only checks the bound is a valid block size. A test holds the
// two spellings equal for every kernel (tests/emu/test_emu.cpp).
#if defined(TANDEM_EMU)
#define TANDEM_KERNEL_BOUNDS(kernel_name, max_threads)                  \
  [[maybe_unused]] static const bool kernel_name##_emu_launch_bounds_ = \
      ::tandem::emu::register_launch_bounds(__FILE__, #kernel_name, (max_threads))
#else
#define TANDEM_KERNEL_BOUNDS(kernel_name, max_threads) \
  static_assert((max_threads) > 0 && (max_threads) <= 1024, #kernel_name ": bad launch bound")
#endif

// TANDEM_SHARED(double, scratch, [33]) declares `__shared__ double scratch[33]`
// (dims may be empty for a scalar or struct, or several: [8][32]). Under the
// emulated device it is a checked view of the block's shared memory (race,
// uninitialised-read and bounds checks): index it, pass it on as a template
// argument (not as T*), read a struct member through a copy.
#if defined(TANDEM_EMU)
#define TANDEM_SHARED(type, name, dims)  \
  static const char name##_emu_tag_ = 0; \
  const auto name = ::tandem::emu::block_shared<type dims>(&name##_emu_tag_, #name)
#else
#define TANDEM_SHARED(type, name, dims) __shared__ type name dims
#endif

// ---- Device helpers (nvcc and the emulated device) ------------------------------------
namespace tandem {
namespace cuda {

constexpr int kWarpSize = 32;
constexpr unsigned kFullWarpMask = 0xffffffffu;

// N elements of T loaded/stored as one (up to 16-byte) memory transaction.
template <typename T, int N>
struct alignas(sizeof(T) * N) AlignedVec {
  T val[N];
};

// Value conversions: core/convert.h (shared with the CPU backend).
using ::tandem::convert_value;
using ::tandem::scalar_to;

// Element moves by word size (copies, gathers): core/visit_word.h (shared with
// the CPU backend).
using ::tandem::visit_word;

// Calls f(Index{}) with Index = uint32_t when `fits32` (every size and offset
// of the launch is at most 2^31 - 1: fits_int32), int64_t otherwise. Kernels
// templated on Index then divide with Divmod<Index>: a multiply-high and a
// shift instead of a 64-bit division (tens of instructions) per element.
template <typename F>
void dispatch_index_width(bool fits32, const F& f) {
  if (fits32) {
    f(uint32_t{});
  } else {
    f(int64_t{});
  }
}

// This thread's index in the grid and the grid's thread count, for
// grid-stride loops over Index (no overflow in uint32_t: the loop bound is at
// most 2^31 - 1 and the grid far smaller than 2^31).
template <typename Index>
__device__ __forceinline__ Index grid_thread() {
  return static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x;
}
template <typename Index>
__device__ __forceinline__ Index grid_threads() {
  return static_cast<Index>(gridDim.x) * blockDim.x;
}

inline bool is_aligned_to(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// Elements of T per 16-byte vector.
template <typename T>
constexpr int vec16() {
  return static_cast<int>(16 / sizeof(T));
}

// __shfl_xor_sync for every accumulator type tandem reduces (sub-word types go
// through int).
template <typename T>
__device__ __forceinline__ T shfl_xor(T v, int lane_mask) {
  if constexpr (sizeof(T) < 4) {
    return static_cast<T>(__shfl_xor_sync(kFullWarpMask, static_cast<int>(v), lane_mask));
  } else {
    return __shfl_xor_sync(kFullWarpMask, v, lane_mask);
  }
}

// Butterfly reduction: every lane ends with combine() over the warp. `combine`
// must be associative and commutative.
template <typename T, typename Combine>
__device__ __forceinline__ T warp_allreduce(T v, Combine combine) {
#pragma unroll
  for (int m = kWarpSize / 2; m > 0; m /= 2) v = combine(v, shfl_xor(v, m));
  return v;
}

// Reduces v over a block of kBlock threads (a multiple of kWarpSize); every
// thread gets the result. `scratch` (shared memory) holds kBlock / kWarpSize
// + 1 values: one per warp plus the broadcast slot; `identity` fills the
// unused lanes. Call it from every thread of the block. `scratch` is a
// TANDEM_SHARED array (a T* under nvcc, a checked view when emulated).
template <int kBlock, typename T, typename Combine, typename Scratch>
__device__ __forceinline__ T block_allreduce(T v, Combine combine, T identity, Scratch scratch) {
  static_assert(kBlock % kWarpSize == 0 && kBlock / kWarpSize <= kWarpSize,
                "block_allreduce: kBlock must be a multiple of the warp size, at most 1024");
  constexpr int kWarps = kBlock / kWarpSize;
  const int lane = static_cast<int>(threadIdx.x % kWarpSize);
  const int warp = static_cast<int>(threadIdx.x / kWarpSize);
  v = warp_allreduce(v, combine);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < kWarps ? scratch[lane] : identity;
    w = warp_allreduce(w, combine);
    if (lane == 0) scratch[kWarps] = w;
  }
  __syncthreads();
  const T result = scratch[kWarps];
  __syncthreads();  // scratch is reused by the next call
  return result;
}

}  // namespace cuda
}  // namespace tandem
#endif  // __CUDACC__ || TANDEM_EMU
