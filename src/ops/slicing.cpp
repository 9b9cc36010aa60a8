// Slicing with libtorch's names and meanings: slice, narrow, select, chunk,
// split, split_with_sizes, unbind and index({Slice, Ellipsis, k, None}), on
// any dim. Tensors stay dense (no strides): every form picks, per dim of x, a
// range start + j * step (j < length), and the elements it picks are
//   - one dense range of x's storage (a step-1 range of dim 0, or of any dim
//     whose outer dims are all picked at length 1; an index of dim 0): the
//     result aliases x, as libtorch's does;
//   - anything else: a copy by one strided gather per device
//     (strided_gather in backend_decls.inc).
// The backward of both is the matching strided scatter into zeros.
#include <algorithm>
#include <limits>
#include <string>
#include <utility>

#include "autograd/record.h"
#include "core/backend.h"
#include "core/tensor_internal.h"
#include "ops/dispatch.h"
#include "tandem/ops.h"
#include "tandem/tensor.h"

namespace tandem {

namespace {

// The elements picked in one dim: start + j * step for j < length (in range).
struct DimRange {
  int64_t start, length, step;
};

// The walk over x's elements that `ranges` (one per dim of x) pick: size-1
// dims dropped, neighbours merged where the picked elements are contiguous
// across them.
StridedPlan make_plan(const Shape& sizes, const std::vector<DimRange>& ranges) {
  const size_t nd = sizes.size();
  std::vector<int64_t> stride(nd, 1);
  for (size_t d = nd; d-- > 1;) stride[d - 1] = stride[d] * sizes[d];
  StridedPlan plan;
  for (size_t d = 0; d < nd; ++d) {
    const DimRange& r = ranges[d];
    plan.offset += r.start * stride[d];
    if (r.length == 1) continue;
    const int64_t s = r.step * stride[d];
    if (!plan.sizes.empty() && plan.strides.back() == s * r.length) {
      plan.sizes.back() *= r.length;
      plan.strides.back() = s;
    } else {
      plan.sizes.push_back(r.length);
      plan.strides.push_back(s);
    }
  }
  return plan;
}

Tensor gather_plan(const Tensor& x, const StridedPlan& plan, const Shape& out_shape,
                   const char* op);

// The adjoint of gather_plan: zeros of `shape` with g at the plan's positions.
Tensor scatter_plan(const Tensor& g, const StridedPlan& plan, const Shape& shape, const char* op) {
  Tensor out = zeros(shape, TensorOptions(g.dtype()).device(g.device()));
  if (g.numel() > 0) TANDEM_BACKEND_CALL(g.device(), strided_scatter, g, plan, out);
  if (autograd::should_record(g)) {
    autograd::record(out, op, {g}, {},
                     [plan, op, g_shape = g.sizes()](const Tensor& gg, const std::vector<Tensor>&) {
                       return std::vector<Tensor>{gather_plan(gg, plan, g_shape, op)};
                     });
  }
  return out;
}

// The elements of x at the plan's positions, in out_shape: an alias when they
// are one dense range of x, else a copy.
Tensor gather_plan(const Tensor& x, const StridedPlan& plan, const Shape& out_shape,
                   const char* op) {
  const bool dense = plan.sizes.empty() || (plan.sizes.size() == 1 && plan.strides[0] == 1);
  Tensor result;
  if (shape_numel(out_shape) > 0 && dense) {
    const TensorImpl& impl = *x.impl();
    result = detail::make_tensor(impl.storage, impl.offset + plan.offset, out_shape, impl.dtype);
  } else {
    result = empty(out_shape, TensorOptions(x.dtype()).device(x.device()));
    if (result.numel() > 0) TANDEM_BACKEND_CALL(x.device(), strided_gather, x, plan, result);
  }
  if (autograd::should_record(x)) {
    autograd::record(result, op, {x}, {},
                     [plan, op, shape = x.sizes()](const Tensor& g, const std::vector<Tensor>&) {
                       return std::vector<Tensor>{scatter_plan(g, plan, shape, op)};
                     });
  }
  return result;
}

Tensor take(const Tensor& x, const std::vector<DimRange>& ranges, const Shape& out_shape,
            const char* op) {
  detail::check_defined(op, x);
  return gather_plan(x, make_plan(x.sizes(), ranges), out_shape, op);
}

std::vector<DimRange> full_ranges(const Shape& sizes) {
  std::vector<DimRange> ranges;
  for (int64_t n : sizes) ranges.push_back({0, n, 1});
  return ranges;
}

// dim in [-dim(), dim()), as a non-negative dim; x has at least one dim.
int64_t checked_dim(const char* op, const Tensor& x, int64_t dim) {
  detail::check_defined(op, x);
  const int64_t nd = x.dim();
  TANDEM_CHECK(nd > 0, op, ": cannot be applied to a 0-dim tensor");
  TANDEM_CHECK(dim >= -nd && dim < nd, op, ": dim ", dim, " is out of range for a tensor of ", nd,
               " dims ", shape_str(x.sizes()), " (expected a dim in [", -nd, ", ", nd - 1, "])");
  return dim < 0 ? dim + nd : dim;
}

// Python's start:end:step over a dim of size n: negative ends count from the
// end, then both are clamped to [0, n] (libtorch's slice).
DimRange slice_range(const char* op, int64_t dim, const Shape& sizes, std::optional<int64_t> start,
                     std::optional<int64_t> end, int64_t step) {
  TANDEM_CHECK(step > 0, op, ": step must be positive, got ", step, " (dim ", dim, " of ",
               shape_str(sizes), ")");
  const int64_t n = sizes[static_cast<size_t>(dim)];
  int64_t s = start.value_or(0), e = end.value_or(n);
  if (s < 0) s += n;
  if (e < 0) e += n;
  s = std::clamp<int64_t>(s, 0, n);
  e = std::clamp<int64_t>(e, s, n);
  return {s, (e - s + step - 1) / step, step};
}

// index in [-n, n) for dim `dim` of size n, as a non-negative index.
int64_t checked_index(const char* op, int64_t dim, const Shape& sizes, int64_t index) {
  const int64_t n = sizes[static_cast<size_t>(dim)];
  TANDEM_CHECK(index >= -n && index < n, op, ": index ", index, " is out of range for dim ", dim,
               " of size ", n, " (tensor ", shape_str(sizes), ")");
  return index < 0 ? index + n : index;
}

}  // namespace

Tensor Tensor::slice(int64_t dim, std::optional<int64_t> start, std::optional<int64_t> end,
                     int64_t step) const {
  const int64_t d = checked_dim("slice", *this, dim);
  std::vector<DimRange> ranges = full_ranges(sizes());
  ranges[static_cast<size_t>(d)] = slice_range("slice", d, sizes(), start, end, step);
  Shape out = sizes();
  out[static_cast<size_t>(d)] = ranges[static_cast<size_t>(d)].length;
  return take(*this, ranges, out, "slice");
}

Tensor Tensor::narrow(int64_t dim, int64_t start, int64_t length) const {
  const int64_t d = checked_dim("narrow", *this, dim);
  const int64_t n = sizes()[static_cast<size_t>(d)];
  TANDEM_CHECK(length >= 0, "narrow: length must be non-negative, got ", length);
  TANDEM_CHECK(start >= -n && start <= n, "narrow: start ", start, " is out of range for dim ", d,
               " of size ", n, " (tensor ", shape_str(sizes()), ", expected a start in [", -n, ", ",
               n, "])");
  if (start < 0) start += n;
  TANDEM_CHECK(start <= n - length, "narrow: start ", start, " + length ", length, " exceeds dim ",
               d, " of size ", n, " (tensor ", shape_str(sizes()), ")");
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t dim, int64_t index) const {
  const int64_t d = checked_dim("select", *this, dim);
  const int64_t i = checked_index("select", d, sizes(), index);
  std::vector<DimRange> ranges = full_ranges(sizes());
  ranges[static_cast<size_t>(d)] = {i, 1, 1};
  Shape out = sizes();
  out.erase(out.begin() + d);
  return take(*this, ranges, out, "select");
}

std::vector<Tensor> Tensor::split(int64_t split_size, int64_t dim) const {
  const int64_t d = checked_dim("split", *this, dim);
  const int64_t n = sizes()[static_cast<size_t>(d)];
  TANDEM_CHECK(split_size > 0 || (split_size == 0 && n == 0), "split: split_size ", split_size,
               " must be positive (0 only for an empty dim; dim ", d, " of ", shape_str(sizes()),
               ")");
  // libtorch: at least one piece, the last one shorter.
  const int64_t pieces =
      split_size == 0 ? 1 : std::max<int64_t>((n + split_size - 1) / split_size, 1);
  std::vector<Tensor> out;
  for (int64_t k = 0; k < pieces; ++k) {
    const int64_t start = k * split_size;
    out.push_back(narrow(d, start, std::min(split_size, n - start)));
  }
  return out;
}

std::vector<Tensor> Tensor::split_with_sizes(const std::vector<int64_t>& split_sizes,
                                             int64_t dim) const {
  const int64_t d = checked_dim("split_with_sizes", *this, dim);
  const int64_t n = sizes()[static_cast<size_t>(d)];
  int64_t total = 0;
  for (int64_t s : split_sizes) {
    TANDEM_CHECK(s >= 0, "split_with_sizes: sizes ", shape_str(split_sizes),
                 " must be non-negative");
    total += s;
  }
  TANDEM_CHECK(total == n, "split_with_sizes: sizes ", shape_str(split_sizes), " sum to ", total,
               ", not to dim ", d, " of size ", n, " (tensor ", shape_str(sizes()), ")");
  std::vector<Tensor> out;
  int64_t start = 0;
  for (int64_t s : split_sizes) {
    out.push_back(narrow(d, start, s));
    start += s;
  }
  return out;
}

std::vector<Tensor> Tensor::chunk(int64_t chunks, int64_t dim) const {
  const int64_t d = checked_dim("chunk", *this, dim);
  TANDEM_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks);
  const int64_t n = sizes()[static_cast<size_t>(d)];
  // libtorch: pieces of ceil(n / chunks), so fewer than `chunks` may come
  // back; an empty dim gives `chunks` empty pieces.
  if (n == 0) return split_with_sizes(std::vector<int64_t>(static_cast<size_t>(chunks), 0), d);
  return split((n + chunks - 1) / chunks, d);
}

