// The registry's float64 references (reference.h): naive loops, no library ops.
#include "check/reference.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tandem::check::ref {
namespace {

int64_t wrap(int64_t dim, size_t rank) { return dim < 0 ? dim + static_cast<int64_t>(rank) : dim; }
// The shape as outer x len x inner around `dim`.
struct Split {
  int64_t outer = 1, len = 1, inner = 1;
};
Split split(const Shape& s, int64_t dim) {
  Split r;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i) {
    if (i < dim) r.outer *= s[i];
    if (i == dim) r.len = s[i];
    if (i > dim) r.inner *= s[i];
  }
  return r;
}
std::vector<int64_t> row_strides(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (int64_t i = static_cast<int64_t>(s.size()) - 2; i >= 0; --i) st[i] = st[i + 1] * s[i + 1];
  return st;
}

}  // namespace

int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}
Array full(const Shape& s, double value) {
  return {s, std::vector<double>(static_cast<size_t>(numel(s)), value)};
}
Array map(const Array& x, const std::function<double(double)>& f) {
  Array y = x;
  for (double& v : y.v) v = f(v);
  return y;
}
Array zip(const Array& a, const Array& b, const std::function<double(double, double)>& f) {
  const size_t rank = std::max(a.shape.size(), b.shape.size());
  Shape sa(rank - a.shape.size(), 1), sb(rank - b.shape.size(), 1), out(rank);
  sa.insert(sa.end(), a.shape.begin(), a.shape.end());
  sb.insert(sb.end(), b.shape.begin(), b.shape.end());
  for (size_t i = 0; i < rank; ++i) out[i] = sa[i] == 1 ? sb[i] : sa[i];
  const auto ta = row_strides(sa), tb = row_strides(sb), to = row_strides(out);
  Array y = full(out, 0.0);
  for (int64_t i = 0; i < numel(out); ++i) {
    int64_t ia = 0, ib = 0;
    for (size_t d = 0; d < rank; ++d) {
      const int64_t c = (i / to[d]) % out[d];
      if (sa[d] != 1) ia += c * ta[d];
      if (sb[d] != 1) ib += c * tb[d];
    }
    y.v[i] = f(a.v[ia], b.v[ib]);
  }
  return y;
}

Array reduce(const Array& x, int64_t dim, bool keepdim,
             const std::function<double(const std::vector<double>&)>& f) {
  if (dim == kAll) return {Shape{}, {f(x.v)}};
  dim = wrap(dim, x.shape.size());
  const Split s = split(x.shape, dim);
  Shape out = x.shape;
  if (keepdim)
    out[dim] = 1;
  else
    out.erase(out.begin() + dim);
  Array y = full(out, 0.0);
  std::vector<double> row(static_cast<size_t>(s.len));
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      for (int64_t k = 0; k < s.len; ++k) row[k] = x.v[(o * s.len + k) * s.inner + i];
      y.v[o * s.inner + i] = f(row);
    }
  return y;
}
Array rowwise(const Array& x, int64_t dim,
              const std::function<std::vector<double>(const std::vector<double>&)>& f) {
  dim = wrap(dim, x.shape.size());
  const Split s = split(x.shape, dim);
  Array y = x;
  std::vector<double> row(static_cast<size_t>(s.len));
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      for (int64_t k = 0; k < s.len; ++k) row[k] = x.v[(o * s.len + k) * s.inner + i];
      const std::vector<double> r = f(row);
      for (int64_t k = 0; k < s.len; ++k) y.v[(o * s.len + k) * s.inner + i] = r[k];
    }
  return y;
}
double sum(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x;
  return s;
}
double mean(const std::vector<double>& v) {
  return v.empty() ? std::numeric_limits<double>::quiet_NaN() : sum(v) / double(v.size());
}
double variance(const std::vector<double>& v, bool unbiased) {
  const double m = mean(v);
  double s = 0.0;
  for (double x : v) s += (x - m) * (x - m);
  return s / (double(v.size()) - (unbiased ? 1.0 : 0.0));
}
std::vector<double> log_softmax(const std::vector<double>& v) {
  if (v.empty()) return {};  // an empty row (a [0, 5] tensor over dim 0)
  const double m = *std::max_element(v.begin(), v.end());
  double s = 0.0;
  for (double x : v) s += std::exp(x - m);
  std::vector<double> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = v[i] - m - std::log(s);
  return r;
}
std::vector<double> softmax(const std::vector<double>& v) {
  std::vector<double> r = log_softmax(v);
  for (double& x : r) x = std::exp(x);
  return r;
}

