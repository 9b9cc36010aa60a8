// Copies and fills: cuda::copy_convert, cuda::fill, cuda::arange, cuda::copy_2d,
// cuda::permute.
//
// Layout: all tensors contiguous (row-major).
//   - copy_convert: same dtype -> cudaMemcpyAsync; otherwise a grid-stride
//     kernel applying convert_value (cuda_utils.h): static_cast, except that
//     floating -> integer truncates, saturates and maps NaN to 0, exactly as
//     the CPU backend does.
//   - fill: all-zero bit patterns -> cudaMemsetAsync; otherwise a kernel with
//     16-byte stores when the pointer is aligned. The value is converted on the
//     host with scalar_to (integers through int64, as on the CPU).
//   - arange: out[i] = convert_value<T>(start + i * step), computed in double
//     with explicitly rounded multiply and add (no FMA contraction), as on the CPU.
//   - copy_2d: cudaMemcpy2DAsync (pitched copy of rows into a column range).
//   - permute: output dims are merged where the input is contiguous across them;
//     what remains is a plain copy, a (batched) 2-D transpose through 32x32
//     shared-memory tiles, or a general gather over at most 16 merged dims per
//     launch (more: one launch per index of the outer dims; index arithmetic
//     in uint32_t with FastDivmod, core/fast_divmod.h, when the tensor has at most 2^31 - 1
//     elements, 64-bit otherwise). Elements move as raw 1-, 4- or 8-byte words.
//   - strided_gather / strided_scatter (slicing off a leading range, and its
//     backward): the same general walk (strided_kernel, Walk::Gather or
//     Walk::Scatter) from the op layer's StridedPlan (core/backend.h); the
//     scatter's positions are distinct, so plain stores, as on the CPU.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/backend.h"
#include "core/permute_plan.h"
#include "cuda/cuda_utils.h"

namespace tandem {
namespace cuda {
namespace {

constexpr int kPermuteMaxDims = 16;
constexpr int kTile = 32;
constexpr int kTileRows = 8;  // threads per tile column; each copies kTile / kTileRows rows

// ---- Kernels ----------------------------------------------------------------------------

template <typename S, typename D>
__global__ void convert_kernel(const S* src, D* dst, int64_t n) {
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += nthreads) {
    dst[i] = convert_value<D>(src[i]);
  }
}

// The first n_vec * kVec elements as 16-byte vectors (n_vec == 0 if misaligned).
template <typename T>
__global__ void fill_kernel(T* out, int64_t n, int64_t n_vec, T value) {
  constexpr int kVec = vec16<T>();
  using Vec = AlignedVec<T, kVec>;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  Vec v;
#pragma unroll
  for (int e = 0; e < kVec; ++e) v.val[e] = value;
  Vec* out_vec = reinterpret_cast<Vec*>(out);
  for (int64_t j = tid; j < n_vec; j += nthreads) out_vec[j] = v;
  for (int64_t i = n_vec * kVec + tid; i < n; i += nthreads) out[i] = value;
}

template <typename T>
__global__ void arange_kernel(T* out, int64_t n, double start, double step) {
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += nthreads) {
    out[i] = convert_value<T>(__dadd_rn(start, __dmul_rn(static_cast<double>(i), step)));
  }
}

// x viewed as [batch, rows, cols], out as [batch, cols, rows].
template <typename W>
__global__ void transpose_tiled_kernel(const W* x, W* out, int64_t batch, int64_t rows,
                                       int64_t cols) {
  TANDEM_SHARED(W, tile, [kTile][kTile + 1]);  // +1: no bank conflicts on the transposed read
  const int64_t tiles_r = ceil_div<int64_t>(rows, kTile);
  const int64_t tiles_c = ceil_div<int64_t>(cols, kTile);
  const int64_t tiles = batch * tiles_r * tiles_c;
  const int tx = static_cast<int>(threadIdx.x);
  const int ty = static_cast<int>(threadIdx.y);
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int64_t tc = t % tiles_c;
    const int64_t tr = (t / tiles_c) % tiles_r;
    const int64_t b = t / (tiles_c * tiles_r);
    const W* xb = x + b * rows * cols;
    W* ob = out + b * rows * cols;
    const int64_t c = tc * kTile + tx;
#pragma unroll
    for (int k = 0; k < kTile; k += kTileRows) {
      const int64_t r = tr * kTile + ty + k;
      if (r < rows && c < cols) tile[ty + k][tx] = xb[r * cols + c];
    }
    __syncthreads();
    const int64_t r_out = tr * kTile + tx;
#pragma unroll
    for (int k = 0; k < kTile; k += kTileRows) {
      const int64_t c_out = tc * kTile + ty + k;
      if (c_out < cols && r_out < rows) ob[c_out * rows + r_out] = tile[tx][ty + k];
    }
    __syncthreads();  // the tile is refilled by the next iteration
  }
}