std::vector<Tensor> Tensor::unbind(int64_t dim) const {
  const int64_t d = checked_dim("unbind", *this, dim);
  std::vector<Tensor> out;
  for (int64_t i = 0; i < sizes()[static_cast<size_t>(d)]; ++i) out.push_back(select(d, i));
  return out;
}

Tensor Tensor::index(const std::vector<indexing::TensorIndex>& indices) const {
  using indexing::TensorIndex;
  detail::check_defined("index", *this);
  const int64_t nd = dim();
  int64_t consumed = 0, ellipses = 0;
  for (const TensorIndex& t : indices) {
    consumed += t.is_integer() || t.is_slice();
    ellipses += t.is_ellipsis();
  }
  TANDEM_CHECK(ellipses <= 1, "index: at most one Ellipsis, got ", ellipses);
  TANDEM_CHECK(consumed <= nd, "index: ", consumed, " indices for a tensor of ", nd, " dims ",
               shape_str(sizes()));
  std::vector<DimRange> ranges = full_ranges(sizes());
  Shape out;
  int64_t d = 0;
  for (const TensorIndex& t : indices) {
    if (t.is_none()) {
      out.push_back(1);
    } else if (t.is_ellipsis()) {
      for (int64_t k = 0; k < nd - consumed; ++k, ++d)
        out.push_back(sizes()[static_cast<size_t>(d)]);
    } else if (t.is_integer()) {
      const int64_t i = checked_index("index", d, sizes(), t.integer());
      ranges[static_cast<size_t>(d++)] = {i, 1, 1};
    } else {
      const indexing::Slice& s = t.slice();
      const DimRange r = slice_range("index", d, sizes(), s.start(), s.stop(), s.step());
      ranges[static_cast<size_t>(d++)] = r;
      out.push_back(r.length);
    }
  }
  for (; d < nd; ++d) out.push_back(sizes()[static_cast<size_t>(d)]);
  return take(*this, ranges, out, "index");
}

}  // namespace tandem
