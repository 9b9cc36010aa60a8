// The argument checks every layer shares (ops, nn, optim, ...): defined,
// same device / dtype, floating, index dtype, dims, and memory overlap. Plain
// C++ over Tensor metadata: no backend, no autograd, so any layer may include
// it (src/ops/dispatch.h, the backend switch, includes it for the ops).
#pragma once

#include <cstdint>
#include <string>

#include "tandem/tensor.h"

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

}  // namespace detail
}  // namespace tandem
