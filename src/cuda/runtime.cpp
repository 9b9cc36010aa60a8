// The CUDA runtime as tandem uses it: device queries, current streams, switches
// (TF32, sync debug), the error-checking functions behind TANDEM_CUDA_CHECK,
// per-thread cuBLAS handles with a workspace per (handle, stream), per-thread
// current streams, DeviceGuard and version reporting.
//
// Process-wide state is created on first use and deliberately never destroyed
// (streams, handles): destroying CUDA objects from static destructors races with
// the runtime's own teardown at exit.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/cuda_services.h"
#include "cuda/cuda_utils.h"
#include "tandem/cuda.h"
#include "tandem/error.h"

namespace tandem {
namespace cuda {
namespace detail {

using tandem::detail::str_cat;

namespace {

struct DeviceCount {
  int count = 0;
  std::string error;  // why there are none (cudaGetDeviceCount's error string)
};

const DeviceCount& device_count_info() {
  static const DeviceCount info = [] {
    DeviceCount d;
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();  // not sticky; clear it so later checks start clean
      d.count = 0;
      d.error = cudaGetErrorString(err);
    } else {
      d.count = n < kMaxDevices ? n : kMaxDevices;
      if (n == 0) d.error = cudaGetErrorString(cudaErrorNoDevice);
    }
    return d;
  }();
  return info;
}

std::string status_text(const char* kind, const char* name, const char* text, const char* stmt) {
  return str_cat(kind, " error: ", text, " (", name, ") in `", stmt, "`");
}

// ---- Current streams ----------------------------------------------------------------

struct StreamTable {
  std::array<std::atomic<cudaStream_t>, kMaxDevices> defaults{};  // created lazily
  std::mutex create_mutex;
  std::vector<cudaStream_t> owned;  // streams made by new_stream (kept until exit)
};

StreamTable& streams() {
  static StreamTable* table = new StreamTable();  // never destroyed, see the top
  return *table;
}

// The calling thread's current streams (null: the device's default stream), as
// in PyTorch: set_current_stream in one thread does not move another thread's
// work.
std::array<cudaStream_t, kMaxDevices>& thread_current_streams() {
  thread_local std::array<cudaStream_t, kMaxDevices> current{};
  return current;
}

// ---- Switches -------------------------------------------------------------------------

bool initial_sync_debug() {
#if defined(TANDEM_SYNC_DEBUG_DEFAULT)
  bool on = TANDEM_SYNC_DEBUG_DEFAULT != 0;
#else
  bool on = false;
#endif
  if (const char* env = std::getenv("TANDEM_SYNC_DEBUG")) {
    on = std::strcmp(env, "") != 0 && std::strcmp(env, "0") != 0;
  }
  return on;
}

std::atomic<bool>& sync_debug_flag() {
  static std::atomic<bool> flag{initial_sync_debug()};
  return flag;
}

std::atomic<bool>& allow_tf32_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}

// ---- cuBLAS handles -------------------------------------------------------------------

struct CublasHandlePool {
  std::mutex mutex;
  std::array<std::vector<cublasHandle_t>, kMaxDevices> free_handles;
};

CublasHandlePool& cublas_pool() {
  static CublasHandlePool* pool = new CublasHandlePool();  // never destroyed
  return *pool;
}

// One handle per device for this thread; handed back to the pool (not
// destroyed) when the thread exits, so short-lived threads do not leak handles.
struct ThreadCublasHandles {
  std::array<cublasHandle_t, kMaxDevices> by_device{};
  ThreadCublasHandles() = default;
  ThreadCublasHandles(const ThreadCublasHandles&) = delete;
  ThreadCublasHandles& operator=(const ThreadCublasHandles&) = delete;
  ~ThreadCublasHandles() {
    CublasHandlePool& pool = cublas_pool();
    std::lock_guard<std::mutex> lock(pool.mutex);
    for (size_t d = 0; d < by_device.size(); ++d) {
      if (by_device[d] != nullptr) pool.free_handles[d].push_back(by_device[d]);
    }
  }
};

// cuBLAS workspaces, one per (handle, stream) pair: a handle's internal
// workspace would be shared by every stream the handle is bound to, so two
// streams running GEMMs through the same handle could overwrite each other's
// scratch (PyTorch keeps one per pair for the same reason). Allocated from
// the caching allocator on the pair's stream and kept until
// cuda::empty_cache() (release_cublas_workspaces). Streams are never
// destroyed (new_stream's live until exit), so no workspace outlives its stream.
struct CublasWorkspace {
  std::shared_ptr<void> mem;
  size_t bytes = 0;
  int device = 0;
};

struct CublasWorkspaces {
  std::mutex mutex;
  std::map<std::pair<cublasHandle_t, cudaStream_t>, CublasWorkspace> by_pair;
};

CublasWorkspaces& cublas_workspaces() {
  static CublasWorkspaces* w = new CublasWorkspaces();  // never destroyed
  return *w;
}

// cuBLAS's recommendation: 32 MiB on Hopper and newer, 4 MiB before.
size_t cublas_workspace_bytes(int device) {
  int major = 0;
  TANDEM_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major >= 9 ? (size_t{32} << 20) : (size_t{4} << 20);
}

void* cublas_workspace_for(cublasHandle_t handle, cudaStream_t stream, int device, size_t* nbytes) {
  CublasWorkspaces& w = cublas_workspaces();
  std::lock_guard<std::mutex> lock(w.mutex);
  CublasWorkspace& ws = w.by_pair[{handle, stream}];
  if (ws.mem == nullptr) {
    const size_t bytes = cublas_workspace_bytes(device);
    ws.mem = allocate_device(bytes, device);  // on the current stream, the pair's
    ws.bytes = bytes;
    ws.device = device;
  }
  *nbytes = ws.bytes;
  return ws.mem.get();
}

}  // namespace

void release_cublas_workspaces() {
  std::map<std::pair<cublasHandle_t, cudaStream_t>, CublasWorkspace> taken;
  {
    CublasWorkspaces& w = cublas_workspaces();
    std::lock_guard<std::mutex> lock(w.mutex);
    taken.swap(w.by_pair);
  }
  for (auto& [pair, ws] : taken) {
    DeviceGuard guard(ws.device);
    // GEMMs already queued on the stream may still use the workspace.
    count_host_sync();
    TANDEM_CUDA_CHECK(cudaStreamSynchronize(pair.second));
    // The handle forgets the buffer; current_cublas_handle() binds a new one
    // (from the cache) before the handle's next GEMM.
    TANDEM_CUDA_CHECK(cublasSetWorkspace(pair.first, nullptr, 0));
    ws.mem.reset();  // back to the caching allocator, whose empty_cache frees it
  }
}

cudaStream_t default_stream(int device) {
  StreamTable& t = streams();
  cudaStream_t s = t.defaults[static_cast<size_t>(device)].load(std::memory_order_acquire);
  if (s != nullptr) return s;
  std::lock_guard<std::mutex> lock(t.create_mutex);
  s = t.defaults[static_cast<size_t>(device)].load(std::memory_order_acquire);
  if (s == nullptr) {
    DeviceGuard guard(device);
    TANDEM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    t.defaults[static_cast<size_t>(device)].store(s, std::memory_order_release);
  }
  return s;
}

// ---- Error functions behind TANDEM_CUDA_CHECK ---------------------------------------------

void throw_status(cudaError_t status, const char* stmt, const char* file, int line) {
  (void)cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  const std::string msg =
      status_text("CUDA", cudaGetErrorName(status), cudaGetErrorString(status), stmt);
  if (status == cudaErrorMemoryAllocation) throw OutOfMemoryError(msg, file, line);
  tandem::detail::throw_error(msg, file, line);
}

void throw_status(cublasStatus_t status, const char* stmt, const char* file, int line) {
  const std::string msg =
      status_text("cuBLAS", cublasGetStatusName(status), cublasGetStatusString(status), stmt);
  if (status == CUBLAS_STATUS_ALLOC_FAILED) throw OutOfMemoryError(msg, file, line);
  tandem::detail::throw_error(msg, file, line);
}

void throw_status(cudnnStatus_t status, const char* stmt, const char* file, int line) {
  char detail_text[512] = {0};
  cudnnGetLastErrorString(detail_text, sizeof(detail_text));
  std::string msg = str_cat("cuDNN error: ", cudnnGetErrorString(status), " (",
                            static_cast<int>(status), ") in `", stmt, "`");
  if (detail_text[0] != '\0') msg += str_cat(": ", detail_text);
  tandem::detail::throw_error(msg, file, line);
}

void check_launch(const char* what, const char* file, int line) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    tandem::detail::throw_error(str_cat("CUDA error launching ", what, ": ",
                                        cudaGetErrorString(err), " (", cudaGetErrorName(err), ")"),
                                file, line);
  }
  if (sync_debug()) {
    count_host_sync();
    err = cudaStreamSynchronize(current_cuda_stream());
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      tandem::detail::throw_error(
          str_cat("CUDA error in ", what, " (reported by sync debug after the launch): ",
                  cudaGetErrorString(err), " (", cudaGetErrorName(err), ")"),
          file, line);
    }
  }
}

