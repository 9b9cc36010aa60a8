// The caching device allocator, the pinned host allocator and the host <->
// device copies (src/core/cuda_services.h), plus the statistics of include/tandem/cuda.h.
//
// Device memory: requests are rounded (512 B steps below 1 MiB, 2 MiB steps
// above) and served from a per-device pool of freed blocks, best fit, keyed by
// (stream, size). A block is handed out again only for the stream it was
// allocated on, so freeing a tensor whose kernels are still queued is safe:
// whatever reuses the block is queued behind them. A tensor used on other
// streams too is marked with cuda::record_stream (PyTorch's semantics): when
// it is freed, an event is recorded on each of those streams and the block
// waits in `pending_frees` until they have all completed (checked at each
// allocation; waited for before the cache is released). Freed blocks go back
// to the pool, never to cudaFree; on cudaMalloc failure the device's cached
// blocks are released and the allocation retried once, then OutOfMemoryError
// is thrown.
//
// Pinned host memory: cached the same way. A block that was the source of an
// asynchronous copy carries events and is reused only after they complete. It
// carries at most one event per (device, stream): work on a stream runs in
// order, so re-recording that stream's event behind the newest copy covers
// every earlier copy on it, and a block used as a copy source over and over
// holds one event, not one per copy (completed events are recycled at record
// time too). The count is MemoryStats::pinned_pending_events.
//
// Host -> device copies from pageable memory go through a small per-device
// ring of pinned staging buffers; a slot is refilled only after the event
// recorded behind its previous copy has completed, so the copy returns as soon
// as the source has been read, without waiting for the GPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/cuda_services.h"
#include "core/format_bytes.h"
#include "cuda/cuda_utils.h"
#include "tandem/cuda.h"
#include "tandem/error.h"
#include "tandem/tensor.h"

namespace tandem {
namespace cuda {
namespace detail {

using tandem::detail::str_cat;

namespace {

constexpr size_t kSmallLimit = size_t{1} << 20;  // below: 512 B granularity
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t{2} << 20;    // at and above: 2 MiB granularity
constexpr size_t kStagingChunk = size_t{4} << 20;  // pageable H2D staging slot
constexpr int kStagingSlots = 4;

size_t round_size(size_t nbytes) {
  const size_t unit = nbytes < kSmallLimit ? kSmallRound : kLargeRound;
  return (nbytes + unit - 1) / unit * unit;
}

// A cached block may serve a request of `size` (already rounded) when it is at
// most twice as large, so a small request never pins down a huge block.
bool block_fits(size_t block_size, size_t size) { return block_size <= 2 * size; }

using ::tandem::detail::format_bytes;

// ---- Device pools -------------------------------------------------------------------

struct Block {
  void* ptr = nullptr;
  size_t size = 0;
  cudaStream_t stream = nullptr;          // allocated on, and reused only for
  std::vector<cudaStream_t> stream_uses;  // other streams that used it (record_stream)
};

// A freed block waiting for the events recorded on its other streams.
struct PendingFree {
  Block* block;
  std::vector<cudaEvent_t> events;
};

struct BlockLess {
  bool operator()(const Block* a, const Block* b) const {
    const auto sa = reinterpret_cast<uintptr_t>(a->stream);
    const auto sb = reinterpret_cast<uintptr_t>(b->stream);
    if (sa != sb) return sa < sb;
    if (a->size != b->size) return a->size < b->size;
    return reinterpret_cast<uintptr_t>(a->ptr) < reinterpret_cast<uintptr_t>(b->ptr);
  }
};

struct DevicePool {
  std::mutex mutex;
  std::set<Block*, BlockLess> free_blocks;  // owned; deleted when cudaFree'd
  std::map<void*, Block*> live_blocks;      // handed out, by address (record_stream)
  std::vector<PendingFree> pending_frees;   // freed, still used by another stream
  std::vector<cudaEvent_t> spare_events;
  MemoryStats stats;
};

class DeviceAllocator {
 public:
  std::shared_ptr<void> allocate(size_t nbytes, int device);
  void release(Block* block, int device);
  // Marks the live block at `base` as used on `stream` (see the top).
  void record_stream(void* base, int device, cudaStream_t stream);
  MemoryStats stats(int device);
  void reset_peak(int device);
  void empty_cache();

