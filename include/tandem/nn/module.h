// nn::Module: the base of every layer and network, in libtorch's shape.
//
// A module owns named parameters (tensors that require grad), named buffers
// (state that is saved but not trained, e.g. running statistics) and named
// child modules. Layers are written as `FooImpl : Module` and used through the
// `Foo` holder that TANDEM_MODULE(Foo) defines (a shared pointer with
// operator-> and operator()), exactly as in libtorch:
//
//   struct NetImpl : nn::Module {
//     NetImpl() : fc1(register_module("fc1", nn::Linear(784, 100))),
//                 fc2(register_module("fc2", nn::Linear(100, 10))) {}
//     Tensor forward(const Tensor& x) override { return fc2(relu(fc1(x))); }
//     nn::Linear fc1, fc2;
//   };
//   TANDEM_MODULE(Net);
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tandem/tensor.h"

namespace tandem {
namespace nn {

template <typename Impl>
class ModuleHolder;

// Name -> tensor, in registration order ("fc1.weight", "bn.running_mean").
using StateDict = std::vector<std::pair<std::string, Tensor>>;

class Module : public std::enable_shared_from_this<Module> {
 public:
  // `type_name` is what printing shows ("Linear"); empty means "Module".
  explicit Module(std::string type_name = "");
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // One tensor in, one tensor out. Modules with other signatures leave this
  // alone and are called directly; calling it then throws.
  virtual Tensor forward(const Tensor& input);
  Tensor operator()(const Tensor& input) { return forward(input); }

  const std::string& type_name() const { return type_name_; }

  // Parameters (and buffers) of this module and, with recurse, its
  // descendants, depth first in registration order; names are dotted paths.
  // A tensor registered under several names (tied weights) is listed once,
  // under its first name.
  std::vector<Tensor> parameters(bool recurse = true) const;
  StateDict named_parameters(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  StateDict named_buffers(bool recurse = true) const;
  std::vector<std::shared_ptr<Module>> children() const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  // This module (first) and all descendants, depth first.
  std::vector<std::shared_ptr<Module>> modules();

  // Training mode (dropout active, batch statistics) is the default.
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves / converts every parameter and buffer in place: tensors held by the
  // layers (e.g. LinearImpl::weight) see the change, parameters keep
  // requires_grad, gradients are moved too.
  void to(Device device);
  void to(DType dtype);
  void to(Device device, DType dtype);

  // Resets the gradients of all parameters: undefined (set_to_none) or zeros.
  void zero_grad(bool set_to_none = true);

  // Calls fn on this module and every descendant (e.g. custom initialisation).
  void apply(const std::function<void(Module&)>& fn);

  // This module as a T (e.g. as<LinearImpl>()), or nullptr.
  template <typename T>
  T* as() {
    return dynamic_cast<T*>(this);
  }

  // Parameters then buffers, recursively, under every name (tied tensors
  // too); the tensors share storage with the module's (detached), so clone
  // them to keep a snapshot while training on.
  StateDict state_dict() const;
  // Copies values in by name. With strict, a missing or unexpected name is an
  // error; a shape mismatch always is. Nothing is changed when it throws.
  void load_state_dict(const StateDict& state, bool strict = true);

  // "Linear(in_features=3, out_features=2, bias=true)"; containers print
  // their children indented.
  virtual void pretty_print(std::ostream& os) const;

 protected:
  // Registers t as a parameter (made to require grad unless requires_grad is
  // false) and returns it; the caller usually keeps it in a member.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, Tensor t);
  std::shared_ptr<Module> register_module(const std::string& name, std::shared_ptr<Module> m);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    register_module(name, std::static_pointer_cast<Module>(m));
    return m;
  }
  // For holders (nn::Linear ...): returns the holder itself.
  template <typename Holder, typename = decltype(std::declval<Holder>().ptr()->type_name())>
  Holder register_module(const std::string& name, Holder m) {
    register_module(name, std::static_pointer_cast<Module>(m.ptr()));
    return m;
  }

 private:
  void collect(const std::string& prefix, bool recurse, bool want_buffers, StateDict& out) const;

  std::string type_name_;
  StateDict parameters_;
  StateDict buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

std::ostream& operator<<(std::ostream& os, const Module& m);

// A shared pointer to a module Impl with libtorch's conveniences.
template <typename Impl>
class ModuleHolder {
 public:
  // Constructs the Impl from the arguments (none: its default constructor).
  template <typename I = Impl, typename = std::enable_if_t<std::is_default_constructible<I>::value>>
  ModuleHolder() : impl_(std::make_shared<I>()) {}
  template <typename First, typename... Rest,
            typename =
                std::enable_if_t<!(sizeof...(Rest) == 0 &&
                                   std::is_base_of<ModuleHolder, std::decay_t<First>>::value) &&
                                 !std::is_same<std::decay_t<First>, std::shared_ptr<Impl>>::value &&
                                 !std::is_same<std::decay_t<First>, std::nullptr_t>::value>>
  explicit ModuleHolder(First&& first, Rest&&... rest)
      : impl_(std::make_shared<Impl>(std::forward<First>(first), std::forward<Rest>(rest)...)) {}
  ModuleHolder(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}  // NOLINT
  ModuleHolder(std::nullptr_t) : impl_(nullptr) {}                      // NOLINT: empty holder

  Impl* operator->() const { return impl_.get(); }
  Impl& operator*() const { return *impl_; }
  Impl* get() const { return impl_.get(); }
  const std::shared_ptr<Impl>& ptr() const { return impl_; }
  bool is_empty() const { return impl_ == nullptr; }
  Tensor operator()(const Tensor& input) const { return impl_->forward(input); }
  // Forwards indexing (e.g. a Sequential's layers).
  template <typename Arg>
  decltype(auto) operator[](Arg&& arg) const {
    return (*impl_)[std::forward<Arg>(arg)];
  }
  operator std::shared_ptr<Module>() const { return impl_; }  // NOLINT

 private:
  std::shared_ptr<Impl> impl_;
};

template <typename Impl>
std::ostream& operator<<(std::ostream& os, const ModuleHolder<Impl>& m) {
  return os << *m;
}

}  // namespace nn
}  // namespace tandem

// Defines `Name` as the holder of `NameImpl` (libtorch's TORCH_MODULE).
#define TANDEM_MODULE(Name)                                     \
  class Name : public ::tandem::nn::ModuleHolder<Name##Impl> {  \
   public:                                                      \
    using ::tandem::nn::ModuleHolder<Name##Impl>::ModuleHolder; \
  }
