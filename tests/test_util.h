// Shared test helpers: the one tolerance policy, tensor comparison with useful
// failure messages, random inputs (drawn here with std::mt19937_64, not with the
// library's RNG), poisoning and float64 reference helpers; the skips are test_skip.h.
//
// Tolerance policy: |actual - ref| <= atol + rtol * |ref|, with a per-dtype table
// (PyTorch's defaults for float32, tighter for float64, exact for integers).
// A test loosens it only through scaled()/with_atol() and says why in a comment.
#pragma once

#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "op_records.h"
#include "test_skip.h"

namespace tt {

using tandem::Device;
using tandem::DType;
using tandem::Shape;
using tandem::Tensor;

// ---- Tolerances ----------------------------------------------------------------

struct Tol {
  double rtol;
  double atol;
};

inline Tol default_tol(DType t) {
  switch (t) {
    case DType::Float32:
      return {1.3e-6, 1e-5};
    case DType::Float64:
      return {1e-7, 1e-7};
    default:
      return {0.0, 0.0};  // integers are exact
  }
}
inline Tol exact() { return {0.0, 0.0}; }
inline Tol scaled(Tol t, double factor) { return {t.rtol * factor, t.atol * factor}; }
inline Tol with_atol(Tol t, double atol) { return {t.rtol, atol}; }

// Machine epsilon of a floating dtype (0 for integers).
inline double epsilon(DType t) {
  if (t == DType::Float32) return std::numeric_limits<float>::epsilon();
  if (t == DType::Float64) return std::numeric_limits<double>::epsilon();
  return 0.0;
}

inline std::vector<DType> float_dtypes() { return {tandem::kFloat32, tandem::kFloat64}; }
inline std::vector<DType> all_dtypes() {
  return {tandem::kFloat32, tandem::kFloat64, tandem::kInt32, tandem::kInt64, tandem::kUInt8};
}

// ---- Host copies ----------------------------------------------------------------

// Any tensor as float64 values. The conversion happens here rather than through
// the library's to(DType), so the checker does not lean on the code under test.
inline std::vector<double> to_doubles(const Tensor& t) {
  const Tensor c = t.is_cpu() ? t : t.cpu();
  std::vector<double> out;
  switch (c.dtype()) {
    case DType::Float32: {
      const auto v = tandem::to_vector<float>(c);
      out.assign(v.begin(), v.end());
      break;
    }
    case DType::Float64:
      out = tandem::to_vector<double>(c);
      break;
    case DType::Int32: {
      const auto v = tandem::to_vector<int32_t>(c);
      out.assign(v.begin(), v.end());
      break;
    }
    case DType::Int64: {
      const auto v = tandem::to_vector<int64_t>(c);
      out.assign(v.begin(), v.end());
      break;
    }
    case DType::UInt8: {
      const auto v = tandem::to_vector<uint8_t>(c);
      out.assign(v.begin(), v.end());
      break;
    }
  }
  return out;
}

// A CPU tensor of dtype `dt` holding `values` (cast here, element by element).
inline Tensor make_tensor(const std::vector<double>& values, const Shape& shape, DType dt) {
  switch (dt) {
    case DType::Float32:
      return tandem::from_vector(std::vector<float>(values.begin(), values.end()), shape);
    case DType::Float64:
      return tandem::from_vector(values, shape);
    case DType::Int32: {
      std::vector<int32_t> v(values.size());
      for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int32_t>(values[i]);
      return tandem::from_vector(v, shape);
    }
    case DType::Int64: {
      std::vector<int64_t> v(values.size());
      for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int64_t>(values[i]);
      return tandem::from_vector(v, shape);
    }
    case DType::UInt8: {
      std::vector<uint8_t> v(values.size());
      for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>(values[i]);
      return tandem::from_vector(v, shape);
    }
  }
  return Tensor();
}

// Each value rounded to float32 and back. Written through a float buffer on
// purpose: GCC 12.2 at -O3 miscompiles the loop form
//   out[i] = static_cast<float>(in[i]);   // out, in: double
// (the vectorised epilogue drops the rounding for some elements).
inline std::vector<double> round_to_float(const std::vector<double>& v) {
  const std::vector<float> f(v.begin(), v.end());
  return std::vector<double>(f.begin(), f.end());
}

inline int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

inline std::string str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

// Row-major strides (elements) of a shape.
inline std::vector<int64_t> strides_of(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (int64_t i = static_cast<int64_t>(s.size()) - 2; i >= 0; --i) st[i] = st[i + 1] * s[i + 1];
  return st;
}

inline std::vector<int64_t> unravel(int64_t flat, const Shape& s) {
  std::vector<int64_t> idx(s.size(), 0);
  for (int64_t d = static_cast<int64_t>(s.size()) - 1; d >= 0; --d) {
    if (s[d] == 0) return idx;
    idx[d] = flat % s[d];
    flat /= s[d];
  }
  return idx;
}

// ---- Comparison --------------------------------------------------------------------

// A float64 reference result: the shape it must have and its values.
struct Ref {
  Shape shape;
  std::vector<double> values;
};

inline bool value_close(double actual, double ref, Tol tol) {
  if (std::isnan(ref)) return std::isnan(actual);
  if (std::isnan(actual)) return false;
  if (std::isinf(ref) || std::isinf(actual)) return actual == ref;
  return std::fabs(actual - ref) <= tol.atol + tol.rtol * std::fabs(ref);
}

inline ::testing::AssertionResult values_close(const std::vector<double>& actual,
                                               const Shape& actual_shape,
                                               const std::vector<double>& ref,
                                               const Shape& ref_shape, Tol tol) {
  if (actual_shape != ref_shape) {
    return ::testing::AssertionFailure() << "shape " << str(actual_shape)
                                         << " differs from the reference shape " << str(ref_shape);
  }
  if (actual.size() != ref.size()) {
    return ::testing::AssertionFailure()
           << actual.size() << " values but the reference has " << ref.size();
  }
  int64_t mismatches = 0;
  double max_err = 0.0;
  int64_t max_err_at = -1;
  std::ostringstream first;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double err = std::fabs(actual[i] - ref[i]);
    if (!std::isnan(err) && err > max_err) {
      max_err = err;
      max_err_at = static_cast<int64_t>(i);
    }
    if (!value_close(actual[i], ref[i], tol)) {
      if (mismatches < 5) {
        first << "\n  at " << str(unravel(static_cast<int64_t>(i), actual_shape)) << " (flat " << i
              << "): actual " << actual[i] << ", reference " << ref[i];
      }
      ++mismatches;
    }
  }
  if (mismatches == 0) return ::testing::AssertionSuccess();
  std::ostringstream os;
  os.precision(10);
  os << mismatches << " of " << actual.size() << " values differ (rtol " << tol.rtol << ", atol "
     << tol.atol << "); max |error| " << max_err;
  if (max_err_at >= 0) os << " at flat index " << max_err_at;
  os << "; first mismatches:" << first.str();
  return ::testing::AssertionFailure() << os.str();
}

