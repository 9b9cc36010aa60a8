// Elementwise ops on the CPU against naive float64 references: every op of the
// X-macro lists in op_list.h (unary, parameterised unary, arithmetic binary,
// comparisons), scalar forms, broadcasting, operators, in-place forms and where.
// Unary ops come from their records (op_records.h): a new op is tested here
// once it has one, and EveryUnaryOpHasOneRecord fails until it does.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cpu/vec_math.h"
#include "op_cases.h"
#include "op_records.h"
#include "test_util.h"

namespace {

using tandem::BinaryOp;
using tandem::DType;
using tandem::ScalarSide;
using tandem::Shape;
using tandem::Tensor;
using tandem::UnaryOp;
using tt::expect_close;
using tt::Ref;

// Shapes every elementwise op runs on: 0-d, size 1, odd sizes, empty, large.
const std::vector<Shape>& elementwise_shapes() {
  static const std::vector<Shape> shapes = {{},        {1}, {7},       {33},
                                            {3, 7, 5}, {0}, {2, 0, 3}, {1000003}};
  return shapes;
}
// The same without the 1e6-element case, for dtypes other than float32 and
// int64 (the kernels are dtype templates; this keeps the suite fast).
std::vector<Shape> shapes_for(DType dt) {
  if (dt == tandem::kFloat32 || dt == tandem::kInt64) return elementwise_shapes();
  auto v = elementwise_shapes();
  v.pop_back();
  return v;
}

// ---- Unary ----------------------------------------------------------------------

using tt::unary_records;
using tt::UnaryRecord;

// Every op of the X-macro lists has exactly one record (tests/op_records.h),
// named as op_name() names it.
TEST(UnaryRecords, EveryUnaryOpHasOneRecord) {
  std::vector<UnaryOp> ops;
#define TANDEM_TEST_OP_(name, Enum) ops.push_back(UnaryOp::Enum);
  TANDEM_UNARY_OPS(TANDEM_TEST_OP_)
  TANDEM_PARAM_UNARY_OPS(TANDEM_TEST_OP_)
#undef TANDEM_TEST_OP_
  EXPECT_EQ(unary_records().size(), ops.size());
  for (UnaryOp op : ops) {
    int found = 0;
    for (const UnaryRecord& r : unary_records()) {
      if (r.op != op) continue;
      ++found;
      EXPECT_STREQ(r.name, tandem::op_name(op));
      EXPECT_FALSE(r.variants.empty()) << r.name;
    }
    EXPECT_EQ(found, 1) << tandem::op_name(op);
  }
}

Ref ref_unary_tensor(const UnaryRecord& r, const Tensor& x, double p0 = 0.0, double p1 = 0.0) {
  Ref out{x.sizes(), tt::to_doubles(x)};
  for (auto& v : out.values) v = r.ref(v, p0, p1);
  return out;
}

class UnaryOpTest : public ::testing::TestWithParam<std::tuple<size_t, DType>> {};

// The named function and unary(op, ...) against the record's float64
// reference, on every variant (domain, parameters) and shape.
TEST_P(UnaryOpTest, MatchesReference) {
  const UnaryRecord& r = unary_records()[std::get<0>(GetParam())];
  const DType dt = std::get<1>(GetParam());
  for (const tt::UnaryVariant& v : r.variants) {
    SCOPED_TRACE(r.variant_name(v));
    for (const Shape& shape : shapes_for(dt)) {
      SCOPED_TRACE("shape " + tt::str(shape));
      Tensor x = tt::record_input(v, shape, dt);
      const auto xv = tt::to_doubles(x);
      const Ref ref = ref_unary_tensor(r, x, v.p0, v.p1);
      Tensor y = r.call(x, v);
      EXPECT_EQ(y.dtype(), dt);
      expect_close(y, ref, tt::reference_tol(r, dt));
      expect_close(tandem::unary(r.op, x, v.p0, v.p1), ref, tt::reference_tol(r, dt));
      EXPECT_EQ(tt::to_doubles(x), xv) << "the input must not change";
      if (x.numel() > 0) {
        EXPECT_NE(y.raw_data(), x.raw_data());
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllUnaryOps, UnaryOpTest,
                         ::testing::Combine(::testing::Range<size_t>(0, unary_records().size()),
                                            ::testing::Values(tandem::kFloat32, tandem::kFloat64)),
                         [](const ::testing::TestParamInfo<std::tuple<size_t, DType>>& param_info) {
                           return std::string(unary_records()[std::get<0>(param_info.param)].name) +
                                  "_" + tandem::dtype_name(std::get<1>(param_info.param));
                         });

TEST(UnaryMethodTest, MethodFormsMatchFreeFunctions) {
  Tensor x = tt::random_tensor({4, 9}, tandem::kFloat64, 0.1, 3.0);
  tt::expect_equal(x.relu(), tandem::relu(x));
  tt::expect_equal(x.sigmoid(), tandem::sigmoid(x));
  tt::expect_equal(x.tanh(), tandem::tanh(x));
  tt::expect_equal(x.exp(), tandem::exp(x));
  tt::expect_equal(x.log(), tandem::log(x));
  tt::expect_equal(x.sqrt(), tandem::sqrt(x));
  tt::expect_equal(x.square(), tandem::square(x));
  tt::expect_equal(x.abs(), tandem::abs(x));
  tt::expect_equal(x.neg(), tandem::neg(x));
  tt::expect_equal(x.pow(1.5), tandem::pow(x, 1.5));
  tt::expect_equal(x.clamp(0.5, 2.0), tandem::clamp(x, 0.5, 2.0));
}

// ---- Binary ---------------------------------------------------------------------------

using tt::binary_records;
using tt::BinaryRecord;
using tt::call_named;
using tt::call_named_scalar;

TEST(BinaryRecords, EveryBinaryOpHasOneRecord) {
  std::vector<BinaryOp> ops;
#define TANDEM_TEST_OP_(name, Enum) ops.push_back(BinaryOp::Enum);
  TANDEM_BINARY_OPS(TANDEM_TEST_OP_)
#undef TANDEM_TEST_OP_
  EXPECT_EQ(binary_records().size(), ops.size());
  for (size_t i = 0; i < ops.size() && i < binary_records().size(); ++i) {
    // In list order: the suites index the records as the X-macro does.
    EXPECT_EQ(binary_records()[i].op, ops[i]);
    EXPECT_STREQ(binary_records()[i].name, tandem::op_name(ops[i]));
    EXPECT_EQ(binary_records()[i].differentiable, !tandem::is_comparison(ops[i]));
  }
}

Ref ref_binary_tensor(const BinaryRecord& rec, const Tensor& a, const Tensor& b, double alpha) {
  Shape out;
  EXPECT_TRUE(tt::broadcast_ref(a.sizes(), b.sizes(), &out));
  const auto av = tt::to_doubles(a), bv = tt::to_doubles(b);
  const bool integral = !tandem::is_floating(a.dtype());
  Ref r{out, std::vector<double>(static_cast<size_t>(tt::numel_of(out)))};
  const bool a_full = a.sizes() == out, b_full = b.sizes() == out;
  for (int64_t i = 0; i < tt::numel_of(out); ++i) {
    if (a_full && (b_full || bv.size() == 1)) {  // fast path for the large cases
      r.values[i] = rec.ref(av[i], bv[b_full ? i : 0], alpha, integral);
      continue;
    }
    const auto idx = tt::unravel(i, out);
    r.values[i] = rec.ref(av[tt::broadcast_index(idx, a.sizes())],
                          bv[tt::broadcast_index(idx, b.sizes())], alpha, integral);
  }
  return r;
}

Ref ref_binary_tensor(BinaryOp op, const Tensor& a, const Tensor& b, double alpha) {
  return ref_binary_tensor(binary_records()[static_cast<size_t>(op)], a, b, alpha);
}

DType binary_result_dtype(BinaryOp op, DType in) {
  return tandem::is_comparison(op) ? tandem::kUInt8 : in;
}

const std::vector<std::pair<Shape, Shape>>& binary_shape_pairs(DType dt) {
  static const std::vector<std::pair<Shape, Shape>> small = {
      {{7}, {7}},       {{}, {}},      {{1}, {1}},          {{3, 7, 5}, {3, 7, 5}},
      {{33}, {1}},      {{1}, {33}},   {{3, 1, 5}, {4, 5}}, {{4, 5}, {3, 1, 5}},
      {{2, 1}, {1, 3}}, {{}, {2, 3}},  {{2, 3}, {}},        {{5}, {3, 5}},
      {{0}, {0}},       {{0, 3}, {3}}, {{2, 0, 3}, {1}}};
  static std::vector<std::pair<Shape, Shape>> with_large = [] {
    auto v = small;
    v.push_back({{1000003}, {1000003}});
    v.push_back({{1000003}, {}});
    return v;
  }();
  // The 1e6-element cases run for one floating and one integer dtype to keep
  // the suite fast; the kernels are dtype templates.
  return (dt == tandem::kFloat32 || dt == tandem::kInt64) ? with_large : small;
}

class BinaryOpTest : public ::testing::TestWithParam<std::tuple<size_t, DType>> {};

TEST_P(BinaryOpTest, MatchesReferenceWithBroadcasting) {
  const BinaryRecord& c = binary_records()[std::get<0>(GetParam())];
  const DType dt = std::get<1>(GetParam());
  EXPECT_EQ(tandem::is_comparison(c.op), c.op >= BinaryOp::Eq);
  const tt::Tol tol = tt::default_tol(dt);
  for (const auto& shapes : binary_shape_pairs(dt)) {
    SCOPED_TRACE("shapes " + tt::str(shapes.first) + " and " + tt::str(shapes.second));
    const tt::BinaryOperands in = tt::binary_operands(c, dt, shapes.first, shapes.second);
    const Ref ref = ref_binary_tensor(c, in.a, in.b, 1.0);
    Tensor y = call_named(c.op, in.a, in.b);
    EXPECT_EQ(y.dtype(), binary_result_dtype(c.op, dt));
    expect_close(y, ref, tol);
    Tensor g = tandem::binary(c.op, in.a, in.b);
    EXPECT_EQ(g.dtype(), binary_result_dtype(c.op, dt));
    expect_close(g, ref, tol);
    Shape bs;
    ASSERT_TRUE(tt::broadcast_ref(shapes.first, shapes.second, &bs));
    EXPECT_EQ(tandem::broadcast_shapes(shapes.first, shapes.second, c.name), bs);
  }
}

TEST_P(BinaryOpTest, ScalarOnEitherSide) {
  const BinaryRecord& c = binary_records()[std::get<0>(GetParam())];
  const DType dt = std::get<1>(GetParam());
  const bool integral = !tandem::is_floating(dt);
  for (const Shape& shape : shapes_for(dt)) {
    SCOPED_TRACE("shape " + tt::str(shape));
    const tt::ScalarOperands in = tt::scalar_operands(c, dt, shape);
    const Tensor& a = in.a;
    const double s_right = in.right, s_left = in.left;
    const auto av = tt::to_doubles(a);
    Ref right{shape, av}, left{shape, av};
    for (size_t i = 0; i < av.size(); ++i) {
      right.values[i] = c.ref(av[i], s_right, 1.0, integral);
      left.values[i] = c.ref(s_left, av[i], 1.0, integral);
    }
    const tt::Tol tol = tt::default_tol(dt);
    const DType out_dt = binary_result_dtype(c.op, dt);
    Tensor r1 = tandem::binary_scalar(c.op, a, s_right);
    EXPECT_EQ(r1.dtype(), out_dt);
    expect_close(r1, right, tol);
    expect_close(tandem::binary_scalar(c.op, a, s_right, ScalarSide::Right), right, tol);
    expect_close(call_named_scalar(c.op, a, s_right), right, tol);
    Tensor l1 = tandem::binary_scalar(c.op, a, s_left, ScalarSide::Left);
    EXPECT_EQ(l1.dtype(), out_dt);
    expect_close(l1, left, tol);
  }
}

INSTANTIATE_TEST_SUITE_P(AllBinaryOps, BinaryOpTest,
                         ::testing::Combine(::testing::Range<size_t>(0, binary_records().size()),
                                            ::testing::Values(tandem::kFloat32, tandem::kFloat64,
                                                              tandem::kInt32, tandem::kInt64,
                                                              tandem::kUInt8)),
                         [](const ::testing::TestParamInfo<std::tuple<size_t, DType>>& param_info) {
                           return std::string(
                                      binary_records()[std::get<0>(param_info.param)].name) +
                                  "_" + tandem::dtype_name(std::get<1>(param_info.param));
                         });

// alpha applies to add and sub only: a + alpha * b, a - alpha * b.
TEST(BinaryTest, AlphaScalesTheSecondOperand) {
  for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub}) {
    for (DType dt : tt::all_dtypes()) {
      SCOPED_TRACE(std::string(tandem::op_name(op)) + " " + tandem::dtype_name(dt));
      const double alpha = tandem::is_floating(dt) ? -0.5 : 2.0;
      for (const auto& shapes :
           std::vector<std::pair<Shape, Shape>>{{{7}, {7}}, {{3, 1, 5}, {4, 5}}}) {
        const BinaryRecord& rec = binary_records()[static_cast<size_t>(op)];
        const tt::BinaryOperands in = tt::binary_operands(rec, dt, shapes.first, shapes.second);
        const Ref ref = ref_binary_tensor(rec, in.a, in.b, alpha);
        expect_close(tandem::binary(op, in.a, in.b, alpha), ref, tt::default_tol(dt));
        expect_close(
            op == BinaryOp::Add ? tandem::add(in.a, in.b, alpha) : tandem::sub(in.a, in.b, alpha),
            ref, tt::default_tol(dt));
      }
    }
  }
}

TEST(BinaryTest, ScalarIsConvertedToTheTensorDtype) {
  // 0.1 is rounded to float32 before it is compared with float32 elements.
  Tensor x = tandem::full({3}, 0.1, tandem::kFloat32);
  EXPECT_EQ(tt::to_doubles(tandem::eq(x, 0.1)), (std::vector<double>{1, 1, 1}));
  Tensor i = tandem::from_vector(std::vector<int64_t>{1, 2, 3});
  Tensor r = tandem::add(i, 2.0);
  EXPECT_EQ(r.dtype(), tandem::kInt64);
  EXPECT_EQ(tandem::to_vector<int64_t>(r), (std::vector<int64_t>{3, 4, 5}));
}

TEST(BinaryTest, FractionalScalarIsConvertedForIntegerTensors) {
  // "the scalar is converted to the tensor's dtype": 2.5 becomes 2 for int64.
  Tensor i = tandem::from_vector(std::vector<int64_t>{1, 2, 3});
  EXPECT_EQ(tandem::to_vector<int64_t>(tandem::add(i, 2.5)), (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(tandem::to_vector<int64_t>(tandem::mul(i, 2.9)), (std::vector<int64_t>{2, 4, 6}));
}

TEST(BinaryTest, OperandsMayAliasTheOutput) {
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    Tensor x = tt::random_tensor({7, 33}, dt, -2, 2);
    Ref sq{x.sizes(), tt::to_doubles(x)};
    for (auto& v : sq.values) v *= v;
    expect_close(tandem::mul(x, x), sq, tt::default_tol(dt));
    x.mul_(x);
    expect_close(x, sq, tt::default_tol(dt));
    Ref tr = sq;
    for (auto& v : tr.values) v *= 3.0;
    x.add_(x, 2.0);
    expect_close(x, tr, tt::default_tol(dt));
  }
}

TEST(BinaryTest, BroadcastShapes) {
  EXPECT_EQ(tandem::broadcast_shapes({3, 1, 5}, {4, 5}, "t"), (Shape{3, 4, 5}));
  EXPECT_EQ(tandem::broadcast_shapes({}, {2, 3}, "t"), (Shape{2, 3}));
  EXPECT_EQ(tandem::broadcast_shapes({2, 1}, {1, 3}, "t"), (Shape{2, 3}));
  EXPECT_EQ(tandem::broadcast_shapes({0, 1}, {1, 4}, "t"), (Shape{0, 4}));
  EXPECT_EQ(tandem::broadcast_shapes({1}, {0}, "t"), (Shape{0}));
}

TEST(BinaryTest, LargeValuesAndSpecials) {
  // Inf and NaN propagate as in IEEE arithmetic.
  const double inf = std::numeric_limits<double>::infinity();
  Tensor a = tandem::from_vector(std::vector<double>{inf, -inf, 1.0, 0.0});
  Tensor b = tandem::from_vector(std::vector<double>{1.0, 1.0, 0.0, 0.0});
  const auto q = tt::to_doubles(tandem::div(a, b));
  EXPECT_EQ(q[0], inf);
  EXPECT_EQ(q[1], -inf);
  EXPECT_EQ(q[2], inf);
  EXPECT_TRUE(std::isnan(q[3]));
}

// ---- Ops on views with a storage offset ------------------------------------------------

TEST(OffsetViewTest, OpsReadViewsAtTheirOffset) {
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    const tt::Tol tol = tt::default_tol(dt);
    Tensor base = tt::random_tensor({9, 8}, dt, 0.1, 2);
    Tensor a = base.slice(0, 3, 7);  // rows 3..6: offset 24 elements
    Tensor b = base.slice(0, 1, 5);
    Tensor ac = a.clone(), bc = b.clone();
    tt::expect_equal(tandem::sqrt(a), tandem::sqrt(ac));
    tt::expect_equal(tandem::add(a, b), tandem::add(ac, bc));
    tt::expect_equal(tandem::mul(a, base[0]), tandem::mul(ac, base[0].clone()));
    tt::expect_equal(tandem::where(tandem::gt(a, 1.0), a, b),
                     tandem::where(tandem::gt(ac, 1.0), ac, bc));
    expect_close(tandem::sum(a, 0), tandem::sum(ac, 0), tol);
    expect_close(tandem::sum(a), tandem::sum(ac), tol);
    tt::expect_equal(tandem::argmax(a, 1), tandem::argmax(ac, 1));
    expect_close(tandem::softmax(a, 1), tandem::softmax(ac, 1), tol);
    expect_close(tandem::var(a, int64_t{0}), tandem::var(ac, int64_t{0}), tol);
    expect_close(tandem::matmul(a, b.t()), tandem::matmul(ac, bc.t()), tol);
    expect_close(tandem::mm(a.slice(0, 1, 3), base.slice(0, 0, 8)),
                 tandem::mm(ac.slice(0, 1, 3).clone(), base.slice(0, 0, 8).clone()), tol);
    Tensor idx = tandem::from_vector(std::vector<int64_t>{3, 0, 3});
    tt::expect_equal(tandem::index_select(a, 0, idx), tandem::index_select(ac, 0, idx));
    tt::expect_equal(tandem::index_select(a, 1, idx), tandem::index_select(ac, 1, idx));
    Tensor gidx = tandem::zeros({4, 2}, tandem::kInt64).add_(5.0);
    tt::expect_equal(tandem::gather(a, 1, gidx), tandem::gather(ac, 1, gidx));
    tt::expect_equal(tandem::cat({a, b}, 1), tandem::cat({ac, bc}, 1));
    tt::expect_equal(tandem::stack({a, b}, 2), tandem::stack({ac, bc}, 2));
    tt::expect_equal(a.permute({1, 0}), ac.permute({1, 0}));
    tt::expect_equal(a.to(tandem::kInt32), ac.to(tandem::kInt32));
    Tensor lab = tandem::from_vector(std::vector<int64_t>{0, 2, 1, 3, 2}).slice(0, 2, 5);
    tt::expect_equal(tandem::one_hot(lab, 4), tandem::one_hot(lab.clone(), 4));
  }
}

// ---- Extreme values ------------------------------------------------------------------------

TEST(UnaryTest, ExtremeInputsStayWellDefined) {
  const double inf = std::numeric_limits<double>::infinity();
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    Tensor big = tt::make_tensor({-1e4, -100.0, 100.0, 1e4}, {4}, dt);
    EXPECT_EQ(tt::to_doubles(tandem::sigmoid(big))[0], 0.0);
    EXPECT_EQ(tt::to_doubles(tandem::sigmoid(big))[3], 1.0);
    for (double v : tt::to_doubles(tandem::sigmoid(big))) EXPECT_TRUE(std::isfinite(v));
    EXPECT_EQ(tt::to_doubles(tandem::tanh(big)), (std::vector<double>{-1.0, -1.0, 1.0, 1.0}));
    EXPECT_EQ(tt::to_doubles(tandem::exp(big))[0], 0.0);
    EXPECT_EQ(tt::to_doubles(tandem::exp(big))[3], inf);
    Tensor special = tt::make_tensor({0.0, -1.0, inf}, {3}, dt);
    const auto l = tt::to_doubles(tandem::log(special));
    EXPECT_EQ(l[0], -inf);
    EXPECT_TRUE(std::isnan(l[1]));
    EXPECT_EQ(l[2], inf);
    const auto r = tt::to_doubles(tandem::rsqrt(special));
    EXPECT_EQ(r[0], inf);
    EXPECT_TRUE(std::isnan(r[1]));
    EXPECT_EQ(r[2], 0.0);
    EXPECT_TRUE(std::isnan(tt::to_doubles(tandem::sqrt(special))[1]));
    EXPECT_EQ(tt::to_doubles(tandem::relu(tt::make_tensor({-inf, inf}, {2}, dt))),
              (std::vector<double>{0.0, inf}));
  }
}

// ---- SIMD transcendentals: a float32 sweep per instruction set --------------------------

// Distance from y to the float64 reference in units in the last place of float32
// at the reference (2^-149 in the denormal range). Infinite references must be
// matched exactly (also those beyond FLT_MAX), NaN by NaN.
double ulp_error(float y, double ref) {
  if (std::isinf(static_cast<float>(ref))) ref = static_cast<float>(ref);  // overflows in float32
  if (std::isnan(ref)) return std::isnan(y) ? 0.0 : INFINITY;
  if (std::isinf(ref) || std::isnan(y)) return static_cast<double>(y) == ref ? 0.0 : INFINITY;
  const double a = std::fabs(ref);
  const int e = a < 0x1p-126 ? -126 : std::ilogb(a);
  const double ulp = std::ldexp(1.0, std::max(e, -126) - 23);
  return std::fabs(static_cast<double>(y) - ref) / ulp;
}

// Every 2039th float32 bit pattern (both signs, denormals, huge values,
// infinities and NaNs among them) plus the edges: +-0, the smallest denormal
// and normal, FLT_MAX, +-inf, NaN, and exp's overflow/underflow thresholds.
std::vector<float> sweep_inputs() {
  std::vector<float> v;
  for (uint64_t bits = 0; bits <= 0xffffffffu; bits += 2039) {
    const auto b = static_cast<uint32_t>(bits);
    float f;
    std::memcpy(&f, &b, sizeof f);
    v.push_back(f);
  }
  const float inf = std::numeric_limits<float>::infinity();
  for (float f : {0.0f, std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::min(),
                  std::numeric_limits<float>::max(), inf, std::numeric_limits<float>::quiet_NaN(),
                  88.72f, 88.73f, 103.97f, 104.0f, 1e-3f, 0.5f, 1.0f, 9.0f, 10.0f}) {
    v.push_back(f);
    v.push_back(-f);
  }
  for (float f = -110.0f; f <= 110.0f; f += 0.0137f) v.push_back(f);  // the busy range
  return v;
}

TEST(VecMathTest, Float32SweepWithinStatedUlpsOnEveryInstructionSet) {
  using tandem::cpu::vec::Isa;
  // Bounds in float32 ulps against float64 std:: (measured worst, SLEEF on
  // SSE2/AVX2/AVX-512 and glibc on the scalar path: exp 0.96, log 0.79, tanh
  // 1.0 (glibc's tanhf 2.06), erf 1.09 (SLEEF's SSE2 build 1.82, near
  // FLT_MIN), sigmoid 2.04: exp's error plus the roundings of 1 + z and the
  // division).
  const std::vector<std::pair<UnaryOp, double>> bounds = {{UnaryOp::Exp, 1.01},
                                                          {UnaryOp::Log, 1.01},
                                                          {UnaryOp::Tanh, 2.5},
                                                          {UnaryOp::Erf, 2.0},
                                                          {UnaryOp::Sigmoid, 2.5}};
  const std::vector<float> x = sweep_inputs();
  const Isa saved = tandem::cpu::vec::isa();
  for (Isa level : {Isa::Scalar, Isa::Sse2, Isa::Avx2, Isa::Avx512}) {
    if (level > tandem::cpu::vec::best_isa()) continue;
    tandem::cpu::vec::set_isa(level);
    SCOPED_TRACE(tandem::cpu::vec::isa_name(level));
    for (const auto& [op, bound] : bounds) {
      SCOPED_TRACE(tandem::op_name(op));
      std::vector<float> y(x.size(), -7.0f);
      // Odd length and offset: the vector tail runs too.
      tandem::cpu::vec::unary(op, x.data() + 1, y.data() + 1, static_cast<int64_t>(x.size()) - 1);
      double worst = 0.0;
      size_t worst_at = 1;
      for (size_t i = 1; i < x.size(); ++i) {
        const double err =
            ulp_error(y[i], tt::find_unary_record(op)->ref(static_cast<double>(x[i]), 0.0, 0.0));
        if (err > worst) {
          worst = err;
          worst_at = i;
        }
      }
      EXPECT_LE(worst, bound) << "at x = " << x[worst_at] << " (got " << y[worst_at] << ")";
      EXPECT_EQ(y[0], -7.0f);  // nothing written before the start
    }
  }
  tandem::cpu::vec::set_isa(saved);
  // Through the op, threaded: the same results as the direct call.
  Tensor t = tt::make_tensor(std::vector<double>(x.begin(), x.end()),
                             {static_cast<int64_t>(x.size())}, tandem::kFloat32);
  for (const auto& [op, bound] : bounds) {
    std::vector<float> y(x.size());
    tandem::cpu::vec::unary(op, x.data(), y.data(), static_cast<int64_t>(x.size()));
    const auto got = tt::to_doubles(tandem::unary(op, t));
    for (size_t i = 0; i < x.size(); ++i) {
      if (std::isnan(y[i])) {
        ASSERT_TRUE(std::isnan(got[i])) << tandem::op_name(op) << " at x = " << x[i];
      } else {
        ASSERT_EQ(got[i], static_cast<double>(y[i])) << tandem::op_name(op) << " at x = " << x[i];
      }
    }
  }
}

// ---- Operators ------------------------------------------------------------------------

TEST(OperatorTest, OperatorsMatchReferences) {
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    const tt::Tol tol = tt::default_tol(dt);
    Tensor a = tt::random_tensor({3, 1, 5}, dt, -2, 2);
    Tensor b = tt::random_nonzero({4, 5}, dt, 0.25, 2.0);
    expect_close(a + b, ref_binary_tensor(BinaryOp::Add, a, b, 1.0), tol);
    expect_close(a - b, ref_binary_tensor(BinaryOp::Sub, a, b, 1.0), tol);
    expect_close(a * b, ref_binary_tensor(BinaryOp::Mul, a, b, 1.0), tol);
    expect_close(a / b, ref_binary_tensor(BinaryOp::Div, a, b, 1.0), tol);
    const auto bv = tt::to_doubles(b);
    auto map = [&](auto f) {
      Ref r{b.sizes(), bv};
      for (auto& v : r.values) v = f(v);
      return r;
    };
    expect_close(b + 1.5, map([](double v) { return v + 1.5; }), tol);
    expect_close(b - 1.5, map([](double v) { return v - 1.5; }), tol);
    expect_close(b * 1.5, map([](double v) { return v * 1.5; }), tol);
    expect_close(b / 1.5, map([](double v) { return v / 1.5; }), tol);
    expect_close(1.5 + b, map([](double v) { return 1.5 + v; }), tol);
    expect_close(1.5 - b, map([](double v) { return 1.5 - v; }), tol);
    expect_close(1.5 * b, map([](double v) { return 1.5 * v; }), tol);
    expect_close(1.5 / b, map([](double v) { return 1.5 / v; }), tol);
    expect_close(-b, map([](double v) { return -v; }), tol);
  }
  Tensor i = tt::random_tensor({6}, tandem::kInt32, -20, 20);
  Tensor j = tt::random_tensor({6}, tandem::kInt32, -20, 20);
  expect_close(i + j, ref_binary_tensor(BinaryOp::Add, i, j, 1.0), tt::exact());
  expect_close(i * j, ref_binary_tensor(BinaryOp::Mul, i, j, 1.0), tt::exact());
  expect_close(-i, ref_binary_tensor(BinaryOp::Mul, i, tandem::full({1}, -1, tandem::kInt32), 1.0),
               tt::exact());
}