template <typename Index>
struct PermuteGeometry {
  int ndim;
  Divmod<Index> sizes[kPermuteMaxDims];  // output dims, innermost first
  Index strides[kPermuteMaxDims];        // input stride of each output dim
};

// Which side of a strided walk is dense: Gather reads the strided side and
// writes the dense one (permute, strided_gather), Scatter the reverse
// (strided_scatter, whose positions are distinct: plain stores).
enum class Walk : int8_t { Gather, Scatter };

// S and D: the word pointer types of the strided and the dense side (const
// on the side that is read).
template <Walk kWalk, typename S, typename D, typename Index>
__global__ void strided_kernel(S strided, D dense, Index n, PermuteGeometry<Index> g) {
  for (Index e = grid_thread<Index>(); e < n; e += grid_threads<Index>()) {
    Index rem = e;
    Index offset = 0;
    for (int d = 0; d < g.ndim; ++d) {
      Index q, r;
      g.sizes[d].divmod(rem, q, r);
      offset += r * g.strides[d];
      rem = q;
    }
    if constexpr (kWalk == Walk::Gather) {
      dense[e] = strided[offset];
    } else {
      strided[offset] = dense[e];
    }
  }
}

// ---- Host --------------------------------------------------------------------------------------

template <typename S>
void convert_from(const S* src, Tensor& dst, int64_t n) {
  TANDEM_DISPATCH_ALL(dst.dtype(), "copy_convert (cuda)", [&] {
    constexpr int kBlock = kBlockSize;
    const int grid = grid_for(n, kBlock, kBlock);
    TANDEM_LAUNCH(grid, kBlock, 0, current_cuda_stream(), convert_kernel<S, scalar_t>)
    (src, dst.data_ptr<scalar_t>(), n);
  });
}

// The plan's positions lie inside the strided tensor (the op layer built it;
// a bad plan is a bug).
void check_plan(const char* op, const Tensor& strided, const StridedPlan& plan,
                const Tensor& dense) {
  TANDEM_CHECK(plan.sizes.size() == plan.strides.size(), op, ": ", plan.sizes.size(), " sizes and ",
               plan.strides.size(), " strides");
  TANDEM_CHECK(strided.dtype() == dense.dtype(), op, ": dtypes differ (",
               dtype_name(strided.dtype()), " vs ", dtype_name(dense.dtype()), ")");
  int64_t n = 1, last = plan.offset;
  for (size_t d = 0; d < plan.sizes.size(); ++d) {
    n *= plan.sizes[d];
    last += (plan.sizes[d] - 1) * plan.strides[d];
  }
  TANDEM_CHECK(n == dense.numel(), op, ": the plan walks ", n, " elements, the dense side has ",
               dense.numel());
  TANDEM_CHECK(n == 0 || (plan.offset >= 0 && last < strided.numel()), op,
               ": the plan reaches element ", last, " of a tensor of ", strided.numel());
}

