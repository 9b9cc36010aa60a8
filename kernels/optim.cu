// Fused optimizer steps and the gradient-norm reduction on CUDA:
// cuda::sgd_step, adam_step, rmsprop_step, adagrad_step, grad_norm_accumulate,
// scale_tensors (declared in src/core/optim_decls.inc).
//
// Multi-tensor apply: the tensors of a list are cut into chunks of
// kFusedChunk elements and one launch handles up to kFusedMaxTensors tensors
// and kFusedMaxBlocks chunks (longer lists take several launches). The
// pointers, sizes and per-tensor scalars (lr / bias_correction1 ...) travel
// in a __grid_constant__ kernel-argument struct (under the 32 KiB kernel
// parameter limit of CUDA >= 12.1 on sm_70+), so nothing is copied to the
// device first; block b looks up its (tensor, chunk) in the struct.
// Fused: each element of param, grad and state is read once and param and
// state written once (16-byte vector accesses when the tensors are 16-byte
// aligned, scalar accesses for the rest). The update itself is the functor
// of src/core/optim_math.h, shared with the CPU backend: same operations, same
// order, explicitly rounded (no FMA contraction), so the two agree to float
// rounding.
// adam_step with FusedLaunch::PerTensor launches one flat grid-stride kernel
// per tensor instead (the baseline the benchmark compares against).
// grad_norm_accumulate: per-block partial sums in double (a multi-tensor
// launch over all gradients writes one partial per chunk), then one block
// adds the partials in a fixed order: deterministic, one value on the device.
#include <cmath>
#include <cstdint>

#include "core/optim_math.h"
#include "cuda/cuda_utils.h"

