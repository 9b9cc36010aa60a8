// float32 convolution on the CPU through oneDNN (Debian's libdnnl, the library
// PyTorch's CPU convolutions come from): forward, backward data, backward
// weights, for the contracts of core/backend_decls.inc.
//
// Tensors stay NCHW / OIHW (tandem has one memory layout); each primitive is
// created with format `any` so that oneDNN picks its fast blocked layout
// (nChw16c on AVX-512), and the operands are reordered into it and back at
// each call. Primitives are created once per (pass, shape) and cached, with
// their reorders; the scratchpad is ours (a tandem tensor, so the host caching
// allocator serves it) and makes concurrent calls safe. The algorithm is
// `direct`, never Winograd: its rounding is close to the im2col GEMM's.
//
// oneDNN runs on OpenMP, the same thread team as tandem's loops and OpenBLAS.
#include "cpu/dnnl_conv.h"

#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <utility>

#include "tandem/tensor.h"

namespace tandem {
namespace cpu {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;

enum class Pass : int8_t { Forward, BackwardData, BackwardWeights };

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// oneDNN's right padding makes its output-size formula give exactly p, q:
// p = (h + pl + pr - ((r - 1) * dil + 1)) / stride + 1.
int64_t pad_right(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  return (out - 1) * stride + (k - 1) * dil + 1 - in - pad;
}

struct Descs {
  memory::desc src, weights, dst, bias;  // the user's layouts (NCHW, (g)OIHW, x)
  memory::desc src_any, weights_any, dst_any;
  memory::dims strides, dilates, pad_l, pad_r;
};

Descs make_descs(const ConvShape& s, bool with_bias) {
  Descs d;
  const auto f32 = memory::data_type::f32;
  d.src = memory::desc({s.n, s.c, s.h, s.w}, f32, Tag::nchw);
  d.dst = memory::desc({s.n, s.k, s.p, s.q}, f32, Tag::nchw);
  if (s.groups == 1) {
    d.weights = memory::desc({s.k, s.c, s.r, s.s}, f32, Tag::oihw);
    d.weights_any = memory::desc({s.k, s.c, s.r, s.s}, f32, Tag::any);
  } else {
    const memory::dims wd{s.groups, s.k / s.groups, s.c / s.groups, s.r, s.s};
    d.weights = memory::desc(wd, f32, Tag::goihw);
    d.weights_any = memory::desc(wd, f32, Tag::any);
  }
  if (with_bias) d.bias = memory::desc({s.k}, f32, Tag::x);
  d.src_any = memory::desc({s.n, s.c, s.h, s.w}, f32, Tag::any);
  d.dst_any = memory::desc({s.n, s.k, s.p, s.q}, f32, Tag::any);
  d.strides = {s.stride_h, s.stride_w};
  d.dilates = {s.dil_h - 1, s.dil_w - 1};
  d.pad_l = {s.pad_h, s.pad_w};
  d.pad_r = {pad_right(s.h, s.p, s.r, s.stride_h, s.pad_h, s.dil_h),
             pad_right(s.w, s.q, s.s, s.stride_w, s.pad_w, s.dil_w)};
  return d;
}

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::convolution_forward::primitive_desc forward_pd(const Descs& d, bool with_bias,
                                                     dnnl::prop_kind kind) {
  const auto alg = dnnl::algorithm::convolution_direct;
  dnnl::convolution_forward::desc desc =
      with_bias ? dnnl::convolution_forward::desc(kind, alg, d.src_any, d.weights_any, d.bias,
                                                  d.dst_any, d.strides, d.dilates, d.pad_l, d.pad_r)
                : dnnl::convolution_forward::desc(kind, alg, d.src_any, d.weights_any, d.dst_any,
                                                  d.strides, d.dilates, d.pad_l, d.pad_r);
  return dnnl::convolution_forward::primitive_desc(desc, user_scratchpad(), engine());
}

// One cached primitive with the layouts it wants for its three tensor operands
// (a: the first input, b: the second input, out: the output), in the order of
// the pass's contract: forward (x, weight) -> y; backward data (grad_y,
// weight) -> grad_x; backward weights (x, grad_y) -> grad_weight.
struct Plan {
  dnnl::primitive prim;
  memory::desc a_user, b_user, out_user, bias_user;
  memory::desc a_want, b_want, out_want;
  memory::desc scratch;
  int a_arg, b_arg, out_arg;
};

Plan make_plan(Pass pass, const ConvShape& s, bool with_bias) {
  const Descs d = make_descs(s, with_bias);
  Plan p;
  if (pass == Pass::Forward) {
    auto pd = forward_pd(d, with_bias, dnnl::prop_kind::forward_training);
    p.prim = dnnl::convolution_forward(pd);
    p.a_user = d.src, p.b_user = d.weights, p.out_user = d.dst, p.bias_user = d.bias;
    p.a_want = pd.src_desc(), p.b_want = pd.weights_desc(), p.out_want = pd.dst_desc();
    p.scratch = pd.scratchpad_desc();
    p.a_arg = DNNL_ARG_SRC, p.b_arg = DNNL_ARG_WEIGHTS, p.out_arg = DNNL_ARG_DST;
    return p;
  }
  auto hint = forward_pd(d, false, dnnl::prop_kind::forward_training);
  const auto alg = dnnl::algorithm::convolution_direct;
  if (pass == Pass::BackwardData) {
    dnnl::convolution_backward_data::desc desc(alg, d.src_any, d.weights_any, d.dst_any, d.strides,
                                               d.dilates, d.pad_l, d.pad_r);
    dnnl::convolution_backward_data::primitive_desc pd(desc, user_scratchpad(), engine(), hint);
    p.prim = dnnl::convolution_backward_data(pd);
    p.a_user = d.dst, p.b_user = d.weights, p.out_user = d.src;
    p.a_want = pd.diff_dst_desc(), p.b_want = pd.weights_desc(), p.out_want = pd.diff_src_desc();
    p.scratch = pd.scratchpad_desc();
    p.a_arg = DNNL_ARG_DIFF_DST, p.b_arg = DNNL_ARG_WEIGHTS, p.out_arg = DNNL_ARG_DIFF_SRC;
    return p;
  }
  dnnl::convolution_backward_weights::desc desc(alg, d.src_any, d.weights_any, d.dst_any, d.strides,
                                                d.dilates, d.pad_l, d.pad_r);
  dnnl::convolution_backward_weights::primitive_desc pd(desc, user_scratchpad(), engine(), hint);
  p.prim = dnnl::convolution_backward_weights(pd);
  p.a_user = d.src, p.b_user = d.dst, p.out_user = d.weights;
  p.a_want = pd.src_desc(), p.b_want = pd.diff_dst_desc(), p.out_want = pd.diff_weights_desc();
  p.scratch = pd.scratchpad_desc();
  p.a_arg = DNNL_ARG_SRC, p.b_arg = DNNL_ARG_DIFF_DST, p.out_arg = DNNL_ARG_DIFF_WEIGHTS;
  return p;
}

using Key = std::array<int64_t, ConvShape::kFields + 2>;

const Plan& plan_for(Pass pass, const ConvShape& s, bool with_bias) {
  static std::mutex mu;
  static std::map<Key, std::shared_ptr<const Plan>> cache;
  Key key{};
  const auto fields = s.fields();
  std::copy(fields.begin(), fields.end(), key.begin());
  key[ConvShape::kFields] = static_cast<int64_t>(pass);
  key[ConvShape::kFields + 1] = with_bias;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it == cache.end()) {
    it = cache.emplace(key, std::make_shared<const Plan>(make_plan(pass, s, with_bias))).first;
  }
  return *it->second;
}

Tensor f32_buffer(size_t bytes) {
  return empty({static_cast<int64_t>((bytes + 3) / 4)}, TensorOptions(kFloat32));
}

// A memory of layout `want` holding `user` (data at ptr): the user's own
// memory when the layouts agree, else a reordered copy in `keep`.
memory as_layout(const memory::desc& user_md, const memory::desc& want, void* ptr, dnnl::stream& st,
                 Tensor& keep, bool copy_in) {
  memory user(user_md, engine(), ptr);
  if (want == user_md) return user;
  keep = f32_buffer(want.get_size());
  memory m(want, engine(), keep.data_ptr<float>());
  if (copy_in) dnnl::reorder(user, m).execute(st, user, m);
  return m;
}

// The backward passes both reorder grad_y, back to back (autograd runs the
// data and the weight pass of one convolution one after the other): a
// thread's first reorder of a grad_y is kept for the second pass, which takes
// it out of the cache. It is reused only for the same storage at the same
// version (every in-place write bumps it), offset and layout; the weak
// pointer keeps a freed storage from being taken for a new one at the same
// address.
struct ReorderedGradY {
  std::weak_ptr<Storage> storage;
  uint64_t version = 0;
  int64_t offset = 0;
  memory::desc want;
  Tensor blocked;
};
thread_local ReorderedGradY last_grad_y;

memory grad_y_as(const Tensor& gy, const memory::desc& user_md, const memory::desc& want,
                 dnnl::stream& st, Tensor& keep) {
  const TensorImpl& impl = *gy.impl();
  ReorderedGradY& c = last_grad_y;
  if (want != user_md && c.blocked.defined() && c.storage.lock() == impl.storage &&
      c.version == impl.storage->version() && c.offset == impl.offset && c.want == want) {
    keep = c.blocked;
    c = ReorderedGradY();
    return memory(want, engine(), keep.data_ptr<float>());
  }
  memory m = as_layout(user_md, want, const_cast<float*>(gy.data_ptr<float>()), st, keep, true);
  c = keep.defined()
          ? ReorderedGradY{impl.storage, impl.storage->version(), impl.offset, want, keep}
          : ReorderedGradY();
  return m;
}

void run(Pass pass, const ConvShape& s, const Tensor& a, const Tensor& b, const Tensor& bias,
         Tensor& out) {
  const Plan& p = plan_for(pass, s, bias.defined());
  dnnl::stream st(engine());
  Tensor a_keep, b_keep, out_keep;
  memory am = pass == Pass::BackwardData
                  ? grad_y_as(a, p.a_user, p.a_want, st, a_keep)
                  : as_layout(p.a_user, p.a_want, const_cast<float*>(a.data_ptr<float>()), st,
                              a_keep, true);
  memory bm = pass == Pass::BackwardWeights
                  ? grad_y_as(b, p.b_user, p.b_want, st, b_keep)
                  : as_layout(p.b_user, p.b_want, const_cast<float*>(b.data_ptr<float>()), st,
                              b_keep, true);
  memory om = as_layout(p.out_user, p.out_want, out.data_ptr<float>(), st, out_keep, false);
  Tensor scratch = f32_buffer(p.scratch.get_size());
  std::unordered_map<int, memory> args{
      {p.a_arg, am},
      {p.b_arg, bm},
      {p.out_arg, om},
      {DNNL_ARG_SCRATCHPAD, memory(p.scratch, engine(), scratch.data_ptr<float>())}};
  if (bias.defined()) {
    args.emplace(DNNL_ARG_BIAS,
                 memory(p.bias_user, engine(), const_cast<float*>(bias.data_ptr<float>())));
  }
  p.prim.execute(st, args);
  if (out_keep.defined()) {
    memory user(p.out_user, engine(), out.data_ptr<float>());
    dnnl::reorder(om, user).execute(st, om, user);
  }
  st.wait();
}

template <typename F>
bool guarded(const char* what, F&& f) {
  try {
    f();
  } catch (const dnnl::error& e) {
    TANDEM_FAIL(what, ": oneDNN failed: ", e.what());
  }
  return true;
}

bool usable(const ConvShape& s, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    if (t->defined() && t->dtype() != kFloat32) return false;
  }
  // oneDNN wants right paddings >= 0 (an output that does not reach the last
  // input rows gives a negative one); those rare shapes take the GEMM path.
  return pad_right(s.h, s.p, s.r, s.stride_h, s.pad_h, s.dil_h) >= 0 &&
         pad_right(s.w, s.q, s.s, s.stride_w, s.pad_w, s.dil_w) >= 0 && s.n > 0 && s.p > 0 &&
         s.q > 0;
}

}  // namespace

