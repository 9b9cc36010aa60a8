// The device side of the emulated CUDA device: what a kernel in kernels/*.cu
// sees when the host compiler builds it (TANDEM_EMU). Included by
// src/cuda/cuda_utils.h after the CUDA headers; never by the nvcc build.
//
//   - threadIdx, blockIdx, blockDim, gridDim, warpSize;
//   - __syncthreads (a block barrier: threads run as fibers that switch only at
//     barriers and warp operations), __syncwarp, __shfl_*_sync with CUDA's mask
//     and width semantics, atomicAdd, __umulhi, the _rn intrinsics;
//   - TANDEM_SHARED's emulated form: block-shared arrays behind checked
//     references (race, uninitialised-read and bounds checks per byte);
//   - launch(): validates the configuration as the hardware does and enqueues
//     the grid on the stream (src/emu/grid.cpp runs it).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#include "emu/emu.h"

// CUDA's qualifiers mean nothing to the host compiler (host_defines.h leaves
// them empty without nvcc, except these two).
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
#ifndef __grid_constant__
#define __grid_constant__
#endif

namespace tandem {
namespace emu {

// ---- The executing thread ---------------------------------------------------------------

struct ThreadState {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
  int linear;  // thread index within the block
};
// The emulated GPU thread running on this host thread (set by the grid executor).
const ThreadState& this_thread();

void syncthreads(const char* file, int line);
void syncwarp(unsigned mask, const char* file, int line);

// Exchanges a 32-bit word across the lanes named in `mask`: every lane gives
// `value` and gets the value of lane `src_lane(lane)`'s (computed by the caller
// per CUDA's rules). Blocks until all lanes of `mask` arrive.
uint32_t shuffle_word(unsigned mask, uint32_t value, int src_lane, const char* file, int line);
uint64_t shuffle_dword(unsigned mask, uint64_t value, int src_lane, const char* file, int line);

// ---- Block-shared memory ----------------------------------------------------------------

// Storage for one __shared__ variable of the running block, `bytes` long and
// 16-byte aligned, poisoned at the block's start; `tag` identifies the
// declaration (one static per declaration and template instance).
void* block_shared_storage(const void* tag, size_t bytes, const char* name);
// Per-byte shadow checks of the running block (race, uninitialised read).
void shared_read(const void* p, size_t n);
void shared_write(const void* p, size_t n);
[[noreturn]] void shared_out_of_bounds(const char* name, int64_t index, int64_t extent);

template <typename T>
class SharedPtr;

// A checked reference to one element (a scalar or a struct) of shared memory.
template <typename T>
class SharedRef {
 public:
  explicit SharedRef(T* p) : p_(p) {}
  operator T() const {  // NOLINT: reads convert implicitly, as with a plain lvalue
    shared_read(p_, sizeof(T));
    T v;
    std::memcpy(static_cast<void*>(&v), static_cast<const void*>(p_), sizeof(T));
    return v;
  }
  T get() const { return static_cast<T>(*this); }
  const SharedRef& operator=(const T& v) const {
    shared_write(p_, sizeof(T));
    std::memcpy(static_cast<void*>(p_), static_cast<const void*>(&v), sizeof(T));
    return *this;
  }
  const SharedRef& operator=(const SharedRef& o) const { return *this = o.get(); }
  SharedRef(const SharedRef&) = default;
  template <typename U>
  const SharedRef& operator+=(const U& v) const {
    return *this = get() + v;
  }
  template <typename U>
  const SharedRef& operator-=(const U& v) const {
    return *this = get() - v;
  }
  template <typename U>
  const SharedRef& operator*=(const U& v) const {
    return *this = get() * v;
  }
  SharedPtr<T> operator&() const { return SharedPtr<T>(p_, 1, "&"); }

 private:
  T* p_;
};

// A checked pointer into shared memory: [] checks the index against the
// array's extent and returns a SharedRef (or, for a row of a 2-D array, a
// SharedPtr to the row).
template <typename T>
class SharedPtr {
 public:
  SharedPtr(T* p, int64_t extent, const char* name) : p_(p), extent_(extent), name_(name) {}
  auto operator[](int64_t i) const {
    if (i < 0 || i >= extent_) shared_out_of_bounds(name_, i, extent_);
    if constexpr (std::is_array_v<T>) {
      using Row = std::remove_extent_t<T>;
      return SharedPtr<Row>(p_[i], static_cast<int64_t>(std::extent_v<T>), name_);
    } else {
      return SharedRef<T>(p_ + i);
    }
  }
  SharedPtr operator+(int64_t i) const { return SharedPtr(p_ + i, extent_ - i, name_); }
  SharedRef<T> operator*() const { return (*this)[0]; }

