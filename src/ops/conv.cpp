// Public conv2d, pooling and batch_norm: argument checks, output allocation,
// dispatch to cpu:: or cuda:: (contracts in core/backend_decls.inc) and the
// autograd nodes. The backward passes call the backends' backward entry points
// through the same dispatch, so they run on either device; they are not
// themselves differentiable (no double backward through these layers).
// Batch norm in eval mode is composed from elementwise ops (an affine map per
// channel), so autograd differentiates it without a node of its own.
#include <cmath>
#include <sstream>

#include "autograd/record.h"
#include "ops/dispatch.h"
#include "ops/record_empty.h"
#include "tandem/ops.h"

namespace tandem {

namespace {

TensorOptions like(const Tensor& t) { return TensorOptions(t.dtype()).device(t.device()); }

std::string pair_str(const Size2& v) {
  std::ostringstream os;
  os << "(" << v.h << ", " << v.w << ")";
  return os.str();
}

// Checks an NCHW input (or CHW, a batch of one) and returns it as 4-D.
Tensor as_batch(const char* op, const Tensor& input) {
  detail::check_defined(op, input);
  detail::check_floating(op, input);
  TANDEM_CHECK(input.dim() == 3 || input.dim() == 4, op,
               ": expected input [N, C, H, W] or [C, H, W], got ", shape_str(input.sizes()));
  return input.dim() == 3 ? input.unsqueeze(0) : input;
}

// Makes the op's output match the input's rank (CHW in, CHW out).
Tensor like_input_rank(const Tensor& input, const Tensor& out) {
  return input.dim() == 3 ? out.squeeze(0) : out;
}

// ---- conv2d -------------------------------------------------------------------------

Tensor conv_backward_input(const Tensor& g, const Tensor& weight, const ConvShape& s) {
  Tensor gx = empty({s.n, s.c, s.h, s.w}, like(g));
  TANDEM_BACKEND_CALL(g.device(), conv2d_backward_input, g, weight, s, gx);
  return gx;
}

Tensor conv_backward_weight(const Tensor& x, const Tensor& g, const ConvShape& s) {
  Tensor gw = empty({s.k, s.c / s.groups, s.r, s.s}, like(g));
  TANDEM_BACKEND_CALL(g.device(), conv2d_backward_weight, x, g, s, gw);
  return gw;
}

Tensor conv2d_batch(const Tensor& x, const Tensor& weight, const Tensor& bias, Size2 stride,
                    Size2 padding, Size2 dilation, int64_t groups) {
  const char* op = "conv2d";
  detail::check_defined(op, weight, "weight");
  detail::check_same_device(op, x, weight);
  detail::check_same_dtype(op, x, weight);
  TANDEM_CHECK(weight.dim() == 4, op,
               ": weight must be 4-D [out_channels, in_channels/groups, kH, kW], got ",
               shape_str(weight.sizes()));
  TANDEM_CHECK(groups >= 1, op, ": groups must be >= 1, got ", groups);
  TANDEM_CHECK(stride.h >= 1 && stride.w >= 1, op, ": stride must be >= 1, got ", pair_str(stride));
  TANDEM_CHECK(dilation.h >= 1 && dilation.w >= 1, op, ": dilation must be >= 1, got ",
               pair_str(dilation));
  TANDEM_CHECK(padding.h >= 0 && padding.w >= 0, op, ": padding must be >= 0, got ",
               pair_str(padding));
  ConvShape s{};
  s.n = x.size(0), s.c = x.size(1), s.h = x.size(2), s.w = x.size(3);
  s.k = weight.size(0), s.r = weight.size(2), s.s = weight.size(3);
  s.stride_h = stride.h, s.stride_w = stride.w, s.pad_h = padding.h, s.pad_w = padding.w;
  s.dil_h = dilation.h, s.dil_w = dilation.w, s.groups = groups;
  TANDEM_CHECK(s.k >= 1 && s.r >= 1 && s.s >= 1, op, ": weight ", shape_str(weight.sizes()),
               " is empty");
  TANDEM_CHECK(s.k % groups == 0, op, ": out_channels ", s.k, " is not divisible by groups ",
               groups);
  TANDEM_CHECK(weight.size(1) * groups == s.c, op, ": input ", shape_str(x.sizes()), " has ", s.c,
               " channels but weight ", shape_str(weight.sizes()), " with groups=", groups,
               " expects ", weight.size(1) * groups);
  const int64_t eff_r = s.dil_h * (s.r - 1) + 1, eff_s = s.dil_w * (s.s - 1) + 1;
  TANDEM_CHECK(s.h + 2 * s.pad_h >= eff_r && s.w + 2 * s.pad_w >= eff_s, op, ": input ",
               shape_str(x.sizes()), " padded by ", pair_str(padding),
               " is smaller than the (dilated) kernel (", eff_r, ", ", eff_s, ")");
  s.p = (s.h + 2 * s.pad_h - eff_r) / s.stride_h + 1;
  s.q = (s.w + 2 * s.pad_w - eff_s) / s.stride_w + 1;
  if (bias.defined()) {
    detail::check_same_device(op, x, bias);
    detail::check_same_dtype(op, x, bias);
    TANDEM_CHECK(bias.dim() == 1 && bias.size(0) == s.k, op, ": bias ", shape_str(bias.sizes()),
                 " does not match out_channels ", s.k);
  }

  Tensor y = empty({s.n, s.k, s.p, s.q}, like(x));
  if (s.n == 0) return detail::record_empty(y, "conv2d", {x, weight, bias});
  if (s.c == 0) {  // no input channels: only the bias remains
    y.zero_();
    if (bias.defined()) {
      NoGradGuard no_grad;
      y.add_(bias.view({1, s.k, 1, 1}));
    }
  } else {
    TANDEM_BACKEND_CALL(x.device(), conv2d_forward, x, weight, bias, s, y);
  }
  if (autograd::should_record(x, weight, bias)) {
    const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
    const bool has_bias = bias.defined() && bias.requires_grad();
    autograd::record(y, "conv2d", {x, weight, bias},
                     {need_w ? x : Tensor(), need_x ? weight : Tensor()},
                     [=](const Tensor& g, const std::vector<Tensor>& saved) {
                       Tensor gx, gw, gb;
                       if (s.c > 0 && need_x) gx = conv_backward_input(g, saved[1], s);
                       if (s.c == 0 && need_x) gx = zeros({s.n, s.c, s.h, s.w}, like(g));
                       if (need_w) {
                         gw = s.c > 0 ? conv_backward_weight(saved[0], g, s)
                                      : zeros({s.k, 0, s.r, s.s}, like(g));
                       }
                       if (has_bias) gb = sum(sum(g.view({s.n, s.k, s.p * s.q}), 2), 0);
                       return std::vector<Tensor>{gx, gw, gb};
                     });
  }
  return y;
}

// ---- pooling ------------------------------------------------------------------------

// Every pooling op, every device: an input plane of height or width 0 is
// refused (PyTorch refuses it too). With 2 * padding == kernel it would still
// give output windows, made of padding only: nothing to take the maximum or
// mean of, and no input index for the backward to route a gradient to.
void check_nonempty_plane(const char* op, const Tensor& input, const Tensor& x) {
  TANDEM_CHECK(x.size(2) >= 1 && x.size(3) >= 1, op, ": input ", shape_str(input.sizes()),
               " has an empty plane (height or width 0); pooling needs at least one value per "
               "window");
}

PoolShape pool_shape(const char* op, const Tensor& x, Size2 kernel, std::optional<Size2> stride_opt,
                     Size2 padding, bool count_include_pad) {
  const Size2 stride = stride_opt.value_or(kernel);
  TANDEM_CHECK(kernel.h >= 1 && kernel.w >= 1, op, ": kernel_size must be >= 1, got ",
               pair_str(kernel));
  TANDEM_CHECK(stride.h >= 1 && stride.w >= 1, op, ": stride must be >= 1, got ", pair_str(stride));
  TANDEM_CHECK(
      padding.h >= 0 && padding.w >= 0 && 2 * padding.h <= kernel.h && 2 * padding.w <= kernel.w,
      op, ": padding ", pair_str(padding), " must be >= 0 and at most half the kernel ",
      pair_str(kernel));
  PoolShape s{};
  s.n = x.size(0), s.c = x.size(1), s.h = x.size(2), s.w = x.size(3);
  s.kh = kernel.h, s.kw = kernel.w, s.sh = stride.h, s.sw = stride.w;
  s.ph = padding.h, s.pw = padding.w, s.count_include_pad = count_include_pad;
  TANDEM_CHECK(s.h + 2 * s.ph >= s.kh && s.w + 2 * s.pw >= s.kw, op, ": input ",
               shape_str(x.sizes()), " padded by ", pair_str(padding),
               " is smaller than the kernel ", pair_str(kernel));
  s.oh = (s.h + 2 * s.ph - s.kh) / s.sh + 1;
  s.ow = (s.w + 2 * s.pw - s.kw) / s.sw + 1;
  return s;
}

Tensor max_pool_batch(const Tensor& x, const PoolShape& s) {
  Tensor y = empty({s.n, s.c, s.oh, s.ow}, like(x));
  if (y.numel() == 0) return detail::record_empty(y, "max_pool2d", {x});
  Tensor indices = empty({s.n, s.c, s.oh, s.ow}, TensorOptions(kInt64).device(x.device()));
  TANDEM_BACKEND_CALL(x.device(), max_pool2d_forward, x, s, y, indices);
  if (autograd::should_record(x)) {
    autograd::record(y, "max_pool2d", {x}, {indices},
                     [s](const Tensor& g, const std::vector<Tensor>& saved) {
                       Tensor gx = empty({s.n, s.c, s.h, s.w}, like(g));
                       TANDEM_BACKEND_CALL(g.device(), max_pool2d_backward, g, saved[0], s, gx);
                       return std::vector<Tensor>{gx};
                     });
  }
  return y;
}

Tensor avg_pool_batch(const Tensor& x, const PoolShape& s, bool adaptive) {
  Tensor y = empty({s.n, s.c, s.oh, s.ow}, like(x));
  if (y.numel() == 0) {
    return detail::record_empty(y, adaptive ? "adaptive_avg_pool2d" : "avg_pool2d", {x});
  }
  if (adaptive) {
    TANDEM_BACKEND_CALL(x.device(), adaptive_avg_pool2d_forward, x, s, y);
  } else {
    TANDEM_BACKEND_CALL(x.device(), avg_pool2d_forward, x, s, y);
  }
  if (autograd::should_record(x)) {
    autograd::record(y, adaptive ? "adaptive_avg_pool2d" : "avg_pool2d", {x}, {},
                     [s, adaptive](const Tensor& g, const std::vector<Tensor>&) {
                       Tensor gx = empty({s.n, s.c, s.h, s.w}, like(g));
                       if (adaptive) {
                         TANDEM_BACKEND_CALL(g.device(), adaptive_avg_pool2d_backward, g, s, gx);
                       } else {
                         TANDEM_BACKEND_CALL(g.device(), avg_pool2d_backward, g, s, gx);
                       }
                       return std::vector<Tensor>{gx};
                     });
  }
  return y;
}

// ---- batch_norm ---------------------------------------------------------------------

void check_channel_vector(const char* what, const Tensor& input, const Tensor& t, int64_t c) {
  if (!t.defined()) return;
  detail::check_same_device("batch_norm", input, t);
  detail::check_same_dtype("batch_norm", input, t);
  TANDEM_CHECK(t.dim() == 1 && t.size(0) == c, "batch_norm: ", what, " ", shape_str(t.sizes()),
               " does not match the ", c, " channels of input ", shape_str(input.sizes()));
}

}  // namespace

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, Size2 stride,
              Size2 padding, Size2 dilation, int64_t groups) {
  const Tensor x = as_batch("conv2d", input);
  return like_input_rank(input, conv2d_batch(x, weight, bias, stride, padding, dilation, groups));
}

