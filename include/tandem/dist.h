// tandem::dist: data-parallel training on engines people trust: Gloo (TCP) for
// CPU tensors, NCCL (loaded at run time with dlopen("libnccl.so.2")) for CUDA
// tensors. No collective algorithm is tandem's own: the all-reduce, broadcast,
// all-gather and barrier are Gloo's or NCCL's.
//
//   dist::InitOptions init = dist::options_from_env();   // RANK, WORLD_SIZE, ...
//   auto pg = dist::ProcessGroup::create(init);          // Gloo (or NCCL on GPUs)
//   dist::DataParallel ddp(model, pg);                   // broadcast from rank 0
//   loss.backward();                                     // buckets all-reduced
//   ddp.finish_gradient_sync();                          // wait + average
//   optimizer.step();
//
// Rendezvous: ranks meet through a key-value store, a shared directory
// (file:///path, Gloo's FileStore; the directory must be fresh for each run)
// or TCP (tcp://host:port: rank 0 serves the store on that address). Every
// wait is bounded by the timeout: a rank that never arrives or that dies
// makes the others throw an Error naming it (rank, host, pid) within the
// timeout; nothing hangs.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tandem/nn/module.h"
#include "tandem/tensor.h"

namespace tandem {
namespace dist {

enum class Backend : int8_t {
  Gloo,  // CPU tensors; CUDA tensors through pinned host buffers
  Nccl,  // CUDA tensors only
};
const char* backend_name(Backend b);

enum class ReduceOp : int8_t { Sum, Max, Min };

struct InitOptions {
  int rank = 0;
  int world_size = 1;
  // "tcp://HOST:PORT" or "file:///PATH".
  std::string rendezvous;
  std::chrono::milliseconds timeout{std::chrono::seconds(120)};
};

// From the environment, as torchrun sets it: RANK, WORLD_SIZE, and either
// TANDEM_RENDEZVOUS (tcp://... or file://...) or MASTER_ADDR + MASTER_PORT;
// TANDEM_DIST_TIMEOUT (seconds, default 120). Throws naming what is missing.
InitOptions options_from_env();
// Whether the environment describes a distributed run (WORLD_SIZE > 1).
bool env_is_distributed();

// What `tandem info` lists.
struct BackendInfo {
  std::string name;  // "gloo", "nccl"
  bool available = false;
  std::string version;  // "" when unavailable
  std::string detail;   // transports, or why it is unavailable
};
std::vector<BackendInfo> backends();

// A pending asynchronous collective.
class Work {
 public:
  virtual ~Work() = default;
  // Blocks until done; rethrows the collective's error.
  virtual void wait() = 0;
  // Steady-clock ns when the engine began it (0: not known or not yet).
  virtual int64_t start_ns() const { return 0; }
};

// One group of ranks and one communicator. Collectives run in place on
// contiguous float32/float64/int64 tensors, every rank calling the same
// collectives in the same order (tandem's contract, as Gloo's and NCCL's).
class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;

  // Meets the other ranks through the rendezvous store. Backend Nccl throws
  // when libnccl.so.2 cannot be loaded or is too old (the message says why
  // and that Gloo is the fallback).
  static std::shared_ptr<ProcessGroup> create(const InitOptions& options,
                                              Backend backend = Backend::Gloo);

  int rank() const { return rank_; }
  int size() const { return size_; }
  virtual Backend backend() const = 0;
  // A second, independent communicator over the same ranks (its collectives
  // may run concurrently with this one's: SyncBatchNorm beside DDP's buckets).
  virtual std::shared_ptr<ProcessGroup> new_group(const std::string& name) = 0;

  // In place, on every rank: all_reduce_async(t, op)->wait().
  void all_reduce(Tensor& t, ReduceOp op = ReduceOp::Sum);
  // Gloo: on the group's communication thread; NCCL: on its stream.
  virtual std::shared_ptr<Work> all_reduce_async(Tensor t, ReduceOp op = ReduceOp::Sum) = 0;
  virtual void broadcast(Tensor& t, int root = 0) = 0;
  // [world * t.numel()] in rank order, as a tensor of shape [world, ...t.shape].
  virtual Tensor all_gather(const Tensor& t) = 0;
  virtual void barrier() = 0;

 protected:
  ProcessGroup(int rank, int size) : rank_(rank), size_(size) {}
  int rank_, size_;
};

// ---- Data parallelism ---------------------------------------------------------

struct DataParallelOptions {
  double bucket_cap_mb = 25.0;
  bool broadcast_buffers = true;  // buffers (BN running stats) from rank 0 each finish
};

// What one backward's gradient sync did (for tests and benchmarks).
struct SyncTimings {
  int64_t buckets = 0;
  // Steady-clock times (ns since epoch) when each bucket's all-reduce started
  // on the communication thread/stream, in bucket order.
  std::vector<int64_t> bucket_start_ns;
};

// PyTorch's DistributedDataParallel: the parameters and buffers are broadcast
// from rank 0 at construction; gradients are grouped into buckets (about
// bucket_cap_mb, in reverse parameter order) whose all-reduce starts as soon as
// the bucket's last gradient is accumulated during backward (an autograd
// hook), in the same bucket order on every rank. finish_gradient_sync() waits,
// averages and writes the averaged gradients into the parameters' grad().
class DataParallel {
 public:
  DataParallel(std::shared_ptr<nn::Module> model, std::shared_ptr<ProcessGroup> group,
               DataParallelOptions options = {});
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // Call after backward and before optimizer.step().
  void finish_gradient_sync();
  const SyncTimings& last_timings() const;
  int64_t num_buckets() const;
  ProcessGroup& group() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Makes every BatchNorm of `model` compute its training statistics over all
// ranks of `group` (SyncBatchNorm), through a differentiable all-reduce.
// Returns how many BatchNorm modules were converted.
int64_t convert_sync_batchnorm(nn::Module& model, std::shared_ptr<ProcessGroup> group);

// The rank's indices of one epoch, as PyTorch's DistributedSampler: the
// permutation of `n` by (seed, epoch) (identity without shuffle), padded by
// repeating its start to a multiple of `world`, then indices[rank::world].
// With pad false (evaluation) the tail is not padded: ranks differ by at most one.
std::vector<int64_t> shard_indices(const std::vector<int64_t>& permutation, int rank, int world,
                                   bool pad = true);

}  // namespace dist
}  // namespace tandem
