// Fused optimizer steps, the backend side: the argument types of the backend
// entry points (optim_decls.inc, included here into namespace cpu and
// namespace cuda) and the per-element update formulas, written once as
// __host__ __device__ functors so that src/cpu/optim.cpp and kernels/optim.cu
// compute the same operations in the same order, in the parameter's dtype.
// Plain types only (no autograd, no optimizer classes): the backends include
// it; the optimizers' Tensor-level step (Optimizer::fused_step) is
// src/optim/fused.h.
//
// A functor sees one element of every tensor of a slot as v[kDepth]:
// v[0] = param, v[1] = grad (read only), v[2...] = the state tensors the
// variant uses, in the order the slot lists them; it updates v in place.
// Products and sums go through mul/add/... below: on the device they are the
// explicitly rounded intrinsics (no FMA contraction), on the host plain
// operators (the library is built with -ffp-contract=off), so both backends
// round every operation the same way.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/hd.h"
#include "tandem/error.h"
#include "tandem/tensor.h"

namespace tandem {

// ---- Arguments of the backend entry points -------------------------------------------

// One parameter with its gradient and state (see optim_decls.inc for what
// state[] and the scalars mean per optimizer).
struct FusedSlot {
  Tensor param;
  Tensor grad;
  std::array<Tensor, 3> state;
  double scalar0 = 0.0;  // per-tensor, step-dependent values
  double scalar1 = 0.0;
};

enum class Nesterov { Off, On };
enum class AdamDecay { L2, Decoupled };  // Adam: grad += wd * p; AdamW: p *= 1 - lr * wd
enum class Amsgrad { Off, On };
enum class Centered { Off, On };
enum class Momentum { Off, On };
// adam_step on CUDA: one multi-tensor launch per list chunk, or one launch per
// tensor (the comparison the benchmark makes).
enum class FusedLaunch { MultiTensor, PerTensor };

struct SgdHyper {
  double lr, momentum, dampening, weight_decay;
  Nesterov nesterov;
};
struct AdamHyper {
  double lr, beta1, beta2, eps, weight_decay;
  AdamDecay decay;
  Amsgrad amsgrad;
};
struct RmspropHyper {
  double lr, alpha, eps, weight_decay, momentum;
  Centered centered;
};
struct AdagradHyper {
  double weight_decay, eps;
};

// The most tensors / chunk-blocks one multi-tensor launch handles (the kernel
// argument struct holds their pointers; see kernels/optim.cu).
constexpr int kFusedMaxTensors = 96;
constexpr int kFusedMaxBlocks = 2048;
// Elements of one tensor handled by one block of a multi-tensor launch.
constexpr int64_t kFusedChunk = 16384;

namespace cpu {
#include "core/optim_decls.inc"
}  // namespace cpu
namespace cuda {
#include "core/optim_decls.inc"
}  // namespace cuda

// ---- Per-element formulas ----------------------------------------------------------

namespace fused {

template <typename T>
TANDEM_HD T mul(T a, T b) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same<T, float>::value) {
    return __fmul_rn(a, b);
  } else {
    return __dmul_rn(a, b);
  }
#else
  return a * b;
#endif
}
template <typename T>
TANDEM_HD T add(T a, T b) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same<T, float>::value) {
    return __fadd_rn(a, b);
  } else {
    return __dadd_rn(a, b);
  }
#else
  return a + b;
#endif
}
template <typename T>
TANDEM_HD T sub(T a, T b) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same<T, float>::value) {
    return __fsub_rn(a, b);
  } else {
    return __dsub_rn(a, b);
  }
#else
  return a - b;
#endif
}
template <typename T>
TANDEM_HD T div(T a, T b) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same<T, float>::value) {
    return __fdiv_rn(a, b);
  } else {
    return __ddiv_rn(a, b);
  }
#else
  return a / b;
#endif
}
template <typename T>
TANDEM_HD T sqrt_rn(T a) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same<T, float>::value) {
    return __fsqrt_rn(a);
  } else {
    return __dsqrt_rn(a);
  }
#else
  return std::sqrt(a);
#endif
}
// max that propagates NaN (torch.maximum).
template <typename T>
TANDEM_HD T max_nan(T a, T b) {
  return (a != a || a > b) ? a : b;
}

