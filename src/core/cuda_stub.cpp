// CPU-only builds (TANDEM_CUDA=OFF): the functions of include/tandem/cuda.h and
// src/core/cuda_services.h without CUDA. Queries report no devices, the allocator
// statistics are zero, the switches keep their value (so code that sets them
// runs unchanged), and anything that needs a device throws a tandem::Error
// saying CUDA support was not built.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "core/cuda_services.h"
#include "tandem/cuda.h"
#include "tandem/error.h"

namespace tandem {
namespace cuda {
namespace {

[[noreturn]] void fail_not_built(const char* what) {
  TANDEM_FAIL("cuda: tandem was built without CUDA support (configure with -DTANDEM_CUDA=ON); ",
              what, " needs a CUDA device");
}

std::atomic<bool>& allow_tf32_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}

std::atomic<bool>& sync_debug_flag() {
  static std::atomic<bool> flag{[] {
    const char* env = std::getenv("TANDEM_SYNC_DEBUG");
    return env != nullptr && std::strcmp(env, "") != 0 && std::strcmp(env, "0") != 0;
  }()};
  return flag;
}

}  // namespace

bool is_available() { return false; }
bool is_built() { return false; }
int device_count() { return 0; }
std::string device_name(int /*device*/) { fail_not_built("device_name"); }
void synchronize(int /*device*/) { fail_not_built("synchronize"); }

MemoryStats memory_stats(int /*device*/) { return MemoryStats{}; }
void reset_peak_memory_stats(int /*device*/) {}
void empty_cache() {}
uint64_t host_sync_count() { return 0; }
void reset_host_sync_count() {}

void Stream::synchronize() const { fail_not_built("Stream::synchronize"); }
Stream current_stream(int /*device*/) { fail_not_built("current_stream"); }
void set_current_stream(const Stream& /*stream*/) { fail_not_built("set_current_stream"); }
Stream new_stream(int /*device*/) { fail_not_built("new_stream"); }
StreamGuard::StreamGuard(const Stream& /*stream*/) { fail_not_built("StreamGuard"); }
StreamGuard::~StreamGuard() = default;
void record_stream(const Tensor& /*tensor*/, const Stream& /*stream*/) {
  fail_not_built("record_stream");
}

void set_allow_tf32(bool allow) { allow_tf32_flag().store(allow); }
bool allow_tf32() { return allow_tf32_flag().load(); }
std::atomic<bool>& cudnn_benchmark_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}
std::atomic<bool>& cudnn_deterministic_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}
void set_cudnn_benchmark(bool on) { cudnn_benchmark_flag().store(on); }
bool cudnn_benchmark() { return cudnn_benchmark_flag().load(); }
void set_cudnn_deterministic(bool on) { cudnn_deterministic_flag().store(on); }
bool cudnn_deterministic() { return cudnn_deterministic_flag().load(); }
int cudnn_version() { return 0; }
void set_sync_debug(bool on) { sync_debug_flag().store(on); }
bool sync_debug() { return sync_debug_flag().load(); }

namespace detail {

std::shared_ptr<void> allocate_device(size_t /*nbytes*/, int /*device*/) {
  fail_not_built("allocating a CUDA tensor");
}
std::shared_ptr<void> allocate_pinned(size_t /*nbytes*/) { fail_not_built("pinned host memory"); }
void copy_host_to_device(void* /*dst*/, const void* /*src*/, size_t /*nbytes*/, int /*device*/,
                         bool /*src_pinned*/) {
  fail_not_built("a host-to-device copy");
}
void copy_device_to_host(void* /*dst*/, const void* /*src*/, size_t /*nbytes*/, int /*device*/) {
  fail_not_built("a device-to-host copy");
}
void copy_device_to_device(void* /*dst*/, int /*dst_device*/, const void* /*src*/,
                           int /*src_device*/, size_t /*nbytes*/) {
  fail_not_built("a device-to-device copy");
}

ConvCacheStats conv_cache_stats() { return ConvCacheStats{}; }

void fill_build_info(BuildInfo& info) {
  info.cuda_built = false;
  info.cuda_usable = false;
  info.cuda_unusable_reason =
      "tandem was built without the CUDA backend (configure with -DTANDEM_CUDA=ON where the CUDA "
      "toolkit is installed)";
}

// No-op: there is no device to switch to (and none to restore).
DeviceGuard::DeviceGuard(int /*device*/) {}
DeviceGuard::~DeviceGuard() { static_cast<void>(previous_); }

}  // namespace detail
}  // namespace cuda
}  // namespace tandem
