// tandem::dist on this machine: Gloo over loopback (127.0.0.1 only), ranks
// as processes (tandem_dist_worker, spawned here), every wait bounded.
//   - collectives' values over a file and a TCP rendezvous;
//   - 2 ranks at batch B == 1 process at batch 2B over 5 SGD steps, for an
//     MLP and for a conv net with SyncBatchNorm (the worker checks every step);
//   - a rank that exits makes the other fail within the timeout, naming it;
//     a rank that never arrives likewise;
//   - the first bucket's all-reduce starts before backward ends;
//   - DistributedSampler's shards; NCCL's absence as a clear message.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "tandem/tandem.h"

extern char** environ;

using namespace tandem;

namespace {

struct Rank {
  pid_t pid = -1;
  int status = -1;
  std::string out, err;
  double seconds = 0;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string fresh_dir() {
  char tmpl[] = "/tmp/tandem_dist_test_XXXXXX";
  const char* d = ::mkdtemp(tmpl);
  if (d == nullptr) throw std::runtime_error("mkdtemp failed");
  return d;
}

// A free loopback port (bound then released; the store binds it again).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Runs `ranks` of the `world` ranks of the worker with `args`, each with a
// hard deadline (killed after it: a hang fails the test instead of the suite).
std::vector<Rank> run_ranks(const std::vector<std::string>& args, int world,
                            const std::vector<int>& ranks, const std::string& rendezvous,
                            int timeout_s, int deadline_s = 60) {
  const std::string dir = fresh_dir();
  std::vector<Rank> out(ranks.size());
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < ranks.size(); ++i) {
    std::vector<std::string> env_store;
    for (char** e = environ; *e != nullptr; ++e) env_store.emplace_back(*e);
    env_store.push_back("RANK=" + std::to_string(ranks[i]));
    env_store.push_back("WORLD_SIZE=" + std::to_string(world));
    env_store.push_back("TANDEM_RENDEZVOUS=" + rendezvous);
    env_store.push_back("TANDEM_DIST_TIMEOUT=" + std::to_string(timeout_s));
    env_store.push_back("TANDEM_DIST_HOST=127.0.0.1");
    env_store.push_back("OMP_NUM_THREADS=1");
    std::vector<char*> envp;
    for (auto& s : env_store) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> argv_store{TANDEM_DIST_WORKER};
    argv_store.insert(argv_store.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : argv_store) argv.push_back(s.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    const std::string o = dir + "/out" + std::to_string(i), e = dir + "/err" + std::to_string(i);
    posix_spawn_file_actions_addopen(&fa, 1, o.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, e.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    EXPECT_EQ(posix_spawn(&out[i].pid, argv[0], &fa, nullptr, argv.data(), envp.data()), 0);
    posix_spawn_file_actions_destroy(&fa);
  }
  size_t left = ranks.size();
  while (left > 0) {
    for (auto& r : out) {
      if (r.status != -1 || r.pid <= 0) continue;
      int st = 0;
      if (::waitpid(r.pid, &st, WNOHANG) == r.pid) {
        r.status = st;
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        --left;
      }
    }
    if (std::chrono::steady_clock::now() - start > std::chrono::seconds(deadline_s)) {
      for (auto& r : out)
        if (r.status == -1 && r.pid > 0) ::kill(r.pid, SIGKILL);
      ADD_FAILURE() << "ranks still running after " << deadline_s << " s: killed";
      deadline_s = 1 << 20;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].out = read_file(dir + "/out" + std::to_string(i));
    out[i].err = read_file(dir + "/err" + std::to_string(i));
  }
  return out;
}

bool exited_ok(const Rank& r) { return WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0; }

std::string describe(const std::vector<Rank>& rs) {
  std::string s;
  for (size_t i = 0; i < rs.size(); ++i)
    s += "rank #" + std::to_string(i) + " status " + std::to_string(rs[i].status) +
         "\n out: " + rs[i].out + "\n err: " + rs[i].err + "\n";
  return s;
}

std::string file_rendezvous() { return "file://" + fresh_dir() + "/store"; }

}  // namespace

TEST(Dist, CollectivesOverFileStore) {
  auto rs = run_ranks({"collectives"}, 3, {0, 1, 2}, file_rendezvous(), 30);
  for (const auto& r : rs) EXPECT_TRUE(exited_ok(r)) << describe(rs);
  for (int k = 0; k < 3; ++k)
    EXPECT_NE(rs[k].out.find("OK collectives rank " + std::to_string(k)), std::string::npos);
}

TEST(Dist, CollectivesOverTcpStore) {
  const std::string url = "tcp://127.0.0.1:" + std::to_string(free_port());
  auto rs = run_ranks({"collectives"}, 2, {0, 1}, url, 30);
  for (const auto& r : rs) EXPECT_TRUE(exited_ok(r)) << describe(rs);
}

// A group made and dropped at once on every rank (tandem train's unused
// SyncBatchNorm group for a net without batch norm) never breaks a peer that
// is still connecting it. Failed 1 in about 10 runs of cli_dist before the
// constructor waited for every rank.
TEST(Dist, GroupsDroppedAtOnceNeverBreakAPeerStillConnecting) {
  auto rs = run_ranks({"dropped_groups"}, 3, {0, 1, 2}, file_rendezvous(), 60);
  for (const auto& r : rs) EXPECT_TRUE(exited_ok(r)) << describe(rs);
  for (int k = 0; k < 3; ++k)
    EXPECT_NE(rs[k].out.find("OK dropped_groups rank " + std::to_string(k)), std::string::npos)
        << describe(rs);
}

// Tolerance: |p_ddp - p_ref| <= 1e-5 + 1e-4 |p_ref| for every parameter and
// buffer after every step (float32; the two sum the batch in different orders).
TEST(Dist, TwoRanksEqualOneProcessAtDoubleBatchMlp) {
  auto rs = run_ranks({"equiv", "mlp", "6"}, 2, {0, 1}, file_rendezvous(), 60);
  for (const auto& r : rs) EXPECT_TRUE(exited_ok(r)) << describe(rs);
  EXPECT_NE(rs[0].out.find("OK equiv mlp"), std::string::npos) << describe(rs);
}

TEST(Dist, TwoRanksEqualOneProcessAtDoubleBatchSyncBatchNorm) {
  auto rs = run_ranks({"equiv", "bn", "5"}, 2, {0, 1}, file_rendezvous(), 60);
  for (const auto& r : rs) EXPECT_TRUE(exited_ok(r)) << describe(rs);
  EXPECT_NE(rs[1].out.find("OK equiv bn"), std::string::npos) << describe(rs);
}

TEST(Dist, DeadRankFailsTheOthersWithinTheTimeoutNamingIt) {
  const int timeout_s = 5;
  auto rs = run_ranks({"die"}, 2, {0, 1}, file_rendezvous(), timeout_s);
  ASSERT_TRUE(WIFEXITED(rs[1].status) && WEXITSTATUS(rs[1].status) == 3) << describe(rs);
  EXPECT_TRUE(WIFEXITED(rs[0].status) && WEXITSTATUS(rs[0].status) == 1) << describe(rs);
  EXPECT_NE(rs[0].err.find("rank 1 (pid"), std::string::npos) << describe(rs);
  EXPECT_NE(rs[0].err.find("has exited"), std::string::npos) << describe(rs);
  EXPECT_LT(rs[0].seconds, timeout_s + 3.0) << describe(rs);
}

TEST(Dist, RankThatNeverArrivesIsNamed) {
  const int timeout_s = 2;
  auto rs = run_ranks({"collectives"}, 3, {0, 2}, file_rendezvous(), timeout_s);
  for (const auto& r : rs) {
    EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 1) << describe(rs);
    EXPECT_NE(r.err.find("rank(s) 1 of 3 never arrived"), std::string::npos) << describe(rs);
    EXPECT_LT(r.seconds, timeout_s + 3.0);
  }
}

TEST(Dist, FirstBucketAllReduceStartsBeforeBackwardEnds) {
  auto rs = run_ranks({"overlap"}, 2, {0, 1}, file_rendezvous(), 60);
  for (const auto& r : rs) EXPECT_TRUE(exited_ok(r)) << describe(rs);
  std::cout << rs[0].out;
}

TEST(Dist, TrainerOnTwoRanksResumesAndOnlyRankZeroWrites) {
  const std::string dir = fresh_dir() + "/run";
  auto rs = run_ranks({"trainer", dir}, 2, {0, 1}, file_rendezvous(), 60);
  for (const auto& r : rs) EXPECT_TRUE(exited_ok(r)) << describe(rs);
  // The reduced validation figures are the same on both ranks.
  const auto figure = [](const std::string& out) { return out.substr(out.find("val_accuracy")); };
  ASSERT_NE(rs[0].out.find("OK trainer"), std::string::npos) << describe(rs);
  ASSERT_NE(rs[1].out.find("OK trainer"), std::string::npos) << describe(rs);
  EXPECT_EQ(figure(rs[0].out), figure(rs[1].out));
  EXPECT_TRUE(std::ifstream(dir + "/last.safetensors").good());
}

TEST(Dist, ShardIndicesCoverEverySampleOncePerEpoch) {
  for (int world : {1, 2, 3, 4}) {
    for (int64_t n : {1, 7, 12, 103}) {
      std::vector<int64_t> perm(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) perm[static_cast<size_t>(i)] = (i * 37 + 5) % n;
      std::multiset<int64_t> padded, exact;
      size_t shard_len = 0;
      for (int r = 0; r < world; ++r) {
        auto p = dist::shard_indices(perm, r, world, true);
        if (r == 0) shard_len = p.size();
        EXPECT_EQ(p.size(), shard_len);  // every rank the same number of steps
        padded.insert(p.begin(), p.end());
        auto e = dist::shard_indices(perm, r, world, false);
        exact.insert(e.begin(), e.end());
      }
      EXPECT_EQ(static_cast<int64_t>(padded.size()), (n + world - 1) / world * world);
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_EQ(exact.count(i), 1u) << "n " << n << " world " << world << " sample " << i;
        EXPECT_GE(padded.count(i), 1u);
      }
    }
  }
}

