// Indexing kernels: cuda::index_select, cuda::gather, cuda::one_hot and the
// adjoints cuda::scatter_add, cuda::index_add.
//
// Layout: x viewed as [outer, dim_size, inner] (contiguous); indices are int32 or
// int64. Elements are moved as raw 1-, 4- or 8-byte words, so one kernel serves
// every dtype of that size.
//   - index_select: out [outer, m, inner] = x[:, index[j], :]. Rows of at least
//     kRowKernelMin elements use a block-per-row kernel (one index lookup and
//     division per row, coalesced copy of the row); shorter rows use a flat
//     kernel over output elements.
//   - gather: out[o][j][i] = x[o][index[o][j][i]][i], flat over output elements.
//   - one_hot: out [numel(labels), C] is zeroed with cudaMemsetAsync, then one
//     thread per label writes the 1.
//   - scatter_add: out[o][index[o][j][i]][i] += src[o][j][i], flat over src;
//     index_add: out[o][index[j]][i] += src[o][j][i], flat over src for short
//     rows, block per source row (one index lookup per row) for rows of at
//     least kRowKernelMin elements. float32/float64 only, accumulated with
//     atomicAdd (native for both on sm_60+), so with repeated indices the order
//     of the additions, and the float rounding, may vary between runs; the CPU
//     adds in index order.
// The flat kernels split an element index with Divmod<Index>: uint32_t and
// FastDivmod (core/fast_divmod.h) when the input and output counts fit in
// int32, 64-bit division otherwise.
// DIFFERENCE FROM THE CPU: an index outside [0, dim_size) (negative included)
// throws on the CPU; here it reads nothing and writes 0 (index_select, gather),
// leaves the one_hot row all zero, or its addition is skipped (scatter_add,
// index_add). Checking would need a device-to-host sync.
#include <cstdint>

#include "core/backend.h"
#include "cuda/cuda_utils.h"

namespace tandem {
namespace cuda {
namespace {

// ---- Kernels ------------------------------------------------------------------------------

template <typename W, typename I, typename Index>
__global__ void index_select_flat_kernel(const W* x, const I* index, W* out, Index total,
                                         Divmod<Index> m, Index dim_size, Divmod<Index> inner) {
  for (Index e = grid_thread<Index>(); e < total; e += grid_threads<Index>()) {
    Index row, i, o, j;
    inner.divmod(e, row, i);
    m.divmod(row, o, j);
    const int64_t idx = static_cast<int64_t>(index[j]);
    out[e] = (idx >= 0 && idx < static_cast<int64_t>(dim_size))
                 ? x[(o * dim_size + static_cast<Index>(idx)) * inner.divisor + i]
                 : W(0);
  }
}

// One block per output row (o, j) at a time; threads stride over the row.
template <typename W, typename I>
__global__ void index_select_rows_kernel(const W* x, const I* index, W* out, int64_t rows,
                                         int64_t m, int64_t dim_size, int64_t inner) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t j = row % m;
    const int64_t o = row / m;
    const int64_t idx = static_cast<int64_t>(index[j]);
    W* dst = out + row * inner;
    if (idx >= 0 && idx < dim_size) {
      const W* src = x + (o * dim_size + idx) * inner;
      for (int64_t i = threadIdx.x; i < inner; i += blockDim.x) dst[i] = src[i];
    } else {
      for (int64_t i = threadIdx.x; i < inner; i += blockDim.x) dst[i] = W(0);
    }
  }
}

// slab: idx_dim * inner (one o of the index tensor).
template <typename W, typename I, typename Index>
__global__ void gather_kernel(const W* x, const I* index, W* out, Index total, Index x_dim,
                              Divmod<Index> slab, Divmod<Index> inner) {
  for (Index e = grid_thread<Index>(); e < total; e += grid_threads<Index>()) {
    const Index i = inner.mod(e);
    const Index o = slab.div(e);
    const int64_t idx = static_cast<int64_t>(index[e]);
    out[e] = (idx >= 0 && idx < static_cast<int64_t>(x_dim))
                 ? x[(o * x_dim + static_cast<Index>(idx)) * inner.divisor + i]
                 : W(0);
  }
}

template <typename T, typename I>
__global__ void one_hot_kernel(const I* labels, T* out, int64_t n, int64_t num_classes) {
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < n;
       r += nthreads) {
    const int64_t label = static_cast<int64_t>(labels[r]);
    if (label >= 0 && label < num_classes) out[r * num_classes + label] = T(1);
  }
}

