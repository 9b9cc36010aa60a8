// `tandem`: the command-line tool. Subcommands train, eval, predict, bench
// (train, ops), data (get, import), info and check, each declared by its file's
// add_<command>(app) (commands.h); parsing with CLI11. Exit status: 0 ok,
// 1 runtime error (missing data, non-finite loss, I/O), 2 usage error (unknown
// option or model, bad number, conflicting options).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <optional>

#include "cli.h"
#include "commands.h"

namespace cli {
namespace {

// OpenMP threads wait passively (sleep) when idle unless OMP_WAIT_POLICY says
// otherwise: spinning idle threads steal the cores of a busy machine (a LeNet
// step took 15-284 ms instead of 7 ms beside another busy process on two
// cores). libgomp reads the variable when it loads, before main, so when it
// is unset the binary runs itself again once with it set; the marker variable
// guards against a loop.
void ensure_passive_openmp_wait(char** argv) {
  constexpr const char* kMarker = "TANDEM_OMP_REEXEC";
  if (std::getenv(kMarker) != nullptr) {
    ::unsetenv(kMarker);
    return;
  }
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  ::setenv("OMP_WAIT_POLICY", "passive", 1);
  ::setenv(kMarker, "1", 1);
  ::execv("/proc/self/exe", argv);
  ::unsetenv(kMarker);  // exec failed: run on, with spinning idle threads
}

const char* kExamples = R"(Examples:
  tandem train --out runs/first          # CIFAR-10 with the default model for this machine
  tandem eval --checkpoint runs/first/best.safetensors
  tandem predict --from runs/first cat.png            # class and probabilities per image
  tandem bench train --model lenet --batch-size 128 --steps 20 --json
  tandem data get                        # download / import CIFAR-10 into the cache
  tandem info                            # build, BLAS, GPU, CUDA versions; why CUDA cannot run
  tandem check --quick                   # every op on this GPU against the CPU
Run 'tandem <command> --help' for each command's options and examples.)";

// Parses the command line: the exit status when it is a usage error or --help.
std::optional<int> parse(CLI::App& app, int argc, char** argv) {
  if (const std::string msg = check_command_words(app, argc, argv); !msg.empty()) {
    std::cerr << msg << "\n";
    return kExitUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ArgumentMismatch& e) {
    const std::string msg = repeated_option_message(e.what(), argc, argv);
    if (msg.empty()) return app.exit(e) == 0 ? kExitOk : kExitUsage;
    const std::string command = command_of(app, argc, argv);
    std::cerr << command << ": error: " << msg << "\nRun '" << command
              << " --help' for the options.\n";
    return kExitUsage;
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  return std::nullopt;
}

// Runs the command parsed; its errors become messages and exit statuses.
int run(const CLI::App& app) {
  const ParsedCommand cmd = parsed_command(app);
  if (cmd.run == nullptr) return kExitUsage;
  try {
    return (*cmd.run)();
  } catch (const UsageError& e) {
    std::cerr << cmd.name << ": error: " << e.what() << "\nRun '" << cmd.name
              << " --help' for the options.\n";
    return kExitUsage;
  } catch (const tandem::Error& e) {
    std::cerr << cmd.name << ": error: " << e.message() << "\n";
    return kExitRuntime;
  } catch (const std::exception& e) {
    std::cerr << cmd.name << ": error: " << e.what() << "\n";
    return kExitRuntime;
  }
}

}  // namespace
}  // namespace cli

int main(int argc, char** argv) {
  using namespace cli;
  ensure_passive_openmp_wait(argv);
  // Named, so that "Usage:" says `tandem` rather than the binary's full path.
  CLI::App app{"tandem: train, evaluate and benchmark CIFAR-10 CNNs on the CPU and CUDA", "tandem"};
  app.require_subcommand(1);
  app.footer(kExamples);
  add_train(app);
  add_eval(app);
  add_bench(app);
  add_predict(app);
  add_data(app);
  add_info(app);
  add_check(app);
  if (const std::optional<int> status = parse(app, argc, argv)) return *status;
  return run(app);
}