TEST(OperatorTest, CompoundAssignmentIsInPlace) {
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    const tt::Tol tol = tt::default_tol(dt);
    Tensor x = tt::random_tensor({4, 5}, dt, -2, 2);
    Tensor y = tt::random_nonzero({5}, dt, 0.5, 2.0);
    void* p = x.raw_data();
    Ref ref{x.sizes(), tt::to_doubles(x)};
    const auto yv = tt::to_doubles(y);
    x += y;
    for (size_t k = 0; k < 20; ++k) ref.values[k] += yv[k % 5];
    x -= 0.5;
    for (auto& v : ref.values) v -= 0.5;
    x *= y;
    for (size_t k = 0; k < 20; ++k) ref.values[k] *= yv[k % 5];
    x /= 4.0;
    for (auto& v : ref.values) v /= 4.0;
    x += 1.0;
    for (auto& v : ref.values) v += 1.0;
    x -= y;
    for (size_t k = 0; k < 20; ++k) ref.values[k] -= yv[k % 5];
    x *= 3.0;
    for (auto& v : ref.values) v *= 3.0;
    x /= y;
    for (size_t k = 0; k < 20; ++k) ref.values[k] /= yv[k % 5];
    EXPECT_EQ(x.raw_data(), p);
    // Several float32 roundings in sequence.
    expect_close(x, ref, tt::scaled(tol, 4.0));
    Tensor& r = (x += y);
    EXPECT_EQ(&r, &x);
  }
}

