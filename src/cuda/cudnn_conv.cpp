// cuda::conv2d_forward, conv2d_backward_input and conv2d_backward_weight
// through cuDNN's convolution API (cudnnConvolutionForward /
// BackwardData / BackwardFilter), float32 and float64, NCHW, groups via
// cudnnSetConvolutionGroupCount. Contract in core/backend_decls.inc; the CPU
// twin is src/cpu/conv.cpp.
//
// Algorithm choice, per pass and shape:
//   - default: cuDNN's heuristics (cudnnGet*Algorithm_v7), best first;
//   - cuda::set_cudnn_benchmark(true): cudnnFind*AlgorithmEx times the
//     candidates once per (pass, shape, dtype, math, deterministic, device)
//     and the order it finds is cached (like torch.backends.cudnn.benchmark);
//   - cuda::set_cudnn_deterministic(true): only CUDNN_DETERMINISTIC results.
// Candidates are tried in order: the workspace comes from the caching
// allocator, and when it cannot be had (OutOfMemoryError) the next candidate
// is tried, so a conv runs with less memory rather than failing; every pass has
// algorithms that need no workspace. float32 uses TF32 tensor cores only when
// cuda::allow_tf32() is on (CUDNN_FMA_MATH otherwise).
//
// The legacy convolution API is deprecated in cuDNN 9 in favour of the graph
// API but still supported; it is what this file needs and it keeps the code
// short. (cuDNN only warns about it with CUDNN_WARN_DEPRECATED.)
#include <cudnn.h>

#include <atomic>
#include <climits>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "core/backend.h"
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

// One handle per device per thread, bound to the current stream on each use.
// Handles are never destroyed (a thread-exit destructor could run after the
// CUDA context is gone); tandem's threads are long-lived.
cudnnHandle_t current_cudnn_handle() {
  constexpr int kMaxDevices = 64;
  thread_local cudnnHandle_t handles[kMaxDevices] = {};
  const int device = detail::current_device();
  TANDEM_CHECK(device >= 0 && device < kMaxDevices, "conv2d (cuda): device ", device,
               " out of range");
  cudnnHandle_t& h = handles[device];
  if (h == nullptr) TANDEM_CUDA_CHECK(cudnnCreate(&h));
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

// ---- Algorithm choice -------------------------------------------------------------------

enum class Pass { Forward, BackwardData, BackwardFilter };

struct Candidate {
  int algo;
  size_t workspace;
};

std::string cache_key(Pass pass, const ConvShape& s, DType dt) {
  std::ostringstream os;
  os << static_cast<int>(pass) << ':' << dtype_name(dt) << ':' << s.n << ',' << s.c << ',' << s.h
     << ',' << s.w << ',' << s.k << ',' << s.r << ',' << s.s << ',' << s.stride_h << ','
     << s.stride_w << ',' << s.pad_h << ',' << s.pad_w << ',' << s.dil_h << ',' << s.dil_w << ','
     << s.groups << ":tf32=" << (dt == kFloat32 && allow_tf32())
     << ":det=" << deterministic_flag().load() << ":dev=" << detail::current_device();
  return os.str();
}

struct AlgoCache {
  std::mutex mutex;
  std::map<std::string, std::vector<Candidate>> benchmarked;
  std::map<std::string, int> last_used;  // key without the pass-specific mode bits
};
AlgoCache& algo_cache() {
  static AlgoCache* cache = new AlgoCache();  // never destroyed
  return *cache;
}

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

std::vector<Candidate> heuristic_candidates(Pass pass, cudnnHandle_t h, const Descs& d) {
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

std::vector<Candidate> candidates(Pass pass, cudnnHandle_t h, const Descs& d, const ConvShape& s,
                                  DType dt, const void* in0, const void* in1, void* out) {
  std::vector<Candidate> heuristic = heuristic_candidates(pass, h, d);
  if (!benchmark_flag().load()) return heuristic;
  const std::string key = cache_key(pass, s, dt);
  AlgoCache& cache = algo_cache();
  {
    std::lock_guard<std::mutex> lock(cache.mutex);
    auto it = cache.benchmarked.find(key);
    if (it != cache.benchmarked.end()) return it->second;
  }
  std::vector<Candidate> found = benchmark_candidates(pass, h, d, in0, in1, out, heuristic);
  if (found.empty()) found = heuristic;
  std::lock_guard<std::mutex> lock(cache.mutex);
  cache.benchmarked[key] = found;
  return found;
}

void remember(Pass pass, const ConvShape& s, DType dt, int algo) {
  AlgoCache& cache = algo_cache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  cache.last_used[cache_key(pass, s, dt)] = algo;
}

// Runs `call(algo, workspace, bytes)` with the first candidate whose workspace
// can be allocated.
template <typename Call>
void run_with_fallback(Pass pass, const ConvShape& s, DType dt, const std::vector<Candidate>& cands,
                       const char* what, const Call& call) {
  TANDEM_CHECK(!cands.empty(), what, ": cuDNN offers no algorithm for this configuration",
               deterministic_flag().load() ? " in deterministic mode" : "");
  for (size_t i = 0; i < cands.size(); ++i) {
    const Candidate& c = cands[i];
    try {
      detail::DeviceWorkspace ws(std::max<size_t>(c.workspace, 1));
      call(c.algo, ws.data(), c.workspace);
      remember(pass, s, dt, c.algo);
      return;
    } catch (const OutOfMemoryError&) {
      if (i + 1 == cands.size()) throw;  // nothing needing less memory is left
    }
  }
}

// alpha/beta scaling factors: float for float data, double for double.
struct Scale {
  float f1 = 1.0f, f0 = 0.0f;
  double d1 = 1.0, d0 = 0.0;
  const void* one(DType dt) const { return dt == kFloat64 ? static_cast<const void*>(&d1) : &f1; }
  const void* zero(DType dt) const { return dt == kFloat64 ? static_cast<const void*>(&d0) : &f0; }
};

}  // namespace

// ---- Public switches -------------------------------------------------------------------

void set_cudnn_benchmark(bool on) { benchmark_flag().store(on); }
bool cudnn_benchmark() { return benchmark_flag().load(); }
void set_cudnn_deterministic(bool on) { deterministic_flag().store(on); }
bool cudnn_deterministic() { return deterministic_flag().load(); }
int cudnn_version() { return static_cast<int>(cudnnGetVersion()); }

namespace detail {
int conv_forward_algorithm(const ConvShape& s, DType dt) {
  AlgoCache& cache = algo_cache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  auto it = cache.last_used.find(cache_key(Pass::Forward, s, dt));
  return it == cache.last_used.end() ? -1 : it->second;
}
}  // namespace detail

// ---- Backend entry points ----------------------------------------------------------------

void conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const ConvShape& s,
                    Tensor& y) {
  const DType dt = x.dtype();
  cudnnHandle_t h = current_cudnn_handle();
  const Descs d(dt, s);
  const Scale k;
  const auto cands =
      candidates(Pass::Forward, h, d, s, dt, x.raw_data(), weight.raw_data(), y.raw_data());
  run_with_fallback(
      Pass::Forward, s, dt, cands, "conv2d (cuda)", [&](int algo, void* ws, size_t bytes) {
        TANDEM_CUDA_CHECK(cudnnConvolutionForward(h, k.one(dt), d.x.d, x.raw_data(), d.w.d,
                                                  weight.raw_data(), d.conv.d,
                                                  static_cast<cudnnConvolutionFwdAlgo_t>(algo), ws,
                                                  bytes, k.zero(dt), d.y.d, y.raw_data()));
      });
  if (bias.defined()) {
    const TensorDesc b(dt, 1, s.k, 1, 1);
    TANDEM_CUDA_CHECK(
        cudnnAddTensor(h, k.one(dt), b.d, bias.raw_data(), k.one(dt), d.y.d, y.raw_data()));
  }
  TANDEM_CUDA_CHECK_LAUNCH(cudnnConvolutionForward);
}

