// The host caching allocator of CPU tensors (include/tandem/cpu.h,
// src/core/host_allocator.cpp): statistics on random allocate/free sequences,
// reuse across identical training steps, alignment, threads, empty_cache, the
// off switch and its environment variable, out of memory.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#define TANDEM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TANDEM_TEST_ASAN 1
#endif
#endif

namespace {

using namespace tandem;

#if defined(TANDEM_TEST_ASAN)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif

// Sets the caching switch for one test, restores it after.
class CachingGuard {
 public:
  explicit CachingGuard(bool on) : previous_(cpu::caching_allocator_enabled()) {
    cpu::set_caching_allocator_enabled(on);
  }
  ~CachingGuard() { cpu::set_caching_allocator_enabled(previous_); }
  CachingGuard(const CachingGuard&) = delete;
  CachingGuard& operator=(const CachingGuard&) = delete;

 private:
  bool previous_;
};

Tensor bytes(int64_t n) { return empty({n}, TensorOptions(kUInt8)); }

// Sizes from 1 byte to ~6 MiB, log-uniform, so both the small classes and the
// large best-fit path are hit.
int64_t random_size(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> log2(0.0, 22.5);
  return std::max<int64_t>(1, static_cast<int64_t>(std::exp2(log2(rng))));
}

void expect_consistent(const cpu::MemoryStats& s) {
  EXPECT_EQ(s.reserved_bytes, s.allocated_bytes + s.cached_bytes);
  EXPECT_GE(s.peak_allocated_bytes, s.allocated_bytes);
}

TEST(HostAllocator, StatsFollowRandomAllocateFreeSequences) {
  CachingGuard caching(true);
  cpu::empty_cache();
  cpu::reset_peak_memory_stats();
  const cpu::MemoryStats s0 = cpu::memory_stats();
  EXPECT_EQ(s0.cached_bytes, 0u);
  std::mt19937_64 rng(tt::rng()());
  std::vector<int64_t> sizes(301);
  for (auto& n : sizes) n = random_size(rng);
  // Free about half of the live tensors at random points, the rest at the end.
  std::vector<bool> drop(sizes.size());
  for (size_t i = 0; i < drop.size(); ++i) drop[i] = (rng() & 1) != 0;

  const auto run = [&](bool check_each) {
    std::vector<Tensor> live;
    size_t max_allocated = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const cpu::MemoryStats before = cpu::memory_stats();
      live.push_back(bytes(sizes[i]));
      const cpu::MemoryStats after = cpu::memory_stats();
      const auto n = static_cast<size_t>(sizes[i]);
      if (check_each) {
        EXPECT_EQ(after.num_alloc_requests, before.num_alloc_requests + 1);
        // Rounded up to a class (by 64 B or 64 KiB), maybe served by a cached
        // block up to 25% larger.
        const size_t got = after.allocated_bytes - before.allocated_bytes;
        EXPECT_GE(got, n) << "request " << n;
        EXPECT_LE(got, (n + (size_t{64} << 10)) / 4 * 5 + 64) << "request " << n;
        expect_consistent(after);
      }
      max_allocated = std::max(max_allocated, after.allocated_bytes);
      if (drop[i]) {
        const size_t victim = static_cast<size_t>(rng() % live.size());
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(victim));
        const cpu::MemoryStats freed = cpu::memory_stats();
        EXPECT_LT(freed.allocated_bytes, after.allocated_bytes);
        EXPECT_EQ(freed.reserved_bytes, after.reserved_bytes);  // kept, not freed
        expect_consistent(freed);
      }
    }
    EXPECT_EQ(cpu::memory_stats().peak_allocated_bytes, max_allocated);
    live.clear();
  };

  run(true);
  const cpu::MemoryStats s1 = cpu::memory_stats();
  EXPECT_EQ(s1.allocated_bytes, s0.allocated_bytes);
  EXPECT_EQ(s1.num_alloc_requests, s0.num_alloc_requests + sizes.size());
  EXPECT_GT(s1.num_system_allocs, s0.num_system_allocs);
  EXPECT_EQ(s1.num_system_frees, s0.num_system_frees);  // everything stayed cached
  EXPECT_EQ(s1.cached_bytes, s1.reserved_bytes - s1.allocated_bytes);
  EXPECT_GT(s1.cached_bytes, 0u);
  expect_consistent(s1);

  // Replaying the sequence is served from the cache: no system allocation.
  cpu::reset_peak_memory_stats();
  EXPECT_EQ(cpu::memory_stats().peak_allocated_bytes, s1.allocated_bytes);
  // Each request alone (freed at once) finds a block of its class or a fit.
  for (int64_t n : sizes) (void)bytes(n);
  const cpu::MemoryStats s2 = cpu::memory_stats();
  EXPECT_EQ(s2.num_system_allocs, s1.num_system_allocs);
  EXPECT_EQ(s2.num_alloc_requests, s1.num_alloc_requests + sizes.size());
  EXPECT_EQ(s2.allocated_bytes, s0.allocated_bytes);
}

