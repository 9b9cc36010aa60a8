// Shared helpers for tandem's Google Benchmark programs.
//
// CPU cases run the op in the usual `for (auto _ : state)` loop and are timed by
// wall clock (UseRealTime: tandem's CPU ops are multi-threaded, so the main
// thread's CPU time would understate the cost).
//
// CUDA cases (only in a CUDA build) use manual time: after a warm-up, each
// benchmark iteration enqueues `reps` back-to-back calls on tandem's current
// stream between two CUDA events and reports the elapsed GPU time divided by
// `reps`. Queuing several calls hides the host's launch gaps, so the reported
// time is per op, as the GPU saw it. Without a usable device the case is
// skipped with an error message ("no CUDA device").
#pragma once

#include <benchmark/benchmark.h>
#include <tandem/tandem.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#if TANDEM_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace tandem_bench {

// Back-to-back calls per timed CUDA iteration.
constexpr int kCudaReps = 10;

inline tandem::Device cpu_device() { return tandem::Device(tandem::kCPU); }
inline tandem::Device cuda_device() { return tandem::Device(tandem::kCUDA, 0); }

// Adds build and device facts to the benchmark's context block (and JSON).
inline void add_context() {
  benchmark::AddCustomContext("tandem_version", TANDEM_VERSION);
  benchmark::AddCustomContext("tandem_cuda_built", tandem::cuda::is_built() ? "yes" : "no");
  if (tandem::cuda::is_available()) {
    benchmark::AddCustomContext("tandem_cuda_device", tandem::cuda::device_name(0));
    benchmark::AddCustomContext("tandem_allow_tf32", tandem::cuda::allow_tf32() ? "yes" : "no");
  }
}

template <typename Fn>
void run_cpu(benchmark::State& state, Fn&& fn) {
  fn();  // warm-up: first-touch page faults, thread pool start
  for (auto _ : state) {
    fn();
  }
}

#if TANDEM_WITH_CUDA

inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    TANDEM_FAIL("benchmark: ", what, ": ", cudaGetErrorString(status));
  }
}

// A start/stop pair of CUDA events, destroyed with the object.
class EventPair {
 public:
  EventPair() {
    check_cuda(cudaEventCreate(&start_), "cudaEventCreate");
    check_cuda(cudaEventCreate(&stop_), "cudaEventCreate");
  }
  ~EventPair() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;

  void start(cudaStream_t s) { check_cuda(cudaEventRecord(start_, s), "cudaEventRecord"); }
  // Records the stop event, waits for it, and returns the elapsed seconds.
  double stop(cudaStream_t s) {
    check_cuda(cudaEventRecord(stop_, s), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(stop_), "cudaEventSynchronize");
    float ms = 0.0f;
    check_cuda(cudaEventElapsedTime(&ms, start_, stop_), "cudaEventElapsedTime");
    return static_cast<double>(ms) * 1e-3;
  }

 private:
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
};

inline cudaStream_t current_stream() {
  return static_cast<cudaStream_t>(tandem::cuda::current_stream().handle());
}

#endif  // TANDEM_WITH_CUDA

// False (and the case marked skipped) when no CUDA device can be used.
inline bool require_cuda(benchmark::State& state) {
  if (!tandem::cuda::is_available()) {
    state.SkipWithError("no CUDA device");
    return false;
  }
  return true;
}

// Runs fn as a CUDA case with event timing; see the file comment. Register the
// benchmark with ->UseManualTime().
template <typename Fn>
void run_cuda(benchmark::State& state, Fn&& fn) {
#if TANDEM_WITH_CUDA
  for (int i = 0; i < 2; ++i) fn();  // warm-up: handles, allocator cache, clocks
  tandem::cuda::synchronize();
  EventPair events;
  const cudaStream_t stream = current_stream();
  for (auto _ : state) {
    events.start(stream);
    for (int i = 0; i < kCudaReps; ++i) fn();
    state.SetIterationTime(events.stop(stream) / kCudaReps);
  }
#else
  (void)fn;
  state.SkipWithError("tandem was built without CUDA");
#endif
}

