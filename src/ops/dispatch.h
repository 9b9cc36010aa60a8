// The one dispatch point: an op's checked, allocated arguments go to
// cpu::<fn> or cuda::<fn> by device. There is no CPU fallback for CUDA tensors.
// Also the argument checks every op shares.
#pragma once

#include <string>
#include <vector>

#include "core/backend.h"
#include "cuda/runtime.h"
#include "tandem/error.h"
#include "tandem/tensor.h"

#if defined(TANDEM_WITH_CUDA_BACKEND)
#define TANDEM_BACKEND_CALL(DEVICE, FN, ...)                                  \
  do {                                                                        \
    const ::tandem::Device tandem_dev_ = (DEVICE);                            \
    if (tandem_dev_.is_cuda()) {                                              \
      ::tandem::cuda::detail::DeviceGuard tandem_guard_(tandem_dev_.index()); \
      ::tandem::cuda::FN(__VA_ARGS__);                                        \
    } else {                                                                  \
      ::tandem::cpu::FN(__VA_ARGS__);                                         \
    }                                                                         \
  } while (0)
#else
#define TANDEM_BACKEND_CALL(DEVICE, FN, ...)                                         \
  do {                                                                               \
    const ::tandem::Device tandem_dev_ = (DEVICE);                                   \
    TANDEM_CHECK(!tandem_dev_.is_cuda(), #FN,                                        \
                 ": a CUDA tensor reached an op, but tandem was built without CUDA " \
                 "support (configure with TANDEM_CUDA=ON)");                         \
    ::tandem::cpu::FN(__VA_ARGS__);                                                  \
  } while (0)
#endif

namespace tandem {
namespace detail {

// "float32[2, 3] on cuda:0"
std::string describe(const Tensor& t);
void check_defined(const char* op, const Tensor& t, const char* arg = "input");
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b);
void check_floating(const char* op, const Tensor& t);
void check_index_dtype(const char* op, const Tensor& t);
// Wraps a possibly negative dim into [0, ndim); throws naming the op.
int64_t normalize_dim(const char* op, int64_t dim, int64_t ndim);
// Product of sizes[begin, end).
int64_t prod(const Shape& sizes, int64_t begin, int64_t end);

// Memory overlap (docs/design.md, "In-place ops and overlapping operands").
// Tensors are contiguous, so each is one byte range of its storage: two
// overlap when they share storage and their ranges intersect.
bool overlaps(const Tensor& a, const Tensor& b);
// What an elementwise op that writes `written` may read for `read`: `read`
// itself when it does not overlap `written`, or is exactly its bytes (element
// i read only by the thread that writes element i: x.add_(x)); otherwise a
// copy, made first on read's device, so the op sees the values `read` had
// before it (x.div_(x[0]), m.sub_(m[0]), shifted slices of one tensor).
Tensor unaliased_operand(const Tensor& written, const Tensor& read);

}  // namespace detail
}  // namespace tandem