// ---- Host synchronisations ------------------------------------------------------------------

namespace {
std::atomic<uint64_t>& host_syncs() {
  static std::atomic<uint64_t> n{0};
  return n;
}
}  // namespace

void count_host_sync() { host_syncs().fetch_add(1, std::memory_order_relaxed); }

}  // namespace detail

uint64_t host_sync_count() { return detail::host_syncs().load(std::memory_order_relaxed); }
void reset_host_sync_count() { detail::host_syncs().store(0, std::memory_order_relaxed); }

namespace detail {

// ---- Devices ----------------------------------------------------------------------------------

int visible_device_count() { return device_count_info().count; }

void check_device_index(int device) {
  const DeviceCount& info = device_count_info();
  TANDEM_CHECK(info.count > 0,
               "cuda: no CUDA device is available (cudaGetDeviceCount: ", info.error,
               "); use CPU tensors or run on a machine with a GPU");
  TANDEM_CHECK(device >= 0 && device < info.count, "cuda: device ", device, " requested but only ",
               info.count, " CUDA device(s) are visible");
}

int current_device() {
  check_device_index(0);  // throws the clear "no device" error first
  int device = 0;
  TANDEM_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

cudaStream_t stream_for_device(int device) {
  cudaStream_t s = thread_current_streams()[static_cast<size_t>(device)];
  return s != nullptr ? s : default_stream(device);
}

int multiprocessor_count() {
  static std::array<std::atomic<int>, kMaxDevices> cache{};
  const int device = current_device();
  int n = cache[static_cast<size_t>(device)].load(std::memory_order_relaxed);
  if (n == 0) {
    TANDEM_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
    if (n < 1) n = 1;
    cache[static_cast<size_t>(device)].store(n, std::memory_order_relaxed);
  }
  return n;
}

void fill_build_info(BuildInfo& info) {
  auto dotted = [](int v) { return str_cat(v / 1000, ".", (v % 1000) / 10); };
  info.cuda_built = true;
  int runtime = 0, driver = 0;
  const bool rt_ok = cudaRuntimeGetVersion(&runtime) == cudaSuccess;
  const bool drv_ok = cudaDriverGetVersion(&driver) == cudaSuccess;  // 0 without a driver
  if (!rt_ok || !drv_ok) (void)cudaGetLastError();
  info.cuda_runtime = rt_ok ? dotted(runtime) : "unknown";
  info.cuda_driver = drv_ok && driver != 0 ? dotted(driver) : "none (no NVIDIA driver found)";
  int major = 0, minor = 0, patch = 0;
  info.cublas = cublasGetProperty(MAJOR_VERSION, &major) == CUBLAS_STATUS_SUCCESS &&
                        cublasGetProperty(MINOR_VERSION, &minor) == CUBLAS_STATUS_SUCCESS &&
                        cublasGetProperty(PATCH_LEVEL, &patch) == CUBLAS_STATUS_SUCCESS
                    ? str_cat(major, ".", minor, ".", patch)
                    : "unknown";
  const size_t dnn = cudnnGetVersion();  // major*10000 + minor*100 + patch (cuDNN 9)
  info.cudnn = str_cat(dnn / 10000, ".", (dnn % 10000) / 100, ".", dnn % 100);
  info.cudnn_built = str_cat(CUDNN_MAJOR, ".", CUDNN_MINOR, ".", CUDNN_PATCHLEVEL);
  const DeviceCount& devices = device_count_info();
  for (int d = 0; d < devices.count; ++d) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) {
      (void)cudaGetLastError();
      continue;
    }
    GpuInfo g;
    g.index = d;
    g.name = prop.name;
    g.compute_major = prop.major;
    g.compute_minor = prop.minor;
    g.total_memory_bytes = prop.totalGlobalMem;
    g.multiprocessors = prop.multiProcessorCount;
    info.gpus.push_back(g);
  }
  if (devices.count == 0) {
    info.cuda_usable = false;
    info.cuda_unusable_reason =
        str_cat("no CUDA device is visible (cudaGetDeviceCount: ", devices.error, ")");
    return;
  }
  // A device is visible; creating its context is what the first tensor does.
  try {
    DeviceGuard guard(0);
    const cudaError_t err = cudaFree(nullptr);
    info.cuda_usable = err == cudaSuccess;
    if (!info.cuda_usable) {
      (void)cudaGetLastError();
      info.cuda_unusable_reason =
          str_cat("creating a context on device 0 failed: ", cudaGetErrorString(err));
    }
  } catch (const Error& e) {
    info.cuda_usable = false;
    info.cuda_unusable_reason = str_cat("selecting device 0 failed: ", e.message());
  }
}

