// The emulated CUDA runtime: the cudart functions tandem calls, defined with
// the signatures of the real <cuda_runtime_api.h>, on one emulated device with
// an H100's properties. Also the emulator's findings, seed and fault switches
// (src/emu/emu.h).
//
// Streams hold queues of deferred work (src/emu/emu.h, "Execution model");
// events mark positions in them; cudaStreamWaitEvent queues a wait for such a
// position; the legacy default stream waits for, and is waited for by, the
// blocking streams. Device memory lives in its own mappings, one per
// allocation with a guard page after it, inaccessible (PROT_NONE) except
// while queued work runs; under AddressSanitizer it is plain heap memory
// instead, so ASan checks every access to it. Pinned host memory is ordinary
// memory that the runtime remembers: copies into it complete only when the
// stream is synchronised, and the destination is poisoned (0xff bytes) until
// then, so a host read before the synchronisation sees NaNs, not stale data.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "emu/emu.h"

namespace {
struct Mark {
  CUstream_st* stream = nullptr;
  uint64_t seq = 0;  // complete when stream->executed >= seq
  double time_ms = -1;
  int queries = 0;  // cudaEventQuery calls that found it pending
};
struct Op {
  const char* what = "";
  std::function<void()> work;
  CUstream_st* wait_stream = nullptr;  // a wait for (wait_stream, wait_seq) instead of work
  uint64_t wait_seq = 0;
};
}  // namespace

struct CUstream_st {
  unsigned flags = 0;
  bool legacy = false;
  bool destroyed = false;
  std::deque<Op> ops;
  uint64_t enqueued = 0;
  uint64_t executed = 0;
  int queries = 0;  // cudaStreamQuery calls that found work pending
};

struct CUevent_st {
  unsigned flags = 0;
  std::shared_ptr<Mark> mark;  // the latest record
};

namespace tandem {
namespace emu {
namespace {

// ---- Global state ---------------------------------------------------------------------

struct Allocation {
  size_t size;
  char* map_base;  // nullptr under ASan (heap memory)
  size_t map_len;  // the accessible pages, guard excluded
};

struct State {
  std::recursive_mutex mu;
  CUstream_st legacy;
  std::vector<CUstream_st*> streams;  // created, never freed (events may point at them)
  std::map<uintptr_t, Allocation> device;
  std::map<uintptr_t, size_t> pinned;
  size_t allocated = 0;
  int access_depth = 0;
  cudaError_t pending_error = cudaSuccess;  // from a finding, returned by the next wait
  std::vector<Finding> findings;
  State() { legacy.legacy = true; }
};

State& state() {
  static State* s = new State();  // never destroyed: work may run from static destructors
  return *s;
}

thread_local cudaError_t t_last_error = cudaSuccess;

cudaError_t fail(cudaError_t e) {
  t_last_error = e;
  return e;
}

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

[[maybe_unused]] size_t page_size() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return p;
}

uint64_t parse_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  double x = std::strtod(v, &end);
  if (end != nullptr) {
    if (*end == 'K' || *end == 'k') x *= 1024.0;
    if (*end == 'M' || *end == 'm') x *= 1024.0 * 1024.0;
    if (*end == 'G' || *end == 'g') x *= 1024.0 * 1024.0 * 1024.0;
  }
  return static_cast<uint64_t>(x);
}

// ---- Device access --------------------------------------------------------------------

// While queued work runs, device memory is readable and writable.
class DeviceAccess {
 public:
  DeviceAccess() {
    State& s = state();
    if (s.access_depth++ == 0) set_protection(PROT_READ | PROT_WRITE);
  }
  ~DeviceAccess() {
    State& s = state();
    if (--s.access_depth == 0) set_protection(PROT_NONE);
  }
  DeviceAccess(const DeviceAccess&) = delete;
  DeviceAccess& operator=(const DeviceAccess&) = delete;