// SGD (PyTorch's torch.optim.SGD):
//   d = g + wd p;  buf = first ? d : momentum buf + (1 - dampening) d
//   d = nesterov ? d + momentum buf : buf;  p = p - lr d
// kDepth 2 without momentum, 3 with (v[2] = buf). s0 = 1 on the first step.
template <typename T, int kDepth>
struct SgdFn {
  static constexpr int kDepthValue = kDepth;
  static constexpr int kReadOnly = 1;
  T lr, momentum, one_minus_dampening, weight_decay;
  Nesterov nesterov;
  TANDEM_HD void operator()(T (&v)[kDepth], T s0, T /*s1*/) const {
    T d = v[1];
    if (weight_decay != T(0)) d = add(d, mul(weight_decay, v[0]));
    if constexpr (kDepth == 3) {
      const T buf = s0 != T(0) ? d : add(mul(momentum, v[2]), mul(one_minus_dampening, d));
      v[2] = buf;
      d = nesterov == Nesterov::On ? add(d, mul(momentum, buf)) : buf;
    }
    v[0] = sub(v[0], mul(lr, d));
  }
};

// Adam / AdamW (torch.optim.Adam, torch.optim.AdamW):
//   Adam:  g = g + wd p            AdamW: p = p (1 - lr wd)
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g;  vmax = max(vmax, v) (amsgrad)
//   p = p - (lr / bc1) * (m / (sqrt(v or vmax) / sqrt(bc2) + eps))
// v[2] = m, v[3] = v, v[4] = vmax. s0 = lr / bc1, s1 = sqrt(bc2).
template <typename T, Amsgrad kAmsgrad>
struct AdamFn {
  static constexpr int kDepthValue = kAmsgrad == Amsgrad::On ? 5 : 4;
  static constexpr int kReadOnly = 1;
  T beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay_factor;
  AdamDecay decay;
  TANDEM_HD void operator()(T (&v)[kDepthValue], T step_size, T bc2_sqrt) const {
    T p = v[0], g = v[1];
    if (weight_decay != T(0)) {
      if (decay == AdamDecay::Decoupled) {
        p = mul(p, decay_factor);
      } else {
        g = add(g, mul(weight_decay, p));
      }
    }
    const T m = add(mul(beta1, v[2]), mul(one_minus_beta1, g));
    const T s = add(mul(beta2, v[3]), mul(one_minus_beta2, mul(g, g)));
    T denom_src = s;
    if constexpr (kAmsgrad == Amsgrad::On) {
      denom_src = max_nan(s, v[4]);
      v[4] = denom_src;
    }
    const T denom = add(div(sqrt_rn(denom_src), bc2_sqrt), eps);
    v[0] = sub(p, mul(step_size, div(m, denom)));
    v[2] = m;
    v[3] = s;
  }
};

// RMSprop (torch.optim.RMSprop):
//   g = g + wd p;  sq = a sq + (1 - a) g g
//   centered: ga = a ga + (1 - a) g;  avg = sqrt(sq - ga ga) + eps, else sqrt(sq) + eps
//   momentum: buf = m buf + g / avg; p = p - lr buf, else p = p - lr (g / avg)
// v[2] = sq, then buf (momentum), then ga (centered).
template <typename T, Momentum kMomentum, Centered kCentered>
struct RmspropFn {
  static constexpr int kBuf = 3;
  static constexpr int kGradAvg = kMomentum == Momentum::On ? 4 : 3;
  static constexpr int kDepthValue =
      3 + (kMomentum == Momentum::On ? 1 : 0) + (kCentered == Centered::On ? 1 : 0);
  static constexpr int kReadOnly = 1;
  T lr, alpha, one_minus_alpha, eps, weight_decay, momentum;
  TANDEM_HD void operator()(T (&v)[kDepthValue], T /*s0*/, T /*s1*/) const {
    T g = v[1];
    if (weight_decay != T(0)) g = add(g, mul(weight_decay, v[0]));
    const T sq = add(mul(alpha, v[2]), mul(one_minus_alpha, mul(g, g)));
    v[2] = sq;
    T avg;
    if constexpr (kCentered == Centered::On) {
      const T ga = add(mul(alpha, v[kGradAvg]), mul(one_minus_alpha, g));
      v[kGradAvg] = ga;
      avg = add(sqrt_rn(sub(sq, mul(ga, ga))), eps);
    } else {
      avg = add(sqrt_rn(sq), eps);
    }
    if constexpr (kMomentum == Momentum::On) {
      const T buf = add(mul(momentum, v[kBuf]), div(g, avg));
      v[kBuf] = buf;
      v[0] = sub(v[0], mul(lr, buf));
    } else {
      v[0] = sub(v[0], mul(lr, div(g, avg)));
    }
  }
};

