// Gradients of every differentiable op (tests/grad_cases.h): gradcheck in
// float64 on the CPU, and the CUDA backward against the CPU backward. Also the
// gradcheck utility itself: it must pass correct gradients and catch wrong ones.
#include <gtest/gtest.h>
#include <tandem/check.h>
#include <tandem/tandem.h>

#include <algorithm>
#include <functional>
#include <string>

#include "autograd/record.h"
#include "grad_cases.h"
#include "test_util.h"

namespace {

using namespace tandem;  // NOLINT
using tt::GradCase;

// A registry record's inputs: its specs, the domain cut to [-2, 2] where it
// overlaps it (finite differences of exp(20) say little), a seed from the name.
std::vector<Tensor> draw_record_inputs(const tandem::check::OpRecord& rec, DType dt) {
  tandem::check::OpRecord r = rec;
  for (tandem::check::InputSpec& s : r.inputs)
    if (s.lo < 2.0 && s.hi > -2.0) {  // a domain away from [-2, 2] (x ~ 100) stays
      s.lo = std::max(s.lo, -2.0);
      s.hi = std::min(s.hi, 2.0);
    }
  std::vector<Tensor> inputs = tandem::check::draw_inputs(r, dt, std::hash<std::string>()(r.name));
  for (size_t i = 0; i < inputs.size(); ++i)
    if (r.inputs[i].requires_grad && r.inputs[i].int_values.empty())
      inputs[i].set_requires_grad(true);
  return inputs;
}

std::vector<Tensor> draw_inputs(const GradCase& c, DType dt) {
  if (c.record) return draw_record_inputs(*c.record, dt);
  std::vector<Tensor> inputs;
  for (const tt::GradInput& in : c.inputs) {
    Tensor t = tt::draw_input(in, dt);
    if (in.requires_grad) t.set_requires_grad(true);
    inputs.push_back(t);
  }
  return inputs;
}

class GradcheckOps : public ::testing::TestWithParam<GradCase> {};

TEST_P(GradcheckOps, MatchesFiniteDifferencesCpuFloat64) {
  const GradCase& c = GetParam();
  const std::vector<Tensor> inputs = draw_inputs(c, kFloat64);
  const autograd::GradcheckResult r = autograd::gradcheck(c.fn, inputs);
  EXPECT_TRUE(r.ok) << c.name << "\n" << r.report();
  for (const auto& rep : r.inputs) EXPECT_GT(rep.checked, 0) << c.name;
}

// The CUDA backward against the CPU backward on the same inputs, in float64
// (tight) and float32 (the usual tolerances, loosened for GEMM and reductions).
TEST_P(GradcheckOps, CudaBackwardMatchesCpu) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const GradCase& c = GetParam();
  for (DType dt : {kFloat64, kFloat32}) {
    SCOPED_TRACE(dtype_name(dt));
    const std::vector<Tensor> cpu_inputs = draw_inputs(c, dt);
    std::vector<Tensor> cuda_inputs, wrt_cpu, wrt_cuda;
    for (const Tensor& t : cpu_inputs) {
      Tensor d = t.detach().to(Device(kCUDA));
      if (t.requires_grad()) {
        d.set_requires_grad(true);
        wrt_cpu.push_back(t);
        wrt_cuda.push_back(d);
      }
      cuda_inputs.push_back(d);
    }
    const Tensor y_cpu = c.fn(cpu_inputs);
    const Tensor y_cuda = c.fn(cuda_inputs);
    const Tensor g = tt::random_tensor(y_cpu.sizes(), dt);
    const auto grads_cpu = autograd::grad({y_cpu}, wrt_cpu, {g}, false, true);
    const auto grads_cuda = autograd::grad({y_cuda}, wrt_cuda, {g.to(Device(kCUDA))}, false, true);
    const tt::Tol tol = dt == kFloat64 ? tt::scaled(tt::default_tol(dt), 100.0)
                                       : tt::scaled(tt::default_tol(dt), 20.0);  // GEMM, sums
    tt::expect_close(y_cuda, y_cpu, tol);
    ASSERT_EQ(grads_cpu.size(), grads_cuda.size());
    for (size_t i = 0; i < grads_cpu.size(); ++i) {
      SCOPED_TRACE("input " + std::to_string(i));
      ASSERT_EQ(grads_cpu[i].defined(), grads_cuda[i].defined());
      if (grads_cpu[i].defined()) tt::expect_close(grads_cuda[i], grads_cpu[i], tol);
    }
  }
}

