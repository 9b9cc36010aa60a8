// cuda::conv2d_forward, conv2d_backward_input and conv2d_backward_weight
// through cuDNN's convolution API (cudnnConvolutionForward /
// BackwardData / BackwardFilter), float32 and float64, NCHW, groups via
// cudnnSetConvolutionGroupCount. Contract in core/backend_decls.inc; the CPU
// twin is src/cpu/conv.cpp.
//
// A plan per (shape, dtype, math, deterministic, benchmark, device) is built
// on first use and kept: the descriptors, and per pass the candidate
// algorithms and the one that worked, so later calls of the shape (every
// training step) neither rebuild descriptors nor query cuDNN again.
// Algorithm choice, per pass:
//   - default: cuDNN's heuristics (cudnnGet*Algorithm_v7), best first;
//   - cuda::set_cudnn_benchmark(true): cudnnFind*AlgorithmEx times the
//     candidates once and the order it finds is kept
//     (like torch.backends.cudnn.benchmark);
//   - cuda::set_cudnn_deterministic(true): only CUDNN_DETERMINISTIC results.
// Candidates are tried in order: the workspace comes from the caching
// allocator, and when it cannot be had (OutOfMemoryError) the next candidate
// is tried, so a conv runs with less memory rather than failing; every pass has
// algorithms that need no workspace. A candidate cuDNN refuses at run time
// (NOT_SUPPORTED, EXECUTION_FAILED) gives way to the next and is skipped
// from then on.
// Batches whose input or output has more than 2^31 - 1 elements (cuDNN's
// descriptors take int sizes and strides) run in chunks of samples
// (core/conv_chunk.h); the filter gradient accumulates over the chunks. float32 uses TF32 tensor
// cores only when cuda::allow_tf32() is on (CUDNN_FMA_MATH otherwise).
//
// The legacy convolution API is deprecated in cuDNN 9 in favour of the graph
// API but still supported; it is what this file needs and it keeps the code
// short. (cuDNN only warns about it with CUDNN_WARN_DEPRECATED.)
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/backend.h"
#include "core/conv_chunk.h"
#include "cuda/cuda_utils.h"
#include "tandem/cuda.h"

namespace tandem {
namespace cuda {

namespace {

std::atomic<bool>& benchmark_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}
std::atomic<bool>& deterministic_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}

constexpr int kMaxCudnnDevices = 64;

// Handles of exited threads, per device: reused by the next thread that needs
// one, destroyed by cuda::empty_cache() (detail::release_cudnn_handles).
struct CudnnHandlePool {
  std::mutex mutex;
  std::array<std::vector<cudnnHandle_t>, kMaxCudnnDevices> free_handles;
};

CudnnHandlePool& cudnn_pool() {
  static CudnnHandlePool* pool = new CudnnHandlePool();  // never destroyed
  return *pool;
}

// One handle per device for this thread, handed back to the pool when the
// thread exits (not destroyed there: a thread-exit destructor may run after
// the CUDA context is gone at process exit).
struct ThreadCudnnHandles {
  std::array<cudnnHandle_t, kMaxCudnnDevices> by_device{};
  ThreadCudnnHandles() = default;
  ThreadCudnnHandles(const ThreadCudnnHandles&) = delete;
  ThreadCudnnHandles& operator=(const ThreadCudnnHandles&) = delete;
  ~ThreadCudnnHandles() {
    CudnnHandlePool& pool = cudnn_pool();
    std::lock_guard<std::mutex> lock(pool.mutex);
    for (size_t d = 0; d < by_device.size(); ++d) {
      if (by_device[d] != nullptr) pool.free_handles[d].push_back(by_device[d]);
    }
  }
};

// This thread's handle of the current device, bound to the current stream on
// each use.
cudnnHandle_t current_cudnn_handle() {
  thread_local ThreadCudnnHandles handles;
  const int device = detail::current_device();
  TANDEM_CHECK(device >= 0 && device < kMaxCudnnDevices, "conv2d (cuda): device ", device,
               " out of range");
  cudnnHandle_t& h = handles.by_device[static_cast<size_t>(device)];
  if (h == nullptr) {
    CudnnHandlePool& pool = cudnn_pool();
    {
      std::lock_guard<std::mutex> lock(pool.mutex);
      auto& free_list = pool.free_handles[static_cast<size_t>(device)];
      if (!free_list.empty()) {
        h = free_list.back();
        free_list.pop_back();
      }
    }
    if (h == nullptr) TANDEM_CUDA_CHECK(cudnnCreate(&h));  // on the current device
  }
  TANDEM_CUDA_CHECK(cudnnSetStream(h, current_cuda_stream()));
  return h;
}

int to_int(int64_t v, const char* what) {
  TANDEM_CHECK(v >= 0 && v <= INT_MAX, "conv2d (cuda): ", what, " = ", v,
               " does not fit the 32-bit sizes cuDNN takes");
  return static_cast<int>(v);
}

cudnnDataType_t data_type(DType dt) {
  if (dt == kFloat32) return CUDNN_DATA_FLOAT;
  if (dt == kFloat64) return CUDNN_DATA_DOUBLE;
  TANDEM_FAIL("conv2d (cuda): dtype ", dtype_name(dt), " is not supported (float32 or float64)");
}

// ---- RAII descriptors -----------------------------------------------------------------

struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc(DType dt, int64_t n, int64_t c, int64_t h, int64_t w) {
    TANDEM_CUDA_CHECK(cudnnCreateTensorDescriptor(&d));
    TANDEM_CUDA_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, data_type(dt),
                                                 to_int(n, "batch"), to_int(c, "channels"),
                                                 to_int(h, "height"), to_int(w, "width")));
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};

struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  FilterDesc(DType dt, const ConvShape& s) {
    TANDEM_CUDA_CHECK(cudnnCreateFilterDescriptor(&d));
    TANDEM_CUDA_CHECK(
        cudnnSetFilter4dDescriptor(d, data_type(dt), CUDNN_TENSOR_NCHW, to_int(s.k, "out_channels"),
                                   to_int(s.c / s.groups, "in_channels/groups"),
                                   to_int(s.r, "kernel height"), to_int(s.s, "kernel width")));
  }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
};

struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  ConvDesc(DType dt, const ConvShape& s) {
    TANDEM_CUDA_CHECK(cudnnCreateConvolutionDescriptor(&d));
    TANDEM_CUDA_CHECK(cudnnSetConvolution2dDescriptor(
        d, to_int(s.pad_h, "padding"), to_int(s.pad_w, "padding"), to_int(s.stride_h, "stride"),
        to_int(s.stride_w, "stride"), to_int(s.dil_h, "dilation"), to_int(s.dil_w, "dilation"),
        CUDNN_CROSS_CORRELATION, data_type(dt)));
    TANDEM_CUDA_CHECK(cudnnSetConvolutionGroupCount(d, to_int(s.groups, "groups")));
    const bool tf32 = dt == kFloat32 && allow_tf32();
    TANDEM_CUDA_CHECK(cudnnSetConvolutionMathType(d, tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
};

// Everything a cuDNN call of one pass needs.
struct Descs {
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
  Descs(DType dt, const ConvShape& s)
      : x(dt, s.n, s.c, s.h, s.w), y(dt, s.n, s.k, s.p, s.q), w(dt, s), conv(dt, s) {}
};

// ---- Plans: descriptors and algorithm choice per shape ---------------------------------

enum class Pass { Forward = 0, BackwardData = 1, BackwardFilter = 2 };

struct Candidate {
  int algo;
  size_t workspace;  // for the plan's main chunk
};

template <typename Perf>
std::vector<Candidate> usable(const Perf* perf, int count) {
  std::vector<Candidate> out;
  const bool det = deterministic_flag().load();
  for (int i = 0; i < count; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
    if (det && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
    out.push_back({static_cast<int>(perf[i].algo), perf[i].memory});
  }
  return out;
}

constexpr int kMaxAlgos = 16;

std::atomic<uint64_t>& heuristic_query_count() {
  static std::atomic<uint64_t> n{0};
  return n;
}

std::vector<Candidate> heuristic_candidates(Pass pass, cudnnHandle_t h, const Descs& d) {
  heuristic_query_count().fetch_add(1, std::memory_order_relaxed);
  int returned = 0;
  switch (pass) {
    case Pass::Forward: {
      cudnnConvolutionFwdAlgoPerf_t perf[kMaxAlgos];
      TANDEM_CUDA_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, d.x.d, d.w.d, d.conv.d, d.y.d,
                                                               kMaxAlgos, &returned, perf));
      return usable(perf, returned);
    }
    case Pass::BackwardData: {
      cudnnConvolutionBwdDataAlgoPerf_t perf[kMaxAlgos];
      TANDEM_CUDA_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
          h, d.w.d, d.y.d, d.conv.d, d.x.d, kMaxAlgos, &returned, perf));
      return usable(perf, returned);
    }
    default: {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[kMaxAlgos];
      TANDEM_CUDA_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
          h, d.x.d, d.y.d, d.conv.d, d.w.d, kMaxAlgos, &returned, perf));
      return usable(perf, returned);
    }
  }
}

