// The modules of nn/conv.h: thin wrappers over conv2d, the pooling ops and
// batch_norm (src/ops/conv.cpp) that own parameters and buffers and check
// their input's shape against their configuration, naming themselves.
#include "tandem/nn/conv.h"

#include <cmath>
#include <sstream>

#include "core/checks.h"
#include "tandem/autograd.h"
#include "tandem/nn/init.h"

namespace tandem {
namespace nn {

namespace {

template <typename M>
std::string describe_module(const M& m) {
  std::ostringstream os;
  m.pretty_print(os);
  return os.str();
}

// [N, C, H, W] (or [C, H, W]) with the given channel count.
void check_image_input(const Module& m, const std::string& who, const Tensor& input,
                       int64_t channels) {
  detail::check_defined(m.type_name().c_str(), input);
  if (input.dim() == 4 || input.dim() == 3) {
    const int64_t c = input.size(input.dim() - 3);
    if (channels < 0 || c == channels) return;
    TANDEM_FAIL(who, ": expected input with ", channels, " channels ([N, ", channels,
                ", H, W]), got ", shape_str(input.sizes()));
  }
  TANDEM_FAIL(who, ": expected a 4-D input [N, C, H, W] (or 3-D [C, H, W]), got ",
              shape_str(input.sizes()));
}

}  // namespace

// ---- Conv2d --------------------------------------------------------------------------

Conv2dImpl::Conv2dImpl(const Conv2dOptions& opts) : Module("Conv2d"), options(opts) {
  const int64_t in = options.in_channels(), out = options.out_channels(), g = options.groups();
  TANDEM_CHECK(in > 0 && out > 0, "Conv2d: in_channels and out_channels must be positive, got ", in,
               " and ", out);
  TANDEM_CHECK(g > 0 && in % g == 0 && out % g == 0, "Conv2d: in_channels ", in,
               " and out_channels ", out, " must be divisible by groups ", g);
  const Size2 k = options.kernel_size(), st = options.stride(), p = options.padding(),
              d = options.dilation();
  TANDEM_CHECK(k.h > 0 && k.w > 0, "Conv2d: kernel_size must be positive, got ", k);
  TANDEM_CHECK(st.h > 0 && st.w > 0, "Conv2d: stride must be positive, got ", st);
  TANDEM_CHECK(p.h >= 0 && p.w >= 0, "Conv2d: padding must be >= 0, got ", p);
  TANDEM_CHECK(d.h > 0 && d.w > 0, "Conv2d: dilation must be positive, got ", d);
  weight = register_parameter("weight", empty({out, in / g, k.h, k.w}));
  if (options.bias()) bias = register_parameter("bias", empty({out}));
  reset_parameters();
}

void Conv2dImpl::reset_parameters(Generator* gen) {
  init::kaiming_uniform_(weight, std::sqrt(5.0), init::FanMode::FanIn,
                         init::Nonlinearity::LeakyReLU, gen);
  if (bias.defined()) {
    const auto fan_in = init::calculate_fan_in_and_fan_out(weight).first;
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor Conv2dImpl::forward(const Tensor& input) {
  const std::string who = describe_module(*this);
  check_image_input(*this, who, input, options.in_channels());
  try {
    return conv2d(input, weight, bias, options.stride(), options.padding(), options.dilation(),
                  options.groups());
  } catch (const Error& e) {
    TANDEM_FAIL(who, ": ", e.message());
  }
}

void Conv2dImpl::pretty_print(std::ostream& os) const {
  os << "Conv2d(" << options.in_channels() << ", " << options.out_channels()
     << ", kernel_size=" << options.kernel_size() << ", stride=" << options.stride();
  if (!(options.padding() == Size2(0))) os << ", padding=" << options.padding();
  if (!(options.dilation() == Size2(1))) os << ", dilation=" << options.dilation();
  if (options.groups() != 1) os << ", groups=" << options.groups();
  if (!options.bias()) os << ", bias=false";
  os << ")";
}

// ---- Pooling -------------------------------------------------------------------------

MaxPool2dImpl::MaxPool2dImpl(const MaxPool2dOptions& opts) : Module("MaxPool2d"), options(opts) {}

Tensor MaxPool2dImpl::forward(const Tensor& input) {
  const std::string who = describe_module(*this);
  check_image_input(*this, who, input, -1);
  try {
    return max_pool2d(input, options.kernel_size(), options.stride(), options.padding());
  } catch (const Error& e) {
    TANDEM_FAIL(who, ": ", e.message());
  }
}

void MaxPool2dImpl::pretty_print(std::ostream& os) const {
  os << "MaxPool2d(kernel_size=" << options.kernel_size()
     << ", stride=" << options.stride().value_or(options.kernel_size())
     << ", padding=" << options.padding() << ")";
}

AvgPool2dImpl::AvgPool2dImpl(const AvgPool2dOptions& opts) : Module("AvgPool2d"), options(opts) {}

Tensor AvgPool2dImpl::forward(const Tensor& input) {
  const std::string who = describe_module(*this);
  check_image_input(*this, who, input, -1);
  try {
    return avg_pool2d(input, options.kernel_size(), options.stride(), options.padding(),
                      options.count_include_pad());
  } catch (const Error& e) {
    TANDEM_FAIL(who, ": ", e.message());
  }
}

void AvgPool2dImpl::pretty_print(std::ostream& os) const {
  os << "AvgPool2d(kernel_size=" << options.kernel_size()
     << ", stride=" << options.stride().value_or(options.kernel_size())
     << ", padding=" << options.padding() << ")";
}

AdaptiveAvgPool2dImpl::AdaptiveAvgPool2dImpl(Size2 size)
    : Module("AdaptiveAvgPool2d"), output_size(size) {
  TANDEM_CHECK(size.h > 0 && size.w > 0, "AdaptiveAvgPool2d: output_size must be positive, got ",
               size);
}

Tensor AdaptiveAvgPool2dImpl::forward(const Tensor& input) {
  const std::string who = describe_module(*this);
  check_image_input(*this, who, input, -1);
  try {
    return adaptive_avg_pool2d(input, output_size);
  } catch (const Error& e) {
    TANDEM_FAIL(who, ": ", e.message());
  }
}

void AdaptiveAvgPool2dImpl::pretty_print(std::ostream& os) const {
  os << "AdaptiveAvgPool2d(output_size=" << output_size << ")";
}

// ---- BatchNorm -----------------------------------------------------------------------

BatchNormImplBase::BatchNormImplBase(const char* name, int64_t dim_lo, int64_t dim_hi,
                                     const BatchNormOptions& opts)
    : Module(name), options(opts), dim_lo_(dim_lo), dim_hi_(dim_hi) {
  const int64_t c = options.num_features();
  TANDEM_CHECK(c > 0, name, ": num_features must be positive, got ", c);
  TANDEM_CHECK(std::isfinite(options.eps()) && options.eps() > 0.0, name, ": eps must be > 0, got ",
               options.eps());
  TANDEM_CHECK(options.momentum() >= 0.0 && options.momentum() <= 1.0, name,
               ": momentum must be in [0, 1], got ", options.momentum());
  if (options.affine()) {
    weight = register_parameter("weight", empty({c}));
    bias = register_parameter("bias", empty({c}));
  }
  if (options.track_running_stats()) {
    running_mean = register_buffer("running_mean", empty({c}));
    running_var = register_buffer("running_var", empty({c}));
    num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, kInt64));
  }
  reset_parameters();
}

void BatchNormImplBase::reset_running_stats() {
  if (!options.track_running_stats()) return;
  NoGradGuard no_grad;
  running_mean.zero_();
  running_var.fill_(1.0);
  num_batches_tracked.zero_();
}

void BatchNormImplBase::reset_parameters() {
  reset_running_stats();
  if (options.affine()) {
    init::ones_(weight);
    init::zeros_(bias);
  }
}

Tensor BatchNormImplBase::forward(const Tensor& input) {
  const std::string who = describe_module(*this);
  detail::check_defined(type_name().c_str(), input);
  const int64_t c = options.num_features();
  if (input.dim() < dim_lo_ || input.dim() > dim_hi_ || input.size(1) != c) {
    const char* layout = dim_hi_ == 4 ? "[N, C, H, W]" : "[N, C] or [N, C, L]";
    TANDEM_FAIL(who, ": expected input ", layout, " with C = ", c, ", got ",
                shape_str(input.sizes()));
  }
  const bool use_batch_stats = is_training() || !options.track_running_stats();
  if (use_batch_stats && sync_stats) return forward_synced(input);
  Tensor out;
  try {
    out = batch_norm(input, running_mean, running_var, weight, bias, use_batch_stats,
                     options.momentum(), options.eps());
  } catch (const Error& e) {
    TANDEM_FAIL(who, ": ", e.message());
  }
  if (is_training() && options.track_running_stats()) {
    NoGradGuard no_grad;
    num_batches_tracked.add_(1.0);
  }
  return out;
}

// The statistics of the whole distributed batch: per channel, the sum, the
// sum of squares and the count summed over the ranks; var = E[x^2] - mean^2.
Tensor BatchNormImplBase::forward_synced(const Tensor& input) {
  const int64_t c = options.num_features();
  const Tensor x3 = input.view({input.size(0), c, -1});
  const Tensor local_sum = sum(sum(x3, 2), 0);
  const Tensor local_sq = sum(sum(x3 * x3, 2), 0);
  const double count = static_cast<double>(input.numel() / std::max<int64_t>(c, 1));
  const Tensor local_n = full({c}, count, TensorOptions(input.dtype()).device(input.device()));
  const Tensor all = sync_stats(stack({local_sum, local_sq, local_n}, 0));
  const Tensor n = all.select(0, 2);
  const Tensor mean = all.select(0, 0) / n;
  const Tensor var = all.select(0, 1) / n - mean * mean;
  Shape bshape(static_cast<size_t>(input.dim()), 1);
  bshape[1] = c;
  Tensor scale = rsqrt(var + options.eps());
  if (options.affine()) scale = scale * weight;
  Tensor out = (input - mean.view(bshape)) * scale.view(bshape);
  if (options.affine()) out = out + bias.view(bshape);
  if (is_training() && options.track_running_stats()) {
    NoGradGuard no_grad;
    const double m = options.momentum();
    running_mean.mul_(1.0 - m).add_(mean, m);
    running_var.mul_(1.0 - m).add_(var * n / (n - 1.0), m);
    num_batches_tracked.add_(1.0);
  }
  return out;
}

void BatchNormImplBase::pretty_print(std::ostream& os) const {
  os << type_name() << "(" << options.num_features() << ", eps=" << options.eps()
     << ", momentum=" << options.momentum() << ", affine=" << (options.affine() ? "true" : "false")
     << ", track_running_stats=" << (options.track_running_stats() ? "true" : "false") << ")";
}

}  // namespace nn
}  // namespace tandem
