// Data parallelism on a ProcessGroup: DataParallel (PyTorch DDP's reducer:
// buckets in reverse parameter order, each all-reduced as soon as its last
// gradient is accumulated, in bucket order on every rank) and SyncBatchNorm
// (a differentiable all-reduce of the batch statistics).
#include <chrono>

#include "autograd/record.h"
#include "dist/group.h"
#include "tandem/autograd.h"
#include "tandem/error.h"
#include "tandem/nn/conv.h"
#include "tandem/ops.h"

namespace tandem {
namespace dist {

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Bucket {
  std::vector<size_t> params;    // indices into Impl::params
  std::vector<int64_t> offsets;  // of each param in flat
  Tensor flat;
  size_t pending = 0;  // params whose gradient has not arrived this step
  std::shared_ptr<Work> work;
  int64_t launched_ns = 0;
};

}  // namespace

struct DataParallel::Impl {
  std::shared_ptr<nn::Module> model;
  std::shared_ptr<ProcessGroup> group;
  DataParallelOptions options;
  std::vector<Tensor> params;
  std::vector<std::pair<size_t, size_t>> where;  // param -> (bucket, position in bucket)
  std::vector<bool> ready;
  std::vector<Bucket> buckets;
  size_t next_launch = 0;
  SyncTimings timings;

  void build_buckets() {
    const auto cap = static_cast<size_t>(std::max(options.bucket_cap_mb, 0.0) * 1024 * 1024);
    where.assign(params.size(), {0, 0});
    for (size_t k = params.size(); k-- > 0;) {
      const Tensor& p = params[k];
      const bool fits = !buckets.empty() && [&] {
        const Bucket& b = buckets.back();
        const Tensor& first = params[b.params.front()];
        const size_t bytes =
            static_cast<size_t>(b.offsets.back() + params[b.params.back()].numel()) *
            first.element_size();
        return first.dtype() == p.dtype() && first.device() == p.device() &&
               bytes + p.nbytes() <= std::max(cap, first.element_size());
      }();
      if (!fits) buckets.emplace_back();
      Bucket& b = buckets.back();
      const int64_t off = b.params.empty() ? 0 : b.offsets.back() + params[b.params.back()].numel();
      where[k] = {buckets.size() - 1, b.params.size()};
      b.params.push_back(k);
      b.offsets.push_back(off);
    }
    for (Bucket& b : buckets) {
      const Tensor& first = params[b.params.front()];
      const int64_t n = b.offsets.back() + params[b.params.back()].numel();
      b.flat = zeros({n}, TensorOptions(first.dtype()).device(first.device()));
      b.pending = b.params.size();
    }
    ready.assign(params.size(), false);
  }

  Tensor slot(const Bucket& b, size_t pos) const {
    const Tensor& p = params[b.params[pos]];
    return b.flat.narrow(0, b.offsets[pos], p.numel());
  }

  void on_grad(size_t k) {
    if (ready[k]) return;  // a second backward before finish: the first one's slot holds
    ready[k] = true;
    auto [bi, pos] = where[k];
    Bucket& b = buckets[bi];
    slot(b, pos).copy_(params[k].grad().view({-1}));
    if (--b.pending == 0) launch_ready();
  }

  void launch(Bucket& b) {
    for (size_t pos = 0; pos < b.params.size(); ++pos)
      if (!ready[b.params[pos]]) slot(b, pos).zero_();  // unused in this step's graph
    b.launched_ns = now_ns();
    b.work = group->all_reduce_async(b.flat, ReduceOp::Sum);
  }

  // Buckets start in index order, so every rank issues the same sequence.
  void launch_ready() {
    while (next_launch < buckets.size() && buckets[next_launch].pending == 0)
      launch(buckets[next_launch++]);
  }