namespace tandem {
namespace cuda {
namespace {

constexpr int kBlock = 256;  // threads per chunk-block

// The kernel argument of one multi-tensor launch.
template <typename T, int kDepth>
struct TensorListArgs {
  T* ptrs[kDepth][kFusedMaxTensors];
  int64_t numel[kFusedMaxTensors];
  T scalar0[kFusedMaxTensors];
  T scalar1[kFusedMaxTensors];
  int32_t block_chunk[kFusedMaxBlocks];   // chunk index within its tensor
  uint8_t block_tensor[kFusedMaxBlocks];  // tensor index within this launch
};
static_assert(sizeof(TensorListArgs<double, 5>) <= 32000,
              "the multi-tensor argument struct must fit the kernel parameter limit");
static_assert(kFusedMaxTensors <= 256, "block_tensor is a uint8_t");

__device__ __forceinline__ bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Applies fn to elements [begin, end) of the tensors ptr[] (the same range of
// each): this thread starts at element `first` of the range (vector `first`
// on the 16-byte path) and steps by `stride` threads.
template <typename T, typename Fn>
__device__ __forceinline__ void apply_range(T* const (&ptr)[Fn::kDepthValue], int64_t begin,
                                            int64_t end, int64_t first, int64_t stride,
                                            const Fn& fn, T s0, T s1) {
  constexpr int kDepth = Fn::kDepthValue;
  constexpr int kVec = vec16<T>();
  bool aligned = true;
#pragma unroll
  for (int d = 0; d < kDepth; ++d) aligned = aligned && aligned16(ptr[d] + begin);
  int64_t scalar_begin = begin;
  if (aligned) {
    using Vec = AlignedVec<T, kVec>;
    const int64_t vec_end = begin + (end - begin) / kVec * kVec;
    for (int64_t i = begin + first * kVec; i < vec_end; i += stride * kVec) {
      Vec r[kDepth];
#pragma unroll
      for (int d = 0; d < kDepth; ++d) r[d] = *reinterpret_cast<const Vec*>(ptr[d] + i);
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        T v[kDepth];
#pragma unroll
        for (int d = 0; d < kDepth; ++d) v[d] = r[d].val[k];
        fn(v, s0, s1);
#pragma unroll
        for (int d = 0; d < kDepth; ++d) r[d].val[k] = v[d];
      }
#pragma unroll
      for (int d = 0; d < kDepth; ++d) {
        if (d != Fn::kReadOnly) *reinterpret_cast<Vec*>(ptr[d] + i) = r[d];
      }
    }
    scalar_begin = vec_end;
  }
  for (int64_t i = scalar_begin + first; i < end; i += stride) {
    T v[kDepth];
#pragma unroll
    for (int d = 0; d < kDepth; ++d) v[d] = ptr[d][i];
    fn(v, s0, s1);
#pragma unroll
    for (int d = 0; d < kDepth; ++d) {
      if (d != Fn::kReadOnly) ptr[d][i] = v[d];
    }
  }
}

// ---- Kernels -----------------------------------------------------------------------------

// One block per chunk of one tensor of the list.
TANDEM_KERNEL_BOUNDS(multi_tensor_update_kernel, kBlock);
template <typename T, typename Fn>
__global__ void __launch_bounds__(kBlock)
    multi_tensor_update_kernel(const __grid_constant__ TensorListArgs<T, Fn::kDepthValue> args,
                               const Fn fn) {
  constexpr int kDepth = Fn::kDepthValue;
  const int t = args.block_tensor[blockIdx.x];
  const int64_t begin = static_cast<int64_t>(args.block_chunk[blockIdx.x]) * kFusedChunk;
  const int64_t n = args.numel[t];
  const int64_t end = begin + kFusedChunk < n ? begin + kFusedChunk : n;
  T* ptr[kDepth];
#pragma unroll
  for (int d = 0; d < kDepth; ++d) ptr[d] = args.ptrs[d][t];
  apply_range<T, Fn>(ptr, begin, end, threadIdx.x, kBlock, fn, args.scalar0[t], args.scalar1[t]);
}

// One tensor, flat grid-stride (FusedLaunch::PerTensor).
template <typename T, int kDepth>
struct TensorPointers {
  T* ptr[kDepth];
};

TANDEM_KERNEL_BOUNDS(single_tensor_update_kernel, kBlock);
template <typename T, typename Fn>
__global__ void __launch_bounds__(kBlock)
    single_tensor_update_kernel(const TensorPointers<T, Fn::kDepthValue> tp, int64_t n, const Fn fn,
                                T s0, T s1) {
  // The whole grid strides over one range: each thread starts at its global
  // index, steps by the grid's thread count.
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kBlock + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kBlock;
  apply_range<T, Fn>(tp.ptr, 0, n, first, stride, fn, s0, s1);
}

// The norm's per-element term and how terms combine.
enum class NormKind { One, Two, Inf, P };

template <NormKind kKind>
__device__ __forceinline__ double norm_term(double a, double p) {
  if constexpr (kKind == NormKind::Two) {
    (void)p;
    return a * a;
  } else if constexpr (kKind == NormKind::P) {
    return pow(a, p);
  } else {
    (void)p;
    return a;  // One, Inf
  }
}

template <NormKind kKind>
struct NormCombine {
  __device__ __forceinline__ double operator()(double a, double b) const {
    if constexpr (kKind == NormKind::Inf) {
      return (a != a || a > b) ? a : b;  // NaN propagates
    } else {
      return a + b;
    }
  }
};

// One partial per chunk-block: partials[block_offset + blockIdx.x].
TANDEM_KERNEL_BOUNDS(multi_tensor_norm_kernel, kBlock);
template <typename T, NormKind kKind>
__global__ void __launch_bounds__(kBlock)
    multi_tensor_norm_kernel(const __grid_constant__ TensorListArgs<T, 1> args, double p,
                             double* partials, int64_t block_offset) {
  TANDEM_SHARED(double, scratch, [kBlock / kWarpSize + 1]);
  const int t = args.block_tensor[blockIdx.x];
  const int64_t begin = static_cast<int64_t>(args.block_chunk[blockIdx.x]) * kFusedChunk;
  const int64_t n = args.numel[t];
  const int64_t end = begin + kFusedChunk < n ? begin + kFusedChunk : n;
  const T* x = args.ptrs[0][t];
  const NormCombine<kKind> combine;
  double acc = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kBlock) {
    acc = combine(acc, norm_term<kKind>(fabs(static_cast<double>(x[i])), p));
  }
  acc = block_allreduce<kBlock>(acc, combine, 0.0, scratch);
  if (threadIdx.x == 0) partials[block_offset + blockIdx.x] = acc;
}

// out[0] = the partials combined in index order by one block.
TANDEM_KERNEL_BOUNDS(norm_finish_kernel, kBlock);
template <NormKind kKind>
__global__ void __launch_bounds__(kBlock)
    norm_finish_kernel(const double* partials, int64_t count, double* out) {
  TANDEM_SHARED(double, scratch, [kBlock / kWarpSize + 1]);
  const NormCombine<kKind> combine;
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += kBlock) acc = combine(acc, partials[i]);
  acc = block_allreduce<kBlock>(acc, combine, 0.0, scratch);
  if (threadIdx.x == 0) out[0] = acc;
}

// ---- Host launchers --------------------------------------------------------------------

// Fills TensorListArgs tensor by tensor and chunk by chunk, calling
// launch(args, blocks) whenever the tensor or block slots run out (a tensor
// cut there continues as tensor 0 of the next launch).
template <typename T, int kDepth, typename Pointers, typename Launch>
void for_each_launch(size_t count, const Pointers& pointers, const Launch& launch) {
  TensorListArgs<T, kDepth> args;
  int tensors = 0, blocks = 0;
  for (size_t i = 0; i < count; ++i) {
    T* ptr[kDepth];
    int64_t n = 0;
    T s0{}, s1{};
    pointers(i, ptr, n, s0, s1);
    if (n == 0) continue;  // no chunk: it must not take a tensor slot
    const auto put_tensor = [&](int slot) {
      for (int d = 0; d < kDepth; ++d) args.ptrs[d][slot] = ptr[d];
      args.numel[slot] = n;
      args.scalar0[slot] = s0;
      args.scalar1[slot] = s1;
    };
    put_tensor(tensors);
    const int64_t chunks = ceil_div<int64_t>(n, kFusedChunk);
    for (int64_t c = 0; c < chunks; ++c) {
      args.block_tensor[blocks] = static_cast<uint8_t>(tensors);
      args.block_chunk[blocks] = static_cast<int32_t>(c);
      ++blocks;
      const bool last_chunk = c + 1 == chunks;
      if (blocks == kFusedMaxBlocks || (last_chunk && tensors + 1 == kFusedMaxTensors)) {
        launch(args, blocks);
        blocks = 0;
        if (last_chunk) {
          tensors = -1;  // the next tensor starts at slot 0
        } else {
          tensors = 0;  // this tensor continues in slot 0
          put_tensor(0);
        }
      }
    }
    ++tensors;
  }
  if (blocks > 0) launch(args, blocks);
}

template <typename T, typename Fn>
void update_multi_tensor(const std::vector<FusedSlot>& slots, const Fn& fn, const char* op) {
  constexpr int kDepth = Fn::kDepthValue;
  const cudaStream_t stream = current_cuda_stream();
  for_each_launch<T, kDepth>(
      slots.size(),
      [&](size_t i, T*(&ptr)[kDepth], int64_t& n, T& s0, T& s1) {
        fused::slot_pointers<T, kDepth>(slots[i], ptr, op);
        n = slots[i].param.numel();
        s0 = static_cast<T>(slots[i].scalar0);
        s1 = static_cast<T>(slots[i].scalar1);
      },
      [&](const TensorListArgs<T, kDepth>& args, int blocks) {
        TANDEM_LAUNCH(blocks, kBlock, 0, stream, multi_tensor_update_kernel<T, Fn>)(args, fn);
      });
}

template <typename T, typename Fn>
void update_per_tensor(const std::vector<FusedSlot>& slots, const Fn& fn, const char* op) {
  constexpr int kDepth = Fn::kDepthValue;
  const cudaStream_t stream = current_cuda_stream();
  for (const FusedSlot& s : slots) {
    TensorPointers<T, kDepth> tp;
    fused::slot_pointers<T, kDepth>(s, tp.ptr, op);
    const int64_t n = s.param.numel();
    const int grid = grid_for(n, static_cast<int64_t>(kBlock) * vec16<T>(), kBlock);
    TANDEM_LAUNCH(grid, kBlock, 0, stream, single_tensor_update_kernel<T, Fn>)
    (tp, n, fn, static_cast<T>(s.scalar0), static_cast<T>(s.scalar1));
  }
}

DType list_dtype(const std::vector<FusedSlot>& slots) {
  return slots.empty() ? kFloat32 : slots.front().param.dtype();
}

template <typename T, NormKind kKind>
void norm_typed(const std::vector<Tensor>& tensors, double p, Tensor& out) {
  int64_t total_blocks = 0;
  for (const Tensor& t : tensors) total_blocks += ceil_div<int64_t>(t.numel(), kFusedChunk);
  const cudaStream_t stream = current_cuda_stream();
  detail::DeviceWorkspace partials(static_cast<size_t>(total_blocks > 0 ? total_blocks : 1) *
                                   sizeof(double));
  int64_t offset = 0;
  for_each_launch<T, 1>(
      tensors.size(),
      [&](size_t i, T*(&ptr)[1], int64_t& n, T&, T&) {
        // Read only: the kernel takes the pointer as const T*.
        ptr[0] = const_cast<T*>(tensors[i].data_ptr<T>());
        n = tensors[i].numel();
      },
      [&](const TensorListArgs<T, 1>& args, int blocks) {
        TANDEM_LAUNCH(blocks, kBlock, 0, stream, multi_tensor_norm_kernel<T, kKind>)
        (args, p, partials.as<double>(), offset);
        offset += blocks;
      });
  TANDEM_LAUNCH(1, kBlock, 0, stream, norm_finish_kernel<kKind>)
  (partials.as<double>(), total_blocks, out.data_ptr<double>());
}

}  // namespace

