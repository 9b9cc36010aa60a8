// The autograd engine: grad mode, Node, the per-tensor autograd state and the
// backward pass (a dependency-counted walk of the graph, latest node first).
#include <algorithm>
#include <atomic>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "autograd/record.h"
#include "core/checks.h"
#include "tandem/autograd.h"

namespace tandem {
namespace autograd {

namespace {

thread_local bool grad_mode_enabled = true;
std::atomic<uint64_t> next_sequence_nr{0};

TensorMeta meta_of(const Tensor& t) { return TensorMeta{t.sizes(), t.dtype(), t.device()}; }

std::string meta_str(const TensorMeta& m) {
  return std::string(dtype_name(m.dtype)) + shape_str(m.sizes) + " on " + m.device.str();
}

// The node at the end of the graph for a leaf: adds incoming gradients into
// the leaf's grad(). It holds the leaf; the leaf holds it weakly, so all graphs
// that use one leaf share one accumulator.
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> variable, TensorMeta meta)
      : Node("AccumulateGrad", {}, {std::move(meta)}, {}, nullptr),
        variable_(std::move(variable)) {}

  std::vector<Tensor> apply(const Tensor& grad) override {
    AutogradMeta& meta = *variable_->autograd;
    if (!meta.grad.defined()) {
      // Keep the incoming buffer when nothing else refers to it.
      const bool unique = grad.impl().use_count() == 1 && grad.impl()->storage.use_count() == 1;
      meta.grad = unique ? grad : grad.clone();
    } else {
      NoGradGuard no_grad;
      meta.grad.add_(grad);
    }
    if (!meta.post_accumulate_grad_hooks.empty()) {
      const Tensor leaf(variable_);
      for (const auto& hook : meta.post_accumulate_grad_hooks) hook(leaf);
    }
    return {};
  }
  void release() override {}

 private:
  std::shared_ptr<TensorImpl> variable_;
};

AutogradMeta& ensure_meta(const Tensor& t) {
  TensorImpl& impl = *t.impl();
  if (!impl.autograd) impl.autograd = std::make_shared<AutogradMeta>();
  return *impl.autograd;
}

const AutogradMeta* meta_or_null(const Tensor& t) {
  return t.defined() ? t.impl()->autograd.get() : nullptr;
}

std::shared_ptr<Node> accumulator_for(const Tensor& leaf) {
  AutogradMeta& meta = ensure_meta(leaf);
  std::shared_ptr<Node> acc = meta.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(leaf.impl(), meta_of(leaf));
    meta.grad_accumulator = acc;
  }
  return acc;
}

// The node that receives the gradient of `t`: its grad_fn, or its accumulator.
std::shared_ptr<Node> gradient_edge(const Tensor& t) {
  if (!t.requires_grad()) return nullptr;
  const AutogradMeta* meta = meta_or_null(t);
  if (meta->grad_fn) return meta->grad_fn;
  return accumulator_for(t);
}

// "log_softmax" -> "LogSoftmaxBackward", as PyTorch names its nodes.
std::string node_name(const char* op) {
  std::string out;
  bool upper = true;
  for (const char* c = op; *c != '\0'; ++c) {
    if (*c == '_') {
      upper = true;
      continue;
    }
    out.push_back(upper && *c >= 'a' && *c <= 'z' ? static_cast<char>(*c - 'a' + 'A') : *c);
    upper = false;
  }
  return out + "Backward";
}

void accumulate(Tensor& slot, const Tensor& g) {
  if (!g.defined()) return;
  slot = slot.defined() ? slot + g : g;
}

struct GraphTask {
  std::vector<std::pair<std::shared_ptr<Node>, Tensor>> roots;
  bool retain_graph = false;
  // grad(): the nodes whose incoming gradient is wanted, by input position.
  bool capture = false;
  std::unordered_map<const Node*, std::vector<size_t>> captures;
  std::vector<Tensor> captured;
};

// The nodes on some path from a root to a captured node (grad() only runs those).
std::unordered_set<const Node*> nodes_needed(const GraphTask& task) {
  std::unordered_map<const Node*, bool> needed;
  // Iterative post-order DFS.
  struct Frame {
    const Node* node;
    size_t next;
  };
  std::vector<Frame> stack;
  for (const auto& root : task.roots) {
    if (needed.count(root.first.get())) continue;
    needed[root.first.get()] = task.captures.count(root.first.get()) > 0;
    stack.push_back({root.first.get(), 0});
    while (!stack.empty()) {
      Frame& f = stack.back();
      const auto& next = f.node->next_functions();
      if (f.next < next.size()) {
        const Node* child = next[f.next++].get();
        if (child == nullptr) continue;
        auto it = needed.find(child);
        if (it == needed.end()) {
          needed[child] = task.captures.count(child) > 0;
          stack.push_back({child, 0});
        } else if (it->second) {
          needed[f.node] = true;
        }
      } else {
        const Node* done = f.node;
        const bool done_needed = needed[done];
        stack.pop_back();
        if (done_needed && !stack.empty()) needed[stack.back().node] = true;
      }
    }
  }
  std::unordered_set<const Node*> out;
  for (const auto& kv : needed)
    if (kv.second) out.insert(kv.first);
  return out;
}

