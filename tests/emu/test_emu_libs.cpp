// Self-test of the emulated cuBLAS and cuDNN (src/emu/cublas.cpp, cudnn.cpp):
// the library calls, made through the real headers on emulated device memory,
// against naive float64 loops written here (a second, independent statement
// of each formula), plus argument errors, fault injection and an adjoint check
// (<dy, conv(x, w)> == <conv_bwd_data(w, dy), x> == <conv_bwd_filter(x, dy), w>)
// that holds whatever the reference says. Uses nothing of tandem but src/emu.
#include <cublas_v2.h>
#include <cudnn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "emu/emu.h"

namespace {

namespace emu = tandem::emu;

// ---- Helpers ------------------------------------------------------------------------

template <typename T>
std::vector<T> random_vector(size_t n, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> v(n);
  for (T& x : v) x = static_cast<T>(dist(gen));
  return v;
}

// A device buffer holding a copy of `host`, read back with get().
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(const std::vector<T>& host) : n_(host.size()) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&p_), bytes()), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(p_, host.data(), bytes(), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return p_; }
  size_t bytes() const { return std::max<size_t>(n_, 1) * sizeof(T); }
  std::vector<T> read() const {
    std::vector<T> host(n_);
    EXPECT_EQ(cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }

 private:
  size_t n_;
  T* p_ = nullptr;
};

template <typename T>
double tolerance() {
  return std::is_same<T, float>::value ? 2e-5 : 1e-12;
}

template <typename T>
void expect_close(const std::vector<T>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  int shown = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= tol * (1.0 + std::fabs(want[i]))) && shown++ < 5) {
      ADD_FAILURE() << "index " << i << ": got " << got[i] << ", want " << want[i];
    }
  }
}

// Sets (or unsets, value nullptr) a fault-injection variable and rereads them.
void set_fault(const char* name, const char* value) {
  if (value != nullptr) {
    setenv(name, value, 1);
  } else {
    unsetenv(name);
  }
  emu::reload_faults();
}

// ---- cuBLAS ---------------------------------------------------------------------------

struct GemmCase {
  cublasOperation_t ta, tb;
  int m, n, k, pad, batch;
  double alpha, beta;
};

// C_b = alpha op(A_b) op(B_b) + beta C_b, column-major, stated element by element.
template <typename T>
std::vector<double> gemm_reference(const GemmCase& g, int lda, int ldb, int ldc, long long sa,
                                   long long sb, long long sc, const std::vector<T>& a,
                                   const std::vector<T>& b, const std::vector<T>& c) {
  std::vector<double> out(c.begin(), c.end());
  for (int bt = 0; bt < g.batch; ++bt) {
    for (int i = 0; i < g.m; ++i) {
      for (int j = 0; j < g.n; ++j) {
        double sum = 0.0;
        for (int l = 0; l < g.k; ++l) {
          const double av =
              g.ta == CUBLAS_OP_N ? a[bt * sa + i + l * lda] : a[bt * sa + l + i * lda];
          const double bv =
              g.tb == CUBLAS_OP_N ? b[bt * sb + l + j * ldb] : b[bt * sb + j + l * ldb];
          sum += av * bv;
        }
        double& cv = out[static_cast<size_t>(bt * sc + i + j * ldc)];
        cv = g.alpha * sum + (g.beta == 0.0 ? 0.0 : g.beta * cv);
      }
    }
  }
  return out;
}

cublasStatus_t gemm_call(cublasHandle_t h, const GemmCase& g, const float* alpha, const float* a,
                         int lda, long long sa, const float* b, int ldb, long long sb,
                         const float* beta, float* c, int ldc, long long sc) {
  return cublasSgemmStridedBatched(h, g.ta, g.tb, g.m, g.n, g.k, alpha, a, lda, sa, b, ldb, sb,
                                   beta, c, ldc, sc, g.batch);
}
cublasStatus_t gemm_call(cublasHandle_t h, const GemmCase& g, const double* alpha, const double* a,
                         int lda, long long sa, const double* b, int ldb, long long sb,
                         const double* beta, double* c, int ldc, long long sc) {
  return cublasDgemmStridedBatched(h, g.ta, g.tb, g.m, g.n, g.k, alpha, a, lda, sa, b, ldb, sb,
                                   beta, c, ldc, sc, g.batch);
}