TEST(HostAllocator, PeakFollowsReset) {
  CachingGuard caching(true);
  const int64_t n = 3 * (1 << 20) + 17;
  Tensor a = bytes(n);
  {
    Tensor b = bytes(n);
    cpu::reset_peak_memory_stats();
  }
  const cpu::MemoryStats s = cpu::memory_stats();
  EXPECT_GE(s.peak_allocated_bytes, s.allocated_bytes + static_cast<size_t>(n));
  cpu::reset_peak_memory_stats();
  EXPECT_EQ(cpu::memory_stats().peak_allocated_bytes, cpu::memory_stats().allocated_bytes);
}

TEST(HostAllocator, BlocksAre64ByteAligned) {
  for (const bool on : {true, false}) {
    CachingGuard caching(on);
    std::mt19937_64 rng(tt::rng()());
    std::vector<Tensor> live;
    for (int i = 0; i < 200; ++i) {
      live.push_back(bytes(random_size(rng)));
      EXPECT_EQ(reinterpret_cast<uintptr_t>(live.back().data_ptr<uint8_t>()) % 64, 0u)
          << "caching " << on << ", " << live.back().numel() << " bytes";
      if (i % 3 == 0) live.erase(live.begin());
    }
  }
}

// A training step of a small conv net on the CPU: once warmed up, an
// identical step takes every block from the cache. Warm-up is two steps: the
// first creates the momentum buffers after its forward and backward freed
// their blocks, so they hold cached blocks that the second step's forward
// replaces once.
TEST(HostAllocator, SteadyTrainingStepMakesNoSystemAllocation) {
  CachingGuard caching(true);
  Generator g(tt::rng()());
  nn::Sequential net;
  net->push_back(nn::Conv2d(nn::Conv2dOptions(3, 6, 5)));
  net->push_back(nn::ReLU());
  net->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
  net->push_back(nn::Flatten());
  net->push_back(nn::Linear(6 * 7 * 7, 10));
  optim::SGD sgd(net->parameters(), optim::SGDOptions(0.01).momentum(0.9));
  const Tensor x = randn({13, 3, 19, 18}, {}, &g);
  const Tensor y = randint(0, 10, {13}, kInt64, &g);
  const auto step = [&] {
    sgd.zero_grad();
    Tensor loss = cross_entropy(net->forward(x), y);
    loss.backward();
    sgd.step();
    return loss.item<double>();
  };
  cpu::empty_cache();
  const cpu::MemoryStats s0 = cpu::memory_stats();
  step();
  const cpu::MemoryStats s1 = cpu::memory_stats();
  EXPECT_GT(s1.num_system_allocs, s0.num_system_allocs);  // the cache was empty
  step();
  const cpu::MemoryStats s2 = cpu::memory_stats();
  EXPECT_LE(s2.num_system_allocs, s1.num_system_allocs + 2);
  for (int i = 0; i < 3; ++i) {
    const cpu::MemoryStats before = cpu::memory_stats();
    const double loss = step();
    const cpu::MemoryStats after = cpu::memory_stats();
    EXPECT_EQ(after.num_system_allocs, before.num_system_allocs) << "steady step " << i;
    EXPECT_GT(after.num_alloc_requests, before.num_alloc_requests + 20);  // it did allocate
    EXPECT_EQ(after.allocated_bytes, before.allocated_bytes);
    EXPECT_TRUE(std::isfinite(loss));
  }
  EXPECT_EQ(cpu::memory_stats().num_system_frees, s0.num_system_frees);
}