// Times the candidates with cudnnFind*AlgorithmEx (which writes the output
// buffer, overwritten afterwards by the real call). Its workspace is the
// largest the heuristic candidates ask for, halved while it cannot be had.
std::vector<Candidate> benchmark_candidates(Pass pass, cudnnHandle_t h, const Descs& d,
                                            const void* in0, const void* in1, void* out,
                                            const std::vector<Candidate>& heuristic) {
  size_t want = 0;
  for (const Candidate& c : heuristic) want = std::max(want, c.workspace);
  for (;;) {
    try {
      detail::DeviceWorkspace ws(std::max<size_t>(want, 1));
      int returned = 0;
      switch (pass) {
        case Pass::Forward: {
          cudnnConvolutionFwdAlgoPerf_t perf[kMaxAlgos];
          TANDEM_CUDA_CHECK(cudnnFindConvolutionForwardAlgorithmEx(
              h, d.x.d, in0, d.w.d, in1, d.conv.d, d.y.d, out, kMaxAlgos, &returned, perf,
              ws.data(), want));
          return usable(perf, returned);
        }
        case Pass::BackwardData: {
          cudnnConvolutionBwdDataAlgoPerf_t perf[kMaxAlgos];
          TANDEM_CUDA_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(
              h, d.w.d, in0, d.y.d, in1, d.conv.d, d.x.d, out, kMaxAlgos, &returned, perf,
              ws.data(), want));
          return usable(perf, returned);
        }
        default: {
          cudnnConvolutionBwdFilterAlgoPerf_t perf[kMaxAlgos];
          TANDEM_CUDA_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
              h, d.x.d, in0, d.y.d, in1, d.conv.d, d.w.d, out, kMaxAlgos, &returned, perf,
              ws.data(), want));
          return usable(perf, returned);
        }
      }
    } catch (const OutOfMemoryError&) {
      if (want == 0) throw;
      want /= 2;
    }
  }
}

cudnnStatus_t workspace_size(Pass pass, cudnnHandle_t h, const Descs& d, int algo, size_t* bytes) {
  switch (pass) {
    case Pass::Forward:
      return cudnnGetConvolutionForwardWorkspaceSize(
          h, d.x.d, d.w.d, d.conv.d, d.y.d, static_cast<cudnnConvolutionFwdAlgo_t>(algo), bytes);
    case Pass::BackwardData:
      return cudnnGetConvolutionBackwardDataWorkspaceSize(
          h, d.w.d, d.y.d, d.conv.d, d.x.d, static_cast<cudnnConvolutionBwdDataAlgo_t>(algo),
          bytes);
    default:
      return cudnnGetConvolutionBackwardFilterWorkspaceSize(
          h, d.x.d, d.y.d, d.conv.d, d.w.d, static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo),
          bytes);
  }
}

// Everything that depends only on the shape and the modes, built once: the
// descriptors of a full chunk and of the last, shorter one, and per pass the
// candidate algorithms and the first one to try (advanced past the ones cuDNN
// refused with NOT_SUPPORTED / EXECUTION_FAILED, so a training step neither
// rebuilds descriptors nor re-queries the heuristics).
struct PassState {
  bool ready = false;
  std::vector<Candidate> cands;
  size_t chosen = 0;
};

struct ConvPlan {
  int64_t n = 0, chunk = 0;  // the batch and the samples per cuDNN call
  std::unique_ptr<Descs> main, tail;
  std::unique_ptr<TensorDesc> bias;  // [1, k, 1, 1]
  std::mutex mutex;                  // guards `passes`
  std::array<PassState, 3> passes;
};