Tensor max_pool2d(const Tensor& input, Size2 kernel_size, std::optional<Size2> stride,
                  Size2 padding) {
  const Tensor x = as_batch("max_pool2d", input);
  check_nonempty_plane("max_pool2d", input, x);
  const PoolShape s = pool_shape("max_pool2d", x, kernel_size, stride, padding, false);
  return like_input_rank(input, max_pool_batch(x, s));
}

Tensor avg_pool2d(const Tensor& input, Size2 kernel_size, std::optional<Size2> stride,
                  Size2 padding, bool count_include_pad) {
  const Tensor x = as_batch("avg_pool2d", input);
  check_nonempty_plane("avg_pool2d", input, x);
  const PoolShape s = pool_shape("avg_pool2d", x, kernel_size, stride, padding, count_include_pad);
  return like_input_rank(input, avg_pool_batch(x, s, false));
}

Tensor adaptive_avg_pool2d(const Tensor& input, Size2 output_size) {
  const Tensor x = as_batch("adaptive_avg_pool2d", input);
  TANDEM_CHECK(output_size.h >= 1 && output_size.w >= 1,
               "adaptive_avg_pool2d: output_size must be >= 1, got ", pair_str(output_size));
  check_nonempty_plane("adaptive_avg_pool2d", input, x);
  PoolShape s{};
  s.n = x.size(0), s.c = x.size(1), s.h = x.size(2), s.w = x.size(3);
  s.oh = output_size.h, s.ow = output_size.w;
  return like_input_rank(input, avg_pool_batch(x, s, true));
}

