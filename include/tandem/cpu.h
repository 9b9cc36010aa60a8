// The host (CPU tensor) caching allocator: statistics and switches, the CPU
// twin of the allocator part of include/tandem/cuda.h.
//
// Freed CPU tensor memory is kept for reuse instead of being handed back to the
// C library, so a steady training loop asks the system for no new memory after
// its first iteration (each fresh buffer from the system costs page faults on
// first touch). Blocks are 64-byte aligned. Caching is on by default; it is off
// when the environment variable TANDEM_CPU_CACHING_ALLOCATOR=0 is set at the
// first allocation, and off by default in AddressSanitizer builds (where every
// free must be real for use-after-free detection; =1 turns it on there).
// Pinned host memory (TensorOptions::pinned_memory) has its own cache in the
// CUDA runtime and is not counted here.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tandem {
namespace cpu {

struct MemoryStats {
  size_t allocated_bytes = 0;       // held by live tensors (rounded sizes)
  size_t peak_allocated_bytes = 0;  // max of allocated_bytes since reset
  size_t reserved_bytes = 0;        // obtained from the system (in use + cached)
  size_t cached_bytes = 0;          // reserved but free
  uint64_t num_system_allocs = 0;   // real allocations from the C library
  uint64_t num_system_frees = 0;    // real frees to the C library
  uint64_t num_alloc_requests = 0;  // tensor allocations served
};
MemoryStats memory_stats();
void reset_peak_memory_stats();
// Returns every cached (unused) block to the system.
void empty_cache();

// Turns caching on or off for the whole process (thread-safe). Turning it off
// returns the cache to the system; blocks in use are then freed for real when
// their tensors go away.
void set_caching_allocator_enabled(bool on);
bool caching_allocator_enabled();

}  // namespace cpu
}  // namespace tandem
