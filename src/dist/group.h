// Internals of tandem::dist shared by the Gloo and NCCL groups: the
// rendezvous (who arrived, from which host and pid), the diagnosis of a failed
// collective (which rank has died), and the communication thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dist/store.h"
#include "tandem/dist.h"

namespace tandem {
namespace dist {
namespace detail {

struct Peer {
  std::string host;
  long pid = 0;
};

// The ranks' meeting: each rank writes "<prefix>/peer/<rank>" = "host pid" and
// waits for every other rank's key; a rank missing at the timeout is named.
class Rendezvous {
 public:
  Rendezvous(std::shared_ptr<Store> store, std::string prefix, int rank, int size,
             std::chrono::milliseconds timeout);
  int rank() const { return rank_; }
  int size() const { return size_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  Store& store() const { return *store_; }
  std::shared_ptr<Store> store_ptr() const { return store_; }
  const std::string& prefix() const { return prefix_; }
  const std::vector<Peer>& peers() const { return peers_; }
  // A rendezvous for a second group over the same ranks and store.
  std::shared_ptr<Rendezvous> sub(const std::string& name) const;
  // What is known about the ranks after a failed collective: the ranks whose
  // process (on this host) has exited, or that the peer failed or timed out.
  std::string diagnose() const;

 private:
  std::shared_ptr<Store> store_;
  std::string prefix_;
  int rank_, size_;
  std::chrono::milliseconds timeout_;
  std::vector<Peer> peers_;
};

// A single thread that runs a group's collectives in submission order.
class CommThread {
 public:
  CommThread();
  ~CommThread();
  std::shared_ptr<Work> submit(std::function<void()> fn);

 private:
  void loop();
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::packaged_task<void()>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

std::shared_ptr<ProcessGroup> make_gloo_group(std::shared_ptr<Rendezvous> rv);
std::shared_ptr<ProcessGroup> make_nccl_group(std::shared_ptr<Rendezvous> rv);
BackendInfo gloo_info();
BackendInfo nccl_info();

// Throws the Error of a failed collective: "dist: <op> failed on rank r of w:
// <diagnosis> (<engine's message>)".
[[noreturn]] void fail_collective(const Rendezvous& rv, const char* op, const std::string& what);

}  // namespace detail
}  // namespace dist
}  // namespace tandem
