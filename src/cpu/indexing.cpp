// CPU indexing: index_select, gather, one_hot. x is viewed as
// [outer, dim_size, inner] (contiguous); indices are int32 or int64. Every index
// is validated before anything is written (an exception cannot leave an OpenMP
// loop) and the first bad one is reported; the CUDA backend cannot check and
// writes zeros instead. Elements move as raw words, so one kernel serves every
// dtype of a size.
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

}  // namespace cpu
}  // namespace tandem