void sgd_step(const std::vector<FusedSlot>& slots, const SgdHyper& hyper) {
  TANDEM_DISPATCH_FLOATING(list_dtype(slots), "sgd_step (cuda)", [&] {
    fused::with_sgd_fn<scalar_t>(hyper, [&](const auto& fn) {
      update_multi_tensor<scalar_t>(slots, fn, "sgd_step (cuda)");
    });
  });
}

void adam_step(const std::vector<FusedSlot>& slots, const AdamHyper& hyper, FusedLaunch launch) {
  TANDEM_DISPATCH_FLOATING(list_dtype(slots), "adam_step (cuda)", [&] {
    fused::with_adam_fn<scalar_t>(hyper, [&](const auto& fn) {
      if (launch == FusedLaunch::PerTensor) {
        update_per_tensor<scalar_t>(slots, fn, "adam_step (cuda)");
      } else {
        update_multi_tensor<scalar_t>(slots, fn, "adam_step (cuda)");
      }
    });
  });
}

void rmsprop_step(const std::vector<FusedSlot>& slots, const RmspropHyper& hyper) {
  TANDEM_DISPATCH_FLOATING(list_dtype(slots), "rmsprop_step (cuda)", [&] {
    fused::with_rmsprop_fn<scalar_t>(hyper, [&](const auto& fn) {
      update_multi_tensor<scalar_t>(slots, fn, "rmsprop_step (cuda)");
    });
  });
}

