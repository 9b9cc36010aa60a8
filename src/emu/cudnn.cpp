// The emulated cuDNN (TANDEM_EMU): the legacy-API functions tandem calls,
// defined against the real cudnn_*_v9.h declarations, computed on the host by
// direct loops (independent of tandem's CPU convolution and of oneDNN).
//
// Emulated, per cuDNN's documentation:
//   - handles, stream, version queries, status strings, the thread's last error;
//   - 4-d tensor descriptors (NCHW or NHWC, or explicit strides), 4-d filter
//     descriptors (NCHW or NHWC, packed), 2-d convolution descriptors (pad,
//     stride, dilation, CUDNN_CONVOLUTION (flipped filter) or
//     CUDNN_CROSS_CORRELATION, compute type, group count, math type);
//   - cudnnConvolutionForward / BackwardData / BackwardFilter and cudnnAddTensor
//     (broadcasting dimensions of size 1) for CUDNN_DATA_FLOAT and
//     CUDNN_DATA_DOUBLE, alpha/beta blending with beta == 0 leaving the output
//     unread (a NaN there does not propagate); float data with a math type other
//     than CUDNN_FMA_MATH rounds its inputs to TF32, as an Ampere+ GPU may;
//   - every data and workspace pointer is checked (emu::check_device_range, the
//     bytes the descriptors' strides span) before the work is enqueued on the
//     handle's stream (emu::enqueue); the workspace is scribbled over when the
//     work runs, so data aliasing it shows;
//   - algorithms: every enum value of each pass is offered, in ascending order,
//     with a made-up shape-dependent workspace (zero for the implicit-GEMM,
//     direct and fused-Winograd ones), CUDNN_NON_DETERMINISTIC for the ones
//     cuDNN names so (bwd_data ALGO_0, bwd_filter ALGO_0 and ALGO_3), and
//     increasing times; bwd_filter WINOGRAD is not implemented, as in cuDNN.
//     An algorithm emu::cudnn_refuses() names still appears in the Get*_v7
//     heuristics but is NOT_SUPPORTED when run and in the Find*Ex results.
// Not emulated: real algorithm choice or speed (every algorithm computes the
// same double-accumulated direct loop, deterministically), other data types
// and layouts, N-d descriptors, the graph API. DIFFERENCE FROM cuDNN: sums are
// accumulated in double for float data too, so results are at least as
// accurate as cuDNN's, not bit-identical to them.
#include <cudnn.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "emu/emu.h"

struct cudnnContext {
  cudaStream_t stream = nullptr;
};

struct cudnnTensorStruct {
  bool set = false;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  int64_t dim[4] = {0, 0, 0, 0};     // n, c, h, w
  int64_t stride[4] = {0, 0, 0, 0};  // in elements
};

struct cudnnFilterStruct {
  bool set = false;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  int64_t dim[4] = {0, 0, 0, 0};  // k, c (per group), r, s
  int64_t stride[4] = {0, 0, 0, 0};
};