// The general walk of permute and slicing over n elements of the dense side,
// sizes outermost first. More dims than the geometry holds: one launch per
// index of the outer dims over the innermost kPermuteMaxDims, so any rank
// runs, as on the CPU.
template <Walk kWalk, typename S, typename D>
void strided_walk(S strided, D dense, const std::vector<int64_t>& sizes,
                  const std::vector<int64_t>& strides, int64_t n, cudaStream_t stream) {
  const size_t k = sizes.size();
  const size_t outer = k > static_cast<size_t>(kPermuteMaxDims) ? k - kPermuteMaxDims : 0;
  const size_t inner_dims = k - outer;
  int64_t n_inner = 1, n_outer = 1;
  for (size_t d = outer; d < k; ++d) n_inner *= sizes[d];
  for (size_t d = 0; d < outer; ++d) n_outer *= sizes[d];
  constexpr int kBlock = kBlockSize;
  const int grid = grid_for(n_inner, kBlock, kBlock);
  // Index width from the larger side: the strided side's positions reach
  // past n (a gather from a big tensor).
  int64_t reach = n;
  for (size_t d = 0; d < k; ++d) reach = std::max(reach, (sizes[d] - 1) * strides[d] + 1);
  dispatch_index_width(fits_int32({n, reach}), [&](auto index_tag) {
    using Index = decltype(index_tag);
    PermuteGeometry<Index> g{};
    g.ndim = static_cast<int>(inner_dims);
    for (size_t j = 0; j < inner_dims; ++j) {
      g.sizes[j] = Divmod<Index>(sizes[k - 1 - j]);
      g.strides[j] = static_cast<Index>(strides[k - 1 - j]);
    }
    for (int64_t o = 0; o < n_outer; ++o) {
      int64_t offset = 0;
      for (size_t d = outer, rem = static_cast<size_t>(o); d-- > 0;) {
        const auto size = static_cast<size_t>(sizes[d]);
        offset += static_cast<int64_t>(rem % size) * strides[d];
        rem /= size;
      }
      TANDEM_LAUNCH(grid, kBlock, 0, stream, strided_kernel<kWalk, S, D, Index>)
      (strided + offset, dense + o * n_inner, static_cast<Index>(n_inner), g);
    }
  });
}

}  // namespace

void copy_convert(const Tensor& src, Tensor& dst) {
  const int64_t n = src.numel();
  TANDEM_CHECK(dst.numel() == n, "copy_convert (cuda): ", n, " elements into ", dst.numel());
  if (n == 0) return;
  if (src.dtype() == dst.dtype()) {
    if (src.raw_data() == dst.raw_data()) return;
    TANDEM_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), src.nbytes(),
                                      cudaMemcpyDeviceToDevice, current_cuda_stream()));
    return;
  }
  TANDEM_DISPATCH_ALL(src.dtype(), "copy_convert (cuda)",
                      [&] { convert_from<scalar_t>(src.data_ptr<scalar_t>(), dst, n); });
}

void fill(Tensor& out, double value) {
  const int64_t n = out.numel();
  if (n == 0) return;
  cudaStream_t stream = current_cuda_stream();
  TANDEM_DISPATCH_ALL(out.dtype(), "fill (cuda)", [&] {
    const scalar_t v = scalar_to<scalar_t>(value);
    const scalar_t zero{};
    if (std::memcmp(&v, &zero, sizeof(v)) == 0) {
      TANDEM_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, out.nbytes(), stream));
      return;
    }
    scalar_t* p = out.data_ptr<scalar_t>();
    constexpr int kVec = vec16<scalar_t>();
    constexpr int kBlock = kBlockSize;
    const int64_t n_vec = is_aligned_to(p, 16) ? n / kVec : 0;
    const int grid = grid_for(n_vec > 0 ? n_vec : n, kBlock, kBlock);
    TANDEM_LAUNCH(grid, kBlock, 0, stream, fill_kernel<scalar_t>)(p, n, n_vec, v);
  });
}

void arange(Tensor& out, double start, double step) {
  const int64_t n = out.numel();
  if (n == 0) return;
  TANDEM_DISPATCH_ALL(out.dtype(), "arange (cuda)", [&] {
    constexpr int kBlock = kBlockSize;
    const int grid = grid_for(n, kBlock, kBlock);
    TANDEM_LAUNCH(grid, kBlock, 0, current_cuda_stream(), arange_kernel<scalar_t>)
    (out.data_ptr<scalar_t>(), n, start, step);
  });
}

