// nn::Module: registration, traversal, train/eval, device/dtype moves, state dicts.
#include "tandem/nn/module.h"

#include <algorithm>
#include <set>
#include <sstream>

#include "core/checks.h"
#include "tandem/autograd.h"

namespace tandem {
namespace nn {

namespace {

void check_name(const Module& m, const std::string& name, const char* what) {
  TANDEM_CHECK(!name.empty() && name.find('.') == std::string::npos, m.type_name(), ": ", what,
               " name '", name, "' must be non-empty and contain no '.'");
}

// Replaces the data of `t` (every handle of it sees the change) with `data`,
// keeping requires_grad and grad (libtorch's set_data). The AccumulateGrad
// node is dropped: one recorded for the old data checks the old dtype/device.
void set_data(const Tensor& t, const Tensor& data) {
  TensorImpl& impl = *t.impl();
  const TensorImpl& src = *data.impl();
  // to() returns the tensor itself when nothing changes: keep the graph state.
  if (src.storage == impl.storage && src.offset == impl.offset && src.dtype == impl.dtype) return;
  impl.storage = src.storage;
  impl.offset = src.offset;
  impl.sizes = src.sizes;
  impl.dtype = src.dtype;
  if (impl.autograd) impl.autograd->grad_accumulator.reset();
}

// Converts every parameter, gradient and buffer first and swaps the data in
// only when all conversions succeeded, so an error (e.g. out of device memory)
// leaves the module as it was.
template <typename Convert>
void convert_all(Module& m, const Convert& convert) {
  NoGradGuard no_grad;
  std::vector<std::pair<Tensor, Tensor>> swaps;  // handle, new data
  for (const Tensor& t : m.parameters()) {
    swaps.emplace_back(t, convert(t.detach()));
    const Tensor g = t.grad();
    if (g.defined()) swaps.emplace_back(g, convert(g.detach()));
  }
  for (const Tensor& b : m.buffers()) swaps.emplace_back(b, convert(b.detach()));
  for (const auto& s : swaps) set_data(s.first, s.second);
}

// As PyTorch's Module.to: only floating targets (integer buffers are left alone).
void check_target_dtype(const Module& m, DType dtype) {
  TANDEM_CHECK(is_floating(dtype), m.type_name(), ".to: expected a floating dtype, got ",
               dtype_name(dtype),
               " (parameters and floating buffers are converted; integer buffers keep their "
               "dtype)");
}

}  // namespace

Module::Module(std::string type_name)
    : type_name_(type_name.empty() ? std::string("Module") : std::move(type_name)) {}

Tensor Module::forward(const Tensor&) {
  TANDEM_FAIL(type_name_, ": this module has no forward(Tensor); call its own methods");
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_name(*this, name, "parameter");
  detail::check_defined("register_parameter", t, "parameter");
  for (const auto& p : parameters_)
    TANDEM_CHECK(p.first != name, type_name_, ": parameter '", name, "' is already registered");
  if (requires_grad && !t.requires_grad()) t.set_requires_grad(true);
  parameters_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_name(*this, name, "buffer");
  detail::check_defined("register_buffer", t, "buffer");
  for (const auto& b : buffers_)
    TANDEM_CHECK(b.first != name, type_name_, ": buffer '", name, "' is already registered");
  buffers_.emplace_back(name, t);
  return t;
}

std::shared_ptr<Module> Module::register_module(const std::string& name,
                                                std::shared_ptr<Module> m) {
  check_name(*this, name, "submodule");
  TANDEM_CHECK(m != nullptr, type_name_, ": submodule '", name, "' is null");
  for (const auto& c : children_)
    TANDEM_CHECK(c.first != name, type_name_, ": submodule '", name, "' is already registered");
  children_.emplace_back(name, m);
  return m;
}

void Module::collect(const std::string& prefix, bool recurse, bool want_buffers,
                     StateDict& out) const {
  for (const auto& p : want_buffers ? buffers_ : parameters_)
    out.emplace_back(prefix + p.first, p.second);
  if (!recurse) return;
  for (const auto& c : children_)
    c.second->collect(prefix + c.first + ".", true, want_buffers, out);
}

namespace {
// A tensor registered under several names (tied weights) is listed once, under
// its first name, so optimizers and to() see each tensor once (PyTorch's
// remove_duplicate).
StateDict unique_tensors(StateDict all) {
  std::set<const TensorImpl*> seen;
  StateDict out;
  for (auto& kv : all)
    if (seen.insert(kv.second.impl().get()).second) out.push_back(std::move(kv));
  return out;
}
}  // namespace

StateDict Module::named_parameters(bool recurse) const {
  StateDict out;
  collect("", recurse, false, out);
  return unique_tensors(std::move(out));
}

StateDict Module::named_buffers(bool recurse) const {
  StateDict out;
  collect("", recurse, true, out);
  return unique_tensors(std::move(out));
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& p : named_parameters(recurse)) out.push_back(p.second);
  return out;
}

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& b : named_buffers(recurse)) out.push_back(b.second);
  return out;
}

