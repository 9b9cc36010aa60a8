// Tensor printing in PyTorch's style:
//   tensor([[ 0.1000, -1.2000],
//           [ 3.0000,  4.0000]], dtype=float64, device=cuda:0)
// Floats get 4 decimals (or scientific notation when magnitudes span more than
// 1e3 or exceed 1e8; "1." style when all values are integral); more than 1000
// elements are summarised with "..." showing 3 items at each end of every dim.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "tandem/tensor.h"

namespace tandem {

namespace {

constexpr int64_t kSummaryThreshold = 1000;
constexpr int64_t kEdgeItems = 3;

// long double holds every int64 exactly (64-bit mantissa on x86-64), so
// integer tensors print exactly; floats are formatted from double.
using Value = long double;

enum class FloatStyle { Integral, Fixed, Scientific };

struct Formatter {
  bool floating = true;
  FloatStyle style = FloatStyle::Fixed;
  size_t width = 1;

  std::string raw(Value value) const {
    if (!floating) return std::to_string(static_cast<int64_t>(value));
    const auto v = static_cast<double>(value);
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    char buf[64];
    switch (style) {
      case FloatStyle::Integral:
        std::snprintf(buf, sizeof(buf), "%.0f.", v);
        break;
      case FloatStyle::Fixed:
        std::snprintf(buf, sizeof(buf), "%.4f", v);
        break;
      case FloatStyle::Scientific:
        std::snprintf(buf, sizeof(buf), "%.4e", v);
        break;
    }
    return buf;
  }
  std::string operator()(Value v) const {
    std::string s = raw(v);
    return std::string(width > s.size() ? width - s.size() : 0, ' ') + s;
  }
};

// Indices of dim d that are printed (all, or the edges around "...").
std::vector<int64_t> shown(int64_t n, bool summarize) {
  std::vector<int64_t> idx;
  if (!summarize || n <= 2 * kEdgeItems) {
    for (int64_t i = 0; i < n; ++i) idx.push_back(i);
  } else {
    for (int64_t i = 0; i < kEdgeItems; ++i) idx.push_back(i);
    idx.push_back(-1);  // the "..." marker
    for (int64_t i = n - kEdgeItems; i < n; ++i) idx.push_back(i);
  }
  return idx;
}

void collect(const std::vector<Value>& v, const Shape& s, size_t d, int64_t base, bool summarize,
             std::vector<Value>* out) {
  if (d == s.size()) {
    out->push_back(v[static_cast<size_t>(base)]);
    return;
  }
  int64_t stride = 1;
  for (size_t k = d + 1; k < s.size(); ++k) stride *= s[k];
  for (int64_t i : shown(s[d], summarize))
    if (i >= 0) collect(v, s, d + 1, base + i * stride, summarize, out);
}

void emit(std::ostream& os, const std::vector<Value>& v, const Shape& s, size_t d, int64_t base,
          bool summarize, const Formatter& fmt, size_t indent) {
  int64_t stride = 1;
  for (size_t k = d + 1; k < s.size(); ++k) stride *= s[k];
  os << '[';
  const std::vector<int64_t> idx = shown(s[d], summarize);
  for (size_t j = 0; j < idx.size(); ++j) {
    if (j > 0) {
      if (d + 1 == s.size()) {
        os << ", ";
      } else {
        os << ',' << std::string(s.size() - d - 1, '\n') << std::string(indent + d + 1, ' ');
      }
    }
    if (idx[j] < 0) {
      os << "...";
    } else if (d + 1 == s.size()) {
      os << fmt(v[static_cast<size_t>(base + idx[j])]);
    } else {
      emit(os, v, s, d + 1, base + idx[j] * stride, summarize, fmt, indent);
    }
  }
  os << ']';
}

Formatter make_formatter(const std::vector<Value>& values, bool floating) {
  Formatter fmt;
  fmt.floating = floating;
  if (floating) {
    double max_abs = 0.0, min_abs = INFINITY;
    bool integral = true;
    for (Value value : values) {
      const auto x = static_cast<double>(value);
      if (!std::isfinite(x)) continue;
      integral = integral && std::nearbyint(x) == x;
      max_abs = std::max(max_abs, std::fabs(x));
      if (x != 0.0) min_abs = std::min(min_abs, std::fabs(x));
    }
    if (integral && max_abs < 1e8) {
      fmt.style = FloatStyle::Integral;
    } else if (max_abs >= 1e8 || (min_abs < INFINITY && max_abs / min_abs > 1e3) ||
               (max_abs > 0 && max_abs < 1e-4)) {
      fmt.style = FloatStyle::Scientific;
    }
  }
  for (Value x : values) fmt.width = std::max(fmt.width, fmt.raw(x).size());
  return fmt;
}

}  // namespace

std::string Tensor::to_string() const {
  if (!defined()) return "tensor(undefined)";
  std::ostringstream os;
  std::vector<Value> v;
  if (is_floating(dtype())) {
    for (double x : to_vector<double>(to(Device(kCPU), kFloat64))) v.push_back(x);
  } else {
    for (int64_t x : to_vector<int64_t>(to(Device(kCPU), kInt64)))
      v.push_back(static_cast<Value>(x));
  }
  const bool summarize = numel() > kSummaryThreshold;
  std::vector<Value> visible;
  if (dim() > 0) collect(v, sizes(), 0, 0, summarize, &visible);
  const Formatter fmt = make_formatter(dim() > 0 ? visible : v, is_floating(dtype()));
  os << "tensor(";
  if (dim() == 0) {
    os << fmt(v[0]);
  } else if (numel() == 0) {
    os << "[]";
    if (dim() > 1) {
      os << ", size=(";
      for (int64_t i = 0; i < dim(); ++i) os << (i ? ", " : "") << sizes()[static_cast<size_t>(i)];
      os << ')';
    }
  } else {
    emit(os, v, sizes(), 0, 0, summarize, fmt, 7);
  }
  if (dtype() != kFloat32 && dtype() != kInt64) os << ", dtype=" << dtype_name(dtype());
  if (is_cuda()) os << ", device=" << device().str();
  os << ')';
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

}  // namespace tandem