inline ::testing::AssertionResult tensors_close(const Tensor& actual, const Ref& ref, Tol tol) {
  if (!actual.defined()) return ::testing::AssertionFailure() << "actual tensor is undefined";
  return values_close(to_doubles(actual), actual.sizes(), ref.values, ref.shape, tol);
}
inline ::testing::AssertionResult tensors_close(const Tensor& actual, const Tensor& ref, Tol tol) {
  if (!actual.defined() || !ref.defined())
    return ::testing::AssertionFailure() << "undefined tensor in comparison";
  return values_close(to_doubles(actual), actual.sizes(), to_doubles(ref), ref.sizes(), tol);
}

// expect_close(actual, reference, tol): non-fatal, reports the caller's line.
inline void expect_close(const Tensor& actual, const Ref& ref, Tol tol,
                         const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  const auto r = tensors_close(actual, ref, tol);
  if (!r) ADD_FAILURE_AT(file, line) << r.message();
}
inline void expect_close(const Tensor& actual, const Tensor& ref, Tol tol,
                         const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  const auto r = tensors_close(actual, ref, tol);
  if (!r) ADD_FAILURE_AT(file, line) << r.message();
}
// Default tolerance of the reference tensor's dtype.
inline void expect_close(const Tensor& actual, const Tensor& ref,
                         const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  expect_close(actual, ref, default_tol(ref.dtype()), file, line);
}
// Bit-for-bit equal values (NaNs equal), same shape and dtype.
inline void expect_equal(const Tensor& actual, const Tensor& ref,
                         const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  if (actual.dtype() != ref.dtype()) {
    ADD_FAILURE_AT(file, line) << "dtype " << tandem::dtype_name(actual.dtype()) << " differs from "
                               << tandem::dtype_name(ref.dtype());
    return;
  }
  expect_close(actual, ref, exact(), file, line);
}

