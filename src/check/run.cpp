// Running the op registry (tandem/check.h): inputs drawn from a record's
// specs, the forward and backward on a device against the CPU (or the CPU
// against the float64 reference and finite differences), one CheckRow per
// comparison. `tandem check` and the registry tests call run_check.
#include <tandem/autograd.h>
#include <tandem/check.h>
#include <tandem/cuda.h>
#include <tandem/gradcheck.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <sstream>

namespace tandem::check {
namespace {

Tolerance base(DType dt) {
  if (dt == kFloat32) return {1.3e-6, 1e-5};
  if (dt == kFloat64) return {1e-7, 1e-7};
  return {0.0, 0.0};  // integers and masks are exact
}
Tolerance scaled(Tolerance t, double f) { return {t.rtol * f, t.atol * f}; }

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string shape_text(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

// max |a - b| and max |a - b| / |b| where b != 0; pass when every element is
// within atol + rtol |b| (NaN matches NaN, inf matches the same inf).
void compare(const Array& a, const Array& b, CheckRow& row) {
  if (a.shape != b.shape) {
    row.error = "shape " + shape_text(a.shape) + ", expected " + shape_text(b.shape);
    return;
  }
  row.pass = true;
  for (size_t i = 0; i < a.v.size(); ++i) {
    const double x = a.v[i], y = b.v[i];
    if (std::isnan(x) || std::isnan(y) || std::isinf(x) || std::isinf(y)) {
      const bool same = (std::isnan(x) && std::isnan(y)) || x == y;
      if (!same) {
        row.pass = false;
        row.max_abs = std::numeric_limits<double>::infinity();
      }
      continue;
    }
    const double d = std::fabs(x - y);
    row.max_abs = std::max(row.max_abs, d);
    if (y != 0.0) row.max_rel = std::max(row.max_rel, d / std::fabs(y));
    if (d > row.tol.atol + row.tol.rtol * std::fabs(y)) row.pass = false;
  }
}

// Moments of a sample against {mean, var}: within 8 standard errors.
void compare_moments(const Array& sample, const Array& expected, CheckRow& row) {
  const double n = double(sample.v.size());
  double m = 0.0, v = 0.0;
  for (double x : sample.v) m += x;
  m /= n;
  for (double x : sample.v) v += (x - m) * (x - m);
  v /= n - 1.0;
  const double var = expected.v[1];
  row.tol = {0.0, 8.0 * std::max(var, std::sqrt(var)) / std::sqrt(n)};
  row.max_abs = std::max(std::fabs(m - expected.v[0]), std::fabs(v - var));
  row.max_rel = row.max_abs / std::max(std::fabs(expected.v[0]), var);
  row.pass = row.max_abs <= row.tol.atol;
}

}  // namespace

bool record_matches(const OpRecord& r, const std::string& pattern) {
  if (pattern.empty()) return true;
  std::stringstream ss(pattern);
  std::string part;
  while (std::getline(ss, part, ','))
    if (!part.empty() && (r.op.find(part) != std::string::npos ||
                          r.name.find(part) != std::string::npos || r.family == part))
      return true;
  return false;
}

namespace {

CheckRow make_row(const OpRecord& r, DType dt, const std::string& what) {
  CheckRow row;
  row.name = r.name;
  row.dtype = dtype_name(dt);
  row.shape = r.inputs.empty() ? "[]" : shape_text(r.inputs[0].shape);
  row.what = what;
  return row;
}

// The float inputs that require grad, made leaves that do.
std::vector<Tensor> leaves(const OpRecord& r, std::vector<Tensor>& inputs) {
  std::vector<Tensor> wrt;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (r.inputs[i].requires_grad && r.inputs[i].int_values.empty()) {
      inputs[i] = inputs[i].detach().set_requires_grad(true);
      wrt.push_back(inputs[i]);
    }
  return wrt;
}

std::vector<Tensor> to_device(const std::vector<Tensor>& xs, Device d) {
  std::vector<Tensor> out;
  for (const Tensor& x : xs) out.push_back(x.to(d));
  return out;
}

// A freed block of the output's size filled with NaN (integers: 0x5a bytes),
// which the caching allocator hands to the op's output next: an element the
// op does not write shows up as a mismatch.
void poison_next_output(const Tensor& like, Device d) {
  if (like.numel() == 0) return;
  Tensor p = empty(like.sizes(), TensorOptions(like.dtype()).device(d));
  p.fill_(is_floating(like.dtype()) ? std::numeric_limits<double>::quiet_NaN() : 90.0);
}

template <typename F>
void guarded(CheckRow& row, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    row.pass = false;
    row.error = e.what();
    const size_t nl = row.error.find('\n');
    if (nl != std::string::npos) row.error.resize(nl);
  }
}

void forward_vs_cpu(const OpRecord& r, DType dt, const CheckOptions& o,
                    std::vector<CheckRow>& rows) {
  CheckRow row = make_row(r, dt, "forward");
  guarded(row, [&] {
    const std::vector<Tensor> cpu = draw_inputs(r, dt, o.seed ^ fnv1a(r.name));
    const Tensor y_cpu = r.fn(cpu);
    const std::vector<Tensor> dev = to_device(cpu, o.device);
    poison_next_output(y_cpu, o.device);
    const Tensor y_dev = r.fn(dev);
    TANDEM_CHECK(y_dev.device() == o.device, "check: ", r.name, " returned a tensor on ",
                 y_dev.device().str(), ", not on ", o.device.str());
    row.tol = tolerance(r.tol, y_cpu.dtype(), Against::Device);
    compare(to_array(y_dev), to_array(y_cpu), row);
  });
  rows.push_back(row);
}

void backward_vs_cpu(const OpRecord& r, DType dt, const CheckOptions& o,
                     std::vector<CheckRow>& rows) {
  CheckRow row = make_row(r, dt, "backward");
  guarded(row, [&] {
    std::vector<Tensor> cpu = draw_inputs(r, dt, o.seed ^ fnv1a(r.name));
    std::vector<Tensor> dev = to_device(cpu, o.device);
    const std::vector<Tensor> wrt_cpu = leaves(r, cpu), wrt_dev = leaves(r, dev);
    const Tensor y_cpu = r.fn(cpu), y_dev = r.fn(dev);
    std::mt19937_64 rng(o.seed ^ fnv1a(r.name + "/grad"));
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    std::vector<double> gv(static_cast<size_t>(y_cpu.numel()));
    for (double& x : gv) x = u(rng);
    const Tensor g = from_vector<double>(gv, y_cpu.sizes()).to(y_cpu.dtype());
    const auto gc = autograd::grad({y_cpu}, wrt_cpu, {g}, false, true);
    const auto gd = autograd::grad({y_dev}, wrt_dev, {g.to(o.device)}, false, true);
    row.tol = backward_tolerance(r.tol, dt);
    row.pass = true;
    for (size_t i = 0; i < gc.size(); ++i) {
      TANDEM_CHECK(gc[i].defined() == gd[i].defined(), "check: ", r.name, ": input ", i,
                   " has a gradient on one device only");
      if (!gc[i].defined()) continue;
      CheckRow one = row;
      one.max_abs = one.max_rel = 0.0;
      compare(to_array(gd[i]), to_array(gc[i]), one);
      row.max_abs = std::max(row.max_abs, one.max_abs);
      row.max_rel = std::max(row.max_rel, one.max_rel);
      row.pass = row.pass && one.pass;
      if (!one.error.empty()) row.error = one.error;
    }
  });
  rows.push_back(row);
}

void forward_vs_reference(const OpRecord& r, DType dt, const CheckOptions& o,
                          std::vector<CheckRow>& rows) {
  CheckRow row = make_row(r, dt, "forward vs float64");
  guarded(row, [&] {
    const std::vector<Tensor> in = draw_inputs(r, dt, o.seed ^ fnv1a(r.name));
    std::vector<Array> arrays;
    for (const Tensor& t : in) arrays.push_back(to_array(t));
    const Tensor y = r.fn(in);
    const Array expected = r.ref(arrays);
    if (r.tol == TolClass::Statistical) {
      compare_moments(to_array(y), expected, row);
    } else {
      row.tol = tolerance(r.tol, y.dtype(), Against::Reference);
      compare(to_array(y), expected, row);
    }
  });
  rows.push_back(row);
}

// Finite differences in float64 on the CPU (skipped for inputs of more than
// 4096 elements: two forward calls per element), on the record's domain cut
// to [-2, 2] (finite differences of exp(20) say little).
void backward_gradcheck(const OpRecord& full, const CheckOptions& o, std::vector<CheckRow>& rows) {
  OpRecord r = full;
  for (InputSpec& s : r.inputs)
    if (s.lo < 2.0 && s.hi > -2.0) {  // a domain away from [-2, 2] (x ~ 100) stays
      s.lo = std::max(s.lo, -2.0);
      s.hi = std::min(s.hi, 2.0);
    }
  int64_t n = 0;
  for (const InputSpec& s : r.inputs)
    if (s.requires_grad) {
      int64_t e = 1;
      for (int64_t d : s.shape) e *= d;
      n += e;
    }
  if (n > 4096) return;
  CheckRow row = make_row(r, kFloat64, "backward (gradcheck)");
  guarded(row, [&] {
    std::vector<Tensor> in = draw_inputs(r, kFloat64, o.seed ^ fnv1a(r.name));
    leaves(r, in);
    autograd::GradcheckOptions go;
    const autograd::GradcheckResult g = autograd::gradcheck(r.fn, in, go);
    row.tol = {go.tolerance, 0.0};
    for (const auto& rep : g.inputs) row.max_rel = std::max(row.max_rel, rep.max_error);
    row.pass = g.ok;
  });
  rows.push_back(row);
}

}  // namespace

const char* tol_class_name(TolClass c) {
  switch (c) {
    case TolClass::Exact:
      return "exact";
    case TolClass::Rounding:
      return "rounding";
    case TolClass::Transcendental:
      return "transcendental";
    case TolClass::Accumulate:
      return "accumulate";
    case TolClass::Gemm:
      return "gemm";
    case TolClass::Statistical:
      return "statistical";
  }
  return "?";
}

const std::vector<DType>& all_dtypes() {
  static const std::vector<DType> all = {kFloat32, kFloat64, kInt32, kInt64, kUInt8};
  return all;
}

Tolerance tolerance(TolClass c, DType dt, Against against) {
  const Tolerance b = base(dt);
  const bool dev = against == Against::Device;
  switch (c) {
    case TolClass::Exact:
      return {0.0, 0.0};
    case TolClass::Rounding:
      return b;
    case TolClass::Transcendental:
    case TolClass::Statistical:  // the same Philox stream on both devices
      return dev ? scaled(b, 4.0) : b;
    case TolClass::Accumulate:
    case TolClass::Gemm:
      // Blocked and tree sums against a sequential one; float64: 100x (the
      // references add in a different order too).
      return scaled(b, dt == kFloat64 ? 100.0 : 20.0);
  }
  return b;
}

Tolerance backward_tolerance(TolClass c, DType dt) {
  (void)c;  // every backward is a chain of sums and products
  return scaled(base(dt), dt == kFloat64 ? 100.0 : 20.0);
}

std::vector<Tensor> draw_inputs(const OpRecord& r, DType dt, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Tensor> out;
  for (const InputSpec& s : r.inputs) {
    if (!s.int_values.empty()) {
      out.push_back(from_vector<int64_t>(s.int_values, s.shape));
      continue;
    }
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    const int64_t pad = s.offset_view ? 3 : 0;
    std::vector<double> v(static_cast<size_t>(n + pad));
    std::uniform_real_distribution<double> u(s.lo, s.hi);
    for (double& x : v) {
      if (s.grid > 0.0) {
        const int64_t steps = static_cast<int64_t>(std::floor((s.hi - s.lo) / s.grid));
        x = s.lo + s.grid * double(std::uniform_int_distribution<int64_t>(0, steps)(rng));
        continue;
      }
      x = u(rng);
      if (s.away_from_zero) {
        x = std::uniform_real_distribution<double>(std::max(s.lo, 0.2), s.hi)(rng);
        if (rng() & 1) x = -x;
      }
      for (double k : s.kinks)
        if (std::fabs(x - k) < kKinkMargin) x = x < k ? k - kKinkMargin : k + kKinkMargin;
    }
    if (!is_floating(dt)) {  // integers in [lo, hi]; uint8 cut to [0, 255]
      const double lo = std::ceil(dt == kUInt8 ? std::max(s.lo, 0.0) : s.lo);
      const double hi = std::floor(dt == kUInt8 ? std::min(s.hi, 255.0) : s.hi);
      std::uniform_int_distribution<int64_t> ui(static_cast<int64_t>(lo),
                                                static_cast<int64_t>(std::max(lo, hi)));
      for (double& x : v) x = double(ui(rng));
    }
    Tensor t;
    if (dt == kFloat32) {
      t = from_vector<float>(std::vector<float>(v.begin(), v.end()), {n + pad});
    } else {
      t = from_vector<double>(v, {n + pad});
      if (dt != kFloat64) t = t.to(dt);  // integral values: exact
    }
    if (pad) t = t.narrow(0, pad, n);  // an offset into the storage
    out.push_back(t.view(s.shape));
  }
  return out;
}

Array to_array(const Tensor& t0) {
  const Tensor t = t0.detach().cpu();
  Array a{t.sizes(), {}};
  switch (t.dtype()) {
    case DType::Float32: {
      const auto v = to_vector<float>(t);
      a.v.assign(v.begin(), v.end());
      break;
    }
    case DType::Float64:
      a.v = to_vector<double>(t);
      break;
    case DType::Int32: {
      const auto v = to_vector<int32_t>(t);
      a.v.assign(v.begin(), v.end());
      break;
    }
    case DType::Int64: {
      const auto v = to_vector<int64_t>(t);
      a.v.assign(v.begin(), v.end());
      break;
    }
    case DType::UInt8: {
      const auto v = to_vector<uint8_t>(t);
      a.v.assign(v.begin(), v.end());
      break;
    }
  }
  return a;
}

std::vector<CheckRow> check_record(const OpRecord& r, const CheckOptions& o) {
  std::vector<CheckRow> rows;
  for (DType dt : o.dtypes) {
    if (std::find(r.dtypes.begin(), r.dtypes.end(), dt) == r.dtypes.end()) continue;
    if (o.device.is_cpu()) {
      forward_vs_reference(r, dt, o, rows);
      if (r.differentiable && dt == kFloat64) backward_gradcheck(r, o, rows);
    } else {
      forward_vs_cpu(r, dt, o, rows);
      if (r.differentiable && is_floating(dt)) backward_vs_cpu(r, dt, o, rows);
    }
  }
  return rows;
}

std::vector<CheckRow> run_check(const CheckOptions& o,
                                const std::function<void(const CheckRow&)>& on_row) {
  std::vector<CheckRow> rows;
  for (const OpRecord& r : op_records()) {
    if (!record_matches(r, o.pattern) || (o.quick && !r.quick)) continue;
    for (const CheckRow& row : check_record(r, o)) {
      if (on_row) on_row(row);
      rows.push_back(row);
    }
  }
  return rows;
}

}  // namespace tandem::check
