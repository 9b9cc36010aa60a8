// CPU twins of kernels/optim.cu: the fused optimizer steps and the
// gradient-norm reduction. The per-element updates are the functors of
// src/core/optim_math.h (shared with CUDA), applied to every element of every slot
// in the parameter's dtype, so CPU and CUDA steps agree to float rounding.
// Elements are independent: one OpenMP loop over chunks of all slots, each
// chunk a vectorised loop (see apply_slots). The file is compiled with
// -fno-math-errno (CMakeLists.txt): with errno, every std::sqrt carries a branch
// to the library call for negative inputs and the Adam, RMSprop and Adagrad
// loops do not vectorise. Results do not change: sqrtss/sqrtps are correctly
// rounded and a negative input gives NaN either way.
// The norm accumulates in double in index order (CUDA: per block, in another
// order, so the two agree to rounding).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/optim_math.h"
#include "cpu/cpu_utils.h"

namespace tandem {
namespace cpu {
namespace {

// One loop over [begin, end) of one slot. fn, the scalars and the pointers are
// local copies, so no store through a pointer can change them: the functor's
// conditions (weight decay, first step, nesterov) are loop-invariant and the
// loop vectorises (omp simd: the slot's tensors do not partially overlap,
// copy_overlapping_grads made sure of that for the gradients).
template <typename T, typename Fn>
void apply_range(const Fn fn, T* const* slot_ptr, const int64_t begin, const int64_t end,
                 const T s0, const T s1) {
  constexpr int kDepth = Fn::kDepthValue;
  T* ptr[kDepth];
  for (int d = 0; d < kDepth; ++d) ptr[d] = slot_ptr[d];
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    T v[kDepth];
    for (int d = 0; d < kDepth; ++d) v[d] = ptr[d][i];
    fn(v, s0, s1);
    for (int d = 0; d < kDepth; ++d)
      if (d != Fn::kReadOnly) ptr[d][i] = v[d];
  }
}

// Applies fn to every element of every slot (see core/optim_math.h for the v[] layout):
// the slots are cut into chunks of kFusedChunk elements and one OpenMP loop
// runs over the chunks of all slots (like the CUDA multi-tensor launch), so a
// step is one parallel region however many parameters there are, and small
// parameters share threads instead of each running alone.
template <typename T, typename Fn>
void apply_slots(const std::vector<FusedSlot>& slots, const Fn& fn, const char* op) {
  constexpr int kDepth = Fn::kDepthValue;
  struct SlotArgs {
    T* ptr[kDepth];
    T s0, s1;
  };
  struct Chunk {
    int64_t slot, begin, end;
  };
  std::vector<SlotArgs> args(slots.size());
  std::vector<Chunk> chunks;
  int64_t total = 0;
  for (size_t si = 0; si < slots.size(); ++si) {
    const FusedSlot& s = slots[si];
    fused::slot_pointers<T, kDepth>(s, args[si].ptr, op);
    args[si].s0 = static_cast<T>(s.scalar0);
    args[si].s1 = static_cast<T>(s.scalar1);
    const int64_t n = s.param.numel();
    for (int64_t b = 0; b < n; b += kFusedChunk) {
      chunks.push_back({static_cast<int64_t>(si), b, std::min(n, b + kFusedChunk)});
    }
    total += n;
  }
  const auto nchunks = static_cast<int64_t>(chunks.size());
  // About 4 memory streams per element: below the grain, one thread.
  const bool parallel = nchunks > 1 && total * 4 > util::kParallelGrain;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t c = 0; c < nchunks; ++c) {
    const Chunk& ch = chunks[static_cast<size_t>(c)];
    const SlotArgs& a = args[static_cast<size_t>(ch.slot)];
    apply_range<T>(fn, a.ptr, ch.begin, ch.end, a.s0, a.s1);
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
