// The table of differentiable ops for the gradient tests: each case is a
// function of float64 inputs plus how to draw them. test_gradcheck.cpp runs
// every case through gradcheck on the CPU and compares the CUDA backward with
// the CPU one. Elementwise ops come from their records (op_records.h),
// reductions from the X-macro list, so a new op is checked without anyone
// adding it here.
#pragma once

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "op_cases.h"
#include "op_records.h"
#include "slice_records.h"
#include "test_util.h"

namespace tt {

// How an input is drawn.
enum class Draw { Normal, Positive, AwayFromZero, Probability, Variant };

struct GradInput {
  Shape shape;
  Draw draw = Draw::Normal;
  bool requires_grad = true;
  UnaryVariant variant{};  // Draw::Variant: a unary op's record's domain and kinks
};

struct GradCase {
  std::string name;
  std::vector<GradInput> inputs;
  std::function<Tensor(const std::vector<Tensor>&)> fn;
};

// gtest prints a parameter with this (instead of its bytes).
inline void PrintTo(const GradCase& c, std::ostream* os) { *os << c.name; }

inline Tensor draw_input(const GradInput& in, DType dt) {
  switch (in.draw) {
    case Draw::Positive:
      return random_tensor(in.shape, dt, 0.5, 2.0);
    case Draw::AwayFromZero:
      return random_nonzero(in.shape, dt, 0.2, 1.5);
    case Draw::Probability:
      return random_tensor(in.shape, dt, 0.05, 0.95);
    case Draw::Variant:
      return record_input(in.variant, in.shape, dt);
    default:
      return random_tensor(in.shape, dt, -1.5, 1.5);
  }
}

// An int64 index tensor on `like`'s device.
inline Tensor index_on(const std::vector<int64_t>& values, const Shape& shape, const Tensor& like) {
  return tandem::from_vector<int64_t>(values, shape).to(like.device());
}

inline std::vector<GradCase> grad_cases() {
  using namespace tandem;  // NOLINT
  using In = std::vector<Tensor>;
  std::vector<GradCase> cases;
  const GradInput a34{{3, 4}};

  // Unary ops from their records (op_records.h): every variant, its domain
  // cut to [-2, 2] (finite differences of exp(20) say little), away from kinks.
  for (const UnaryRecord& r : unary_records()) {
    if (!r.differentiable) continue;
    for (const UnaryVariant& v : r.variants) {
      UnaryVariant d = v;
      d.lo = std::max(v.lo, -2.0);
      d.hi = std::min(v.hi, 2.0);
      const UnaryRecord* rec = &r;
      std::string name = r.variants.size() == 1 ? r.name : r.variant_name(v);
      cases.push_back({name, {{{3, 5}, Draw::Variant, true, d}}, [rec, v](const In& x) {
                         return rec->call(x[0], v);
                       }});
    }
  }

  // Binary ops, same shape and broadcast both ways.
  for (const BinaryRecord& b : binary_records()) {
    if (!b.differentiable) continue;
    const Draw second = b.domain == BinaryDomain::Divisor ? Draw::AwayFromZero : Draw::Normal;
    const BinaryOp op = b.op;
    cases.push_back({b.name, {a34, {{3, 4}, second}}, [op](const In& x) {
                       return call_named(op, x[0], x[1]);
                     }});
    cases.push_back({std::string(b.name) + "_broadcast",
                     {{{2, 1, 4}}, {{3, 1}, second}},
                     [op](const In& x) { return call_named(op, x[0], x[1]); }});
    cases.push_back({std::string(b.name) + "_scalar", {{{3, 4}, second}}, [op](const In& x) {
                       return call_named_scalar(op, x[0], 0.3);
                     }});
  }
  cases.push_back({"add_alpha", {a34, {{4}}}, [](const In& x) { return add(x[0], x[1], -2.5); }});
  cases.push_back({"sub_alpha", {a34, {{4}}}, [](const In& x) { return sub(x[0], x[1], 0.75); }});
  cases.push_back({"scalar_minus_tensor", {a34}, [](const In& x) { return 2.0 - x[0]; }});
  cases.push_back({"scalar_div_tensor", {{{3, 4}, Draw::AwayFromZero}}, [](const In& x) {
                     return 2.0 / x[0];
                   }});
  cases.push_back(
      {"where", {a34, {{4}}}, [](const In& x) { return where(gt(x[0], 0.0), x[0] * 2.0, x[1]); }});

  // Reductions (argmax/argmin are not differentiable).
  for (const ReduceCase& r : reduce_cases()) {
    if (r.op == ReduceOp::ArgMax || r.op == ReduceOp::ArgMin) continue;
    const ReduceOp op = r.op;
    cases.push_back({std::string(r.name) + "_all", {{{3, 5}}}, [op](const In& x) {
                       return call_reduce_all(op, x[0]);
                     }});
    cases.push_back({std::string(r.name) + "_dim1", {{{3, 5, 2}}}, [op](const In& x) {
                       return call_reduce_dim(op, x[0], 1, false);
                     }});
    cases.push_back({std::string(r.name) + "_dim0_keepdim", {{{4, 3}}}, [op](const In& x) {
                       return call_reduce_dim(op, x[0], 0, true);
                     }});
  }
  cases.push_back({"var_all", {{{3, 5}}}, [](const In& x) { return var(x[0]); }});
  cases.push_back({"var_dim", {{{3, 5}}}, [](const In& x) { return var(x[0], 1, false, true); }});
  cases.push_back({"softmax", {{{3, 5}}}, [](const In& x) { return softmax(x[0], 1); }});
  cases.push_back({"softmax_dim0", {{{4, 3, 2}}}, [](const In& x) { return softmax(x[0], 0); }});
  cases.push_back({"log_softmax", {{{3, 5}}}, [](const In& x) { return log_softmax(x[0], -1); }});
  cases.push_back(
      {"log_softmax_dim1", {{{2, 4, 3}}}, [](const In& x) { return log_softmax(x[0], 1); }});

  // Matrix products.
  cases.push_back({"mm", {{{3, 4}}, {{4, 5}}}, [](const In& x) { return mm(x[0], x[1]); }});
  cases.push_back({"bmm", {{{2, 3, 4}}, {{2, 4, 5}}}, [](const In& x) { return bmm(x[0], x[1]); }});
  cases.push_back({"matmul_dot", {{{4}}, {{4}}}, [](const In& x) { return matmul(x[0], x[1]); }});
  cases.push_back({"matmul_mv", {{{3, 4}}, {{4}}}, [](const In& x) { return matmul(x[0], x[1]); }});
  cases.push_back({"matmul_vm", {{{4}}, {{4, 3}}}, [](const In& x) { return matmul(x[0], x[1]); }});
  cases.push_back(
      {"matmul_nd_2d", {{{2, 3, 4}}, {{4, 5}}}, [](const In& x) { return matmul(x[0], x[1]); }});
  cases.push_back(
      {"matmul_2d_nd", {{{3, 4}}, {{2, 4, 5}}}, [](const In& x) { return matmul(x[0], x[1]); }});
  cases.push_back({"matmul_batched", {{{2, 3, 4}}, {{2, 4, 2}}}, [](const In& x) {
                     return matmul(x[0], x[1]);
                   }});
  cases.push_back({"matmul_4d", {{{2, 3, 2, 4}}, {{2, 3, 4, 3}}}, [](const In& x) {
                     return matmul(x[0], x[1]);
                   }});
  cases.push_back({"matmul_broadcast_1", {{{1, 3, 4}}, {{2, 4, 5}}}, [](const In& x) {
                     return matmul(x[0], x[1]);
                   }});
  cases.push_back(
      {"matmul_nd_1d", {{{2, 3, 4}}, {{4}}}, [](const In& x) { return matmul(x[0], x[1]); }});
  cases.push_back(
      {"matmul_1d_nd", {{{4}}, {{2, 4, 3}}}, [](const In& x) { return matmul(x[0], x[1]); }});
  cases.push_back({"linear", {{{5, 4}}, {{3, 4}}, {{3}}}, [](const In& x) {
                     return linear(x[0], x[1], x[2]);
                   }});
  cases.push_back({"linear_3d_no_bias", {{{2, 5, 4}}, {{3, 4}}}, [](const In& x) {
                     return linear(x[0], x[1]);
                   }});

  // Shape and indexing.
  cases.push_back({"cat_dim0", {{{2, 3}}, {{4, 3}}}, [](const In& x) {
                     return cat({x[0], x[1]});
                   }});
  cases.push_back({"cat_dim1", {{{2, 3}}, {{2, 1}}}, [](const In& x) {
                     return cat({x[0], x[1]}, 1);
                   }});
  cases.push_back({"stack_dim1", {{{2, 3}}, {{2, 3}}}, [](const In& x) {
                     return stack({x[0], x[1]}, 1);
                   }});
  cases.push_back({"index_select_dim1", {{{3, 5}}}, [](const In& x) {
                     return index_select(x[0], 1, index_on({4, 0, 4, 2}, {4}, x[0]));
                   }});
  cases.push_back({"index_select_dim0", {{{4, 2}}}, [](const In& x) {
                     return index_select(x[0], 0, index_on({1, 1, 3}, {3}, x[0]));
                   }});
  cases.push_back({"gather", {{{3, 4}}}, [](const In& x) {
                     return gather(x[0], 1, index_on({0, 3, 3, 1, 2, 2, 0, 0, 1}, {3, 3}, x[0]));
                   }});
  cases.push_back({"scatter_add", {{{3, 4}}, {{3, 2}}}, [](const In& x) {
                     return scatter_add(x[0], 1, index_on({0, 0, 3, 1, 2, 2}, {3, 2}, x[0]), x[1]);
                   }});
  cases.push_back({"index_add", {{{4, 3}}, {{3, 3}}}, [](const In& x) {
                     return index_add(x[0], 0, index_on({2, 0, 2}, {3}, x[0]), x[1]);
                   }});
  cases.push_back({"view", {{{3, 4}}}, [](const In& x) { return x[0].view({2, 6}) * 1.5; }});
  cases.push_back({"flatten", {{{2, 3, 2}}}, [](const In& x) { return x[0].flatten(1); }});
  cases.push_back({"squeeze_unsqueeze", {{{3, 1, 2}}}, [](const In& x) {
                     return x[0].squeeze(1).unsqueeze(0) * x[0].squeeze();
                   }});
  cases.push_back({"slice", {{{5, 2}}}, [](const In& x) { return x[0].slice(0, 1, 4); }});
  cases.push_back({"select", {{{4, 3}}}, [](const In& x) { return x[0].select(0, 2) * x[0][1]; }});
  cases.push_back({"narrow", {{{5, 2}}}, [](const In& x) { return x[0].narrow(0, 2, 2); }});
  // Every slicing record with elements to check (a small enough input; the
  // pieces flattened, weighted apart and joined into one output).
  for (const SliceRecord& rec : slice_records()) {
    size_t out_numel = 0;
    for (const SlicePiece& p : rec.pieces) out_numel += static_cast<size_t>(numel_of(p.shape));
    if (out_numel == 0 || numel_of(rec.input) > 10000) continue;
    cases.push_back({"slicing " + rec.name, {{rec.input}}, [fn = rec.fn](const In& x) {
                       std::vector<Tensor> parts;
                       const std::vector<Tensor> pieces = fn(x[0]);
                       for (size_t i = 0; i < pieces.size(); ++i)
                         parts.push_back(pieces[i].flatten() * static_cast<double>(i + 1));
                       return cat(parts, 0);
                     }});
  }
  cases.push_back({"permute", {{{2, 3, 4}}}, [](const In& x) { return x[0].permute({2, 0, 1}); }});
  cases.push_back({"transpose", {{{2, 3, 4}}}, [](const In& x) { return x[0].transpose(0, 2); }});
  cases.push_back({"t", {{{3, 4}}}, [](const In& x) { return x[0].t(); }});
  cases.push_back({"clone", {{{3, 4}}}, [](const In& x) { return x[0].clone() * x[0]; }});
  cases.push_back({"dropout", {{{4, 6}}}, [](const In& x) {
                     Generator gen(1234);  // the same mask on every call
                     return dropout(x[0], 0.4, true, &gen);
                   }});

  // Losses.
  const std::vector<int64_t> labels{2, 0, 4, 4};
  for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
    const std::string suffix = r == Reduction::Mean  ? "_mean"
                               : r == Reduction::Sum ? "_sum"
                                                     : "_none";
    cases.push_back({"cross_entropy" + suffix, {{{4, 5}}}, [labels, r](const In& x) {
                       return cross_entropy(x[0], index_on(labels, {4}, x[0]), r);
                     }});
    cases.push_back({"nll_loss" + suffix, {{{4, 5}}}, [labels, r](const In& x) {
                       return nll_loss(log_softmax(x[0], 1), index_on(labels, {4}, x[0]), r);
                     }});
    cases.push_back({"mse_loss" + suffix, {{{3, 4}}, {{3, 4}}}, [r](const In& x) {
                       return mse_loss(x[0], x[1], r);
                     }});
    cases.push_back({"binary_cross_entropy" + suffix,
                     {{{3, 4}, Draw::Probability}, {{3, 4}, Draw::Probability}},
                     [r](const In& x) { return binary_cross_entropy(x[0], x[1], r); }});
    cases.push_back({"binary_cross_entropy_with_logits" + suffix,
                     {{{3, 4}}, {{3, 4}, Draw::Probability}},
                     [r](const In& x) { return binary_cross_entropy_with_logits(x[0], x[1], r); }});
  }
  cases.push_back({"cross_entropy_smoothing", {{{4, 5}}}, [labels](const In& x) {
                     return cross_entropy(x[0], index_on(labels, {4}, x[0]), Reduction::Mean, 0.2);
                   }});
  cases.push_back({"cross_entropy_1d", {{{5}}}, [](const In& x) {
                     return cross_entropy(x[0], index_on({3}, {}, x[0]));
                   }});
  cases.push_back({"l2_penalty", {{{3, 4}}, {{2, 3}}}, [](const In& x) {
                     return l2_penalty({x[0], x[1]}, 0.05);
                   }});

