// The CUDA runtime as tandem exposes it: device queries, streams, the caching
// allocator's statistics, and switches. Every function exists in a CPU-only
// build too: is_available() is false there and the rest either report zero
// devices or throw a tandem::Error saying CUDA support was not built.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tandem {
class Tensor;
namespace cuda {

// True when tandem was built with CUDA and at least one device is visible.
bool is_available();
bool is_built();  // built with TANDEM_CUDA
int device_count();
std::string device_name(int device = 0);
void synchronize(int device = -1);  // -1: the current device

// The caching allocator: freed blocks are kept for reuse, so a steady training
// loop makes no cudaMalloc/cudaFree calls.
struct MemoryStats {
  size_t allocated_bytes = 0;       // held by live tensors (rounded sizes)
  size_t peak_allocated_bytes = 0;  // max of allocated_bytes since reset
  size_t reserved_bytes = 0;        // obtained from cudaMalloc (in use + cached)
  size_t cached_bytes = 0;          // reserved but free
  uint64_t num_device_allocs = 0;   // real cudaMalloc calls
  uint64_t num_device_frees = 0;    // real cudaFree calls
  uint64_t num_alloc_requests = 0;  // tensor allocations served
  // Events of this device that still guard pinned host blocks read by
  // asynchronous copies: at most one per (pinned block, stream), however many
  // copies a block has been the source of.
  uint64_t pinned_pending_events = 0;
};
MemoryStats memory_stats(int device = 0);
void reset_peak_memory_stats(int device = 0);
// Returns every cached (unused) block to the driver. Also releases the cuBLAS
// workspaces (one per cuBLAS handle and stream; the streams are synchronised
// first, new ones are taken on the next GEMM) and destroys the cuDNN handles
// of threads that have exited. Do not call it while another thread is
// running tandem ops on the GPU.
void empty_cache();

// How many times tandem has blocked the host until a device finished queued
// work, over all devices and threads since the process started (or since
// reset_host_sync_count): every item(), to(kCPU) and other device-to-host
// copy, cuda::synchronize and Stream::synchronize, the data loader waiting for
// a finished upload, the caching allocator waiting for an event, and the
// per-launch synchronisation of sync debug. A steady training step
// (train::Trainer between two reads of its figures) makes none. 0 in a
// CPU-only build.
uint64_t host_sync_count();
void reset_host_sync_count();

// An opaque CUDA stream handle (cudaStream_t) and the current stream that
// every tandem launch, copy and library call of a device is enqueued on.
//
// The current stream is per host thread and per device, as in PyTorch:
// set_current_stream changes it for the calling thread only, and a thread
// that never set one uses tandem's default stream of the device (one
// non-blocking stream per device, shared by all threads, created on first use).
class Stream {
 public:
  explicit Stream(void* handle = nullptr, int device = 0) : handle_(handle), device_(device) {}
  void* handle() const { return handle_; }
  int device() const { return device_; }
  void synchronize() const;

 private:
  void* handle_;
  int device_;
};
// The calling thread's current stream of `device` (-1: the current device).
Stream current_stream(int device = -1);
// Sets the calling thread's current stream of stream.device(); a null handle
// selects tandem's default stream of that device again.
void set_current_stream(const Stream& stream);
// Creates a new non-blocking stream (owned by tandem until process exit).
Stream new_stream(int device = -1);

// Makes `stream` the calling thread's current stream of its device for the
// guard's lifetime, then restores the previous one.
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  Stream previous_;
};

// Marks `tensor`'s memory as used by work on `stream` (PyTorch's
// Tensor.record_stream). The caching allocator reuses a freed block only for
// the stream it was allocated on; a tensor that work on another stream reads
// or writes must be recorded on that stream before it is freed, so that its
// block is not handed out again until that stream has finished the work
// queued so far. Needed only when a tensor allocated on one stream is used on
// another and may be freed before the other stream is synchronised. Throws
// for an undefined or CPU tensor or a stream of another device.
void record_stream(const Tensor& tensor, const Stream& stream);

// TF32 tensor-core math in float32 GEMMs (cuBLAS). Off by default, so float32
// matmul keeps full float32 precision; turn on for speed.
void set_allow_tf32(bool allow);
bool allow_tf32();

// cuDNN convolution algorithm choice (like torch.backends.cudnn). By default
// cuDNN's heuristics pick an algorithm per shape. With benchmark on, the first
// convolution of each shape times the candidate algorithms once and caches the
// fastest. With deterministic on, only algorithms that give bit-identical
// results from run to run are used (benchmark then chooses among those).
// Both are off by default; both are process-wide.
void set_cudnn_benchmark(bool on);
bool cudnn_benchmark();
void set_cudnn_deterministic(bool on);
bool cudnn_deterministic();
// The cuDNN library version (e.g. 90100), or 0 when built without CUDA.
int cudnn_version();

// Synchronise after every kernel launch and library call and check for errors,
// to pin an asynchronous fault to its op. Also on when the environment variable
// TANDEM_SYNC_DEBUG=1 is set or the library was configured with
// -DTANDEM_SYNC_DEBUG=ON.
void set_sync_debug(bool on);
bool sync_debug();

}  // namespace cuda
}  // namespace tandem
