// Matrix products. Every form reduces to one row-major batched GEMM call
// (cpu::gemm -> OpenBLAS, cuda::gemm -> cuBLAS); a batch stride of 0 repeats a
// matrix, which is how N-D x 2-D and broadcast batches avoid copies.
#include "autograd/record.h"
#include "ops/dispatch.h"
#include "ops/record_empty.h"
#include "tandem/ops.h"

namespace tandem {

namespace {

void check_gemm_operands(const char* op, const Tensor& a, const Tensor& b) {
  detail::check_defined(op, a, "first input");
  detail::check_defined(op, b, "second input");
  detail::check_same_device(op, a, b);
  detail::check_same_dtype(op, a, b);
  detail::check_floating(op, a);
}

[[noreturn]] void fail_shapes(const char* op, const Tensor& a, const Tensor& b) {
  TANDEM_FAIL(op, ": shapes ", shape_str(a.sizes()), " and ", shape_str(b.sizes()),
              " cannot be multiplied");
}

// out [batch, m, n] = op(A) x op(B) with op(A) [m, k] and op(B) [k, n], A and B
// stored row-major as [batch or 1, m, k] ([k, m] when transposed), likewise B.
void batched_gemm(const Tensor& a, const Tensor& b, Tensor& out, int64_t batch, int64_t m,
                  int64_t n, int64_t k, bool a_batched, bool b_batched,
                  Transpose ta = Transpose::No, Transpose tb = Transpose::No) {
  if (out.numel() == 0) return;
  if (k == 0) {
    out.zero_();
    return;
  }
  const GemmShape shape{batch, m, n, k, a_batched ? m * k : 0, b_batched ? k * n : 0, m * n};
  TANDEM_BACKEND_CALL(a.device(), gemm, ta, tb, shape, 1.0, a, b, 0.0, out);
}

// A^T B for a [r, m], b [r, n] (any shapes with those numels): [m, n].
Tensor gemm_tn(const Tensor& a, const Tensor& b, int64_t r, int64_t m, int64_t n) {
  Tensor out = empty({m, n}, TensorOptions(a.dtype()).device(a.device()));
  batched_gemm(a, b, out, 1, m, n, r, false, false, Transpose::Yes, Transpose::No);
  return out;
}

// Backward of the batched product out = A B used by mm and bmm: A [batch, m, k],
// B [batch, k, n], g [batch, m, n].
std::vector<Tensor> bmm_backward(const Tensor& g, const Tensor& a, const Tensor& b, int64_t batch,
                                 int64_t m, int64_t n, int64_t k, bool need_a, bool need_b) {
  Tensor ga, gb;
  if (need_a) {  // g B^T
    ga = empty(a.sizes(), TensorOptions(g.dtype()).device(g.device()));
    batched_gemm(g, b, ga, batch, m, k, n, true, true, Transpose::No, Transpose::Yes);
  }
  if (need_b) {  // A^T g
    gb = empty(b.sizes(), TensorOptions(g.dtype()).device(g.device()));
    batched_gemm(a, g, gb, batch, k, n, m, true, true, Transpose::Yes, Transpose::No);
  }
  return {ga, gb};
}

void record_bmm(const char* name, const Tensor& out, const Tensor& a, const Tensor& b,
                int64_t batch, int64_t m, int64_t n, int64_t k) {
  if (!autograd::should_record(a, b)) return;
  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  autograd::record(out, name, {a, b}, {need_b ? a : Tensor(), need_a ? b : Tensor()},
                   [=](const Tensor& g, const std::vector<Tensor>& s) {
                     // s[0] is A (needed for B's gradient), s[1] is B.
                     return bmm_backward(g, s[0], s[1], batch, m, n, k, need_a, need_b);
                   });
}

}  // namespace

Tensor mm(const Tensor& a, const Tensor& b) {
  check_gemm_operands("mm", a, b);
  TANDEM_CHECK(a.dim() == 2 && b.dim() == 2, "mm: expected 2-D tensors, got ", shape_str(a.sizes()),
               " and ", shape_str(b.sizes()));
  if (a.size(1) != b.size(0)) fail_shapes("mm", a, b);
  Tensor out = empty({a.size(0), b.size(1)}, TensorOptions(a.dtype()).device(a.device()));
  batched_gemm(a, b, out, 1, a.size(0), b.size(1), a.size(1), false, false);
  record_bmm("mm", out, a, b, 1, a.size(0), b.size(1), a.size(1));
  return out;
}

Tensor bmm(const Tensor& a, const Tensor& b) {
  check_gemm_operands("bmm", a, b);
  TANDEM_CHECK(a.dim() == 3 && b.dim() == 3, "bmm: expected 3-D tensors, got ",
               shape_str(a.sizes()), " and ", shape_str(b.sizes()));
  if (a.size(0) != b.size(0) || a.size(2) != b.size(1)) fail_shapes("bmm", a, b);
  Tensor out =
      empty({a.size(0), a.size(1), b.size(2)}, TensorOptions(a.dtype()).device(a.device()));
  batched_gemm(a, b, out, a.size(0), a.size(1), b.size(2), a.size(2), true, true);
  record_bmm("bmm", out, a, b, a.size(0), a.size(1), b.size(2), a.size(2));
  return out;
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_gemm_operands("matmul", a, b);
  TANDEM_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: expected tensors of at least 1 dim, got ",
               shape_str(a.sizes()), " and ", shape_str(b.sizes()));
  // Promote 1-D operands to matrices and remember which dims to drop after.
  const bool a_vec = a.dim() == 1, b_vec = b.dim() == 1;
  const Tensor A = a_vec ? a.view({1, a.size(0)}) : a;
  const Tensor B = b_vec ? b.view({b.size(0), 1}) : b;
  const int64_t m = A.size(-2), k = A.size(-1), n = B.size(-1);
  if (B.size(-2) != k) fail_shapes("matmul", a, b);
  const Shape a_batch(A.sizes().begin(), A.sizes().end() - 2);
  const Shape b_batch(B.sizes().begin(), B.sizes().end() - 2);
  const int64_t a_count = shape_numel(a_batch), b_count = shape_numel(b_batch);
  // Batch dims must match, or one side is a single matrix that is repeated.
  if (a_count > 1 && b_count > 1 && a_batch != b_batch) fail_shapes("matmul", a, b);
  const Shape batch_shape = a_count > 1   ? a_batch
                            : b_count > 1 ? b_batch
                                          : broadcast_shapes(a_batch, b_batch, "matmul");
  const int64_t batch = shape_numel(batch_shape);
  Shape out_shape = batch_shape;
  if (!a_vec) out_shape.push_back(m);
  if (!b_vec) out_shape.push_back(n);
  Tensor out = empty(out_shape, TensorOptions(a.dtype()).device(a.device()));
  if (a_count == 1 && batch > 1 && !b_vec && b_count == batch) {
    // [k] or [m, k] times a batch: keep it batched with A repeated.
    batched_gemm(A, B, out, batch, m, n, k, false, true);
  } else if (b_count == 1 && batch > 1) {
    // A batch times one matrix: a single tall GEMM [batch*m, k] x [k, n].
    batched_gemm(A, B, out, 1, batch * m, n, k, false, false);
  } else {
    batched_gemm(A, B, out, batch, m, n, k, a_count > 1, b_count > 1);
  }
  if (autograd::should_record(a, b)) {
    // gA = g B^T and gB = A^T g on the promoted operands, with the transposes
    // as GEMM flags (no transposed copies). Only an A repeated over the batch
    // needs its gradient summed over it (a B of several matrices has them all).
    Shape g_shape = batch_shape;
    g_shape.push_back(m);
    g_shape.push_back(n);
    autograd::record(out, "matmul", {a, b}, {A, B},
                     [g_shape, a_shape = a.sizes(), b_shape = b.sizes(), batch, m, k, n, a_count,
                      b_count](const Tensor& grad, const std::vector<Tensor>& s) {
                       const Tensor g = grad.view(g_shape);
                       const Tensor& a2 = s[0];  // the promoted operands
                       const Tensor& b2 = s[1];
                       const TensorOptions opts = TensorOptions(g.dtype()).device(g.device());
                       Tensor ga, gb;
                       if (a_count == batch) {
                         ga = empty(a2.sizes(), opts);
                         if (b_count == 1) {  // one tall product, as in the forward
                           batched_gemm(g, b2, ga, 1, batch * m, k, n, false, false, Transpose::No,
                                        Transpose::Yes);
                         } else {
                           batched_gemm(g, b2, ga, batch, m, k, n, true, true, Transpose::No,
                                        Transpose::Yes);
                         }
                       } else {
                         ga = autograd::sum_to(matmul(g, b2.transpose(-1, -2)), a2.sizes());
                       }
                       if (b_count == 1) {
                         gb = gemm_tn(a2, g, a2.numel() / std::max<int64_t>(k, 1), k, n);
                       } else {  // b_count == batch
                         gb = empty(b2.sizes(), opts);
                         batched_gemm(a2, g, gb, batch, k, n, m, a_count > 1, true, Transpose::Yes,
                                      Transpose::No);
                       }
                       return std::vector<Tensor>{ga.view(a_shape), gb.view(b_shape)};
                     });
  }
  return out;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_gemm_operands("linear", x, weight);
  TANDEM_CHECK(weight.dim() == 2, "linear: weight must be 2-D [out_features, in_features], got ",
               shape_str(weight.sizes()));
  TANDEM_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input ", shape_str(x.sizes()),
               " has ", (x.dim() >= 1 ? x.size(-1) : 0), " features but weight ",
               shape_str(weight.sizes()), " expects ", weight.size(1));
  const int64_t in = weight.size(1), out_features = weight.size(0);
  const int64_t rows = x.numel() / std::max<int64_t>(in, 1);
  Shape out_shape(x.sizes().begin(), x.sizes().end() - 1);
  out_shape.push_back(out_features);
  Tensor out = empty(out_shape, TensorOptions(x.dtype()).device(x.device()));
  if (out.numel() == 0) return detail::record_empty(out, "linear", {x, weight, bias});
  if (in == 0) {
    out.zero_();
  } else {
    const GemmShape shape{1, rows, out_features, in, 0, 0, 0};
    TANDEM_BACKEND_CALL(x.device(), gemm, Transpose::No, Transpose::Yes, shape, 1.0, x, weight, 0.0,
                        out);
  }
  if (bias.defined()) {
    detail::check_same_device("linear", x, bias);
    detail::check_same_dtype("linear", x, bias);
    TANDEM_CHECK(bias.dim() == 1 && bias.size(0) == out_features, "linear: bias ",
                 shape_str(bias.sizes()), " does not match out_features ", out_features);
    NoGradGuard no_grad;  // recorded below as part of linear
    out.add_(bias);
  }
  if (autograd::should_record(x, weight, bias)) {
    const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
    const bool has_bias = bias.defined();
    autograd::record(out, "linear", {x, weight, bias},
                     {need_w ? x : Tensor(), need_x ? weight : Tensor()},
                     [=](const Tensor& g, const std::vector<Tensor>& s) {
                       Tensor gx, gw, gb;
                       if (need_x) gx = matmul(g, s[1]);
                       if (need_w) gw = gemm_tn(g, s[0], rows, out_features, in);
                       if (has_bias) gb = sum(g.view({rows, out_features}), 0);
                       return std::vector<Tensor>{gx, gw, gb};
                     });
  }
  return out;
}

Tensor Tensor::matmul(const Tensor& other) const { return tandem::matmul(*this, other); }

}  // namespace tandem
