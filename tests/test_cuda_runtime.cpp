// The CUDA runtime: device queries and switches (TF32, sync debug), the
// caching allocator (reuse, honest statistics, empty_cache, out of memory as an
// error) and streams (per-thread current stream, record_stream, GEMMs on two
// streams). Skipped, with the reason printed, without a CUDA device.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>
#include <vector>

#if TANDEM_WITH_CUDA
#include <cuda_runtime.h>
#endif

#include "op_records.h"
#include "test_cuda_util.h"
#include "test_util.h"

namespace {

using namespace tt::cuda_parity;  // NOLINT(google-build-using-namespace)

// ---- Device queries and switches ------------------------------------------------

TEST_F(CudaTest, DeviceQueries) {
  EXPECT_TRUE(tandem::cuda::is_built());
  EXPECT_GE(tandem::cuda::device_count(), 1);
  EXPECT_FALSE(tandem::cuda::device_name(0).empty());
  tandem::cuda::synchronize();
  tandem::cuda::synchronize(0);
}

TEST_F(CudaTest, Tf32IsOffByDefaultAndSwitchable) {
  EXPECT_FALSE(tandem::cuda::allow_tf32());
  tandem::cuda::set_allow_tf32(true);
  EXPECT_TRUE(tandem::cuda::allow_tf32());
  tandem::cuda::set_allow_tf32(false);
  EXPECT_FALSE(tandem::cuda::allow_tf32());
}

TEST_F(CudaTest, SyncDebugSwitch) {
  const bool before = tandem::cuda::sync_debug();
  tandem::cuda::set_sync_debug(true);
  EXPECT_TRUE(tandem::cuda::sync_debug());
  // Ops still work with a synchronise after every launch.
  Tensor x = tt::random_tensor({1000}, tandem::kFloat32);
  expect_parity(tandem::relu(x.cuda()), tandem::relu(x), tt::default_tol(tandem::kFloat32));
  tandem::cuda::set_sync_debug(false);
  EXPECT_FALSE(tandem::cuda::sync_debug());
  tandem::cuda::set_sync_debug(before);
}

// ---- The caching allocator ------------------------------------------------------------

TEST_F(CudaTest, FreedBlocksAreReused) {
  const Shape s{1 << 18};
  { Tensor warm = tandem::empty(s, kGpu); }
  tandem::cuda::synchronize();
  const auto before = tandem::cuda::memory_stats();
  for (int i = 0; i < 5; ++i) {
    Tensor t = tandem::empty(s, kGpu);
    t.fill_(1.0);
  }
  tandem::cuda::synchronize();
  const auto after = tandem::cuda::memory_stats();
  EXPECT_EQ(after.num_device_allocs, before.num_device_allocs)
      << "same-size allocations must hit the cache";
  EXPECT_GE(after.num_alloc_requests, before.num_alloc_requests + 5);
}

TEST_F(CudaTest, AllocatedBytesGrowAndShrinkAndPeakIsTracked) {
  tandem::cuda::synchronize();
  const auto s0 = tandem::cuda::memory_stats();
  tandem::cuda::reset_peak_memory_stats();
  EXPECT_EQ(tandem::cuda::memory_stats().peak_allocated_bytes, s0.allocated_bytes);
  const size_t bytes = 4u << 20;
  {
    Tensor a = tandem::empty({static_cast<int64_t>(bytes / 4)}, kGpu);
    const auto s1 = tandem::cuda::memory_stats();
    EXPECT_GE(s1.allocated_bytes, s0.allocated_bytes + bytes);
    EXPECT_GE(s1.reserved_bytes, s1.allocated_bytes);
    EXPECT_EQ(s1.reserved_bytes, s1.allocated_bytes + s1.cached_bytes);
    {
      Tensor b = tandem::empty({static_cast<int64_t>(bytes / 4)}, kGpu);
      EXPECT_GE(tandem::cuda::memory_stats().allocated_bytes, s0.allocated_bytes + 2 * bytes);
    }
    EXPECT_GE(tandem::cuda::memory_stats().peak_allocated_bytes, s0.allocated_bytes + 2 * bytes);
  }
  tandem::cuda::synchronize();
  const auto s2 = tandem::cuda::memory_stats();
  EXPECT_EQ(s2.allocated_bytes, s0.allocated_bytes);
  EXPECT_GE(s2.peak_allocated_bytes, s0.allocated_bytes + 2 * bytes);
  EXPECT_GE(s2.cached_bytes, 2 * bytes);
}

TEST_F(CudaTest, NoGrowthOverRepeatedSteps) {
  Tensor x = tt::random_tensor({64, 128}, tandem::kFloat32).cuda();
  Tensor w = tt::random_tensor({32, 128}, tandem::kFloat32).cuda();
  Tensor b = tt::random_tensor({32}, tandem::kFloat32).cuda();
  Tensor labels = tandem::randint(0, 32, {64}, tandem::TensorOptions(tandem::kInt64).device(kGpu));
  auto step = [&] {
    Tensor h = tandem::relu(tandem::linear(x, w, b));
    Tensor lp = tandem::log_softmax(h, 1);
    Tensor loss = tandem::neg(tandem::mean(tandem::gather(lp, 1, labels.view({64, 1}))));
    Tensor m = tandem::dropout(h, 0.1);
    w.add_(tandem::matmul(m.t(), x), -1e-3);
    return loss.item<float>();
  };
  for (int i = 0; i < 3; ++i) step();  // warm-up fills the cache
  tandem::cuda::synchronize();
  const auto before = tandem::cuda::memory_stats();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(std::isfinite(step()));
  tandem::cuda::synchronize();
  const auto after = tandem::cuda::memory_stats();
  EXPECT_EQ(after.num_device_allocs, before.num_device_allocs);
  EXPECT_EQ(after.reserved_bytes, before.reserved_bytes);
  EXPECT_EQ(after.allocated_bytes, before.allocated_bytes);
}

TEST_F(CudaTest, EmptyCacheReturnsFreeBlocks) {
  { Tensor t = tandem::empty({1 << 20}, kGpu); }
  tandem::cuda::synchronize();
  const auto s0 = tandem::cuda::memory_stats();
  EXPECT_GT(s0.cached_bytes, 0u);
  tandem::cuda::empty_cache();
  const auto s1 = tandem::cuda::memory_stats();
  EXPECT_EQ(s1.cached_bytes, 0u);
  EXPECT_EQ(s1.reserved_bytes, s1.allocated_bytes);
  EXPECT_GT(s1.num_device_frees, s0.num_device_frees);
  // Allocation still works after emptying the cache.
  Tensor t = tandem::ones({1 << 20}, kGpu);
  EXPECT_EQ(tandem::sum(t).item<double>(), static_cast<double>(1 << 20));
}

// The cuBLAS workspace of each (handle, stream) pair (4 or 32 MiB) is held
// as allocated memory; empty_cache hands it back and frees it, and the next
// GEMM on either stream takes a new one.
TEST_F(CudaTest, EmptyCacheReleasesTheCublasWorkspaces) {
  const tandem::cuda::Stream side = tandem::cuda::new_stream();
  const Tensor a = tt::random_tensor({65, 33}, tandem::kFloat32);
  const Tensor ag = a.cuda();
  tandem::cuda::current_stream().synchronize();  // the upload, before `side` reads it
  {
    Tensor c = tandem::matmul(ag, ag.t());
    tandem::cuda::StreamGuard guard(side);
    Tensor d = tandem::matmul(ag, ag.t());
    side.synchronize();
  }
  tandem::cuda::synchronize();
  const auto s0 = tandem::cuda::memory_stats();
  tandem::cuda::empty_cache();
  const auto s1 = tandem::cuda::memory_stats();
  EXPECT_GE(s0.allocated_bytes - s1.allocated_bytes, size_t{2} * (4u << 20))
      << "two workspaces (main and side stream) should have been released";
  EXPECT_LT(s1.reserved_bytes, s0.reserved_bytes);
  EXPECT_EQ(s1.cached_bytes, 0u);
  // GEMMs still work on both streams, with new workspaces.
  const Tensor want = tandem::matmul(a, a.t());
  const Tol tol = tt::scaled(tt::default_tol(tandem::kFloat32), 20.0);  // GEMM order
  expect_parity(tandem::matmul(ag, ag.t()), want, tol);
  Tensor on_side;
  {
    tandem::cuda::StreamGuard guard(side);
    on_side = tandem::matmul(ag, ag.t());
    side.synchronize();
  }
  expect_parity(on_side, want, tol);
}

TEST_F(CudaTest, OutOfMemoryIsAnError) {
  const int64_t huge = int64_t{1} << 42;  // 16 TiB of float32
  try {
    Tensor t = tandem::empty({huge}, kGpu);
    FAIL() << "allocating 16 TiB succeeded";
  } catch (const tandem::OutOfMemoryError& e) {
    EXPECT_FALSE(e.message().empty());
  }
  EXPECT_THROW(tandem::empty({huge}, kGpu), tandem::Error);
  // The allocator is still usable.
  Tensor ok = tandem::full({1000}, 2.0, kGpu);
  EXPECT_EQ(tandem::sum(ok).item<double>(), 2000.0);
}

// ---- Streams ---------------------------------------------------------------------------

TEST_F(CudaTest, OpsOnANewStream) {
  const tandem::cuda::Stream original = tandem::cuda::current_stream();
  const tandem::cuda::Stream s = tandem::cuda::new_stream();
  EXPECT_NE(s.handle(), original.handle());
  tandem::cuda::set_current_stream(s);
  EXPECT_EQ(tandem::cuda::current_stream().handle(), s.handle());
  Tensor x = tt::random_tensor({1000003}, tandem::kFloat32);
  Tensor y = tandem::exp(x.cuda());
  s.synchronize();
  tandem::cuda::set_current_stream(original);
  expect_parity(y, tandem::exp(x),
                tt::parity_tol(*tt::find_unary_record(UnaryOp::Exp), tandem::kFloat32));
}

// Issue 18 item 7: the current stream is per host thread.
TEST_F(CudaTest, CurrentStreamIsPerThread) {
  const tandem::cuda::Stream main_stream = tandem::cuda::current_stream();
  const tandem::cuda::Stream other = tandem::cuda::new_stream();
  void* seen_in_thread = nullptr;
  void* after_set_in_thread = nullptr;
  std::thread worker([&] {
    seen_in_thread = tandem::cuda::current_stream().handle();
    tandem::cuda::set_current_stream(other);
    after_set_in_thread = tandem::cuda::current_stream().handle();
    Tensor y = tandem::exp(tandem::ones({1001}, kGpu));
    other.synchronize();
  });
  worker.join();
  EXPECT_EQ(seen_in_thread, main_stream.handle()) << "a new thread starts on the default stream";
  EXPECT_EQ(after_set_in_thread, other.handle());
  EXPECT_EQ(tandem::cuda::current_stream().handle(), main_stream.handle())
      << "another thread's set_current_stream must not move this thread's work";
  {
    tandem::cuda::StreamGuard guard(other);
    EXPECT_EQ(tandem::cuda::current_stream().handle(), other.handle());
  }
  EXPECT_EQ(tandem::cuda::current_stream().handle(), main_stream.handle());
}

#if TANDEM_WITH_CUDA
// A host-controlled gate on a stream: the stream's later work waits until the
// test opens it, however fast the device and whatever sync debug does (it
// synchronises after tandem's launches, not after this raw call). The host
// function gives up after 60 s so a test that never opens it fails, not hangs.
class StreamGate {
 public:
  explicit StreamGate(const tandem::cuda::Stream& s) {
    EXPECT_EQ(cudaLaunchHostFunc(static_cast<cudaStream_t>(s.handle()), &StreamGate::wait, this),
              cudaSuccess);
  }
  void open() { open_.store(true); }
  bool timed_out() const { return timed_out_.load(); }

