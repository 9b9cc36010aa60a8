// `tandem`: the command-line tool. Subcommands train, eval, bench (train, ops),
// data (get, import) and info; parsing with CLI11, the work in train.cpp,
// bench.cpp and common.cpp. Exit status: 0 ok, 1 runtime error (missing data,
// non-finite loss, I/O), 2 usage error (unknown option or model, bad number,
// conflicting options).
#include <omp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <map>
#include <sstream>

#include "cli.h"

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

// A whole-number option in [lo, hi] (CLI11's own range check prints
// DBL_MAX's 309 digits and lets "-1" wrap into an unsigned option).
CLI::Validator whole_number(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        const std::string range = (hi == std::numeric_limits<int64_t>::max()
                                       ? "must be a whole number >= " + std::to_string(lo)
                                       : "must be a whole number from " + std::to_string(lo) +
                                             " to " + std::to_string(hi)) +
                                  ", got '" + text + "'";
        size_t used = 0;
        long long v = 0;
        try {
          v = std::stoll(text, &used);
        } catch (const std::exception&) {
          return range;
        }
        if (used != text.size() || v < lo || v > hi) return range;
        return std::string();
      },
      "INT in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

constexpr int kMaxThreads = 1024;

// The command words, for messages: "tandem", "tandem train", "tandem bench ops".
const std::map<std::string, std::vector<std::string>>& command_tree() {
  static const std::map<std::string, std::vector<std::string>> tree = {
      {"", {"train", "eval", "predict", "bench", "data", "info", "check"}},
      {"bench", {"train", "ops"}},
      {"data", {"get", "import"}}};
  return tree;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      // A swap of two neighbouring letters counts as one edit.
      const bool swap = i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (swap && a[i - 1] != b[j - 1]) row[j] = std::min(row[j], diag);
      diag = up;
    }
  }
  return row[b.size()];
}

// `tandem trian`: names the word and the nearest command (CLI11 would say only
// "A subcommand is required"). Empty when the command words are known.
std::string check_command_words(int argc, char** argv) {
  std::string prefix = "tandem", parent;
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (word.empty() || word[0] == '-') return "";
    const auto it = command_tree().find(parent);
    if (it == command_tree().end()) return "";
    const std::vector<std::string>& known = it->second;
    if (std::find(known.begin(), known.end(), word) == known.end()) {
      std::string best, list;
      size_t best_d = 3;  // suggest within two edits
      for (const std::string& k : known) {
        list += (list.empty() ? "" : ", ") + k;
        const size_t d = edit_distance(word, k);
        if (d < best_d) best_d = d, best = k;
      }
      std::string msg = prefix + ": unknown command '" + word + "'";
      if (!best.empty()) msg += "; did you mean '" + prefix + " " + best + "'?";
      return msg + "\nCommands: " + list + ". Run '" + prefix + " --help' for more.";
    }
    prefix += " " + word;
    parent = word;
  }
  return "";
}

// The command words given (for messages): "tandem bench train".
std::string command_of(int argc, char** argv) {
  std::string prefix = "tandem", parent;
  for (int i = 1; i < argc; ++i) {
    const auto it = command_tree().find(parent);
    if (it == command_tree().end()) break;
    if (std::find(it->second.begin(), it->second.end(), argv[i]) == it->second.end()) break;
    prefix += std::string(" ") + argv[i];
    parent = argv[i];
  }
  return prefix;
}

// `--epochs 1 --epochs 2`: names the option and the values given.
std::string repeated_option_message(const std::string& what, int argc, char** argv) {
  const std::string name = what.substr(0, what.find(':'));
  if (name.empty() || name[0] != '-') return "";
  std::vector<std::string> values;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == name) {
      values.push_back(i + 1 < argc ? argv[i + 1] : "");
    } else if (a.rfind(name + "=", 0) == 0) {
      values.push_back(a.substr(name.size() + 1));
    }
  }
  if (values.size() < 2) return "";
  std::string list;
  for (const std::string& v : values) list += (list.empty() ? "" : ", ") + v;
  return name + " was given " + std::to_string(values.size()) + " times (" + list +
         "); give it once";
}

void add_threads_option(CLI::App* cmd, int* threads) {
  cmd->add_option("--threads", *threads,
                  "CPU (OpenMP) threads (default: all cores, or OMP_NUM_THREADS; idle threads "
                  "wait passively unless OMP_WAIT_POLICY is set)")
      ->check(whole_number(1, kMaxThreads));
}

// Sets `target` when the option was given on the command line.
template <typename T>
void if_given(const CLI::Option* opt, const T& value, std::optional<T>* target) {
  if (opt->count() > 0) *target = value;
}