 private:
  DevicePool& pool(int device) { return pools_[static_cast<size_t>(device)]; }
  // Frees every cached block of the pool, after waiting for the pending frees
  // (caller holds the pool's mutex and a DeviceGuard for the device).
  void release_cached_locked(DevicePool& p);
  // Moves pending frees whose events have completed (all of them when `wait`)
  // to free_blocks (caller holds the pool's mutex, the device is current).
  void process_pending_frees_locked(DevicePool& p, bool wait);

  std::array<DevicePool, kMaxDevices> pools_;
};

DeviceAllocator& device_allocator() {
  static DeviceAllocator* a = new DeviceAllocator();  // never destroyed: deleters may run at exit
  return *a;
}

struct BlockDeleter {
  Block* block;
  int device;
  void operator()(void* /*ptr*/) const { device_allocator().release(block, device); }
};

std::shared_ptr<void> DeviceAllocator::allocate(size_t nbytes, int device) {
  check_device_index(device);
  if (nbytes == 0) return std::shared_ptr<void>();
  DeviceGuard guard(device);
  cudaStream_t stream = stream_for_device(device);
  const size_t size = round_size(nbytes);
  DevicePool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mutex);
  ++p.stats.num_alloc_requests;
  if (!p.pending_frees.empty()) process_pending_frees_locked(p, false);

  Block key;
  key.size = size;
  key.stream = stream;
  Block* block = nullptr;
  auto it = p.free_blocks.lower_bound(&key);
  if (it != p.free_blocks.end() && (*it)->stream == stream && block_fits((*it)->size, size)) {
    block = *it;
    p.free_blocks.erase(it);
  } else {
    void* ptr = nullptr;
    cudaError_t err = cudaMalloc(&ptr, size);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      release_cached_locked(p);
      err = cudaMalloc(&ptr, size);
    }
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      size_t free_bytes = 0, total_bytes = 0;
      const bool have_info = cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess;
      if (!have_info) (void)cudaGetLastError();
      const MemoryStats& s = p.stats;
      throw OutOfMemoryError(
          str_cat("cuda: out of memory allocating ", format_bytes(nbytes), " on cuda:", device,
                  " (in use: ", format_bytes(s.allocated_bytes), ", cached: ",
                  format_bytes(s.reserved_bytes - s.allocated_bytes), ", device free/total: ",
                  have_info ? format_bytes(free_bytes) + " / " + format_bytes(total_bytes)
                            : std::string("unknown"),
                  "). Try a smaller batch size or call tandem::cuda::empty_cache()"),
          __FILE__, __LINE__);
    }
    check_status(err, "cudaMalloc(&ptr, size)", __FILE__, __LINE__);
    block = new Block{ptr, size, stream, {}};
    p.stats.reserved_bytes += size;
    ++p.stats.num_device_allocs;
  }
  p.stats.allocated_bytes += block->size;
  p.stats.peak_allocated_bytes = std::max(p.stats.peak_allocated_bytes, p.stats.allocated_bytes);
  p.stats.cached_bytes = p.stats.reserved_bytes - p.stats.allocated_bytes;
  p.live_blocks[block->ptr] = block;
  return std::shared_ptr<void>(block->ptr, BlockDeleter{block, device});
}

void DeviceAllocator::release(Block* block, int device) {
  DevicePool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mutex);
  p.live_blocks.erase(block->ptr);
  p.stats.allocated_bytes -= block->size;
  p.stats.cached_bytes = p.stats.reserved_bytes - p.stats.allocated_bytes;
  if (block->stream_uses.empty()) {
    p.free_blocks.insert(block);
    return;
  }
  // Used on other streams: reusable once each of them reaches this point. A
  // deleter must not throw, so a failure to record an event falls back to
  // waiting for the whole device.
  PendingFree pending{block, {}};
  int previous = -1;
  bool ok = cudaGetDevice(&previous) == cudaSuccess &&
            (previous == device || cudaSetDevice(device) == cudaSuccess);
  for (cudaStream_t s : block->stream_uses) {
    if (!ok) break;
    cudaEvent_t ev = nullptr;
    if (!p.spare_events.empty()) {
      ev = p.spare_events.back();
      p.spare_events.pop_back();
    } else if (cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess) {
      ok = false;
      break;
    }
    if (cudaEventRecord(ev, s) != cudaSuccess) {
      p.spare_events.push_back(ev);
      ok = false;
      break;
    }
    pending.events.push_back(ev);
  }
  if (!ok) {
    (void)cudaGetLastError();
    count_host_sync();
    if (cudaDeviceSynchronize() != cudaSuccess) (void)cudaGetLastError();
    for (cudaEvent_t ev : pending.events) p.spare_events.push_back(ev);
    pending.events.clear();
  }
  if (previous >= 0 && previous != device && cudaSetDevice(previous) != cudaSuccess) {
    (void)cudaGetLastError();
  }
  block->stream_uses.clear();
  if (pending.events.empty()) {
    p.free_blocks.insert(block);
  } else {
    p.pending_frees.push_back(std::move(pending));
  }
}

