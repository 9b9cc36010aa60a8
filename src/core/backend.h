// The two backends' kernel entry points, with one set of signatures
// (backend_decls.inc). Internal to the library.
#pragma once

#include <array>
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

// The geometry of a 2-D convolution (NCHW), see conv2d_* in backend_decls.inc.
struct ConvShape {
  int64_t n, c, h, w;  // input: batch, channels, height, width
  int64_t k, r, s;     // output channels, kernel height, kernel width
  int64_t p, q;        // output height, width
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int64_t groups;  // c and k are multiples of groups

  static constexpr size_t kFields = 16;
  // Every field in declaration order: the start of the plan-cache keys of
  // both backends' convolution libraries (oneDNN, cuDNN).
  std::array<int64_t, kFields> fields() const {
    return {n, c, h, w, k, r, s, p, q, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups};
  }
};

// The geometry of a 2-D pooling (NCHW), see *_pool2d_* in backend_decls.inc.
struct PoolShape {
  int64_t n, c, h, w;              // input
  int64_t oh, ow;                  // output height, width
  int64_t kh, kw, sh, sw, ph, pw;  // kernel, stride, padding (unused by adaptive pooling)
  bool count_include_pad;          // avg_pool2d only
};

// A strided walk between a dense array and positions of another (slicing:
// strided_gather and strided_scatter in backend_decls.inc). Element e of the
// dense side, whose index over `sizes` (outermost first) is (j_0, ..., j_k-1),
// sits at offset + sum_d j_d * strides[d] of the strided side. Built by
// src/ops/slicing.cpp with size-1 dims dropped and contiguous neighbours
// merged; strides are positive, so the positions are distinct.
struct StridedPlan {
  int64_t offset = 0;
  std::vector<int64_t> sizes;
  std::vector<int64_t> strides;
};

namespace cpu {
#include "core/backend_decls.inc"
}  // namespace cpu
namespace cuda {
#include "core/backend_decls.inc"
}  // namespace cuda
}  // namespace tandem
