// CPU indexing: index_select, gather, one_hot, and their adjoints scatter_add
// and index_add. x is viewed as [outer, dim_size, inner] (contiguous); indices
// are int32 or int64. Every index is validated before anything is written (an
// exception cannot leave an OpenMP loop) and the first bad one is reported; the
// CUDA backend cannot check and writes zeros (or skips the addition) instead.
// Selections move elements as raw words, so one kernel serves every dtype of a
// size. The scatters accumulate float32/float64 in the destination's type; a
// task owns a block of destination columns and walks the index in order, so
// repeated indices are added in index order (deterministic, unlike CUDA's
// atomics).
#include <algorithm>
#include <cstring>

#include "cpu/cpu_utils.h"

namespace tandem {
namespace cpu {

namespace {

// Position of the first index outside [0, size), or -1.
template <typename I>
int64_t first_out_of_range(const I* idx, int64_t count, int64_t size) {
  int64_t first = count;
#pragma omp parallel for reduction(min : first) if (count > util::kParallelGrain)
  for (int64_t k = 0; k < count; ++k) {
    const auto v = static_cast<int64_t>(idx[k]);
    if ((v < 0 || v >= size) && k < first) first = k;
  }
  return first < count ? first : -1;
}

template <typename I>
void check_indices(const char* op, const I* idx, int64_t count, int64_t size) {
  const int64_t bad = first_out_of_range(idx, count, size);
  TANDEM_CHECK(bad < 0, op, ": index ", bad < 0 ? 0 : static_cast<int64_t>(idx[bad]),
               " is out of range for dimension of size ", size);
}

template <typename I>
void index_select_typed(const Tensor& x, const I* idx, int64_t m, Tensor& out, int64_t outer,
                        int64_t dim_size, int64_t inner) {
  check_indices("index_select", idx, m, dim_size);
  const size_t es = x.element_size();
  const auto row_bytes = static_cast<size_t>(inner) * es;
  const auto* src = static_cast<const char*>(x.raw_data());
  auto* dst = static_cast<char*>(out.raw_data());
  // One output row (o, j) = x row (o, idx[j]), `inner` elements long.
  util::parallel_for(outer * m, inner, [&](int64_t r) {
    const int64_t o = r / m, j = r % m;
    const auto from = static_cast<size_t>(o * dim_size + static_cast<int64_t>(idx[j]));
    std::memcpy(dst + static_cast<size_t>(r) * row_bytes, src + from * row_bytes, row_bytes);
  });
}

template <typename I>
void gather_typed(const Tensor& x, const I* idx, Tensor& out, int64_t outer, int64_t x_dim,
                  int64_t idx_dim, int64_t inner) {
  check_indices("gather", idx, out.numel(), x_dim);
  util::visit_word(x.element_size(), "gather", [&](auto word) {
    using W = decltype(word);
    const W* src = static_cast<const W*>(x.raw_data());
    W* dst = static_cast<W*>(out.raw_data());
    util::parallel_for(outer * idx_dim, inner, [&](int64_t r) {
      const int64_t o = r / idx_dim;
      const I* row_idx = idx + r * inner;
      W* row_out = dst + r * inner;
      for (int64_t i = 0; i < inner; ++i) {
        row_out[i] = src[(o * x_dim + static_cast<int64_t>(row_idx[i])) * inner + i];
      }
    });
  });
}

template <typename T>
void one_hot_typed(const Tensor& labels, Tensor& out, int64_t num_classes) {
  const int64_t n = labels.numel();
  T* po = out.data_ptr<T>();
  TANDEM_DISPATCH_INDEX(labels.dtype(), "one_hot", [&] {
    const scalar_t* pl = labels.data_ptr<scalar_t>();
    const int64_t bad = first_out_of_range(pl, n, num_classes);
    TANDEM_CHECK(bad < 0, "one_hot: label ", bad < 0 ? 0 : static_cast<int64_t>(pl[bad]),
                 " is out of range [0, ", num_classes, ")");
    // Whole rows are written, so out need not be zeroed by the caller.
    util::parallel_for(n, num_classes, [&](int64_t r) {
      T* row = po + r * num_classes;
      for (int64_t c = 0; c < num_classes; ++c) row[c] = T(0);
      row[static_cast<int64_t>(pl[r])] = T(1);
    });
  });
}

// Columns (adjacent inner positions) per scatter task: wide enough to read and
// write whole cache lines, narrow enough to leave tasks for every thread.
constexpr int64_t kScatterColumns = 64;

// out[o][index(o, j, i)][i] += src[o][j][i] for every (o, j, i) of src
// [outer, src_dim, inner]; `index_at(o, j, i)` is already validated. One task
// per (o, block of inner columns): the tasks write disjoint columns, and each
// adds in increasing j.
template <typename T, typename IndexAt>
void scatter_rows(const T* src, T* out, int64_t outer, int64_t out_dim, int64_t src_dim,
                  int64_t inner, const IndexAt& index_at) {
  const int64_t width = std::min(inner, kScatterColumns);
  const int64_t blocks = (inner + width - 1) / width;
  util::parallel_for(outer * blocks, src_dim * width, [&](int64_t task) {
    const int64_t o = task / blocks;
    const int64_t i0 = (task % blocks) * width;
    const int64_t i1 = std::min(inner, i0 + width);
    for (int64_t j = 0; j < src_dim; ++j) {
      const T* s = src + (o * src_dim + j) * inner;
      for (int64_t i = i0; i < i1; ++i) out[(o * out_dim + index_at(o, j, i)) * inner + i] += s[i];
    }
  });
}

}  // namespace

void index_select(const Tensor& x, const Tensor& index, Tensor& out, int64_t outer,
                  int64_t dim_size, int64_t inner) {
  TANDEM_CHECK(x.dtype() == out.dtype(), "index_select: dtypes differ");
  const int64_t m = index.numel();
  TANDEM_CHECK(out.numel() == outer * m * inner, "index_select: output has ", out.numel(),
               " elements, expected ", outer * m * inner);
  TANDEM_DISPATCH_INDEX(index.dtype(), "index_select", [&] {
    index_select_typed(x, index.data_ptr<scalar_t>(), m, out, outer, dim_size, inner);
  });
}

void gather(const Tensor& x, const Tensor& index, Tensor& out, int64_t outer, int64_t x_dim,
            int64_t idx_dim, int64_t inner) {
  TANDEM_CHECK(x.dtype() == out.dtype(), "gather: dtypes differ");
  TANDEM_CHECK(index.numel() == outer * idx_dim * inner, "gather: index has ", index.numel(),
               " elements, expected ", outer * idx_dim * inner);
  TANDEM_DISPATCH_INDEX(index.dtype(), "gather", [&] {
    gather_typed(x, index.data_ptr<scalar_t>(), out, outer, x_dim, idx_dim, inner);
  });
}

void one_hot(const Tensor& labels, Tensor& out, int64_t num_classes) {
  TANDEM_CHECK(num_classes > 0, "one_hot: num_classes must be positive, got ", num_classes);
  TANDEM_CHECK(out.numel() == labels.numel() * num_classes, "one_hot: output has ", out.numel(),
               " elements, expected ", labels.numel() * num_classes);
  TANDEM_DISPATCH_ALL(out.dtype(), "one_hot",
                      [&] { one_hot_typed<scalar_t>(labels, out, num_classes); });
}

void scatter_add(const Tensor& src, const Tensor& index, Tensor& out, int64_t outer,
                 int64_t out_dim, int64_t idx_dim, int64_t inner) {
  TANDEM_CHECK(src.dtype() == out.dtype(), "scatter_add: dtypes differ");
  TANDEM_CHECK(index.numel() == outer * idx_dim * inner && src.numel() == index.numel(),
               "scatter_add: index has ", index.numel(), " and source ", src.numel(),
               " elements, expected ", outer * idx_dim * inner);
  dispatch_index(index.dtype(), "scatter_add", [&](auto index_tag) {
    using I = decltype(index_tag);
    const I* idx = index.data_ptr<I>();
    check_indices("scatter_add", idx, index.numel(), out_dim);
    TANDEM_DISPATCH_FLOATING(out.dtype(), "scatter_add", [&] {
      scatter_rows(src.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), outer, out_dim, idx_dim,
                   inner, [&](int64_t o, int64_t j, int64_t i) {
                     return static_cast<int64_t>(idx[(o * idx_dim + j) * inner + i]);
                   });
    });
  });
}

void index_add(const Tensor& src, const Tensor& index, Tensor& out, int64_t outer, int64_t dim_size,
               int64_t inner) {
  TANDEM_CHECK(src.dtype() == out.dtype(), "index_add: dtypes differ");
  const int64_t m = index.numel();
  TANDEM_CHECK(src.numel() == outer * m * inner, "index_add: source has ", src.numel(),
               " elements, expected ", outer * m * inner);
  dispatch_index(index.dtype(), "index_add", [&](auto index_tag) {
    using I = decltype(index_tag);
    const I* idx = index.data_ptr<I>();
    check_indices("index_add", idx, m, dim_size);
    TANDEM_DISPATCH_FLOATING(out.dtype(), "index_add", [&] {
      scatter_rows(src.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), outer, dim_size, m, inner,
                   [&](int64_t, int64_t j, int64_t) { return static_cast<int64_t>(idx[j]); });
    });
  });
}

}  // namespace cpu
}  // namespace tandem