using PlanKey = std::array<int64_t, ConvShape::kFields + 3>;

PlanKey plan_key(const ConvShape& s, DType dt) {
  const int64_t modes = (dt == kFloat32 && allow_tf32() ? 1 : 0) |
                        (deterministic_flag().load() ? 2 : 0) | (benchmark_flag().load() ? 4 : 0);
  PlanKey key{};
  const auto fields = s.fields();
  std::copy(fields.begin(), fields.end(), key.begin());
  key[ConvShape::kFields] = static_cast<int64_t>(dt);
  key[ConvShape::kFields + 1] = modes;
  key[ConvShape::kFields + 2] = detail::current_device();
  return key;
}

struct PlanCache {
  std::mutex mutex;
  std::map<PlanKey, std::unique_ptr<ConvPlan>> plans;  // never evicted (one per shape)
};
PlanCache& plan_cache() {
  static PlanCache* cache = new PlanCache();  // never destroyed
  return *cache;
}

ConvPlan& plan_for(const ConvShape& s, DType dt) {
  const PlanKey key = plan_key(s, dt);
  PlanCache& cache = plan_cache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  std::unique_ptr<ConvPlan>& slot = cache.plans[key];
  if (slot != nullptr) return *slot;
  const int64_t chunk = conv::batch_chunk(s);
  TANDEM_CHECK(chunk >= 1, "conv2d (cuda): one sample of input [", s.n, ", ", s.c, ", ", s.h, ", ",
               s.w, "] / output [", s.n, ", ", s.k, ", ", s.p, ", ", s.q,
               "] has more than 2^31 - 1 elements, more than cuDNN's descriptors take");
  TANDEM_CHECK(s.k * (s.c / s.groups) * s.r * s.s <= conv::kMaxCudnnElements,
               "conv2d (cuda): the weight [", s.k, ", ", s.c / s.groups, ", ", s.r, ", ", s.s,
               "] has more than 2^31 - 1 elements, more than cuDNN's descriptors take");
  auto plan = std::make_unique<ConvPlan>();
  plan->n = s.n;
  plan->chunk = chunk;
  ConvShape part = s;
  part.n = chunk;
  plan->main = std::make_unique<Descs>(dt, part);
  if (s.n % chunk != 0) {
    part.n = s.n % chunk;
    plan->tail = std::make_unique<Descs>(dt, part);
  }
  plan->bias = std::make_unique<TensorDesc>(dt, 1, s.k, 1, 1);
  slot = std::move(plan);
  return *slot;
}

// The pass's candidates and the first to try; queried (or benchmarked on the
// first chunk's buffers) on the plan's first use.
std::pair<std::vector<Candidate>, size_t> pass_candidates(Pass pass, ConvPlan& plan,
                                                          cudnnHandle_t h, const void* in0,
                                                          const void* in1, void* out) {
  std::lock_guard<std::mutex> lock(plan.mutex);
  PassState& st = plan.passes[static_cast<size_t>(pass)];
  if (!st.ready) {
    st.cands = heuristic_candidates(pass, h, *plan.main);
    if (benchmark_flag().load()) {
      std::vector<Candidate> found =
          benchmark_candidates(pass, h, *plan.main, in0, in1, out, st.cands);
      if (!found.empty()) st.cands = std::move(found);
    }
    st.chosen = 0;
    st.ready = true;
  }
  return {st.cands, st.chosen};
}

bool refused(cudnnStatus_t status) {
  const int category = CUDNN_STATUS_CATEGORY(static_cast<int>(status));
  return category == CUDNN_STATUS_NOT_SUPPORTED || category == CUDNN_STATUS_EXECUTION_FAILED;
}