// Normalised mean squared error mse(a, ref) / mse(ref, 0), for big reductions.
inline double nmse(const std::vector<double>& a, const std::vector<double>& ref) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size() && i < ref.size(); ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  if (a.size() != ref.size()) return std::numeric_limits<double>::infinity();
  return den > 0.0 ? num / den : num;
}

// ---- Errors --------------------------------------------------------------------

// Runs fn, which must throw tandem::Error whose message contains every one of
// `substrings`. Reports the caller's line on failure.
inline void expect_error(const std::function<void()>& fn,
                         std::initializer_list<const char*> substrings,
                         const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  try {
    fn();
  } catch (const tandem::Error& e) {
    const std::string msg = e.message();
    const std::string what = e.what();
    for (const char* s : substrings) {
      if (msg.find(s) == std::string::npos) {
        ADD_FAILURE_AT(file, line)
            << "the message does not contain \"" << s << "\"\n  message: " << msg;
      }
    }
    if (what.find(msg) == std::string::npos) {
      ADD_FAILURE_AT(file, line) << "what() does not contain message(): " << what;
    }
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE_AT(file, line) << "threw a std::exception that is not tandem::Error: " << e.what();
    return;
  } catch (...) {
    ADD_FAILURE_AT(file, line) << "threw something that is not a std::exception";
    return;
  }
  ADD_FAILURE_AT(file, line) << "no exception was thrown";
}
inline void expect_error(const std::function<void()>& fn, const char* substring,
                         const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  expect_error(fn, {substring}, file, line);
}

// ---- Random inputs -------------------------------------------------------------

// One engine, reseeded for each test from TANDEM_TEST_SEED (or a fixed default)
// and the test's name, so a test's inputs do not depend on which tests ran first.
inline uint64_t base_seed() {
  const char* env = std::getenv("TANDEM_TEST_SEED");
  return env ? std::strtoull(env, nullptr, 10) : 0x5eed2024ULL;
}
inline std::mt19937_64& rng() {
  static std::mt19937_64 engine;
  static std::string seeded_for = "\x01";
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string name =
      info ? std::string(info->test_suite_name()) + "." + info->name() : std::string();
  if (name != seeded_for) {
    engine.seed(base_seed() ^ std::hash<std::string>{}(name));
    seeded_for = name;
  }
  return engine;
}

namespace detail {
// Every test also starts the library's default generator (nn init, dropout,
// tandem::rand without a generator) from a seed of its own, as rng(): its
// values do not depend on which tests ran before it (a filter, shuffling,
// ctest's one test per process) and TANDEM_TEST_SEED varies them.
class SeedDefaultGenerator : public ::testing::EmptyTestEventListener {
  void OnTestStart(const ::testing::TestInfo& info) override {
    const std::string name = std::string(info.test_suite_name()) + "." + info.name();
    tandem::manual_seed(base_seed() ^ std::hash<std::string>{}(name));
  }
};
inline const bool seed_default_generator_registered = [] {
  ::testing::UnitTest::GetInstance()->listeners().Append(new SeedDefaultGenerator);
  return true;
}();
}  // namespace detail

inline std::vector<double> uniform_values(int64_t n, double lo, double hi) {
  std::uniform_real_distribution<double> dist(lo, hi);
  auto& g = rng();
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(g);
  return v;
}
inline std::vector<double> int_values(int64_t n, int64_t lo, int64_t hi) {  // [lo, hi]
  std::uniform_int_distribution<int64_t> dist(lo, hi);
  auto& g = rng();
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<double>(dist(g));
  return v;
}

// Moves values closer than `margin` to any kink (e.g. 0 for relu/abs) out to
// kink +- margin, so the result does not hinge on how a tie is broken.
inline std::vector<double> away_from(std::vector<double> v, const std::vector<double>& kinks,
                                     double margin) {
  for (auto& x : v) {
    for (double k : kinks) {
      if (std::fabs(x - k) < margin) x = (x >= k) ? k + margin : k - margin;
    }
  }
  return v;
}

// Random tensor: floats uniform in [lo, hi), integers uniform in [lo, hi]
// (uint8 clipped to [0, 255]).
inline Tensor random_tensor(const Shape& shape, DType dt, double lo = -1.0, double hi = 1.0) {
  const int64_t n = numel_of(shape);
  if (tandem::is_floating(dt)) return make_tensor(uniform_values(n, lo, hi), shape, dt);
  int64_t ilo = static_cast<int64_t>(std::ceil(lo)), ihi = static_cast<int64_t>(std::floor(hi));
  if (dt == DType::UInt8) {
    ilo = std::max<int64_t>(ilo, 0);
    ihi = std::min<int64_t>(ihi, 255);
  }
  return make_tensor(int_values(n, ilo, ihi), shape, dt);
}