// Threads allocate, fill, check and free blocks, many of them allocated by
// another thread (as DataLoader workers hand batches to the training thread).
TEST(HostAllocator, ThreadsAllocateAndFreeConcurrently) {
  CachingGuard caching(true);
  const size_t allocated0 = cpu::memory_stats().allocated_bytes;
  const uint64_t requests0 = cpu::memory_stats().num_alloc_requests;
  constexpr int kThreads = 4, kIters = 1500;
  std::mutex mutex;
  std::deque<std::pair<Tensor, uint8_t>> shared;  // handed between threads
  std::atomic<int> corrupted{0};
  const uint64_t seed = tt::rng()();
  const auto check = [&](const Tensor& t, uint8_t tag) {
    const auto* p = t.data_ptr<uint8_t>();
    for (int64_t i = 0; i < t.numel(); i += 61) {
      if (p[i] != tag) {
        ++corrupted;
        return;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed + static_cast<uint64_t>(t));
      std::vector<std::pair<Tensor, uint8_t>> mine;
      for (int i = 0; i < kIters; ++i) {
        Tensor a = bytes(std::min<int64_t>(random_size(rng), 1 << 21));
        const auto tag = static_cast<uint8_t>(rng());
        std::memset(a.data_ptr<uint8_t>(), tag, static_cast<size_t>(a.numel()));
        if (i % 2 == 0) {
          std::lock_guard<std::mutex> lock(mutex);
          shared.emplace_back(a, tag);
          if (shared.size() > 16) {
            check(shared.front().first, shared.front().second);
            shared.pop_front();  // frees a block of whichever thread made it
          }
        } else {
          mine.emplace_back(a, tag);
          if (mine.size() > 8) {
            const size_t k = static_cast<size_t>(rng() % mine.size());
            check(mine[k].first, mine[k].second);
            mine.erase(mine.begin() + static_cast<std::ptrdiff_t>(k));
          }
        }
      }
      for (const auto& [a, tag] : mine) check(a, tag);
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& [a, tag] : shared) check(a, tag);
  shared.clear();
  EXPECT_EQ(corrupted.load(), 0) << "a block was handed out twice";
  const cpu::MemoryStats s = cpu::memory_stats();
  EXPECT_EQ(s.allocated_bytes, allocated0);
  EXPECT_EQ(s.num_alloc_requests, requests0 + kThreads * kIters);
  expect_consistent(s);
}

TEST(HostAllocator, EmptyCacheReturnsMemory) {
  CachingGuard caching(true);
  cpu::empty_cache();
  const cpu::MemoryStats s0 = cpu::memory_stats();
  Tensor keep = bytes(777);
  {
    std::vector<Tensor> tmp;
    for (int64_t n : {1, 1000, 4099, (1 << 20) + 5, 5 * (1 << 20) + 3}) tmp.push_back(bytes(n));
  }
  const cpu::MemoryStats s1 = cpu::memory_stats();
  EXPECT_EQ(s1.num_system_allocs, s0.num_system_allocs + 6);
  EXPECT_GE(s1.cached_bytes, size_t{6} << 20);
  cpu::empty_cache();
  const cpu::MemoryStats s2 = cpu::memory_stats();
  EXPECT_EQ(s2.cached_bytes, 0u);
  EXPECT_EQ(s2.reserved_bytes, s2.allocated_bytes);
  EXPECT_EQ(s2.reserved_bytes, s1.reserved_bytes - s1.cached_bytes);
  EXPECT_EQ(s2.num_system_frees, s1.num_system_frees + 5);
  EXPECT_EQ(keep.numel(), 777);
  // What is allocated again comes from the system.
  (void)bytes(4099);
  EXPECT_EQ(cpu::memory_stats().num_system_allocs, s2.num_system_allocs + 1);
}

TEST(HostAllocator, DisabledFreesEveryBlock) {
  CachingGuard on(true);
  { (void)bytes(12345); }
  EXPECT_GT(cpu::memory_stats().cached_bytes, 0u);
  Tensor from_cache_time = bytes(3 * (1 << 20) + 1);  // allocated while caching
  cpu::set_caching_allocator_enabled(false);
  EXPECT_FALSE(cpu::caching_allocator_enabled());
  const cpu::MemoryStats s0 = cpu::memory_stats();
  EXPECT_EQ(s0.cached_bytes, 0u);  // turning it off released the cache
  std::mt19937_64 rng(tt::rng()());
  for (int i = 0; i < 20; ++i) {
    const int64_t n = random_size(rng);
    Tensor t = bytes(n);
    const cpu::MemoryStats s = cpu::memory_stats();
    EXPECT_EQ(s.cached_bytes, 0u);
    EXPECT_LT(s.allocated_bytes - s0.allocated_bytes, static_cast<size_t>(n) + 64);
  }
  from_cache_time = Tensor();  // freed for real although it was allocated with caching on
  const cpu::MemoryStats s1 = cpu::memory_stats();
  EXPECT_EQ(s1.num_system_allocs, s0.num_system_allocs + 20);
  EXPECT_EQ(s1.num_system_frees, s0.num_system_frees + 21);
  EXPECT_EQ(s1.cached_bytes, 0u);
  EXPECT_EQ(s1.reserved_bytes, s1.allocated_bytes);
  // A block allocated while off and freed while on is not kept (no class size).
  Tensor odd = bytes(1100);  // 1152 B: between the classes 1024 and 1280
  cpu::set_caching_allocator_enabled(true);
  odd = Tensor();
  EXPECT_EQ(cpu::memory_stats().cached_bytes, 0u);
}

// The environment variable (read at the first allocation) and the ASan default.
// ctest runs this test twice: as is, and with TANDEM_CPU_CACHING_ALLOCATOR=0.
TEST(HostAllocator, EnvironmentSwitch) {
  (void)bytes(1);  // make sure the allocator exists
  const char* env = std::getenv("TANDEM_CPU_CACHING_ALLOCATOR");
  bool want = !kAsan;
  if (env != nullptr) want = std::strcmp(env, "") != 0 && std::strcmp(env, "0") != 0;
  EXPECT_EQ(cpu::caching_allocator_enabled(), want)
      << "TANDEM_CPU_CACHING_ALLOCATOR=" << (env != nullptr ? env : "(unset)")
      << ", AddressSanitizer " << kAsan;
  if (!want) {
    const cpu::MemoryStats s0 = cpu::memory_stats();
    (void)bytes(4321);
    const cpu::MemoryStats s1 = cpu::memory_stats();
    EXPECT_EQ(s1.num_system_frees, s0.num_system_frees + 1);
    EXPECT_EQ(s1.cached_bytes, 0u);
  }
}

TEST(HostAllocator, OutOfMemoryReleasesTheCacheThenThrows) {
  const char* asan_options = std::getenv("ASAN_OPTIONS");
  TANDEM_SKIP_IF(
      Asan,
      kAsan && (asan_options == nullptr ||
                std::string(asan_options).find("allocator_may_return_null=1") == std::string::npos),
      "AddressSanitizer aborts on an impossible allocation");
  CachingGuard caching(true);
  { (void)bytes(5 * (1 << 20)); }
  ASSERT_GT(cpu::memory_stats().cached_bytes, 0u);
  const size_t allocated = cpu::memory_stats().allocated_bytes;
  const int64_t huge = int64_t{1} << 52;  // 4 PiB
  try {
    (void)bytes(huge);
    FAIL() << "expected OutOfMemoryError";
  } catch (const OutOfMemoryError& e) {
    EXPECT_NE(std::string(e.what()).find("cpu: out of memory allocating 4194304.00 GiB of host"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("smaller batch"), std::string::npos) << e.what();
  }
  const cpu::MemoryStats s = cpu::memory_stats();
  EXPECT_EQ(s.cached_bytes, 0u);  // released before the retry
  EXPECT_EQ(s.allocated_bytes, allocated);
}

#if defined(TANDEM_TEST_ASAN)
// With caching on under ASan, a cached block is poisoned: a use after free
// still reports.
TEST(HostAllocatorDeathTest, UseAfterFreeOfCachedBlockReports) {
  CachingGuard caching(true);
  EXPECT_DEATH(
      {
        volatile uint8_t* p = nullptr;
        {
          Tensor t = bytes(1000);
          p = t.data_ptr<uint8_t>();
        }
        p[3] = 1;
      },
      "use-after-poison");
}
#endif

}  // namespace