TEST(Dist, LoaderShardsSeeEverySampleOncePerEpoch) {
  // Labels are the sample indices, so the batches say which samples they hold.
  const int64_t n = 64, world = 2;
  data::ImageDataset ds;
  ds.images = zeros({n, 1, 2, 2}, TensorOptions(kUInt8));
  ds.labels = arange(static_cast<double>(n), TensorOptions(kInt64));
  ds.classes = std::vector<std::string>(static_cast<size_t>(n), "c");
  for (int64_t epoch : {0, 1}) {
    std::multiset<int64_t> seen;
    std::vector<std::vector<int64_t>> orders;
    for (int64_t rank = 0; rank < world; ++rank) {
      data::LoaderOptions o;
      o.batch_size = 5;
      o.seed = 11;
      o.num_replicas = world;
      o.rank = rank;
      data::DataLoader loader(ds, o);
      EXPECT_EQ(loader.epoch_size(), n / world);
      loader.start_epoch(epoch);
      data::Batch b;
      std::vector<int64_t> order;
      while (loader.next(&b))
        for (int64_t i = 0; i < b.labels.numel(); ++i) order.push_back(b.labels[i].item<int64_t>());
      seen.insert(order.begin(), order.end());
      orders.push_back(order);
    }
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(seen.count(i), 1u) << "epoch " << epoch;
    EXPECT_NE(orders[0], std::vector<int64_t>(orders[0].size(), 0));
  }
}