const char* kTrainExamples = R"(Examples:
  tandem train --out runs/first                     # CIFAR-10, --model auto (resnet-fast on a GPU, lenet on a CPU)
  tandem train --model resnet-fast --device cuda --out runs/rn
  tandem train --model lenet --epochs 20 --lr 0.005 --schedule cosine --out runs/lenet
  tandem train --model my_net.json --data ~/cifar-10-batches-bin --out runs/mine
  tandem train --data cifar10-jpeg.tar.xz --out runs/jpeg     # any source prepare_cifar10 accepts
  tandem train --synthetic 512 --model mlp --epochs 2 --out /tmp/demo   # no data needed
  tandem train --resume runs/lenet --epochs 30     # continue from runs/lenet/last.safetensors
  tandem train --model lenet --patience 5 --clip-grad-norm 1 --epochs 100 --out runs/es
  tandem train --synthetic 256 --limit-batches 2 --epochs 1 --out /tmp/smoke   # smoke test
  tandem train --model lenet --lr 0.02 --print-config > lenet.json   # settings, no training
  tandem train --config runs/lenet/config.json --seed 2 --out runs/lenet2   # rerun, another seed
Options left out come from the model's recipe (the run prints its settings);
RUN_DIR gets config.json, metrics.csv/.jsonl, last/best.safetensors, loss.svg,
accuracy.svg, confusion.svg and results.json.)";

void add_data_options(CLI::App* cmd, DataArgs* d) {
  cmd->add_option("--data", d->data,
                  "CIFAR-10: a directory of the binary files, the official tarball, or an image "
                  "tree/archive (default: the cache, $TANDEM_CIFAR10, else a download)");
  cmd->add_option("--synthetic", d->synthetic,
                  "use N random CIFAR-shaped training images (and N/4 test images) instead of "
                  "CIFAR-10, for tests and demos")
      ->check(whole_number(1, kMaxSynthetic));
}

struct TrainParse {
  TrainArgs args;
  int64_t epochs = 0, batch_size = 0, val_split = 0;
  std::string optimizer, schedule;
  double lr = 0, weight_decay = 0, momentum = 0, label_smoothing = 0;
  uint64_t seed = 0;
  double clip_grad_norm = 0;
  int64_t patience = 0, limit_batches = 0;
  std::vector<std::pair<std::string, CLI::Option*>> opts;
};

CLI::App* add_train(CLI::App& app, TrainParse* p) {
  CLI::App* cmd =
      app.add_subcommand("train", "train a model on CIFAR-10 (or a synthetic set) into RUN_DIR");
  cmd->footer(kTrainExamples);
  TrainArgs& a = p->args;
  auto keep = [p](const std::string& name, CLI::Option* o) {
    p->opts.emplace_back(name, o);
    return o;
  };
  keep("--model", cmd->add_option("--model", a.model,
                                  "auto, a preset (mlp, lenet, resnet-fast) or a JSON model file")
                      ->capture_default_str());
  add_data_options(cmd, &a.data);
  keep("--device", cmd->add_option("--device", a.device, "auto (the GPU when usable), cpu or cuda")
                       ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
                       ->capture_default_str());
  keep("--epochs", cmd->add_option("--epochs", p->epochs, "epochs (total, also on --resume)"));
  keep("--batch-size", cmd->add_option("--batch-size", p->batch_size, "training batch size"));
  keep("--optimizer", cmd->add_option("--optimizer", p->optimizer, "sgd, adam or adamw"));
  keep("--lr", cmd->add_option("--lr", p->lr, "learning rate (peak lr of a schedule)"));
  keep("--weight-decay",
       cmd->add_option("--weight-decay", p->weight_decay, "L2 weight decay (decoupled for adamw)"));
  keep("--momentum", cmd->add_option("--momentum", p->momentum, "SGD momentum"));
  keep("--schedule", cmd->add_option("--schedule", p->schedule,
                                     "constant, warmup-linear (per step) or cosine (per step)"));
  keep("--label-smoothing", cmd->add_option("--label-smoothing", p->label_smoothing, "in [0, 1)"));
  keep("--seed", cmd->add_option("--seed", p->seed,
                                 "seed of the initialisation, data order, split, augmentation")
                     ->check(whole_number(0, std::numeric_limits<int64_t>::max())));
  keep("--val-split", cmd->add_option("--val-split", p->val_split,
                                      "training images held out for validation (default: a tenth, "
                                      "5,000 of CIFAR-10's 50,000; 0: none)"));
  keep("--no-augment",
       cmd->add_flag("--no-augment", a.no_augment, "turn the recipe's augmentation off"));
  keep("--out",
       cmd->add_option("--out", a.out,
                       "RUN_DIR: where config, metrics, checkpoints and plots go (default: "
                       "a new runs/<date-time>; an existing non-empty directory is "
                       "refused unless --overwrite)"));
  keep("--overwrite",
       cmd->add_flag("--overwrite", a.overwrite,
                     "replace the run files (config, metrics, checkpoints, plots) in "
                     "a non-empty --out directory; other files are kept"));
  keep("--resume",
       cmd->add_option("--resume", a.resume,
                       "RUN_DIR or a checkpoint: continue that run with its saved settings"));
  keep("--clip-grad-norm",
       cmd->add_option("--clip-grad-norm", p->clip_grad_norm,
                       "clip the gradients' global L2 norm to X every step (0: off)"));
  keep("--patience", cmd->add_option("--patience", p->patience,
                                     "early stopping: stop after N epochs without a better "
                                     "validation accuracy (0: off)"));
  keep("--limit-batches",
       cmd->add_option("--limit-batches", p->limit_batches,
                       "smoke test: only the first N batches of the training, validation and "
                       "test sets"));
  keep("--config", cmd->add_option("--config", a.config,
                                   "settings from a config.json (a run directory's, or "
                                   "--print-config's); options given override them"));
  keep("--print-config",
       cmd->add_flag("--print-config", a.print_config,
                     "print the resolved settings as config.json (loadable by --config) and exit"));
  keep("--workers", cmd->add_option("--workers", a.workers, "data loader threads (CPU batches)")
                        ->check(CLI::Range(1, 64))
                        ->capture_default_str());
  add_threads_option(cmd, &a.threads);
  return cmd;
}