 private:
  static void set_protection(int prot) {
    for (auto& [base, a] : state().device) {
      if (a.map_base != nullptr) mprotect(a.map_base, a.map_len, prot);
    }
  }
};

#if !defined(TANDEM_EMU_ASAN)  // under ASan, ASan reports faults
// A fault in device memory or its guard pages says what it was before the
// process dies: host code touching device memory, or a kernel (or copy)
// running past an allocation. Best effort (no locks in a signal handler).
struct sigaction g_previous_segv;

void write_err(const char* s) {
  const size_t n = std::strlen(s);
  ssize_t unused = write(2, s, n);
  (void)unused;
}

void on_segv(int sig, siginfo_t* info, void* ctx) {
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  State& s = state();
  const size_t page = page_size();
  for (const auto& [base, a] : s.device) {
    if (a.map_base == nullptr) continue;
    const auto lo = reinterpret_cast<uintptr_t>(a.map_base);
    if (addr < lo || addr >= lo + a.map_len + page) continue;
    char buf[512];
    const std::string where = current_kernel_thread();
    if (where.empty() && s.access_depth == 0) {
      std::snprintf(buf, sizeof buf,
                    "tandem emu: host code touched device memory at %p (an allocation of %zu "
                    "bytes at %p); copy it to the host first\n",
                    info->si_addr, a.size, reinterpret_cast<void*>(base));
    } else {
      std::snprintf(buf, sizeof buf,
                    "tandem emu: out-of-bounds device access at %p, %zd bytes from the start of an "
                    "allocation of %zu bytes at %p (%s)\n",
                    info->si_addr, static_cast<ssize_t>(addr - base), a.size,
                    reinterpret_cast<void*>(base), where.empty() ? "a copy" : where.c_str());
    }
    write_err(buf);
    break;
  }
  if (g_previous_segv.sa_flags & SA_SIGINFO) {
    if (g_previous_segv.sa_sigaction != nullptr) g_previous_segv.sa_sigaction(sig, info, ctx);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

void install_segv_handler() {
  static const bool installed = [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = &on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_previous_segv);
    return true;
  }();
  (void)installed;
}
#endif

bool is_complete(const Mark& m) { return m.stream == nullptr || m.stream->executed >= m.seq; }

void run_op(Op& op);

// Runs `s`'s queued work up to position `upto` (all of it: UINT64_MAX).
void drain(CUstream_st* s, uint64_t upto) {
  if (s->executed >= upto || s->ops.empty()) return;
  DeviceAccess access;  // once per drain: unprotecting costs a syscall per allocation
  while (s->executed < upto && !s->ops.empty()) {
    Op op = std::move(s->ops.front());
    s->ops.pop_front();
    run_op(op);
    ++s->executed;
  }
}

void run_op(Op& op) {
  if (op.wait_stream != nullptr) {
    drain(op.wait_stream, op.wait_seq);
    return;
  }
  try {
    op.work();
  } catch (const std::exception& e) {
    report(FindingKind::kOther, std::string(op.what) + ": " + e.what());
  }
}

void drain_all() {
  State& s = state();
  DeviceAccess access;
  bool more = true;
  while (more) {
    more = false;
    drain(&s.legacy, UINT64_MAX);
    for (CUstream_st* st : s.streams) {
      if (!st->ops.empty()) {
        drain(st, UINT64_MAX);
        more = true;
      }
    }
  }
}

// The error a wait returns: a finding's, once.
cudaError_t take_pending() {
  State& s = state();
  const cudaError_t e = s.pending_error;
  s.pending_error = cudaSuccess;
  return e == cudaSuccess ? cudaSuccess : fail(e);
}

CUstream_st* resolve(cudaStream_t stream) {
  State& s = state();
  if (stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread) {
    return &s.legacy;
  }
  return stream;
}

bool valid_stream(cudaStream_t stream) {
  State& s = state();
  if (stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread) return true;
  for (CUstream_st* st : s.streams) {
    if (st == stream) return !st->destroyed;
  }
  return false;
}

void push(CUstream_st* s, Op op) {
  s->ops.push_back(std::move(op));
  ++s->enqueued;
}

// Queues `op` on `s` with the legacy default stream's implicit ordering.
void push_ordered(CUstream_st* s, Op op) {
  State& st = state();
  if (s->legacy) {
    for (CUstream_st* other : st.streams) {
      if (!other->destroyed && (other->flags & cudaStreamNonBlocking) == 0 &&
          other->enqueued > other->executed) {
        Op w;
        w.wait_stream = other;
        w.wait_seq = other->enqueued;
        push(s, std::move(w));
      }
    }
  } else if ((s->flags & cudaStreamNonBlocking) == 0 && st.legacy.enqueued > st.legacy.executed) {
    Op w;
    w.wait_stream = &st.legacy;
    w.wait_seq = st.legacy.enqueued;
    push(s, std::move(w));
  }
  push(s, std::move(op));
}

const Allocation* find_allocation(const void* p, uintptr_t* base_out) {
  State& s = state();
  const auto addr = reinterpret_cast<uintptr_t>(p);
  auto it = s.device.upper_bound(addr);
  if (it == s.device.begin()) return nullptr;
  --it;
  if (addr >= it->first + std::max<size_t>(it->second.size, 1)) return nullptr;
  if (base_out != nullptr) *base_out = it->first;
  return &it->second;
}

bool in_pinned(const void* p, size_t n) {
  State& s = state();
  const auto addr = reinterpret_cast<uintptr_t>(p);
  auto it = s.pinned.upper_bound(addr);
  if (it == s.pinned.begin()) return false;
  --it;
  return addr + n <= it->first + it->second;
}

}  // namespace

// ---- emu.h ------------------------------------------------------------------------------

const char* finding_kind_name(FindingKind kind) {
  switch (kind) {
    case FindingKind::kSharedRace:
      return "shared-memory race";
    case FindingKind::kSharedUninitialised:
      return "uninitialised shared-memory read";
    case FindingKind::kSharedOutOfBounds:
      return "shared-memory index out of bounds";
    case FindingKind::kDivergentBarrier:
      return "divergent barrier";
    case FindingKind::kShuffleMask:
      return "warp operation mask";
    case FindingKind::kGlobalOutOfBounds:
      return "device memory out of bounds";
    case FindingKind::kNotDevicePointer:
      return "not device memory";
    case FindingKind::kLaunchConfig:
      return "launch configuration";
    case FindingKind::kOther:
      break;
  }
  return "error";
}

void report(FindingKind kind, const std::string& message) {
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  std::fprintf(stderr, "tandem emu: %s: %s (TANDEM_EMU_SEED=%llu)\n", finding_kind_name(kind),
               message.c_str(), static_cast<unsigned long long>(seed()));
  s.findings.push_back(Finding{kind, message});
  s.pending_error = cudaErrorLaunchFailure;
  const char* abort_env = std::getenv("TANDEM_EMU_ABORT");
  if (abort_env != nullptr && std::strcmp(abort_env, "1") == 0) std::abort();
}

std::vector<Finding> findings() {
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  return s.findings;
}

void clear_findings() {
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  s.findings.clear();
  s.pending_error = cudaSuccess;
}

namespace {
std::atomic<uint64_t>& seed_value() {
  static std::atomic<uint64_t> v{parse_u64("TANDEM_EMU_SEED", 1)};
  return v;
}
}  // namespace

uint64_t seed() { return seed_value().load(std::memory_order_relaxed); }
void set_seed(uint64_t s) { seed_value().store(s); }

void set_last_error(cudaError_t error) { t_last_error = error; }

void enqueue(cudaStream_t stream, const char* what, std::function<void()> work) {
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  Op op;
  op.what = what;
  op.work = std::move(work);
  push_ordered(resolve(stream), std::move(op));
}

void synchronize_all() {
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  drain_all();
}

bool is_device_range(const void* p, size_t nbytes) {
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  uintptr_t base = 0;
  const Allocation* a = find_allocation(p, &base);
  return a != nullptr && reinterpret_cast<uintptr_t>(p) + nbytes <= base + a->size;
}

bool is_pinned_host(const void* p) {
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  return in_pinned(p, 1);
}

bool check_device_range(const char* what, const char* operand, const void* p, size_t nbytes) {
  if (nbytes == 0) return true;
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  uintptr_t base = 0;
  const Allocation* a = find_allocation(p, &base);
  char buf[256];
  if (a == nullptr) {
    std::snprintf(buf, sizeof buf, "%s: %s (%p) is not device memory", what, operand, p);
    report(FindingKind::kNotDevicePointer, buf);
    return false;
  }
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + nbytes;
  if (end > base + a->size) {
    std::snprintf(buf, sizeof buf,
                  "%s: %s needs %zu bytes from %p, %zu bytes past the end of its allocation "
                  "(%zu bytes at %p)",
                  what, operand, nbytes, p, static_cast<size_t>(end - (base + a->size)), a->size,
                  reinterpret_cast<void*>(base));
    report(FindingKind::kGlobalOutOfBounds, buf);
    return false;
  }
  return true;
}

// ---- Fault injection -------------------------------------------------------------------

namespace {
struct Faults {
  std::mutex mu;
  bool loaded = false;
  uint64_t malloc_fail_at = 0;
  uint64_t malloc_fail_above = 0;
  uint64_t malloc_calls = 0;
  uint64_t cublas_fail_at = 0;
  uint64_t cublas_calls = 0;
  std::set<std::string> cudnn_refused;  // "fwd:1"
  size_t memory = 0;
};
Faults& faults() {
  static Faults* f = new Faults();
  return *f;
}
void load_faults(Faults& f) {
  f.malloc_fail_at = parse_u64("TANDEM_EMU_MALLOC_FAIL_AT", 0);
  f.malloc_fail_above = parse_u64("TANDEM_EMU_MALLOC_FAIL_ABOVE", 0);
  f.cublas_fail_at = parse_u64("TANDEM_EMU_CUBLAS_FAIL_AT", 0);
  f.memory = static_cast<size_t>(parse_u64("TANDEM_EMU_MEMORY", 80ull * 1000 * 1000 * 1000));
  f.malloc_calls = 0;
  f.cublas_calls = 0;
  f.cudnn_refused.clear();
  if (const char* v = std::getenv("TANDEM_EMU_CUDNN_REFUSE")) {
    std::string list = v;
    size_t start = 0;
    while (start <= list.size()) {
      const size_t comma = list.find(',', start);
      const std::string item =
          list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!item.empty()) f.cudnn_refused.insert(item);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  f.loaded = true;
}
Faults& loaded_faults() {
  Faults& f = faults();
  if (!f.loaded) load_faults(f);
  return f;
}
}  // namespace

void reload_faults() {
  Faults& f = faults();
  std::lock_guard<std::mutex> lock(f.mu);
  load_faults(f);
}

bool malloc_should_fail(size_t nbytes) {
  Faults& f = faults();
  std::lock_guard<std::mutex> lock(f.mu);
  Faults& l = loaded_faults();
  ++l.malloc_calls;
  if (l.malloc_fail_at != 0 && l.malloc_calls == l.malloc_fail_at) return true;
  return l.malloc_fail_above != 0 && nbytes > l.malloc_fail_above;
}

bool cudnn_refuses(const char* pass, int algorithm) {
  Faults& f = faults();
  std::lock_guard<std::mutex> lock(f.mu);
  return loaded_faults().cudnn_refused.count(std::string(pass) + ":" + std::to_string(algorithm)) >
         0;
}

bool cublas_should_fail() {
  Faults& f = faults();
  std::lock_guard<std::mutex> lock(f.mu);
  Faults& l = loaded_faults();
  ++l.cublas_calls;
  return l.cublas_fail_at != 0 && l.cublas_calls == l.cublas_fail_at;
}

size_t device_memory_bytes() {
  Faults& f = faults();
  std::lock_guard<std::mutex> lock(f.mu);
  return loaded_faults().memory;
}

}  // namespace emu
}  // namespace tandem