// ---- In-place forms --------------------------------------------------------------------

class InPlaceTest : public ::testing::TestWithParam<DType> {};

TEST_P(InPlaceTest, TensorOperandsWithBroadcasting) {
  const DType dt = GetParam();
  const tt::Tol tol = tt::default_tol(dt);
  for (const Shape& other_shape : std::vector<Shape>{{3, 4, 5}, {4, 5}, {1, 5}, {1}, {}}) {
    SCOPED_TRACE("other " + tt::str(other_shape));
    const Shape shape{3, 4, 5};
    Tensor o = tt::random_nonzero(other_shape, dt, 0.5, 2.0);
    auto check = [&](BinaryOp op, double alpha, auto apply) {
      Tensor x = tt::random_tensor(shape, dt, -2, 2);
      const Ref ref = ref_binary_tensor(op, x, o, alpha);
      void* p = x.raw_data();
      Tensor& r = apply(x);
      EXPECT_EQ(&r, &x);
      EXPECT_EQ(x.raw_data(), p);
      EXPECT_EQ(x.sizes(), shape);
      expect_close(x, ref, tol);
    };
    check(BinaryOp::Add, 1.0, [&](Tensor& x) -> Tensor& { return x.add_(o); });
    check(BinaryOp::Add, -2.5, [&](Tensor& x) -> Tensor& { return x.add_(o, -2.5); });
    check(BinaryOp::Sub, 1.0, [&](Tensor& x) -> Tensor& { return x.sub_(o); });
    check(BinaryOp::Sub, 0.5, [&](Tensor& x) -> Tensor& { return x.sub_(o, 0.5); });
    check(BinaryOp::Mul, 1.0, [&](Tensor& x) -> Tensor& { return x.mul_(o); });
    check(BinaryOp::Div, 1.0, [&](Tensor& x) -> Tensor& { return x.div_(o); });
  }
}