void DeviceAllocator::record_stream(void* base, int device, cudaStream_t stream) {
  DevicePool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mutex);
  auto it = p.live_blocks.find(base);
  if (it == p.live_blocks.end()) return;  // not from this allocator (cannot happen for tensors)
  Block* b = it->second;
  if (stream == b->stream) return;
  if (std::find(b->stream_uses.begin(), b->stream_uses.end(), stream) == b->stream_uses.end()) {
    b->stream_uses.push_back(stream);
  }
}

void DeviceAllocator::process_pending_frees_locked(DevicePool& p, bool wait) {
  for (size_t i = 0; i < p.pending_frees.size();) {
    PendingFree& pf = p.pending_frees[i];
    bool done = true;
    for (cudaEvent_t ev : pf.events) {
      if (wait) count_host_sync();
      const cudaError_t q = wait ? cudaEventSynchronize(ev) : cudaEventQuery(ev);
      if (q == cudaErrorNotReady) {
        (void)cudaGetLastError();
        done = false;
        break;
      }
      if (q != cudaSuccess) (void)cudaGetLastError();  // a failed device: nothing reads it
    }
    if (!done) {
      ++i;
      continue;
    }
    for (cudaEvent_t ev : pf.events) p.spare_events.push_back(ev);
    p.free_blocks.insert(pf.block);
    p.pending_frees[i] = std::move(p.pending_frees.back());
    p.pending_frees.pop_back();
  }
}

void DeviceAllocator::release_cached_locked(DevicePool& p) {
  process_pending_frees_locked(p, true);
  for (Block* b : p.free_blocks) {
    const cudaError_t err = cudaFree(b->ptr);
    if (err != cudaSuccess) (void)cudaGetLastError();  // keep going; the block is gone either way
    p.stats.reserved_bytes -= b->size;
    ++p.stats.num_device_frees;
    delete b;
  }
  p.free_blocks.clear();
  p.stats.cached_bytes = p.stats.reserved_bytes - p.stats.allocated_bytes;
}

MemoryStats DeviceAllocator::stats(int device) {
  if (visible_device_count() == 0) return MemoryStats{};
  check_device_index(device);
  DevicePool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mutex);
  return p.stats;
}

void DeviceAllocator::reset_peak(int device) {
  if (visible_device_count() == 0) return;
  check_device_index(device);
  DevicePool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mutex);
  p.stats.peak_allocated_bytes = p.stats.allocated_bytes;
}

void DeviceAllocator::empty_cache() {
  const int n = visible_device_count();
  for (int d = 0; d < n; ++d) {
    DevicePool& p = pool(d);
    std::lock_guard<std::mutex> lock(p.mutex);
    if (p.free_blocks.empty() && p.pending_frees.empty()) continue;
    DeviceGuard guard(d);
    release_cached_locked(p);
  }
}

// ---- Pinned host memory ------------------------------------------------------------------

// An event recorded behind the newest asynchronous copy that read a pinned
// block on `stream` of `device` (the device the event was created on).
struct PendingUse {
  int device;
  cudaStream_t stream;
  cudaEvent_t event;
};

struct PinnedBlock {
  void* ptr = nullptr;
  size_t size = 0;
  std::vector<PendingUse> pending;  // at most one per (device, stream)
};