template <typename T>
void check_gemm(const GemmCase& g, bool nan_in_c) {
  const int ra = g.ta == CUBLAS_OP_N ? g.m : g.k, ca = g.ta == CUBLAS_OP_N ? g.k : g.m;
  const int rb = g.tb == CUBLAS_OP_N ? g.k : g.n, cb = g.tb == CUBLAS_OP_N ? g.n : g.k;
  const int lda = ra + g.pad, ldb = rb + g.pad, ldc = g.m + g.pad;
  const long long sa = static_cast<long long>(lda) * ca + 5,
                  sb = static_cast<long long>(ldb) * cb + 3;
  const long long sc = static_cast<long long>(ldc) * g.n + 1;
  const auto a = random_vector<T>(static_cast<size_t>(sa * g.batch), 1);
  const auto b = random_vector<T>(static_cast<size_t>(sb * g.batch), 2);
  auto c = random_vector<T>(static_cast<size_t>(sc * g.batch), 3);
  if (nan_in_c) c.assign(c.size(), std::numeric_limits<T>::quiet_NaN());
  std::vector<double> want = gemm_reference(g, lda, ldb, ldc, sa, sb, sc, a, b, c);
  for (size_t i = 0; i < want.size(); ++i) {  // padding keeps its value, NaN or not
    if (std::isnan(want[i]) && !nan_in_c) ADD_FAILURE() << "reference NaN at " << i;
  }
  DeviceBuffer<T> da(a), db(b), dc(c);
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const T alpha = static_cast<T>(g.alpha), beta = static_cast<T>(g.beta);
  ASSERT_EQ(gemm_call(h, g, &alpha, da.get(), lda, sa, db.get(), ldb, sb, &beta, dc.get(), ldc, sc),
            CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<T> got = dc.read();
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i]) && std::isnan(static_cast<double>(got[i]))) continue;  // untouched pad
    if (std::fabs(static_cast<double>(got[i]) - want[i]) >
        tolerance<T>() * (1 + std::fabs(want[i]))) {
      ADD_FAILURE() << "ta " << g.ta << " tb " << g.tb << " index " << i << ": got " << got[i]
                    << ", want " << want[i];
      break;
    }
  }
  cublasDestroy(h);
}

TEST(EmuCublas, GemmMatchesNaiveLoopsForAllTransposes) {
  for (cublasOperation_t ta : {CUBLAS_OP_N, CUBLAS_OP_T}) {
    for (cublasOperation_t tb : {CUBLAS_OP_N, CUBLAS_OP_T}) {
      check_gemm<float>({ta, tb, 7, 5, 9, 3, 3, 0.7, -0.3}, false);
      check_gemm<double>({ta, tb, 7, 5, 9, 3, 3, 0.7, -0.3}, false);
      check_gemm<double>({ta, tb, 1, 33, 2, 0, 1, 1.0, 1.0}, false);
    }
  }
}

TEST(EmuCublas, BetaZeroDoesNotReadC) {
  check_gemm<float>({CUBLAS_OP_T, CUBLAS_OP_N, 6, 3, 5, 2, 2, 1.5, 0.0}, true);
  check_gemm<double>({CUBLAS_OP_N, CUBLAS_OP_T, 6, 3, 5, 0, 2, 1.5, 0.0}, true);
}

TEST(EmuCublas, KZeroScalesC) {
  check_gemm<double>({CUBLAS_OP_N, CUBLAS_OP_N, 4, 3, 0, 1, 2, 2.0, 0.5}, false);
}

TEST(EmuCublas, SgemmNonBatchedAndBroadcastStride) {
  // A batch stride of 0 broadcasts A over the batch.
  const int m = 3, n = 4, k = 5;
  const auto a = random_vector<double>(m * k, 4), b = random_vector<double>(2 * k * n, 5);
  DeviceBuffer<double> da(a), db(b), dc(std::vector<double>(2 * m * n, 0.0));
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const double one = 1.0, zero = 0.0;
  ASSERT_EQ(cublasDgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, da.get(), m, 0,
                                      db.get(), k, k * n, &zero, dc.get(), m, m * n, 2),
            CUBLAS_STATUS_SUCCESS);
  const auto c = dc.read();
  for (int bt = 0; bt < 2; ++bt) {
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < n; ++j) {
        double want = 0.0;
        for (int l = 0; l < k; ++l) want += a[i + l * m] * b[bt * k * n + l + j * k];
        EXPECT_NEAR(c[bt * m * n + i + j * m], want, 1e-12);
      }
    }
  }
  // The non-batched entry points compute batch 0.
  std::vector<float> af(a.begin(), a.end()), bf(b.begin(), b.begin() + k * n);
  DeviceBuffer<float> fa(af), fb(bf), fc(std::vector<float>(m * n, 0.0f));
  const float onef = 1.0f, zerof = 0.0f;
  ASSERT_EQ(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &onef, fa.get(), m, fb.get(), k,
                        &zerof, fc.get(), m),
            CUBLAS_STATUS_SUCCESS);
  const auto cf = fc.read();
  for (int i = 0; i < m * n; ++i) EXPECT_NEAR(cf[i], c[i], 1e-5);
  cublasDestroy(h);
}