// ---- cudart ---------------------------------------------------------------------------------

using tandem::emu::FindingKind;
using tandem::emu::State;
using tandem::emu::state;

namespace {
using Lock = std::lock_guard<std::recursive_mutex>;
using tandem::emu::fail;
using tandem::emu::t_last_error;
using tandem::emu::take_pending;
}  // namespace

extern "C" {

cudaError_t CUDARTAPI cudaGetLastError(void) {
  const cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  return e;
}

cudaError_t CUDARTAPI cudaPeekAtLastError(void) { return t_last_error; }

const char* CUDARTAPI cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle:
      return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady:
      return "cudaErrorNotReady";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
    case cudaErrorIllegalAddress:
      return "cudaErrorIllegalAddress";
    case cudaErrorInvalidMemcpyDirection:
      return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorLaunchOutOfResources:
      return "cudaErrorLaunchOutOfResources";
    default:
      return "cudaErrorUnknown";
  }
}

const char* CUDARTAPI cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure (the emulated device reported a finding; see stderr)";
    case cudaErrorIllegalAddress:
      return "an illegal memory access was encountered";
    case cudaErrorInvalidMemcpyDirection:
      return "invalid copy direction for memcpy";
    case cudaErrorLaunchOutOfResources:
      return "too many resources requested for launch";
    default:
      return "unknown error";
  }
}