struct cudnnConvolutionStruct {
  bool set = false;
  int64_t pad[2] = {0, 0}, stride[2] = {1, 1}, dilation[2] = {1, 1};
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  int64_t groups = 1;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

namespace tandem {
namespace emu {
namespace {

thread_local std::string last_error;

cudnnStatus_t fail(cudnnStatus_t status, const char* what, const std::string& why) {
  last_error = std::string(what) + ": " + why;
  return status;
}

bool valid_type(cudnnDataType_t t) { return t >= CUDNN_DATA_FLOAT && t <= CUDNN_DATA_COMPLEX_FP64; }
bool computable(cudnnDataType_t t) { return t == CUDNN_DATA_FLOAT || t == CUDNN_DATA_DOUBLE; }
size_t elem_size(cudnnDataType_t t) { return t == CUDNN_DATA_DOUBLE ? 8 : 4; }

// Packed strides of a 4-d [d0, d1, d2, d3] (NCHW meaning) in `format`.
void packed_strides(cudnnTensorFormat_t format, const int64_t* d, int64_t* s) {
  if (format == CUDNN_TENSOR_NHWC) {
    s[1] = 1, s[3] = d[1], s[2] = d[3] * d[1], s[0] = d[2] * d[3] * d[1];
  } else {
    s[3] = 1, s[2] = d[3], s[1] = d[2] * d[3], s[0] = d[1] * d[2] * d[3];
  }
}

// The bytes a strided 4-d operand spans (0 when it is empty).
size_t span_bytes(const int64_t* dim, const int64_t* stride, cudnnDataType_t t) {
  int64_t last = 0;
  for (int i = 0; i < 4; ++i) {
    if (dim[i] == 0) return 0;
    last += (dim[i] - 1) * stride[i];
  }
  return static_cast<size_t>(last + 1) * elem_size(t);
}

double read_scalar(const void* p, cudnnDataType_t t) {
  return t == CUDNN_DATA_DOUBLE ? *static_cast<const double*>(p)
                                : static_cast<double>(*static_cast<const float*>(p));
}

// ---- Convolution geometry --------------------------------------------------------------

// One convolution, validated, copied by value into the deferred work.
struct Conv {
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  bool tf32 = false, flip = false;
  int64_t n = 0, c = 0, h = 0, w = 0;  // input
  int64_t k = 0, cg = 0, kg = 0, r = 0, s = 0, groups = 1;
  int64_t p = 0, q = 0;  // output
  int64_t pad_h = 0, pad_w = 0, u = 1, v = 1, dil_h = 1, dil_w = 1;
  int64_t xs[4] = {}, ys[4] = {}, ws[4] = {};
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t x_bytes = 0, y_bytes = 0, w_bytes = 0;
  bool empty() const { return n == 0 || c == 0 || k == 0 || p == 0 || q == 0; }
  int64_t x_at(int64_t ni, int64_t ci, int64_t hi, int64_t wi) const {
    return ni * xs[0] + ci * xs[1] + hi * xs[2] + wi * xs[3];
  }
  int64_t y_at(int64_t ni, int64_t ki, int64_t pi, int64_t qi) const {
    return ni * ys[0] + ki * ys[1] + pi * ys[2] + qi * ys[3];
  }
  // The weight applied at tap (ri, si): flipped for CUDNN_CONVOLUTION.
  int64_t w_at(int64_t ki, int64_t ci, int64_t ri, int64_t si) const {
    if (flip) ri = r - 1 - ri, si = s - 1 - si;
    return ki * ws[0] + ci * ws[1] + ri * ws[2] + si * ws[3];
  }
};

// A descriptor whose shapes disagree: cuDNN answers CUDNN_STATUS_BAD_PARAM.
constexpr cudnnStatus_t kShapeMismatch = CUDNN_STATUS_BAD_PARAM;

int64_t output_dim(int64_t in, int64_t pad, int64_t filter, int64_t dil, int64_t stride) {
  return 1 + (in + 2 * pad - ((filter - 1) * dil + 1)) / stride;
}

cudnnStatus_t check_shapes(const char* what, const cudnnTensorStruct* x,
                           const cudnnFilterStruct* wd, const cudnnConvolutionStruct* cd) {
  if (x == nullptr || wd == nullptr || cd == nullptr || !x->set || !wd->set || !cd->set) {
    return fail(CUDNN_STATUS_BAD_PARAM, what, "a descriptor is null or was never set");
  }
  if (x->type != wd->type) return fail(CUDNN_STATUS_BAD_PARAM, what, "data types differ");
  if (x->dim[1] != wd->dim[1] * cd->groups) {
    return fail(kShapeMismatch, what,
                "input channels " + std::to_string(x->dim[1]) + " != filter channels " +
                    std::to_string(wd->dim[1]) + " x groups " + std::to_string(cd->groups));
  }
  if (wd->dim[0] % cd->groups != 0) {
    return fail(CUDNN_STATUS_BAD_PARAM, what, "output channels not a multiple of the groups");
  }
  for (int i = 0; i < 2; ++i) {
    if ((wd->dim[2 + i] - 1) * cd->dilation[i] + 1 > x->dim[2 + i] + 2 * cd->pad[i]) {
      return fail(CUDNN_STATUS_BAD_PARAM, what,
                  "the dilated filter is larger than the padded input");
    }
  }
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t make_conv(const char* what, const cudnnTensorStruct* x, const cudnnFilterStruct* wd,
                        const cudnnConvolutionStruct* cd, const cudnnTensorStruct* y, Conv* out) {
  cudnnStatus_t st = check_shapes(what, x, wd, cd);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  if (y == nullptr || !y->set) return fail(CUDNN_STATUS_BAD_PARAM, what, "bad output descriptor");
  if (y->type != x->type) return fail(CUDNN_STATUS_BAD_PARAM, what, "data types differ");
  if (!computable(x->type) || cd->compute != x->type) {
    return fail(CUDNN_STATUS_NOT_SUPPORTED, what, "only float and double (same compute type)");
  }
  Conv& cv = *out;
  cv.type = x->type;
  cv.n = x->dim[0], cv.c = x->dim[1], cv.h = x->dim[2], cv.w = x->dim[3];
  cv.k = wd->dim[0], cv.cg = wd->dim[1], cv.r = wd->dim[2], cv.s = wd->dim[3];
  cv.groups = cd->groups, cv.kg = cv.k / cv.groups;
  cv.pad_h = cd->pad[0], cv.pad_w = cd->pad[1], cv.u = cd->stride[0], cv.v = cd->stride[1];
  cv.dil_h = cd->dilation[0], cv.dil_w = cd->dilation[1];
  cv.p = output_dim(cv.h, cv.pad_h, cv.r, cv.dil_h, cv.u);
  cv.q = output_dim(cv.w, cv.pad_w, cv.s, cv.dil_w, cv.v);
  if (y->dim[0] != cv.n || y->dim[1] != cv.k || y->dim[2] != cv.p || y->dim[3] != cv.q) {
    return fail(kShapeMismatch, what,
                "output [" + std::to_string(y->dim[0]) + ", " + std::to_string(y->dim[1]) + ", " +
                    std::to_string(y->dim[2]) + ", " + std::to_string(y->dim[3]) +
                    "] does not match the convolution's [" + std::to_string(cv.n) + ", " +
                    std::to_string(cv.k) + ", " + std::to_string(cv.p) + ", " +
                    std::to_string(cv.q) + "]");
  }
  cv.flip = cd->mode == CUDNN_CONVOLUTION;
  cv.math = cd->math;
  cv.tf32 = cv.type == CUDNN_DATA_FLOAT && cd->math != CUDNN_FMA_MATH;
  std::copy(x->stride, x->stride + 4, cv.xs);
  std::copy(y->stride, y->stride + 4, cv.ys);
  std::copy(wd->stride, wd->stride + 4, cv.ws);
  cv.x_bytes = span_bytes(x->dim, x->stride, cv.type);
  cv.y_bytes = span_bytes(y->dim, y->stride, cv.type);
  cv.w_bytes = span_bytes(wd->dim, wd->stride, cv.type);
  return CUDNN_STATUS_SUCCESS;
}

// ---- The reference loops ---------------------------------------------------------------

struct Blend {
  double alpha = 1.0, beta = 0.0;
  template <typename T>
  void operator()(T& out, double acc) const {
    out = static_cast<T>(alpha * acc + (beta == 0.0 ? 0.0 : beta * static_cast<double>(out)));
  }
};

template <typename T>
double load(const T* p, int64_t i, bool tf32) {
  if constexpr (sizeof(T) == sizeof(float)) {
    if (tf32) return static_cast<double>(round_tf32(p[i]));
  }
  return static_cast<double>(p[i]);
}

// Calls f(ih, iw) for every tap (ri, si) of output (pi, qi) that lands inside the input.
template <typename F>
void for_taps(const Conv& cv, int64_t pi, int64_t qi, const F& f) {
  for (int64_t ri = 0; ri < cv.r; ++ri) {
    const int64_t ih = pi * cv.u - cv.pad_h + ri * cv.dil_h;
    if (ih < 0 || ih >= cv.h) continue;
    for (int64_t si = 0; si < cv.s; ++si) {
      const int64_t iw = qi * cv.v - cv.pad_w + si * cv.dil_w;
      if (iw >= 0 && iw < cv.w) f(ri, si, ih, iw);
    }
  }
}

template <typename T>
void forward(const Conv& cv, Blend b, const T* x, const T* w, T* y) {
  for (int64_t ni = 0; ni < cv.n; ++ni) {
    for (int64_t ki = 0; ki < cv.k; ++ki) {
      const int64_t c0 = ki / cv.kg * cv.cg;
      for (int64_t pi = 0; pi < cv.p; ++pi) {
        for (int64_t qi = 0; qi < cv.q; ++qi) {
          double acc = 0.0;
          for (int64_t ci = 0; ci < cv.cg; ++ci) {
            for_taps(cv, pi, qi, [&](int64_t ri, int64_t si, int64_t ih, int64_t iw) {
              acc += load(x, cv.x_at(ni, c0 + ci, ih, iw), cv.tf32) *
                     load(w, cv.w_at(ki, ci, ri, si), cv.tf32);
            });
          }
          b(y[cv.y_at(ni, ki, pi, qi)], acc);
        }
      }
    }
  }
}

// dx = the adjoint of forward applied to dy: scattered into a packed double buffer.
template <typename T>
void backward_data(const Conv& cv, Blend b, const T* w, const T* dy, T* dx) {
  std::vector<double> acc(static_cast<size_t>(cv.n * cv.c * cv.h * cv.w), 0.0);
  const auto at = [&](int64_t ni, int64_t ci, int64_t ih, int64_t iw) {
    return static_cast<size_t>(((ni * cv.c + ci) * cv.h + ih) * cv.w + iw);
  };
  for (int64_t ni = 0; ni < cv.n; ++ni) {
    for (int64_t ki = 0; ki < cv.k; ++ki) {
      const int64_t c0 = ki / cv.kg * cv.cg;
      for (int64_t pi = 0; pi < cv.p; ++pi) {
        for (int64_t qi = 0; qi < cv.q; ++qi) {
          const double g = load(dy, cv.y_at(ni, ki, pi, qi), cv.tf32);
          for (int64_t ci = 0; ci < cv.cg; ++ci) {
            for_taps(cv, pi, qi, [&](int64_t ri, int64_t si, int64_t ih, int64_t iw) {
              acc[at(ni, c0 + ci, ih, iw)] += g * load(w, cv.w_at(ki, ci, ri, si), cv.tf32);
            });
          }
        }
      }
    }
  }
  for (int64_t ni = 0; ni < cv.n; ++ni)
    for (int64_t ci = 0; ci < cv.c; ++ci)
      for (int64_t ih = 0; ih < cv.h; ++ih)
        for (int64_t iw = 0; iw < cv.w; ++iw)
          b(dx[cv.x_at(ni, ci, ih, iw)], acc[at(ni, ci, ih, iw)]);
}

template <typename T>
void backward_filter(const Conv& cv, Blend b, const T* x, const T* dy, T* dw) {
  for (int64_t ki = 0; ki < cv.k; ++ki) {
    const int64_t c0 = ki / cv.kg * cv.cg;
    for (int64_t ci = 0; ci < cv.cg; ++ci) {
      std::vector<double> acc(static_cast<size_t>(cv.r * cv.s), 0.0);
      for (int64_t ni = 0; ni < cv.n; ++ni) {
        for (int64_t pi = 0; pi < cv.p; ++pi) {
          for (int64_t qi = 0; qi < cv.q; ++qi) {
            const double g = load(dy, cv.y_at(ni, ki, pi, qi), cv.tf32);
            for_taps(cv, pi, qi, [&](int64_t ri, int64_t si, int64_t ih, int64_t iw) {
              acc[static_cast<size_t>(ri * cv.s + si)] +=
                  g * load(x, cv.x_at(ni, c0 + ci, ih, iw), cv.tf32);
            });
          }
        }
      }
      for (int64_t ri = 0; ri < cv.r; ++ri)
        for (int64_t si = 0; si < cv.s; ++si)
          b(dw[cv.w_at(ki, ci, ri, si)], acc[static_cast<size_t>(ri * cv.s + si)]);
    }
  }
}

// ---- Algorithms --------------------------------------------------------------------------

enum class Pass { kForward, kBackwardData, kBackwardFilter };

const char* pass_name(Pass pass) {
  return pass == Pass::kForward ? "fwd" : pass == Pass::kBackwardData ? "bwd_data" : "bwd_filter";
}

int algo_count(Pass pass) {
  if (pass == Pass::kForward) return CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  if (pass == Pass::kBackwardData) return CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
  return CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
}

bool implemented(Pass pass, int algo) {
  return !(pass == Pass::kBackwardFilter && algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD);
}

bool deterministic(Pass pass, int algo) {
  if (pass == Pass::kBackwardData) return algo != CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
  if (pass == Pass::kBackwardFilter) {
    return algo != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 &&
           algo != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
  }
  return true;
}

// The workspace an algorithm asks for: made up, but shape-dependent and zero
// for the implicit-GEMM, direct and fused-Winograd ones.
size_t workspace_bytes(Pass pass, int algo, const Conv& cv) {
  if (cv.empty()) return 0;
  const auto e = static_cast<int64_t>(elem_size(cv.type));
  const int64_t im2col = cv.cg * cv.r * cv.s * cv.p * cv.q * e;
  const int64_t fft = (cv.n * cv.c + cv.k * cv.cg + cv.n * cv.k) * (cv.h + 2 * cv.pad_h) *
                      (cv.w + 2 * cv.pad_w) * e;
  const int64_t tiling = (cv.c + cv.k * cv.cg + cv.k) * 32 * 32 * e;
  const int64_t wino =
      16 * ((cv.n * cv.c + cv.n * cv.k) * ((cv.p + 1) / 2) * ((cv.q + 1) / 2) + cv.k * cv.cg) * e;
  int64_t bytes = 0;
  if (pass == Pass::kForward) {
    const int64_t table[] = {0, cv.cg * cv.r * cv.s * 4, im2col, 0, fft, tiling, 0, wino};
    bytes = table[algo];
  } else if (pass == Pass::kBackwardData) {
    const int64_t table[] = {0, 0, fft, tiling, 0, wino};
    bytes = table[algo];
  } else {
    const int64_t table[] = {0, im2col, fft, cv.k * cv.cg * cv.r * cv.s * e, 0, wino, tiling};
    bytes = table[algo];
  }
  return static_cast<size_t>(bytes);
}

// Fills perf results for every algorithm of the pass, in ascending order, the
// ones that cannot run last. `find` (cudnnFind*Ex): refused algorithms and
// those needing more than `workspace_limit` fail as when cuDNN tries them.
template <typename Perf>
void fill_perf(Pass pass, const Conv& cv, bool find, size_t workspace_limit, int requested,
               int* returned, Perf* results) {
  std::vector<Perf> all;
  for (int a = 0; a < algo_count(pass); ++a) {
    Perf perf;
    std::memset(&perf, 0, sizeof perf);
    perf.algo = static_cast<decltype(perf.algo)>(a);
    perf.memory = workspace_bytes(pass, a, cv);
    perf.status = CUDNN_STATUS_SUCCESS;
    if (!implemented(pass, a) || (find && cudnn_refuses(pass_name(pass), a))) {
      perf.status = CUDNN_STATUS_NOT_SUPPORTED;
    } else if (find && perf.memory > workspace_limit) {
      perf.status = CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED;
    }
    perf.determinism = deterministic(pass, a) ? CUDNN_DETERMINISTIC : CUDNN_NON_DETERMINISTIC;
    perf.mathType = cv.math;
    all.push_back(perf);
  }
  std::stable_partition(all.begin(), all.end(),
                        [](const Perf& p) { return p.status == CUDNN_STATUS_SUCCESS; });
  *returned = std::min(requested, static_cast<int>(all.size()));
  for (int i = 0; i < *returned; ++i) {
    results[i] = all[static_cast<size_t>(i)];
    results[i].time =
        results[i].status == CUDNN_STATUS_SUCCESS ? 0.5f * static_cast<float>(i + 1) : -1.0f;
  }
}

// Whether `algo` may run with the given workspace: NOT_SUPPORTED for one the
// fault injection refuses (or cuDNN lacks), BAD_PARAM for a short workspace.
cudnnStatus_t check_algo(const char* what, Pass pass, int algo, const Conv& cv, const void* ws,
                         size_t ws_bytes, size_t* need) {
  if (algo < 0 || algo >= algo_count(pass)) return fail(CUDNN_STATUS_BAD_PARAM, what, "bad algo");
  if (!implemented(pass, algo) || cudnn_refuses(pass_name(pass), algo)) {
    return fail(CUDNN_STATUS_NOT_SUPPORTED, what,
                "algorithm " + std::to_string(algo) + " is not supported for this configuration");
  }
  *need = workspace_bytes(pass, algo, cv);
  if (ws_bytes < *need || (*need > 0 && ws == nullptr)) {
    return fail(CUDNN_STATUS_BAD_PARAM, what,
                "workspace of " + std::to_string(ws_bytes) + " bytes, algorithm " +
                    std::to_string(algo) + " needs " + std::to_string(*need));
  }
  return CUDNN_STATUS_SUCCESS;
}

// ---- Running a pass ------------------------------------------------------------------

struct PassCall {
  const char* what;
  Pass pass;
  const void* in0;  // fwd: x, bwd_data: w, bwd_filter: x
  const void* in1;  // fwd: w, bwd_data: dy, bwd_filter: dy
  void* out;        // fwd: y, bwd_data: dx, bwd_filter: dw
  size_t in0_bytes, in1_bytes, out_bytes;
};

PassCall describe(const char* what, Pass pass, const Conv& cv, const void* in0, const void* in1,
                  void* out) {
  if (pass == Pass::kForward)
    return {what, pass, in0, in1, out, cv.x_bytes, cv.w_bytes, cv.y_bytes};
  if (pass == Pass::kBackwardData) {
    return {what, pass, in0, in1, out, cv.w_bytes, cv.y_bytes, cv.x_bytes};
  }
  return {what, pass, in0, in1, out, cv.x_bytes, cv.y_bytes, cv.w_bytes};
}

template <typename T>
void compute(const PassCall& call, const Conv& cv, Blend b) {
  const T* in0 = static_cast<const T*>(call.in0);
  const T* in1 = static_cast<const T*>(call.in1);
  T* out = static_cast<T*>(call.out);
  if (call.pass == Pass::kForward) forward(cv, b, in0, in1, out);
  if (call.pass == Pass::kBackwardData) backward_data(cv, b, in0, in1, out);
  if (call.pass == Pass::kBackwardFilter) backward_filter(cv, b, in0, in1, out);
}

// Checks the operands' extents and enqueues the pass (and the workspace scribble).
void enqueue_pass(cudnnHandle_t handle, const PassCall& call, const Conv& cv, Blend b, void* ws,
                  size_t ws_bytes, size_t need) {
  bool ok = check_device_range(call.what, "workSpace", ws, ws_bytes);
  ok = check_device_range(call.what, "input", call.in0, call.in0_bytes) && ok;
  ok = check_device_range(call.what, "filter/gradient", call.in1, call.in1_bytes) && ok;
  ok = check_device_range(call.what, "output", call.out, call.out_bytes) && ok;
  if (!ok) return;  // reported: surfaces at the next synchronisation, as a GPU fault would
  enqueue(handle->stream, call.what, [call, cv, b, ws, need] {
    if (need > 0) std::memset(ws, 0xff, need);
    if (cv.type == CUDNN_DATA_DOUBLE) {
      compute<double>(call, cv, b);
    } else {
      compute<float>(call, cv, b);
    }
  });
}

cudnnStatus_t run_pass(cudnnHandle_t handle, const PassCall& call, const Conv& cv, int algo,
                       const void* alpha, const void* beta, void* ws, size_t ws_bytes) {
  if (handle == nullptr || alpha == nullptr || beta == nullptr || call.in0 == nullptr ||
      call.in1 == nullptr || call.out == nullptr) {
    return fail(CUDNN_STATUS_BAD_PARAM, call.what, "a handle, scalar or data pointer is null");
  }
  size_t need = 0;
  const cudnnStatus_t st = check_algo(call.what, call.pass, algo, cv, ws, ws_bytes, &need);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  const Blend b{read_scalar(alpha, cv.type), read_scalar(beta, cv.type)};
  enqueue_pass(handle, call, cv, b, ws, ws_bytes, need);
  return CUDNN_STATUS_SUCCESS;
}

// cudnnFind*AlgorithmEx: tries every algorithm (they all compute the same) and
// leaves the output written, as cuDNN does.
template <typename Perf>
cudnnStatus_t find_pass(cudnnHandle_t handle, const PassCall& call, const Conv& cv, int requested,
                        int* returned, Perf* results, void* ws, size_t ws_bytes) {
  if (handle == nullptr || returned == nullptr || results == nullptr || requested <= 0 ||
      call.in0 == nullptr || call.in1 == nullptr || call.out == nullptr) {
    return fail(CUDNN_STATUS_BAD_PARAM, call.what, "a null pointer or requestedAlgoCount <= 0");
  }
  fill_perf(call.pass, cv, true, ws_bytes, requested, returned, results);
  enqueue_pass(handle, call, cv, Blend{}, ws, ws_bytes, 0);
  return CUDNN_STATUS_SUCCESS;
}

template <typename Perf>
cudnnStatus_t get_pass(cudnnHandle_t handle, const char* what, Pass pass, const Conv& cv,
                       int requested, int* returned, Perf* results) {
  if (handle == nullptr || returned == nullptr || results == nullptr || requested <= 0) {
    return fail(CUDNN_STATUS_BAD_PARAM, what, "a null pointer or requestedAlgoCount <= 0");
  }
  fill_perf(pass, cv, false, 0, requested, returned, results);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t get_workspace(cudnnHandle_t handle, const char* what, Pass pass, const Conv& cv,
                            int algo, size_t* bytes) {
  if (handle == nullptr || bytes == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, what, "null");
  if (algo < 0 || algo >= algo_count(pass)) return fail(CUDNN_STATUS_BAD_PARAM, what, "bad algo");
  if (!implemented(pass, algo)) return fail(CUDNN_STATUS_NOT_SUPPORTED, what, "not implemented");
  *bytes = workspace_bytes(pass, algo, cv);
  return CUDNN_STATUS_SUCCESS;
}

// ---- cudnnAddTensor ----------------------------------------------------------------------

template <typename T>
void add_tensor(const cudnnTensorStruct& a, const cudnnTensorStruct& c, Blend bl, const T* ap,
                T* cp) {
  int64_t as[4];
  for (int i = 0; i < 4; ++i) as[i] = a.dim[i] == 1 ? 0 : a.stride[i];
  for (int64_t n = 0; n < c.dim[0]; ++n)
    for (int64_t ch = 0; ch < c.dim[1]; ++ch)
      for (int64_t h = 0; h < c.dim[2]; ++h)
        for (int64_t w = 0; w < c.dim[3]; ++w) {
          const double v = static_cast<double>(ap[n * as[0] + ch * as[1] + h * as[2] + w * as[3]]);
          bl(cp[n * c.stride[0] + ch * c.stride[1] + h * c.stride[2] + w * c.stride[3]], v);
        }
}

}  // namespace
}  // namespace emu
}  // namespace tandem

namespace emu = tandem::emu;
using emu::fail;

// ---- Library and handles -----------------------------------------------------------------

size_t CUDNNWINAPI cudnnGetVersion(void) { return CUDNN_VERSION; }
size_t CUDNNWINAPI cudnnGetCudartVersion(void) { return CUDART_VERSION; }

cudnnStatus_t CUDNNWINAPI cudnnCreate(cudnnHandle_t* handle) {
  if (handle == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnCreate", "handle is null");
  *handle = new cudnnContext();
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnDestroy(cudnnHandle_t handle) {
  if (handle == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnDestroy", "handle is null");
  delete handle;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetStream", "handle is null");
  handle->stream = stream;
  return CUDNN_STATUS_SUCCESS;
}

const char* CUDNNWINAPI cudnnGetErrorString(cudnnStatus_t status) {
  switch (static_cast<int>(status)) {
#define TANDEM_CUDNN_STATUS(name) \
  case name:                      \
    return #name;
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_SUCCESS)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_NOT_INITIALIZED)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_SERIALIZATION_VERSION_MISMATCH)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_DEPRECATED)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_LICENSE_ERROR)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_RUNTIME_IN_PROGRESS)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_RUNTIME_FP_OVERFLOW)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_BAD_PARAM)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_BAD_PARAM_NULL_POINTER)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_BAD_PARAM_OUT_OF_BOUND)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_BAD_PARAM_CUDA_GRAPH_MISMATCH)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_NOT_SUPPORTED)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_NOT_SUPPORTED_SHAPE)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_NOT_SUPPORTED_LAYOUT)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_NOT_SUPPORTED_PADDING)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_INTERNAL_ERROR)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_EXECUTION_FAILED)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_EXECUTION_FAILED_CUBLAS)
    TANDEM_CUDNN_STATUS(CUDNN_STATUS_EXECUTION_FAILED_CUDART)
