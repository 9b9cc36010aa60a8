// The two backends' kernel entry points, with one set of signatures
// (backend_decls.inc). Internal to the library.
#pragma once

#include <cstdint>
#include <vector>

#include "tandem/op_list.h"
#include "tandem/tensor.h"

namespace tandem {

// The shape of a batched GEMM (see gemm in backend_decls.inc).
struct GemmShape {
  int64_t batch, m, n, k;
  int64_t stride_a, stride_b, stride_c;  // elements between consecutive matrices
};

namespace cpu {
#include "core/backend_decls.inc"
}  // namespace cpu
namespace cuda {
#include "core/backend_decls.inc"
}  // namespace cuda
}  // namespace tandem