  void finish() {
    while (next_launch < buckets.size()) launch(buckets[next_launch++]);
    timings = SyncTimings{};
    timings.buckets = static_cast<int64_t>(buckets.size());
    const double scale = 1.0 / group->size();
    NoGradGuard no_grad;
    for (Bucket& b : buckets) {
      b.work->wait();
      timings.bucket_start_ns.push_back(b.work->start_ns() > 0 ? b.work->start_ns()
                                                               : b.launched_ns);
      b.work.reset();
      b.flat.mul_(scale);
      for (size_t pos = 0; pos < b.params.size(); ++pos) {
        Tensor& p = params[b.params[pos]];
        const Tensor avg = slot(b, pos).view(p.sizes());
        if (p.grad().defined()) {
          p.mutable_grad().copy_(avg);
        } else {
          p.mutable_grad() = avg.clone();
        }
      }
      b.pending = b.params.size();
    }
    ready.assign(params.size(), false);
    next_launch = 0;
    if (options.broadcast_buffers) {
      for (Tensor buf : model->buffers()) group->broadcast(buf, 0);
    }
  }
};

DataParallel::DataParallel(std::shared_ptr<nn::Module> model, std::shared_ptr<ProcessGroup> group,
                           DataParallelOptions options)
    : impl_(std::make_unique<Impl>()) {
  TANDEM_CHECK(model != nullptr && group != nullptr, "DataParallel: null model or group");
  impl_->model = std::move(model);
  impl_->group = std::move(group);
  impl_->options = options;
  {
    NoGradGuard no_grad;
    for (Tensor p : impl_->model->parameters()) impl_->group->broadcast(p, 0);
    for (Tensor b : impl_->model->buffers()) impl_->group->broadcast(b, 0);
  }
  for (const Tensor& p : impl_->model->parameters())
    if (p.requires_grad()) impl_->params.push_back(p);
  if (impl_->params.empty()) return;
  impl_->build_buckets();
  Impl* impl = impl_.get();
  for (size_t k = 0; k < impl_->params.size(); ++k)
    autograd::register_post_accumulate_grad_hook(impl_->params[k],
                                                 [impl, k](const Tensor&) { impl->on_grad(k); });
}

DataParallel::~DataParallel() {
  for (const Tensor& p : impl_->params) autograd::clear_post_accumulate_grad_hooks(p);
  for (Bucket& b : impl_->buckets) {
    if (!b.work) continue;
    try {
      b.work->wait();
    } catch (...) {  // a destructor does not throw; the error was or will be reported
    }
  }
}

void DataParallel::finish_gradient_sync() {
  if (!impl_->params.empty()) impl_->finish();
}
const SyncTimings& DataParallel::last_timings() const { return impl_->timings; }
int64_t DataParallel::num_buckets() const { return static_cast<int64_t>(impl_->buckets.size()); }
ProcessGroup& DataParallel::group() const { return *impl_->group; }

namespace {

// Sums `x` over the ranks; its backward sums the incoming gradients over the
// ranks (every rank's output depends on every rank's input).
Tensor all_reduce_differentiable(const std::shared_ptr<ProcessGroup>& group, const Tensor& x) {
  Tensor out = x.detach().clone();
  group->all_reduce(out, ReduceOp::Sum);
  if (autograd::should_record(x)) {
    autograd::record(out, "AllReduceBackward", {x}, {},
                     [group](const Tensor& g, const std::vector<Tensor>&) {
                       Tensor r = g.clone();
                       group->all_reduce(r, ReduceOp::Sum);
                       return std::vector<Tensor>{r};
                     });
  }
  return out;
}

}  // namespace

int64_t convert_sync_batchnorm(nn::Module& model, std::shared_ptr<ProcessGroup> group) {
  TANDEM_CHECK(group != nullptr, "convert_sync_batchnorm: null group");
  int64_t converted = 0;
  model.apply([&](nn::Module& m) {
    if (auto* bn = m.as<nn::BatchNormImplBase>()) {
      bn->sync_stats = [group](const Tensor& x) { return all_reduce_differentiable(group, x); };
      ++converted;
    }
  });
  return converted;
}

}  // namespace dist
}  // namespace tandem