 private:
  T* p_;
  int64_t extent_;
  const char* name_;
};

// TANDEM_SHARED's result: `T name[N]` gives a SharedPtr<T>, `T name[R][C]` a
// SharedPtr<T[C]>, a scalar or struct `T name` a SharedRef<T>.
template <typename Decl>
auto block_shared(const void* tag, const char* name) {
  void* p = block_shared_storage(tag, sizeof(Decl), name);
  if constexpr (std::is_array_v<Decl>) {
    using Elem = std::remove_extent_t<Decl>;
    return SharedPtr<Elem>(static_cast<Elem*>(p), static_cast<int64_t>(std::extent_v<Decl>), name);
  } else {
    return SharedRef<Decl>(static_cast<Decl*>(p));
  }
}

// ---- Launch -------------------------------------------------------------------------------

// Checks the configuration the way the hardware does (block <= 1024 threads,
// block.z <= 64, grid.y/z <= 65535, shared memory <= 48 KiB): returns the
// CUDA error a real launch would give (cudaErrorInvalidConfiguration ...) or
// cudaSuccess, in which case the grid is enqueued on `stream`. The error is also
// what the next cudaGetLastError returns, as with a real launch.
// A block of more threads than the kernel's __launch_bounds__ is refused with
// cudaErrorLaunchOutOfResources, as the hardware refuses it ("too many
// resources requested for launch"). `file` is the launching source file: a
// kernel's bound is looked up by (file, name) as TANDEM_KERNEL_BOUNDS recorded it.
cudaError_t launch_grid(const char* kernel_name, const char* file, dim3 grid, dim3 block,
                        size_t shared_bytes, cudaStream_t stream,
                        std::function<void()> thread_body);

// The host compiler cannot read __launch_bounds__, so each bounded kernel
// states its bound once more through TANDEM_KERNEL_BOUNDS (src/cuda/cuda_utils.h),
// which records it here at static initialisation; tests/emu/test_emu.cpp holds
// the two spellings equal for every kernel in kernels/ and src/data/.
bool register_launch_bounds(const char* file, const char* kernel_name, int max_threads);
// The recorded bound of `kernel_name` (template arguments ignored) launched from
// `file`, or 0 when it has none.
int launch_bounds_of(const char* file, const char* kernel_name);

template <typename... Params, typename... Args>
cudaError_t launch(const char* kernel_name, const char* file, void (*kernel)(Params...), dim3 grid,
                   dim3 block, size_t shared_bytes, cudaStream_t stream, Args&&... args) {
  // The arguments are copied at launch, as CUDA copies them into the launch's
  // parameter buffer.
  auto params = std::make_tuple(std::decay_t<Params>(std::forward<Args>(args))...);
  return launch_grid(kernel_name, file, grid, block, shared_bytes, stream,
                     [kernel, params]() { std::apply(kernel, params); });
}

}  // namespace emu
}  // namespace tandem

// ---- The names kernels use ------------------------------------------------------------------

#define threadIdx (::tandem::emu::this_thread().thread_idx)
#define blockIdx (::tandem::emu::this_thread().block_idx)
#define blockDim (::tandem::emu::this_thread().block_dim)
#define gridDim (::tandem::emu::this_thread().grid_dim)
#define __syncthreads() ::tandem::emu::syncthreads(__FILE__, __LINE__)
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  ::tandem::emu::syncwarp(mask, file, line);
}

namespace tandem {
namespace emu {
namespace detail {
template <typename T>
T shuffle(unsigned mask, T v, int src_lane, const char* file, int line) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "__shfl_*_sync: 4- or 8-byte values only");
  if constexpr (sizeof(T) == 4) {
    uint32_t w;
    std::memcpy(&w, &v, 4);
    w = shuffle_word(mask, w, src_lane, file, line);
    std::memcpy(&v, &w, 4);
  } else {
    uint64_t w;
    std::memcpy(&w, &v, 8);
    w = shuffle_dword(mask, w, src_lane, file, line);
    std::memcpy(&v, &w, 8);
  }
  return v;
}
inline int lane_id() { return this_thread().linear % 32; }
}  // namespace detail
}  // namespace emu
}  // namespace tandem

// CUDA's rules (Programming Guide, "Warp Shuffle Functions"): width splits the
// warp into segments; a source lane outside the caller's segment (xor, down)
// or before it (up) gives the caller its own value. The call site (GCC's
// __builtin_FILE/LINE as default arguments) tells the emulator which lanes
// meet at the same shuffle.
template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32, const char* file = __builtin_FILE(),
              int line = __builtin_LINE()) {
  const int lane = ::tandem::emu::detail::lane_id();
  const int base = lane & ~(width - 1);
  return ::tandem::emu::detail::shuffle(mask, v, base + (src & (width - 1)), file, line);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32,
                  const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  const int lane = ::tandem::emu::detail::lane_id();
  const int base = lane & ~(width - 1);
  int src = lane ^ lane_mask;
  if (src < base || src >= base + width) src = lane;
  return ::tandem::emu::detail::shuffle(mask, v, src, file, line);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32,
                   const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  const int lane = ::tandem::emu::detail::lane_id();
  const int base = lane & ~(width - 1);
  int src = lane + static_cast<int>(delta);
  if (src >= base + width) src = lane;
  return ::tandem::emu::detail::shuffle(mask, v, src, file, line);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32,
                 const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  const int lane = ::tandem::emu::detail::lane_id();
  const int base = lane & ~(width - 1);
  int src = lane - static_cast<int>(delta);
  if (src < base) src = lane;
  return ::tandem::emu::detail::shuffle(mask, v, src, file, line);
}

// Blocks run one at a time, but a stream's grids may interleave with other
// host threads' work; the GCC builtins make the read-modify-write atomic.
template <typename T>
T atomicAdd(T* address, T value) {
  static_assert(std::is_arithmetic_v<T>, "atomicAdd: arithmetic types only");
  if constexpr (std::is_integral_v<T>) {
    return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
  } else {
    T old;
    __atomic_load(address, &old, __ATOMIC_RELAXED);  // the generic form: floating types too
    T desired;
    do {
      desired = old + value;
    } while (!__atomic_compare_exchange(address, &old, &desired, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED));
    return old;
  }
}

inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<uint64_t>(a) * b) >> 32);
}
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  __extension__ typedef unsigned __int128 u128;
  return static_cast<unsigned long long>((static_cast<u128>(a) * b) >> 64);
}
// Round-to-nearest arithmetic that never contracts (the emulated build has
// -ffp-contract=off everywhere; these make the intent explicit).
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