Array matmul(const Array& a0, const Array& b0) {
  Array a = a0, b = b0;
  const bool a_vec = a.shape.size() == 1, b_vec = b.shape.size() == 1;
  if (a_vec) a.shape.insert(a.shape.begin(), 1);
  if (b_vec) b.shape.push_back(1);
  const int64_t n = a.shape[a.shape.size() - 2], k = a.shape.back(), m = b.shape.back();
  const Shape ba(a.shape.begin(), a.shape.end() - 2), bb(b.shape.begin(), b.shape.end() - 2);
  // Broadcast the batch dims through zip on index arrays.
  Array ia = full(ba, 0.0), ib = full(bb, 0.0);
  for (size_t i = 0; i < ia.v.size(); ++i) ia.v[i] = double(i);
  for (size_t i = 0; i < ib.v.size(); ++i) ib.v[i] = double(i);
  std::vector<std::pair<int64_t, int64_t>> pairs;
  const Array batch = zip(ia, ib, [&](double x, double y) {
    pairs.emplace_back(int64_t(x), int64_t(y));
    return 0.0;
  });
  Shape out = batch.shape;
  if (!a_vec) out.push_back(n);
  if (!b_vec) out.push_back(m);
  Array y = full(out, 0.0);
  for (size_t p = 0; p < pairs.size(); ++p)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < m; ++j) {
        double s = 0.0;
        for (int64_t t = 0; t < k; ++t)
          s += a.v[(pairs[p].first * n + i) * k + t] * b.v[(pairs[p].second * k + t) * m + j];
        y.v[(int64_t(p) * n + i) * m + j] = s;
      }
  return y;
}
Array linear(const Array& x, const Array& w, const Array* bias) {
  const Array wt = permute(w, {1, 0});
  Array y = matmul(x, wt);
  return bias ? zip(y, *bias, [](double a, double b) { return a + b; }) : y;
}

Array conv2d(const Array& x0, const Array& w, const Array* bias, const Conv& c) {
  Array x = x0;
  const bool unbatched = x.shape.size() == 3;
  if (unbatched) x.shape.insert(x.shape.begin(), 1);
  const int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  const int64_t O = w.shape[0], Cg = w.shape[1], KH = w.shape[2], KW = w.shape[3];
  const int64_t OH = (H + 2 * c.ph - c.dh * (KH - 1) - 1) / c.sh + 1;
  const int64_t OW = (W + 2 * c.pw - c.dw * (KW - 1) - 1) / c.sw + 1;
  const int64_t Og = O / c.groups;
  Array y = full({N, O, OH, OW}, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double s = bias ? bias->v[o] : 0.0;
          for (int64_t ci = 0; ci < Cg; ++ci)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t ih = oh * c.sh - c.ph + kh * c.dh, iw = ow * c.sw - c.pw + kw * c.dw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const int64_t cin = (o / Og) * Cg + ci;
                s += x.v[((n * C + cin) * H + ih) * W + iw] *
                     w.v[((o * Cg + ci) * KH + kh) * KW + kw];
              }
          y.v[((n * O + o) * OH + oh) * OW + ow] = s;
        }
  if (unbatched) y.shape.erase(y.shape.begin());
  return y;
}
Array pool2d(const Array& x, Pool kind, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
             int64_t pw) {
  const int64_t NC = x.shape[0] * x.shape[1], H = x.shape[2], W = x.shape[3];
  const int64_t OH = (H + 2 * ph - kh) / sh + 1, OW = (W + 2 * pw - kw) / sw + 1;
  Array y = full({x.shape[0], x.shape[1], OH, OW}, 0.0);
  for (int64_t p = 0; p < NC; ++p)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        double best = -std::numeric_limits<double>::infinity(), s = 0.0;
        int64_t inside = 0, window = 0;
        for (int64_t i = oh * sh - ph; i < oh * sh - ph + kh; ++i)
          for (int64_t j = ow * sw - pw; j < ow * sw - pw + kw; ++j) {
            if (i < H + ph && j < W + pw) ++window;  // the padded window, clipped to the pad
            if (i < 0 || i >= H || j < 0 || j >= W) continue;
            const double v = x.v[(p * H + i) * W + j];
            best = std::max(best, v);
            s += v;
            ++inside;
          }
        y.v[(p * OH + oh) * OW + ow] = kind == Pool::Max             ? best
                                       : kind == Pool::AvgIncludePad ? s / double(window)
                                                                     : s / double(inside);
      }
  return y;
}
Array adaptive_avg_pool2d(const Array& x, int64_t OH, int64_t OW) {
  const int64_t NC = x.shape[0] * x.shape[1], H = x.shape[2], W = x.shape[3];
  Array y = full({x.shape[0], x.shape[1], OH, OW}, 0.0);
  for (int64_t p = 0; p < NC; ++p)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        const int64_t h0 = oh * H / OH, h1 = ((oh + 1) * H + OH - 1) / OH;
        const int64_t w0 = ow * W / OW, w1 = ((ow + 1) * W + OW - 1) / OW;
        double s = 0.0;
        for (int64_t i = h0; i < h1; ++i)
          for (int64_t j = w0; j < w1; ++j) s += x.v[(p * H + i) * W + j];
        y.v[(p * OH + oh) * OW + ow] = s / double((h1 - h0) * (w1 - w0));
      }
  return y;
}
Array batch_norm(const Array& x, const Array* mean_in, const Array* var_in, const Array* weight,
                 const Array* bias, double eps) {
  const int64_t N = x.shape[0], C = x.shape[1], inner = numel(x.shape) / (N * C);
  Array y = x;
  for (int64_t c = 0; c < C; ++c) {
    std::vector<double> vals;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < inner; ++i) vals.push_back(x.v[(n * C + c) * inner + i]);
    const double m = mean_in ? mean_in->v[c] : mean(vals);
    const double v = var_in ? var_in->v[c] : variance(vals, false);
    const double g = weight ? weight->v[c] : 1.0, b = bias ? bias->v[c] : 0.0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < inner; ++i) {
        double& e = y.v[(n * C + c) * inner + i];
        e = (e - m) / std::sqrt(v + eps) * g + b;
      }
  }
  return y;
}

