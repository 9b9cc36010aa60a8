// `tandem train --nproc N` and the ranks of a data-parallel run: the local
// launcher (N processes of this executable, a fresh file rendezvous, the CPU
// cores split between them, one GPU each on a GPU machine) and the rank's
// setup (--rank/--world-size/--rendezvous or the environment).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "cli.h"

extern char** environ;

namespace cli {

namespace {

std::vector<std::string> own_argv() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> out;
  std::string arg;
  while (std::getline(in, arg, '\0')) out.push_back(arg);
  return out;
}

}  // namespace

DistSetup dist_setup(const TrainArgs& args) {
  DistSetup d;
  const bool launched = std::getenv("TANDEM_LAUNCHED") != nullptr;
  if (args.nproc < 1) throw UsageError("--nproc must be at least 1");
  if (args.nproc > 1 && !launched) {
    if (args.world_size || args.rank || !args.rendezvous.empty())
      throw UsageError(
          "--nproc starts the ranks of one machine; --rank, --world-size and "
          "--rendezvous are for starting each rank yourself (several machines)");
    d.launch = true;
    return d;
  }
  td::dist::InitOptions init;
  if (args.world_size) {
    if (!args.rank || args.rendezvous.empty())
      throw UsageError("--world-size needs --rank and --rendezvous tcp://HOST:PORT|file:///PATH");
    init.world_size = *args.world_size;
    init.rank = *args.rank;
    init.rendezvous = args.rendezvous;
    if (init.world_size < 1 || init.rank < 0 || init.rank >= init.world_size)
      throw UsageError("--rank must be in [0, --world-size)");
    if (const char* t = std::getenv("TANDEM_DIST_TIMEOUT"))
      init.timeout = std::chrono::seconds(std::max(1, std::atoi(t)));
  } else {
    init = td::dist::options_from_env();
  }
  d.init = init;
  d.world = init.world_size;
  d.rank = init.rank;
  if (const char* lr = std::getenv("LOCAL_RANK")) d.local_rank = std::atoi(lr);
  // torchrun's LOCAL_WORLD_SIZE: the ranks on this machine (at least this one's).
  d.local_world = d.local_rank + 1;
  if (const char* lw = std::getenv("LOCAL_WORLD_SIZE")) {
    d.local_world = std::max(d.local_world, std::atoi(lw));
  }
  return d;
}

int launch_local(const TrainArgs& args, const std::string& out) {
  std::vector<std::string> argv = own_argv();
  if (argv.empty()) throw std::runtime_error("cannot read this process's command line");
  if (args.out.empty() && !out.empty()) {
    argv.push_back("--out");
    argv.push_back(out);
  }
  return launch_ranks(argv, args.nproc, args.threads == 0, "");
}

int launch_ranks(std::vector<std::string> argv, int n, bool split_cores,
                 const std::string& rank0_stdout) {
  char tmpl[] = "/tmp/tandem_rendezvous_XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("cannot create a rendezvous directory");
  const std::string rendezvous = std::string("file://") + tmpl + "/store";
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const unsigned threads = std::max(1u, cores / static_cast<unsigned>(n));
  std::cerr << "launching " << n << " ranks on this machine (rendezvous " << rendezvous << ", "
            << threads << " CPU thread" << (threads == 1 ? "" : "s") << " each)" << std::endl;
  std::vector<pid_t> pids(static_cast<size_t>(n), -1);
  char exe[4096] = {0};
  const ssize_t len = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (len <= 0) throw std::runtime_error("cannot find this executable (/proc/self/exe)");
  for (int r = 0; r < n; ++r) {
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string s = *e;
      if (s.rfind("OMP_NUM_THREADS=", 0) != 0) env.push_back(s);
    }
    env.push_back("TANDEM_LAUNCHED=1");
    env.push_back("RANK=" + std::to_string(r));
    env.push_back("LOCAL_RANK=" + std::to_string(r));
    env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(n));
    env.push_back("WORLD_SIZE=" + std::to_string(n));
    env.push_back("TANDEM_RENDEZVOUS=" + rendezvous);
    if (split_cores) env.push_back("OMP_NUM_THREADS=" + std::to_string(threads));
    std::vector<char*> envp, av;
    for (auto& s : env) envp.push_back(s.data());
    envp.push_back(nullptr);
    for (auto& s : argv) av.push_back(s.data());
    av.push_back(nullptr);
    // Ctrl-C reaches every rank (each keeps a checkpoint); the launcher waits.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t dflt;
    sigemptyset(&dflt);
    sigaddset(&dflt, SIGINT);
    posix_spawnattr_setsigdefault(&attr, &dflt);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (r == 0 && !rank0_stdout.empty())
      posix_spawn_file_actions_addopen(&fa, 1, rank0_stdout.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                       0600);
    const int rc =
        posix_spawn(&pids[static_cast<size_t>(r)], exe, &fa, &attr, av.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) throw std::runtime_error("cannot start rank " + std::to_string(r));
    if (r == 0) ::signal(SIGINT, SIG_IGN);
  }
  // Wait for all; after the first failure the others get the timeout (they
  // fail by themselves, naming it) plus a grace period, then are killed.
  int first_failure = 0, left = n;
  std::chrono::steady_clock::time_point kill_at = std::chrono::steady_clock::time_point::max();
  int timeout_s = 120;
  if (const char* t = std::getenv("TANDEM_DIST_TIMEOUT")) timeout_s = std::max(1, std::atoi(t));
  while (left > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (int r = 0; r < n; ++r) {
        if (pids[static_cast<size_t>(r)] != pid) continue;
        pids[static_cast<size_t>(r)] = -1;
        --left;
        const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (code != 0 && first_failure == 0) {
          first_failure = code;
          std::cerr << "tandem train: rank " << r << " exited with status " << code
                    << "; the other ranks stop within the timeout (" << timeout_s << " s)\n";
          kill_at = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s + 10);
        }
      }
      continue;
    }
    if (std::chrono::steady_clock::now() > kill_at) {
      for (pid_t p : pids)
        if (p > 0) ::kill(p, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
  return first_failure;
}

}  // namespace cli