class PinnedAllocator {
 public:
  std::shared_ptr<void> allocate(size_t nbytes);
  void release(PinnedBlock* block);
  // Records an event on `stream` (of the current device `device`) if `ptr` lies
  // in one of our blocks, so that the block is not reused before the copy ends.
  void record_use(const void* ptr, int device, cudaStream_t stream);
  void empty_cache();
  // Events of `device` still pending on pinned blocks.
  uint64_t pending_events(int device);

 private:
  // True when every copy that read the block has finished (recycles the events
  // of those that have).
  bool idle_locked(PinnedBlock* b);
  void free_idle_locked();

  std::mutex mutex_;
  std::multimap<size_t, PinnedBlock*> free_;  // by size
  std::map<uintptr_t, PinnedBlock*> all_;     // by address, to find a block from a pointer
  std::array<std::vector<cudaEvent_t>, kMaxDevices> spare_events_;
  std::array<uint64_t, kMaxDevices> pending_count_{};  // entries in all blocks' `pending`
};

PinnedAllocator& pinned_allocator() {
  static PinnedAllocator* a = new PinnedAllocator();  // never destroyed
  return *a;
}

bool PinnedAllocator::idle_locked(PinnedBlock* b) {
  auto& pending = b->pending;
  bool idle = true;
  for (size_t i = 0; i < pending.size();) {
    const cudaError_t q = cudaEventQuery(pending[i].event);
    if (q == cudaErrorNotReady) {
      (void)cudaGetLastError();
      idle = false;
      ++i;
      continue;
    }
    const auto dev = static_cast<size_t>(pending[i].device);
    if (q == cudaSuccess) {
      spare_events_[dev].push_back(pending[i].event);
    } else {
      (void)cudaGetLastError();  // a failed device: the copy will never read the block again
    }
    --pending_count_[dev];
    pending[i] = pending.back();
    pending.pop_back();
  }
  return idle;
}

uint64_t PinnedAllocator::pending_events(int device) {
  std::lock_guard<std::mutex> lock(mutex_);
  return pending_count_[static_cast<size_t>(device)];
}

std::shared_ptr<void> PinnedAllocator::allocate(size_t nbytes) {
  check_device_index(0);  // pinned memory needs the driver: fail with the clear message
  if (nbytes == 0) return std::shared_ptr<void>();
  const size_t size = round_size(nbytes);
  std::lock_guard<std::mutex> lock(mutex_);
  PinnedBlock* block = nullptr;
  for (auto it = free_.lower_bound(size); it != free_.end() && block_fits(it->first, size); ++it) {
    if (idle_locked(it->second)) {
      block = it->second;
      free_.erase(it);
      break;
    }
  }
  if (block == nullptr) {
    void* ptr = nullptr;
    cudaError_t err = cudaHostAlloc(&ptr, size, cudaHostAllocPortable);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      free_idle_locked();
      err = cudaHostAlloc(&ptr, size, cudaHostAllocPortable);
    }
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      size_t cached = 0;
      for (const auto& kv : free_) cached += kv.first;
      throw OutOfMemoryError(
          str_cat("cuda: out of pinned host memory allocating ", format_bytes(nbytes),
                  " (cached pinned: ", format_bytes(cached),
                  "). Use pageable (non-pinned) tensors or smaller batches"),
          __FILE__, __LINE__);
    }
    check_status(err, "cudaHostAlloc(&ptr, size, cudaHostAllocPortable)", __FILE__, __LINE__);
    block = new PinnedBlock{ptr, size, {}};
    all_[reinterpret_cast<uintptr_t>(ptr)] = block;
  }
  return std::shared_ptr<void>(block->ptr, [block](void*) { pinned_allocator().release(block); });
}

void PinnedAllocator::release(PinnedBlock* block) {
  std::lock_guard<std::mutex> lock(mutex_);
  free_.emplace(block->size, block);
}