TEST(EmuCublas, InvalidArgumentsAsDocumented) {
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  DeviceBuffer<float> buf(std::vector<float>(64, 0.0f));
  float* p = buf.get();
  const float one = 1.0f;
  const auto call = [&](cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda,
                        int ldb, int ldc, int batch) {
    return cublasSgemmStridedBatched(h, ta, tb, m, n, k, &one, p, lda, 0, p, ldb, 0, &one, p, ldc,
                                     0, batch);
  };
  const auto N = CUBLAS_OP_N, T = CUBLAS_OP_T;
  EXPECT_EQ(call(N, N, 4, 2, 3, 3, 3, 4, 1), CUBLAS_STATUS_INVALID_VALUE);  // lda < m
  EXPECT_EQ(call(T, N, 4, 2, 3, 2, 3, 4, 1), CUBLAS_STATUS_INVALID_VALUE);  // lda < k
  EXPECT_EQ(call(N, N, 4, 2, 3, 4, 2, 4, 1), CUBLAS_STATUS_INVALID_VALUE);  // ldb < k
  EXPECT_EQ(call(N, T, 4, 2, 3, 4, 1, 4, 1), CUBLAS_STATUS_INVALID_VALUE);  // ldb < n
  EXPECT_EQ(call(N, N, 4, 2, 3, 4, 3, 3, 1), CUBLAS_STATUS_INVALID_VALUE);  // ldc < m
  EXPECT_EQ(call(N, N, 0, 2, 3, 0, 3, 0, 1), CUBLAS_STATUS_INVALID_VALUE);  // ld < 1
  EXPECT_EQ(call(N, N, -1, 2, 3, 4, 3, 4, 1), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(call(N, N, 4, 2, 3, 4, 3, 4, -1), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(call(static_cast<cublasOperation_t>(7), N, 4, 2, 3, 4, 3, 4, 1),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(call(N, N, 0, 2, 3, 1, 3, 1, 1), CUBLAS_STATUS_SUCCESS);  // empty: a quick return
  EXPECT_EQ(cublasSgemm(nullptr, N, N, 1, 1, 1, &one, p, 1, p, 1, &one, p, 1),
            CUBLAS_STATUS_NOT_INITIALIZED);
  EXPECT_EQ(cublasSgemm(h, N, N, 1, 1, 1, nullptr, p, 1, p, 1, &one, p, 1),
            CUBLAS_STATUS_INVALID_VALUE);
  int v = -1;
  EXPECT_EQ(cublasGetProperty(MAJOR_VERSION, &v), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(v, CUBLAS_VER_MAJOR);
  EXPECT_STREQ(cublasGetStatusName(CUBLAS_STATUS_INVALID_VALUE), "CUBLAS_STATUS_INVALID_VALUE");
  EXPECT_EQ(cublasSetMathMode(h, static_cast<cublasMath_t>(5)), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasSetWorkspace(h, p + 1, 16), CUBLAS_STATUS_INVALID_VALUE);  // not 256-aligned
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  cublasDestroy(h);
}

TEST(EmuCublas, Tf32MathRoundsFloatInputs) {
  // 1 + 2^-12 is not a TF32 value: it rounds to 1, so TF32 loses the 2^-12.
  const float x = 1.0f + std::ldexp(1.0f, -12);
  DeviceBuffer<float> a(std::vector<float>{x}), b(std::vector<float>{1.0f}),
      c(std::vector<float>{0});
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const float one = 1.0f, zero = 0.0f;
  const auto product = [&](cublasMath_t mode) {
    EXPECT_EQ(cublasSetMathMode(h, mode), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, a.get(), 1, b.get(), 1, &zero,
                          c.get(), 1),
              CUBLAS_STATUS_SUCCESS);
    return c.read()[0];
  };
  EXPECT_EQ(product(CUBLAS_DEFAULT_MATH), x);
  EXPECT_EQ(product(CUBLAS_TF32_TENSOR_OP_MATH), 1.0f);
  cublasDestroy(h);
}

TEST(EmuCublas, FaultInjectionFailsTheNthGemm) {
  set_fault("TANDEM_EMU_CUBLAS_FAIL_AT", "2");
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  DeviceBuffer<double> buf(std::vector<double>(4, 1.0));
  const double one = 1.0;
  const auto gemm = [&] {
    return cublasDgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, buf.get(), 1, buf.get() + 1, 1,
                       &one, buf.get() + 2, 1);
  };
  EXPECT_EQ(gemm(), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(gemm(), CUBLAS_STATUS_EXECUTION_FAILED);
  EXPECT_EQ(gemm(), CUBLAS_STATUS_SUCCESS);
  set_fault("TANDEM_EMU_CUBLAS_FAIL_AT", nullptr);
  EXPECT_EQ(buf.read()[2], 3.0);  // two GEMMs ran
  cublasDestroy(h);
}

// ---- cuDNN ----------------------------------------------------------------------------

struct ConvCase {
  int n, c, h, w, k, r, s, pad_h, pad_w, u, v, dil_h, dil_w, groups;
  cudnnConvolutionMode_t mode;
  int p() const { return (h + 2 * pad_h - (r - 1) * dil_h - 1) / u + 1; }
  int q() const { return (w + 2 * pad_w - (s - 1) * dil_w - 1) / v + 1; }
  size_t x_size() const { return static_cast<size_t>(n * c * h * w); }
  size_t y_size() const { return static_cast<size_t>(n * k * p() * q()); }
  size_t w_size() const { return static_cast<size_t>(k * (c / groups) * r * s); }
};

const ConvCase kConvCases[] = {
    {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION},
    {1, 2, 9, 8, 3, 3, 2, 0, 1, 2, 3, 1, 1, 1, CUDNN_CROSS_CORRELATION},  // strides
    {2, 2, 9, 7, 2, 3, 3, 2, 1, 1, 2, 2, 3, 1, CUDNN_CROSS_CORRELATION},  // dilation
    {2, 6, 5, 5, 9, 3, 1, 1, 0, 1, 1, 1, 1, 3, CUDNN_CROSS_CORRELATION},  // groups
    {1, 4, 6, 5, 4, 2, 3, 1, 2, 2, 1, 1, 2, 4, CUDNN_CONVOLUTION},        // depthwise, flipped
    {3, 1, 1, 1, 5, 1, 1, 0, 0, 1, 1, 1, 1, 1, CUDNN_CONVOLUTION},        // 1x1 on 1x1
};

// Input element feeding output (pi, qi) through tap (ri, si), or -1 (padding).
long x_index(const ConvCase& t, int ni, int ci, int pi, int qi, int ri, int si) {
  const int ih = pi * t.u + ri * t.dil_h - t.pad_h, iw = qi * t.v + si * t.dil_w - t.pad_w;
  if (ih < 0 || ih >= t.h || iw < 0 || iw >= t.w) return -1;
  return ((static_cast<long>(ni) * t.c + ci) * t.h + ih) * t.w + iw;
}
long w_index(const ConvCase& t, int ki, int cj, int ri, int si) {
  if (t.mode == CUDNN_CONVOLUTION) ri = t.r - 1 - ri, si = t.s - 1 - si;
  return ((static_cast<long>(ki) * (t.c / t.groups) + cj) * t.r + ri) * t.s + si;
}

// The three passes, each as a sum over its own output's index (gather form).
template <typename T>
std::vector<double> conv_forward_ref(const ConvCase& t, const std::vector<T>& x,
                                     const std::vector<T>& w) {
  std::vector<double> y(t.y_size(), 0.0);
  const int cg = t.c / t.groups, kg = t.k / t.groups;
  size_t o = 0;
  for (int ni = 0; ni < t.n; ++ni)
    for (int ki = 0; ki < t.k; ++ki)
      for (int pi = 0; pi < t.p(); ++pi)
        for (int qi = 0; qi < t.q(); ++qi, ++o)
          for (int cj = 0; cj < cg; ++cj)
            for (int ri = 0; ri < t.r; ++ri)
              for (int si = 0; si < t.s; ++si) {
                const long xi = x_index(t, ni, ki / kg * cg + cj, pi, qi, ri, si);
                if (xi >= 0) y[o] += double(x[xi]) * double(w[w_index(t, ki, cj, ri, si)]);
              }
  return y;
}

template <typename T>
std::vector<double> conv_bwd_data_ref(const ConvCase& t, const std::vector<T>& w,
                                      const std::vector<T>& dy) {
  std::vector<double> dx(t.x_size(), 0.0);
  const int cg = t.c / t.groups, kg = t.k / t.groups;
  for (int ni = 0; ni < t.n; ++ni)
    for (int ci = 0; ci < t.c; ++ci)
      for (int ih = 0; ih < t.h; ++ih)
        for (int iw = 0; iw < t.w; ++iw) {
          double sum = 0.0;
          const int g = ci / cg;
          for (int ki = g * kg; ki < (g + 1) * kg; ++ki)
            for (int ri = 0; ri < t.r; ++ri)
              for (int si = 0; si < t.s; ++si) {
                const int ph = ih + t.pad_h - ri * t.dil_h, pw = iw + t.pad_w - si * t.dil_w;
                if (ph < 0 || pw < 0 || ph % t.u != 0 || pw % t.v != 0) continue;
                if (ph / t.u >= t.p() || pw / t.v >= t.q()) continue;
                const long yi =
                    ((static_cast<long>(ni) * t.k + ki) * t.p() + ph / t.u) * t.q() + pw / t.v;
                sum += double(dy[yi]) * double(w[w_index(t, ki, ci % cg, ri, si)]);
              }
          dx[((static_cast<size_t>(ni) * t.c + ci) * t.h + ih) * t.w + iw] = sum;
        }
  return dx;
}

template <typename T>
std::vector<double> conv_bwd_filter_ref(const ConvCase& t, const std::vector<T>& x,
                                        const std::vector<T>& dy) {
  std::vector<double> dw(t.w_size(), 0.0);
  const int cg = t.c / t.groups, kg = t.k / t.groups;
  for (int ki = 0; ki < t.k; ++ki)
    for (int cj = 0; cj < cg; ++cj)
      for (int ri = 0; ri < t.r; ++ri)
        for (int si = 0; si < t.s; ++si) {
          double sum = 0.0;
          for (int ni = 0; ni < t.n; ++ni)
            for (int pi = 0; pi < t.p(); ++pi)
              for (int qi = 0; qi < t.q(); ++qi) {
                const long xi = x_index(t, ni, ki / kg * cg + cj, pi, qi, ri, si);
                const long yi = ((static_cast<long>(ni) * t.k + ki) * t.p() + pi) * t.q() + qi;
                if (xi >= 0) sum += double(dy[yi]) * double(x[xi]);
              }
          dw[w_index(t, ki, cj, ri, si)] = sum;
        }
  return dw;
}

// The descriptors of one case (RAII), float math without TF32.
struct ConvDescs {
  cudnnHandle_t h = nullptr;
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  ConvDescs(const ConvCase& t, cudnnDataType_t dt, cudnnMathType_t math = CUDNN_FMA_MATH) {
    EXPECT_EQ(cudnnCreate(&h), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnCreateTensorDescriptor(&x), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnCreateTensorDescriptor(&y), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnCreateFilterDescriptor(&w), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnCreateConvolutionDescriptor(&conv), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, dt, t.n, t.c, t.h, t.w),
              CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, dt, t.n, t.k, t.p(), t.q()),
              CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetFilter4dDescriptor(w, dt, CUDNN_TENSOR_NCHW, t.k, t.c / t.groups, t.r, t.s),
              CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetConvolution2dDescriptor(conv, t.pad_h, t.pad_w, t.u, t.v, t.dil_h, t.dil_w,
                                              t.mode, dt),
              CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetConvolutionGroupCount(conv, t.groups), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetConvolutionMathType(conv, math), CUDNN_STATUS_SUCCESS);
  }
  ~ConvDescs() {
    cudnnDestroyConvolutionDescriptor(conv);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyTensorDescriptor(x);
    cudnnDestroy(h);
  }
  ConvDescs(const ConvDescs&) = delete;
  ConvDescs& operator=(const ConvDescs&) = delete;
};

// out = alpha * ref + beta * prior (beta == 0: prior unread).
std::vector<double> blend(const std::vector<double>& ref, double alpha, double beta,
                          const std::vector<double>& prior) {
  std::vector<double> out(ref.size());
  for (size_t i = 0; i < ref.size(); ++i)
    out[i] = alpha * ref[i] + (beta == 0.0 ? 0.0 : beta * prior[i]);
  return out;
}

// Runs the three passes with algorithm `algo` (workspace as asked) and
// alpha/beta, the outputs starting as `prior` (NaN when beta == 0).
template <typename T>
void check_conv(const ConvCase& t, cudnnDataType_t dt, int algo, double alpha, double beta) {
  SCOPED_TRACE("case n" + std::to_string(t.n) + " c" + std::to_string(t.c) + " k" +
               std::to_string(t.k) + " g" + std::to_string(t.groups) + " algo " +
               std::to_string(algo) + " beta " + std::to_string(beta));
  ConvDescs d(t, dt);
  const auto x = random_vector<T>(t.x_size(), 11), w = random_vector<T>(t.w_size(), 12);
  const auto dy = random_vector<T>(t.y_size(), 13);
  const auto prior = [&](size_t n, uint64_t seed) {
    return beta == 0.0 ? std::vector<T>(n, std::numeric_limits<T>::quiet_NaN())
                       : random_vector<T>(n, seed);
  };
  const auto py = prior(t.y_size(), 14), pdx = prior(t.x_size(), 15), pdw = prior(t.w_size(), 16);
  DeviceBuffer<T> bx(x), bw(w), bdy(dy), by(py), bdx(pdx), bdw(pdw);
  const T a = static_cast<T>(alpha), b = static_cast<T>(beta);
  size_t need[3] = {};
  ASSERT_EQ(cudnnGetConvolutionForwardWorkspaceSize(
                d.h, d.x, d.w, d.conv, d.y, static_cast<cudnnConvolutionFwdAlgo_t>(algo), &need[0]),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(
      cudnnGetConvolutionBackwardDataWorkspaceSize(
          d.h, d.w, d.y, d.conv, d.x, static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), &need[1]),
      CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(
      cudnnGetConvolutionBackwardFilterWorkspaceSize(
          d.h, d.x, d.y, d.conv, d.w, static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), &need[2]),
      CUDNN_STATUS_SUCCESS);
  DeviceBuffer<char> ws(std::vector<char>(std::max({need[0], need[1], need[2]}) + 1));
  ASSERT_EQ(cudnnConvolutionForward(d.h, &a, d.x, bx.get(), d.w, bw.get(), d.conv,
                                    static_cast<cudnnConvolutionFwdAlgo_t>(algo), ws.get(), need[0],
                                    &b, d.y, by.get()),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnConvolutionBackwardData(d.h, &a, d.w, bw.get(), d.y, bdy.get(), d.conv,
                                         static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), ws.get(),
                                         need[1], &b, d.x, bdx.get()),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnConvolutionBackwardFilter(d.h, &a, d.x, bx.get(), d.y, bdy.get(), d.conv,
                                           static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo),
                                           ws.get(), need[2], &b, d.w, bdw.get()),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto as_double = [](const std::vector<T>& v) {
    return std::vector<double>(v.begin(), v.end());
  };
  expect_close(by.read(), blend(conv_forward_ref(t, x, w), alpha, beta, as_double(py)),
               tolerance<T>());
  expect_close(bdx.read(), blend(conv_bwd_data_ref(t, w, dy), alpha, beta, as_double(pdx)),
               tolerance<T>());
  expect_close(bdw.read(), blend(conv_bwd_filter_ref(t, x, dy), alpha, beta, as_double(pdw)),
               tolerance<T>());
}