void adagrad_step(const std::vector<FusedSlot>& slots, const AdagradHyper& hyper) {
  TANDEM_DISPATCH_FLOATING(list_dtype(slots), "adagrad_step (cuda)", [&] {
    update_multi_tensor<scalar_t>(slots, fused::make_adagrad_fn<scalar_t>(hyper),
                                  "adagrad_step (cuda)");
  });
}

void grad_norm_accumulate(const std::vector<Tensor>& tensors, double norm_type, Tensor& out) {
  TANDEM_CHECK(out.numel() == 1 && out.dtype() == kFloat64,
               "grad_norm_accumulate (cuda): out must be one float64 element");
  TANDEM_CHECK(!tensors.empty(), "grad_norm_accumulate (cuda): no tensors");
  for (const Tensor& t : tensors) {
    TANDEM_CHECK(t.dtype() == tensors.front().dtype(),
                 "grad_norm_accumulate (cuda): the tensors must share one dtype");
  }
  TANDEM_DISPATCH_FLOATING(tensors.front().dtype(), "grad_norm (cuda)", [&] {
    if (std::isinf(norm_type)) {
      norm_typed<scalar_t, NormKind::Inf>(tensors, norm_type, out);
    } else if (norm_type == 2.0) {
      norm_typed<scalar_t, NormKind::Two>(tensors, norm_type, out);
    } else if (norm_type == 1.0) {
      norm_typed<scalar_t, NormKind::One>(tensors, norm_type, out);
    } else {
      norm_typed<scalar_t, NormKind::P>(tensors, norm_type, out);
    }
  });
}

void scale_tensors(const std::vector<Tensor>& tensors, double factor) {
  if (tensors.empty()) return;
  std::vector<FusedSlot> slots;
  slots.reserve(tensors.size());
  for (const Tensor& t : tensors) {
    TANDEM_CHECK(t.dtype() == tensors.front().dtype(),
                 "scale_tensors (cuda): the tensors must share one dtype");
    FusedSlot s;
    s.param = t;
    slots.push_back(s);
  }
  TANDEM_DISPATCH_FLOATING(tensors.front().dtype(), "scale_tensors (cuda)", [&] {
    update_multi_tensor<scalar_t>(slots, fused::ScaleFn<scalar_t>{static_cast<scalar_t>(factor)},
                                  "scale_tensors (cuda)");
  });
}

}  // namespace cuda
}  // namespace tandem
