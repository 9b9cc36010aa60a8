// The emulated device's own tests (TANDEM_CUDA=EMU only): small kernels with a
// deliberate mistake that a checker must report, each next to its mended
// version that must pass. Kernels use TANDEM_LAUNCH and TANDEM_SHARED exactly
// as kernels/*.cu do.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/cuda_utils.h"
#include "emu/emu.h"
#include "test_skip.h"

namespace {

using tandem::emu::FindingKind;
constexpr int kBlock = 256;
const tandem::Device kGpu(tandem::kCUDA, 0);

// Device buffers for the tests (cudaMalloc'd, freed at the end of the scope).
template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t n = 0;
  explicit DeviceBuffer(size_t count) : n(count) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&ptr), n * sizeof(T)), cudaSuccess);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { (void)cudaFree(ptr); }
  void upload(const std::vector<T>& h) {
    ASSERT_EQ(cudaMemcpy(ptr, h.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
};

std::vector<float> random_floats(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

bool has_finding(FindingKind kind) {
  for (const auto& f : tandem::emu::findings()) {
    if (f.kind == kind) return true;
  }
  return false;
}

std::string all_findings() {
  std::string s;
  for (const auto& f : tandem::emu::findings()) s += f.message + "\n";
  return s;
}

class Emu : public ::testing::Test {
 protected:
  void SetUp() override {
    tandem::emu::clear_findings();
    (void)cudaGetLastError();
  }
  void TearDown() override {
    // What a test provoked on purpose it cleared; anything left is a failure.
    EXPECT_TRUE(tandem::emu::findings().empty()) << all_findings();
    tandem::emu::clear_findings();
  }
  // Synchronises and returns the error the device reports (a finding's).
  static cudaError_t sync() {
    const cudaError_t e = cudaDeviceSynchronize();
    (void)cudaGetLastError();
    return e;
  }
};

// ---- Race: a block reduction without its barrier -------------------------------------------

enum class Barrier { kMissing, kPresent };

template <Barrier kBarrier>
__global__ void block_sum_kernel(const float* x, int n, float* out) {
  TANDEM_SHARED(float, partial, [kBlock / 32]);
  float v = 0;
  for (int i = static_cast<int>(threadIdx.x); i < n; i += kBlock) v += x[i];
  for (int m = 16; m > 0; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  if (kBarrier == Barrier::kPresent) __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0;
    for (int w = 0; w < kBlock / 32; ++w) total += partial[w];
    *out = total;
  }
}

TEST_F(Emu, MissingSyncthreadsInABlockReductionIsARace) {
  const int n = 1000;
  const auto h = random_floats(n, 1);
  DeviceBuffer<float> x(n), out(1);
  x.upload(h);
  TANDEM_LAUNCH(1, kBlock, 0, nullptr, block_sum_kernel<Barrier::kMissing>)(x.ptr, n, out.ptr);
  EXPECT_EQ(sync(), cudaErrorLaunchFailure);
  EXPECT_TRUE(has_finding(FindingKind::kSharedRace) ||
              has_finding(FindingKind::kSharedUninitialised))
      << all_findings();
  tandem::emu::clear_findings();

  TANDEM_LAUNCH(1, kBlock, 0, nullptr, block_sum_kernel<Barrier::kPresent>)(x.ptr, n, out.ptr);
  ASSERT_EQ(sync(), cudaSuccess);
  double ref = 0;
  for (float v : h) ref += v;
  EXPECT_NEAR(out.download()[0], ref, 1e-4);
}

// Every seed orders the threads differently; the mended kernel passes under all.
TEST_F(Emu, TheMendedReductionPassesUnderManySeeds) {
  const int n = 777;
  const auto h = random_floats(n, 2);
  DeviceBuffer<float> x(n), out(1);
  x.upload(h);
  double ref = 0;
  for (float v : h) ref += v;
  const uint64_t saved = tandem::emu::seed();
  for (uint64_t s = 1; s <= 8; ++s) {
    tandem::emu::set_seed(s);
    TANDEM_LAUNCH(1, kBlock, 0, nullptr, block_sum_kernel<Barrier::kPresent>)(x.ptr, n, out.ptr);
    ASSERT_EQ(sync(), cudaSuccess) << "seed " << s;
    EXPECT_NEAR(out.download()[0], ref, 1e-4) << "seed " << s;
  }
  tandem::emu::set_seed(saved);
}

// ---- Uninitialised shared memory ------------------------------------------------------------

enum class Fill { kPartial, kFull };

template <Fill kFill>
__global__ void shared_copy_kernel(float* out) {
  TANDEM_SHARED(float, tile, [kBlock]);
  const int t = static_cast<int>(threadIdx.x);
  if (kFill == Fill::kFull || t < kBlock / 2) tile[t] = static_cast<float>(t);
  __syncthreads();
  out[t] = tile[kBlock - 1 - t];
}

TEST_F(Emu, ReadingSharedMemoryNoThreadWroteIsReported) {
  DeviceBuffer<float> out(kBlock);
  TANDEM_LAUNCH(1, kBlock, 0, nullptr, shared_copy_kernel<Fill::kPartial>)(out.ptr);
  EXPECT_EQ(sync(), cudaErrorLaunchFailure);
  EXPECT_TRUE(has_finding(FindingKind::kSharedUninitialised)) << all_findings();
  tandem::emu::clear_findings();

  TANDEM_LAUNCH(1, kBlock, 0, nullptr, shared_copy_kernel<Fill::kFull>)(out.ptr);
  ASSERT_EQ(sync(), cudaSuccess);
  const auto h = out.download();
  for (int t = 0; t < kBlock; ++t) EXPECT_EQ(h[t], static_cast<float>(kBlock - 1 - t));
}

// ---- Divergent barrier -----------------------------------------------------------------------

enum class Divergence { kHalfTheBlock, kWholeBlock };

template <Divergence kDiv>
__global__ void divergent_barrier_kernel(float* out) {
  const int t = static_cast<int>(threadIdx.x);
  if (kDiv == Divergence::kWholeBlock || t < 16) __syncthreads();
  out[t] = 1.0f;
}

TEST_F(Emu, ABarrierOnlyPartOfTheBlockReachesIsReported) {
  DeviceBuffer<float> out(64);
  TANDEM_LAUNCH(1, 64, 0, nullptr, divergent_barrier_kernel<Divergence::kHalfTheBlock>)(out.ptr);
  EXPECT_EQ(sync(), cudaErrorLaunchFailure);
  EXPECT_TRUE(has_finding(FindingKind::kDivergentBarrier)) << all_findings();
  tandem::emu::clear_findings();

  TANDEM_LAUNCH(1, 64, 0, nullptr, divergent_barrier_kernel<Divergence::kWholeBlock>)(out.ptr);
  EXPECT_EQ(sync(), cudaSuccess);
}

// ---- Shuffle masks ------------------------------------------------------------------------

enum class Mask { kHalf, kFull };

template <Mask kMask>
__global__ void warp_sum_kernel(const float* x, float* out) {
  const unsigned mask = kMask == Mask::kFull ? 0xffffffffu : 0x0000ffffu;
  float v = x[threadIdx.x];
  for (int m = 16; m > 0; m /= 2) v += __shfl_xor_sync(mask, v, m);
  out[threadIdx.x] = v;
}

TEST_F(Emu, AShuffleMaskThatLeavesOutAParticipatingLaneIsReported) {
  const auto h = random_floats(32, 3);
  DeviceBuffer<float> x(32), out(32);
  x.upload(h);
  TANDEM_LAUNCH(1, 32, 0, nullptr, warp_sum_kernel<Mask::kHalf>)(x.ptr, out.ptr);
  EXPECT_EQ(sync(), cudaErrorLaunchFailure);
  EXPECT_TRUE(has_finding(FindingKind::kShuffleMask)) << all_findings();
  tandem::emu::clear_findings();

  TANDEM_LAUNCH(1, 32, 0, nullptr, warp_sum_kernel<Mask::kFull>)(x.ptr, out.ptr);
  ASSERT_EQ(sync(), cudaSuccess);
  double ref = 0;
  for (float v : h) ref += v;
  for (float v : out.download()) EXPECT_NEAR(v, ref, 1e-5);
}

// CUDA's width semantics: __shfl_xor_sync with width 8 stays inside groups of 8.
__global__ void segment_sum_kernel(const float* x, float* out) {
  float v = x[threadIdx.x];
  for (int m = 4; m > 0; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m, 8);
  float down = __shfl_down_sync(0xffffffffu, x[threadIdx.x], 3, 8);
  out[threadIdx.x] = v;
  out[32 + threadIdx.x] = down;
}

TEST_F(Emu, ShuffleWidthSplitsTheWarpIntoSegments) {
  const auto h = random_floats(32, 4);
  DeviceBuffer<float> x(32), out(64);
  x.upload(h);
  TANDEM_LAUNCH(1, 32, 0, nullptr, segment_sum_kernel)(x.ptr, out.ptr);
  ASSERT_EQ(sync(), cudaSuccess);
  const auto o = out.download();
  for (int lane = 0; lane < 32; ++lane) {
    const int base = lane / 8 * 8;
    double ref = 0;
    for (int j = base; j < base + 8; ++j) ref += h[j];
    EXPECT_NEAR(o[lane], ref, 1e-5) << lane;
    const int src = lane + 3 < base + 8 ? lane + 3 : lane;  // past the segment: own value
    EXPECT_EQ(o[32 + lane], h[src]) << lane;
  }
}

// ---- Launch configurations the hardware refuses --------------------------------------------

__global__ void fill_kernel(float* out, int n, float value) {
  for (int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); i < n;
       i += static_cast<int>(gridDim.x * blockDim.x)) {
    out[i] = value;
  }
}

TEST_F(Emu, A2048ThreadBlockIsRefusedWithCudasError) {
  DeviceBuffer<float> out(4096);
  try {
    TANDEM_LAUNCH(1, 2048, 0, nullptr, fill_kernel)(out.ptr, 4096, 1.0f);
    ADD_FAILURE() << "a 2048-thread launch was accepted";
  } catch (const tandem::Error& e) {
    EXPECT_NE(std::string(e.what()).find("invalid configuration argument"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(TANDEM_LAUNCH(dim3(1, 65536), 32, 0, nullptr, fill_kernel)(out.ptr, 4096, 1.0f),
               tandem::Error);
  EXPECT_THROW(TANDEM_LAUNCH(1, dim3(1, 1, 65), 0, nullptr, fill_kernel)(out.ptr, 4096, 1.0f),
               tandem::Error);
  // The mended launch: 1024 threads, the most a block may have.
  TANDEM_LAUNCH(4, 1024, 0, nullptr, fill_kernel)(out.ptr, 4096, 2.0f);
  ASSERT_EQ(sync(), cudaSuccess);
  for (float v : out.download()) ASSERT_EQ(v, 2.0f);
}

// ---- Launch bounds: a block larger than the kernel was compiled for -------------

constexpr int kBoundedBlock = 64;

TANDEM_KERNEL_BOUNDS(bounded_fill_kernel, kBoundedBlock);
__global__ void __launch_bounds__(kBoundedBlock) bounded_fill_kernel(float* out, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = 3.0f;
}

TEST_F(Emu, ABlockAboveTheKernelsLaunchBoundsIsRefusedAsTheHardwareRefusesIt) {
  DeviceBuffer<float> out(256);
  // 128 threads are a valid block for the device but not for a kernel compiled
  // with __launch_bounds__(64): "too many resources requested for launch".
  try {
    TANDEM_LAUNCH(2, 2 * kBoundedBlock, 0, nullptr, bounded_fill_kernel)(out.ptr, 256);
    ADD_FAILURE() << "a launch above the kernel's launch bounds was accepted";
  } catch (const tandem::Error& e) {
    EXPECT_NE(std::string(e.what()).find("too many resources requested for launch"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // the launch check consumed it
  // The mended launch: the block the kernel was compiled for.
  TANDEM_LAUNCH(4, kBoundedBlock, 0, nullptr, bounded_fill_kernel)(out.ptr, 256);
  ASSERT_EQ(sync(), cudaSuccess);
  for (float v : out.download()) ASSERT_EQ(v, 3.0f);
  // A kernel with no recorded bound keeps the device's limit.
  TANDEM_LAUNCH(1, 1024, 0, nullptr, fill_kernel)(out.ptr, 256, 1.0f);
  ASSERT_EQ(sync(), cudaSuccess);
}

// The host compiler cannot read __launch_bounds__, so every bounded kernel of
// kernels/ and src/data/ states its bound to the emulator: a constant bound
// through TANDEM_KERNEL_BOUNDS with the same expression; a bound that is one
// of the kernel's template parameters is checked here instead, at each launch
// of the kernel, against the block size the launch passes.
std::string read_source(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string squeeze(std::string s) {
  s.erase(std::remove_if(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); }),
          s.end());
  return s;
}

// The top-level comma-separated parts of `s` (brackets and angle brackets nest).
std::vector<std::string> split_top_level(const std::string& s) {
  std::vector<std::string> parts(1);
  int depth = 0;
  for (char c : s) {
    if (c == '(' || c == '<' || c == '[') ++depth;
    if (c == ')' || c == '>' || c == ']') --depth;
    if (c == ',' && depth == 0) {
      parts.emplace_back();
    } else {
      parts.back() += c;
    }
  }
  for (auto& p : parts) p = squeeze(p);
  return parts;
}

// The text between the bracket at `open` and its match.
std::string bracketed(const std::string& s, size_t open, char left, char right) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    if (s[i] == left) ++depth;
    if (s[i] == right && --depth == 0) return s.substr(open + 1, i - open - 1);
  }
  return "";
}

TEST(EmuLaunchBounds, EveryBoundedKernelStatesItsBoundToTheEmulator) {
  const std::string root = TANDEM_PROJECT_DIR;
  std::vector<std::string> files = {root + "/src/data/data_cuda.cu"};
  for (const auto& e : std::filesystem::directory_iterator(root + "/kernels")) {
    if (e.path().extension() == ".cu") files.push_back(e.path().string());
  }
  const std::regex bound_re(R"(__launch_bounds__\(([^)]*)\)\s*(\w+)\s*\()");
  int constant_bounds = 0;
  int template_bounds = 0;
  for (const auto& file : files) {
    const std::string src = read_source(file);
    ASSERT_FALSE(src.empty()) << file;
    for (std::sregex_iterator it(src.begin(), src.end(), bound_re), end; it != end; ++it) {
      const std::string expr = squeeze((*it)[1]);
      const std::string name = (*it)[2];
      SCOPED_TRACE(file + ": " + name);
      // The kernel's template parameters, if it has any.
      const size_t decl = static_cast<size_t>(it->position(0));
      const size_t tmpl = src.rfind("template <", decl);
      const size_t prev_end = src.rfind(';', decl);
      const size_t prev_brace = src.rfind('}', decl);
      std::vector<std::string> params;
      if (tmpl != std::string::npos && (prev_end == std::string::npos || tmpl > prev_end) &&
          (prev_brace == std::string::npos || tmpl > prev_brace)) {
        params = split_top_level(bracketed(src, tmpl + 9, '<', '>'));
      }
      int position = -1;
      for (size_t i = 0; i < params.size(); ++i) {
        const std::string& p = params[i];
        if (p.size() > expr.size() && p.compare(p.size() - expr.size(), expr.size(), expr) == 0) {
          position = static_cast<int>(i);  // "intkBlock" names the bound
        }
      }
      if (position < 0) {
        ++constant_bounds;
        EXPECT_NE(squeeze(src).find("TANDEM_KERNEL_BOUNDS(" + name + "," + expr + ");"),
                  std::string::npos)
            << "add TANDEM_KERNEL_BOUNDS(" << name << ", " << expr << ") beside the kernel";
        continue;
      }
      ++template_bounds;
      int launches = 0;
      for (size_t at = src.find("TANDEM_LAUNCH("); at != std::string::npos;
           at = src.find("TANDEM_LAUNCH(", at + 1)) {
        const auto args = split_top_level(bracketed(src, at + 13, '(', ')'));
        if (args.size() != 5 || args[4].rfind(name + "<", 0) != 0) continue;
        ++launches;
        const auto targs = split_top_level(bracketed(args[4], name.size(), '<', '>'));
        ASSERT_LT(static_cast<size_t>(position), targs.size()) << args[4];
        EXPECT_EQ(args[1], targs[static_cast<size_t>(position)])
            << "a launch of " << args[4] << " passes block " << args[1] << ", not its launch bound";
      }
      EXPECT_GT(launches, 0) << "no TANDEM_LAUNCH of " << name << " in its file";
    }
  }
  // kernels/optim.cu, batch_norm.cu (constant) and reduce, softmax, loss (template).
  EXPECT_GE(constant_bounds, 6);
  EXPECT_GE(template_bounds, 4);
}

// ---- Bounds: an off-by-one in a grid-stride loop ----------------------------------------

enum class Bound { kInclusive, kExclusive };

template <Bound kBound>
__global__ void scale_kernel(float* x, int n) {
  for (int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
       kBound == Bound::kInclusive ? i <= n : i < n;
       i += static_cast<int>(gridDim.x * blockDim.x)) {
    x[i] *= 2.0f;
  }
}

// The write past the end hits the guard page after the allocation (or ASan's
// redzone under emu-asan): the process dies with the address, as a GPU's
// illegal-address fault ends the context.
TEST_F(Emu, AnOffByOneInAGridStrideLoopFaults) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const int n = 1024;  // 4096 bytes: the allocation ends at a page boundary
  EXPECT_DEATH(
      {
        DeviceBuffer<float> x(n);
        TANDEM_LAUNCH(2, kBlock, 0, nullptr, scale_kernel<Bound::kInclusive>)(x.ptr, n);
        (void)cudaDeviceSynchronize();
      },
      "");
  DeviceBuffer<float> x(n);
  const auto h = random_floats(n, 5);
  x.upload(h);
  TANDEM_LAUNCH(2, kBlock, 0, nullptr, scale_kernel<Bound::kExclusive>)(x.ptr, n);
  ASSERT_EQ(sync(), cudaSuccess);
  const auto o = x.download();
  for (int i = 0; i < n; ++i) ASSERT_EQ(o[i], 2.0f * h[i]);
}

// ---- Streams: reading a copy's destination before synchronising -------------------------

TEST_F(Emu, AHostReadOfAnAsyncCopyBeforeSynchronisingSeesNoData) {
  const int n = 256;
  const auto h = random_floats(n, 6);
  DeviceBuffer<float> x(n);
  x.upload(h);
  float* pinned = nullptr;
  ASSERT_EQ(
      cudaHostAlloc(reinterpret_cast<void**>(&pinned), n * sizeof(float), cudaHostAllocDefault),
      cudaSuccess);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(pinned, x.ptr, n * sizeof(float), cudaMemcpyDeviceToHost, stream),
            cudaSuccess);
  // The bug: reading before cudaStreamSynchronize. Nothing has arrived yet.
  int early_matches = 0;
  for (int i = 0; i < n; ++i) early_matches += pinned[i] == h[i] ? 1 : 0;
  EXPECT_EQ(early_matches, 0);
  EXPECT_TRUE(std::isnan(pinned[0]));
  // Mended: synchronise first.
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  for (int i = 0; i < n; ++i) ASSERT_EQ(pinned[i], h[i]);
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  EXPECT_EQ(cudaFreeHost(pinned), cudaSuccess);
}

// A stream that waits for an event sees the other stream's work; without the
// wait the emulator runs it first.
TEST_F(Emu, AnEventOrdersWorkAcrossStreams) {
  const int n = 512;
  DeviceBuffer<float> x(n);
  cudaStream_t a = nullptr, b = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking), cudaSuccess);
  cudaEvent_t ev = nullptr;
  ASSERT_EQ(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), cudaSuccess);
  TANDEM_LAUNCH(1, kBlock, 0, a, fill_kernel)(x.ptr, n, 3.0f);
  ASSERT_EQ(cudaEventRecord(ev, a), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(b, ev, 0), cudaSuccess);
  TANDEM_LAUNCH(1, kBlock, 0, b, scale_kernel<Bound::kExclusive>)(x.ptr, n);
  ASSERT_EQ(cudaStreamSynchronize(b), cudaSuccess);  // runs a's fill first, through the wait
  std::vector<float> h(n);
  ASSERT_EQ(cudaMemcpy(h.data(), x.ptr, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  for (float v : h) ASSERT_EQ(v, 6.0f);
  EXPECT_EQ(cudaEventDestroy(ev), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(a), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(b), cudaSuccess);
}

// Host code that dereferences a device pointer faults at once.
TEST_F(Emu, HostCodeReadingDeviceMemoryFaults) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
#if defined(__SANITIZE_ADDRESS__)
  TANDEM_SKIP_IF(Asan, true,
                 "under ASan device memory is heap memory (ASan checks kernels' accesses instead)");
#else
  DeviceBuffer<float> x(16);
  volatile float* p = x.ptr;
  EXPECT_DEATH({ (void)p[0]; }, "");
#endif
}

// ---- cuBLAS: a transposed operand --------------------------------------------------------

// C = A * B for row-major A [m, k], B [k, n] through column-major cuBLAS:
// C^T = B^T * A^T, so the row-major buffers pass as they are with OP_N. The
// mistake: passing OP_T for B as if it were stored transposed.
TEST_F(Emu, ATransposedCublasOperandFailsParity) {
  const int m = 5, k = 7, n = 3;
  const auto ha = random_floats(static_cast<size_t>(m) * k, 7);
  const auto hb = random_floats(static_cast<size_t>(k) * n, 8);
  std::vector<double> ref(static_cast<size_t>(m) * n, 0.0);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      for (int p = 0; p < k; ++p) ref[i * n + j] += double{ha[i * k + p]} * hb[p * n + j];
    }
  }
  DeviceBuffer<float> a(ha.size()), b(hb.size()), c(ref.size());
  a.upload(ha);
  b.upload(hb);
  cublasHandle_t handle = nullptr;
  ASSERT_EQ(cublasCreate(&handle), CUBLAS_STATUS_SUCCESS);
  const float one = 1.0f, zero = 0.0f;
  auto max_error = [&](cublasOperation_t op_b, int ldb) {
    EXPECT_EQ(cublasSgemm(handle, op_b, CUBLAS_OP_N, n, m, k, &one, b.ptr, ldb, a.ptr, k, &zero,
                          c.ptr, n),
              CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(sync(), cudaSuccess);
    const auto hc = c.download();
    double err = 0;
    for (size_t i = 0; i < ref.size(); ++i) err = std::max(err, std::abs(hc[i] - ref[i]));
    return err;
  };
  EXPECT_GT(max_error(CUBLAS_OP_T, k), 1e-2);  // the mistake: parity fails
  EXPECT_LT(max_error(CUBLAS_OP_N, n), 1e-5);  // mended
  EXPECT_EQ(cublasDestroy(handle), CUBLAS_STATUS_SUCCESS);
}

