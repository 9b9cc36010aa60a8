// Initialisers (PyTorch's torch.nn.init formulas). Each writes in place under
// NoGradGuard, so parameters that require grad can be (re)initialised.
#include "tandem/nn/init.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/checks.h"
#include "tandem/autograd.h"
#include "tandem/ops.h"

namespace tandem {
namespace nn {
namespace init {

namespace {

Tensor fill_from(Tensor t, const Tensor& values) {
  NoGradGuard no_grad;
  t.copy_(values);
  return t;
}

void check_init(const char* op, const Tensor& t) {
  detail::check_defined(op, t);
  detail::check_floating(op, t);
}

double fan_of(const Tensor& t, FanMode mode) {
  const auto fans = calculate_fan_in_and_fan_out(t);
  return static_cast<double>(mode == FanMode::FanIn ? fans.first : fans.second);
}

TensorOptions options_of(const Tensor& t) { return TensorOptions(t.dtype()).device(t.device()); }

}  // namespace

double calculate_gain(Nonlinearity nonlinearity, double param) {
  switch (nonlinearity) {
    case Nonlinearity::Tanh:
      return 5.0 / 3.0;
    case Nonlinearity::ReLU:
      return std::sqrt(2.0);
    case Nonlinearity::LeakyReLU:
      return std::sqrt(2.0 / (1.0 + param * param));
    default:  // Linear, Sigmoid
      return 1.0;
  }
}

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  detail::check_defined("calculate_fan_in_and_fan_out", t);
  TANDEM_CHECK(t.dim() >= 2,
               "calculate_fan_in_and_fan_out: fans need a tensor of at least 2 dims, "
               "got ",
               shape_str(t.sizes()));
  const int64_t receptive = detail::prod(t.sizes(), 2, t.dim());
  return {t.size(1) * receptive, t.size(0) * receptive};
}

Tensor zeros_(Tensor t) { return constant_(std::move(t), 0.0); }
Tensor ones_(Tensor t) { return constant_(std::move(t), 1.0); }
Tensor constant_(Tensor t, double value) {
  detail::check_defined("constant_", t);
  NoGradGuard no_grad;
  t.fill_(value);
  return t;
}

Tensor uniform_(Tensor t, double a, double b, Generator* gen) {
  check_init("uniform_", t);
  TANDEM_CHECK(std::isfinite(a) && std::isfinite(b) && a <= b,
               "uniform_: need finite bounds a <= b, got a=", a, " b=", b);
  return fill_from(t, uniform(t.sizes(), a, b, options_of(t), gen));
}

Tensor normal_(Tensor t, double mean, double std, Generator* gen) {
  check_init("normal_", t);
  TANDEM_CHECK(std::isfinite(mean) && std::isfinite(std) && std >= 0.0,
               "normal_: need a finite mean and std >= 0, got mean=", mean, " std=", std);
  return fill_from(t, normal(t.sizes(), mean, std, options_of(t), gen));
}

Tensor kaiming_uniform_(Tensor t, double a, FanMode mode, Nonlinearity nonlinearity,
                        Generator* gen) {
  check_init("kaiming_uniform_", t);
  if (t.numel() == 0) return t;  // fans may be 0; nothing to fill (PyTorch: a no-op)
  const double std = calculate_gain(nonlinearity, a) / std::sqrt(fan_of(t, mode));
  const double bound = std::sqrt(3.0) * std;
  return uniform_(t, -bound, bound, gen);
}

Tensor kaiming_normal_(Tensor t, double a, FanMode mode, Nonlinearity nonlinearity,
                       Generator* gen) {
  check_init("kaiming_normal_", t);
  if (t.numel() == 0) return t;
  return normal_(t, 0.0, calculate_gain(nonlinearity, a) / std::sqrt(fan_of(t, mode)), gen);
}

Tensor xavier_uniform_(Tensor t, double gain, Generator* gen) {
  check_init("xavier_uniform_", t);
  if (t.numel() == 0) return t;
  const auto fans = calculate_fan_in_and_fan_out(t);
  const double std = gain * std::sqrt(2.0 / static_cast<double>(fans.first + fans.second));
  const double bound = std::sqrt(3.0) * std;
  return uniform_(t, -bound, bound, gen);
}

Tensor xavier_normal_(Tensor t, double gain, Generator* gen) {
  check_init("xavier_normal_", t);
  if (t.numel() == 0) return t;
  const auto fans = calculate_fan_in_and_fan_out(t);
  return normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(fans.first + fans.second)),
                 gen);
}

Tensor dirac_(Tensor t, int64_t groups) {
  check_init("dirac_", t);
  TANDEM_CHECK(t.dim() >= 3 && t.dim() <= 5, "dirac_: needs a conv weight of 3 to 5 dims, got ",
               shape_str(t.sizes()));
  TANDEM_CHECK(groups > 0 && t.size(0) % groups == 0, "dirac_: dim 0 (", t.size(0),
               ") must be divisible by groups ", groups);
  const int64_t out_per_group = t.size(0) / groups, in = t.size(1);
  const int64_t receptive = t.numel() / std::max<int64_t>(t.size(0) * in, 1);
  // The centre of the kernel window, as an offset into its k... elements.
  int64_t centre = 0;
  for (int64_t d = 2; d < t.dim(); ++d) centre = centre * t.size(d) + t.size(d) / 2;
  std::vector<double> values(static_cast<size_t>(t.numel()), 0.0);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t d = 0; d < std::min(out_per_group, in); ++d) {
      const int64_t row = g * out_per_group + d;
      values[static_cast<size_t>((row * in + d) * receptive + centre)] = 1.0;
    }
  }
  return fill_from(t, from_vector(values, t.sizes()).to(t.device(), t.dtype()));
}

void normal_weights_(Module& m, double weight_scale, Generator* gen) {
  TANDEM_CHECK(weight_scale >= 0.0, "normal_weights_: weight_scale must be >= 0, got ",
               weight_scale);
  for (auto& kv : m.named_parameters()) {
    const std::string& name = kv.first;
    const std::string last =
        name.substr(name.rfind('.') == std::string::npos ? 0 : name.rfind('.') + 1);
    if (last == "weight") normal_(kv.second, 0.0, weight_scale, gen);
    if (last == "bias") zeros_(kv.second);
  }
}

}  // namespace init
}  // namespace nn
}  // namespace tandem