cublasHandle_t current_cublas_handle() {
  thread_local ThreadCublasHandles handles;
  const int device = current_device();
  cublasHandle_t& h = handles.by_device[static_cast<size_t>(device)];
  if (h == nullptr) {
    CublasHandlePool& pool = cublas_pool();
    {
      std::lock_guard<std::mutex> lock(pool.mutex);
      auto& free_list = pool.free_handles[static_cast<size_t>(device)];
      if (!free_list.empty()) {
        h = free_list.back();
        free_list.pop_back();
      }
    }
    if (h == nullptr) TANDEM_CUDA_CHECK(cublasCreate(&h));  // on the current device
  }
  cudaStream_t stream = stream_for_device(device);
  TANDEM_CUDA_CHECK(cublasSetStream(h, stream));  // resets the workspace to cuBLAS's own
  size_t workspace_bytes = 0;
  void* workspace = cublas_workspace_for(h, stream, device, &workspace_bytes);
  TANDEM_CUDA_CHECK(cublasSetWorkspace(h, workspace, workspace_bytes));
  TANDEM_CUDA_CHECK(
      cublasSetMathMode(h, allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  return h;
}

// ---- DeviceGuard
// ---------------------------------------------------------------------------------

DeviceGuard::DeviceGuard(int device) {
  check_device_index(device);
  int previous = 0;
  TANDEM_CUDA_CHECK(cudaGetDevice(&previous));
  if (previous != device) TANDEM_CUDA_CHECK(cudaSetDevice(device));
  previous_ = previous;
}

DeviceGuard::~DeviceGuard() {
  if (previous_ < 0) return;
  int now = previous_;
  if (cudaGetDevice(&now) == cudaSuccess && now != previous_) {
    if (cudaSetDevice(previous_) != cudaSuccess) (void)cudaGetLastError();  // no throwing here
  }
}

}  // namespace detail

// ---- Public API (include/tandem/cuda.h)
// ----------------------------------------------------------------

bool is_built() { return true; }
bool is_available() { return detail::visible_device_count() > 0; }
int device_count() { return detail::visible_device_count(); }

std::string device_name(int device) {
  detail::check_device_index(device);
  cudaDeviceProp prop{};
  TANDEM_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return std::string(prop.name);
}

void synchronize(int device) {
  const int d = device < 0 ? detail::current_device() : device;
  detail::DeviceGuard guard(d);
  detail::count_host_sync();
  TANDEM_CUDA_CHECK(cudaDeviceSynchronize());
}

void Stream::synchronize() const {
  detail::DeviceGuard guard(device_);
  detail::count_host_sync();
  TANDEM_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(handle_)));
}