// ---- Fault injection -------------------------------------------------------------------------

TEST_F(Emu, AnInjectedAllocationFailureIsAnOutOfMemoryError) {
  setenv("TANDEM_EMU_MALLOC_FAIL_ABOVE", "1048576", 1);
  tandem::emu::reload_faults();
  tandem::cuda::empty_cache();
  try {
    const tandem::Tensor t = tandem::zeros({1 << 20}, tandem::device(kGpu));
    ADD_FAILURE() << "a 4 MiB allocation succeeded with allocations above 1 MiB failing";
  } catch (const tandem::OutOfMemoryError& e) {
    EXPECT_NE(std::string(e.what()).find("out of memory"), std::string::npos) << e.what();
  }
  unsetenv("TANDEM_EMU_MALLOC_FAIL_ABOVE");
  tandem::emu::reload_faults();
  const tandem::Tensor t = tandem::zeros({1 << 20}, tandem::device(kGpu));
  EXPECT_EQ(t.sum().item<float>(), 0.0f);
}

TEST_F(Emu, TheDeviceLooksLikeAnH100) {
  cudaDeviceProp prop{};
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  EXPECT_EQ(prop.multiProcessorCount, 132);
  EXPECT_EQ(prop.warpSize, 32);
  EXPECT_EQ(prop.major, 9);
  EXPECT_EQ(prop.sharedMemPerMultiprocessor, size_t{228} * 1024);
  EXPECT_TRUE(tandem::cuda::is_available());
  const auto before = tandem::emu::grid_stats();
  const tandem::Tensor x = tandem::ones({1000}, tandem::device(kGpu));
  EXPECT_EQ((x * 2.0).sum().item<float>(), 2000.0f);
  EXPECT_GT(tandem::emu::grid_stats().grids, before.grids);  // kernels ran, emulated
}

}  // namespace