std::string case_name(const ::testing::TestParamInfo<GradCase>& param_info) {
  std::string name = param_info.param.name;
  for (char& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(AllOps, GradcheckOps, ::testing::ValuesIn(tt::grad_cases()), case_name);

// ---- The checker itself ---------------------------------------------------------------

// y = x^2 recorded with a deliberately wrong derivative (3x instead of 2x).
Tensor wrong_square(const Tensor& x) {
  Tensor y;
  {
    NoGradGuard no_grad;
    y = x * x;
  }
  autograd::record(y, "wrong_square", {x}, {x}, [](const Tensor& g, const std::vector<Tensor>& s) {
    return std::vector<Tensor>{g * 3.0 * s[0]};
  });
  return y;
}

TEST(Gradcheck, CatchesAWrongBackwardFormula) {
  const Tensor x = tt::random_nonzero({4, 3}, kFloat64, 0.5, 2.0).set_requires_grad(true);
  const auto r =
      autograd::gradcheck([](const std::vector<Tensor>& in) { return wrong_square(in[0]); }, {x});
  EXPECT_FALSE(r.ok);
  ASSERT_EQ(r.inputs.size(), 1u);
  EXPECT_GT(r.inputs[0].max_error, 0.1);
  EXPECT_NE(r.report().find("FAILED"), std::string::npos) << r.report();
}

TEST(Gradcheck, PassesAndReportsOnlyInputsThatRequireGrad) {
  const Tensor a = tt::random_tensor({3, 4}, kFloat64).set_requires_grad(true);
  const Tensor b = tt::random_tensor({3, 4}, kFloat64);  // a constant
  const auto r = autograd::gradcheck(
      [](const std::vector<Tensor>& in) { return (tanh(in[0]) * in[1]).sum(); }, {a, b});
  EXPECT_TRUE(r.ok) << r.report();
  ASSERT_EQ(r.inputs.size(), 1u);
  EXPECT_EQ(r.inputs[0].input, 0u);
  EXPECT_EQ(r.inputs[0].checked, 12);
  EXPECT_LT(r.inputs[0].max_error, 1e-8);
  EXPECT_NE(r.report().find("gradcheck: ok"), std::string::npos);
}

TEST(Gradcheck, SkipsElementsNearAKink) {
  const Tensor x =
      tt::make_tensor({-1.0, 0.0, 1e-9, 0.5, 2.0}, {5}, kFloat64).set_requires_grad(true);
  autograd::GradcheckOptions opt;
  opt.kink = 0.0;
  opt.kink_range = 1e-3;
  const auto r =
      autograd::gradcheck([](const std::vector<Tensor>& in) { return relu(in[0]); }, {x}, opt);
  EXPECT_TRUE(r.ok) << r.report();
  EXPECT_EQ(r.inputs[0].skipped, 2);
  EXPECT_EQ(r.inputs[0].checked, 3);
}

TEST(Gradcheck, RejectsBadInputs) {
  const Tensor f32 = randn({3}).set_requires_grad(true);
  tt::expect_error(
      [&] {
        autograd::gradcheck([](const std::vector<Tensor>& in) { return in[0].sum(); }, {f32});
      },
      "gradcheck: input 0 is float32[3]");
  const Tensor plain = randn({3}, kFloat64);
  tt::expect_error(
      [&] {
        autograd::gradcheck([](const std::vector<Tensor>& in) { return in[0].sum(); }, {plain});
      },
      "gradcheck: no input requires grad");
  const Tensor x = randn({3}, kFloat64).set_requires_grad(true);
  tt::expect_error(
      [&] {
        autograd::gradcheck([](const std::vector<Tensor>& in) { return in[0].to(kFloat32).sum(); },
                            {x});
      },
      "gradcheck: fn returned float32[]");
  autograd::GradcheckOptions bad;
  bad.eps = 0.0;
  tt::expect_error(
      [&] {
        autograd::gradcheck([](const std::vector<Tensor>& in) { return in[0].sum(); }, {x}, bad);
      },
      "gradcheck: eps must be positive");
}

}  // namespace
