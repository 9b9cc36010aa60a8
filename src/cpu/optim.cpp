// CPU twins of kernels/optim.cu: the fused optimizer steps and the
// gradient-norm reduction. The per-element updates are the functors of
// src/optim/fused.h (shared with CUDA), applied to every element of every slot
// in the parameter's dtype, so CPU and CUDA steps agree to float rounding.
// Elements are independent; big tensors use OpenMP (util::parallel_for).
// The norm accumulates in double in index order (CUDA: per block, in another
// order, so the two agree to rounding).
#include <cmath>
#include <limits>

#include "cpu/cpu_utils.h"
#include "optim/fused.h"

namespace tandem {
namespace cpu {
namespace {

// Applies fn to every element of every slot (see fused.h for the v[] layout).
template <typename T, typename Fn>
void apply_slots(const std::vector<FusedSlot>& slots, const Fn& fn, const char* op) {
  constexpr int kDepth = Fn::kDepthValue;
  for (const FusedSlot& s : slots) {
    T* ptr[kDepth];
    fused::slot_pointers<T, kDepth>(s, ptr, op);
    const int64_t n = s.param.numel();
    const T s0 = static_cast<T>(s.scalar0), s1 = static_cast<T>(s.scalar1);
    util::parallel_for(n, 16, [&](int64_t i) {
      T v[kDepth];
      for (int d = 0; d < kDepth; ++d) v[d] = ptr[d][i];
      fn(v, s0, s1);
      for (int d = 0; d < kDepth; ++d)
        if (d != Fn::kReadOnly) ptr[d][i] = v[d];
    });
  }
}

DType list_dtype(const std::vector<FusedSlot>& slots) {
  return slots.empty() ? kFloat32 : slots.front().param.dtype();
}

}  // namespace

void sgd_step(const std::vector<FusedSlot>& slots, const SgdHyper& hyper) {
  TANDEM_DISPATCH_FLOATING(list_dtype(slots), "sgd_step", [&] {
    fused::with_sgd_fn<scalar_t>(
        hyper, [&](const auto& fn) { apply_slots<scalar_t>(slots, fn, "sgd_step"); });
  });
}

void adam_step(const std::vector<FusedSlot>& slots, const AdamHyper& hyper, FusedLaunch launch) {
  (void)launch;  // one loop either way
  TANDEM_DISPATCH_FLOATING(list_dtype(slots), "adam_step", [&] {
    fused::with_adam_fn<scalar_t>(
        hyper, [&](const auto& fn) { apply_slots<scalar_t>(slots, fn, "adam_step"); });
  });
}

void rmsprop_step(const std::vector<FusedSlot>& slots, const RmspropHyper& hyper) {
  TANDEM_DISPATCH_FLOATING(list_dtype(slots), "rmsprop_step", [&] {
    fused::with_rmsprop_fn<scalar_t>(
        hyper, [&](const auto& fn) { apply_slots<scalar_t>(slots, fn, "rmsprop_step"); });
  });
}

void adagrad_step(const std::vector<FusedSlot>& slots, const AdagradHyper& hyper) {
  TANDEM_DISPATCH_FLOATING(list_dtype(slots), "adagrad_step", [&] {
    apply_slots<scalar_t>(slots, fused::make_adagrad_fn<scalar_t>(hyper), "adagrad_step");
  });
}

void grad_norm_accumulate(const std::vector<Tensor>& tensors, double norm_type, Tensor& out) {
  TANDEM_CHECK(out.numel() == 1 && out.dtype() == kFloat64,
               "grad_norm_accumulate: out must be one float64 element");
  const bool is_inf = std::isinf(norm_type);
  double acc = 0.0;
  for (const Tensor& t : tensors) {
    TANDEM_DISPATCH_FLOATING(t.dtype(), "grad_norm", [&] {
      const scalar_t* x = t.data_ptr<scalar_t>();
      const int64_t n = t.numel();
      for (int64_t i = 0; i < n; ++i) {
        const double a = std::fabs(static_cast<double>(x[i]));
        if (is_inf) {
          acc = (a != a || a > acc) ? a : acc;  // NaN propagates
        } else if (norm_type == 2.0) {
          acc += a * a;
        } else if (norm_type == 1.0) {
          acc += a;
        } else {
          acc += std::pow(a, norm_type);
        }
      }
    });
  }
  out.data_ptr<double>()[0] = acc;
}

void scale_tensors(const std::vector<Tensor>& tensors, double factor) {
  for (const Tensor& t : tensors) {
    TANDEM_DISPATCH_FLOATING(t.dtype(), "scale_tensors", [&] {
      scalar_t* x = t.data_ptr<scalar_t>();
      const fused::ScaleFn<scalar_t> fn{static_cast<scalar_t>(factor)};
      util::parallel_for(t.numel(), 4, [&](int64_t i) {
        scalar_t v[1] = {x[i]};
        fn(v, scalar_t(0), scalar_t(0));
        x[i] = v[0];
      });
    });
  }
}

}  // namespace cpu
}  // namespace tandem