namespace {

// The caching allocator's answer to a failed cudaMalloc: release the cache
// and retry once. The first attempt fails (injected), the retry succeeds.
TEST_F(Emu, TheAllocatorReleasesItsCacheAndRetriesAfterAFailedCudaMalloc) {
  tandem::cuda::synchronize();
  tandem::cuda::empty_cache();  // only this test's block is cached below
  {
    const tandem::Tensor warm = tandem::zeros({4096}, tandem::device(kGpu));  // cached on free
  }
  const auto before = tandem::cuda::memory_stats();
  ASSERT_GT(before.cached_bytes, 0u);
  setenv("TANDEM_EMU_MALLOC_FAIL_AT", "1", 1);
  tandem::emu::reload_faults();
  const tandem::Tensor t = tandem::ones({1 << 18}, tandem::device(kGpu));  // a new block
  const auto after = tandem::cuda::memory_stats();
  unsetenv("TANDEM_EMU_MALLOC_FAIL_AT");
  tandem::emu::reload_faults();
  EXPECT_EQ(after.cached_bytes, 0u) << "the cache was not released";
  EXPECT_GT(after.num_device_frees, before.num_device_frees);
  EXPECT_EQ(t.sum().item<float>(), static_cast<float>(1 << 18));
}

// cuDNN refusing algorithms at run time (NOT_SUPPORTED): tandem falls back to
// the next candidate and the convolution still matches the CPU.
TEST_F(Emu, RefusedCudnnAlgorithmsFallBackToTheNextCandidate) {
  setenv("TANDEM_EMU_CUDNN_REFUSE",
         "fwd:0,fwd:1,fwd:2,bwd_data:0,bwd_data:1,bwd_filter:0,bwd_filter:1", 1);
  tandem::emu::reload_faults();
  const tandem::Tensor x = tandem::randn({2, 3, 9, 9}, tandem::dtype(tandem::kFloat64));
  const tandem::Tensor w = tandem::randn({4, 3, 3, 3}, tandem::dtype(tandem::kFloat64));
  const tandem::Tensor xg = x.to(kGpu).set_requires_grad(true);
  const tandem::Tensor wg = w.to(kGpu).set_requires_grad(true);
  const tandem::Tensor xc = x.clone().set_requires_grad(true);
  const tandem::Tensor wc = w.clone().set_requires_grad(true);
  const tandem::Tensor yg = tandem::conv2d(xg, wg, tandem::Tensor(), 1, 1);
  const tandem::Tensor yc = tandem::conv2d(xc, wc, tandem::Tensor(), 1, 1);
  yg.sum().backward();
  yc.sum().backward();
  unsetenv("TANDEM_EMU_CUDNN_REFUSE");
  tandem::emu::reload_faults();
  const auto max_diff = [](const tandem::Tensor& a, const tandem::Tensor& b) {
    return tandem::max(tandem::abs(a.cpu() - b)).item<double>();
  };
  EXPECT_LT(max_diff(yg, yc), 1e-10);
  EXPECT_LT(max_diff(xg.grad(), xc.grad()), 1e-10);
  EXPECT_LT(max_diff(wg.grad(), wc.grad()), 1e-10);
}

// A failing cuBLAS call is a tandem::Error naming the call, not a crash.
TEST_F(Emu, AFailingCublasCallIsAnError) {
  const tandem::Tensor a = tandem::randn({8, 8}).to(kGpu);
  setenv("TANDEM_EMU_CUBLAS_FAIL_AT", "1", 1);
  tandem::emu::reload_faults();
  try {
    (void)tandem::matmul(a, a);
    ADD_FAILURE() << "a failing GEMM went unnoticed";
  } catch (const tandem::Error& e) {
    EXPECT_NE(std::string(e.what()).find("CUBLAS_STATUS_EXECUTION_FAILED"), std::string::npos)
        << e.what();
  }
  unsetenv("TANDEM_EMU_CUBLAS_FAIL_AT");
  tandem::emu::reload_faults();
  EXPECT_NEAR(tandem::matmul(a, a).cpu().sum().item<float>(),
              tandem::matmul(a.cpu(), a.cpu()).sum().item<float>(), 1e-3);
}

}  // namespace