TEST_P(InPlaceTest, ScalarOperandsAndUnary) {
  const DType dt = GetParam();
  const tt::Tol tol = tt::default_tol(dt);
  auto check = [&](double lo, double hi, auto f, auto apply) {
    Tensor x = tt::random_tensor({7, 33}, dt, lo, hi);
    Ref ref{x.sizes(), tt::to_doubles(x)};
    for (auto& v : ref.values) v = f(v);
    void* p = x.raw_data();
    Tensor& r = apply(x);
    EXPECT_EQ(&r, &x);
    EXPECT_EQ(x.raw_data(), p);
    expect_close(x, ref, tol);
  };
  check(
      -2, 2, [](double v) { return v + 1.25; }, [](Tensor& x) -> Tensor& { return x.add_(1.25); });
  check(
      -2, 2, [](double v) { return v - 1.25; }, [](Tensor& x) -> Tensor& { return x.sub_(1.25); });
  check(
      -2, 2, [](double v) { return v * -3.0; }, [](Tensor& x) -> Tensor& { return x.mul_(-3.0); });
  check(
      -2, 2, [](double v) { return v / 8.0; }, [](Tensor& x) -> Tensor& { return x.div_(8.0); });
  check(
      -2, 2, [](double v) { return std::min(std::max(v, -0.5), 0.25); },
      [](Tensor& x) -> Tensor& { return x.clamp_(-0.5, 0.25); });
  check(
      0.01, 9, [](double v) { return std::sqrt(v); },
      [](Tensor& x) -> Tensor& { return x.sqrt_(); });
  check(
      -2, 2, [](double v) { return v > 0 ? v : 0.0; },
      [](Tensor& x) -> Tensor& { return x.relu_(); });
}