// Runs one pass over the batch in chunks: `call(descs, algo, ws, bytes, b0,
// first)` enqueues the chunk starting at sample b0 and returns cuDNN's status.
// Candidates are tried in order from the plan's choice: one whose workspace
// cannot be had (OutOfMemoryError) or that cuDNN refuses (NOT_SUPPORTED,
// EXECUTION_FAILED; float64 with groups and dilation is a known case) gives
// way to the next, and the whole batch is redone with it (chunk 0 overwrites
// the output). Refused candidates are skipped from then on.
template <typename Call>
void run_pass(Pass pass, ConvPlan& plan, cudnnHandle_t h, const char* what, const void* in0,
              const void* in1, void* out, const Call& call) {
  const auto [cands, start] = pass_candidates(pass, plan, h, in0, in1, out);
  TANDEM_CHECK(!cands.empty(), what, ": cuDNN offers no algorithm for this configuration",
               deterministic_flag().load() ? " in deterministic mode" : "");
  std::string failures;
  bool all_refused_so_far = true;
  for (size_t i = start; i < cands.size(); ++i) {
    const Candidate& c = cands[i];
    cudnnStatus_t status = CUDNN_STATUS_SUCCESS;
    try {
      for (int64_t b0 = 0; b0 < plan.n && status == CUDNN_STATUS_SUCCESS; b0 += plan.chunk) {
        const Descs& d = plan.n - b0 >= plan.chunk ? *plan.main : *plan.tail;
        size_t bytes = c.workspace;
        if (&d != plan.main.get()) status = workspace_size(pass, h, d, c.algo, &bytes);
        if (status != CUDNN_STATUS_SUCCESS) break;
        detail::DeviceWorkspace ws(std::max<size_t>(bytes, 1));
        status = call(d, c.algo, ws.data(), bytes, b0, b0 == 0);
      }
    } catch (const OutOfMemoryError&) {
      if (i + 1 == cands.size()) throw;  // nothing needing less memory is left
      all_refused_so_far = false;
      continue;
    }
    if (status == CUDNN_STATUS_SUCCESS) {
      if (all_refused_so_far && i != start) {
        std::lock_guard<std::mutex> lock(plan.mutex);
        PassState& st = plan.passes[static_cast<size_t>(pass)];
        if (st.chosen < i) st.chosen = i;
      }
      return;
    }
    if (!refused(status)) TANDEM_CUDA_CHECK(status);  // a real error: report it
    (void)cudaGetLastError();                         // a failed launch inside cuDNN is not sticky
    failures += tandem::detail::str_cat(failures.empty() ? "" : ", ", "algorithm ", c.algo, ": ",
                                        cudnnGetErrorString(status));
  }
  TANDEM_FAIL(what, ": every cuDNN algorithm failed for this configuration (", failures, ")");
}

// alpha/beta scaling factors: float for float data, double for double.
struct Scale {
  float f1 = 1.0f, f0 = 0.0f;
  double d1 = 1.0, d0 = 0.0;
  const void* one(DType dt) const { return dt == kFloat64 ? static_cast<const void*>(&d1) : &f1; }
  const void* zero(DType dt) const { return dt == kFloat64 ? static_cast<const void*>(&d0) : &f0; }
};

// Byte pointer to sample b0 of an [n, per_sample] tensor.
const void* at_sample(const Tensor& t, int64_t b0, int64_t per_sample) {
  return static_cast<const char*>(t.raw_data()) +
         static_cast<size_t>(b0 * per_sample) * t.element_size();
}
void* at_sample(Tensor& t, int64_t b0, int64_t per_sample) {
  return static_cast<char*>(t.raw_data()) + static_cast<size_t>(b0 * per_sample) * t.element_size();
}

}  // namespace

namespace detail {
void release_cudnn_handles() {
  std::array<std::vector<cudnnHandle_t>, kMaxCudnnDevices> taken;
  {
    CudnnHandlePool& pool = cudnn_pool();
    std::lock_guard<std::mutex> lock(pool.mutex);
    taken.swap(pool.free_handles);
  }
  for (size_t d = 0; d < taken.size(); ++d) {
    if (taken[d].empty()) continue;
    detail::DeviceGuard guard(static_cast<int>(d));
    for (cudnnHandle_t h : taken[d]) TANDEM_CUDA_CHECK(cudnnDestroy(h));
  }
}
}  // namespace detail

// ---- Public switches -------------------------------------------------------------------

void set_cudnn_benchmark(bool on) { benchmark_flag().store(on); }
bool cudnn_benchmark() { return benchmark_flag().load(); }
void set_cudnn_deterministic(bool on) { deterministic_flag().store(on); }
bool cudnn_deterministic() { return deterministic_flag().load(); }
int cudnn_version() { return static_cast<int>(cudnnGetVersion()); }

