// The float64 references of the op registry: plain loops over row-major
// doubles (check::Array), written without the library's ops, so that they
// check the formulas rather than repeat them (src/check/records.cpp uses them).
#pragma once

#include <tandem/check.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace tandem::check::ref {

int64_t numel(const Shape& s);
Array full(const Shape& s, double value);
// f applied to each element.
Array map(const Array& x, const std::function<double(double)>& f);
// f(a, b) with NumPy broadcasting.
Array zip(const Array& a, const Array& b, const std::function<double(double, double)>& f);
// A reduction of `dim` (or of everything, dim = -100) by f over the values of each row.
constexpr int64_t kAll = -100;
Array reduce(const Array& x, int64_t dim, bool keepdim,
             const std::function<double(const std::vector<double>&)>& f);
// f maps each row along `dim` to a row of the same length.
Array rowwise(const Array& x, int64_t dim,
              const std::function<std::vector<double>(const std::vector<double>&)>& f);
double sum(const std::vector<double>& v);
double mean(const std::vector<double>& v);
double variance(const std::vector<double>& v, bool unbiased);
std::vector<double> softmax(const std::vector<double>& v);
std::vector<double> log_softmax(const std::vector<double>& v);

Array matmul(const Array& a, const Array& b);  // NumPy's matmul rules
Array linear(const Array& x, const Array& w, const Array* bias);
struct Conv {
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;
};
Array conv2d(const Array& x, const Array& w, const Array* bias, const Conv& c);
enum class Pool { Max, AvgIncludePad, AvgExcludePad };
Array pool2d(const Array& x, Pool kind, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
             int64_t pw);
Array adaptive_avg_pool2d(const Array& x, int64_t oh, int64_t ow);
// Training (batch statistics, biased variance) when mean/var are null.
Array batch_norm(const Array& x, const Array* mean, const Array* var, const Array* weight,
                 const Array* bias, double eps);

Array index_select(const Array& x, int64_t dim, const std::vector<int64_t>& index);
Array gather(const Array& x, int64_t dim, const Array& index);
Array scatter_add(const Array& x, int64_t dim, const Array& index, const Array& src);
Array index_add(const Array& x, int64_t dim, const std::vector<int64_t>& index, const Array& src);
Array cat(const std::vector<Array>& xs, int64_t dim);
Array permute(const Array& x, const std::vector<int64_t>& order);
Array narrow(const Array& x, int64_t dim, int64_t start, int64_t length);

}  // namespace tandem::check::ref
