// Matrix products on the CPU (OpenBLAS) against a naive float64 triple loop:
// mm, bmm, every documented matmul rank combination, linear with and without
// bias, float32 and float64, including size-1, odd and empty shapes.
#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <string>
#include <vector>

#include "test_util.h"

namespace {

using tandem::DType;
using tandem::Shape;
using tandem::Tensor;
using tt::expect_close;
using tt::Ref;

// C[b] = A[b] (m x k) * B[b] (k x n); stride 0 repeats one matrix.
std::vector<double> naive_gemm(const std::vector<double>& a, const std::vector<double>& b,
                               int64_t batch, int64_t m, int64_t k, int64_t n, int64_t stride_a,
                               int64_t stride_b) {
  std::vector<double> c(static_cast<size_t>(batch * m * n), 0.0);
  for (int64_t p = 0; p < batch; ++p)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0.0;
        for (int64_t l = 0; l < k; ++l)
          s += a[static_cast<size_t>(p * stride_a + i * k + l)] *
               b[static_cast<size_t>(p * stride_b + l * n + j)];
        c[static_cast<size_t>((p * m + i) * n + j)] = s;
      }
  return c;
}

// matmul's documented semantics, written independently: 1-D operands are
// promoted to a matrix and the added dim removed; an operand whose batch dims
// hold one matrix (a 2-D operand, or batch dims of size 1) is repeated for
// every matrix of the other; otherwise the batch dims must be equal.
Ref ref_matmul(const Tensor& a, const Tensor& b) {
  Shape sa = a.sizes(), sb = b.sizes();
  const bool a_vec = sa.size() == 1, b_vec = sb.size() == 1;
  if (a_vec) sa.insert(sa.begin(), 1);
  if (b_vec) sb.push_back(1);
  const int64_t m = sa[sa.size() - 2], k = sa.back(), n = sb.back();
  const Shape a_batch(sa.begin(), sa.end() - 2), b_batch(sb.begin(), sb.end() - 2);
  const bool a_shared = tt::numel_of(a_batch) == 1, b_shared = tt::numel_of(b_batch) == 1;
  // The batch of the side with several matrices; with one on each side, the
  // longer batch shape (all ones).
  const Shape batch_shape = !a_shared                          ? a_batch
                            : !b_shared                        ? b_batch
                            : a_batch.size() >= b_batch.size() ? a_batch
                                                               : b_batch;
  const int64_t batch = tt::numel_of(batch_shape);
  Ref r;
  r.values = naive_gemm(tt::to_doubles(a), tt::to_doubles(b), batch, m, k, n, a_shared ? 0 : m * k,
                        b_shared ? 0 : k * n);
  r.shape = batch_shape;
  if (!a_vec) r.shape.push_back(m);
  if (!b_vec) r.shape.push_back(n);
  return r;
}

// float32 GEMM: OpenBLAS (and cuBLAS) block and vectorise the k-sum in float32,
// often with FMA, so the rounding error grows with k; inputs are in [-1, 1],
// bounding each partial sum by k. float64 keeps the default table.
tt::Tol gemm_tol(DType dt, int64_t k) {
  if (dt == tandem::kFloat64) return tt::default_tol(dt);
  return {1e-5, 1e-5 + 2.0 * static_cast<double>(k) * tt::epsilon(dt)};
}

struct MNK {
  int64_t m, k, n;
};
const std::vector<MNK>& sizes() {
  static const std::vector<MNK> s = {{7, 33, 5}, {1, 1, 1}, {1, 7, 1}, {33, 1, 7}, {65, 129, 67}};
  return s;
}

class BlasTest : public ::testing::TestWithParam<DType> {};

TEST_P(BlasTest, Mm) {
  const DType dt = GetParam();
  for (const MNK& s : sizes()) {
    SCOPED_TRACE("m k n = " + std::to_string(s.m) + " " + std::to_string(s.k) + " " +
                 std::to_string(s.n));
    Tensor a = tt::random_tensor({s.m, s.k}, dt);
    Tensor b = tt::random_tensor({s.k, s.n}, dt);
    const auto av = tt::to_doubles(a), bv = tt::to_doubles(b);
    Tensor c = tandem::mm(a, b);
    EXPECT_EQ(c.dtype(), dt);
    expect_close(c, ref_matmul(a, b), gemm_tol(dt, s.k));
    EXPECT_EQ(tt::to_doubles(a), av);
    EXPECT_EQ(tt::to_doubles(b), bv);
  }
}

TEST_P(BlasTest, LargerMmAgainstNormalisedError) {
  const DType dt = GetParam();
  Tensor a = tt::random_tensor({256, 512}, dt);
  Tensor b = tt::random_tensor({512, 96}, dt);
  Tensor c = tandem::mm(a, b);
  const Ref ref = ref_matmul(a, b);
  expect_close(c, ref, gemm_tol(dt, 512));
  EXPECT_LT(tt::nmse(tt::to_doubles(c), ref.values), dt == tandem::kFloat32 ? 1e-11 : 1e-26);
}

TEST_P(BlasTest, Bmm) {
  const DType dt = GetParam();
  for (int64_t batch : {1, 3}) {
    for (const MNK& s : sizes()) {
      if (s.m > 40) continue;
      SCOPED_TRACE("batch " + std::to_string(batch) + " m k n = " + std::to_string(s.m) + " " +
                   std::to_string(s.k) + " " + std::to_string(s.n));
      Tensor a = tt::random_tensor({batch, s.m, s.k}, dt);
      Tensor b = tt::random_tensor({batch, s.k, s.n}, dt);
      Tensor c = tandem::bmm(a, b);
      EXPECT_EQ(c.sizes(), (Shape{batch, s.m, s.n}));
      expect_close(c, ref_matmul(a, b), gemm_tol(dt, s.k));
    }
  }
}