void finish_train(TrainParse* p) {
  TrainArgs& a = p->args;
  for (const auto& [name, opt] : p->opts) {
    if (opt->count() > 0) a.given.push_back(name);
  }
  auto find = [p](const std::string& name) {
    for (const auto& [n, o] : p->opts) {
      if (n == name) return o;
    }
    return static_cast<CLI::Option*>(nullptr);
  };
  if_given(find("--epochs"), p->epochs, &a.epochs);
  if_given(find("--batch-size"), p->batch_size, &a.batch_size);
  if_given(find("--val-split"), p->val_split, &a.val_split);
  if_given(find("--optimizer"), p->optimizer, &a.optimizer);
  if_given(find("--schedule"), p->schedule, &a.schedule);
  if_given(find("--lr"), p->lr, &a.lr);
  if_given(find("--weight-decay"), p->weight_decay, &a.weight_decay);
  if_given(find("--momentum"), p->momentum, &a.momentum);
  if_given(find("--label-smoothing"), p->label_smoothing, &a.label_smoothing);
  if_given(find("--seed"), p->seed, &a.seed);
  if_given(find("--clip-grad-norm"), p->clip_grad_norm, &a.clip_grad_norm);
  if_given(find("--patience"), p->patience, &a.patience);
  if_given(find("--limit-batches"), p->limit_batches, &a.limit_batches);
  if (!a.resume.empty() && find("--model")->count() == 0) a.model.clear();
}

int run_data_checked(const DataCmdArgs& a) { return run_data(a); }

}  // namespace

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
  return kExitOk;
}

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

}  // namespace cli

