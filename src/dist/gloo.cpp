// The Gloo process group: Gloo's TCP transport, its full-mesh rendezvous over
// tandem's store, and its collectives (ring all-reduce, broadcast, all-gather,
// barrier). Every collective runs on the group's communication thread, in
// submission order, with Gloo's timeout; a Gloo exception becomes an Error
// naming the dead rank when one of this host's ranks has exited.
// CUDA tensors go through pinned host buffers (Debian's Gloo has no CUDA).
#include "dist/group.h"
#include "tandem/cuda.h"
#include "tandem/error.h"
#include "tandem/ops.h"

#if TANDEM_HAVE_GLOO
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/config.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>
#endif

namespace tandem {
namespace dist {
namespace detail {

#if TANDEM_HAVE_GLOO

namespace {

// Gloo's view of tandem's store (bounded waits, under the group's prefix).
class GlooStore : public gloo::rendezvous::Store {
 public:
  GlooStore(const Rendezvous& rv) : rv_(rv) {}
  void set(const std::string& key, const std::vector<char>& data) override {
    rv_.store().set(rv_.prefix() + "/gloo/" + key, std::string(data.begin(), data.end()));
  }
  std::vector<char> get(const std::string& key) override {
    const std::string v = rv_.store().get(rv_.prefix() + "/gloo/" + key, rv_.timeout(),
                                          "Gloo's address key '" + key + "'");
    return std::vector<char>(v.begin(), v.end());
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, rv_.timeout()); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& t) override {
    for (const auto& k : keys)
      rv_.store().get(rv_.prefix() + "/gloo/" + k, t, "Gloo's key '" + k + "'");
  }

 private:
  const Rendezvous& rv_;
};

template <typename T>
void set_reduce(gloo::AllreduceOptions& o, ReduceOp op) {
  using Fn = void (*)(void*, const void*, const void*, size_t);
  switch (op) {
    case ReduceOp::Sum:
      o.setReduceFunction(static_cast<Fn>(&gloo::sum<T>));
      break;
    case ReduceOp::Max:
      o.setReduceFunction(static_cast<Fn>(&gloo::max<T>));
      break;
    case ReduceOp::Min:
      o.setReduceFunction(static_cast<Fn>(&gloo::min<T>));
      break;
  }
}

class GlooGroup : public ProcessGroup {
 public:
  explicit GlooGroup(std::shared_ptr<Rendezvous> rv)
      : ProcessGroup(rv->rank(), rv->size()), rv_(std::move(rv)) {
    if (size_ == 1) return;
    try {
      gloo::transport::tcp::attr attr;
      attr.hostname = local_address(rv_->store().describe());
      auto dev = gloo::transport::tcp::CreateDevice(attr);
      auto ctx = std::make_shared<gloo::rendezvous::Context>(rank_, size_);
      ctx->setTimeout(rv_->timeout());
      GlooStore store(*rv_);
      ctx->connectFullMesh(store, dev);
      ctx_ = ctx;
      // No rank leaves until every rank has connected: a rank that dropped
      // the group at once (an unused group) would otherwise close sockets a
      // slower rank is still connecting, and that rank's connect would fail.
      const std::string connected = rv_->prefix() + "/gloo_connected/";
      rv_->store().set(connected + std::to_string(rank_), "1");
      for (int r = 0; r < size_; ++r)
        rv_->store().get(connected + std::to_string(r), rv_->timeout(),
                         "rank " + std::to_string(r) + "'s connection to the group");
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail_collective(*rv_, "connecting (Gloo's full mesh)", e.what());
    }
    comm_ = std::make_unique<CommThread>();
  }
  ~GlooGroup() override { comm_.reset(); }

  Backend backend() const override { return Backend::Gloo; }
  std::shared_ptr<ProcessGroup> new_group(const std::string& name) override {
    return std::make_shared<GlooGroup>(rv_->sub(name));
  }

  std::shared_ptr<Work> all_reduce_async(Tensor t, ReduceOp op) override {
    check(t, "all_reduce");
    return run("all_reduce", t, [this, op](Tensor& host) {
      gloo::AllreduceOptions o(ctx_);
      o.setTag(next_tag());
      o.setTimeout(rv_->timeout());
      switch (host.dtype()) {
        case kFloat32:
          set_io<float>(o, host), set_reduce<float>(o, op);
          break;
        case kFloat64:
          set_io<double>(o, host), set_reduce<double>(o, op);
          break;
        default:
          set_io<int64_t>(o, host), set_reduce<int64_t>(o, op);
          break;
      }
      gloo::allreduce(o);
    });
  }

  void broadcast(Tensor& t, int root) override {
    check(t, "broadcast");
    TANDEM_CHECK(root >= 0 && root < size_, "dist: broadcast root ", root, " is not a rank");
    run("broadcast", t, [this, root](Tensor& host) {
      gloo::BroadcastOptions o(ctx_);
      o.setTag(next_tag());
      o.setTimeout(rv_->timeout());
      o.setRoot(root);
      auto* p = static_cast<char*>(host.raw_data());
      if (rank_ == root) o.setInput(p, host.nbytes());
      o.setOutput(p, host.nbytes());
      gloo::broadcast(o);
    })->wait();
  }