cudaError_t CUDARTAPI cudaGetDeviceCount(int* count) {
  if (count == nullptr) return fail(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice);
}

cudaError_t CUDARTAPI cudaGetDevice(int* device) {
  if (device == nullptr) return fail(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaRuntimeGetVersion(int* v) {
  if (v == nullptr) return fail(cudaErrorInvalidValue);
  *v = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaDriverGetVersion(int* v) { return cudaRuntimeGetVersion(v); }

cudaError_t CUDARTAPI cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (prop == nullptr) return fail(cudaErrorInvalidValue);
  if (device != 0) return fail(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "tandem emulated device (NVIDIA H100 80GB HBM3)");
  prop->totalGlobalMem = tandem::emu::device_memory_bytes();
  prop->sharedMemPerBlock = 48 * 1024;
  prop->sharedMemPerBlockOptin = 227 * 1024;
  prop->sharedMemPerMultiprocessor = 228 * 1024;
  prop->regsPerBlock = 65536;
  prop->regsPerMultiprocessor = 65536;
  prop->warpSize = 32;
  prop->memPitch = 2147483647;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->totalConstMem = 65536;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 132;
  prop->l2CacheSize = 50 * 1024 * 1024;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->maxBlocksPerMultiProcessor = 32;
  prop->memoryBusWidth = 5120;
  prop->concurrentKernels = 1;
  prop->unifiedAddressing = 1;
  prop->asyncEngineCount = 3;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (value == nullptr) return fail(cudaErrorInvalidValue);
  if (device != 0) return fail(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMultiProcessorCount:
      *value = 132;
      break;
    case cudaDevAttrL2CacheSize:
      *value = 50 * 1024 * 1024;
      break;
    case cudaDevAttrComputeCapabilityMajor:
      *value = 9;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *value = 0;
      break;
    case cudaDevAttrMaxThreadsPerBlock:
      *value = 1024;
      break;
    case cudaDevAttrWarpSize:
      *value = 32;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = 48 * 1024;
      break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor:
      *value = 228 * 1024;
      break;
    case cudaDevAttrMaxThreadsPerMultiProcessor:
      *value = 2048;
      break;
    case cudaDevAttrMaxGridDimX:
      *value = 2147483647;
      break;
    case cudaDevAttrMaxGridDimY:
      *value = 65535;
      break;
    case cudaDevAttrMaxGridDimZ:
      *value = 65535;
      break;
    default:
      *value = 0;
      break;
  }
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  State& s = state();
  Lock lock(s.mu);
  const size_t total = tandem::emu::device_memory_bytes();
  if (free_bytes != nullptr) *free_bytes = s.allocated < total ? total - s.allocated : 0;
  if (total_bytes != nullptr) *total_bytes = total;
  return cudaSuccess;
}

// ---- Memory ----

cudaError_t CUDARTAPI cudaMalloc(void** ptr, size_t size) {
  if (ptr == nullptr) return fail(cudaErrorInvalidValue);
  State& s = state();
  Lock lock(s.mu);
  *ptr = nullptr;
  if (size == 0) return cudaSuccess;
  if (tandem::emu::malloc_should_fail(size) ||
      size > tandem::emu::device_memory_bytes() -
                 std::min(s.allocated, tandem::emu::device_memory_bytes())) {
    return fail(cudaErrorMemoryAllocation);
  }
  const size_t rounded = (size + 255) / 256 * 256;
  tandem::emu::Allocation a{size, nullptr, 0};
#if !defined(TANDEM_EMU_ASAN)
  tandem::emu::install_segv_handler();
#endif
  char* data = nullptr;
#if defined(TANDEM_EMU_ASAN)
  data = static_cast<char*>(std::aligned_alloc(256, rounded));
  if (data == nullptr) return fail(cudaErrorMemoryAllocation);
#else
  const size_t page = tandem::emu::page_size();
  const size_t len = (rounded + page - 1) / page * page;
  void* mem =
      mmap(nullptr, len + page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) return fail(cudaErrorMemoryAllocation);
  a.map_base = static_cast<char*>(mem);
  a.map_len = len;
  data = a.map_base + (len - rounded);  // ends at the guard page (256-byte aligned)
  if (s.access_depth > 0) mprotect(a.map_base, len, PROT_READ | PROT_WRITE);
#endif
  if (size <= (size_t{64} << 20)) {  // fresh memory holds garbage: NaN bytes
    if (a.map_base != nullptr && s.access_depth == 0) {
      mprotect(a.map_base, a.map_len, PROT_READ | PROT_WRITE);
      std::memset(data, 0xff, size);
      mprotect(a.map_base, a.map_len, PROT_NONE);
    } else {
      std::memset(data, 0xff, size);
    }
  }
  s.device[reinterpret_cast<uintptr_t>(data)] = a;
  s.allocated += size;
  *ptr = data;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  State& s = state();
  Lock lock(s.mu);
  auto it = s.device.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == s.device.end()) return fail(cudaErrorInvalidValue);
  tandem::emu::drain_all();  // cudaFree synchronises the device
  const tandem::emu::Allocation a = it->second;
  s.device.erase(it);
  s.allocated -= a.size;
#if defined(TANDEM_EMU_ASAN)
  std::free(ptr);
#else
  munmap(a.map_base, a.map_len + tandem::emu::page_size());
#endif
  return take_pending();
}

cudaError_t CUDARTAPI cudaHostAlloc(void** ptr, size_t size, unsigned int /*flags*/) {
  if (ptr == nullptr) return fail(cudaErrorInvalidValue);
  State& s = state();
  Lock lock(s.mu);
  const size_t rounded = std::max<size_t>((size + 4095) / 4096 * 4096, 4096);
  *ptr = std::aligned_alloc(4096, rounded);
  if (*ptr == nullptr) return fail(cudaErrorMemoryAllocation);
  s.pinned[reinterpret_cast<uintptr_t>(*ptr)] = size;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMallocHost(void** ptr, size_t size) {
  return cudaHostAlloc(ptr, size, cudaHostAllocDefault);
}

cudaError_t CUDARTAPI cudaFreeHost(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  State& s = state();
  Lock lock(s.mu);
  auto it = s.pinned.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == s.pinned.end()) return fail(cudaErrorInvalidValue);
  tandem::emu::drain_all();
  s.pinned.erase(it);
  std::free(ptr);
  return take_pending();
}

}  // extern "C"