#undef TANDEM_CUDNN_STATUS
    default:
      return "CUDNN_UNKNOWN_STATUS";
  }
}

// The thread's last error message, cleared once read.
void CUDNNWINAPI cudnnGetLastErrorString(char* message, size_t max_size) {
  if (message == nullptr || max_size == 0) return;
  const std::string& text = emu::last_error;
  const size_t n = std::min(text.size(), max_size - 1);
  std::memcpy(message, text.data(), n);
  message[n] = '\0';
  emu::last_error.clear();
}

// ---- Tensor descriptors -------------------------------------------------------------------

cudnnStatus_t CUDNNWINAPI cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* desc) {
  if (desc == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnCreateTensorDescriptor", "null");
  *desc = new cudnnTensorStruct();
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t desc) {
  delete desc;  // null is allowed
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnSetTensor4dDescriptorEx(cudnnTensorDescriptor_t desc,
                                                       cudnnDataType_t type, int n, int c, int h,
                                                       int w, int ns, int cs, int hs, int ws) {
  const char* what = "cudnnSetTensor4dDescriptorEx";
  if (desc == nullptr || !emu::valid_type(type) || n < 0 || c < 0 || h < 0 || w < 0 || ns < 0 ||
      cs < 0 || hs < 0 || ws < 0) {
    return fail(CUDNN_STATUS_BAD_PARAM, what, "null descriptor, bad type or negative size");
  }
  const int64_t dim[4] = {n, c, h, w}, stride[4] = {ns, cs, hs, ws};
  if (static_cast<int64_t>(n) * c * h * w > INT32_MAX) {
    return fail(CUDNN_STATUS_NOT_SUPPORTED, what, "more than 2^31 - 1 elements");
  }
  desc->type = type;
  std::copy(dim, dim + 4, desc->dim);
  std::copy(stride, stride + 4, desc->stride);
  desc->set = true;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t desc,
                                                     cudnnTensorFormat_t format,
                                                     cudnnDataType_t type, int n, int c, int h,
                                                     int w) {
  if (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC) {
    return fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetTensor4dDescriptor", "format not NCHW/NHWC");
  }
  const int64_t dim[4] = {n, c, h, w};
  int64_t s[4];
  emu::packed_strides(format, dim, s);
  for (int64_t v : s) {
    if (v > INT32_MAX)
      return fail(CUDNN_STATUS_NOT_SUPPORTED, "cudnnSetTensor4dDescriptor", "size");
  }
  return cudnnSetTensor4dDescriptorEx(desc, type, n, c, h, w, static_cast<int>(s[0]),
                                      static_cast<int>(s[1]), static_cast<int>(s[2]),
                                      static_cast<int>(s[3]));
}

// ---- Filter descriptors -------------------------------------------------------------------

cudnnStatus_t CUDNNWINAPI cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* desc) {
  if (desc == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnCreateFilterDescriptor", "null");
  *desc = new cudnnFilterStruct();
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t desc) {
  delete desc;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t desc,
                                                     cudnnDataType_t type,
                                                     cudnnTensorFormat_t format, int k, int c,
                                                     int h, int w) {
  if (desc == nullptr || !emu::valid_type(type) || k < 0 || c < 0 || h < 0 || w < 0 ||
      (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC)) {
    return fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetFilter4dDescriptor",
                "null descriptor, bad type or format, or negative size");
  }
  desc->type = type;
  const int64_t dim[4] = {k, c, h, w};
  std::copy(dim, dim + 4, desc->dim);
  emu::packed_strides(format, desc->dim, desc->stride);
  desc->set = true;
  return CUDNN_STATUS_SUCCESS;
}

// ---- Convolution descriptors --------------------------------------------------------------

cudnnStatus_t CUDNNWINAPI cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* desc) {
  if (desc == nullptr)
    return fail(CUDNN_STATUS_BAD_PARAM, "cudnnCreateConvolutionDescriptor", "null");
  *desc = new cudnnConvolutionStruct();
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t desc) {
  delete desc;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t desc,
                                                          int pad_h, int pad_w, int u, int v,
                                                          int dilation_h, int dilation_w,
                                                          cudnnConvolutionMode_t mode,
                                                          cudnnDataType_t compute) {
  if (desc == nullptr || pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dilation_h <= 0 ||
      dilation_w <= 0 || (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION) ||
      !emu::valid_type(compute)) {
    return fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetConvolution2dDescriptor",
                "null descriptor, negative padding, stride or dilation < 1, or bad mode/type");
  }
  desc->pad[0] = pad_h, desc->pad[1] = pad_w;
  desc->stride[0] = u, desc->stride[1] = v;
  desc->dilation[0] = dilation_h, desc->dilation[1] = dilation_w;
  desc->mode = mode;
  desc->compute = compute;
  desc->set = true;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t desc,
                                                        int groups) {
  if (desc == nullptr || groups < 1) {
    return fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetConvolutionGroupCount", "null or groups < 1");
  }
  desc->groups = groups;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t desc,
                                                      cudnnMathType_t math) {
  if (desc == nullptr || math < CUDNN_DEFAULT_MATH || math > CUDNN_FMA_MATH) {
    return fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetConvolutionMathType", "null or bad math type");
  }
  desc->math = math;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolution2dForwardOutputDim(
    const cudnnConvolutionDescriptor_t conv, const cudnnTensorDescriptor_t x,
    const cudnnFilterDescriptor_t w, int* n, int* c, int* h, int* wo) {
  const char* what = "cudnnGetConvolution2dForwardOutputDim";
  const cudnnStatus_t st = emu::check_shapes(what, x, w, conv);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  if (n == nullptr || c == nullptr || h == nullptr || wo == nullptr) {
    return fail(CUDNN_STATUS_BAD_PARAM, what, "null output pointer");
  }
  *n = static_cast<int>(x->dim[0]);
  *c = static_cast<int>(w->dim[0]);
  *h = static_cast<int>(
      emu::output_dim(x->dim[2], conv->pad[0], w->dim[2], conv->dilation[0], conv->stride[0]));
  *wo = static_cast<int>(
      emu::output_dim(x->dim[3], conv->pad[1], w->dim[3], conv->dilation[1], conv->stride[1]));
  return CUDNN_STATUS_SUCCESS;
}

// ---- Algorithm queries --------------------------------------------------------------------

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionForwardAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t w,
    const cudnnConvolutionDescriptor_t conv, const cudnnTensorDescriptor_t y, const int requested,
    int* returned, cudnnConvolutionFwdAlgoPerf_t* results) {
  const char* what = "cudnnGetConvolutionForwardAlgorithm_v7";
  emu::Conv cv;
  const cudnnStatus_t st = emu::make_conv(what, x, w, conv, y, &cv);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  return emu::get_pass(handle, what, emu::Pass::kForward, cv, requested, returned, results);
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardDataAlgorithm_v7(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t w, const cudnnTensorDescriptor_t dy,
    const cudnnConvolutionDescriptor_t conv, const cudnnTensorDescriptor_t dx, const int requested,
    int* returned, cudnnConvolutionBwdDataAlgoPerf_t* results) {
  const char* what = "cudnnGetConvolutionBackwardDataAlgorithm_v7";
  emu::Conv cv;
  const cudnnStatus_t st = emu::make_conv(what, dx, w, conv, dy, &cv);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  return emu::get_pass(handle, what, emu::Pass::kBackwardData, cv, requested, returned, results);
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardFilterAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t x, const cudnnTensorDescriptor_t dy,
    const cudnnConvolutionDescriptor_t conv, const cudnnFilterDescriptor_t dw, const int requested,
    int* returned, cudnnConvolutionBwdFilterAlgoPerf_t* results) {
  const char* what = "cudnnGetConvolutionBackwardFilterAlgorithm_v7";
  emu::Conv cv;
  const cudnnStatus_t st = emu::make_conv(what, x, dw, conv, dy, &cv);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  return emu::get_pass(handle, what, emu::Pass::kBackwardFilter, cv, requested, returned, results);
}

cudnnStatus_t CUDNNWINAPI cudnnFindConvolutionForwardAlgorithmEx(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xd, const void* x,
    const cudnnFilterDescriptor_t wd, const void* w, const cudnnConvolutionDescriptor_t conv,
    const cudnnTensorDescriptor_t yd, void* y, const int requested, int* returned,
    cudnnConvolutionFwdAlgoPerf_t* results, void* ws, size_t ws_bytes) {
  const char* what = "cudnnFindConvolutionForwardAlgorithmEx";
  emu::Conv cv;
  const cudnnStatus_t st = emu::make_conv(what, xd, wd, conv, yd, &cv);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  return emu::find_pass(handle, emu::describe(what, emu::Pass::kForward, cv, x, w, y), cv,
                        requested, returned, results, ws, ws_bytes);
}

cudnnStatus_t CUDNNWINAPI cudnnFindConvolutionBackwardDataAlgorithmEx(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t wd, const void* w,
    const cudnnTensorDescriptor_t dyd, const void* dy, const cudnnConvolutionDescriptor_t conv,
    const cudnnTensorDescriptor_t dxd, void* dx, const int requested, int* returned,
    cudnnConvolutionBwdDataAlgoPerf_t* results, void* ws, size_t ws_bytes) {
  const char* what = "cudnnFindConvolutionBackwardDataAlgorithmEx";
  emu::Conv cv;
  const cudnnStatus_t st = emu::make_conv(what, dxd, wd, conv, dyd, &cv);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  return emu::find_pass(handle, emu::describe(what, emu::Pass::kBackwardData, cv, w, dy, dx), cv,
                        requested, returned, results, ws, ws_bytes);
}

cudnnStatus_t CUDNNWINAPI cudnnFindConvolutionBackwardFilterAlgorithmEx(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xd, const void* x,
    const cudnnTensorDescriptor_t dyd, const void* dy, const cudnnConvolutionDescriptor_t conv,
    const cudnnFilterDescriptor_t dwd, void* dw, const int requested, int* returned,
    cudnnConvolutionBwdFilterAlgoPerf_t* results, void* ws, size_t ws_bytes) {
  const char* what = "cudnnFindConvolutionBackwardFilterAlgorithmEx";
  emu::Conv cv;
  const cudnnStatus_t st = emu::make_conv(what, xd, dwd, conv, dyd, &cv);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  return emu::find_pass(handle, emu::describe(what, emu::Pass::kBackwardFilter, cv, x, dy, dw), cv,
                        requested, returned, results, ws, ws_bytes);
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionForwardWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t w,
    const cudnnConvolutionDescriptor_t conv, const cudnnTensorDescriptor_t y,
    cudnnConvolutionFwdAlgo_t algo, size_t* bytes) {
  const char* what = "cudnnGetConvolutionForwardWorkspaceSize";
  emu::Conv cv;
  const cudnnStatus_t st = emu::make_conv(what, x, w, conv, y, &cv);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  return emu::get_workspace(handle, what, emu::Pass::kForward, cv, algo, bytes);
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t w, const cudnnTensorDescriptor_t dy,
    const cudnnConvolutionDescriptor_t conv, const cudnnTensorDescriptor_t dx,
    cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
  const char* what = "cudnnGetConvolutionBackwardDataWorkspaceSize";
  emu::Conv cv;
  const cudnnStatus_t st = emu::make_conv(what, dx, w, conv, dy, &cv);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  return emu::get_workspace(handle, what, emu::Pass::kBackwardData, cv, algo, bytes);
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t x, const cudnnTensorDescriptor_t dy,
    const cudnnConvolutionDescriptor_t conv, const cudnnFilterDescriptor_t dw,
    cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
  const char* what = "cudnnGetConvolutionBackwardFilterWorkspaceSize";
  emu::Conv cv;
  const cudnnStatus_t st = emu::make_conv(what, x, dw, conv, dy, &cv);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  return emu::get_workspace(handle, what, emu::Pass::kBackwardFilter, cv, algo, bytes);
}

// ---- Running the passes -------------------------------------------------------------------

cudnnStatus_t CUDNNWINAPI cudnnConvolutionForward(cudnnHandle_t handle, const void* alpha,
                                                  const cudnnTensorDescriptor_t xd, const void* x,
                                                  const cudnnFilterDescriptor_t wd, const void* w,
                                                  const cudnnConvolutionDescriptor_t conv,
                                                  cudnnConvolutionFwdAlgo_t algo, void* ws,
                                                  size_t ws_bytes, const void* beta,
                                                  const cudnnTensorDescriptor_t yd, void* y) {
  const char* what = "cudnnConvolutionForward";
  emu::Conv cv;
  const cudnnStatus_t st = emu::make_conv(what, xd, wd, conv, yd, &cv);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  return emu::run_pass(handle, emu::describe(what, emu::Pass::kForward, cv, x, w, y), cv, algo,
                       alpha, beta, ws, ws_bytes);
}

cudnnStatus_t CUDNNWINAPI cudnnConvolutionBackwardData(
    cudnnHandle_t handle, const void* alpha, const cudnnFilterDescriptor_t wd, const void* w,
    const cudnnTensorDescriptor_t dyd, const void* dy, const cudnnConvolutionDescriptor_t conv,
    cudnnConvolutionBwdDataAlgo_t algo, void* ws, size_t ws_bytes, const void* beta,
    const cudnnTensorDescriptor_t dxd, void* dx) {
  const char* what = "cudnnConvolutionBackwardData";
  emu::Conv cv;
  const cudnnStatus_t st = emu::make_conv(what, dxd, wd, conv, dyd, &cv);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  return emu::run_pass(handle, emu::describe(what, emu::Pass::kBackwardData, cv, w, dy, dx), cv,
                       algo, alpha, beta, ws, ws_bytes);
}

cudnnStatus_t CUDNNWINAPI cudnnConvolutionBackwardFilter(
    cudnnHandle_t handle, const void* alpha, const cudnnTensorDescriptor_t xd, const void* x,
    const cudnnTensorDescriptor_t dyd, const void* dy, const cudnnConvolutionDescriptor_t conv,
    cudnnConvolutionBwdFilterAlgo_t algo, void* ws, size_t ws_bytes, const void* beta,
    const cudnnFilterDescriptor_t dwd, void* dw) {
  const char* what = "cudnnConvolutionBackwardFilter";
  emu::Conv cv;
  const cudnnStatus_t st = emu::make_conv(what, xd, dwd, conv, dyd, &cv);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  return emu::run_pass(handle, emu::describe(what, emu::Pass::kBackwardFilter, cv, x, dy, dw), cv,
                       algo, alpha, beta, ws, ws_bytes);
}

// C = alpha A + beta C, A broadcast along its dimensions of size 1.
cudnnStatus_t CUDNNWINAPI cudnnAddTensor(cudnnHandle_t handle, const void* alpha,
                                         const cudnnTensorDescriptor_t ad, const void* a,
                                         const void* beta, const cudnnTensorDescriptor_t cd,
                                         void* c) {
  const char* what = "cudnnAddTensor";
  if (handle == nullptr || alpha == nullptr || beta == nullptr || a == nullptr || c == nullptr ||
      ad == nullptr || cd == nullptr || !ad->set || !cd->set || ad->type != cd->type) {
    return fail(CUDNN_STATUS_BAD_PARAM, what, "null pointer, unset descriptor or types differ");
  }
  for (int i = 0; i < 4; ++i) {
    if (ad->dim[i] != cd->dim[i] && ad->dim[i] != 1) {
      return fail(CUDNN_STATUS_BAD_PARAM, what, "A's dimensions must be C's or 1");
    }
  }
  if (!emu::computable(cd->type)) return fail(CUDNN_STATUS_NOT_SUPPORTED, what, "float/double");
  bool ok = emu::check_device_range(what, "A", a, emu::span_bytes(ad->dim, ad->stride, ad->type));
  ok = emu::check_device_range(what, "C", c, emu::span_bytes(cd->dim, cd->stride, cd->type)) && ok;
  if (!ok) return CUDNN_STATUS_SUCCESS;  // reported: surfaces at the next synchronisation
  const emu::Blend b{emu::read_scalar(alpha, cd->type), emu::read_scalar(beta, cd->type)};
  const cudnnTensorStruct as = *ad, cs = *cd;
  emu::enqueue(handle->stream, what, [as, cs, b, a, c] {
    if (cs.type == CUDNN_DATA_DOUBLE) {
      emu::add_tensor(as, cs, b, static_cast<const double*>(a), static_cast<double*>(c));
    } else {
      emu::add_tensor(as, cs, b, static_cast<const float*>(a), static_cast<float*>(c));
    }
  });
  return CUDNN_STATUS_SUCCESS;
}
