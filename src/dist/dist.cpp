// tandem::dist: initialisation from the environment, the rendezvous and its
// diagnosis of dead ranks, the communication thread, the sharded sampler's
// indices, and the choice of backend.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "dist/group.h"
#include "tandem/error.h"

namespace tandem {
namespace dist {

const char* backend_name(Backend b) { return b == Backend::Nccl ? "nccl" : "gloo"; }

namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  TANDEM_CHECK(end != v && *end == '\0' && x >= 0 && x < (1L << 20), "dist: ", name, "='", v,
               "' is not a non-negative integer");
  return static_cast<int>(x);
}

std::string env_str(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

std::string host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "?";
  return buf;
}

// Whether process `pid` of this host has exited (gone, or a zombie not yet reaped).
bool process_gone(long pid) {
  if (pid <= 0) return false;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return true;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(stat, text)) return false;
  const size_t paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() &&
         (text[paren + 2] == 'Z' || text[paren + 2] == 'X');
}

}  // namespace

bool env_is_distributed() { return env_int("WORLD_SIZE", 1) > 1; }

InitOptions options_from_env() {
  InitOptions o;
  o.world_size = env_int("WORLD_SIZE", 1);
  TANDEM_CHECK(o.world_size >= 1, "dist: WORLD_SIZE must be at least 1");
  TANDEM_CHECK(std::getenv("RANK") != nullptr || o.world_size == 1,
               "dist: WORLD_SIZE=", o.world_size, " but RANK is not set");
  o.rank = env_int("RANK", 0);
  TANDEM_CHECK(o.rank < o.world_size, "dist: RANK=", o.rank,
               " is not below WORLD_SIZE=", o.world_size);
  o.rendezvous = env_str("TANDEM_RENDEZVOUS");
  if (o.rendezvous.empty()) {
    const std::string addr = env_str("MASTER_ADDR"), port = env_str("MASTER_PORT");
    TANDEM_CHECK(o.world_size == 1 || (!addr.empty() && !port.empty()),
                 "dist: a distributed run (WORLD_SIZE=", o.world_size,
                 ") needs TANDEM_RENDEZVOUS (tcp://HOST:PORT or file:///PATH) or MASTER_ADDR "
                 "and MASTER_PORT");
    if (!addr.empty()) o.rendezvous = "tcp://" + addr + ":" + port;
  }
  const int timeout_s = env_int("TANDEM_DIST_TIMEOUT", 120);
  TANDEM_CHECK(timeout_s > 0, "dist: TANDEM_DIST_TIMEOUT must be positive");
  o.timeout = std::chrono::seconds(timeout_s);
  return o;
}

std::vector<BackendInfo> backends() { return {detail::gloo_info(), detail::nccl_info()}; }

namespace {
// A peer that dies closes its sockets, and writing to one raises SIGPIPE,
// whose default action ends this rank without a word. Ignored (unless the
// program installed a handler of its own), the write fails with EPIPE and
// becomes the error that names the dead rank.
void ignore_sigpipe() {
  struct sigaction current {};
  if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
    ::signal(SIGPIPE, SIG_IGN);
  }
}
}  // namespace

void ProcessGroup::all_reduce(Tensor& t, ReduceOp op) { all_reduce_async(t, op)->wait(); }

std::shared_ptr<ProcessGroup> ProcessGroup::create(const InitOptions& options, Backend backend) {
  ignore_sigpipe();
  TANDEM_CHECK(options.world_size >= 1 && options.rank >= 0 && options.rank < options.world_size,
               "dist: rank ", options.rank, " is not in [0, world size ", options.world_size, ")");
  TANDEM_CHECK(options.world_size == 1 || !options.rendezvous.empty(), "dist: a group of ",
               options.world_size, " ranks needs a rendezvous");
  TANDEM_CHECK(options.timeout.count() > 0, "dist: the timeout must be positive");
  std::shared_ptr<detail::Store> store;
  if (!options.rendezvous.empty())
    store = detail::make_store(options.rendezvous, options.rank, options.timeout);
  auto rv = std::make_shared<detail::Rendezvous>(store, "tandem/default", options.rank,
                                                 options.world_size, options.timeout);
  return backend == Backend::Nccl ? detail::make_nccl_group(rv) : detail::make_gloo_group(rv);
}