TEST_P(BlasTest, MatmulEveryRankCombination) {
  const DType dt = GetParam();
  const int64_t m = 7, k = 33, n = 5, B = 3, B1 = 2, B2 = 3;
  struct Case {
    Shape a, b, out;
  };
  const std::vector<Case> cases = {
      {{k}, {k}, {}},                                    // dot
      {{m, k}, {k}, {m}},                                // matrix-vector
      {{k}, {k, n}, {n}},                                // vector-matrix
      {{m, k}, {k, n}, {m, n}},                          // matrix-matrix
      {{B, m, k}, {k, n}, {B, m, n}},                    // N-D x 2-D
      {{B1, B2, m, k}, {k, n}, {B1, B2, m, n}},          // N-D x 2-D, two batch dims
      {{B, m, k}, {B, k, n}, {B, m, n}},                 // batched, equal batch dims
      {{B1, B2, m, k}, {B1, B2, k, n}, {B1, B2, m, n}},  // batched, two batch dims
      {{1}, {1}, {}},
      {{1, 1}, {1, 1}, {1, 1}},
      {{B, 1, k}, {k, 1}, {B, 1, 1}},
      // One matrix (or vector) on the left times a batch: the left operand is
      // repeated for every matrix of the right.
      {{m, k}, {B, k, n}, {B, m, n}},            // 2-D x N-D
      {{k}, {B, k, n}, {B, n}},                  // 1-D x N-D
      {{1, m, k}, {B, k, n}, {B, m, n}},         // batch of one x N-D
      {{m, k}, {B1, B2, k, n}, {B1, B2, m, n}},  // 2-D x N-D, two batch dims
      {{B, m, k}, {1, k, n}, {B, m, n}},         // N-D x a batch of one
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(tt::str(c.a) + " x " + tt::str(c.b));
    Tensor a = tt::random_tensor(c.a, dt);
    Tensor b = tt::random_tensor(c.b, dt);
    Tensor y = tandem::matmul(a, b);
    EXPECT_EQ(y.sizes(), c.out);
    EXPECT_EQ(y.dtype(), dt);
    const Ref ref = ref_matmul(a, b);
    ASSERT_EQ(ref.shape, c.out);  // the reference agrees with the documented shape
    expect_close(y, ref, gemm_tol(dt, c.a.back()));
    expect_close(a.matmul(b), ref, gemm_tol(dt, c.a.back()));
  }
}

TEST_P(BlasTest, LinearWithAndWithoutBias) {
  const DType dt = GetParam();
  const int64_t in = 33, out = 7;
  for (const Shape& xs : std::vector<Shape>{{5, in}, {1, in}, {2, 3, in}, {in}}) {
    SCOPED_TRACE("x " + tt::str(xs));
    Tensor x = tt::random_tensor(xs, dt);
    Tensor w = tt::random_tensor({out, in}, dt);
    Tensor bias = tt::random_tensor({out}, dt);
    // Reference: x W^T (+ b), with W^T built by hand.
    const auto wv = tt::to_doubles(w);
    std::vector<double> wt(wv.size());
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i)
        wt[static_cast<size_t>(i * out + o)] = wv[static_cast<size_t>(o * in + i)];
    const int64_t rows = x.numel() / in;
    Ref ref;
    ref.values = naive_gemm(tt::to_doubles(x), wt, 1, rows, in, out, 0, 0);
    ref.shape = xs;
    ref.shape.back() = out;
    expect_close(tandem::linear(x, w), ref, gemm_tol(dt, in));
    expect_close(tandem::linear(x, w, Tensor()), ref, gemm_tol(dt, in));
    const auto bv = tt::to_doubles(bias);
    for (size_t i = 0; i < ref.values.size(); ++i)
      ref.values[i] += bv[i % static_cast<size_t>(out)];
    expect_close(tandem::linear(x, w, bias), ref, gemm_tol(dt, in));
  }
}

TEST_P(BlasTest, EmptyOperands) {
  const DType dt = GetParam();
  // k = 0: the product is all zeros.
  expect_close(tandem::mm(tandem::empty({3, 0}, dt), tandem::empty({0, 4}, dt)),
               Ref{{3, 4}, std::vector<double>(12, 0.0)}, tt::exact());
  EXPECT_EQ(tandem::mm(tandem::empty({0, 5}, dt), tt::random_tensor({5, 4}, dt)).sizes(),
            (Shape{0, 4}));
  EXPECT_EQ(tandem::mm(tt::random_tensor({2, 5}, dt), tandem::empty({5, 0}, dt)).sizes(),
            (Shape{2, 0}));
  EXPECT_EQ(tandem::bmm(tandem::empty({0, 2, 3}, dt), tandem::empty({0, 3, 4}, dt)).sizes(),
            (Shape{0, 2, 4}));
  EXPECT_EQ(tandem::matmul(tandem::empty({0, 2, 3}, dt), tt::random_tensor({3, 4}, dt)).sizes(),
            (Shape{0, 2, 4}));
  Tensor bias = tt::random_tensor({3}, dt);
  Tensor y = tandem::linear(tandem::empty({2, 0}, dt), tandem::empty({3, 0}, dt), bias);
  const auto bv = tt::to_doubles(bias);
  expect_close(y, Ref{{2, 3}, {bv[0], bv[1], bv[2], bv[0], bv[1], bv[2]}}, tt::exact());
}

INSTANTIATE_TEST_SUITE_P(Floating, BlasTest, ::testing::Values(tandem::kFloat32, tandem::kFloat64),
                         [](const ::testing::TestParamInfo<DType>& param_info) {
                           return std::string(tandem::dtype_name(param_info.param));
                         });

}  // namespace