TEST_P(InPlaceTest, AddcmulAddcdiv) {
  const DType dt = GetParam();
  // Two roundings per element in float32 (product, then sum).
  const tt::Tol tol = tt::scaled(tt::default_tol(dt), 2.0);
  for (const Shape& tshape : std::vector<Shape>{{6, 5}, {5}}) {
    SCOPED_TRACE("t1/t2 shape " + tt::str(tshape));
    for (double value : {1.0, -0.3}) {
      Tensor t1 = tt::random_tensor(tshape, dt, -2, 2);
      Tensor t2 = tt::random_nonzero(tshape, dt, 0.5, 2.0);
      const auto v1 = tt::to_doubles(t1), v2 = tt::to_doubles(t2);
      const size_t m = v1.size();
      {
        Tensor x = tt::random_tensor({6, 5}, dt, -2, 2);
        Ref ref{x.sizes(), tt::to_doubles(x)};
        for (size_t k = 0; k < ref.values.size(); ++k)
          ref.values[k] += value * v1[k % m] * v2[k % m];
        void* p = x.raw_data();
        Tensor& r = value == 1.0 ? x.addcmul_(t1, t2) : x.addcmul_(t1, t2, value);
        EXPECT_EQ(&r, &x);
        EXPECT_EQ(x.raw_data(), p);
        expect_close(x, ref, tol);
      }
      {
        Tensor x = tt::random_tensor({6, 5}, dt, -2, 2);
        Ref ref{x.sizes(), tt::to_doubles(x)};
        for (size_t k = 0; k < ref.values.size(); ++k)
          ref.values[k] += value * v1[k % m] / v2[k % m];
        Tensor& r = value == 1.0 ? x.addcdiv_(t1, t2) : x.addcdiv_(t1, t2, value);
        EXPECT_EQ(&r, &x);
        expect_close(x, ref, tol);
      }
    }
  }
}