bool dnnl_conv_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("TANDEM_CPU_ONEDNN");
    return v == nullptr || std::string(v) != "0";
  }();
  return enabled;
}

bool dnnl_conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                         const ConvShape& s, Tensor& y) {
  if (!dnnl_conv_enabled() || !usable(s, {&x, &weight, &bias, &y})) return false;
  return guarded("conv2d", [&] { run(Pass::Forward, s, x, weight, bias, y); });
}

bool dnnl_conv2d_backward_input(const Tensor& grad_y, const Tensor& weight, const ConvShape& s,
                                Tensor& grad_x) {
  if (!dnnl_conv_enabled() || !usable(s, {&grad_y, &weight, &grad_x})) return false;
  return guarded("conv2d backward",
                 [&] { run(Pass::BackwardData, s, grad_y, weight, Tensor(), grad_x); });
}

bool dnnl_conv2d_backward_weight(const Tensor& x, const Tensor& grad_y, const ConvShape& s,
                                 Tensor& grad_weight) {
  if (!dnnl_conv_enabled() || !usable(s, {&x, &grad_y, &grad_weight})) return false;
  return guarded("conv2d backward",
                 [&] { run(Pass::BackwardWeights, s, x, grad_y, Tensor(), grad_weight); });
}

}  // namespace cpu
}  // namespace tandem