void execute(GraphTask& task) {
  std::unordered_set<const Node*> needed;
  if (task.capture) needed = nodes_needed(task);
  auto is_needed = [&](const Node* n) { return !task.capture || needed.count(n) > 0; };

  // Count, for every node, the edges that reach it from nodes that will run.
  std::unordered_map<const Node*, int> deps;
  std::unordered_set<const Node*> seen;
  std::vector<Node*> stack;
  for (const auto& root : task.roots) {
    if (is_needed(root.first.get()) && seen.insert(root.first.get()).second)
      stack.push_back(root.first.get());
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& next : n->next_functions()) {
      if (!next || !is_needed(next.get())) continue;
      ++deps[next.get()];
      if (seen.insert(next.get()).second) stack.push_back(next.get());
    }
  }

  std::unordered_map<const Node*, Tensor> buffers;
  auto later_first = [](const std::shared_ptr<Node>& a, const std::shared_ptr<Node>& b) {
    return a->sequence_nr() < b->sequence_nr();
  };
  std::priority_queue<std::shared_ptr<Node>, std::vector<std::shared_ptr<Node>>,
                      decltype(later_first)>
      ready(later_first);
  std::unordered_set<const Node*> queued;
  for (const auto& root : task.roots) {
    if (!is_needed(root.first.get())) continue;
    accumulate(buffers[root.first.get()], root.second);
    if (deps[root.first.get()] == 0 && queued.insert(root.first.get()).second)
      ready.push(root.first);
  }

  NoGradGuard no_grad;
  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.top();
    ready.pop();
    Tensor grad = std::move(buffers[node.get()]);
    buffers.erase(node.get());

    for (const auto& weak : node->retained_outputs) {
      if (auto impl = weak.lock(); impl && grad.defined() && impl->autograd) {
        Tensor& slot = impl->autograd->grad;
        slot = slot.defined() ? slot + grad : grad.clone();
      }
    }
    if (task.capture) {
      auto it = task.captures.find(node.get());
      if (it != task.captures.end()) {
        for (size_t index : it->second) accumulate(task.captured[index], grad);
      }
      if (dynamic_cast<AccumulateGrad*>(node.get()) != nullptr) continue;
    }

    std::vector<Tensor> grads;
    if (grad.defined()) {
      grads = node->apply(grad);
      TANDEM_CHECK(grads.size() == node->next_functions().size() ||
                       dynamic_cast<AccumulateGrad*>(node.get()) != nullptr,
                   "autograd: ", node->name(), " returned ", grads.size(), " gradients for its ",
                   node->next_functions().size(), " inputs");
    }
    grad = Tensor();
    if (!task.retain_graph) node->release();

    const auto& next = node->next_functions();
    for (size_t i = 0; i < next.size(); ++i) {
      if (!next[i] || !is_needed(next[i].get())) continue;
      if (i < grads.size() && grads[i].defined()) {
        const TensorMeta& in = node->input_meta()[i];
        TANDEM_CHECK(grads[i].sizes() == in.sizes && grads[i].dtype() == in.dtype &&
                         grads[i].device() == in.device,
                     "autograd: ", node->name(), " returned a gradient ",
                     meta_str(meta_of(grads[i])), " for input ", i, " which is ", meta_str(in),
                     " (a bug in its backward formula)");
        accumulate(buffers[next[i].get()], grads[i]);
      }
      if (--deps[next[i].get()] == 0) ready.push(next[i]);
    }
  }
}

// Checks `outputs` and their gradients and turns them into graph roots.
void add_roots(GraphTask& task, const char* op, const std::vector<Tensor>& outputs,
               const std::vector<Tensor>& grads) {
  TANDEM_CHECK(grads.empty() || grads.size() == outputs.size(), op, ": got ", grads.size(),
               " gradients for ", outputs.size(), " tensors");
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    detail::check_defined(op, out, "tensor");
    TANDEM_CHECK(out.requires_grad(), op, ": tensor ", detail::describe(out),
                 " does not require grad and has no grad_fn (call set_requires_grad(true) on "
                 "an input, outside NoGradGuard, before computing it)");
    Tensor g = grads.empty() ? Tensor() : grads[i];
    if (!g.defined()) {
      TANDEM_CHECK(out.numel() == 1, op,
                   ": a gradient can be created implicitly only for a one-element output; "
                   "this tensor is ",
                   detail::describe(out), ", so pass a gradient of that shape");
      g = ones_like(out);
    } else {
      TANDEM_CHECK(g.sizes() == out.sizes(), op, ": the gradient ", detail::describe(g),
                   " does not match the shape of the tensor ", detail::describe(out));
      TANDEM_CHECK(g.dtype() == out.dtype() && g.device() == out.device(), op, ": the gradient ",
                   detail::describe(g), " must have the dtype and device of ", "the tensor ",
                   detail::describe(out));
      g = g.detach();
    }
    task.roots.emplace_back(gradient_edge(out), g);
  }
}

}  // namespace

