// CPU elementwise ops: unary, binary (NumPy broadcasting), binary_scalar and
// where. The formulas live in core/elementwise_math.h (shared with CUDA); this
// file walks memory. Contiguous operands of the output's size are read linearly;
// an input of one element is read once; anything else goes through a broadcast
// plan: strides (0 on broadcast dims) with dims merged where every operand is
// contiguous across them, walked in runs along the innermost merged dim.
// Integer division by zero is detected before the loop and throws. Unary exp,
// log, tanh, sigmoid and erf run SIMD through vec_math.h.
#include <algorithm>
#include <array>
#include <vector>

#include "cpu/cpu_utils.h"
#include "cpu/vec_math.h"

namespace tandem {
namespace cpu {

namespace {

using util::parallel_for;

constexpr int64_t kRunPiece = 4096;  // elements per task along the innermost dim
// Cost of one SIMD transcendental relative to an add (for the threading threshold).
constexpr int64_t kVecCost = 4;

template <size_t N>
struct BroadcastPlan {
  std::vector<int64_t> sizes;                   // merged output dims, outermost first
  std::vector<std::array<int64_t, N>> strides;  // per dim, per input (0 = broadcast)
};

// Input strides right-aligned against `out`, size-1 output dims dropped, and
// neighbouring dims merged where every input is contiguous across them.
template <size_t N>
BroadcastPlan<N> make_plan(const Shape& out, const std::array<const Shape*, N>& ins) {
  const size_t nd = out.size();
  std::vector<std::array<int64_t, N>> full(nd);
  for (size_t k = 0; k < N; ++k) {
    const Shape& s = *ins[k];
    TANDEM_CHECK(s.size() <= nd, "broadcast: operand ", shape_str(s), " has more dims than ",
                 shape_str(out));
    int64_t stride = 1;
    for (size_t d = 0; d < nd; ++d) full[d][k] = 0;
    for (size_t j = s.size(); j-- > 0;) {
      full[nd - s.size() + j][k] = s[j] == 1 ? 0 : stride;
      stride *= s[j];
    }
  }
  BroadcastPlan<N> plan;
  for (size_t d = 0; d < nd; ++d) {
    if (out[d] == 1) continue;
    bool merge = !plan.sizes.empty();
    for (size_t k = 0; merge && k < N; ++k) merge = plan.strides.back()[k] == full[d][k] * out[d];
    if (merge) {
      plan.sizes.back() *= out[d];
      plan.strides.back() = full[d];
    } else {
      plan.sizes.push_back(out[d]);
      plan.strides.push_back(full[d]);
    }
  }
  return plan;
}

// f(out_offset, len, in_offsets, in_steps) for each run of `len` consecutive
// output elements; input k of element j of the run is at in_offsets[k] + j * in_steps[k].
template <size_t N, typename F>
void for_each_run(const Shape& out, const std::array<const Shape*, N>& ins, const F& f) {
  const BroadcastPlan<N> plan = make_plan<N>(out, ins);
  const size_t k = plan.sizes.size();
  if (k == 0) {  // a single element
    f(0, 1, std::array<int64_t, N>{}, std::array<int64_t, N>{});
    return;
  }
  const int64_t len = plan.sizes[k - 1];
  const int64_t rows = shape_numel(out) / len;
  const std::array<int64_t, N>& step = plan.strides[k - 1];
  // Long rows are cut into pieces so that a few rows still use every thread.
  const int64_t piece = std::min<int64_t>(len, kRunPiece);
  const int64_t pieces = (len + piece - 1) / piece;
  parallel_for(rows * pieces, piece, [&](int64_t t) {
    const int64_t r = t / pieces, start = (t % pieces) * piece;
    std::array<int64_t, N> off{};
    int64_t rem = r;
    for (size_t d = k - 1; d-- > 0;) {
      const int64_t coord = rem % plan.sizes[d];
      rem /= plan.sizes[d];
      for (size_t i = 0; i < N; ++i) off[i] += coord * plan.strides[d][i];
    }
    for (size_t i = 0; i < N; ++i) off[i] += start * step[i];
    f(r * len + start, std::min(piece, len - start), off, step);
  });
}

template <typename T>
void check_no_zero(const T* p, int64_t n, const char* op) {
  bool zero = false;
  for (int64_t i = 0; i < n && !zero; ++i) zero = p[i] == T(0);
  TANDEM_CHECK(!zero, op, ": integer division by zero");
}

// o[i] = c[i] ? a[i] : b[i] for i in [0, n), a and b either full (step 1) or
// one element. Both sides are loaded unconditionally and selected, so the
// compiler vectorises the loop and a random mask costs no branch misses.
template <typename T>
void where_run(const uint8_t* c, const T* a, bool a_full, const T* b, bool b_full, T* o,
               int64_t n) {
  if (a_full && b_full) {
    for (int64_t i = 0; i < n; ++i) {
      const T x = a[i], y = b[i];
      o[i] = c[i] ? x : y;
    }
  } else if (a_full) {
    const T y = b[0];
    for (int64_t i = 0; i < n; ++i) {
      const T x = a[i];
      o[i] = c[i] ? x : y;
    }
  } else if (b_full) {
    const T x = a[0];
    for (int64_t i = 0; i < n; ++i) {
      const T y = b[i];
      o[i] = c[i] ? x : y;
    }
  } else {
    const T x = a[0], y = b[0];
    for (int64_t i = 0; i < n; ++i) o[i] = c[i] ? x : y;
  }
}

template <typename T, BinaryOp Op>
void binary_kernel(const Tensor& a, const Tensor& b, Tensor& out, T alpha) {
  using Out = util::BinaryResult<Op, T>;
  const T* pa = a.data_ptr<T>();
  const T* pb = b.data_ptr<T>();
  Out* po = out.data_ptr<Out>();
  const int64_t n = out.numel();
  const auto f = [alpha](T x, T y) { return math::binary<Op, T>(x, y, alpha); };
  if (a.numel() == n && b.numel() == n) {
    parallel_for(n, 1, [&](int64_t i) { po[i] = f(pa[i], pb[i]); });
  } else if (a.numel() == n && b.numel() == 1) {
    const T s = pb[0];
    parallel_for(n, 1, [&](int64_t i) { po[i] = f(pa[i], s); });
  } else if (a.numel() == 1 && b.numel() == n) {
    const T s = pa[0];
    parallel_for(n, 1, [&](int64_t i) { po[i] = f(s, pb[i]); });
  } else {
    for_each_run<2>(out.sizes(), {&a.sizes(), &b.sizes()},
                    [&](int64_t o, int64_t len, const std::array<int64_t, 2>& off,
                        const std::array<int64_t, 2>& step) {
                      for (int64_t j = 0; j < len; ++j) {
                        po[o + j] = f(pa[off[0] + j * step[0]], pb[off[1] + j * step[1]]);
                      }
                    });
  }
}

}  // namespace

void unary(UnaryOp op, const Tensor& x, Tensor& out, double p0, double p1) {
  const int64_t n = x.numel();
  TANDEM_DISPATCH_FLOATING(x.dtype(), op_name(op), [&] {
    const scalar_t* in = x.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    if (vec::has_unary(op)) {  // exp, log, tanh, sigmoid, erf: SIMD, in pieces
      const int64_t pieces = (n + kRunPiece - 1) / kRunPiece;
      parallel_for(pieces, kVecCost * kRunPiece, [&](int64_t t) {
        const int64_t start = t * kRunPiece;
        vec::unary(op, in + start, o + start, std::min(kRunPiece, n - start));
      });
      return;
    }
    const auto q0 = static_cast<scalar_t>(p0), q1 = static_cast<scalar_t>(p1);
    util::visit_unary_op(op, [&](auto op_tag) {
      constexpr UnaryOp kOp = decltype(op_tag)::value;
      parallel_for(n, 1,
                   [&](int64_t i) { o[i] = math::UnaryFormula<kOp>::forward(in[i], q0, q1); });
    });
  });
}

void unary_backward(UnaryOp op, const Tensor& grad_out, const Tensor& saved, Tensor& grad_in,
                    double p0, double p1) {
  const int64_t n = grad_in.numel();
  TANDEM_DISPATCH_FLOATING(grad_in.dtype(), op_name(op), [&] {
    const scalar_t* g = grad_out.data_ptr<scalar_t>();
    const scalar_t* s = saved.data_ptr<scalar_t>();
    scalar_t* o = grad_in.data_ptr<scalar_t>();
    const auto q0 = static_cast<scalar_t>(p0), q1 = static_cast<scalar_t>(p1);
    util::visit_unary_op(op, [&](auto op_tag) {
      using F = math::UnaryFormula<decltype(op_tag)::value>;
      parallel_for(n, 1, [&](int64_t i) { o[i] = F::backward(g[i], s[i], q0, q1); });
    });
  });
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out, double alpha) {
  TANDEM_DISPATCH_ALL(a.dtype(), op_name(op), [&] {
    if (op == BinaryOp::Div && !util::kIsFloat<scalar_t>) {
      // Checked up front: an exception cannot leave an OpenMP loop. Every element
      // of b is used, since broadcasting only repeats elements.
      check_no_zero(b.data_ptr<scalar_t>(), b.numel(), op_name(op));
    }
    const auto alpha_t = util::scalar_to<scalar_t>(alpha);
    util::visit_binary_op(op, [&](auto op_tag) {
      binary_kernel<scalar_t, decltype(op_tag)::value>(a, b, out, alpha_t);
    });
  });
}

void binary_scalar(BinaryOp op, const Tensor& a, double s, ScalarSide side, Tensor& out) {
  const int64_t n = a.numel();
  TANDEM_DISPATCH_ALL(a.dtype(), op_name(op), [&] {
    const scalar_t* pa = a.data_ptr<scalar_t>();
    const auto st = util::scalar_to<scalar_t>(s);
    const bool left = side == ScalarSide::Left;
    if (op == BinaryOp::Div && !util::kIsFloat<scalar_t>) {
      if (left) {
        check_no_zero(pa, n, op_name(op));
      } else {
        TANDEM_CHECK(st != scalar_t(0), op_name(op), ": integer division by zero");
      }
    }
    util::visit_binary_op(op, [&](auto op_tag) {
      constexpr BinaryOp kOp = decltype(op_tag)::value;
      using Out = util::BinaryResult<kOp, scalar_t>;
      Out* po = out.data_ptr<Out>();
      const scalar_t one(1);
      // Pieces with the pointers in locals: the compiler vectorises the inner
      // loop (comparisons too: relu's backward is where(gt(y, 0), g, 0)).
      const int64_t pieces = (n + kRunPiece - 1) / kRunPiece;
      parallel_for(pieces, kRunPiece, [&](int64_t t) {
        const int64_t start = t * kRunPiece, len = std::min(kRunPiece, n - start);
        const scalar_t* x = pa + start;
        Out* y = po + start;
        const scalar_t s_val = st;
        if (left) {
          for (int64_t i = 0; i < len; ++i) y[i] = math::binary<kOp>(s_val, x[i], one);
        } else {
          for (int64_t i = 0; i < len; ++i) y[i] = math::binary<kOp>(x[i], s_val, one);
        }
      });
    });
  });
}

void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) {
  TANDEM_CHECK(cond.dtype() == kUInt8, "where: the condition must be uint8, got ",
               dtype_name(cond.dtype()));
  const int64_t n = out.numel();
  TANDEM_DISPATCH_ALL(a.dtype(), "where", [&] {
    const uint8_t* pc = cond.data_ptr<uint8_t>();
    const scalar_t* pa = a.data_ptr<scalar_t>();
    const scalar_t* pb = b.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    // Same-size operands and scalar ones (relu's backward is where(y > 0, g, 0)):
    // branch-free linear loops over pieces (where_run).
    const bool a_full = a.numel() == n, b_full = b.numel() == n;
    if (cond.numel() == n && (a_full || a.numel() == 1) && (b_full || b.numel() == 1)) {
      const int64_t pieces = (n + kRunPiece - 1) / kRunPiece;
      parallel_for(pieces, kRunPiece, [&](int64_t t) {
        const int64_t start = t * kRunPiece, len = std::min(kRunPiece, n - start);
        where_run(pc + start, a_full ? pa + start : pa, a_full, b_full ? pb + start : pb, b_full,
                  po + start, len);
      });
      return;
    }
    for_each_run<3>(out.sizes(), {&cond.sizes(), &a.sizes(), &b.sizes()},
                    [&](int64_t o, int64_t len, const std::array<int64_t, 3>& off,
                        const std::array<int64_t, 3>& step) {
                      for (int64_t j = 0; j < len; ++j) {
                        po[o + j] = pc[off[0] + j * step[0]] ? pa[off[1] + j * step[1]]
                                                             : pb[off[2] + j * step[2]];
                      }
                    });
  });
}

}  // namespace cpu
}  // namespace tandem