void conv2d_backward_input(const Tensor& grad_y, const Tensor& weight, const ConvShape& s,
                           Tensor& grad_x) {
  const DType dt = grad_y.dtype();
  cudnnHandle_t h = current_cudnn_handle();
  const Descs d(dt, s);
  const Scale k;
  const auto cands = candidates(Pass::BackwardData, h, d, s, dt, weight.raw_data(),
                                grad_y.raw_data(), grad_x.raw_data());
  run_with_fallback(Pass::BackwardData, s, dt, cands, "conv2d backward (cuda)",
                    [&](int algo, void* ws, size_t bytes) {
                      TANDEM_CUDA_CHECK(cudnnConvolutionBackwardData(
                          h, k.one(dt), d.w.d, weight.raw_data(), d.y.d, grad_y.raw_data(),
                          d.conv.d, static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), ws, bytes,
                          k.zero(dt), d.x.d, grad_x.raw_data()));
                    });
  TANDEM_CUDA_CHECK_LAUNCH(cudnnConvolutionBackwardData);
}

void conv2d_backward_weight(const Tensor& x, const Tensor& grad_y, const ConvShape& s,
                            Tensor& grad_weight) {
  const DType dt = x.dtype();
  cudnnHandle_t h = current_cudnn_handle();
  const Descs d(dt, s);
  const Scale k;
  const auto cands = candidates(Pass::BackwardFilter, h, d, s, dt, x.raw_data(), grad_y.raw_data(),
                                grad_weight.raw_data());
  run_with_fallback(Pass::BackwardFilter, s, dt, cands, "conv2d backward (cuda)",
                    [&](int algo, void* ws, size_t bytes) {
                      TANDEM_CUDA_CHECK(cudnnConvolutionBackwardFilter(
                          h, k.one(dt), d.x.d, x.raw_data(), d.y.d, grad_y.raw_data(), d.conv.d,
                          static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), ws, bytes, k.zero(dt),
                          d.w.d, grad_weight.raw_data()));
                    });
  TANDEM_CUDA_CHECK_LAUNCH(cudnnConvolutionBackwardFilter);
}

}  // namespace cuda
}  // namespace tandem
