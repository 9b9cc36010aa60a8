// The layers: Linear, activations, Softmax, Dropout, Flatten, Identity,
// Sequential and a residual block. Each is a `FooImpl` module used through
// its `Foo` holder (see module.h). Shape errors name the layer and both the
// expected and the received shape.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tandem/generator.h"
#include "tandem/nn/module.h"

namespace tandem {

// GELU as in PyTorch: exact x * Phi(x) (with erf), or the tanh approximation.
enum class GeluApproximation : int8_t { None, Tanh };
Tensor gelu(const Tensor& x, GeluApproximation approximate = GeluApproximation::None);

namespace nn {

// y = x W^T + b with W [out_features, in_features]. Initialised as libtorch
// does: W and b uniform in +-1/sqrt(in_features).
class LinearImpl : public Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& input) override;
  void reset_parameters(Generator* gen = nullptr);
  void pretty_print(std::ostream& os) const override;

  int64_t in_features, out_features;
  Tensor weight;  // [out_features, in_features]
  Tensor bias;    // [out_features], undefined without bias
};
TANDEM_MODULE(Linear);

class ReLUImpl : public Module {
 public:
  ReLUImpl() : Module("ReLU") {}
  Tensor forward(const Tensor& input) override;
};
TANDEM_MODULE(ReLU);

class SigmoidImpl : public Module {
 public:
  SigmoidImpl() : Module("Sigmoid") {}
  Tensor forward(const Tensor& input) override;
};
TANDEM_MODULE(Sigmoid);

class TanhImpl : public Module {
 public:
  TanhImpl() : Module("Tanh") {}
  Tensor forward(const Tensor& input) override;
};
TANDEM_MODULE(Tanh);

class GELUImpl : public Module {
 public:
  explicit GELUImpl(GeluApproximation approximate = GeluApproximation::None);
  Tensor forward(const Tensor& input) override;
  void pretty_print(std::ostream& os) const override;
  GeluApproximation approximate;
};
TANDEM_MODULE(GELU);

class SoftmaxImpl : public Module {
 public:
  explicit SoftmaxImpl(int64_t dim);
  Tensor forward(const Tensor& input) override;
  void pretty_print(std::ostream& os) const override;
  int64_t dim;
};
TANDEM_MODULE(Softmax);

class LogSoftmaxImpl : public Module {
 public:
  explicit LogSoftmaxImpl(int64_t dim);
  Tensor forward(const Tensor& input) override;
  void pretty_print(std::ostream& os) const override;
  int64_t dim;
};
TANDEM_MODULE(LogSoftmax);

// Zeroes elements with probability p while training and scales the rest by
// 1/(1-p) (Philox masks, see dropout in ops.h); the identity in eval mode.
class DropoutImpl : public Module {
 public:
  explicit DropoutImpl(double p = 0.5, Generator* gen = nullptr);
  Tensor forward(const Tensor& input) override;
  void pretty_print(std::ostream& os) const override;
  double p;
  Generator* generator;  // nullptr: the default generator
};
TANDEM_MODULE(Dropout);

class FlattenImpl : public Module {
 public:
  explicit FlattenImpl(int64_t start_dim = 1, int64_t end_dim = -1);
  Tensor forward(const Tensor& input) override;
  void pretty_print(std::ostream& os) const override;
  int64_t start_dim, end_dim;
};
TANDEM_MODULE(Flatten);

class IdentityImpl : public Module {
 public:
  IdentityImpl() : Module("Identity") {}
  Tensor forward(const Tensor& input) override { return input; }
};
TANDEM_MODULE(Identity);

// Runs its children in order; children are named "0", "1", ... unless named.
class SequentialImpl : public Module {
 public:
  SequentialImpl() : Module("Sequential") {}
  template <typename... Modules>
  explicit SequentialImpl(Modules&&... modules) : Module("Sequential") {
    (push_back(std::forward<Modules>(modules)), ...);
  }
  void push_back(std::shared_ptr<Module> module);
  void push_back(const std::string& name, std::shared_ptr<Module> module);
  template <typename Impl>
  void push_back(const ModuleHolder<Impl>& module) {
    push_back(std::static_pointer_cast<Module>(module.ptr()));
  }
  template <typename Impl>
  void push_back(const std::string& name, const ModuleHolder<Impl>& module) {
    push_back(name, std::static_pointer_cast<Module>(module.ptr()));
  }
  Tensor forward(const Tensor& input) override;
  size_t size() const { return layers_.size(); }
  bool is_empty() const { return layers_.empty(); }
  // The i-th layer (throws when out of range); at<T>(i) casts it.
  std::shared_ptr<Module> operator[](size_t index) const;
  template <typename T>
  T& at(size_t index) const {
    T* p = dynamic_cast<T*>((*this)[index].get());
    TANDEM_CHECK(p != nullptr, "Sequential: layer ", index, " is not of the requested type");
    return *p;
  }

 private:
  std::vector<std::shared_ptr<Module>> layers_;
  std::vector<std::string> names_;
};
TANDEM_MODULE(Sequential);

// body(x) + shortcut(x), the shortcut being the identity when none is given
// (a projection, e.g. a Linear or a strided 1x1 convolution, otherwise).
// Follow it with an activation in a Sequential for the classic ResNet block.
class ResidualImpl : public Module {
 public:
  explicit ResidualImpl(std::shared_ptr<Module> body_module,
                        std::shared_ptr<Module> shortcut_module = nullptr);
  template <typename Body>
  explicit ResidualImpl(const ModuleHolder<Body>& body_module)
      : ResidualImpl(std::static_pointer_cast<Module>(body_module.ptr())) {}
  template <typename Body, typename Shortcut>
  ResidualImpl(const ModuleHolder<Body>& body_module, const ModuleHolder<Shortcut>& shortcut_module)
      : ResidualImpl(std::static_pointer_cast<Module>(body_module.ptr()),
                     std::static_pointer_cast<Module>(shortcut_module.ptr())) {}
  Tensor forward(const Tensor& input) override;
  std::shared_ptr<Module> body, shortcut;
};
TANDEM_MODULE(Residual);

}  // namespace nn
}  // namespace tandem