Stream current_stream(int device) {
  const int d = device < 0 ? detail::current_device() : device;
  detail::check_device_index(d);
  return Stream(detail::stream_for_device(d), d);
}

// A Stream with a null handle selects tandem's default stream of that device
// again (not CUDA's legacy stream 0, which would serialise with everything).
void set_current_stream(const Stream& stream) {
  detail::check_device_index(stream.device());
  detail::thread_current_streams()[static_cast<size_t>(stream.device())] =
      static_cast<cudaStream_t>(stream.handle());
}

StreamGuard::StreamGuard(const Stream& stream) : previous_(current_stream(stream.device())) {
  set_current_stream(stream);
}

StreamGuard::~StreamGuard() {
  // previous_ was current a moment ago, so its device index is valid: no throw.
  detail::thread_current_streams()[static_cast<size_t>(previous_.device())] =
      static_cast<cudaStream_t>(previous_.handle());
}

Stream new_stream(int device) {
  const int d = device < 0 ? detail::current_device() : device;
  detail::DeviceGuard guard(d);
  cudaStream_t s = nullptr;
  TANDEM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  detail::StreamTable& t = detail::streams();
  std::lock_guard<std::mutex> lock(t.create_mutex);
  t.owned.push_back(s);
  return Stream(s, d);
}

void set_allow_tf32(bool allow) { detail::allow_tf32_flag().store(allow); }
bool allow_tf32() { return detail::allow_tf32_flag().load(); }

void set_sync_debug(bool on) { detail::sync_debug_flag().store(on); }
bool sync_debug() { return detail::sync_debug_flag().load(std::memory_order_relaxed); }

}  // namespace cuda
}  // namespace tandem