std::vector<int64_t> shard_indices(const std::vector<int64_t>& permutation, int rank, int world,
                                   bool pad) {
  TANDEM_CHECK(world >= 1 && rank >= 0 && rank < world, "shard_indices: rank ", rank,
               " is not in [0, ", world, ")");
  const auto n = static_cast<int64_t>(permutation.size());
  const int64_t total = pad ? (n + world - 1) / world * world : n;
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(total / world + 1));
  for (int64_t i = rank; i < total; i += world)
    out.push_back(permutation[static_cast<size_t>(n == 0 ? 0 : i % n)]);
  return out;
}

namespace detail {

Rendezvous::Rendezvous(std::shared_ptr<Store> store, std::string prefix, int rank, int size,
                       std::chrono::milliseconds timeout)
    : store_(std::move(store)),
      prefix_(std::move(prefix)),
      rank_(rank),
      size_(size),
      timeout_(timeout),
      peers_(static_cast<size_t>(size)) {
  peers_[static_cast<size_t>(rank)] = Peer{host_name(), static_cast<long>(::getpid())};
  if (size == 1) return;
  store_->set(prefix_ + "/peer/" + std::to_string(rank),
              peers_[static_cast<size_t>(rank)].host + " " + std::to_string(::getpid()));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (int r = 0; r < size; ++r) {
    if (r == rank) continue;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    std::string v;
    try {
      v = store_->get(prefix_ + "/peer/" + std::to_string(r),
                      std::max(left, std::chrono::milliseconds(1)),
                      "rank " + std::to_string(r) + " of " + std::to_string(size));
    } catch (const Error& e) {
      std::string missing;
      for (int m = r; m < size; ++m)
        if (m != rank && !store_->try_get(prefix_ + "/peer/" + std::to_string(m)))
          missing += (missing.empty() ? "" : ", ") + std::to_string(m);
      TANDEM_FAIL("dist: rank ", rank, " waited ", static_cast<double>(timeout.count()) / 1000.0,
                  " s at the rendezvous ", store_->describe(), " and rank(s) ", missing, " of ",
                  size, " never arrived");
    }
    std::istringstream in(v);
    Peer p;
    in >> p.host >> p.pid;
    peers_[static_cast<size_t>(r)] = p;
  }
}

std::shared_ptr<Rendezvous> Rendezvous::sub(const std::string& name) const {
  return std::make_shared<Rendezvous>(store_, prefix_ + "/" + name, rank_, size_, timeout_);
}

std::string Rendezvous::diagnose() const {
  std::string dead;
  const std::string& me = peers_[static_cast<size_t>(rank_)].host;
  for (int r = 0; r < size_; ++r) {
    const Peer& p = peers_[static_cast<size_t>(r)];
    if (r != rank_ && p.host == me && process_gone(p.pid)) {
      dead += (dead.empty() ? "" : ", ") + ("rank " + std::to_string(r) + " (pid " +
                                            std::to_string(p.pid) + " on " + p.host + ")");
    }
  }
  if (!dead.empty()) return dead + " has exited";
  return "a peer rank failed or did not answer within the timeout of " +
         std::to_string(static_cast<double>(timeout_.count()) / 1000.0) +
         " s (no rank of this host has exited; a rank on another host may have)";
}

void fail_collective(const Rendezvous& rv, const char* op, const std::string& what) {
  TANDEM_FAIL("dist: ", op, " failed on rank ", rv.rank(), " of ", rv.size(), ": ", rv.diagnose(),
              " [", what, "]");
}

CommThread::CommThread() : thread_([this] { loop(); }) {}

CommThread::~CommThread() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

namespace {
class FutureWork : public Work {
 public:
  void wait() override {
    if (future_.valid()) future_.get();
  }
  int64_t start_ns() const override { return start_ns_.load(); }

  std::future<void> future_;
  std::atomic<int64_t> start_ns_{0};
};
}  // namespace

std::shared_ptr<Work> CommThread::submit(std::function<void()> fn) {
  auto work = std::make_shared<FutureWork>();
  std::packaged_task<void()> task([w = work, fn = std::move(fn)] {
    w->start_ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::steady_clock::now().time_since_epoch())
                       .count();
    fn();
  });
  work->future_ = task.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
  return work;
}

void CommThread::loop() {
  while (true) {
    std::packaged_task<void()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

}  // namespace detail
}  // namespace dist
}  // namespace tandem
