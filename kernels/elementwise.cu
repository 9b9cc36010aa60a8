// Elementwise kernels: cuda::unary, cuda::unary_backward, cuda::binary,
// cuda::binary_scalar, cuda::where. The per-element formulas are
// core/elementwise_math.h's, shared with the CPU; this file walks memory.
//
// Layout: every tensor is contiguous (row-major). Outputs are written in linear
// order; inputs are read either
//   - contiguously (same numel as the output): 16-byte vector loads/stores
//     (float4, double2, ...; 2 vectors per thread per step) when every pointer is
//     aligned, scalar otherwise. This path is meant to run at copy bandwidth.
//   - through broadcast strides (0 on broadcast dims), after merging dims that
//     are contiguous in every operand; at most 8 merged dims per launch, 32-bit
//     index math (launches over 2^32 - 1 elements, or over more than 8 merged
//     dims, are split along the outer dims).
// The op is a template parameter of the functor, so each kernel is one op.
// Nothing is fused beyond `a + alpha * b` (Add/Sub) and a unary op's backward.
//
// Semantics: core/elementwise_math.h. Scalars and alpha are converted with
// scalar_to (as on the CPU: integers through int64, so -1 becomes 255 in uint8).
//   - DIFFERENCE FROM THE CPU: integer division by zero writes 0 here (the CPU
//     throws; detecting it on the device would need a device-to-host sync).
// Instantiation savers (exact, not approximations): Sub is Add with -alpha
// (a - x == a + (-x) in IEEE and in wrapping integers); Gt/Ge are Lt/Le with
// the operands swapped; a left-hand scalar uses the mirrored comparison, and
// the right-hand form for Add and Mul (commutative bit for bit).
#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/backend.h"
#include "core/elementwise_math.h"
#include "cuda/cuda_utils.h"

namespace tandem {
namespace cuda {
namespace {

constexpr int kMaxDims = 8;
constexpr int kUnroll = 2;  // 16-byte vectors per thread per grid-stride step

// ---- Op functors: the formulas are core/elementwise_math.h's ------------------------------

template <typename T, UnaryOp op>
struct UnaryFn {
  using Out = T;
  T p0, p1;
  __device__ __forceinline__ T operator()(T x) const {
    return math::UnaryFormula<op>::forward(x, p0, p1);
  }
};

// (grad_out, saved) -> grad_in of a unary op.
template <typename T, UnaryOp op>
struct UnaryGradFn {
  using Out = T;
  T p0, p1;
  __device__ __forceinline__ T operator()(T g, T s) const {
    return math::UnaryFormula<op>::backward(g, s, p0, p1);
  }
};

template <typename T, BinaryOp op>
struct BinaryFn {
  using Out = math::BinaryResult<op, T>;
  T alpha;  // Add/Sub only
  __device__ __forceinline__ Out operator()(T a, T b) const {
    return math::binary<op, T>(a, b, alpha);
  }
};

// x op s (Right) or s op x (Left).
template <typename T, BinaryOp op, ScalarSide side>
struct ScalarFn {
  using Out = typename BinaryFn<T, op>::Out;
  BinaryFn<T, op> f;
  T s;
  __device__ __forceinline__ Out operator()(T x) const {
    if constexpr (side == ScalarSide::Right) {
      return f(x, s);
    } else {
      return f(s, x);
    }
  }
};

// ---- Operand bundles: what one output element reads ---------------------------------------------
// Each provides vec<kVec>(j) (contiguous, j-th vector), scalar(i) (contiguous)
// and a host-side alignment check; those that broadcast also at(off) (one
// offset per input).

template <typename T, typename F>
struct Map1 {
  using Out = typename F::Out;
  const T* x;
  F f;

  bool aligned(int vec) const { return is_aligned_to(x, sizeof(T) * vec); }
  template <int kVec>
  __device__ __forceinline__ AlignedVec<Out, kVec> vec(int64_t j) const {
    const AlignedVec<T, kVec> v = reinterpret_cast<const AlignedVec<T, kVec>*>(x)[j];
    AlignedVec<Out, kVec> r;
#pragma unroll
    for (int e = 0; e < kVec; ++e) r.val[e] = f(v.val[e]);
    return r;
  }
  __device__ __forceinline__ Out scalar(int64_t i) const { return f(x[i]); }
};

template <typename T, typename F>
struct Map2 {
  using Out = typename F::Out;
  // (An enumerator: nvcc flags a static member that a contiguous-only use,
  // a unary op's backward, never reads.)
  enum : int { kInputs = 2 };
  const T* a;
  const T* b;
  F f;

