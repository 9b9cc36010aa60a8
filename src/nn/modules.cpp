// The layers of nn/modules.h, each composed from public ops (so autograd and
// both devices come for free), plus gelu.
#include "tandem/nn/modules.h"

#include <cmath>
#include <sstream>

#include "core/checks.h"
#include "tandem/nn/init.h"
#include "tandem/ops.h"

namespace tandem {

Tensor gelu(const Tensor& x, GeluApproximation approximate) {
  detail::check_defined("gelu", x);
  detail::check_floating("gelu", x);
  if (approximate == GeluApproximation::Tanh) {
    const double k = 0.7978845608028654;  // sqrt(2 / pi)
    return 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * x * x * x)));
  }
  return 0.5 * x * (1.0 + erf(x * 0.7071067811865476));  // x / sqrt(2)
}

namespace nn {

// ---- Linear --------------------------------------------------------------------------

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias)
    : Module("Linear"), in_features(in), out_features(out) {
  TANDEM_CHECK(in > 0 && out > 0, "Linear: in_features and out_features must be positive, got ", in,
               " and ", out);
  weight = register_parameter("weight", empty({out, in}));
  if (with_bias) bias = register_parameter("bias", empty({out}));
  reset_parameters();
}

void LinearImpl::reset_parameters(Generator* gen) {
  // libtorch: kaiming_uniform_(a = sqrt(5)) gives U(-1/sqrt(in), 1/sqrt(in)).
  init::kaiming_uniform_(weight, std::sqrt(5.0), init::FanMode::FanIn,
                         init::Nonlinearity::LeakyReLU, gen);
  if (bias.defined()) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor LinearImpl::forward(const Tensor& input) {
  detail::check_defined("Linear", input);
  if (input.dim() < 1 || input.size(-1) != in_features) {
    std::ostringstream os;
    pretty_print(os);
    TANDEM_FAIL(os.str(), ": expected input with ", in_features, " features (shape [*, ",
                in_features, "]), got ", shape_str(input.sizes()));
  }
  return linear(input, weight, bias);
}

void LinearImpl::pretty_print(std::ostream& os) const {
  os << "Linear(in_features=" << in_features << ", out_features=" << out_features
     << ", bias=" << (bias.defined() ? "true" : "false") << ")";
}

// ---- Activations ---------------------------------------------------------------------

Tensor ReLUImpl::forward(const Tensor& input) { return relu(input); }
Tensor SigmoidImpl::forward(const Tensor& input) { return sigmoid(input); }
Tensor TanhImpl::forward(const Tensor& input) { return tanh(input); }

GELUImpl::GELUImpl(GeluApproximation approx) : Module("GELU"), approximate(approx) {}
Tensor GELUImpl::forward(const Tensor& input) { return gelu(input, approximate); }
void GELUImpl::pretty_print(std::ostream& os) const {
  os << "GELU(approximate=" << (approximate == GeluApproximation::Tanh ? "tanh" : "none") << ")";
}

SoftmaxImpl::SoftmaxImpl(int64_t d) : Module("Softmax"), dim(d) {}
Tensor SoftmaxImpl::forward(const Tensor& input) { return softmax(input, dim); }
void SoftmaxImpl::pretty_print(std::ostream& os) const { os << "Softmax(dim=" << dim << ")"; }

LogSoftmaxImpl::LogSoftmaxImpl(int64_t d) : Module("LogSoftmax"), dim(d) {}
Tensor LogSoftmaxImpl::forward(const Tensor& input) { return log_softmax(input, dim); }
void LogSoftmaxImpl::pretty_print(std::ostream& os) const { os << "LogSoftmax(dim=" << dim << ")"; }

// ---- Dropout, Flatten ----------------------------------------------------------------

DropoutImpl::DropoutImpl(double prob, Generator* gen) : Module("Dropout"), p(prob), generator(gen) {
  TANDEM_CHECK(p >= 0.0 && p <= 1.0, "Dropout: p must be in [0, 1], got ", p);
}
Tensor DropoutImpl::forward(const Tensor& input) {
  return dropout(input, p, is_training(), generator);
}
void DropoutImpl::pretty_print(std::ostream& os) const { os << "Dropout(p=" << p << ")"; }

FlattenImpl::FlattenImpl(int64_t start, int64_t end)
    : Module("Flatten"), start_dim(start), end_dim(end) {}
Tensor FlattenImpl::forward(const Tensor& input) { return input.flatten(start_dim, end_dim); }
void FlattenImpl::pretty_print(std::ostream& os) const {
  os << "Flatten(start_dim=" << start_dim << ", end_dim=" << end_dim << ")";
}

// ---- Sequential ----------------------------------------------------------------------

void SequentialImpl::push_back(std::shared_ptr<Module> module) {
  push_back(std::to_string(layers_.size()), std::move(module));
}

void SequentialImpl::push_back(const std::string& name, std::shared_ptr<Module> module) {
  register_module(name, module);
  names_.push_back(name);
  layers_.push_back(std::move(module));
}

Tensor SequentialImpl::forward(const Tensor& input) {
  Tensor x = input;
  for (size_t i = 0; i < layers_.size(); ++i) {
    try {
      x = layers_[i]->forward(x);
    } catch (const Error& e) {
      // Say which layer of the stack failed (nested Sequentials add their own prefix).
      TANDEM_FAIL("Sequential layer ", names_[i], ": ", e.message());
    }
  }
  return x;
}

std::shared_ptr<Module> SequentialImpl::operator[](size_t index) const {
  TANDEM_CHECK(index < layers_.size(), "Sequential: index ", index, " is out of range for ",
               layers_.size(), " layers");
  return layers_[index];
}

// ---- Residual ------------------------------------------------------------------------

ResidualImpl::ResidualImpl(std::shared_ptr<Module> body_module,
                           std::shared_ptr<Module> shortcut_module)
    : Module("Residual"), body(std::move(body_module)), shortcut(std::move(shortcut_module)) {
  TANDEM_CHECK(body != nullptr, "Residual: the body module is null");
  register_module("body", body);
  if (shortcut) register_module("shortcut", shortcut);
}

Tensor ResidualImpl::forward(const Tensor& input) {
  const Tensor main = body->forward(input);
  const Tensor skip = shortcut ? shortcut->forward(input) : input;
  TANDEM_CHECK(main.sizes() == skip.sizes(), "Residual: the body gives ", shape_str(main.sizes()),
               " but the shortcut gives ", shape_str(skip.sizes()),
               " (use a projection shortcut when the shape changes)");
  return main + skip;
}

}  // namespace nn
}  // namespace tandem