bool GradMode::is_enabled() { return grad_mode_enabled; }
void GradMode::set_enabled(bool enabled) { grad_mode_enabled = enabled; }

Node::Node(std::string name, std::vector<std::shared_ptr<Node>> next,
           std::vector<TensorMeta> inputs, std::vector<Tensor> saved, BackwardFn fn)
    : name_(std::move(name)),
      next_(std::move(next)),
      inputs_(std::move(inputs)),
      saved_(std::move(saved)),
      fn_(std::move(fn)),
      sequence_nr_(next_sequence_nr.fetch_add(1)) {
  saved_versions_.reserve(saved_.size());
  for (const Tensor& t : saved_)
    saved_versions_.push_back(t.defined() ? t.impl()->storage->version() : 0);
}

std::vector<Tensor> Node::apply(const Tensor& grad) {
  TANDEM_CHECK(!released_, "backward: trying to run ", name_,
               " a second time, but its saved tensors were freed by the first backward; pass "
               "retain_graph=true to the first backward() to keep them");
  for (size_t i = 0; i < saved_.size(); ++i) {
    if (!saved_[i].defined()) continue;
    const uint64_t now = saved_[i].impl()->storage->version();
    TANDEM_CHECK(now == saved_versions_[i], "backward: a tensor ", detail::describe(saved_[i]),
                 " saved by ", name_, " was modified in place after it was saved (version ", now,
                 ", saved at ", saved_versions_[i], "); its gradient would be wrong");
  }
  return fn_(grad, saved_);
}

void Node::release() {
  saved_.clear();
  saved_.shrink_to_fit();
  fn_ = nullptr;
  released_ = true;
}

// ---- Recording --------------------------------------------------------------------

bool should_record_list(const std::vector<Tensor>& inputs) {
  if (!GradMode::is_enabled()) return false;
  return std::any_of(inputs.begin(), inputs.end(),
                     [](const Tensor& t) { return t.requires_grad(); });
}

void record(const Tensor& out, const char* name, const std::vector<Tensor>& inputs,
            std::vector<Tensor> saved, Node::BackwardFn fn) {
  for (const Tensor& in : inputs)
    if (in.is_same(out)) return;
  std::vector<std::shared_ptr<Node>> next;
  std::vector<TensorMeta> metas;
  next.reserve(inputs.size());
  metas.reserve(inputs.size());
  for (const Tensor& in : inputs) {
    next.push_back(in.defined() ? gradient_edge(in) : nullptr);
    metas.push_back(in.defined() ? meta_of(in) : TensorMeta{});
  }
  for (Tensor& s : saved)
    if (s.defined()) s = s.detach();
  AutogradMeta& meta = ensure_meta(out);
  meta.grad_fn = std::make_shared<Node>(node_name(name), std::move(next), std::move(metas),
                                        std::move(saved), std::move(fn));
  meta.requires_grad = false;
}

void prepare_inplace(const char* op, const Tensor& self, const Tensor& source) {
  if (GradMode::is_enabled()) {
    TANDEM_CHECK(!self.requires_grad(), op, ": in-place operation on a tensor that requires grad (",
                 detail::describe(self),
                 "); in-place ops are not recorded by autograd, so use the out-of-place form "
                 "(a = a + b) or run it inside a NoGradGuard");
    TANDEM_CHECK(!source.defined() || !source.requires_grad(), op, ": the source ",
                 detail::describe(source),
                 " requires grad, but in-place ops are not recorded by autograd; use the "
                 "out-of-place form or detach() the source");
  }
  if (self.defined()) self.impl()->storage->bump_version();
}

Tensor sum_to(const Tensor& grad, const Shape& shape) {
  if (grad.sizes() == shape) return grad;
  Tensor g = grad;
  const int64_t lead = g.dim() - static_cast<int64_t>(shape.size());
  for (int64_t i = 0; i < lead; ++i) g = g.sum(0);
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1 && g.size(static_cast<int64_t>(d)) != 1)
      g = g.sum(static_cast<int64_t>(d), /*keepdim=*/true);
  }
  return g.view(shape);
}

// ---- Public entry points -------------------------------------------------------------