TEST(Dist, NcclAbsentIsAClearError) {
  ::setenv("TANDEM_NCCL_LIBRARY", "/nonexistent/libnccl.so.2", 1);
  dist::InitOptions o;
  try {
    dist::ProcessGroup::create(o, dist::Backend::Nccl);
    FAIL() << "creating an NCCL group without NCCL did not throw";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("Gloo"), std::string::npos) << m;
    EXPECT_TRUE(m.find("NCCL is not available") != std::string::npos ||
                m.find("NCCL backend is not in this build") != std::string::npos)
        << m;
  }
  bool listed = false;
  for (const auto& b : dist::backends()) {
    if (b.name == "nccl") {
      listed = true;
      EXPECT_FALSE(b.available);
      EXPECT_FALSE(b.detail.empty());
    }
    if (b.name == "gloo") {
      EXPECT_TRUE(b.available) << b.detail;
    }
  }
  EXPECT_TRUE(listed);
}

TEST(Dist, BadRendezvousAndEnvironmentAreClearErrors) {
  dist::InitOptions o;
  o.world_size = 2;
  o.rank = 0;
  o.rendezvous = "udp://x";
  EXPECT_THROW(dist::ProcessGroup::create(o), Error);
  o.rendezvous = "tcp://127.0.0.1:notaport";
  EXPECT_THROW(dist::ProcessGroup::create(o), Error);
  o.rank = 2;
  EXPECT_THROW(dist::ProcessGroup::create(o), Error);
  ::setenv("WORLD_SIZE", "2", 1);
  ::unsetenv("RANK");
  EXPECT_THROW(dist::options_from_env(), Error);
  ::setenv("RANK", "1", 1);
  ::unsetenv("MASTER_ADDR");
  ::unsetenv("TANDEM_RENDEZVOUS");
  try {
    dist::options_from_env();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("MASTER_ADDR"), std::string::npos);
  }
  ::unsetenv("WORLD_SIZE");
  ::unsetenv("RANK");
}