template <typename T, typename I, typename Index>
__global__ void scatter_add_kernel(const T* src, const I* index, T* out, Index total, Index out_dim,
                                   Divmod<Index> slab, Divmod<Index> inner) {
  for (Index e = grid_thread<Index>(); e < total; e += grid_threads<Index>()) {
    const Index i = inner.mod(e);
    const Index o = slab.div(e);
    const int64_t idx = static_cast<int64_t>(index[e]);
    if (idx >= 0 && idx < static_cast<int64_t>(out_dim))
      atomicAdd(out + (o * out_dim + static_cast<Index>(idx)) * inner.divisor + i, src[e]);
  }
}

template <typename T, typename I, typename Index>
__global__ void index_add_flat_kernel(const T* src, const I* index, T* out, Index total,
                                      Divmod<Index> m, Index dim_size, Divmod<Index> inner) {
  for (Index e = grid_thread<Index>(); e < total; e += grid_threads<Index>()) {
    Index row, i, o, j;
    inner.divmod(e, row, i);
    m.divmod(row, o, j);
    const int64_t idx = static_cast<int64_t>(index[j]);
    if (idx >= 0 && idx < static_cast<int64_t>(dim_size))
      atomicAdd(out + (o * dim_size + static_cast<Index>(idx)) * inner.divisor + i, src[e]);
  }
}

// One block per source row (o, j) at a time; threads stride over the row.
template <typename T, typename I>
__global__ void index_add_rows_kernel(const T* src, const I* index, T* out, int64_t rows, int64_t m,
                                      int64_t dim_size, int64_t inner) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t j = row % m;
    const int64_t o = row / m;
    const int64_t idx = static_cast<int64_t>(index[j]);
    if (idx < 0 || idx >= dim_size) continue;  // uniform over the block
    const T* from = src + row * inner;
    T* to = out + (o * dim_size + idx) * inner;
    for (int64_t i = threadIdx.x; i < inner; i += blockDim.x) atomicAdd(to + i, from[i]);
  }
}

// ---- Host launchers
// ------------------------------------------------------------------------------

constexpr int64_t kRowKernelMin = 128;

}  // namespace

void index_select(const Tensor& x, const Tensor& index, Tensor& out, int64_t outer,
                  int64_t dim_size, int64_t inner) {
  const int64_t m = index.numel();
  const int64_t rows = outer * m;
  if (rows == 0 || inner == 0) return;
  cudaStream_t stream = current_cuda_stream();
  visit_word(x.element_size(), "index_select", [&](auto word) {
    using W = decltype(word);
    const W* xp = static_cast<const W*>(x.raw_data());
    W* op = static_cast<W*>(out.raw_data());
    TANDEM_DISPATCH_INDEX(index.dtype(), "index_select (cuda)", [&] {
      const scalar_t* ip = index.data_ptr<scalar_t>();
      if (inner >= kRowKernelMin) {
        constexpr int kBlock = 128;
        const int grid = grid_for(rows, 1, kBlock);
        TANDEM_LAUNCH(grid, kBlock, 0, stream, index_select_rows_kernel<W, scalar_t>)
        (xp, ip, op, rows, m, dim_size, inner);
      } else {
        constexpr int kBlock = kBlockSize;
        const int64_t total = rows * inner;
        const int grid = grid_for(total, kBlock, kBlock);
        dispatch_index_width(fits_int32({total, outer * dim_size * inner}), [&](auto index_tag) {
          using Index = decltype(index_tag);
          TANDEM_LAUNCH(grid, kBlock, 0, stream, index_select_flat_kernel<W, scalar_t, Index>)
          (xp, ip, op, static_cast<Index>(total), Divmod<Index>(m), static_cast<Index>(dim_size),
           Divmod<Index>(inner));
        });
      }
    });
  });
}

void gather(const Tensor& x, const Tensor& index, Tensor& out, int64_t outer, int64_t x_dim,
            int64_t idx_dim, int64_t inner) {
  const int64_t total = outer * idx_dim * inner;
  if (total == 0) return;
  cudaStream_t stream = current_cuda_stream();
  visit_word(x.element_size(), "gather", [&](auto word) {
    using W = decltype(word);
    const W* xp = static_cast<const W*>(x.raw_data());
    W* op = static_cast<W*>(out.raw_data());
    TANDEM_DISPATCH_INDEX(index.dtype(), "gather (cuda)", [&] {
      constexpr int kBlock = kBlockSize;
      const int grid = grid_for(total, kBlock, kBlock);
      dispatch_index_width(fits_int32({total, outer * x_dim * inner}), [&](auto index_tag) {
        using Index = decltype(index_tag);
        TANDEM_LAUNCH(grid, kBlock, 0, stream, gather_kernel<W, scalar_t, Index>)
        (xp, index.data_ptr<scalar_t>(), op, static_cast<Index>(total), static_cast<Index>(x_dim),
         Divmod<Index>(idx_dim * inner), Divmod<Index>(inner));
      });
    });
  });
}

