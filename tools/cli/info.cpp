// `tandem info`: the build, CPU threads and BLAS, GPUs, driver and CUDA
// library versions, and why the CUDA backend cannot run where it cannot.
#include <iostream>
#include <memory>
#include <sstream>

#include "cli.h"
#include "commands.h"

namespace cli {

int run_info(bool json_output) {
  const td::BuildInfo info = td::build_info();
  if (json_output) {
    std::cout << host_info().dump(2) << "\n";
    return kExitOk;
  }
  // build_info's "CUDA usable: no: <reason>" line is said once, below.
  std::istringstream lines(info.to_string());
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("CUDA usable:", 0) != 0) std::cout << line << "\n";
  }
  if (info.cuda_usable) {
    std::cout << "CUDA backend: can run here (" << (info.gpus.empty() ? "?" : info.gpus[0].name)
              << ")\n";
  } else {
    std::cout << "CUDA backend: cannot run here: "
              << (info.cuda_built ? info.cuda_unusable_reason : "the CUDA backend was not built")
              << "\n";
  }
  // Data-parallel backends (tandem train --nproc N).
  for (const td::dist::BackendInfo& b : td::dist::backends()) {
    std::cout << "dist backend " << b.name << ": "
              << (b.available ? "available, version " + b.version : "unavailable") << " ("
              << b.detail << ")\n";
  }
  return kExitOk;
}

void add_info(CLI::App& app) {
  struct InfoArgs {
    bool json_output = false;
    int threads = 0;
  };
  auto a = std::make_shared<InfoArgs>();
  CLI::App* cmd = app.add_subcommand(
      "info", "build configuration, CPU threads and BLAS, GPU, driver, CUDA/cuBLAS/cuDNN versions");
  cmd->footer("Examples:\n  tandem info\n  tandem info --json");
  cmd->add_flag("--json", a->json_output, "host facts as JSON (what bench --json records)");
  add_threads_option(cmd, &a->threads);
  run_when_parsed(cmd, [a] { return run_info(a->json_output); });
}

}  // namespace cli
