// The host caching allocator of CPU tensors (include/tandem/cpu.h), the CPU
// twin of the device allocator in src/cuda/allocator.cpp.
//
// Without it every CPU tensor came from std::aligned_alloc and went back with
// std::free: a training step's 15-30 MB of activations and gradients were
// returned to the kernel at each free (glibc unmaps large chunks) and faulted
// in again on first touch in the next step. Here freed blocks are kept and
// handed out again, so a steady training loop makes no system allocation after
// its first iteration.
//
// Sizes: every request is rounded up to a size class. Up to 256 B, multiples
// of 64 B; up to 1 MiB ("small"), four classes per power of two (at most 25%
// waste); above, multiples of 64 KiB ("large"). Small blocks are reused by
// exact class (a free list per class); large blocks by best fit among the
// cached ones, taking a block at most 25% larger than the request, so a small
// request never pins down a big block.
//
// Bounds on the cache: on a miss, when the cached bytes exceed both 256 MiB and
// the bytes in use, the cached large blocks go back to the system first (a
// loop of ever-growing sizes would otherwise keep every size it ever used).
// When a system allocation fails the whole cache is released and the
// allocation retried once, then OutOfMemoryError is thrown.
//
// Threads: one mutex guards the free lists and statistics; a block may be
// freed on any thread (DataLoader workers allocate batches that the training
// thread frees).
//
// Switch: TANDEM_CPU_CACHING_ALLOCATOR (read at the first allocation; "0" or
// "" turn caching off, anything else on) and cpu::set_caching_allocator_enabled.
// AddressSanitizer builds start with caching off, so every free is real and
// ASan's quarantine catches use-after-free; when caching is turned on there,
// cached blocks are poisoned until they are handed out again, so a use after
// free still reports (as "use-after-poison") while the block sits in the cache.
#include "core/host_allocator.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/format_bytes.h"
#include "tandem/cpu.h"
#include "tandem/error.h"

#if defined(__SANITIZE_ADDRESS__)
#define TANDEM_HOST_ALLOC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TANDEM_HOST_ALLOC_ASAN 1
#endif
#endif
#if defined(TANDEM_HOST_ALLOC_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace tandem {
namespace cpu {
namespace {

using tandem::detail::str_cat;

constexpr size_t kAlign = 64;
constexpr size_t kSmallLimit = size_t{1} << 20;  // up to: size classes, exact reuse
constexpr size_t kLargeRound = size_t{64} << 10;
constexpr size_t kGcFloor = size_t{256} << 20;  // cached bytes below this are never trimmed

#if defined(TANDEM_HOST_ALLOC_ASAN)
constexpr bool kAsan = true;
void poison(void* p, size_t n) { ASAN_POISON_MEMORY_REGION(p, n); }
void unpoison(void* p, size_t n) { ASAN_UNPOISON_MEMORY_REGION(p, n); }
#else
constexpr bool kAsan = false;
void poison(void*, size_t) {}
void unpoison(void*, size_t) {}
#endif

size_t round_up(size_t n, size_t unit) { return (n + unit - 1) / unit * unit; }

// The size class of a request (nbytes > 0, not near SIZE_MAX).
size_t round_size(size_t nbytes) {
  if (nbytes <= 4 * kAlign) return round_up(nbytes, kAlign);
  if (nbytes <= kSmallLimit) {
    // 2^k < nbytes <= 2^(k+1): steps of 2^(k-2).
    int k = 0;
    while ((size_t{2} << k) < nbytes) ++k;
    return round_up(nbytes, size_t{1} << (k - 2));
  }
  return round_up(nbytes, kLargeRound);
}

// A cached large block may serve a (rounded) request when at most 25% larger.
bool large_fits(size_t block_size, size_t size) { return block_size - size <= size / 4; }

using ::tandem::detail::format_bytes;

bool initial_enabled() {
  bool on = !kAsan;
  if (const char* env = std::getenv("TANDEM_CPU_CACHING_ALLOCATOR")) {
    on = std::strcmp(env, "") != 0 && std::strcmp(env, "0") != 0;
  }
  return on;
}

class HostAllocator {
 public:
  std::shared_ptr<void> allocate(size_t nbytes);
  void release(void* p, size_t size) noexcept;
  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_allocated_bytes = stats_.allocated_bytes;
  }
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cached_locked(false);
  }
  void set_enabled(bool on) {
    std::lock_guard<std::mutex> lock(mutex_);
    enabled_.store(on);
    if (!on) release_cached_locked(false);
  }
  bool enabled() const { return enabled_.load(); }

 private:
  // A cached block for a request of `size` (a class size), or nullptr; sets
  // `size` to the block's own size (caller holds mutex_).
  void* take_cached_locked(size_t& size);
  // A new block from the system: trims or releases the cache as described at
  // the top, throws OutOfMemoryError (caller holds mutex_).
  void* system_alloc_locked(size_t size, size_t nbytes);
  void system_free_locked(void* p, size_t size) noexcept;
  // Returns the cached blocks (only the large ones when large_only) to the system.
  void release_cached_locked(bool large_only) noexcept;
  void update_cached_locked() {
    stats_.cached_bytes = stats_.reserved_bytes - stats_.allocated_bytes;
  }