void PinnedAllocator::record_use(const void* ptr, int device, cudaStream_t stream) {
  const auto addr = reinterpret_cast<uintptr_t>(ptr);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = all_.upper_bound(addr);
  if (it == all_.begin()) return;
  --it;
  PinnedBlock* b = it->second;
  if (addr >= it->first + b->size) return;  // not one of ours
  (void)idle_locked(b);                     // recycle the events of copies that have finished
  for (PendingUse& use : b->pending) {
    if (use.device == device && use.stream == stream) {
      // Same stream: re-recording moves the event behind this copy, which runs
      // after every earlier copy on the stream.
      TANDEM_CUDA_CHECK(cudaEventRecord(use.event, stream));
      return;
    }
  }
  auto& spare = spare_events_[static_cast<size_t>(device)];
  cudaEvent_t ev = nullptr;
  if (!spare.empty()) {
    ev = spare.back();
    spare.pop_back();
  } else {
    TANDEM_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  }
  const cudaError_t err = cudaEventRecord(ev, stream);
  if (err != cudaSuccess) {
    spare.push_back(ev);
    check_status(err, "cudaEventRecord(ev, stream)", __FILE__, __LINE__);
  }
  b->pending.push_back(PendingUse{device, stream, ev});
  ++pending_count_[static_cast<size_t>(device)];
}

void PinnedAllocator::free_idle_locked() {
  for (auto it = free_.begin(); it != free_.end();) {
    PinnedBlock* b = it->second;
    if (!idle_locked(b)) {
      ++it;
      continue;
    }
    if (cudaFreeHost(b->ptr) != cudaSuccess) (void)cudaGetLastError();
    all_.erase(reinterpret_cast<uintptr_t>(b->ptr));
    delete b;
    it = free_.erase(it);
  }
}

void PinnedAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  free_idle_locked();
}

// ---- Staging ring for pageable host -> device copies
// -----------------------------------------------

struct StagingSlot {
  void* host = nullptr;
  cudaEvent_t done = nullptr;
  bool in_flight = false;  // `done` was recorded behind a copy from this slot
};

struct StagingRing {
  std::mutex mutex;
  bool ready = false;
  int next = 0;
  std::array<StagingSlot, kStagingSlots> slots;
};

std::array<StagingRing, kMaxDevices>& staging_rings() {
  static auto* rings = new std::array<StagingRing, kMaxDevices>();  // never destroyed
  return *rings;
}

// Caller holds ring.mutex and a DeviceGuard for the ring's device.
void init_staging_locked(StagingRing& ring) {
  if (ring.ready) return;
  for (StagingSlot& slot : ring.slots) {
    if (slot.host == nullptr) {
      TANDEM_CUDA_CHECK(cudaHostAlloc(&slot.host, kStagingChunk, cudaHostAllocPortable));
    }
    if (slot.done == nullptr) {
      TANDEM_CUDA_CHECK(cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming));
    }
  }
  ring.ready = true;
}

}  // namespace

// ---- runtime.h ----------------------------------------------------------------------------------

std::shared_ptr<void> allocate_device(size_t nbytes, int device) {
  return device_allocator().allocate(nbytes, device);
}

std::shared_ptr<void> allocate_pinned(size_t nbytes) { return pinned_allocator().allocate(nbytes); }

void record_pinned_use(const void* ptr, int device, cudaStream_t stream) {
  pinned_allocator().record_use(ptr, device, stream);
}

void copy_host_to_device(void* dst, const void* src, size_t nbytes, int device, bool src_pinned) {
  if (nbytes == 0) return;
  DeviceGuard guard(device);
  cudaStream_t stream = stream_for_device(device);
  if (src_pinned) {
    // Asynchronous: the source must not be overwritten until the stream gets
    // here; our pinned blocks are not recycled before that (record_use).
    TANDEM_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, stream));
    pinned_allocator().record_use(src, device, stream);
    return;
  }
  StagingRing& ring = staging_rings()[static_cast<size_t>(device)];
  std::lock_guard<std::mutex> lock(ring.mutex);
  init_staging_locked(ring);
  const char* from = static_cast<const char*>(src);
  char* to = static_cast<char*>(dst);
  for (size_t done = 0; done < nbytes;) {
    const size_t len = std::min(kStagingChunk, nbytes - done);
    StagingSlot& slot = ring.slots[static_cast<size_t>(ring.next)];
    ring.next = (ring.next + 1) % kStagingSlots;
    if (slot.in_flight) {
      count_host_sync();
      TANDEM_CUDA_CHECK(cudaEventSynchronize(slot.done));  // its previous copy has left the slot
      slot.in_flight = false;
    }
    std::memcpy(slot.host, from + done, len);
    TANDEM_CUDA_CHECK(cudaMemcpyAsync(to + done, slot.host, len, cudaMemcpyHostToDevice, stream));
    TANDEM_CUDA_CHECK(cudaEventRecord(slot.done, stream));
    slot.in_flight = true;
    done += len;
  }
}