Array index_select(const Array& x, int64_t dim, const std::vector<int64_t>& index) {
  dim = wrap(dim, x.shape.size());
  const Split s = split(x.shape, dim);
  Shape out = x.shape;
  out[dim] = static_cast<int64_t>(index.size());
  Array y = full(out, 0.0);
  const int64_t L = out[dim];
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t k = 0; k < L; ++k)
      for (int64_t i = 0; i < s.inner; ++i)
        y.v[(o * L + k) * s.inner + i] = x.v[(o * s.len + index[k]) * s.inner + i];
  return y;
}
// out[.., i_dim, ..] = x[.., index[..], ..] (gather), or its adjoint.
Array gather(const Array& x, int64_t dim, const Array& index) {
  dim = wrap(dim, x.shape.size());
  const auto ti = row_strides(index.shape), tx = row_strides(x.shape);
  Array y = full(index.shape, 0.0);
  for (int64_t e = 0; e < numel(index.shape); ++e) {
    int64_t off = 0;
    for (size_t d = 0; d < index.shape.size(); ++d) {
      const int64_t c = (e / ti[d]) % index.shape[d];
      off += (int64_t(d) == dim ? int64_t(index.v[e]) : c) * tx[d];
    }
    y.v[e] = x.v[off];
  }
  return y;
}
Array scatter_add(const Array& x, int64_t dim, const Array& index, const Array& src) {
  dim = wrap(dim, x.shape.size());
  const auto ti = row_strides(index.shape), tx = row_strides(x.shape), ts = row_strides(src.shape);
  Array y = x;
  for (int64_t e = 0; e < numel(index.shape); ++e) {
    int64_t off = 0, soff = 0;
    for (size_t d = 0; d < index.shape.size(); ++d) {
      const int64_t c = (e / ti[d]) % index.shape[d];
      off += (int64_t(d) == dim ? int64_t(index.v[e]) : c) * tx[d];
      soff += c * ts[d];
    }
    y.v[off] += src.v[soff];
  }
  return y;
}
Array index_add(const Array& x, int64_t dim, const std::vector<int64_t>& index, const Array& src) {
  dim = wrap(dim, x.shape.size());
  const Split s = split(x.shape, dim);
  const int64_t L = src.shape[dim];
  Array y = x;
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t k = 0; k < L; ++k)
      for (int64_t i = 0; i < s.inner; ++i)
        y.v[(o * s.len + index[k]) * s.inner + i] += src.v[(o * L + k) * s.inner + i];
  return y;
}
Array cat(const std::vector<Array>& xs, int64_t dim) {
  dim = wrap(dim, xs[0].shape.size());
  Shape out = xs[0].shape;
  out[dim] = 0;
  for (const Array& x : xs) out[dim] += x.shape[dim];
  const Split so = split(out, dim);
  Array y = full(out, 0.0);
  int64_t at = 0;
  for (const Array& x : xs) {
    const Split s = split(x.shape, dim);
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t k = 0; k < s.len; ++k)
        for (int64_t i = 0; i < s.inner; ++i)
          y.v[(o * so.len + at + k) * s.inner + i] = x.v[(o * s.len + k) * s.inner + i];
    at += s.len;
  }
  return y;
}
Array permute(const Array& x, const std::vector<int64_t>& order) {
  Shape out(order.size());
  for (size_t d = 0; d < order.size(); ++d) out[d] = x.shape[order[d]];
  const auto tx = row_strides(x.shape), to = row_strides(out);
  Array y = full(out, 0.0);
  for (int64_t e = 0; e < numel(out); ++e) {
    int64_t off = 0;
    for (size_t d = 0; d < out.size(); ++d) off += ((e / to[d]) % out[d]) * tx[order[d]];
    y.v[e] = x.v[off];
  }
  return y;
}
Array narrow(const Array& x, int64_t dim, int64_t start, int64_t length) {
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < length; ++i) idx.push_back(start + i);
  return index_select(x, dim, idx);
}

}  // namespace tandem::check::ref
