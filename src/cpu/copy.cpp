// CPU copies and fills: copy_convert, fill, arange, copy_2d (cat/stack),
// permute and the slicing walks (strided_gather, strided_scatter). All tensors
// are contiguous; copy_2d, permute and the walks move elements as raw words, so
// they serve every dtype. Conversion rules are in cpu_utils.h.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/permute_plan.h"
#include "cpu/cpu_utils.h"

namespace tandem {
namespace cpu {

namespace {

using util::parallel_for;

// Which side of a strided walk is dense: Gather reads the strided side and
// writes the dense one, Scatter the reverse.
enum class Walk : int8_t { Gather, Scatter };

// The walk shared by permute and slicing: the dense side's rows of the
// innermost dim (sizes outermost first; one row when sizes is empty) against
// the strided side at base + the rows' coordinates times strides.
// S and D are the word pointer types (const on the side that is read).
template <Walk kWalk, typename S, typename D>
void strided_walk(S strided, D dense, const std::vector<int64_t>& sizes,
                  const std::vector<int64_t>& strides) {
  const size_t k = sizes.size();
  const int64_t len = k == 0 ? 1 : sizes[k - 1], step = k == 0 ? 1 : strides[k - 1];
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < k; ++d) rows *= sizes[d];
  if (rows == 0 || len == 0) return;
  parallel_for(rows, len, [&](int64_t r) {
    int64_t rem = r, off = 0;  // the strided offset of dense row r
    for (size_t d = k == 0 ? 0 : k - 1; d-- > 0;) {
      off += (rem % sizes[d]) * strides[d];
      rem /= sizes[d];
    }
    const D o = dense + r * len;
    const S s = strided + off;
    if constexpr (kWalk == Walk::Gather) {
      for (int64_t j = 0; j < len; ++j) o[j] = s[j * step];
    } else {
      for (int64_t j = 0; j < len; ++j) s[j * step] = o[j];
    }
  });
}

// The plan's positions lie inside x (the op layer built it; a bad plan is a bug).
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

template <typename S>
void convert_from(const S* src, Tensor& dst, int64_t n) {
  TANDEM_DISPATCH_ALL(dst.dtype(), "copy_convert", [&] {
    scalar_t* d = dst.data_ptr<scalar_t>();
    parallel_for(n, 1, [&](int64_t i) { d[i] = util::convert<scalar_t>(src[i]); });
  });
}

}  // namespace

void copy_convert(const Tensor& src, Tensor& dst) {
  const int64_t n = src.numel();
  TANDEM_CHECK(dst.numel() == n, "copy_convert: ", n, " elements into ", dst.numel());
  if (src.dtype() == dst.dtype()) {
    if (src.raw_data() != dst.raw_data()) std::memcpy(dst.raw_data(), src.raw_data(), src.nbytes());
    return;
  }
  TANDEM_DISPATCH_ALL(src.dtype(), "copy_convert",
                      [&] { convert_from<scalar_t>(src.data_ptr<scalar_t>(), dst, n); });
}

void fill(Tensor& out, double value) {
  const int64_t n = out.numel();
  TANDEM_DISPATCH_ALL(out.dtype(), "fill", [&] {
    scalar_t* p = out.data_ptr<scalar_t>();
    const scalar_t v = util::scalar_to<scalar_t>(value);
    parallel_for(n, 1, [&](int64_t i) { p[i] = v; });
  });
}

void arange(Tensor& out, double start, double step) {
  const int64_t n = out.numel();
  TANDEM_DISPATCH_ALL(out.dtype(), "arange", [&] {
    scalar_t* p = out.data_ptr<scalar_t>();
    // start + i * step in double (not an accumulated sum, which drifts).
    parallel_for(n, 1, [&](int64_t i) {
      p[i] = util::convert<scalar_t>(start + static_cast<double>(i) * step);
    });
  });
}

void copy_2d(const Tensor& src, Tensor& dst, int64_t rows, int64_t src_cols, int64_t dst_cols,
             int64_t col_offset) {
  TANDEM_CHECK(src.dtype() == dst.dtype(), "copy_2d: dtypes differ (", dtype_name(src.dtype()),
               " vs ", dtype_name(dst.dtype()), ")");
  TANDEM_CHECK(rows >= 0 && src_cols >= 0 && col_offset >= 0 && col_offset + src_cols <= dst_cols,
               "copy_2d: columns [", col_offset, ", ", col_offset + src_cols, ") do not fit in ",
               dst_cols);
  const auto es = static_cast<int64_t>(src.element_size());
  const auto* s = static_cast<const char*>(src.raw_data());
  auto* d = static_cast<char*>(dst.raw_data()) + col_offset * es;
  const auto row_bytes = static_cast<size_t>(src_cols * es);
  parallel_for(rows, src_cols, [&](int64_t r) {
    std::memcpy(d + r * dst_cols * es, s + r * src_cols * es, row_bytes);
  });
}

void permute(const Tensor& x, Tensor& out, const Shape& perm) {
  const PermutePlan plan = permute_plan(x.sizes(), perm, "permute");
  const std::vector<int64_t>& sizes = plan.sizes;
  const std::vector<int64_t>& strides = plan.strides;
  if (sizes.size() <= 1) {  // the order of elements does not change
    if (x.raw_data() != out.raw_data()) std::memcpy(out.raw_data(), x.raw_data(), x.nbytes());
    return;
  }
  util::visit_word(x.element_size(), "permute", [&](auto word) {
    using W = decltype(word);
    strided_walk<Walk::Gather>(static_cast<const W*>(x.raw_data()), static_cast<W*>(out.raw_data()),
                               sizes, strides);
  });
}

void strided_gather(const Tensor& x, const StridedPlan& plan, Tensor& out) {
  check_plan("strided_gather", x, plan, out);
  util::visit_word(x.element_size(), "strided_gather", [&](auto word) {
    using W = decltype(word);
    strided_walk<Walk::Gather>(static_cast<const W*>(x.raw_data()) + plan.offset,
                               static_cast<W*>(out.raw_data()), plan.sizes, plan.strides);
  });
}

void strided_scatter(const Tensor& src, const StridedPlan& plan, Tensor& x) {
  check_plan("strided_scatter", x, plan, src);
  util::visit_word(x.element_size(), "strided_scatter", [&](auto word) {
    using W = decltype(word);
    strided_walk<Walk::Scatter>(static_cast<W*>(x.raw_data()) + plan.offset,
                                static_cast<const W*>(src.raw_data()), plan.sizes, plan.strides);
  });
}

}  // namespace cpu
}  // namespace tandem
