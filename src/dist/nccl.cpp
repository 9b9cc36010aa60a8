// The NCCL process group, with NCCL loaded at run time: dlopen("libnccl.so.2")
// (or TANDEM_NCCL_LIBRARY), its version checked against the header tandem was
// compiled with, the unique id made by rank 0 and exchanged through the
// rendezvous store, then ncclCommInitRank. Collectives are enqueued on the
// group's own stream after an event of the caller's stream, and the caller's
// stream waits for them (all_reduce_async returns at once). A wait polls the
// stream and ncclCommGetAsyncError up to the timeout, then aborts the
// communicator and throws naming the dead rank when it can.
//
// Only the compiled-in part runs here: this machine has no GPU and no NCCL,
// so the NCCL path has not run on a GPU (docs/gpu-runs.md). Without NCCL the
// message says so and that GPU training goes through Gloo.
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <thread>

#include "dist/group.h"
#include "tandem/config.h"
#include "tandem/cuda.h"
#include "tandem/error.h"
#include "tandem/ops.h"

#if defined(TANDEM_WITH_CUDA_BACKEND)
#define TANDEM_DIST_CUDA 1
#else
#define TANDEM_DIST_CUDA 0
#endif
// The emulated CUDA device (TANDEM_CUDA=EMU) runs kernels on the CPU; NCCL's
// own kernels need a real GPU, so that build has no NCCL backend and its GPU
// runs take the Gloo path through pinned host buffers.
#if TANDEM_DIST_CUDA && __has_include(<nccl.h>) && !TANDEM_CUDA_EMULATED
#define TANDEM_NCCL_HEADER 1
#include <cuda_runtime.h>
#include <nccl.h>
#else
#define TANDEM_NCCL_HEADER 0
#endif

