// The emulated CUDA device's internals, shared by its parts (the runtime in
// src/emu/runtime.cpp, the grid executor in src/emu/grid.cpp, cuBLAS in
// src/emu/cublas.cpp, cuDNN in src/emu/cudnn.cpp) and by tests/emu.
//
// Built only in the emulated presets (TANDEM_CUDA=EMU, macro TANDEM_EMU): the
// real CUDA headers give the types, enums and signatures, and src/emu defines
// the functions of cudart, cuBLAS and cuDNN that tandem calls, in place of the
// NVIDIA libraries. Kernels run on the host (src/emu/device.h).
//
// Execution model: work enqueued on a stream is deferred. It runs, in stream
// order and honouring events and cudaStreamWaitEvent, at the next point that
// waits for it (cudaStreamSynchronize, cudaEventSynchronize, cudaEventQuery,
// cudaDeviceSynchronize, a synchronous cudaMemcpy, cudaFree), on the thread
// that waits, under one global lock. While no work runs, device memory is
// inaccessible to the host (a protected arena; plain malloc under ASan), so
// host code that reads a device pointer or reads a copy's destination before
// synchronising fails as it would on a GPU, only more reliably.
#pragma once

#include <cuda_runtime.h>

#include <cstring>

// TANDEM_EMU_ASAN: built with AddressSanitizer (GCC or Clang).
#if defined(__SANITIZE_ADDRESS__)
#define TANDEM_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TANDEM_EMU_ASAN 1
#endif
#endif

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace tandem {
namespace emu {

// ---- Findings: what the checkers report -----------------------------------------------

enum class FindingKind {
  kSharedRace,           // two threads touch one shared byte between barriers, one writes
  kSharedUninitialised,  // a read of shared memory no thread of the block wrote
  kSharedOutOfBounds,    // an index past a __shared__ array
  kDivergentBarrier,     // threads of a block at different barriers, or one exited
  kShuffleMask,          // a lane outside the mask takes part, or the mask names an absent lane
  kGlobalOutOfBounds,    // a library call (cuBLAS, cuDNN, copies) touching outside an allocation
  kNotDevicePointer,     // a host pointer where device memory is required
  kLaunchConfig,         // a launch the hardware refuses (reported as an error, not a finding)
  kOther,
};

const char* finding_kind_name(FindingKind kind);

struct Finding {
  FindingKind kind;
  std::string message;  // names the kernel (or call), the block/thread, the address
};

// Records a finding: printed on stderr with TANDEM_EMU_SEED, kept for findings(),
// and turned into an error (cudaErrorLaunchFailure) returned by the next call that
// waits for the stream (the way an asynchronous fault surfaces on a GPU).
// TANDEM_EMU_ABORT=1 aborts at once instead (for a debugger).
void report(FindingKind kind, const std::string& message);

// Everything reported since the process started or the last clear_findings().
std::vector<Finding> findings();
void clear_findings();

// The seed of every random choice the emulator makes (block order, thread order
// at barriers): TANDEM_EMU_SEED, default 1. set_seed is for tests.
uint64_t seed();
void set_seed(uint64_t seed);

// ---- Streams ------------------------------------------------------------------------

// Enqueues `work` on `stream` (nullptr: the legacy default stream). `what` names it
// in findings and errors ("cublasSgemmStridedBatched", "kernel reduce_cols_kernel").
// work() runs later, with device memory accessible; it reports problems through
// report() (or throws a std::exception, which is reported as kOther).
void enqueue(cudaStream_t stream, const char* what, std::function<void()> work);

// Runs every piece of work enqueued so far on every stream (cudaDeviceSynchronize).
void synchronize_all();

// The calling host thread's last error (cudaGetLastError's), set by a refused launch.
void set_last_error(cudaError_t error);

// Counts the grids, blocks and emulated threads run so far (the emulator's tests).
struct GridStats {
  uint64_t grids = 0;
  uint64_t blocks = 0;
  uint64_t threads = 0;
  uint64_t barriers = 0;
};
GridStats grid_stats();

// The kernel and emulated thread running on this host thread ("" outside a
// kernel), for fault messages.
std::string current_kernel_thread();

// ---- Device memory ------------------------------------------------------------------

// True when [p, p + nbytes) lies inside one live device allocation (cudaMalloc).
bool is_device_range(const void* p, size_t nbytes);
// True when p is inside a live cudaHostAlloc / cudaMallocHost block.
bool is_pinned_host(const void* p);
// Checks [p, p + nbytes) for a library call: reports kNotDevicePointer or
// kGlobalOutOfBounds naming `what` and `operand` and returns false when it is not
// device memory of that size. nbytes == 0 always passes.
bool check_device_range(const char* what, const char* operand, const void* p, size_t nbytes);

// ---- Fault injection ------------------------------------------------------------------
// Environment (read at the first call; reload_faults() rereads it, for tests):
//   TANDEM_EMU_MALLOC_FAIL_AT=N      the Nth cudaMalloc (1-based, counted from the
//                                    last reload) fails with cudaErrorMemoryAllocation
//   TANDEM_EMU_MALLOC_FAIL_ABOVE=B   every cudaMalloc of more than B bytes fails
//   TANDEM_EMU_CUDNN_REFUSE=LIST     cuDNN refuses these algorithms with
//                                    CUDNN_STATUS_NOT_SUPPORTED when run:
//                                    "fwd:1,fwd:7,bwd_data:0,bwd_filter:3"
//   TANDEM_EMU_CUBLAS_FAIL_AT=N      the Nth cuBLAS GEMM call returns
//                                    CUBLAS_STATUS_EXECUTION_FAILED
//   TANDEM_EMU_MEMORY=BYTES          the device's memory (default 80 GB, an H100's)
void reload_faults();
bool malloc_should_fail(size_t nbytes);               // counts the call
bool cudnn_refuses(const char* pass, int algorithm);  // pass: "fwd", "bwd_data", "bwd_filter"
bool cublas_should_fail();                            // counts the call
size_t device_memory_bytes();

// Rounds a float to TF32 (1 sign, 8 exponent, 10 mantissa bits) to nearest
// even, as tensor cores read their float inputs (cuBLAS and cuDNN in TF32
// mode). NaN and Inf pass.
inline float round_tf32(float v) {
  uint32_t bits = 0;
  std::memcpy(&bits, &v, sizeof bits);
  if ((bits & 0x7f800000u) == 0x7f800000u) return v;
  bits += 0xfffu + ((bits >> 13) & 1u);
  bits &= ~0x1fffu;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

}  // namespace emu
}  // namespace tandem