// Random floats with |x| in [min_abs, max_abs) and a random sign.
inline Tensor random_nonzero(const Shape& shape, DType dt, double min_abs, double max_abs) {
  auto v = uniform_values(numel_of(shape), min_abs, max_abs);
  std::bernoulli_distribution coin(0.5);
  for (auto& x : v)
    if (coin(rng())) x = -x;
  return make_tensor(v, shape, dt);
}

// ---- Poisoning -------------------------------------------------------------------

// Fills a tensor with NaN (floating) or a garbage pattern (integers) so that a
// kernel that skips elements is caught.
inline void poison(Tensor& t) {
  if (t.numel() == 0) return;
  if (tandem::is_floating(t.dtype())) {
    t.fill_(std::numeric_limits<double>::quiet_NaN());
  } else {
    t.fill_(t.dtype() == DType::UInt8 ? 0xA5 : -0x5A5A);
  }
}
// Allocates, poisons and frees a block of the given size, so that a caching
// allocator hands that poisoned block to the next allocation of the same size.
inline void poison_next_allocation(const Shape& shape, DType dt, Device dev) {
  Tensor t = tandem::empty(shape, tandem::TensorOptions(dt).device(dev));
  poison(t);
  if (dev.is_cuda()) tandem::cuda::synchronize();
}

// ---- Scratch files ---------------------------------------------------------------

// A fresh directory per use (mkdtemp), removed at the end: no fixed names
// under /tmp that parallel runs or a stale file from another user could share.
class ScratchDir {
 public:
  ScratchDir() {
    std::string templ = ::testing::TempDir() + "tandem_test_XXXXXX";
    if (::mkdtemp(&templ[0]) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = templ;
  }
  ~ScratchDir() {
    const int rc = std::system(("rm -rf '" + dir_ + "'").c_str());
    (void)rc;
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
};

// ---- Devices ---------------------------------------------------------------------

// The CPU and, where there is one, the CUDA device. Prefer a test
// parameterised over the device (its CUDA instance skips by name); a loop over
// devices() fails under TANDEM_REQUIRE_CUDA=1 without a device rather than
// silently losing its CUDA half.
inline std::vector<Device> devices() {
  std::vector<Device> d{Device(tandem::kCPU)};
  if (tandem::cuda::is_available()) {
    d.emplace_back(tandem::kCUDA, 0);
  } else if (cuda_required()) {
    ADD_FAILURE()
        << "TANDEM_REQUIRE_CUDA=1 but no CUDA device: the CUDA half of this test did not run";
  }
  return d;
}

// gtest's name of a device parameter: "cpu" or "cuda".
inline std::string device_param_name(const ::testing::TestParamInfo<Device>& param_info) {
  return param_info.param.is_cuda() ? "cuda" : "cpu";
}

}  // namespace tt

#if defined(TANDEM_EMU)
// Under the emulated device (src/emu) a test program fails when a checker
// reported something during a test (a race or an uninitialised read that
// happens to give the right numbers is still a defect): the listener names
// the tests, the environment's TearDown fails the program.
#include "emu/emu.h"
namespace tt::detail {
inline std::vector<std::string>& emu_tests_with_findings() {
  static std::vector<std::string> names;
  return names;
}
class EmuFindingsListener : public ::testing::EmptyTestEventListener {
  void OnTestStart(const ::testing::TestInfo&) override { tandem::emu::clear_findings(); }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    const auto found = tandem::emu::findings();
    if (found.empty()) return;
    std::string name = std::string(info.test_suite_name()) + "." + info.name();
    for (const auto& f : found) name += "\n    " + f.message;
    emu_tests_with_findings().push_back(name);
    tandem::emu::clear_findings();
  }
};
class EmuFindingsEnvironment : public ::testing::Environment {
  void TearDown() override {
    for (const auto& name : emu_tests_with_findings()) {
      ADD_FAILURE() << "the emulated device reported findings during " << name;
    }
  }
};
inline const bool emu_findings_check_registered = [] {
  ::testing::UnitTest::GetInstance()->listeners().Append(new EmuFindingsListener);
  ::testing::AddGlobalTestEnvironment(new EmuFindingsEnvironment);
  return true;
}();
}  // namespace tt::detail
#endif