TEST_P(InPlaceTest, InPlaceOnASliceChangesOnlyThoseRows) {
  const DType dt = GetParam();
  Tensor base = tt::random_tensor({5, 4}, dt, -2, 2);
  Ref ref{base.sizes(), tt::to_doubles(base)};
  Tensor rows = base.slice(0, 1, 3);
  Tensor o = tt::random_tensor({4}, dt, -2, 2);
  const auto ov = tt::to_doubles(o);
  rows.add_(o);
  for (int k = 4; k < 12; ++k) ref.values[k] += ov[k % 4];
  rows.mul_(2.0);
  for (int k = 4; k < 12; ++k) ref.values[k] *= 2.0;
  expect_close(base, ref, tt::default_tol(dt));
}

TEST_P(InPlaceTest, LargeInPlace) {
  const DType dt = GetParam();
  Tensor x = tt::random_tensor({1000003}, dt, -2, 2);
  Tensor y = tt::random_tensor({1000003}, dt, -2, 2);
  const Ref ref = ref_binary_tensor(BinaryOp::Add, x, y, 0.5);
  x.add_(y, 0.5);
  expect_close(x, ref, tt::default_tol(dt));
}

INSTANTIATE_TEST_SUITE_P(Floating, InPlaceTest,
                         ::testing::Values(tandem::kFloat32, tandem::kFloat64),
                         [](const ::testing::TestParamInfo<DType>& param_info) {
                           return std::string(tandem::dtype_name(param_info.param));
                         });

