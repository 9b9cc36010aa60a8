// Counter-based random numbers (Philox4x32-10). A Generator is a (seed, offset)
// pair: an op that needs n numbers takes the counter range [offset, offset +
// ceil(n/4)) and advances the offset, so CPU and CUDA produce the same stream.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>

namespace tandem {

class Generator {
 public:
  explicit Generator(uint64_t seed = 67280421310721ULL);

  void manual_seed(uint64_t seed);  // also resets the offset to 0
  uint64_t seed() const;
  uint64_t offset() const;
  void set_offset(uint64_t offset);

  // Reserves `counters` Philox counters (4 x 32-bit numbers each) and returns
  // the first; thread-safe.
  uint64_t reserve(uint64_t counters);

 private:
  mutable std::mutex mutex_;
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// The process-wide generator used when an op is given none.
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace tandem
