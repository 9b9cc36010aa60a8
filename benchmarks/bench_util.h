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

#include <cstdint>
#include <cstdio>
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