std::vector<std::shared_ptr<Module>> Module::children() const {
  std::vector<std::shared_ptr<Module>> out;
  for (const auto& c : children_) out.push_back(c.second);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const {
  return children_;
}

std::vector<std::shared_ptr<Module>> Module::modules() {
  std::vector<std::shared_ptr<Module>> out;
  apply([&out](Module& m) { out.push_back(m.shared_from_this()); });
  return out;
}

void Module::apply(const std::function<void(Module&)>& fn) {
  fn(*this);
  for (const auto& c : children_) c.second->apply(fn);
}

void Module::train(bool on) {
  training_ = on;
  for (const auto& c : children_) c.second->train(on);
}

void Module::to(Device device) {
  convert_all(*this, [device](const Tensor& t) { return t.to(device); });
}

// Integer buffers (counters, indices) keep their dtype, as in libtorch.
void Module::to(DType dtype) {
  check_target_dtype(*this, dtype);
  convert_all(*this, [dtype](const Tensor& t) { return is_floating(t.dtype()) ? t.to(dtype) : t; });
}

void Module::to(Device device, DType dtype) {
  check_target_dtype(*this, dtype);
  // One conversion per tensor: Tensor::to(device, dtype) converts on the side
  // where the data is smaller.
  convert_all(*this, [device, dtype](const Tensor& t) {
    return is_floating(t.dtype()) ? t.to(device, dtype) : t.to(device);
  });
}

void Module::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (Tensor p : parameters()) {
    if (set_to_none) {
      p.mutable_grad() = Tensor();
    } else if (p.grad().defined()) {
      p.grad().zero_();
    }
  }
}

// Every name, tied tensors included (as PyTorch's state_dict).
StateDict Module::state_dict() const {
  StateDict out;
  collect("", true, false, out);
  collect("", true, true, out);
  for (auto& kv : out) kv.second = kv.second.detach();
  return out;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  const StateDict own = state_dict();
  std::set<std::string> seen;
  std::vector<std::pair<Tensor, Tensor>> copies;  // destination, source
  for (const auto& kv : state) {
    auto it =
        std::find_if(own.begin(), own.end(), [&](const auto& o) { return o.first == kv.first; });
    if (it == own.end()) {
      TANDEM_CHECK(!strict, type_name_, ".load_state_dict: unexpected key '", kv.first, "'");
      continue;
    }
    detail::check_defined("load_state_dict", kv.second, kv.first.c_str());
    TANDEM_CHECK(kv.second.sizes() == it->second.sizes(), type_name_, ".load_state_dict: '",
                 kv.first, "' has shape ", shape_str(kv.second.sizes()), " but the module expects ",
                 shape_str(it->second.sizes()));
    seen.insert(kv.first);
    copies.emplace_back(it->second, kv.second);
  }
  if (strict) {
    for (const auto& o : own)
      TANDEM_CHECK(seen.count(o.first) > 0, type_name_, ".load_state_dict: missing key '", o.first,
                   "'");
  }
  NoGradGuard no_grad;
  for (auto& c : copies) c.first.copy_(c.second);
}

void Module::pretty_print(std::ostream& os) const { os << type_name_; }

namespace {
void print_tree(std::ostream& os, const Module& m, const std::string& indent) {
  m.pretty_print(os);
  const auto kids = m.named_children();
  if (kids.empty()) return;
  os << "(\n";
  for (const auto& c : kids) {
    os << indent << "  (" << c.first << "): ";
    print_tree(os, *c.second, indent + "  ");
    os << "\n";
  }
  os << indent << ")";
}
}  // namespace

std::ostream& operator<<(std::ostream& os, const Module& m) {
  print_tree(os, m, "");
  return os;
}

}  // namespace nn
}  // namespace tandem