  std::mutex mutex_;
  std::atomic<bool> enabled_{initial_enabled()};
  std::unordered_map<size_t, std::vector<void*>> small_free_;  // by class size
  std::multimap<size_t, void*> large_free_;                    // by size
  MemoryStats stats_;
};

HostAllocator& host_allocator() {
  static HostAllocator* a = new HostAllocator();  // never destroyed: deleters may run at exit
  return *a;
}

struct HostBlockDeleter {
  size_t size;
  void operator()(void* p) const noexcept { host_allocator().release(p, size); }
};

void* HostAllocator::take_cached_locked(size_t& size) {
  void* p = nullptr;
  if (size <= kSmallLimit) {
    auto it = small_free_.find(size);
    if (it == small_free_.end() || it->second.empty()) return nullptr;
    p = it->second.back();
    it->second.pop_back();
  } else {
    auto it = large_free_.lower_bound(size);
    if (it == large_free_.end() || !large_fits(it->first, size)) return nullptr;
    size = it->first;
    p = it->second;
    large_free_.erase(it);
  }
  unpoison(p, size);
  return p;
}

void* HostAllocator::system_alloc_locked(size_t size, size_t nbytes) {
  if (enabled_.load() && stats_.cached_bytes > kGcFloor &&
      stats_.cached_bytes > stats_.allocated_bytes) {
    release_cached_locked(true);
  }
  void* p = std::aligned_alloc(kAlign, size);
  if (p == nullptr && stats_.cached_bytes > 0) {
    release_cached_locked(false);
    p = std::aligned_alloc(kAlign, size);
  }
  if (p == nullptr) {
    throw OutOfMemoryError(
        str_cat("cpu: out of memory allocating ", format_bytes(nbytes),
                " of host memory (in use by tensors: ", format_bytes(stats_.allocated_bytes),
                "). Try a smaller batch size"),
        __FILE__, __LINE__);
  }
  stats_.reserved_bytes += size;
  ++stats_.num_system_allocs;
  return p;
}

void HostAllocator::system_free_locked(void* p, size_t size) noexcept {
  unpoison(p, size);
  std::free(p);
  stats_.reserved_bytes -= size;
  ++stats_.num_system_frees;
}

void HostAllocator::release_cached_locked(bool large_only) noexcept {
  for (const auto& [size, p] : large_free_) system_free_locked(p, size);
  large_free_.clear();
  if (!large_only) {
    for (auto& [size, blocks] : small_free_) {
      for (void* p : blocks) system_free_locked(p, size);
    }
    small_free_.clear();
  }
  update_cached_locked();
}

std::shared_ptr<void> HostAllocator::allocate(size_t nbytes) {
  if (nbytes > std::numeric_limits<size_t>::max() / 2) {
    throw OutOfMemoryError(str_cat("cpu: out of memory allocating ", nbytes,
                                   " bytes of host memory (more than the address space)"),
                           __FILE__, __LINE__);
  }
  const bool caching = enabled_.load();
  size_t size = caching ? round_size(nbytes) : round_up(nbytes, kAlign);
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.num_alloc_requests;
    if (caching) p = take_cached_locked(size);
    if (p == nullptr) p = system_alloc_locked(size, nbytes);
    stats_.allocated_bytes += size;
    stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
    update_cached_locked();
  }
  // Outside the lock: if the control block cannot be allocated, shared_ptr
  // calls the deleter (which takes the lock) and rethrows.
  return std::shared_ptr<void>(p, HostBlockDeleter{size});
}

void HostAllocator::release(void* p, size_t size) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.allocated_bytes -= size;
  bool cached = false;
  // A block allocated while caching was off has no class size: not kept.
  if (enabled_.load() && (size > kSmallLimit || round_size(size) == size)) {
    try {
      if (size <= kSmallLimit) {
        small_free_[size].push_back(p);
      } else {
        large_free_.emplace(size, p);
      }
      cached = true;
      poison(p, size);
    } catch (...) {  // no memory for the free list: free the block instead
    }
  }
  if (!cached) system_free_locked(p, size);
  update_cached_locked();
}

}  // namespace

std::shared_ptr<void> allocate_host(size_t nbytes) { return host_allocator().allocate(nbytes); }

MemoryStats memory_stats() { return host_allocator().stats(); }
void reset_peak_memory_stats() { host_allocator().reset_peak(); }
void empty_cache() { host_allocator().empty_cache(); }
void set_caching_allocator_enabled(bool on) { host_allocator().set_enabled(on); }
bool caching_allocator_enabled() { return host_allocator().enabled(); }

}  // namespace cpu
}  // namespace tandem