// ---- Copies ----

namespace {

enum class Side { kHost, kPinned, kDevice };

Side side_of(const void* p, size_t n) {
  if (n == 0) return Side::kHost;
  if (tandem::emu::find_allocation(p, nullptr) != nullptr) return Side::kDevice;
  return tandem::emu::in_pinned(p, n) ? Side::kPinned : Side::kHost;
}

// Checks a copy's pointers against its kind; returns the error to give.
cudaError_t check_copy(const char* what, void* dst, size_t dn, const void* src, size_t sn,
                       cudaMemcpyKind kind, Side* dst_side, Side* src_side) {
  *dst_side = side_of(dst, dn);
  *src_side = side_of(src, sn);
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice ||
                       (kind == cudaMemcpyDefault && *dst_side == Side::kDevice);
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice ||
                       (kind == cudaMemcpyDefault && *src_side == Side::kDevice);
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) {
    return cudaErrorInvalidMemcpyDirection;
  }
  if (dst_dev && !tandem::emu::check_device_range(what, "the destination", dst, dn)) {
    return cudaErrorInvalidValue;
  }
  if (src_dev && !tandem::emu::check_device_range(what, "the source", src, sn)) {
    return cudaErrorInvalidValue;
  }
  if (!dst_dev && *dst_side == Side::kDevice) {
    tandem::emu::report(FindingKind::kOther,
                        std::string(what) +
                            ": the destination is device memory but the copy's "
                            "kind says host");
    return cudaErrorInvalidValue;
  }
  if (!src_dev && *src_side == Side::kDevice) {
    tandem::emu::report(FindingKind::kOther, std::string(what) +
                                                 ": the source is device memory but the copy's "
                                                 "kind says host");
    return cudaErrorInvalidValue;
  }
  if (dst_dev) *dst_side = Side::kDevice;
  if (src_dev) *src_side = Side::kDevice;
  return cudaSuccess;
}