// ---- In-place ops whose operand overlaps the destination (issue 18.4) -------------
// The operand is read as it was before the op (it is copied first when it
// overlaps the destination), whatever the loop order or thread count.

class InPlaceOverlapTest : public ::testing::TestWithParam<DType> {};

TEST_P(InPlaceOverlapTest, RowOfTheSameMatrix) {
  // m.op_(m[r]): row r is overwritten while the other rows still read it. 1001
  // rows reach the OpenMP path; 7 rows run in one thread.
  const DType dt = GetParam();
  for (const Shape& shape : std::vector<Shape>{{7, 33}, {1001, 33}}) {
    for (int64_t r : {int64_t{0}, shape[0] / 2}) {
      SCOPED_TRACE(tt::str(shape) + " row " + std::to_string(r));
      auto check = [&](BinaryOp op, double alpha, auto apply) {
        Tensor m = tt::random_nonzero(shape, dt, 1.0, 9.0);
        const Ref ref = ref_binary_tensor(op, m, m[r].clone(), alpha);
        apply(m, m[r]);
        expect_close(m, ref, tt::default_tol(dt));
      };
      check(BinaryOp::Add, 1.0, [](Tensor& m, const Tensor& o) { m.add_(o); });
      check(BinaryOp::Sub, 1.0, [](Tensor& m, const Tensor& o) { m.sub_(o); });
      check(BinaryOp::Sub, 2.0, [](Tensor& m, const Tensor& o) { m.sub_(o, 2.0); });
      check(BinaryOp::Mul, 1.0, [](Tensor& m, const Tensor& o) { m.mul_(o); });
      check(BinaryOp::Div, 1.0, [](Tensor& m, const Tensor& o) { m.div_(o); });
    }
  }
}

TEST_P(InPlaceOverlapTest, ElementOfTheSameVector) {
  // x.div_(x[0]): a 0-d view of x's first element, broadcast over x.
  const DType dt = GetParam();
  for (int64_t n : {int64_t{7}, int64_t{100003}}) {
    SCOPED_TRACE("n " + std::to_string(n));
    Tensor x = tt::random_nonzero({n}, dt, 1.0, 9.0);
    const Ref ref = ref_binary_tensor(BinaryOp::Div, x, x[0].clone(), 1.0);
    x.div_(x[0]);
    expect_close(x, ref, tt::default_tol(dt));
    Tensor y = tt::random_nonzero({n}, dt, 1.0, 9.0);
    const Ref ref2 = ref_binary_tensor(BinaryOp::Sub, y, y[n - 1].clone(), 1.0);
    y.sub_(y[n - 1]);
    expect_close(y, ref2, tt::default_tol(dt));
  }
}