void one_hot(const Tensor& labels, Tensor& out, int64_t num_classes) {
  const int64_t n = labels.numel();
  if (n == 0 || num_classes == 0) return;
  cudaStream_t stream = current_cuda_stream();
  TANDEM_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, out.nbytes(), stream));
  TANDEM_DISPATCH_ALL(out.dtype(), "one_hot (cuda)", [&] {
    using T = scalar_t;
    T* op = out.data_ptr<T>();
    // The function form: a nested dispatch macro would shadow scalar_t.
    dispatch_index(labels.dtype(), "one_hot (cuda)", [&](auto index_tag) {
      using I = decltype(index_tag);
      constexpr int kBlock = kBlockSize;
      const int grid = grid_for(n, kBlock, kBlock);
      TANDEM_LAUNCH(grid, kBlock, 0, stream, one_hot_kernel<T, I>)
      (labels.data_ptr<I>(), op, n, num_classes);
    });
  });
}

void scatter_add(const Tensor& src, const Tensor& index, Tensor& out, int64_t outer,
                 int64_t out_dim, int64_t idx_dim, int64_t inner) {
  const int64_t total = outer * idx_dim * inner;
  if (total == 0) return;
  TANDEM_CHECK(src.dtype() == out.dtype(), "scatter_add (cuda): dtypes differ");
  cudaStream_t stream = current_cuda_stream();
  dispatch_index(index.dtype(), "scatter_add (cuda)", [&](auto index_tag) {
    using I = decltype(index_tag);
    TANDEM_DISPATCH_FLOATING(out.dtype(), "scatter_add (cuda)", [&] {
      constexpr int kBlock = kBlockSize;
      const int grid = grid_for(total, kBlock, kBlock);
      dispatch_index_width(fits_int32({total, outer * out_dim * inner}), [&](auto width_tag) {
        using Index = decltype(width_tag);
        TANDEM_LAUNCH(grid, kBlock, 0, stream, scatter_add_kernel<scalar_t, I, Index>)
        (src.data_ptr<scalar_t>(), index.data_ptr<I>(), out.data_ptr<scalar_t>(),
         static_cast<Index>(total), static_cast<Index>(out_dim), Divmod<Index>(idx_dim * inner),
         Divmod<Index>(inner));
      });
    });
  });
}

void index_add(const Tensor& src, const Tensor& index, Tensor& out, int64_t outer, int64_t dim_size,
               int64_t inner) {
  const int64_t m = index.numel();
  const int64_t rows = outer * m;
  if (rows == 0 || inner == 0) return;
  TANDEM_CHECK(src.dtype() == out.dtype(), "index_add (cuda): dtypes differ");
  cudaStream_t stream = current_cuda_stream();
  dispatch_index(index.dtype(), "index_add (cuda)", [&](auto index_tag) {
    using I = decltype(index_tag);
    TANDEM_DISPATCH_FLOATING(out.dtype(), "index_add (cuda)", [&] {
      const scalar_t* sp = src.data_ptr<scalar_t>();
      const I* ip = index.data_ptr<I>();
      scalar_t* op = out.data_ptr<scalar_t>();
      if (inner >= kRowKernelMin) {
        constexpr int kBlock = 128;
        const int grid = grid_for(rows, 1, kBlock);
        TANDEM_LAUNCH(grid, kBlock, 0, stream, index_add_rows_kernel<scalar_t, I>)
        (sp, ip, op, rows, m, dim_size, inner);
      } else {
        constexpr int kBlock = kBlockSize;
        const int64_t total = rows * inner;
        const int grid = grid_for(total, kBlock, kBlock);
        dispatch_index_width(fits_int32({total, outer * dim_size * inner}), [&](auto width_tag) {
          using Index = decltype(width_tag);
          TANDEM_LAUNCH(grid, kBlock, 0, stream, index_add_flat_kernel<scalar_t, I, Index>)
          (sp, ip, op, static_cast<Index>(total), Divmod<Index>(m), static_cast<Index>(dim_size),
           Divmod<Index>(inner));
        });
      }
    });
  });
}

}  // namespace cuda
}  // namespace tandem