// Queues a copy of `rows` rows of `width` bytes with the CUDA semantics for
// pageable and pinned host memory (see the top of the file).
cudaError_t copy_rows(const char* what, void* dst, size_t dpitch, const void* src, size_t spitch,
                      size_t width, size_t rows, cudaMemcpyKind kind, cudaStream_t stream,
                      bool synchronous) {
  State& s = state();
  Lock lock(s.mu);
  if (!tandem::emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  if (width == 0 || rows == 0) return cudaSuccess;
  if (dpitch < width || spitch < width) return fail(cudaErrorInvalidValue);
  const size_t dspan = dpitch * (rows - 1) + width;
  const size_t sspan = spitch * (rows - 1) + width;
  Side ds = Side::kHost, ss = Side::kHost;
  const cudaError_t err = check_copy(what, dst, dspan, src, sspan, kind, &ds, &ss);
  if (err != cudaSuccess) return fail(err);
  CUstream_st* st = tandem::emu::resolve(stream);
  std::shared_ptr<std::vector<char>> staged;
  const char* from = static_cast<const char*>(src);
  size_t from_pitch = spitch;
  if (ss == Side::kHost) {  // pageable source: read now, into a staging buffer
    staged = std::make_shared<std::vector<char>>(width * rows);
    for (size_t r = 0; r < rows; ++r)
      std::memcpy(staged->data() + r * width, from + r * spitch, width);
    from = staged->data();
    from_pitch = width;
  }
  if (ds == Side::kPinned) {  // not written until the copy runs
    for (size_t r = 0; r < rows; ++r)
      std::memset(static_cast<char*>(dst) + r * dpitch, 0xff, width);
  }
  Op op;
  op.what = what;
  op.work = [dst, dpitch, from, from_pitch, width, rows, staged]() {
    for (size_t r = 0; r < rows; ++r) {
      std::memmove(static_cast<char*>(dst) + r * dpitch, from + r * from_pitch, width);
    }
  };
  tandem::emu::push_ordered(st, std::move(op));
  // Into pageable host memory the copy returns only when done, as does a
  // synchronous cudaMemcpy.
  if (synchronous || ds == Side::kHost) {
    tandem::emu::drain(st, st->enqueued);
    return take_pending();
  }
  return cudaSuccess;
}

}  // namespace