namespace tandem {
namespace dist {
namespace detail {

#if TANDEM_NCCL_HEADER

namespace {
const char* library_name() {
  const char* env = std::getenv("TANDEM_NCCL_LIBRARY");
  return env != nullptr && *env != '\0' ? env : "libnccl.so.2";
}
}  // namespace

namespace {

// The NCCL entry points tandem uses, resolved from the loaded library.
struct NcclApi {
  void* handle = nullptr;
  int version = 0;
  ncclResult_t (*GetVersion)(int*) = nullptr;
  const char* (*GetErrorString)(ncclResult_t) = nullptr;
  ncclResult_t (*GetUniqueId)(ncclUniqueId*) = nullptr;
  ncclResult_t (*CommInitRank)(ncclComm_t*, int, ncclUniqueId, int) = nullptr;
  ncclResult_t (*CommDestroy)(ncclComm_t) = nullptr;
  ncclResult_t (*CommAbort)(ncclComm_t) = nullptr;
  ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t*) = nullptr;
  ncclResult_t (*AllReduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                            cudaStream_t) = nullptr;
  ncclResult_t (*Broadcast)(const void*, void*, size_t, ncclDataType_t, int, ncclComm_t,
                            cudaStream_t) = nullptr;
  ncclResult_t (*AllGather)(const void*, void*, size_t, ncclDataType_t, ncclComm_t,
                            cudaStream_t) = nullptr;
};

// The minimum: ncclCommGetAsyncError and ncclCommAbort as used here (2.4), and
// the header's major version (the ABI of ncclUniqueId and the enums).
constexpr int kMinVersion = 20400;

template <typename F>
void resolve(NcclApi& api, F*& fn, const char* name) {
  fn = reinterpret_cast<F*>(::dlsym(api.handle, name));
  TANDEM_CHECK(fn != nullptr, "dist: NCCL at ", library_name(), " has no ", name,
               " (not a usable NCCL library)");
}

// Loads NCCL once per process; throws with the reason on every call after a failure.
const NcclApi& nccl_api() {
  static NcclApi api;
  static std::string failure;
  static std::once_flag once;
  std::call_once(once, [] {
    try {
      api.handle = ::dlopen(library_name(), RTLD_NOW | RTLD_LOCAL);
      if (api.handle == nullptr) {
        const char* err = ::dlerror();
        TANDEM_FAIL("dist: NCCL is not available: dlopen(\"", library_name(), "\") failed (",
                    err != nullptr ? err : "unknown error",
                    "); install NCCL (libnccl2, or PyTorch's nvidia/nccl/lib on LD_LIBRARY_PATH) "
                    "or set TANDEM_NCCL_LIBRARY; GPU training then goes through Gloo with pinned "
                    "host buffers");
      }
      resolve(api, api.GetVersion, "ncclGetVersion");
      TANDEM_CHECK(api.GetVersion(&api.version) == ncclSuccess, "dist: ncclGetVersion failed");
      const int major = api.version >= 10000 ? api.version / 10000 : api.version / 1000;
      TANDEM_CHECK(major == NCCL_MAJOR && api.version >= kMinVersion, "dist: NCCL ", api.version,
                   " at ", library_name(),
                   " is not usable: tandem was compiled "
                   "against NCCL ",
                   NCCL_MAJOR, ".", NCCL_MINOR, " and needs major version ", NCCL_MAJOR,
                   ", at least ", kMinVersion, "; GPU training goes through Gloo");
      resolve(api, api.GetErrorString, "ncclGetErrorString");
      resolve(api, api.GetUniqueId, "ncclGetUniqueId");
      resolve(api, api.CommInitRank, "ncclCommInitRank");
      resolve(api, api.CommDestroy, "ncclCommDestroy");
      resolve(api, api.CommAbort, "ncclCommAbort");
      resolve(api, api.CommGetAsyncError, "ncclCommGetAsyncError");
      resolve(api, api.AllReduce, "ncclAllReduce");
      resolve(api, api.Broadcast, "ncclBroadcast");
      resolve(api, api.AllGather, "ncclAllGather");
    } catch (const Error& e) {
      failure = e.message();
    }
  });
  TANDEM_CHECK(failure.empty(), failure);
  return api;
}

std::string version_text(int v) {
  const int major = v >= 10000 ? v / 10000 : v / 1000;
  const int minor = v >= 10000 ? v / 100 % 100 : v / 100 % 10;
  const int patch = v % 100;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

#define TANDEM_NCCL_CHECK(stmt)                                                                   \
  do {                                                                                            \
    const ncclResult_t r_ = (stmt);                                                               \
    TANDEM_CHECK(r_ == ncclSuccess, "dist: ", #stmt, " failed: ", nccl_api().GetErrorString(r_)); \
  } while (0)
#define TANDEM_CUDART_CHECK(stmt)                                                          \
  do {                                                                                     \
    const cudaError_t e_ = (stmt);                                                         \
    TANDEM_CHECK(e_ == cudaSuccess, "dist: ", #stmt, " failed: ", cudaGetErrorString(e_)); \
  } while (0)

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case kFloat32:
      return ncclFloat32;
    case kFloat64:
      return ncclFloat64;
    case kInt64:
      return ncclInt64;
    default:
      TANDEM_FAIL("dist: NCCL collectives support float32, float64 and int64, got ", dtype_name(t));
  }
}
ncclRedOp_t nccl_op(ReduceOp op) {
  return op == ReduceOp::Max ? ncclMax : op == ReduceOp::Min ? ncclMin : ncclSum;
}

class NcclGroup;

// A collective queued on the group's stream; wait() makes the caller's
// stream wait for it and polls for NCCL's asynchronous errors until the timeout.
class NcclWork : public Work {
 public:
  NcclWork(NcclGroup* group, cudaEvent_t done, cudaStream_t caller)
      : group_(group), done_(done), caller_(caller) {}
  ~NcclWork() override { cudaEventDestroy(done_); }
  void wait() override;

 private:
  NcclGroup* group_;
  cudaEvent_t done_;
  cudaStream_t caller_;
};

class NcclGroup : public ProcessGroup {
 public:
  explicit NcclGroup(std::shared_ptr<Rendezvous> rv)
      : ProcessGroup(rv->rank(), rv->size()), rv_(std::move(rv)) {
    const NcclApi& api = nccl_api();
    ncclUniqueId id;
    const std::string key = rv_->prefix() + "/nccl_unique_id";
    if (rank_ == 0) {
      TANDEM_NCCL_CHECK(api.GetUniqueId(&id));
      if (size_ > 1) rv_->store().set(key, std::string(id.internal, sizeof(id.internal)));
    } else {
      const std::string v = rv_->store().get(key, rv_->timeout(), "rank 0's NCCL unique id");
      TANDEM_CHECK(v.size() == sizeof(id.internal), "dist: the NCCL unique id in the store has ",
                   v.size(), " bytes, expected ", sizeof(id.internal),
                   " (ranks loaded different NCCL versions?)");
      std::memcpy(id.internal, v.data(), v.size());
    }
    TANDEM_NCCL_CHECK(api.CommInitRank(&comm_, size_, id, rank_));
    TANDEM_CUDART_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  ~NcclGroup() override {
    if (comm_ != nullptr) (aborted_ ? nccl_api().CommAbort : nccl_api().CommDestroy)(comm_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  Backend backend() const override { return Backend::Nccl; }
  std::shared_ptr<ProcessGroup> new_group(const std::string& name) override {
    return std::make_shared<NcclGroup>(rv_->sub(name));
  }

  std::shared_ptr<Work> all_reduce_async(Tensor t, ReduceOp op) override {
    check(t, "all_reduce");
    return enqueue(t, [&](cudaStream_t s) {
      TANDEM_NCCL_CHECK(nccl_api().AllReduce(t.raw_data(), t.raw_data(),
                                             static_cast<size_t>(t.numel()), nccl_type(t.dtype()),
                                             nccl_op(op), comm_, s));
    });
  }
  void broadcast(Tensor& t, int root) override {
    check(t, "broadcast");
    enqueue(t, [&](cudaStream_t s) {
      TANDEM_NCCL_CHECK(nccl_api().Broadcast(t.raw_data(), t.raw_data(),
                                             static_cast<size_t>(t.numel()), nccl_type(t.dtype()),
                                             root, comm_, s));
    })->wait();
  }
  Tensor all_gather(const Tensor& t) override {
    check(t, "all_gather");
    Shape shape = t.sizes();
    shape.insert(shape.begin(), size_);
    Tensor out = empty(shape, TensorOptions(t.dtype()).device(t.device()));
    enqueue(t, [&](cudaStream_t s) {
      TANDEM_NCCL_CHECK(nccl_api().AllGather(t.raw_data(), out.raw_data(),
                                             static_cast<size_t>(t.numel()), nccl_type(t.dtype()),
                                             comm_, s));
    })->wait();
    return out;
  }
  void barrier() override {
    Tensor one = ones({1}, TensorOptions(kFloat32).device(Device(kCUDA, cuda_device_)));
    all_reduce(one, ReduceOp::Sum);
  }

  // Polls `done` until it completes, NCCL reports an error, or the timeout.
  void poll(cudaEvent_t done) {
    const auto deadline = std::chrono::steady_clock::now() + rv_->timeout();
    while (true) {
      const cudaError_t q = cudaEventQuery(done);
      if (q == cudaSuccess) return;
      TANDEM_CHECK(q == cudaErrorNotReady, "dist: NCCL collective: ", cudaGetErrorString(q));
      ncclResult_t async = ncclSuccess;
      nccl_api().CommGetAsyncError(comm_, &async);
      if (async != ncclSuccess || std::chrono::steady_clock::now() > deadline) {
        aborted_ = true;
        fail_collective(*rv_, "an NCCL collective",
                        async != ncclSuccess ? nccl_api().GetErrorString(async) : "timed out");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

 private:
  void check(const Tensor& t, const char* op) {
    TANDEM_CHECK(t.defined() && t.is_cuda(), "dist: NCCL ", op, " needs a CUDA tensor");
    cuda_device_ = t.device().index();
  }
  template <typename Fn>
  std::shared_ptr<Work> enqueue(const Tensor& t, Fn&& fn) {
    auto caller = static_cast<cudaStream_t>(cuda::current_stream(t.device().index()).handle());
    cudaEvent_t ready = nullptr, done = nullptr;
    TANDEM_CUDART_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    TANDEM_CUDART_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    TANDEM_CUDART_CHECK(cudaEventRecord(ready, caller));
    TANDEM_CUDART_CHECK(cudaStreamWaitEvent(stream_, ready, 0));
    cudaEventDestroy(ready);
    fn(stream_);
    cuda::record_stream(t, cuda::Stream(stream_, t.device().index()));
    TANDEM_CUDART_CHECK(cudaEventRecord(done, stream_));
    return std::make_shared<NcclWork>(this, done, caller);
  }

  std::shared_ptr<Rendezvous> rv_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int cuda_device_ = 0;
  bool aborted_ = false;
};

void NcclWork::wait() {
  group_->poll(done_);
  TANDEM_CUDART_CHECK(cudaStreamWaitEvent(caller_, done_, 0));
}

}  // namespace

std::shared_ptr<ProcessGroup> make_nccl_group(std::shared_ptr<Rendezvous> rv) {
  nccl_api();  // throws the clear message when NCCL is absent or too old
  return std::make_shared<NcclGroup>(std::move(rv));
}

BackendInfo nccl_info() {
  BackendInfo b;
  b.name = "nccl";
  try {
    b.version = version_text(nccl_api().version);
    b.available = true;
    b.detail = std::string("loaded from ") + library_name() + " (compiled against " +
               std::to_string(NCCL_MAJOR) + "." + std::to_string(NCCL_MINOR) + ")";
  } catch (const Error& e) {
    b.detail = e.message();
  }
  return b;
}

#else  // no CUDA backend, no nccl.h, or the emulated device

namespace {
const char* no_nccl_reason() {
  if (!TANDEM_DIST_CUDA) return "no CUDA backend in this build";
  if (TANDEM_CUDA_EMULATED) return "the emulated CUDA device cannot run NCCL, which needs a GPU";
  return "nccl.h was not found";
}
}  // namespace

std::shared_ptr<ProcessGroup> make_nccl_group(std::shared_ptr<Rendezvous>) {
  TANDEM_FAIL("dist: the NCCL backend is not in this build (", no_nccl_reason(),
              "); GPU training goes through Gloo with pinned host buffers");
}

BackendInfo nccl_info() {
  BackendInfo b;
  b.name = "nccl";
  b.detail = std::string("not built (") + no_nccl_reason() + ")";
  return b;
}

#endif

}  // namespace detail
}  // namespace dist
}  // namespace tandem