void copy_device_to_host(void* dst, const void* src, size_t nbytes, int device) {
  if (nbytes == 0) return;
  DeviceGuard guard(device);
  cudaStream_t stream = stream_for_device(device);
  TANDEM_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, stream));
  count_host_sync();
  TANDEM_CUDA_CHECK(cudaStreamSynchronize(stream));  // the caller asked for the data
}

void copy_device_to_device(void* dst, int dst_device, const void* src, int src_device,
                           size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device == src_device) {
    DeviceGuard guard(dst_device);
    TANDEM_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, stream_for_device(dst_device)));
    return;
  }
  // Across devices: the copy runs on the destination's stream after the work
  // already queued on the source's stream, and the source's stream waits for the
  // copy (so the source block is not reused under it).
  check_device_index(src_device);
  check_device_index(dst_device);
  cudaStream_t src_stream = stream_for_device(src_device);
  cudaStream_t dst_stream = stream_for_device(dst_device);
  cudaEvent_t src_ready = nullptr, copy_done = nullptr;
  {
    DeviceGuard guard(src_device);
    TANDEM_CUDA_CHECK(cudaEventCreateWithFlags(&src_ready, cudaEventDisableTiming));
    TANDEM_CUDA_CHECK(cudaEventRecord(src_ready, src_stream));
  }
  {
    DeviceGuard guard(dst_device);
    TANDEM_CUDA_CHECK(cudaStreamWaitEvent(dst_stream, src_ready, 0));
    TANDEM_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device, src, src_device, nbytes, dst_stream));
    TANDEM_CUDA_CHECK(cudaEventCreateWithFlags(&copy_done, cudaEventDisableTiming));
    TANDEM_CUDA_CHECK(cudaEventRecord(copy_done, dst_stream));
  }
  {
    DeviceGuard guard(src_device);
    TANDEM_CUDA_CHECK(cudaStreamWaitEvent(src_stream, copy_done, 0));
  }
  // Destroying a recorded event is fine: its resources go once it completes.
  TANDEM_CUDA_CHECK(cudaEventDestroy(src_ready));
  TANDEM_CUDA_CHECK(cudaEventDestroy(copy_done));
}

}  // namespace detail

// ---- include/tandem/cuda.h: allocator statistics
// -------------------------------------------------

void record_stream(const Tensor& tensor, const Stream& stream) {
  TANDEM_CHECK(tensor.defined(), "cuda::record_stream: the tensor is undefined");
  TANDEM_CHECK(tensor.is_cuda(), "cuda::record_stream: expected a CUDA tensor, got a ",
               tensor.device().str(), " tensor ", shape_str(tensor.sizes()));
  TANDEM_CHECK(stream.device() == tensor.device().index(), "cuda::record_stream: the tensor is on ",
               tensor.device().str(), " but the stream belongs to cuda:", stream.device());
  const Storage& storage = *tensor.impl()->storage;
  if (storage.nbytes() == 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream.handle());
  if (s == nullptr) s = detail::default_stream(stream.device());  // null: tandem's default
  detail::device_allocator().record_stream(storage.data(), stream.device(), s);
}

MemoryStats memory_stats(int device) {
  MemoryStats s = detail::device_allocator().stats(device);
  if (detail::visible_device_count() > 0) {
    s.pinned_pending_events = detail::pinned_allocator().pending_events(device);
  }
  return s;
}
void reset_peak_memory_stats(int device) { detail::device_allocator().reset_peak(device); }
void empty_cache() {
  if (detail::visible_device_count() > 0) {
    detail::release_cublas_workspaces();
    detail::release_cudnn_handles();
  }
  detail::device_allocator().empty_cache();
  if (detail::visible_device_count() > 0) detail::pinned_allocator().empty_cache();
}

}  // namespace cuda
}  // namespace tandem
