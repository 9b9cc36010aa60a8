// Patch whitening for the first layer of resnet-fast (airbench's
// init_whitening_conv): the covariance of the training images' kh x kw patches
// is accumulated with tandem ops in float64 on the CPU, decomposed by a cyclic
// Jacobi eigensolver (the matrix is small: 12 x 12 for RGB 2x2 patches), and
// the scaled eigenvectors become the conv filters.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "tandem/autograd.h"
#include "tandem/error.h"
#include "tandem/models.h"
#include "tandem/ops.h"

namespace tandem {
namespace models {

void symmetric_eigen(const std::vector<double>& matrix, int64_t n, std::vector<double>& values,
                     std::vector<double>& vectors) {
  TANDEM_CHECK(n > 0 && static_cast<int64_t>(matrix.size()) == n * n, "symmetric_eigen: expected ",
               n, " x ", n, " = ", n * n, " values, got ", matrix.size());
  const size_t N = static_cast<size_t>(n);
  double scale = 0.0;
  for (double v : matrix) {
    TANDEM_CHECK(std::isfinite(v), "symmetric_eigen: the matrix has a non-finite entry");
    scale = std::max(scale, std::abs(v));
  }
  for (size_t i = 0; i < N; ++i) {
    for (size_t j = i + 1; j < N; ++j) {
      TANDEM_CHECK(std::abs(matrix[i * N + j] - matrix[j * N + i]) <= 1e-9 * std::max(scale, 1.0),
                   "symmetric_eigen: the matrix is not symmetric (entry (", i, ", ", j, ") is ",
                   matrix[i * N + j], ", (", j, ", ", i, ") is ", matrix[j * N + i], ")");
    }
  }
  std::vector<double> a = matrix, v(N * N, 0.0);
  for (size_t i = 0; i < N; ++i) v[i * N + i] = 1.0;
  auto off_diagonal = [&] {
    double s = 0.0;
    for (size_t i = 0; i < N; ++i)
      for (size_t j = i + 1; j < N; ++j) s += a[i * N + j] * a[i * N + j];
    return s;
  };
  const double frob2 = std::inner_product(a.begin(), a.end(), a.begin(), 0.0);
  for (int sweep = 0; sweep < 100 && off_diagonal() > 1e-30 * frob2; ++sweep) {
    for (size_t p = 0; p < N; ++p) {
      for (size_t q = p + 1; q < N; ++q) {
        const double apq = a[p * N + q];
        if (apq == 0.0) continue;
        // Rotation in the (p, q) plane that zeroes a_pq (Numerical Recipes' jacobi).
        const double theta = (a[q * N + q] - a[p * N + p]) / (2.0 * apq);
        const double t =
            std::abs(theta) > 1e150
                ? 0.5 / theta
                : (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1.0));
        const double c = 1.0 / std::sqrt(t * t + 1.0), s = t * c;
        for (size_t k = 0; k < N; ++k) {  // A <- A P
          const double akp = a[k * N + p], akq = a[k * N + q];
          a[k * N + p] = c * akp - s * akq;
          a[k * N + q] = s * akp + c * akq;
        }
        for (size_t k = 0; k < N; ++k) {  // A <- P^T A
          const double apk = a[p * N + k], aqk = a[q * N + k];
          a[p * N + k] = c * apk - s * aqk;
          a[q * N + k] = s * apk + c * aqk;
        }
        for (size_t k = 0; k < N; ++k) {  // V <- V P (columns: eigenvectors)
          const double vkp = v[k * N + p], vkq = v[k * N + q];
          v[k * N + p] = c * vkp - s * vkq;
          v[k * N + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  std::vector<size_t> order(N);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t x, size_t y) { return a[x * N + x] > a[y * N + y]; });
  values.assign(N, 0.0);
  vectors.assign(N * N, 0.0);
  for (size_t r = 0; r < N; ++r) {
    const size_t col = order[r];
    values[r] = a[col * N + col];
    // Sign convention: the largest component of each eigenvector is positive.
    size_t big = 0;
    for (size_t k = 1; k < N; ++k)
      if (std::abs(v[k * N + col]) > std::abs(v[big * N + col])) big = k;
    const double sign = v[big * N + col] < 0 ? -1.0 : 1.0;
    for (size_t k = 0; k < N; ++k) vectors[r * N + k] = sign * v[k * N + col];
  }
}

namespace {

// The uncentred covariance (d x d, row-major) of the kh x kw patches of
// `images`, in the (channel, row, column) order of a conv weight.
std::vector<double> patch_covariance(const Tensor& images, int64_t kh, int64_t kw,
                                     const WhiteningOptions& opts) {
  const int64_t n = images.size(0), c = images.size(1), d = c * kh * kw;
  // An identity convolution: output channel (ch, i, j) copies that patch pixel.
  std::vector<double> eye(static_cast<size_t>(d * d), 0.0);
  for (int64_t k = 0; k < d; ++k) eye[static_cast<size_t>(k * d + k)] = 1.0;
  const Tensor extract = from_vector(eye, {d, c, kh, kw});
  Tensor mean, inv_std;
  if (images.dtype() == kUInt8) {
    std::vector<double> m(opts.mean), s(opts.std);
    for (double& x : s) x = 1.0 / x;
    mean = from_vector(m, {1, c, 1, 1});
    inv_std = from_vector(s, {1, c, 1, 1});
  }
  Tensor cov = zeros({d, d}, dtype(kFloat64));
  int64_t count = 0;
  constexpr int64_t kChunk = 256;  // images per GEMM, bounds the patch matrix's memory
  for (int64_t start = 0; start < n; start += kChunk) {
    Tensor x = images.slice(0, start, std::min(n, start + kChunk)).to(kFloat64);
    if (images.dtype() == kUInt8) x = (x * (1.0 / 255.0) - mean) * inv_std;
    const Tensor patches = conv2d(x, extract);  // [b, d, P, Q]
    const Tensor rows = patches.transpose(0, 1).reshape({d, patches.numel() / d});
    cov = cov + matmul(rows, rows.t());
    count += patches.numel() / d;
  }
  cov = cov * (1.0 / static_cast<double>(count));
  return to_vector<double>(cov);
}

}  // namespace

void init_whitening(nn::Conv2dImpl& conv, const Tensor& images, const WhiteningOptions& opts) {
  const nn::Conv2dOptions& o = conv.options;
  const int64_t c = o.in_channels(), kh = o.kernel_size().h, kw = o.kernel_size().w;
  const int64_t d = c * kh * kw;
  TANDEM_CHECK(o.groups() == 1 && o.dilation() == Size2(1) && o.out_channels() == 2 * d,
               "init_whitening: expected a Conv2d with groups 1, dilation 1 and 2 * ", c, " * ", kh,
               " * ", kw, " = ", 2 * d, " output channels, got groups ", o.groups(), ", dilation ",
               o.dilation(), ", ", o.out_channels(), " output channels");
  TANDEM_CHECK(images.defined() && images.is_cpu(),
               "init_whitening: images must be a defined CPU tensor");
  TANDEM_CHECK(images.dtype() == kUInt8 || images.dtype() == kFloat32 || images.dtype() == kFloat64,
               "init_whitening: images must be uint8, float32 or float64, got ", images.dtype());
  TANDEM_CHECK(images.dim() == 4 && images.size(0) > 0 && images.size(1) == c &&
                   images.size(2) >= kh && images.size(3) >= kw,
               "init_whitening: expected images [N > 0, ", c, ", H >= ", kh, ", W >= ", kw,
               "], got ", shape_str(images.sizes()));
  TANDEM_CHECK(opts.eps >= 0.0 && std::isfinite(opts.eps), "init_whitening: eps must be >= 0, got ",
               opts.eps);
  if (images.dtype() == kUInt8) {
    TANDEM_CHECK(
        static_cast<int64_t>(opts.mean.size()) == c && static_cast<int64_t>(opts.std.size()) == c,
        "init_whitening: uint8 images need ", c, " means and stds, got ", opts.mean.size(), " and ",
        opts.std.size());
    for (double s : opts.std) {
      TANDEM_CHECK(s > 0.0, "init_whitening: std values must be positive, got ", s);
    }
  }
  NoGradGuard no_grad;
  std::vector<double> values, vectors;
  symmetric_eigen(patch_covariance(images, kh, kw, opts), d, values, vectors);
  std::vector<double> w(static_cast<size_t>(2 * d * d));
  for (int64_t k = 0; k < d; ++k) {
    // Eigenvalues below rounding level of the largest count as 0.
    const double lambda = std::max(values[static_cast<size_t>(k)], 0.0) + opts.eps;
    TANDEM_CHECK(lambda > 1e-12 * std::abs(values[0]),
                 "init_whitening: the patch covariance is singular (eigenvalue ", k, " is ",
                 values[static_cast<size_t>(k)], " of ", values[0], "); use eps > 0");
    const double inv = 1.0 / std::sqrt(lambda);
    for (int64_t j = 0; j < d; ++j) {
      const double x = vectors[static_cast<size_t>(k * d + j)] * inv;
      w[static_cast<size_t>(k * d + j)] = x;
      w[static_cast<size_t>((k + d) * d + j)] = -x;
    }
  }
  const Tensor weight = from_vector(w, {2 * d, c, kh, kw});
  conv.weight.copy_(weight.to(conv.weight.device(), conv.weight.dtype()));
}

int init_whitening(nn::Module& model, const Tensor& images, const WhiteningOptions& opts) {
  int count = 0;
  for (const auto& m : model.modules()) {
    if (auto* w = dynamic_cast<PatchWhiteningImpl*>(m.get())) {
      init_whitening(*w, images, opts);
      ++count;
    }
  }
  return count;
}

}  // namespace models
}  // namespace tandem