// ---- float64 reference helpers -------------------------------------------------------
namespace tt {

// NumPy broadcast of two shapes (the reference version; empty optional = error).
inline bool broadcast_ref(const Shape& a, const Shape& b, Shape* out) {
  const size_t n = std::max(a.size(), b.size());
  out->assign(n, 1);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1) return false;
    (*out)[i] = da == 1 ? db : da;
  }
  return true;
}

// The flat index into an input of shape `in` (right-aligned, broadcast) of the
// output element with multi-index `out_idx`.
inline int64_t broadcast_index(const std::vector<int64_t>& out_idx, const Shape& in) {
  const size_t lead = out_idx.size() - in.size();
  int64_t flat = 0;
  for (size_t d = 0; d < in.size(); ++d) {
    flat = flat * in[d] + (in[d] == 1 ? 0 : out_idx[lead + d]);
  }
  return flat;
}

// Product of sizes in [begin, end).
inline int64_t prod(const Shape& s, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= s[i];
  return p;
}

// ---- Unary op records (op_records.h) ------------------------------------------------

// Inputs of `shape` for variant v: uniform in [lo, hi), away from the kinks.
inline Tensor record_input(const UnaryVariant& v, const Shape& shape, DType dt) {
  return make_tensor(away_from(uniform_values(numel_of(shape), v.lo, v.hi), v.kinks, kKinkMargin),
                     shape, dt);
}

// CPU (or CUDA) against the float64 reference.
inline Tol reference_tol(const UnaryRecord& r, DType dt) {
  return r.tol == TolClass::Exact ? exact() : default_tol(dt);
}
// CUDA against the CPU: the registry's policy (tandem::check::tolerance).
inline Tol parity_tol(const UnaryRecord& r, DType dt) {
  const tandem::check::Tolerance t =
      tandem::check::tolerance(r.tol, dt, tandem::check::Against::Device);
  return {t.rtol, t.atol};
}

// Operands of shapes sa and sb for a binary op's record (see BinaryDomain).
struct BinaryOperands {
  Tensor a, b;
};
inline BinaryOperands binary_operands(const BinaryRecord& r, DType dt, const Shape& sa,
                                      const Shape& sb) {
  if (r.domain == BinaryDomain::Ties) {
    auto grid = [&](const Shape& s) {
      auto v = int_values(numel_of(s), 0, 4);
      if (tandem::is_floating(dt))
        for (auto& x : v) x = (x - 2.0) * 0.5;  // -1, -0.5, 0, 0.5, 1
      return make_tensor(v, s, dt);
    };
    return {grid(sa), grid(sb)};
  }
  if (dt == DType::UInt8) return {random_tensor(sa, dt, 8, 15), random_tensor(sb, dt, 1, 4)};
  const bool divisor = r.domain == BinaryDomain::Divisor;
  if (!tandem::is_floating(dt)) {
    if (divisor) return {random_tensor(sa, dt, 0, 100), random_tensor(sb, dt, 1, 9)};
    return {random_tensor(sa, dt, -50, 50), random_tensor(sb, dt, -50, 50)};
  }
  if (divisor) return {random_tensor(sa, dt, -2, 2), random_nonzero(sb, dt, 0.25, 2.0)};
  return {random_tensor(sa, dt, -2, 2), random_tensor(sb, dt, -2, 2)};
}

// The scalar forms: a tensor operand and the scalars on the right (a op s)
// and on the left (s op a), exactly representable in every dtype, keeping
// uint8 in range and integer division on positive values.
struct ScalarOperands {
  Tensor a;
  double right, left;
};
inline ScalarOperands scalar_operands(const BinaryRecord& r, DType dt, const Shape& shape) {
  const bool integral = !tandem::is_floating(dt);
  if (r.domain == BinaryDomain::Ties) {
    return {binary_operands(r, dt, shape, {}).a, integral ? 2.0 : 0.5, integral ? 2.0 : 0.5};
  }
  if (dt == DType::UInt8) return {random_tensor(shape, dt, 2.0, 15.0), 2.0, 16.0};
  const bool divisor = r.domain == BinaryDomain::Divisor;
  if (integral) {
    return {divisor ? random_tensor(shape, dt, 1.0, 100.0) : random_tensor(shape, dt, -50.0, 50.0),
            3.0, 7.0};
  }
  // s / a needs a != 0.
  return {divisor ? random_nonzero(shape, dt, 0.25, 2.0) : random_tensor(shape, dt, -2.0, 2.0),
          0.75, -1.5};
}

}  // namespace tt
