// Public reductions and softmax. A reduction over dim d views the input as
// [outer, n, inner] (outer = product of dims before d, inner = after d), so one
// backend kernel serves every dim and the whole-tensor case (outer = inner = 1).
// var is composed from mean, sub, square and sum (two passes, numerically sound).
#include <algorithm>
#include <cmath>

#include "autograd/record.h"
#include "ops/dispatch.h"
#include "ops/record_empty.h"
#include "tandem/ops.h"

namespace tandem {

namespace {

DType reduce_dtype(ReduceOp op, DType in) {
  switch (op) {
    case ReduceOp::ArgMax:
    case ReduceOp::ArgMin:
      return kInt64;
    case ReduceOp::Sum:
      return (in == kInt32 || in == kUInt8) ? kInt64 : in;
    default:
      return in;
  }
}

void record_reduce(ReduceOp op, const Tensor& x, const Tensor& out, int64_t outer, int64_t n,
                   int64_t inner);

Tensor reduce_view(ReduceOp op, const Tensor& x, int64_t outer, int64_t n, int64_t inner,
                   const Shape& out_shape) {
  const char* name = op_name(op);
  if (op == ReduceOp::Mean) detail::check_floating(name, x);
  Tensor out = empty(out_shape, TensorOptions(reduce_dtype(op, x.dtype())).device(x.device()));
  if (out.numel() == 0) return detail::record_empty(out, name, {x});
  if (n == 0) {
    TANDEM_CHECK(op == ReduceOp::Sum || op == ReduceOp::Mean, name,
                 ": cannot reduce over an empty dimension (input ", detail::describe(x), ")");
    out.fill_(op == ReduceOp::Sum ? 0.0 : NAN);
    record_reduce(op, x, out, outer, n, inner);
    return out;
  }
  TANDEM_BACKEND_CALL(x.device(), reduce, op, x, out, outer, n, inner);
  record_reduce(op, x, out, outer, n, inner);
  return out;
}

// The gradient of a reduction of x viewed as [outer, n, inner] over n: g (one
// value per [outer, inner] slot) spread over every element for sum and mean,
// over the extreme elements for max and min (split evenly among ties).
Tensor reduce_backward(ReduceOp op, const Tensor& g, const Tensor& x, const Tensor& out,
                       int64_t outer, int64_t n, int64_t inner) {
  const Tensor g3 = g.view({outer, 1, inner});
  const Shape shape3{outer, n, inner};
  switch (op) {
    case ReduceOp::Sum:
      return zeros(shape3, TensorOptions(g.dtype()).device(g.device())) + g3;
    case ReduceOp::Mean:
      return zeros(shape3, TensorOptions(g.dtype()).device(g.device())) +
             g3 / static_cast<double>(n);
    case ReduceOp::Max:
    case ReduceOp::Min: {
      const Tensor hit = eq(x.view(shape3), out.view({outer, 1, inner})).to(x.dtype());
      return hit * (g3 / sum(hit, 1, /*keepdim=*/true));
    }
    default:
      TANDEM_FAIL(op_name(op), ": no backward formula (autograd)");
  }
}

void record_reduce(ReduceOp op, const Tensor& x, const Tensor& out, int64_t outer, int64_t n,
                   int64_t inner) {
  if (op == ReduceOp::ArgMax || op == ReduceOp::ArgMin || !autograd::should_record(x)) return;
  const bool extreme = op == ReduceOp::Max || op == ReduceOp::Min;
  std::vector<Tensor> saved;
  if (extreme) saved = {x, out};
  autograd::record(
      out, op_name(op), {x}, std::move(saved),
      [op, outer, n, inner, shape = x.sizes()](const Tensor& g, const std::vector<Tensor>& s) {
        const Tensor none;
        const Tensor g3 = reduce_backward(op, g, s.empty() ? none : s[0], s.empty() ? none : s[1],
                                          outer, n, inner);
        return std::vector<Tensor>{g3.view(shape)};
      });
}

}  // namespace

Tensor reduce(ReduceOp op, const Tensor& x) {
  detail::check_defined(op_name(op), x);
  return reduce_view(op, x, 1, x.numel(), 1, Shape{});
}

Tensor reduce(ReduceOp op, const Tensor& x, int64_t dim, bool keepdim) {
  const char* name = op_name(op);
  detail::check_defined(name, x);
  const int64_t d = detail::normalize_dim(name, dim, x.dim());
  if (x.dim() == 0) return reduce(op, x);
  Shape out_shape = x.sizes();
  if (keepdim) {
    out_shape[static_cast<size_t>(d)] = 1;
  } else {
    out_shape.erase(out_shape.begin() + d);
  }
  return reduce_view(op, x, detail::prod(x.sizes(), 0, d), x.size(d),
                     detail::prod(x.sizes(), d + 1, x.dim()), out_shape);
}

#define TANDEM_DEFINE_REDUCE_(name, Enum)                            \
  Tensor name(const Tensor& x) { return reduce(ReduceOp::Enum, x); } \
  Tensor name(const Tensor& x, int64_t dim, bool keepdim) {          \
    return reduce(ReduceOp::Enum, x, dim, keepdim);                  \
  }
TANDEM_REDUCE_OPS(TANDEM_DEFINE_REDUCE_)
#undef TANDEM_DEFINE_REDUCE_

Tensor var(const Tensor& x, int64_t dim, bool unbiased, bool keepdim) {
  detail::check_defined("var", x);
  detail::check_floating("var", x);
  const Tensor input = x.dim() == 0 ? x.view({1}) : x;
  const int64_t d = detail::normalize_dim("var", dim, input.dim());
  const Tensor centered = input - mean(input, d, /*keepdim=*/true);
  const int64_t n = input.size(d);
  // As PyTorch: divided by max(n - correction, 0), so fewer values than the
  // correction needs give 0 / 0 = NaN (not 0 / -1 = -0 for an empty dim).
  const int64_t divisor = std::max<int64_t>(n - (unbiased ? 1 : 0), 0);
  return sum(square(centered), d, keepdim) / static_cast<double>(divisor);
}

Tensor var(const Tensor& x, bool unbiased) {
  detail::check_defined("var", x);
  return var(x.flatten(), 0, unbiased, false).view({});
}

Tensor softmax_impl(SoftmaxKind kind, const Tensor& x, int64_t dim) {
  const char* name = kind == SoftmaxKind::Softmax ? "softmax" : "log_softmax";
  detail::check_defined(name, x);
  detail::check_floating(name, x);
  Tensor out = empty_like(x);
  if (x.numel() == 0) return detail::record_empty(out, name, {x});
  const Tensor input = x.dim() == 0 ? x.view({1}) : x;
  const int64_t d = detail::normalize_dim(name, dim, input.dim());
  TANDEM_BACKEND_CALL(x.device(), softmax, kind, input, out, detail::prod(input.sizes(), 0, d),
                      input.size(d), detail::prod(input.sizes(), d + 1, input.dim()));
  if (autograd::should_record(x)) {
    autograd::record(
        out, name, {x}, {out},
        [kind, d, in_shape = input.sizes()](const Tensor& grad, const std::vector<Tensor>& s) {
          const Tensor g = grad.view(in_shape), y = s[0].view(in_shape);
          const Tensor gx = kind == SoftmaxKind::Softmax ? y * (g - sum(g * y, d, /*keepdim=*/true))
                                                         : g - exp(y) * sum(g, d, /*keepdim=*/true);
          return std::vector<Tensor>{gx.view(grad.sizes())};
        });
  }
  return out;
}

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(SoftmaxKind::Softmax, x, dim); }
Tensor log_softmax(const Tensor& x, int64_t dim) {
  return softmax_impl(SoftmaxKind::LogSoftmax, x, dim);
}

Tensor Tensor::sum() const { return tandem::sum(*this); }
Tensor Tensor::sum(int64_t dim, bool keepdim) const { return tandem::sum(*this, dim, keepdim); }
Tensor Tensor::mean() const { return tandem::mean(*this); }
Tensor Tensor::mean(int64_t dim, bool keepdim) const { return tandem::mean(*this, dim, keepdim); }
Tensor Tensor::max() const { return tandem::max(*this); }
Tensor Tensor::min() const { return tandem::min(*this); }
Tensor Tensor::argmax() const { return tandem::argmax(*this); }
Tensor Tensor::argmax(int64_t dim, bool keepdim) const {
  return tandem::argmax(*this, dim, keepdim);
}

}  // namespace tandem