int main(int argc, char** argv) {
  using namespace cli;
  ensure_passive_openmp_wait(argv);
  if (const std::string msg = check_command_words(argc, argv); !msg.empty()) {
    std::cerr << msg << "\n";
    return kExitUsage;
  }
  // Named, so that "Usage:" says `tandem` rather than the binary's full path.
  CLI::App app{"tandem: train, evaluate and benchmark CIFAR-10 CNNs on the CPU and CUDA", "tandem"};
  app.require_subcommand(1);
  int threads = 0;  // --threads: 0 = OpenMP's default
  app.footer(R"(Examples:
  tandem train --out runs/first          # CIFAR-10 with the default model for this machine
  tandem eval --checkpoint runs/first/best.safetensors
  tandem predict --from runs/first cat.png            # class and probabilities per image
  tandem bench train --model lenet --batch-size 128 --steps 20 --json
  tandem data get                        # download / import CIFAR-10 into the cache
  tandem info                            # build, BLAS, GPU, CUDA versions; why CUDA cannot run
Run 'tandem <command> --help' for each command's options and examples.)");

  TrainParse train;
  CLI::App* train_cmd = add_train(app, &train);

  EvalArgs eval;
  CLI::App* eval_cmd = app.add_subcommand("eval", "evaluate a checkpoint on the test set");
  eval_cmd->footer(R"(Examples:
  tandem eval --checkpoint runs/first/best.safetensors        # model and data from runs/first/config.json
  tandem eval --checkpoint net.safetensors --model lenet --data ~/cifar-10-batches-bin --json)");
  eval_cmd->add_option("--checkpoint", eval.checkpoint, "a .safetensors file (a run's best/last)")
      ->required();
  eval_cmd->add_option("--model", eval.model,
                       "preset or JSON model file (default: the run's config.json)");
  add_data_options(eval_cmd, &eval.data);
  eval_cmd->add_option("--device", eval.device, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  eval_cmd->add_option("--batch-size", eval.batch_size, "evaluation batch size")
      ->capture_default_str();
  bool tta = false, no_tta = false;
  CLI::Option* tta_opt =
      eval_cmd->add_flag("--tta", tta, "average with the mirrored image (flip TTA)");
  eval_cmd->add_flag("--no-tta", no_tta, "no flip TTA")->excludes(tta_opt);
  eval_cmd->add_flag("--json", eval.json_output, "print the result as JSON");
  add_threads_option(eval_cmd, &threads);

  CLI::App* bench_cmd = app.add_subcommand("bench", "benchmarks: CPU vs GPU");
  bench_cmd->require_subcommand(1);
  bench_cmd->footer(R"(Examples:
  tandem bench train --model lenet --batch-size 128 --steps 20
  tandem bench ops --scale 0.25 --reps 3 --json
Run 'tandem bench train --help' or 'tandem bench ops --help' for their options.)");
  PredictArgs pred;
  CLI::App* pred_cmd = app.add_subcommand(
      "predict", "classify images (PNG/JPEG, 32x32) with a trained run or checkpoint");
  pred_cmd->footer(R"(Examples:
  tandem predict --from runs/lenet cat.png ship.jpg       # best.safetensors (else last) of the run
  tandem predict --from runs/lenet/last.safetensors photos/ --format json
Prints one row per image: its path, the predicted class, its probability and
every class's probability (CSV with a header, or a JSON list).)");
  pred_cmd->add_option("inputs", pred.inputs, "images and folders of images (searched recursively)")
      ->required();
  pred_cmd
      ->add_option("--from", pred.from,
                   "a run directory (its best.safetensors, else last) or a checkpoint next to "
                   "its config.json")
      ->required();
  pred_cmd->add_option("--format", pred.format, "csv or json")
      ->check(CLI::IsMember({"csv", "json"}))
      ->capture_default_str();
  pred_cmd->add_option("--device", pred.device, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  pred_cmd->add_option("--batch-size", pred.batch_size, "images per forward pass")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_threads_option(pred_cmd, &threads);

  BenchTrainArgs bt;
  CLI::App* bt_cmd = bench_cmd->add_subcommand(
      "train", "time training steps of one model and batch on the CPU and on CUDA");
  bt_cmd->footer(R"(Examples:
  tandem bench train --model lenet --batch-size 128 --steps 20
  tandem bench train --model resnet-fast --batch-size 512 --steps 10 --json > $(hostname).json
  python3 benchmarks/cpu_vs_gpu_table.py *.json   # a markdown table from several machines)");
  bt_cmd->add_option("--model", bt.model, "preset or JSON model file")->capture_default_str();
  bt_cmd->add_option("--batch-size", bt.batch_size, "batch size")->capture_default_str();
  bt_cmd->add_option("--steps", bt.steps, "timed steps")->capture_default_str();
  bt_cmd->add_option("--warmup", bt.warmup, "untimed warm-up steps")->capture_default_str();
  bt_cmd
      ->add_option("--device", bt.devices, "auto (CPU, and CUDA where it runs), both, cpu or cuda")
      ->check(CLI::IsMember({"auto", "both", "cpu", "cuda"}))
      ->capture_default_str();
  bt_cmd->add_flag("--json", bt.json_output, "machine-readable output (with host and GPU names)");
  add_threads_option(bt_cmd, &threads);
  BenchOpsArgs bo;
  CLI::App* bo_cmd = bench_cmd->add_subcommand(
      "ops", "elementwise, softmax, GEMM, conv and optimizer step on the CPU and on CUDA");
  bo_cmd->footer("Examples:\n  tandem bench ops\n  tandem bench ops --scale 0.25 --reps 3 --json");
  bo_cmd->add_option("--scale", bo.scale, "problem sizes times this, in (0, 4]")
      ->capture_default_str();
  bo_cmd->add_option("--reps", bo.reps, "timed calls per op")->capture_default_str();
  bo_cmd->add_option("--device", bo.devices, "auto, both, cpu or cuda")
      ->check(CLI::IsMember({"auto", "both", "cpu", "cuda"}))
      ->capture_default_str();
  bo_cmd->add_flag("--json", bo.json_output, "machine-readable output");
  add_threads_option(bo_cmd, &threads);

  CLI::App* data_cmd = app.add_subcommand("data", "get CIFAR-10 ready in the cache");
  data_cmd->require_subcommand(1);
  data_cmd->footer(R"(Examples:
  tandem data get                                  # the cache, $TANDEM_CIFAR10, else a download
  tandem data import ../shared/data/cifar10-jpeg.tar.xz
Run 'tandem data get --help' or 'tandem data import --help' for their options.)");
  DataCmdArgs dget, dimp;
  CLI::App* get_cmd = data_cmd->add_subcommand(
      "get", "the cache, else $TANDEM_CIFAR10, else download the official tarball (md5 checked)");
  get_cmd->footer("Examples:\n  tandem data get\n  TANDEM_DATA_DIR=/data tandem data get");
  get_cmd->add_option("--cache-dir", dget.cache_dir,
                      "default: $TANDEM_DATA_DIR/cifar10 or ~/.cache/tandem/cifar10");
  bool no_download = false;
  get_cmd->add_flag("--no-download", no_download, "fail instead of downloading");
  get_cmd->add_option("--threads", dget.threads, "image decoding threads (0: all cores)");
  CLI::App* imp_cmd = data_cmd->add_subcommand(
      "import",
      "convert a local copy (tarball, binary directory, JPEG/PNG tree or archive) into the cache");
  imp_cmd->footer(
      "Examples:\n  tandem data import cifar-10-binary.tar.gz\n  tandem data import "
      "../shared/data/cifar10-jpeg.tar.xz");
  imp_cmd->add_option("source", dimp.source, "the local copy")->required();
  imp_cmd->add_option("--cache-dir", dimp.cache_dir,
                      "default: $TANDEM_DATA_DIR/cifar10 or ~/.cache/tandem/cifar10");
  imp_cmd->add_option("--threads", dimp.threads, "image decoding threads (0: all cores)");

  bool info_json = false;
  CLI::App* info_cmd = app.add_subcommand(
      "info", "build configuration, CPU threads and BLAS, GPU, driver, CUDA/cuBLAS/cuDNN versions");
  info_cmd->footer("Examples:\n  tandem info\n  tandem info --json");
  info_cmd->add_flag("--json", info_json, "host facts as JSON (what bench --json records)");
  add_threads_option(info_cmd, &threads);
  CLI::App* check_cmd = add_check(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ArgumentMismatch& e) {
    const std::string msg = repeated_option_message(e.what(), argc, argv);
    if (msg.empty()) return app.exit(e) == 0 ? kExitOk : kExitUsage;
    const std::string command = command_of(argc, argv);
    std::cerr << command << ": error: " << msg << "\nRun '" << command
              << " --help' for the options.\n";
    return kExitUsage;
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (train.args.threads > 0) threads = train.args.threads;
  if (threads > 0) omp_set_num_threads(threads);

  std::string command = "tandem";
  try {
    if (train_cmd->parsed()) {
      command = "tandem train";
      finish_train(&train);
      return run_train(train.args);
    }
    if (eval_cmd->parsed()) {
      command = "tandem eval";
      if (tta) eval.tta = true;
      if (no_tta) eval.tta = false;
      return run_eval(eval);
    }
    if (pred_cmd->parsed()) {
      command = "tandem predict";
      return run_predict(pred);
    }
    if (bt_cmd->parsed()) {
      command = "tandem bench train";
      return run_bench_train(bt);
    }
    if (bo_cmd->parsed()) {
      command = "tandem bench ops";
      return run_bench_ops(bo);
    }
    if (get_cmd->parsed()) {
      command = "tandem data get";
      dget.download = !no_download;
      return run_data_checked(dget);
    }
    if (imp_cmd->parsed()) {
      command = "tandem data import";
      dimp.download = false;
      return run_data_checked(dimp);
    }
    if (info_cmd->parsed()) return run_info(info_json);
    if (check_cmd->parsed()) {
      command = "tandem check";
      return run_check_command();
    }
  } catch (const UsageError& e) {
    std::cerr << command << ": error: " << e.what() << "\nRun '" << command
              << " --help' for the options.\n";
    return kExitUsage;
  } catch (const tandem::Error& e) {
    std::cerr << command << ": error: " << e.message() << "\n";
    return kExitRuntime;
  } catch (const std::exception& e) {
    std::cerr << command << ": error: " << e.what() << "\n";
    return kExitRuntime;
  }
  return kExitUsage;
}
