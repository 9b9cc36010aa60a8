// The argument checks every layer shares (ops, nn, optim, ...): defined,
// same device / dtype, floating, index dtype, dims, and memory overlap. Plain
// C++ over Tensor metadata: no backend, no autograd, so any layer may include
// it (src/ops/dispatch.h, the backend switch, includes it for the ops).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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
// Multi-tensor ops that read or write every tensor of one list (the foreach
// ops, clip_grad_norm_, the fused optimizer steps): no two may overlap (a
// tensor listed twice, or views sharing bytes). The CPU would apply the op
// twice to those bytes and the GPU race on them. Throws naming the op, the
// positions (`what` in the plural: "tensors 0 and 2") and the tensors.
void check_no_overlap_in_list(const char* op, const std::vector<Tensor>& tensors,
                              const char* what = "tensor");

}  // namespace detail
}  // namespace tandem