void backward(const std::vector<Tensor>& tensors, const std::vector<Tensor>& grad_tensors,
              bool retain_graph) {
  GraphTask task;
  task.retain_graph = retain_graph;
  add_roots(task, "backward", tensors, grad_tensors);
  execute(task);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool retain_graph,
                         bool allow_unused) {
  TANDEM_CHECK(!inputs.empty(), "grad: expected at least one input");
  GraphTask task;
  task.retain_graph = retain_graph;
  task.capture = true;
  add_roots(task, "grad", outputs, grad_outputs);
  for (size_t i = 0; i < inputs.size(); ++i) {
    detail::check_defined("grad", inputs[i], "input");
    TANDEM_CHECK(inputs[i].requires_grad(), "grad: input ", i, " (", detail::describe(inputs[i]),
                 ") does not require grad");
    task.captures[gradient_edge(inputs[i]).get()].push_back(i);
  }
  task.captured.resize(inputs.size());
  execute(task);
  for (size_t i = 0; i < inputs.size(); ++i) {
    TANDEM_CHECK(task.captured[i].defined() || allow_unused, "grad: input ", i, " (",
                 detail::describe(inputs[i]),
                 ") is not used to compute the outputs (pass allow_unused=true to get an "
                 "undefined tensor for it)");
  }
  return task.captured;
}

}  // namespace autograd

// ---- Tensor methods ------------------------------------------------------------------

bool Tensor::requires_grad() const {
  if (!impl_ || !impl_->autograd) return false;
  return impl_->autograd->requires_grad || impl_->autograd->grad_fn != nullptr;
}

namespace autograd {

void register_post_accumulate_grad_hook(const Tensor& leaf,
                                        std::function<void(const Tensor&)> hook) {
  TANDEM_CHECK(leaf.defined() && leaf.requires_grad() && !leaf.grad_fn(),
               "register_post_accumulate_grad_hook: the tensor must be a leaf that requires grad");
  TANDEM_CHECK(static_cast<bool>(hook), "register_post_accumulate_grad_hook: empty hook");
  ensure_meta(leaf).post_accumulate_grad_hooks.push_back(std::move(hook));
}

void clear_post_accumulate_grad_hooks(const Tensor& leaf) {
  if (leaf.defined() && leaf.impl()->autograd)
    leaf.impl()->autograd->post_accumulate_grad_hooks.clear();
}

}  // namespace autograd

Tensor& Tensor::set_requires_grad(bool value) {
  checked_impl();
  autograd::AutogradMeta* meta = impl_->autograd.get();
  if (meta != nullptr && meta->grad_fn) {
    TANDEM_CHECK(value,
                 "set_requires_grad: only leaf tensors can stop requiring grad; this one "
                 "was computed by ",
                 meta->grad_fn->name(), " (use detach() to get a tensor outside the graph)");
    return *this;
  }
  TANDEM_CHECK(!value || is_floating(dtype()),
               "set_requires_grad: only floating-point tensors "
               "can require grad, got ",
               detail::describe(*this));
  autograd::ensure_meta(*this).requires_grad = value;
  return *this;
}

bool Tensor::is_leaf() const {
  return !impl_ || !impl_->autograd || impl_->autograd->grad_fn == nullptr;
}

Tensor Tensor::grad() const {
  checked_impl();
  return impl_->autograd ? impl_->autograd->grad : Tensor();
}

Tensor& Tensor::mutable_grad() {
  checked_impl();
  return autograd::ensure_meta(*this).grad;
}

void Tensor::retain_grad() const {
  checked_impl();
  TANDEM_CHECK(requires_grad(), "retain_grad: the tensor ", detail::describe(*this),
               " does not require grad");
  if (is_leaf()) return;  // leaves keep their grad anyway
  autograd::AutogradMeta& meta = *impl_->autograd;
  if (meta.retains_grad) return;
  meta.retains_grad = true;
  meta.grad_fn->retained_outputs.push_back(impl_);
}

std::shared_ptr<autograd::Node> Tensor::grad_fn() const {
  return impl_ && impl_->autograd ? impl_->autograd->grad_fn : nullptr;
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  autograd::backward({*this},
                     gradient.defined() ? std::vector<Tensor>{gradient} : std::vector<Tensor>{},
                     retain_graph);
}

Tensor Tensor::detach() const {
  const TensorImpl& impl = checked_impl();
  auto out = std::make_shared<TensorImpl>();
  out->storage = impl.storage;
  out->offset = impl.offset;
  out->sizes = impl.sizes;
  out->dtype = impl.dtype;
  return Tensor(std::move(out));
}

Tensor& Tensor::detach_() {
  checked_impl();
  if (impl_->autograd) {
    impl_->autograd->grad_fn = nullptr;
    impl_->autograd->requires_grad = false;
  }
  return *this;
}

}  // namespace tandem