// Runs a benchmark body; a tandem::Error (say, an op without a CUDA kernel yet)
// marks the case as failed with its message instead of ending the program.
template <typename Body>
void guarded(benchmark::State& state, Body&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// Size label for custom counters and names: 1048576 -> "1M".
inline std::string size_label(int64_t n) {
  if (n % (1 << 20) == 0) return std::to_string(n >> 20) + "M";
  if (n % (1 << 10) == 0) return std::to_string(n >> 10) + "K";
  return std::to_string(n);
}

// Times fn on `device`: run_cpu or run_cuda.
template <typename Fn>
void run_on(benchmark::State& state, tandem::Device device, Fn&& fn) {
  if (device.is_cuda()) {
    run_cuda(state, fn);
  } else {
    run_cpu(state, fn);
  }
}

// ---- Cold-cache timing (tandem_bench_ops) ---------------------------------------
// Memory-bound ops are timed one call at a time with the last-level cache
// flushed before each call, outside the timed region (as llm.c's
// dev/cuda/common.h does): a write of twice the cache size, on the device's
// L2 for CUDA (cudaMemsetAsync on tandem's stream, before the start event) and
// on the CPU's last-level cache (memset, timing paused). So a 1M-element case
// measures DRAM traffic like a 256M one instead of a cache-resident rerun.
// Register these cases with ->UseManualTime().

inline size_t cpu_llc_bytes() {
  long bytes = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
  bytes = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (bytes <= 0) bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
  return bytes > 0 ? static_cast<size_t>(bytes) : size_t{32} << 20;
}

class CacheFlusher {
 public:
  explicit CacheFlusher(tandem::Device device) : device_(device) {
    size_t bytes = cpu_llc_bytes();
#if TANDEM_WITH_CUDA
    if (device.is_cuda()) {
      int l2 = 0;
      check_cuda(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device.index()),
                 "cudaDeviceGetAttribute(L2 size)");
      bytes = static_cast<size_t>(l2 > 0 ? l2 : 64 << 20);
    }
#endif
    buffer_ = tandem::empty({static_cast<int64_t>(2 * bytes)},
                            tandem::dtype(tandem::kUInt8).device(device));
  }
  void flush() {
    ++value_;
#if TANDEM_WITH_CUDA
    if (device_.is_cuda()) {
      check_cuda(cudaMemsetAsync(buffer_.raw_data(), value_, buffer_.nbytes(), current_stream()),
                 "cudaMemsetAsync");
      return;
    }
#endif
    std::memset(buffer_.raw_data(), value_, buffer_.nbytes());
    benchmark::ClobberMemory();
  }

 private:
  tandem::Device device_;
  tandem::Tensor buffer_;
  int value_ = 0;
};

// Times fn once per benchmark iteration with a flushed cache (see above) and
// sets the iteration time; returns the total seconds timed.
template <typename Fn>
double run_flushed(benchmark::State& state, tandem::Device device, Fn&& fn) {
  CacheFlusher flusher(device);
  fn();  // warm-up: page faults, handles, the allocator's cache
  double total = 0.0;
  if (device.is_cuda()) {
#if TANDEM_WITH_CUDA
    tandem::cuda::synchronize();
    EventPair events;
    const cudaStream_t stream = current_stream();
    for (auto _ : state) {
      flusher.flush();
      events.start(stream);
      fn();
      const double t = events.stop(stream);
      state.SetIterationTime(t);
      total += t;
    }
#else
    state.SkipWithError("tandem was built without CUDA");
#endif
    return total;
  }
  for (auto _ : state) {
    flusher.flush();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(t);
    total += t;
  }
  return total;
}

// The main() of a benchmark program: registers its cases (register_all), adds
// the context, runs what --benchmark_filter selects.
template <typename RegisterAll>
int bench_main(int argc, char** argv, RegisterAll&& register_all) {
  try {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    add_context();
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argc > 0 ? argv[0] : "benchmark", e.what());
    return 1;
  }
}

}  // namespace tandem_bench