TEST(EmuCudnn, PassesMatchNaiveLoops) {
  for (const ConvCase& t : kConvCases) {
    check_conv<float>(t, CUDNN_DATA_FLOAT, 0, 1.0, 0.0);
    check_conv<double>(t, CUDNN_DATA_DOUBLE, 1, 1.0, 0.0);
    check_conv<double>(t, CUDNN_DATA_DOUBLE, 5, 0.75, -1.25);  // a workspace-using algorithm
    check_conv<float>(t, CUDNN_DATA_FLOAT, 2, -0.5, 2.0);
  }
}

// <dy, conv(x, w)> == <bwd_data(w, dy), x> == <bwd_filter(x, dy), w>, in double.
TEST(EmuCudnn, BackwardPassesAreTheAdjointsOfForward) {
  for (const ConvCase& t : kConvCases) {
    ConvDescs d(t, CUDNN_DATA_DOUBLE);
    const auto x = random_vector<double>(t.x_size(), 21), w = random_vector<double>(t.w_size(), 22);
    const auto dy = random_vector<double>(t.y_size(), 23);
    DeviceBuffer<double> bx(x), bw(w), bdy(dy), by(std::vector<double>(t.y_size())),
        bdx(std::vector<double>(t.x_size())), bdw(std::vector<double>(t.w_size()));
    const double one = 1.0, zero = 0.0;
    ASSERT_EQ(cudnnConvolutionForward(d.h, &one, d.x, bx.get(), d.w, bw.get(), d.conv,
                                      CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero,
                                      d.y, by.get()),
              CUDNN_STATUS_SUCCESS);
    ASSERT_EQ(cudnnConvolutionBackwardData(d.h, &one, d.w, bw.get(), d.y, bdy.get(), d.conv,
                                           CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, nullptr, 0, &zero,
                                           d.x, bdx.get()),
              CUDNN_STATUS_SUCCESS);
    ASSERT_EQ(cudnnConvolutionBackwardFilter(d.h, &one, d.x, bx.get(), d.y, bdy.get(), d.conv,
                                             CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, nullptr, 0, &zero,
                                             d.w, bdw.get()),
              CUDNN_STATUS_SUCCESS);
    const auto dot = [](const std::vector<double>& a, const std::vector<double>& b) {
      double s = 0.0;
      for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
      return s;
    };
    const double lhs = dot(dy, by.read()), via_x = dot(bdx.read(), x), via_w = dot(bdw.read(), w);
    EXPECT_NEAR(lhs, via_x, 1e-12 * (1.0 + std::fabs(lhs)));
    EXPECT_NEAR(lhs, via_w, 1e-12 * (1.0 + std::fabs(lhs)));
  }
}