TEST_P(InPlaceOverlapTest, ShiftedSlicesOfOneTensor) {
  // dst rows [1, n) and src rows [0, n - 1): a forward loop would read rows it
  // has already written (a running sum instead of a pairwise one); also the
  // other direction.
  const DType dt = GetParam();
  for (int64_t n : {int64_t{9}, int64_t{4001}}) {
    SCOPED_TRACE("n " + std::to_string(n));
    Tensor x = tt::random_nonzero({n, 5}, dt, 1.0, 9.0);
    Tensor dst = x.slice(0, 1, n), src = x.slice(0, 0, n - 1);
    const Ref ref = ref_binary_tensor(BinaryOp::Add, dst, src.clone(), 2.0);
    dst.add_(src, 2.0);
    expect_close(dst, ref, tt::default_tol(dt));
    Tensor y = tt::random_nonzero({n, 5}, dt, 1.0, 9.0);
    Tensor dst2 = y.slice(0, 0, n - 1), src2 = y.slice(0, 1, n);
    const Ref ref2 = ref_binary_tensor(BinaryOp::Mul, dst2, src2.clone(), 1.0);
    dst2.mul_(src2);
    expect_close(dst2, ref2, tt::default_tol(dt));
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, InPlaceOverlapTest,
                         ::testing::Values(tandem::kFloat32, tandem::kFloat64, tandem::kInt32,
                                           tandem::kInt64),
                         [](const ::testing::TestParamInfo<DType>& param_info) {
                           return std::string(tandem::dtype_name(param_info.param));
                         });

TEST(InPlaceOverlapFloatTest, AddcmulAddcdivWithOverlappingOperands) {
  for (DType dt : tt::float_dtypes()) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    Tensor m = tt::random_nonzero({9, 5}, dt, 1.0, 9.0);
    const auto before = tt::to_doubles(m);
    m.addcmul_(m[2], m[4], 0.5);
    std::vector<double> ref = before;
    for (size_t k = 0; k < ref.size(); ++k) ref[k] += 0.5 * before[10 + k % 5] * before[20 + k % 5];
    expect_close(m, Ref{{9, 5}, ref}, tt::scaled(tt::default_tol(dt), 2.0));
    const auto mid = tt::to_doubles(m);
    m.addcdiv_(m[0], m[8]);
    for (size_t k = 0; k < ref.size(); ++k) ref[k] = mid[k] + mid[k % 5] / mid[40 + k % 5];
    expect_close(m, Ref{{9, 5}, ref}, tt::scaled(tt::default_tol(dt), 2.0));
  }
}

TEST(InPlaceIntTest, IntegerInPlaceArithmetic) {
  for (DType dt : {tandem::kInt32, tandem::kInt64}) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    Tensor x = tt::random_tensor({3, 4}, dt, -100, 100);
    Tensor o = tt::random_tensor({4}, dt, -100, 100);
    Ref ref = ref_binary_tensor(BinaryOp::Add, x, o, 1.0);
    x.add_(o);
    expect_close(x, ref, tt::exact());
    ref = ref_binary_tensor(BinaryOp::Mul, x, o, 1.0);
    x.mul_(o);
    expect_close(x, ref, tt::exact());
    for (auto& v : ref.values) v -= 7;
    x.sub_(7.0);
    expect_close(x, ref, tt::exact());
  }
}

// ---- where ------------------------------------------------------------------------

TEST(WhereTest, SelectsWithBroadcasting) {
  for (DType dt : {tandem::kFloat32, tandem::kFloat64, tandem::kInt64}) {
    SCOPED_TRACE(tandem::dtype_name(dt));
    const std::vector<std::array<Shape, 3>> cases = {
        {Shape{7}, Shape{7}, Shape{7}},       {Shape{3, 1}, Shape{3, 4}, Shape{4}},
        {Shape{1}, Shape{2, 3}, Shape{2, 3}}, {Shape{2, 3}, Shape{}, Shape{1, 3}},
        {Shape{0}, Shape{0}, Shape{1}},       {Shape{1000003}, Shape{1000003}, Shape{1000003}},
        {Shape{4099}, Shape{}, Shape{4099}},  {Shape{4099}, Shape{4099}, Shape{1}}};
    for (const auto& sh : cases) {
      SCOPED_TRACE(tt::str(sh[0]) + " " + tt::str(sh[1]) + " " + tt::str(sh[2]));
      Tensor cond = tt::random_tensor(sh[0], tandem::kUInt8, 0, 1);
      Tensor a = tt::random_tensor(sh[1], dt, -9, 9);
      Tensor b = tt::random_tensor(sh[2], dt, -9, 9);
      Shape ab, out;
      ASSERT_TRUE(tt::broadcast_ref(sh[1], sh[2], &ab));
      ASSERT_TRUE(tt::broadcast_ref(sh[0], ab, &out));
      const auto cv = tt::to_doubles(cond), av = tt::to_doubles(a), bv = tt::to_doubles(b);
      Ref ref{out, std::vector<double>(static_cast<size_t>(tt::numel_of(out)))};
      Ref ref_s = ref;
      for (int64_t i = 0; i < tt::numel_of(out); ++i) {
        const auto idx = tt::unravel(i, out);
        const bool c = cv[tt::broadcast_index(idx, sh[0])] != 0;
        ref.values[i] =
            c ? av[tt::broadcast_index(idx, sh[1])] : bv[tt::broadcast_index(idx, sh[2])];
        ref_s.values[i] = c ? av[tt::broadcast_index(idx, sh[1])] : -4.0;
      }
      Tensor w = tandem::where(cond, a, b);
      EXPECT_EQ(w.dtype(), dt);
      expect_close(w, ref, tt::exact());
      // The scalar form broadcasts cond with a only.
      Shape out_s;
      ASSERT_TRUE(tt::broadcast_ref(sh[0], sh[1], &out_s));
      if (out_s == out) expect_close(tandem::where(cond, a, -4.0), ref_s, tt::exact());
    }
  }
}

TEST(WhereTest, MaskFromComparison) {
  Tensor x = tt::random_tensor({33}, tandem::kFloat32, -1, 1);
  Tensor relu_via_where = tandem::where(tandem::gt(x, 0.0), x, 0.0);
  tt::expect_equal(relu_via_where, tandem::relu(x));
}

}  // namespace