extern "C" {

cudaError_t CUDARTAPI cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                                      cudaStream_t stream) {
  return copy_rows("cudaMemcpyAsync", dst, count, src, count, count, 1, kind, stream, false);
}

cudaError_t CUDARTAPI cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  return copy_rows("cudaMemcpy", dst, count, src, count, count, 1, kind, nullptr, true);
}

cudaError_t CUDARTAPI cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                                        size_t width, size_t height, cudaMemcpyKind kind,
                                        cudaStream_t stream) {
  return copy_rows("cudaMemcpy2DAsync", dst, dpitch, src, spitch, width, height, kind, stream,
                   false);
}

cudaError_t CUDARTAPI cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src,
                                          int src_device, size_t count, cudaStream_t stream) {
  if (dst_device != 0 || src_device != 0) return fail(cudaErrorInvalidDevice);
  return copy_rows("cudaMemcpyPeerAsync", dst, count, src, count, count, 1,
                   cudaMemcpyDeviceToDevice, stream, false);
}

cudaError_t CUDARTAPI cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t stream) {
  State& s = state();
  Lock lock(s.mu);
  if (!tandem::emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  if (count == 0) return cudaSuccess;
  if (!tandem::emu::check_device_range("cudaMemsetAsync", "the destination", ptr, count)) {
    return fail(cudaErrorInvalidValue);
  }
  Op op;
  op.what = "cudaMemsetAsync";
  op.work = [ptr, value, count]() { std::memset(ptr, value, count); };
  tandem::emu::push_ordered(tandem::emu::resolve(stream), std::move(op));
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMemset(void* ptr, int value, size_t count) {
  const cudaError_t e = cudaMemsetAsync(ptr, value, count, nullptr);
  if (e != cudaSuccess) return e;
  return cudaStreamSynchronize(nullptr);
}

// ---- Streams ----

cudaError_t CUDARTAPI cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (stream == nullptr) return fail(cudaErrorInvalidValue);
  State& s = state();
  Lock lock(s.mu);
  auto* st = new CUstream_st();
  st->flags = flags;
  s.streams.push_back(st);
  *stream = st;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaStreamCreate(cudaStream_t* stream) {
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}

cudaError_t CUDARTAPI cudaStreamDestroy(cudaStream_t stream) {
  State& s = state();
  Lock lock(s.mu);
  if (stream == nullptr || !tandem::emu::valid_stream(stream)) {
    return fail(cudaErrorInvalidResourceHandle);
  }
  tandem::emu::drain(stream, UINT64_MAX);  // its work still completes
  stream->destroyed = true;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaStreamSynchronize(cudaStream_t stream) {
  State& s = state();
  Lock lock(s.mu);
  if (!tandem::emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  CUstream_st* st = tandem::emu::resolve(stream);
  tandem::emu::drain(st, st->enqueued);
  return take_pending();
}

// A host function queued on a stream runs, in order, when the stream's work
// runs (at the next synchronisation point), on the thread that drains it.
cudaError_t CUDARTAPI cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* user_data) {
  if (fn == nullptr) return fail(cudaErrorInvalidValue);
  State& s = state();
  Lock lock(s.mu);
  if (!tandem::emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  Op op;
  op.what = "cudaLaunchHostFunc";
  op.work = [fn, user_data]() { fn(user_data); };
  tandem::emu::push_ordered(tandem::emu::resolve(stream), std::move(op));
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaStreamQuery(cudaStream_t stream) {
  State& s = state();
  Lock lock(s.mu);
  if (!tandem::emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  CUstream_st* st = tandem::emu::resolve(stream);
  if (st->executed >= st->enqueued) return cudaSuccess;
  if (st->queries++ == 0) return cudaErrorNotReady;  // as cudaEventQuery
  st->queries = 0;
  tandem::emu::drain(st, st->enqueued);
  return take_pending();
}

cudaError_t CUDARTAPI cudaDeviceSynchronize(void) {
  State& s = state();
  Lock lock(s.mu);
  tandem::emu::drain_all();
  return take_pending();
}

// ---- Events ----

cudaError_t CUDARTAPI cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  if (event == nullptr) return fail(cudaErrorInvalidValue);
  auto* e = new CUevent_st();
  e->flags = flags;
  *event = e;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaEventCreate(cudaEvent_t* event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}

cudaError_t CUDARTAPI cudaEventDestroy(cudaEvent_t event) {
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle);
  State& s = state();
  Lock lock(s.mu);
  delete event;  // queued marks are shared, they outlive the event
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle);
  State& s = state();
  Lock lock(s.mu);
  if (!tandem::emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  CUstream_st* st = tandem::emu::resolve(stream);
  auto mark = std::make_shared<Mark>();
  Op op;
  op.what = "cudaEventRecord";
  op.work = [mark]() { mark->time_ms = tandem::emu::now_ms(); };
  tandem::emu::push_ordered(st, std::move(op));
  mark->stream = st;
  mark->seq = st->enqueued;
  event->mark = mark;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaEventQuery(cudaEvent_t event) {
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle);
  State& s = state();
  Lock lock(s.mu);
  if (!event->mark) return cudaSuccess;
  Mark& m = *event->mark;
  if (tandem::emu::is_complete(m)) return cudaSuccess;
  // Pending work is still running at the first query, as on a GPU right after
  // the launch; by the next it has finished (so a polling loop ends).
  if (m.queries++ == 0) return cudaErrorNotReady;
  tandem::emu::drain(m.stream, m.seq);
  return take_pending();
}

cudaError_t CUDARTAPI cudaEventSynchronize(cudaEvent_t event) {
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle);
  State& s = state();
  Lock lock(s.mu);
  if (!event->mark) return cudaSuccess;
  tandem::emu::drain(event->mark->stream, event->mark->seq);
  return take_pending();
}

cudaError_t CUDARTAPI cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr) return fail(cudaErrorInvalidValue);
  if (start == nullptr || end == nullptr) return fail(cudaErrorInvalidResourceHandle);
  State& s = state();
  Lock lock(s.mu);
  if ((start->flags | end->flags) & cudaEventDisableTiming) {
    return fail(cudaErrorInvalidResourceHandle);
  }
  if (!start->mark || !end->mark) return fail(cudaErrorInvalidResourceHandle);
  if (!tandem::emu::is_complete(*start->mark) || !tandem::emu::is_complete(*end->mark)) {
    return fail(cudaErrorNotReady);
  }
  *ms = static_cast<float>(end->mark->time_ms - start->mark->time_ms);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event,
                                          unsigned int /*flags*/) {
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle);
  State& s = state();
  Lock lock(s.mu);
  if (!tandem::emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  if (!event->mark) return cudaSuccess;
  Op op;
  op.what = "cudaStreamWaitEvent";
  op.wait_stream = event->mark->stream;
  op.wait_seq = event->mark->seq;
  tandem::emu::push_ordered(tandem::emu::resolve(stream), std::move(op));
  return cudaSuccess;
}

}  // extern "C"
