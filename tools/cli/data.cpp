// `tandem data get` and `tandem data import`: CIFAR-10 made ready in the cache
// by the library's prepare_cifar10 (the cache, a local copy, or a download).
#include <iostream>
#include <memory>

#include "cli.h"
#include "commands.h"

namespace cli {

int run_data(const DataCmdArgs& a) {
  td::data::Cifar10Options opt;
  opt.source = a.source;
  opt.cache_dir = a.cache_dir;
  opt.download = a.download;
  if (!a.cache_dir.empty() && is_file(a.cache_dir)) {
    throw UsageError("--cache-dir " + a.cache_dir + " is a file, not a directory");
  }
  opt.threads = a.threads;
  if (!a.source.empty() && !is_file(a.source) && !is_directory(a.source)) {
    throw UsageError(a.source + ": no such file or directory");
  }
  std::string dir;
  try {
    dir = td::data::prepare_cifar10(opt);
  } catch (const td::Error& e) {
    // The library's message names its Cifar10Options fields; say the flags.
    throw std::runtime_error(with_flag_names(
        e.message(), a.source.empty() ? "`tandem data import SOURCE`" : a.source, "--cache-dir"));
  }
  const td::data::Cifar10 c = td::data::read_cifar10(dir);
  std::cout << "CIFAR-10 ready in " << dir << ": " << c.train.size() << " training and "
            << c.test.size() << " test images\n";
  return kExitOk;
}

namespace {

// --cache-dir and --threads, which get and import share.
void add_cache_options(CLI::App* cmd, DataCmdArgs* a) {
  cmd->add_option("--cache-dir", a->cache_dir,
                  "default: $TANDEM_DATA_DIR/cifar10 or ~/.cache/tandem/cifar10");
}

void add_data_get(CLI::App* data) {
  auto a = std::make_shared<DataCmdArgs>();
  CLI::App* cmd = data->add_subcommand(
      "get", "the cache, else $TANDEM_CIFAR10, else download the official tarball (md5 checked)");
  cmd->footer("Examples:\n  tandem data get\n  TANDEM_DATA_DIR=/data tandem data get");
  add_cache_options(cmd, a.get());
  cmd->add_flag_callback(
      "--no-download", [a] { a->download = false; }, "fail instead of downloading");
  cmd->add_option("--threads", a->threads, "image decoding threads (0: all cores)");
  run_when_parsed(cmd, [a] { return run_data(*a); });
}

void add_data_import(CLI::App* data) {
  auto a = std::make_shared<DataCmdArgs>();
  a->download = false;
  CLI::App* cmd = data->add_subcommand(
      "import",
      "convert a local copy (tarball, binary directory, JPEG/PNG tree or archive) into the cache");
  cmd->footer(
      "Examples:\n  tandem data import cifar-10-binary.tar.gz\n  tandem data import "
      "../shared/data/cifar10-jpeg.tar.xz");
  cmd->add_option("source", a->source, "the local copy")->required();
  add_cache_options(cmd, a.get());
  cmd->add_option("--threads", a->threads, "image decoding threads (0: all cores)");
  run_when_parsed(cmd, [a] { return run_data(*a); });
}

}  // namespace

void add_data(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("data", "get CIFAR-10 ready in the cache");
  cmd->require_subcommand(1);
  cmd->footer(R"(Examples:
  tandem data get                                  # the cache, $TANDEM_CIFAR10, else a download
  tandem data import ../shared/data/cifar10-jpeg.tar.xz
Run 'tandem data get --help' or 'tandem data import --help' for their options.)");
  add_data_get(cmd);
  add_data_import(cmd);
}

}  // namespace cli