// Adagrad (torch.optim.Adagrad):
//   g = g + wd p;  sum = sum + g g;  p = p - clr (g / (sqrt(sum) + eps))
// v[2] = sum; s0 = clr = lr / (1 + (step - 1) lr_decay).
template <typename T>
struct AdagradFn {
  static constexpr int kDepthValue = 3;
  static constexpr int kReadOnly = 1;
  T weight_decay, eps;
  TANDEM_HD void operator()(T (&v)[3], T clr, T /*s1*/) const {
    T g = v[1];
    if (weight_decay != T(0)) g = add(g, mul(weight_decay, v[0]));
    const T sum = add(v[2], mul(g, g));
    v[2] = sum;
    v[0] = sub(v[0], mul(clr, div(g, add(sqrt_rn(sum), eps))));
  }
};

// x = x * factor (clip_grad_norm_); nothing read-only.
template <typename T>
struct ScaleFn {
  static constexpr int kDepthValue = 1;
  static constexpr int kReadOnly = -1;
  T factor;
  TANDEM_HD void operator()(T (&v)[1], T /*s0*/, T /*s1*/) const { v[0] = mul(v[0], factor); }
};

// ---- Typed hyperparameters (host; the same conversions for both backends) ----------

template <typename T, int kDepth>
SgdFn<T, kDepth> make_sgd_fn(const SgdHyper& h) {
  return {static_cast<T>(h.lr), static_cast<T>(h.momentum), static_cast<T>(1.0 - h.dampening),
          static_cast<T>(h.weight_decay), h.nesterov};
}
template <typename T, Amsgrad kAmsgrad>
AdamFn<T, kAmsgrad> make_adam_fn(const AdamHyper& h) {
  return {static_cast<T>(h.beta1),
          static_cast<T>(1.0 - h.beta1),
          static_cast<T>(h.beta2),
          static_cast<T>(1.0 - h.beta2),
          static_cast<T>(h.eps),
          static_cast<T>(h.weight_decay),
          static_cast<T>(1.0 - h.lr * h.weight_decay),
          h.decay};
}
template <typename T, Momentum kMomentum, Centered kCentered>
RmspropFn<T, kMomentum, kCentered> make_rmsprop_fn(const RmspropHyper& h) {
  return {static_cast<T>(h.lr),  static_cast<T>(h.alpha),        static_cast<T>(1.0 - h.alpha),
          static_cast<T>(h.eps), static_cast<T>(h.weight_decay), static_cast<T>(h.momentum)};
}
template <typename T>
AdagradFn<T> make_adagrad_fn(const AdagradHyper& h) {
  return {static_cast<T>(h.weight_decay), static_cast<T>(h.eps)};
}

// Calls f(std::integral_constant<...>) picking the variant of each optimizer,
// so both backends instantiate the same set of functors.
template <typename T, typename F>
void with_sgd_fn(const SgdHyper& h, const F& f) {
  if (h.momentum != 0.0) {
    f(make_sgd_fn<T, 3>(h));
  } else {
    f(make_sgd_fn<T, 2>(h));
  }
}
template <typename T, typename F>
void with_adam_fn(const AdamHyper& h, const F& f) {
  if (h.amsgrad == Amsgrad::On) {
    f(make_adam_fn<T, Amsgrad::On>(h));
  } else {
    f(make_adam_fn<T, Amsgrad::Off>(h));
  }
}
template <typename T, typename F>
void with_rmsprop_fn(const RmspropHyper& h, const F& f) {
  const bool m = h.momentum > 0.0, c = h.centered == Centered::On;
  if (m && c) {
    f(make_rmsprop_fn<T, Momentum::On, Centered::On>(h));
  } else if (m) {
    f(make_rmsprop_fn<T, Momentum::On, Centered::Off>(h));
  } else if (c) {
    f(make_rmsprop_fn<T, Momentum::Off, Centered::On>(h));
  } else {
    f(make_rmsprop_fn<T, Momentum::Off, Centered::Off>(h));
  }
}

// The data pointers of a slot in functor order: param, grad, then the defined
// state tensors. Throws when the slot does not have kDepth tensors.
template <typename T, int kDepth>
void slot_pointers(const FusedSlot& s, T* (&ptr)[kDepth], const char* op) {
  int d = 0;
  const auto put = [&](const Tensor& t) {
    TANDEM_CHECK(d < kDepth, op, ": a parameter slot has more state tensors than the update uses");
    TANDEM_CHECK(t.numel() == s.param.numel() && t.dtype() == s.param.dtype() &&
                     t.device() == s.param.device(),
                 op, ": a state or gradient tensor does not match its parameter");
    ptr[d++] = t.data_ptr<T>();
  };
  put(s.param);
  if constexpr (kDepth > 1) put(s.grad);
  for (const Tensor& t : s.state) {
    if (t.defined()) put(t);
  }
  TANDEM_CHECK(d == kDepth, op, ": a parameter slot has ", d, " tensors, the update needs ",
               kDepth);
}

}  // namespace fused

}  // namespace tandem
