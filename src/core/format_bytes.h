// "1.50 MiB"-style byte counts for the allocators' out-of-memory messages
// (src/core/host_allocator.cpp, src/cuda/allocator.cpp).
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

namespace tandem {
namespace detail {

inline std::string format_bytes(size_t bytes) {
  char buf[64];
  const double b = static_cast<double>(bytes);
  if (bytes >= (size_t{1} << 30)) {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", b / (1024.0 * 1024.0 * 1024.0));
  } else if (bytes >= (size_t{1} << 20)) {
    std::snprintf(buf, sizeof(buf), "%.2f MiB", b / (1024.0 * 1024.0));
  } else if (bytes >= 1024) {
    std::snprintf(buf, sizeof(buf), "%.2f KiB", b / 1024.0);
  } else {
    std::snprintf(buf, sizeof(buf), "%zu bytes", bytes);
  }
  return buf;
}

}  // namespace detail
}  // namespace tandem