namespace detail {
ConvCacheStats conv_cache_stats() {
  ConvCacheStats out;
  {
    PlanCache& cache = plan_cache();
    std::lock_guard<std::mutex> lock(cache.mutex);
    out.plans = cache.plans.size();
  }
  out.heuristic_queries = heuristic_query_count().load();
  return out;
}
}  // namespace detail

// ---- Backend entry points ----------------------------------------------------------------

void conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const ConvShape& s,
                    Tensor& y) {
  const DType dt = x.dtype();
  cudnnHandle_t h = current_cudnn_handle();
  ConvPlan& plan = plan_for(s, dt);
  const Scale k;
  const int64_t xs = s.c * s.h * s.w, ys = s.k * s.p * s.q;
  run_pass(Pass::Forward, plan, h, "conv2d (cuda)", x.raw_data(), weight.raw_data(), y.raw_data(),
           [&](const Descs& d, int algo, void* ws, size_t bytes, int64_t b0, bool /*first*/) {
             return cudnnConvolutionForward(h, k.one(dt), d.x.d, at_sample(x, b0, xs), d.w.d,
                                            weight.raw_data(), d.conv.d,
                                            static_cast<cudnnConvolutionFwdAlgo_t>(algo), ws, bytes,
                                            k.zero(dt), d.y.d, at_sample(y, b0, ys));
           });
  if (bias.defined()) {
    for (int64_t b0 = 0; b0 < s.n; b0 += plan.chunk) {
      const Descs& d = s.n - b0 >= plan.chunk ? *plan.main : *plan.tail;
      TANDEM_CUDA_CHECK(cudnnAddTensor(h, k.one(dt), plan.bias->d, bias.raw_data(), k.one(dt),
                                       d.y.d, at_sample(y, b0, ys)));
    }
  }
  TANDEM_CUDA_CHECK_LAUNCH(cudnnConvolutionForward);
}

void conv2d_backward_input(const Tensor& grad_y, const Tensor& weight, const ConvShape& s,
                           Tensor& grad_x) {
  const DType dt = grad_y.dtype();
  cudnnHandle_t h = current_cudnn_handle();
  ConvPlan& plan = plan_for(s, dt);
  const Scale k;
  const int64_t xs = s.c * s.h * s.w, ys = s.k * s.p * s.q;
  run_pass(Pass::BackwardData, plan, h, "conv2d backward (cuda)", weight.raw_data(),
           grad_y.raw_data(), grad_x.raw_data(),
           [&](const Descs& d, int algo, void* ws, size_t bytes, int64_t b0, bool /*first*/) {
             return cudnnConvolutionBackwardData(
                 h, k.one(dt), d.w.d, weight.raw_data(), d.y.d, at_sample(grad_y, b0, ys), d.conv.d,
                 static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), ws, bytes, k.zero(dt), d.x.d,
                 at_sample(grad_x, b0, xs));
           });
  TANDEM_CUDA_CHECK_LAUNCH(cudnnConvolutionBackwardData);
}

// Over several chunks the filter gradient accumulates: beta = 0 for the
// first chunk, 1 after.
void conv2d_backward_weight(const Tensor& x, const Tensor& grad_y, const ConvShape& s,
                            Tensor& grad_weight) {
  const DType dt = x.dtype();
  cudnnHandle_t h = current_cudnn_handle();
  ConvPlan& plan = plan_for(s, dt);
  const Scale k;
  const int64_t xs = s.c * s.h * s.w, ys = s.k * s.p * s.q;
  run_pass(Pass::BackwardFilter, plan, h, "conv2d backward (cuda)", x.raw_data(), grad_y.raw_data(),
           grad_weight.raw_data(),
           [&](const Descs& d, int algo, void* ws, size_t bytes, int64_t b0, bool first) {
             return cudnnConvolutionBackwardFilter(
                 h, k.one(dt), d.x.d, at_sample(x, b0, xs), d.y.d, at_sample(grad_y, b0, ys),
                 d.conv.d, static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), ws, bytes,
                 first ? k.zero(dt) : k.one(dt), d.w.d, grad_weight.raw_data());
           });
  TANDEM_CUDA_CHECK_LAUNCH(cudnnConvolutionBackwardFilter);
}

}  // namespace cuda
}  // namespace tandem