void copy_2d(const Tensor& src, Tensor& dst, int64_t rows, int64_t src_cols, int64_t dst_cols,
             int64_t col_offset) {
  TANDEM_CHECK(src.dtype() == dst.dtype(), "copy_2d (cuda): dtypes differ (",
               dtype_name(src.dtype()), " vs ", dtype_name(dst.dtype()), ")");
  TANDEM_CHECK(rows >= 0 && src_cols >= 0 && col_offset >= 0 && col_offset + src_cols <= dst_cols,
               "copy_2d (cuda): columns [", col_offset, ", ", col_offset + src_cols,
               ") do not fit in ", dst_cols);
  if (rows == 0 || src_cols == 0) return;
  const size_t es = src.element_size();
  cudaStream_t stream = current_cuda_stream();
  char* dst_base = static_cast<char*>(dst.raw_data()) + static_cast<size_t>(col_offset) * es;
  const size_t width = static_cast<size_t>(src_cols) * es;
  const size_t dpitch = static_cast<size_t>(dst_cols) * es;
  if (rows == 1 || src_cols == dst_cols) {
    TANDEM_CUDA_CHECK(cudaMemcpyAsync(dst_base, src.raw_data(), width * static_cast<size_t>(rows),
                                      cudaMemcpyDeviceToDevice, stream));
    return;
  }
  TANDEM_CUDA_CHECK(cudaMemcpy2DAsync(dst_base, dpitch, src.raw_data(), width, width,
                                      static_cast<size_t>(rows), cudaMemcpyDeviceToDevice, stream));
}

void permute(const Tensor& x, Tensor& out, const Shape& perm) {
  const PermutePlan plan = permute_plan(x.sizes(), perm, "permute (cuda)");
  const int64_t n = x.numel();
  if (n == 0) return;
  const std::vector<int64_t>& sizes = plan.sizes;
  const std::vector<int64_t>& strides = plan.strides;
  cudaStream_t stream = current_cuda_stream();
  const size_t k = sizes.size();
  if (k <= 1) {  // the order of elements does not change
    TANDEM_CUDA_CHECK(cudaMemcpyAsync(out.raw_data(), x.raw_data(), x.nbytes(),
                                      cudaMemcpyDeviceToDevice, stream));
    return;
  }
  // Batched 2-D transpose: the last two output dims are (C, stride 1), (R, stride C).
  const bool transpose = strides[k - 2] == 1 && strides[k - 1] == sizes[k - 2] &&
                         (k == 2 || (k == 3 && strides[0] == sizes[1] * sizes[2]));
  const int64_t cols = sizes[k - 2];
  const int64_t rows = sizes[k - 1];
  visit_word(x.element_size(), "permute", [&](auto word) {
    using W = decltype(word);
    const W* xp = static_cast<const W*>(x.raw_data());
    W* op = static_cast<W*>(out.raw_data());
    if (transpose && rows >= 16 && cols >= 16) {
      const int64_t batch = k == 3 ? sizes[0] : 1;
      const int64_t tiles = batch * ceil_div<int64_t>(rows, kTile) * ceil_div<int64_t>(cols, kTile);
      const dim3 block(kTile, kTileRows);
      const int grid = grid_for(tiles, 1, kTile * kTileRows);
      TANDEM_LAUNCH(grid, block, 0, stream, transpose_tiled_kernel<W>)(xp, op, batch, rows, cols);
      return;
    }
    strided_walk<Walk::Gather>(xp, op, sizes, strides, n, stream);
  });
}

void strided_gather(const Tensor& x, const StridedPlan& plan, Tensor& out) {
  check_plan("strided_gather (cuda)", x, plan, out);
  if (out.numel() == 0) return;
  visit_word(x.element_size(), "strided_gather (cuda)", [&](auto word) {
    using W = decltype(word);
    strided_walk<Walk::Gather>(static_cast<const W*>(x.raw_data()) + plan.offset,
                               static_cast<W*>(out.raw_data()), plan.sizes, plan.strides,
                               out.numel(), current_cuda_stream());
  });
}

void strided_scatter(const Tensor& src, const StridedPlan& plan, Tensor& x) {
  check_plan("strided_scatter (cuda)", x, plan, src);
  if (src.numel() == 0) return;
  visit_word(x.element_size(), "strided_scatter (cuda)", [&](auto word) {
    using W = decltype(word);
    strided_walk<Walk::Scatter>(static_cast<W*>(x.raw_data()) + plan.offset,
                                static_cast<const W*>(src.raw_data()), plan.sizes, plan.strides,
                                src.numel(), current_cuda_stream());
  });
}

}  // namespace cuda
}  // namespace tandem