  bool aligned(int vec) const {
    return is_aligned_to(a, sizeof(T) * vec) && is_aligned_to(b, sizeof(T) * vec);
  }
  template <int kVec>
  __device__ __forceinline__ AlignedVec<Out, kVec> vec(int64_t j) const {
    const AlignedVec<T, kVec> va = reinterpret_cast<const AlignedVec<T, kVec>*>(a)[j];
    const AlignedVec<T, kVec> vb = reinterpret_cast<const AlignedVec<T, kVec>*>(b)[j];
    AlignedVec<Out, kVec> r;
#pragma unroll
    for (int e = 0; e < kVec; ++e) r.val[e] = f(va.val[e], vb.val[e]);
    return r;
  }
  __device__ __forceinline__ Out scalar(int64_t i) const { return f(a[i], b[i]); }
  __device__ __forceinline__ Out at(const uint32_t* off) const { return f(a[off[0]], b[off[1]]); }
};

template <typename T>
struct Where3 {
  using Out = T;
  static constexpr int kInputs = 3;
  const uint8_t* cond;
  const T* a;
  const T* b;

  bool aligned(int vec) const {
    return is_aligned_to(cond, static_cast<size_t>(vec)) && is_aligned_to(a, sizeof(T) * vec) &&
           is_aligned_to(b, sizeof(T) * vec);
  }
  template <int kVec>
  __device__ __forceinline__ AlignedVec<T, kVec> vec(int64_t j) const {
    const AlignedVec<uint8_t, kVec> vc =
        reinterpret_cast<const AlignedVec<uint8_t, kVec>*>(cond)[j];
    const AlignedVec<T, kVec> va = reinterpret_cast<const AlignedVec<T, kVec>*>(a)[j];
    const AlignedVec<T, kVec> vb = reinterpret_cast<const AlignedVec<T, kVec>*>(b)[j];
    AlignedVec<T, kVec> r;
#pragma unroll
    for (int e = 0; e < kVec; ++e) r.val[e] = vc.val[e] ? va.val[e] : vb.val[e];
    return r;
  }
  __device__ __forceinline__ T scalar(int64_t i) const { return cond[i] ? a[i] : b[i]; }
  __device__ __forceinline__ T at(const uint32_t* off) const {
    return cond[off[0]] ? a[off[1]] : b[off[2]];
  }
};

// Broadcast geometry for the kernel: dims innermost first, 32-bit.
template <int kInputs>
struct StridedIndexer {
  int ndim;
  uint32_t sizes[kMaxDims];
  uint32_t strides[kInputs][kMaxDims];
};

// ---- Kernels
// ----------------------------------------------------------------------------------------

// out[i] = g(i) over a contiguous range: first n_vec vectors of kVec elements
// (n_vec == 0 when a pointer is misaligned), then the remaining elements one by one.
// Each step loads kUnroll vectors before storing any (out may alias an input).
template <int kVec, typename G>
__global__ void elementwise_contiguous_kernel(typename G::Out* out, int64_t n, int64_t n_vec, G g) {
  using OutVec = AlignedVec<typename G::Out, kVec>;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  OutVec* out_vec = reinterpret_cast<OutVec*>(out);
  for (int64_t base = tid; base < n_vec; base += nthreads * kUnroll) {
    OutVec r[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t j = base + u * nthreads;
      if (j < n_vec) r[u] = g.template vec<kVec>(j);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t j = base + u * nthreads;
      if (j < n_vec) out_vec[j] = r[u];
    }
  }
  for (int64_t i = n_vec * kVec + tid; i < n; i += nthreads) out[i] = g.scalar(i);
}

// out[i] = g.at(offsets of element i) with broadcast strides; n < 2^32.
template <typename G>
__global__ void elementwise_strided_kernel(typename G::Out* out, int64_t n,
                                           StridedIndexer<G::kInputs> ix, G g) {
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += nthreads) {
    uint32_t rem = static_cast<uint32_t>(i);
    uint32_t off[G::kInputs];
#pragma unroll
    for (int k = 0; k < G::kInputs; ++k) off[k] = 0;
#pragma unroll
    for (int d = 0; d < kMaxDims; ++d) {
      if (d == ix.ndim) break;
      const uint32_t coord = rem % ix.sizes[d];
      rem /= ix.sizes[d];
#pragma unroll
      for (int k = 0; k < G::kInputs; ++k) off[k] += coord * ix.strides[k][d];
    }
    out[i] = g.at(off);
  }
}

// ---- Host: launch plans
// ---------------------------------------------------------------------------------

// Elements per 16-byte vector of the widest input (T of the bundle).
template <typename T, typename G>
void run_contiguous(const G& g, typename G::Out* out, int64_t n) {
  constexpr int kVec = vec16<T>();
  constexpr int kBlock = kBlockSize;
  const bool vector_ok = g.aligned(kVec) && is_aligned_to(out, sizeof(typename G::Out) * kVec);
  const int64_t n_vec = vector_ok ? n / kVec : 0;
  const int grid =
      n_vec > 0 ? grid_for(n_vec, int64_t{kBlock} * kUnroll, kBlock) : grid_for(n, kBlock, kBlock);
  TANDEM_LAUNCH(grid, kBlock, 0, current_cuda_stream(), elementwise_contiguous_kernel<kVec, G>)
  (out, n, n_vec, g);
}

// Broadcast dims of up to kInputs operands against the output, outermost first.
template <int kInputs>
struct BroadcastPlan {
  std::vector<int64_t> sizes;
  std::vector<std::vector<int64_t>> strides;  // [input][dim]
};

// Strides of `shape` right-aligned against `out` (0 where broadcast), with
// size-1 output dims dropped and dims merged where every operand is contiguous
// across them.
template <int kInputs>
BroadcastPlan<kInputs> make_plan(const Shape& out, const std::array<const Shape*, kInputs>& ins) {
  const size_t nd = out.size();
  std::vector<std::vector<int64_t>> full(kInputs, std::vector<int64_t>(nd, 0));
  for (int k = 0; k < kInputs; ++k) {
    const Shape& s = *ins[static_cast<size_t>(k)];
    TANDEM_CHECK(s.size() <= nd, "elementwise (cuda): operand has more dims than the output");
    int64_t stride = 1;
    for (size_t j = s.size(); j-- > 0;) {
      const size_t od = nd - s.size() + j;
      full[static_cast<size_t>(k)][od] = s[j] == 1 ? 0 : stride;
      stride *= s[j];
    }
  }
  BroadcastPlan<kInputs> plan;
  plan.strides.assign(kInputs, {});
  for (size_t d = 0; d < nd; ++d) {
    if (out[d] == 1) continue;
    bool merge = !plan.sizes.empty();
    for (int k = 0; merge && k < kInputs; ++k) {
      merge =
          plan.strides[static_cast<size_t>(k)].back() == full[static_cast<size_t>(k)][d] * out[d];
    }
    if (merge) {
      plan.sizes.back() *= out[d];
      for (int k = 0; k < kInputs; ++k) {
        plan.strides[static_cast<size_t>(k)].back() = full[static_cast<size_t>(k)][d];
      }
    } else {
      plan.sizes.push_back(out[d]);
      for (int k = 0; k < kInputs; ++k) {
        plan.strides[static_cast<size_t>(k)].push_back(full[static_cast<size_t>(k)][d]);
      }
    }
  }
  return plan;
}

constexpr int64_t kMaxStridedLaunch = 0xFFFFFFFFLL;  // elements per 32-bit launch

// Launches the strided kernel over plan dims [first, end) with every operand
// offset by base[k] elements and the output by out_base; splits along outer
// dims so that each launch indexes fewer than 2^32 elements.
template <typename G, typename SetPointers>
void run_strided_range(const BroadcastPlan<G::kInputs>& plan, size_t first, int64_t first_size,
                       const std::array<int64_t, G::kInputs>& base, int64_t out_base,
                       typename G::Out* out, const SetPointers& set_pointers) {
  int64_t inner = 1;
  for (size_t d = first + 1; d < plan.sizes.size(); ++d) inner *= plan.sizes[d];
  const int64_t numel = first < plan.sizes.size() ? first_size * inner : 1;
  // More merged dims than the indexer holds: one index of the outer dims at a
  // time (below), so any number of dims runs, as on the CPU.
  const bool dims_fit = plan.sizes.size() - first <= static_cast<size_t>(kMaxDims);
  if (numel <= kMaxStridedLaunch && dims_fit) {
    const size_t ndim = plan.sizes.size() - first;
    StridedIndexer<G::kInputs> ix{};
    ix.ndim = static_cast<int>(ndim);
    for (size_t j = 0; j < ndim; ++j) {
      const size_t d = plan.sizes.size() - 1 - j;  // innermost first
      ix.sizes[j] = static_cast<uint32_t>(d == first ? first_size : plan.sizes[d]);
      for (int k = 0; k < G::kInputs; ++k) {
        ix.strides[k][j] = static_cast<uint32_t>(plan.strides[static_cast<size_t>(k)][d]);
      }
    }
    const G g = set_pointers(base);
    constexpr int kBlock = kBlockSize;
    const int grid = grid_for(numel, kBlock, kBlock);
    TANDEM_LAUNCH(grid, kBlock, 0, current_cuda_stream(), elementwise_strided_kernel<G>)
    (out + out_base, numel, ix, g);
    return;
  }
  if (inner <= kMaxStridedLaunch && dims_fit) {
    // Chunks of whole rows of dim `first`.
    const int64_t rows = kMaxStridedLaunch / inner;
    for (int64_t r0 = 0; r0 < first_size; r0 += rows) {
      std::array<int64_t, G::kInputs> b = base;
      for (int k = 0; k < G::kInputs; ++k)
        b[static_cast<size_t>(k)] += r0 * plan.strides[static_cast<size_t>(k)][first];
      const int64_t len = first_size - r0 < rows ? first_size - r0 : rows;
      run_strided_range<G>(plan, first, len, b, out_base + r0 * inner, out, set_pointers);
    }
  } else {
    // One index of dim `first` at a time; recurse into the next dim.
    for (int64_t r = 0; r < first_size; ++r) {
      std::array<int64_t, G::kInputs> b = base;
      for (int k = 0; k < G::kInputs; ++k)
        b[static_cast<size_t>(k)] += r * plan.strides[static_cast<size_t>(k)][first];
      run_strided_range<G>(plan, first + 1, plan.sizes[first + 1], b, out_base + r * inner, out,
                           set_pointers);
    }
  }
}

template <typename G, typename SetPointers>
void run_strided(const BroadcastPlan<G::kInputs>& plan, typename G::Out* out,
                 const SetPointers& set_pointers) {
  std::array<int64_t, G::kInputs> base{};
  const int64_t first_size = plan.sizes.empty() ? 1 : plan.sizes[0];
  run_strided_range<G>(plan, 0, first_size, base, 0, out, set_pointers);
}

// ---- Host: typed entry points
// -----------------------------------------------------------------------------

template <typename T, UnaryOp op>
void unary_op(const Tensor& x, Tensor& out, T p0, T p1) {
  using G = Map1<T, UnaryFn<T, op>>;
  run_contiguous<T>(G{x.data_ptr<T>(), UnaryFn<T, op>{p0, p1}}, out.data_ptr<T>(), out.numel());
}

template <typename T>
void unary_typed(UnaryOp op, const Tensor& x, Tensor& out, double p0, double p1) {
  const T p0_t = static_cast<T>(p0);
  const T p1_t = static_cast<T>(p1);
  switch (op) {
#define TANDEM_UNARY_CASE_(name, Enum)              \
  case UnaryOp::Enum:                               \
    unary_op<T, UnaryOp::Enum>(x, out, p0_t, p1_t); \
    return;
    TANDEM_UNARY_OPS(TANDEM_UNARY_CASE_)
    TANDEM_PARAM_UNARY_OPS(TANDEM_UNARY_CASE_)
#undef TANDEM_UNARY_CASE_
  }
  TANDEM_FAIL("unary (cuda): unknown op ", static_cast<int>(op));
}

template <typename T>
void unary_backward_typed(UnaryOp op, const Tensor& g, const Tensor& saved, Tensor& grad_in,
                          double p0, double p1) {
  const T p0_t = static_cast<T>(p0);
  const T p1_t = static_cast<T>(p1);
  switch (op) {
#define TANDEM_UNARY_GRAD_CASE_(name, Enum)                                            \
  case UnaryOp::Enum: {                                                                \
    using F = UnaryGradFn<T, UnaryOp::Enum>;                                           \
    run_contiguous<T>(Map2<T, F>{g.data_ptr<T>(), saved.data_ptr<T>(), F{p0_t, p1_t}}, \
                      grad_in.data_ptr<T>(), grad_in.numel());                         \
    return;                                                                            \
  }
    TANDEM_UNARY_OPS(TANDEM_UNARY_GRAD_CASE_)
    TANDEM_PARAM_UNARY_OPS(TANDEM_UNARY_GRAD_CASE_)
#undef TANDEM_UNARY_GRAD_CASE_
  }
  TANDEM_FAIL("unary_backward (cuda): unknown op ", static_cast<int>(op));
}

// a op b with broadcasting (a and b may be swapped by the caller).
template <typename T, BinaryOp op>
void binary_op(const Tensor& a, const Tensor& b, Tensor& out, T alpha) {
  using F = BinaryFn<T, op>;
  using G = Map2<T, F>;
  using Out = typename F::Out;
  Out* out_ptr = out.data_ptr<Out>();
  const T* pa = a.data_ptr<T>();
  const T* pb = b.data_ptr<T>();
  const int64_t n = out.numel();
  if (a.numel() == n && b.numel() == n) {
    run_contiguous<T>(G{pa, pb, F{alpha}}, out_ptr, n);
    return;
  }
  const auto plan = make_plan<2>(out.sizes(), {&a.sizes(), &b.sizes()});
  run_strided<G>(plan, out_ptr, [&](const std::array<int64_t, 2>& base) {
    return G{pa + base[0], pb + base[1], F{alpha}};
  });
}

template <typename T>
void binary_typed(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out, double alpha) {
  switch (op) {
    case BinaryOp::Add:
      return binary_op<T, BinaryOp::Add>(a, b, out, scalar_to<T>(alpha));
    case BinaryOp::Sub:  // a - alpha*b == a + (-alpha)*b exactly
      return binary_op<T, BinaryOp::Add>(a, b, out, math::neg_wrap(scalar_to<T>(alpha)));
    case BinaryOp::Mul:
      return binary_op<T, BinaryOp::Mul>(a, b, out, T(1));
    case BinaryOp::Div:
      return binary_op<T, BinaryOp::Div>(a, b, out, T(1));
    case BinaryOp::Maximum:
      return binary_op<T, BinaryOp::Maximum>(a, b, out, T(1));
    case BinaryOp::Minimum:
      return binary_op<T, BinaryOp::Minimum>(a, b, out, T(1));
    case BinaryOp::Eq:
      return binary_op<T, BinaryOp::Eq>(a, b, out, T(1));
    case BinaryOp::Ne:
      return binary_op<T, BinaryOp::Ne>(a, b, out, T(1));
    case BinaryOp::Lt:
      return binary_op<T, BinaryOp::Lt>(a, b, out, T(1));
    case BinaryOp::Le:
      return binary_op<T, BinaryOp::Le>(a, b, out, T(1));
    case BinaryOp::Gt:  // a > b == b < a
      return binary_op<T, BinaryOp::Lt>(b, a, out, T(1));
    case BinaryOp::Ge:  // a >= b == b <= a
      return binary_op<T, BinaryOp::Le>(b, a, out, T(1));
  }
  TANDEM_FAIL("binary (cuda): unknown op ", static_cast<int>(op));
}

template <typename T, BinaryOp op, ScalarSide side>
void scalar_op(const Tensor& a, T s, Tensor& out) {
  using F = ScalarFn<T, op, side>;
  using G = Map1<T, F>;
  run_contiguous<T>(G{a.data_ptr<T>(), F{BinaryFn<T, op>{T(1)}, s}},
                    out.data_ptr<typename F::Out>(), out.numel());
}

template <typename T>
void binary_scalar_typed(BinaryOp op, const Tensor& a, double s, ScalarSide side, Tensor& out) {
  constexpr ScalarSide R = ScalarSide::Right;
  const T st = scalar_to<T>(s);
  if (side == ScalarSide::Left) {
    switch (op) {
      case BinaryOp::Sub:
        return scalar_op<T, BinaryOp::Sub, ScalarSide::Left>(a, st, out);
      case BinaryOp::Div:
        return scalar_op<T, BinaryOp::Div, ScalarSide::Left>(a, st, out);
      case BinaryOp::Maximum:  // not commutative for equal values of different sign (+-0)
        return scalar_op<T, BinaryOp::Maximum, ScalarSide::Left>(a, st, out);
      case BinaryOp::Minimum:
        return scalar_op<T, BinaryOp::Minimum, ScalarSide::Left>(a, st, out);
      case BinaryOp::Lt:  // s < a == a > s
        return scalar_op<T, BinaryOp::Gt, R>(a, st, out);
      case BinaryOp::Le:
        return scalar_op<T, BinaryOp::Ge, R>(a, st, out);
      case BinaryOp::Gt:
        return scalar_op<T, BinaryOp::Lt, R>(a, st, out);
      case BinaryOp::Ge:
        return scalar_op<T, BinaryOp::Le, R>(a, st, out);
      default:
        break;  // commutative: same as the right-hand form
    }
  }
  switch (op) {
    case BinaryOp::Add:
      return scalar_op<T, BinaryOp::Add, R>(a, st, out);
    case BinaryOp::Sub:  // a - s == a + (-s) exactly
      return scalar_op<T, BinaryOp::Add, R>(a, math::neg_wrap(st), out);
    case BinaryOp::Mul:
      return scalar_op<T, BinaryOp::Mul, R>(a, st, out);
    case BinaryOp::Div:
      return scalar_op<T, BinaryOp::Div, R>(a, st, out);
    case BinaryOp::Maximum:
      return scalar_op<T, BinaryOp::Maximum, R>(a, st, out);
    case BinaryOp::Minimum:
      return scalar_op<T, BinaryOp::Minimum, R>(a, st, out);
    case BinaryOp::Eq:
      return scalar_op<T, BinaryOp::Eq, R>(a, st, out);
    case BinaryOp::Ne:
      return scalar_op<T, BinaryOp::Ne, R>(a, st, out);
    case BinaryOp::Lt:
      return scalar_op<T, BinaryOp::Lt, R>(a, st, out);
    case BinaryOp::Le:
      return scalar_op<T, BinaryOp::Le, R>(a, st, out);
    case BinaryOp::Gt:
      return scalar_op<T, BinaryOp::Gt, R>(a, st, out);
    case BinaryOp::Ge:
      return scalar_op<T, BinaryOp::Ge, R>(a, st, out);
  }
  TANDEM_FAIL("binary_scalar (cuda): unknown op ", static_cast<int>(op));
}

template <typename T>
void where_typed(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) {
  using G = Where3<T>;
  T* out_ptr = out.data_ptr<T>();
  const uint8_t* pc = cond.data_ptr<uint8_t>();
  const T* pa = a.data_ptr<T>();
  const T* pb = b.data_ptr<T>();
  const int64_t n = out.numel();
  if (cond.numel() == n && a.numel() == n && b.numel() == n) {
    run_contiguous<T>(G{pc, pa, pb}, out_ptr, n);
    return;
  }
  const auto plan = make_plan<3>(out.sizes(), {&cond.sizes(), &a.sizes(), &b.sizes()});
  run_strided<G>(plan, out_ptr, [&](const std::array<int64_t, 3>& base) {
    return G{pc + base[0], pa + base[1], pb + base[2]};
  });
}

}  // namespace

// ---- Backend entry points (core/backend_decls.inc)
// ---------------------------------------------------------

void unary(UnaryOp op, const Tensor& x, Tensor& out, double p0, double p1) {
  TANDEM_DISPATCH_FLOATING(x.dtype(), "unary (cuda)",
                           [&] { unary_typed<scalar_t>(op, x, out, p0, p1); });
}

void unary_backward(UnaryOp op, const Tensor& grad_out, const Tensor& saved, Tensor& grad_in,
                    double p0, double p1) {
  TANDEM_DISPATCH_FLOATING(grad_in.dtype(), "unary_backward (cuda)", [&] {
    unary_backward_typed<scalar_t>(op, grad_out, saved, grad_in, p0, p1);
  });
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out, double alpha) {
  TANDEM_DISPATCH_ALL(a.dtype(), "binary (cuda)",
                      [&] { binary_typed<scalar_t>(op, a, b, out, alpha); });
}

void binary_scalar(BinaryOp op, const Tensor& a, double s, ScalarSide side, Tensor& out) {
  TANDEM_DISPATCH_ALL(a.dtype(), "binary_scalar (cuda)",
                      [&] { binary_scalar_typed<scalar_t>(op, a, s, side, out); });
}

void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) {
  TANDEM_CHECK(cond.dtype() == kUInt8, "where (cuda): cond must be uint8, got ",
               dtype_name(cond.dtype()));
  TANDEM_DISPATCH_ALL(a.dtype(), "where (cuda)", [&] { where_typed<scalar_t>(cond, a, b, out); });
}

}  // namespace cuda
}  // namespace tandem