  // Convolution, pooling, batch norm (odd sizes, stride 2, padding, dilation,
  // groups, batch 1). Random inputs make max-pool ties improbable.
  cases.push_back({"conv2d", {{{2, 3, 7, 6}}, {{4, 3, 3, 2}}, {{4}}}, [](const In& x) {
                     return conv2d(x[0], x[1], x[2]);
                   }});
  cases.push_back({"conv2d_stride2_pad", {{{1, 2, 7, 8}}, {{3, 2, 3, 3}}, {{3}}}, [](const In& x) {
                     return conv2d(x[0], x[1], x[2], 2, 1);
                   }});
  cases.push_back(
      {"conv2d_dilation_groups_nobias", {{{2, 4, 9, 7}}, {{6, 2, 3, 2}}}, [](const In& x) {
         return conv2d(x[0], x[1], Tensor(), {1, 2}, {2, 1}, {2, 1}, 2);
       }});
  cases.push_back({"conv2d_chw_1x1", {{{3, 5, 4}}, {{2, 3, 1, 1}}, {{2}}}, [](const In& x) {
                     return conv2d(x[0], x[1], x[2]);
                   }});
  cases.push_back(
      {"max_pool2d", {{{2, 3, 7, 6}}}, [](const In& x) { return max_pool2d(x[0], 2); }});
  cases.push_back({"max_pool2d_overlap_pad", {{{1, 2, 7, 7}}}, [](const In& x) {
                     return max_pool2d(x[0], 3, Size2(2), 1);
                   }});
  cases.push_back({"avg_pool2d", {{{2, 3, 7, 6}}}, [](const In& x) {
                     return avg_pool2d(x[0], {3, 2}, Size2(2, 1));
                   }});
  cases.push_back({"avg_pool2d_pad_exclude", {{{1, 2, 5, 5}}}, [](const In& x) {
                     return avg_pool2d(x[0], 3, Size2(2), 1, false);
                   }});
  cases.push_back({"adaptive_avg_pool2d", {{{2, 3, 7, 5}}}, [](const In& x) {
                     return adaptive_avg_pool2d(x[0], {3, 2});
                   }});
  cases.push_back({"adaptive_avg_pool2d_global", {{{2, 3, 4, 5}}}, [](const In& x) {
                     return adaptive_avg_pool2d(x[0], 1);
                   }});
  cases.push_back({"batch_norm_train_2d", {{{3, 4, 3, 2}}, {{4}}, {{4}}}, [](const In& x) {
                     return batch_norm(x[0], Tensor(), Tensor(), x[1], x[2], true);
                   }});
  cases.push_back({"batch_norm_train_1d_no_affine", {{{5, 3}}}, [](const In& x) {
                     return batch_norm(x[0], Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1,
                                       1e-3);
                   }});
  cases.push_back(
      {"batch_norm_eval",
       {{{3, 4, 2, 2}}, {{4}, Draw::Normal, false}, {{4}, Draw::Positive, false}, {{4}}, {{4}}},
       [](const In& x) { return batch_norm(x[0], x[1], x[2], x[3], x[4], false); }});
  return cases;
}

}  // namespace tt