 private:
  static void CUDART_CB wait(void* self) {
    auto* gate = static_cast<StreamGate*>(self);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!gate->open_.load()) {
      if (std::chrono::steady_clock::now() > deadline) {
        gate->timed_out_.store(true);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  std::atomic<bool> open_{false};
  std::atomic<bool> timed_out_{false};
};

// Issue 18 item 7: a block used on another stream (record_stream) is not
// handed out again until that stream has done the work queued on it. The side
// stream is held busy by a gate, not by long work, so the test holds in sync
// debug mode (every launch synchronised) and on any device speed.
TEST_F(CudaTest, RecordStreamKeepsABlockFromReuseUntilTheOtherStreamIsDone) {
  tandem::cuda::synchronize();
  tandem::cuda::empty_cache();  // so that only this test's blocks are cached
  const tandem::cuda::Stream side = tandem::cuda::new_stream();
  const Shape shape{1 << 20};
  Tensor x = tandem::rand(shape, kGpu);  // allocated (and written) on the main stream
  // Streams are non-blocking: the side stream reads x only after it is written.
  tandem::cuda::current_stream().synchronize();
  void* const x_ptr = x.raw_data();
  const double want = tandem::sum(x.cpu()).item<double>();
  Tensor read;
  StreamGate* gate = nullptr;
  {
    tandem::cuda::StreamGuard guard(side);
    read = tandem::sum(x);  // x used on the side stream
    tandem::cuda::record_stream(x, side);
    tandem::cuda::record_stream(read, tandem::cuda::current_stream());  // no-op: its own stream
    gate = new StreamGate(side);  // the side stream is busy until the gate opens
  }
  x = Tensor();  // freed while the side stream still has work queued
  Tensor y = tandem::empty(shape, kGpu);
  EXPECT_NE(y.raw_data(), x_ptr) << "reused while the side stream still had work queued";
  gate->open();
  side.synchronize();
  EXPECT_FALSE(gate->timed_out());
  delete gate;
  y = Tensor();
  Tensor z = tandem::empty(shape, kGpu);
  Tensor w = tandem::empty(shape, kGpu);
  EXPECT_TRUE(z.raw_data() == x_ptr || w.raw_data() == x_ptr)
      << "the block must come back once the side stream is done";
  Tensor got;
  {
    tandem::cuda::StreamGuard guard(side);
    got = read.cpu();
  }
  EXPECT_NEAR(got.item<double>(), want, 1e-3 * std::abs(want));
}
#endif

TEST_F(CudaTest, RecordStreamErrors) {
  const tandem::cuda::Stream s = tandem::cuda::current_stream();
  tt::expect_error([&] { tandem::cuda::record_stream(Tensor(), s); },
                   {"cuda::record_stream", "undefined"});
  tt::expect_error([&] { tandem::cuda::record_stream(tandem::ones({3}), s); },
                   {"cuda::record_stream", "expected a CUDA tensor", "cpu", "[3]"});
  if (tandem::cuda::device_count() > 1) {
    tt::expect_error(
        [&] { tandem::cuda::record_stream(tandem::ones({3}, kGpu), tandem::cuda::new_stream(1)); },
        {"cuda::record_stream", "cuda:1"});
  }
}

// Issue 18 item 7: each (cuBLAS handle, stream) pair has its own workspace, so
// GEMMs on two streams from one thread do not share cuBLAS scratch memory.
TEST_F(CudaTest, GemmsOnTwoStreamsMatchTheCpu) {
  const tandem::cuda::Stream s1 = tandem::cuda::new_stream(), s2 = tandem::cuda::new_stream();
  const Tensor a = tt::random_tensor({257, 129}, tandem::kFloat32);
  const Tensor b = tt::random_tensor({129, 191}, tandem::kFloat32);
  const Tensor ag = a.cuda(), bg = b.cuda();
  // Uploaded on the main stream, read on s1 and s2: the uploads must be done
  // before either stream starts (nothing orders non-blocking streams).
  tandem::cuda::current_stream().synchronize();
  std::vector<Tensor> r1, r2;
  for (int i = 0; i < 8; ++i) {
    {
      tandem::cuda::StreamGuard g(s1);
      r1.push_back(tandem::matmul(ag, bg));
    }
    {
      tandem::cuda::StreamGuard g(s2);
      r2.push_back(tandem::matmul(ag, bg));
    }
  }
  s1.synchronize();
  s2.synchronize();
  const Tensor want = tandem::matmul(a, b);
  const Tol tol = tt::scaled(tt::default_tol(tandem::kFloat32), 20.0);  // GEMM order
  for (int i = 0; i < 8; ++i) {
    tt::expect_close(r1[static_cast<size_t>(i)].cpu(), want, tol);
    tt::expect_close(r2[static_cast<size_t>(i)].cpu(), want, tol);
  }
}

}  // namespace