Tensor batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, bool training, double momentum,
                  double eps) {
  const char* op = "batch_norm";
  detail::check_defined(op, input);
  detail::check_floating(op, input);
  TANDEM_CHECK(input.dim() >= 2, op, ": expected input [N, C] or [N, C, ...], got ",
               shape_str(input.sizes()));
  const int64_t n = input.size(0), c = input.size(1);
  const int64_t m = c == 0 || n == 0 ? 0 : input.numel() / (n * c);
  check_channel_vector("weight", input, weight, c);
  check_channel_vector("bias", input, bias, c);
  check_channel_vector("running_mean", input, running_mean, c);
  check_channel_vector("running_var", input, running_var, c);
  TANDEM_CHECK(running_mean.defined() == running_var.defined(), op,
               ": give both running_mean and running_var or neither");
  TANDEM_CHECK(std::isfinite(eps) && eps >= 0.0, op, ": eps must be >= 0, got ", eps);
  TANDEM_CHECK(std::isfinite(momentum) && momentum >= 0.0 && momentum <= 1.0, op,
               ": momentum must be in [0, 1], got ", momentum);
  TANDEM_CHECK(!running_mean.requires_grad() && !running_var.requires_grad(), op,
               ": running_mean and running_var are statistics and must not require grad");

  if (!training) {
    TANDEM_CHECK(running_mean.defined(), op,
                 ": eval mode needs running_mean and running_var (or use training=true)");
    // y = x * scale + shift per channel; differentiable through the ops.
    Shape bshape(static_cast<size_t>(input.dim()), 1);
    bshape[1] = c;
    Tensor invstd = rsqrt(add(running_var, eps));
    Tensor scale = weight.defined() ? mul(weight, invstd) : invstd;
    Tensor shift = neg(mul(running_mean, scale));
    if (bias.defined()) shift = add(shift, bias);
    return add(mul(input, scale.view(bshape)), shift.view(bshape));
  }

  TANDEM_CHECK(n * m >= 2, op, ": training needs more than one value per channel, got input ",
               shape_str(input.sizes()));
  Tensor y = empty(input.sizes(), like(input));
  // The statistics stay in double for the backward, whatever x's dtype
  // (backend_decls.inc): a float32 mean is off by half an ulp of |mean|, which
  // shifts every xhat by that over the spread.
  const TensorOptions stats = TensorOptions(kFloat64).device(input.device());
  Tensor save_mean = empty({c}, stats);
  Tensor save_invstd = empty({c}, stats);
  if (c == 0) return y;
  {
    Tensor rm = running_mean, rv = running_var;
    // What the kernel reads, copied first where it overlaps the running
    // statistics it writes (docs/design.md, in-place ops and overlap).
    Tensor x = input, w = weight, b = bias;
    if (rm.defined()) {
      autograd::prepare_inplace(op, rm);
      autograd::prepare_inplace(op, rv);
      for (Tensor* t : {&x, &w, &b}) {
        if (detail::overlaps(*t, rm) || detail::overlaps(*t, rv)) *t = t->detach().clone();
      }
    }
    TANDEM_BACKEND_CALL(input.device(), batch_norm_forward_train, x, w, b, rm, rv, momentum, eps, n,
                        c, m, y, save_mean, save_invstd);
  }
  if (autograd::should_record(input, weight, bias)) {
    const bool need_x = input.requires_grad();
    const bool need_w = weight.defined() && weight.requires_grad();
    const bool need_b = bias.defined() && bias.requires_grad();
    autograd::record(y, "batch_norm", {input, weight, bias},
                     {input, weight, save_mean, save_invstd},
                     [=](const Tensor& g, const std::vector<Tensor>& saved) {
                       Tensor gx = need_x ? empty(saved[0].sizes(), like(g)) : Tensor();
                       Tensor gw = need_w ? empty({c}, like(g)) : Tensor();
                       Tensor gb = need_b ? empty({c}, like(g)) : Tensor();
                       if (!need_x) {
                         // The backends always write grad_x; give them a scratch tensor.
                         gx = empty(saved[0].sizes(), like(g));
                       }
                       TANDEM_BACKEND_CALL(g.device(), batch_norm_backward_train, g, saved[0],
                                           saved[1], saved[2], saved[3], n, c, m, gx, gw, gb);
                       return std::vector<Tensor>{need_x ? gx : Tensor(), gw, gb};
                     });
  }
  return y;
}

}  // namespace tandem
