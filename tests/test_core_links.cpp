// The core (src/core: tensor, storage, allocators, RNG, errors, build facts)
// on its own: this program is linked from the core's sources and the CUDA stub
// alone (tests/CMakeLists.txt), so a call from the core into ops, autograd or
// nn fails its link. The tests use only what the core defines.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/tensor_internal.h"
#include "tandem/build_info.h"
#include "tandem/error.h"
#include "tandem/generator.h"
#include "tandem/tensor.h"

namespace tandem {
namespace {

TEST(CoreLinks, StorageTensorAndAliasShareBytes) {
  std::mt19937 rng(std::random_device{}());
  const int64_t rows = std::uniform_int_distribution<int64_t>(1, 9)(rng);
  const int64_t cols = std::uniform_int_distribution<int64_t>(1, 9)(rng);
  std::vector<float> values(static_cast<size_t>(rows * cols));
  for (float& v : values) v = std::normal_distribution<float>()(rng);
  auto storage = Storage::allocate(values.size() * sizeof(float), Device(kCPU));
  std::memcpy(storage->data(), values.data(), values.size() * sizeof(float));
  const Tensor t = detail::make_tensor(storage, 0, {rows, cols}, kFloat32);
  EXPECT_EQ(t.sizes(), (Shape{rows, cols}));
  EXPECT_EQ(t.numel(), rows * cols);
  const Tensor flat = detail::alias_with_shape(t, {rows * cols});
  ASSERT_EQ(flat.raw_data(), t.raw_data());
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(flat.data_ptr<float>()[i], values[i]) << i;
  }
  std::vector<float> copy(values.size());
  detail::copy_bytes(copy.data(), Device(kCPU), t.raw_data(), Device(kCPU),
                     copy.size() * sizeof(float));
  EXPECT_EQ(copy, values);
}

TEST(CoreLinks, ErrorsAndGenerator) {
  std::mt19937 rng(std::random_device{}());
  const int64_t dims = std::uniform_int_distribution<int64_t>(1, 4)(rng);
  const Tensor t =
      detail::make_tensor(Storage::allocate(8, Device(kCPU)), 0, Shape(dims, 1), kFloat64);
  try {
    t.size(dims + 3);
    FAIL() << "size(" << dims + 3 << ") of a " << dims << "-d tensor was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(dims + 3)), std::string::npos) << e.what();
  }
  Generator g(rng());
  const uint64_t first = g.reserve(5);
  EXPECT_EQ(g.reserve(1), first + 5);
  EXPECT_FALSE(build_info().to_string().empty());
}

}  // namespace
}  // namespace tandem