  Tensor all_gather(const Tensor& t) override {
    check(t, "all_gather");
    Shape shape = t.sizes();
    shape.insert(shape.begin(), size_);
    Tensor out = empty(shape, TensorOptions(t.dtype()));
    Tensor in = t.is_cuda() ? t.to(Device(kCPU)) : t;
    if (size_ == 1) {
      out.copy_(in.view(shape));
    } else {
      comm_
          ->submit([&] {
            guarded("all_gather", [&] {
              gloo::AllgatherOptions o(ctx_);
              o.setTag(next_tag());
              o.setTimeout(rv_->timeout());
              o.setInput(static_cast<char*>(in.raw_data()), in.nbytes());
              o.setOutput(static_cast<char*>(out.raw_data()), out.nbytes());
              gloo::allgather(o);
            });
          })
          ->wait();
    }
    return t.is_cuda() ? out.to(t.device()) : out;
  }

  void barrier() override {
    if (size_ == 1) return;
    comm_
        ->submit([this] {
          guarded("barrier", [this] {
            gloo::BarrierOptions o(ctx_);
            o.setTag(next_tag());
            o.setTimeout(rv_->timeout());
            gloo::barrier(o);
          });
        })
        ->wait();
  }

 private:
  template <typename T>
  static void set_io(gloo::AllreduceOptions& o, Tensor& host) {
    o.setInput(host.data_ptr<T>(), static_cast<size_t>(host.numel()));
    o.setOutput(host.data_ptr<T>(), static_cast<size_t>(host.numel()));
  }
  static void check(const Tensor& t, const char* op) {
    TANDEM_CHECK(t.defined(), "dist: ", op, " of an undefined tensor");
    TANDEM_CHECK(t.dtype() == kFloat32 || t.dtype() == kFloat64 || t.dtype() == kInt64,
                 "dist: ", op, " supports float32, float64 and int64 tensors, got ",
                 dtype_name(t.dtype()));
  }
  uint32_t next_tag() { return tag_++; }

  template <typename Fn>
  void guarded(const char* op, Fn&& fn) {
    try {
      fn();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail_collective(*rv_, op, e.what());
    }
  }

  // Runs `fn` on a host tensor holding t's data on the communication thread;
  // a CUDA tensor is staged through a pinned host buffer on the caller's stream.
  template <typename Fn>
  std::shared_ptr<Work> run(const char* op, Tensor t, Fn fn) {
    if (size_ == 1) return comm_done();
    if (!t.is_cuda()) {
      return comm_->submit([this, op, t, fn]() mutable { guarded(op, [&] { fn(t); }); });
    }
    const cuda::Stream stream = cuda::current_stream(t.device().index());
    // The data only: a parameter (requires grad) is staged and written back
    // through a detached alias of its storage, outside autograd.
    Tensor data = t.detach();
    return comm_->submit([this, op, data, fn, stream]() mutable {
      cuda::StreamGuard guard(stream);
      Tensor host = empty(data.sizes(), TensorOptions(data.dtype()).pinned_memory(true));
      host.copy_(data);
      stream.synchronize();
      guarded(op, [&] { fn(host); });
      data.copy_(host);
      stream.synchronize();  // the write-back is done before the work counts as done
    });
  }
  static std::shared_ptr<Work> comm_done() {
    struct Done : Work {
      void wait() override {}
    };
    return std::make_shared<Done>();
  }

  std::shared_ptr<Rendezvous> rv_;
  std::shared_ptr<gloo::Context> ctx_;
  std::unique_ptr<CommThread> comm_;
  uint32_t tag_ = 0;
};

}  // namespace

std::shared_ptr<ProcessGroup> make_gloo_group(std::shared_ptr<Rendezvous> rv) {
  return std::make_shared<GlooGroup>(std::move(rv));
}

BackendInfo gloo_info() {
  BackendInfo b;
  b.name = "gloo";
  b.available = true;
  b.version = std::to_string(GLOO_VERSION_MAJOR) + "." + std::to_string(GLOO_VERSION_MINOR) + "." +
              std::to_string(GLOO_VERSION_PATCH);
  b.detail = std::string("transport tcp") +
             (GLOO_HAVE_TRANSPORT_IBVERBS ? ", ibverbs (unused)" : "") +
             (GLOO_USE_CUDA ? "; CUDA" : "; no CUDA: GPU tensors through pinned host buffers");
  return b;
}

#else  // !TANDEM_HAVE_GLOO

std::shared_ptr<ProcessGroup> make_gloo_group(std::shared_ptr<Rendezvous>) {
  TANDEM_FAIL(
      "dist: Gloo is unavailable: tandem was built without it (install libgloo-dev, "
      "tools/setup.sh does, and reconfigure)");
}

BackendInfo gloo_info() {
  BackendInfo b;
  b.name = "gloo";
  b.detail = "not built (libgloo-dev was not found at configure time)";
  return b;
}

#endif

}  // namespace detail
}  // namespace dist
}  // namespace tandem
