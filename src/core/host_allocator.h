// The host caching allocator behind CPU tensors (src/core/host_allocator.cpp;
// statistics and switches in include/tandem/cpu.h).
#pragma once

#include <cstddef>
#include <memory>

namespace tandem {
namespace cpu {

// nbytes (> 0) of 64-byte aligned host memory; the deleter hands the block back
// to the cache (or to the system when caching is off). Throws OutOfMemoryError.
std::shared_ptr<void> allocate_host(size_t nbytes);

}  // namespace cpu
}  // namespace tandem