TEST(EmuCudnn, AlgorithmQueries) {
  const ConvCase& t = kConvCases[0];
  ConvDescs d(t, CUDNN_DATA_FLOAT);
  cudnnConvolutionFwdAlgoPerf_t fwd[16];
  cudnnConvolutionBwdDataAlgoPerf_t bwd_data[16];
  cudnnConvolutionBwdFilterAlgoPerf_t bwd_filter[16];
  int n = 0;
  ASSERT_EQ(cudnnGetConvolutionForwardAlgorithm_v7(d.h, d.x, d.w, d.conv, d.y, 16, &n, fwd),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(n, CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
  bool some_workspace = false;
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(fwd[i].algo, i);
    EXPECT_EQ(fwd[i].status, CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(fwd[i].determinism, CUDNN_DETERMINISTIC);
    if (i > 0) {
      EXPECT_GT(fwd[i].time, fwd[i - 1].time);
    }
    size_t bytes = 0;
    EXPECT_EQ(
        cudnnGetConvolutionForwardWorkspaceSize(d.h, d.x, d.w, d.conv, d.y, fwd[i].algo, &bytes),
        CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(bytes, fwd[i].memory);
    some_workspace = some_workspace || bytes > 0;
  }
  EXPECT_EQ(fwd[0].memory, 0u);  // implicit GEMM
  EXPECT_TRUE(some_workspace);
  ASSERT_EQ(
      cudnnGetConvolutionBackwardDataAlgorithm_v7(d.h, d.w, d.y, d.conv, d.x, 16, &n, bwd_data),
      CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(n, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
  EXPECT_EQ(bwd_data[0].determinism, CUDNN_NON_DETERMINISTIC);
  EXPECT_EQ(bwd_data[1].determinism, CUDNN_DETERMINISTIC);
  ASSERT_EQ(
      cudnnGetConvolutionBackwardFilterAlgorithm_v7(d.h, d.x, d.y, d.conv, d.w, 3, &n, bwd_filter),
      CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(n, 3);  // as many as asked
  EXPECT_EQ(bwd_filter[0].determinism, CUDNN_NON_DETERMINISTIC);
  EXPECT_EQ(cudnnGetConvolutionForwardAlgorithm_v7(d.h, d.x, d.w, d.conv, d.y, 0, &n, fwd),
            CUDNN_STATUS_BAD_PARAM);
}

TEST(EmuCudnn, RefusedAlgorithmsAndShortWorkspaces) {
  const ConvCase& t = kConvCases[1];
  ConvDescs d(t, CUDNN_DATA_DOUBLE);
  DeviceBuffer<double> bx(random_vector<double>(t.x_size(), 31)),
      bw(random_vector<double>(t.w_size(), 32)), by(std::vector<double>(t.y_size()));
  size_t need = 0;
  ASSERT_EQ(cudnnGetConvolutionForwardWorkspaceSize(d.h, d.x, d.w, d.conv, d.y,
                                                    CUDNN_CONVOLUTION_FWD_ALGO_GEMM, &need),
            CUDNN_STATUS_SUCCESS);
  ASSERT_GT(need, 0u);
  DeviceBuffer<char> ws{std::vector<char>(need)};
  const double one = 1.0, zero = 0.0;
  const auto run = [&](cudnnConvolutionFwdAlgo_t algo, size_t bytes) {
    return cudnnConvolutionForward(d.h, &one, d.x, bx.get(), d.w, bw.get(), d.conv, algo, ws.get(),
                                   bytes, &zero, d.y, by.get());
  };
  EXPECT_EQ(run(CUDNN_CONVOLUTION_FWD_ALGO_GEMM, need - 1), CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(run(CUDNN_CONVOLUTION_FWD_ALGO_GEMM, need), CUDNN_STATUS_SUCCESS);

  set_fault("TANDEM_EMU_CUDNN_REFUSE", "fwd:2,bwd_data:0");
  EXPECT_EQ(run(CUDNN_CONVOLUTION_FWD_ALGO_GEMM, need), CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(run(CUDNN_CONVOLUTION_FWD_ALGO_DIRECT, need), CUDNN_STATUS_SUCCESS);
  cudnnConvolutionFwdAlgoPerf_t perf[16];
  int n = 0;
  ASSERT_EQ(cudnnGetConvolutionForwardAlgorithm_v7(d.h, d.x, d.w, d.conv, d.y, 16, &n, perf),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(perf[2].status, CUDNN_STATUS_SUCCESS);  // still proposed by the heuristics
  ASSERT_EQ(cudnnFindConvolutionForwardAlgorithmEx(d.h, d.x, bx.get(), d.w, bw.get(), d.conv, d.y,
                                                   by.get(), 16, &n, perf, ws.get(), need),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(n, CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
  for (int i = 0; i < n; ++i) {
    const bool refused = perf[i].algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM;
    const bool too_big = perf[i].memory > need;
    EXPECT_EQ(perf[i].status == CUDNN_STATUS_SUCCESS, !refused && !too_big) << perf[i].algo;
    if (i > 0 && perf[i].status == CUDNN_STATUS_SUCCESS) {
      EXPECT_EQ(perf[i - 1].status, CUDNN_STATUS_SUCCESS);  // successes first
      EXPECT_GT(perf[i].time, perf[i - 1].time);
    }
  }
  set_fault("TANDEM_EMU_CUDNN_REFUSE", nullptr);
  EXPECT_EQ(run(CUDNN_CONVOLUTION_FWD_ALGO_GEMM, need), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

TEST(EmuCudnn, BadDescriptorsAreBadParam) {
  ConvCase t = kConvCases[3];  // groups 3
  ConvDescs d(t, CUDNN_DATA_FLOAT);
  cudnnConvolutionFwdAlgoPerf_t perf[16];
  int n = 0;
  const auto query = [&] {
    return cudnnGetConvolutionForwardAlgorithm_v7(d.h, d.x, d.w, d.conv, d.y, 16, &n, perf);
  };
  EXPECT_EQ(query(), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(cudnnSetConvolutionGroupCount(d.conv, 2), CUDNN_STATUS_SUCCESS);  // channels mismatch
  EXPECT_EQ(query(), CUDNN_STATUS_BAD_PARAM);
  char text[256] = {};
  cudnnGetLastErrorString(text, sizeof text);
  EXPECT_NE(std::string(text).find("channels"), std::string::npos) << text;
  EXPECT_EQ(cudnnSetConvolutionGroupCount(d.conv, 3), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(cudnnSetTensor4dDescriptor(d.y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, t.n, t.k,
                                       t.p() + 1, t.q()),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(query(), CUDNN_STATUS_BAD_PARAM);  // output height disagrees
  int on = 0, oc = 0, oh = 0, ow = 0;
  EXPECT_EQ(cudnnGetConvolution2dForwardOutputDim(d.conv, d.x, d.w, &on, &oc, &oh, &ow),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(oh, t.p());
  EXPECT_EQ(ow, t.q());
  EXPECT_EQ(cudnnSetConvolution2dDescriptor(d.conv, 0, 0, 0, 1, 1, 1, CUDNN_CONVOLUTION,
                                            CUDNN_DATA_FLOAT),
            CUDNN_STATUS_BAD_PARAM);  // stride 0
  EXPECT_EQ(cudnnSetConvolutionGroupCount(d.conv, 0), CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetTensor4dDescriptor(d.x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, -1, 1, 1, 1),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_STREQ(cudnnGetErrorString(CUDNN_STATUS_NOT_SUPPORTED), "CUDNN_STATUS_NOT_SUPPORTED");
  EXPECT_EQ(cudnnGetVersion(), static_cast<size_t>(CUDNN_VERSION));
}

TEST(EmuCudnn, Tf32MathRoundsFloatInputs) {
  const ConvCase t{1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION};
  const float x = 1.0f + std::ldexp(1.0f, -12);
  DeviceBuffer<float> bx(std::vector<float>{x}), bw(std::vector<float>{1.0f}),
      by(std::vector<float>{0});
  const float one = 1.0f, zero = 0.0f;
  for (cudnnMathType_t math : {CUDNN_FMA_MATH, CUDNN_TENSOR_OP_MATH}) {
    ConvDescs d(t, CUDNN_DATA_FLOAT, math);
    ASSERT_EQ(cudnnConvolutionForward(d.h, &one, d.x, bx.get(), d.w, bw.get(), d.conv,
                                      CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero,
                                      d.y, by.get()),
              CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(by.read()[0], math == CUDNN_FMA_MATH ? x : 1.0f);
  }
}

TEST(EmuCudnn, AddTensorBroadcastsABias) {
  const int n = 2, c = 3, h = 4, w = 5;
  cudnnHandle_t hd = nullptr;
  ASSERT_EQ(cudnnCreate(&hd), CUDNN_STATUS_SUCCESS);
  cudnnTensorDescriptor_t bias_desc = nullptr, y_desc = nullptr;
  ASSERT_EQ(cudnnCreateTensorDescriptor(&bias_desc), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnCreateTensorDescriptor(&y_desc), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnSetTensor4dDescriptor(bias_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_DOUBLE, 1, c, 1, 1),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnSetTensor4dDescriptor(y_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_DOUBLE, n, c, h, w),
            CUDNN_STATUS_SUCCESS);
  const auto bias = random_vector<double>(c, 41), y = random_vector<double>(n * c * h * w, 42);
  DeviceBuffer<double> bb(bias), by(y);
  const double alpha = 2.0, beta = 0.5;
  ASSERT_EQ(cudnnAddTensor(hd, &alpha, bias_desc, bb.get(), &beta, y_desc, by.get()),
            CUDNN_STATUS_SUCCESS);
  const auto got = by.read();
  for (int i = 0; i < n * c * h * w; ++i) {
    EXPECT_NEAR(got[i], alpha * bias[(i / (h * w)) % c] + beta * y[i], 1e-15);
  }
  ASSERT_EQ(cudnnSetTensor4dDescriptor(bias_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_DOUBLE, 1, 2, 1, 1),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(cudnnAddTensor(hd, &alpha, bias_desc, bb.get(), &beta, y_desc, by.get()),
            CUDNN_STATUS_BAD_PARAM);
  cudnnDestroyTensorDescriptor(bias_desc);
  cudnnDestroyTensorDescriptor(y_desc);
  cudnnDestroy(hd);
}

// Last: an operand past its allocation is reported (a finding) and surfaces as
// an error at the next synchronisation.
TEST(EmuLibsChecks, OperandPastItsAllocationIsReported) {
  emu::clear_findings();
  DeviceBuffer<float> small(std::vector<float>(4, 0.0f));
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const float one = 1.0f;
  EXPECT_EQ(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 3, 3, 1, &one, small.get(), 3, small.get(), 1,
                        &one, small.get(), 3),
            CUBLAS_STATUS_SUCCESS);  // C needs 9 floats, has 4
  const auto found = emu::findings();
  ASSERT_FALSE(found.empty());
  EXPECT_EQ(found[0].kind, emu::FindingKind::kGlobalOutOfBounds);
  EXPECT_NE(found[0].message.find("cublasSgemm"), std::string::npos) << found[0].message;
  EXPECT_NE(cudaDeviceSynchronize(), cudaSuccess);
  emu::clear_findings();
  cublasDestroy(h);
}

TEST(EmuLibsChecks, HostWorkspaceAndShortOutputAreReported) {
  const ConvCase& t = kConvCases[0];
  ConvDescs d(t, CUDNN_DATA_FLOAT);
  DeviceBuffer<float> bx(random_vector<float>(t.x_size(), 51)),
      bw(random_vector<float>(t.w_size(), 52)), by(std::vector<float>(t.y_size() - 1));
  std::vector<char> host_ws(1024);
  const float one = 1.0f, zero = 0.0f;
  emu::clear_findings();
  EXPECT_EQ(cudnnConvolutionForward(d.h, &one, d.x, bx.get(), d.w, bw.get(), d.conv,
                                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, host_ws.data(),
                                    host_ws.size(), &zero, d.y, by.get()),
            CUDNN_STATUS_SUCCESS);
  const auto found = emu::findings();
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].kind, emu::FindingKind::kNotDevicePointer);
  EXPECT_EQ(found[1].kind, emu::FindingKind::kGlobalOutOfBounds);
  EXPECT_NE(cudaDeviceSynchronize(), cudaSuccess);
  emu::clear_findings();
}

}  // namespace
