// Reverse-mode automatic differentiation, in libtorch's terms.
//
// An op whose inputs require grad (and that runs while grad mode is on) records
// a Node: the backward formula of that op, the tensors it saved, and an edge to
// the Node of each input. Tensor::backward() walks this graph from the output
// back to the leaves (tensors made with set_requires_grad(true)) and adds the
// gradient into each leaf's grad(). Backward formulas are written with ops, so
// they run on whichever device the tensors are on.
//
// Rules worth knowing:
//   - The graph is freed by backward() unless retain_graph is true; running
//     backward through a freed graph throws.
//   - In-place ops (add_, mul_, copy_, fill_, ...) are not recorded: they throw
//     when grad mode is on and the tensor or the source requires grad. Inside a
//     NoGradGuard they run (that is how optimizers update parameters).
//   - A tensor saved for backward and then modified in place makes backward
//     throw instead of returning a wrong gradient (a version counter per
//     storage, as in PyTorch).
//   - Backward computes first derivatives only (no create_graph).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tandem/tensor.h"

namespace tandem {
namespace autograd {

// Grad mode is per thread and on by default.
struct GradMode {
  static bool is_enabled();
  static void set_enabled(bool enabled);
};

// Sets grad mode for a scope and restores the previous mode on exit.
class AutoGradMode {
 public:
  explicit AutoGradMode(bool enabled) : previous_(GradMode::is_enabled()) {
    GradMode::set_enabled(enabled);
  }
  ~AutoGradMode() { GradMode::set_enabled(previous_); }
  AutoGradMode(const AutoGradMode&) = delete;
  AutoGradMode& operator=(const AutoGradMode&) = delete;

 private:
  bool previous_;
};

// No graph is recorded inside this scope (evaluation, parameter updates).
class NoGradGuard : public AutoGradMode {
 public:
  NoGradGuard() : AutoGradMode(false) {}
};

// Shape, dtype and device of a tensor that flows through the graph.
struct TensorMeta {
  Shape sizes;
  DType dtype = kFloat32;
  Device device;
};

// One recorded op. A Node has one output and one input edge per tensor input;
// the edge is null for an input that needs no gradient.
class Node {
 public:
  // grad (w.r.t. the output), saved tensors -> one gradient per input (an
  // undefined Tensor where an input needs none).
  using BackwardFn =
      std::function<std::vector<Tensor>(const Tensor& grad, const std::vector<Tensor>& saved)>;

  Node(std::string name, std::vector<std::shared_ptr<Node>> next, std::vector<TensorMeta> inputs,
       std::vector<Tensor> saved, BackwardFn fn);
  virtual ~Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const std::string& name() const { return name_; }  // "MulBackward"
  const std::vector<std::shared_ptr<Node>>& next_functions() const { return next_; }
  const std::vector<TensorMeta>& input_meta() const { return inputs_; }
  // Order of creation; backward runs later nodes first.
  uint64_t sequence_nr() const { return sequence_nr_; }
  bool released() const { return released_; }

  // Checks the saved tensors and runs the formula (grad mode off).
  virtual std::vector<Tensor> apply(const Tensor& grad);
  // Drops the saved tensors (backward without retain_graph).
  virtual void release();

 private:
  std::string name_;
  std::vector<std::shared_ptr<Node>> next_;
  std::vector<TensorMeta> inputs_;
  std::vector<Tensor> saved_;
  std::vector<uint64_t> saved_versions_;
  BackwardFn fn_;
  uint64_t sequence_nr_;
  bool released_ = false;

 public:
  // Non-leaf tensors whose grad() should be kept (Tensor::retain_grad).
  std::vector<std::weak_ptr<TensorImpl>> retained_outputs;
};

// The per-tensor autograd state, shared by all handles of one tensor.
struct AutogradMeta {
  bool requires_grad = false;  // set on leaves by the user
  Tensor grad;
  std::shared_ptr<Node> grad_fn;         // null for leaves
  std::weak_ptr<Node> grad_accumulator;  // leaves: the node that adds into grad
  bool retains_grad = false;
  // Leaves: called after backward has added a gradient into grad().
  std::vector<std::function<void(const Tensor&)>> post_accumulate_grad_hooks;
};

// Registers `hook(leaf)` to run each time backward has accumulated a gradient
// into the leaf's grad() (PyTorch's register_post_accumulate_grad_hook): it
// runs on the thread running backward, with grad mode off, while the rest of
// the graph is still to run (data-parallel training starts its gradient
// all-reduce from here). `leaf` must require grad and have no grad_fn.
void register_post_accumulate_grad_hook(const Tensor& leaf,
                                        std::function<void(const Tensor&)> hook);
// Removes every such hook of `leaf`.
void clear_post_accumulate_grad_hooks(const Tensor& leaf);

// Computes the gradients of sum_i <grad_tensors[i], tensors[i]> and adds them
// into the grad() of the leaves. grad_tensors may be empty for scalar outputs.
void backward(const std::vector<Tensor>& tensors, const std::vector<Tensor>& grad_tensors = {},
              bool retain_graph = false);

// Returns d(sum_i <grad_outputs[i], outputs[i]>)/d(inputs[j]) for each input,
// without touching any grad(). With allow_unused, an input the outputs do not
// depend on gets an undefined Tensor instead of an error.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, bool retain_graph = false,
                         bool allow_unused = false);

}  // namespace autograd

using autograd::AutoGradMode;
using autograd::NoGradGuard;

}  // namespace tandem
