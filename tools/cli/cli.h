// The `tandem` command-line tool (tools/cli/): what its subcommands share.
// Each subcommand's add_* (commands.h) declares its options into one of the
// *Args structs below and runs one run_* function; each returns the process exit status (0 ok, 1
// runtime error, 2 usage error). A UsageError (bad or conflicting options found after parsing)
// exits 2; any other tandem::Error / std::exception exits 1 with its message.
#pragma once

#include <tandem/tandem.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace cli {

namespace td = tandem;
using json = nlohmann::json;

// A usage error found after parsing: exit status 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

// --synthetic N: at most this many images.
constexpr int64_t kMaxSynthetic = 1000000;

// ---- Devices ----------------------------------------------------------------------

// "auto" | "cpu" | "cuda" -> a device, or a UsageError ("cuda" where CUDA
// cannot run names the reason). `why` says how the choice was made.
td::Device resolve_device(const std::string& name, std::string* why);
// Whether the CUDA backend can run here, and why not.
bool cuda_usable(std::string* reason);

// ---- Data ----------------------------------------------------------------------------

struct DataArgs {
  std::string data;       // --data: "" = prepare_cifar10's defaults
  int64_t synthetic = 0;  // --synthetic N: N random training images
  uint64_t seed = 0;      // for --synthetic
};
// The training and test sets: synthetic, a CIFAR-10 binary directory, or
// whatever prepare_cifar10 accepts as a source. Says what it loads on stderr.
td::data::Cifar10 load_data(const DataArgs& args);
// N random CIFAR-shaped images whose mean colour depends on the label (so a
// model can learn something), and N / 4 (at least 10) test images.
td::data::Cifar10 synthetic_cifar(int64_t n, uint64_t seed);
// A data-preparation message with the library's option names
// (Cifar10Options::source, ::download, ::cache_dir) replaced by what the user
// gave: `source` (the words for the source: "--data", the import argument),
// `cache` (the cache flag, "--cache-dir", or "" where the command has none).
std::string with_flag_names(std::string message, const std::string& source,
                            const std::string& cache);
// A short description of the data source for config.json.
json describe_data(const DataArgs& args);

// ---- Models ------------------------------------------------------------------------

struct ModelSpec {
  std::string name;  // preset name, or the JSON file's path
  bool preset = false;
  std::string json_text;  // the model as JSON (models::to_json)
};
// A preset name or a JSON model file (a UsageError names the presets when it
// is neither; a malformed file is a UsageError carrying models' message).
td::nn::Sequential make_model(const std::string& name_or_file, ModelSpec* spec);
// The recipe of a preset, or a generic one (SGD with momentum, lr 0.01,
// batch 64, CIFAR normalisation) for a JSON model file.
td::models::Recipe recipe_for(const ModelSpec& spec);
int64_t count_parameters(td::nn::Module& model);

// ---- Output helpers ---------------------------------------------------------------

bool stdout_is_terminal();
// The terminal's width in columns: TIOCGWINSZ on stdout, else $COLUMNS, else 80.
int terminal_columns();
// One redraw of the progress bar (progress_line.cpp), at most columns - 1
// characters: "epoch 3/10 123/1407 [####....] loss 1.2345 acc 54.1% 0:12<0:45
// 1234 img/s", the bar narrowed and the last fields dropped to fit.
struct ProgressFields {
  int64_t epoch = 1, epochs = 1;  // 1-based
  int64_t done = 0, total = 0;    // steps (or validation batches) done, per epoch
  bool validating = false;        // the validation pass: no loss, accuracy, img/s
  double loss = 0, accuracy = 0;  // running means over the epoch (NaN: none read yet)
  double elapsed = 0;             // seconds since the epoch began
  double eta = 0;                 // seconds left in the pass (NaN: unknown)
  double images_per_second = 0;
};
std::string progress_line(const ProgressFields& fields, int columns);
std::string format_duration(double seconds);  // "1:02:03", "4:05", "12.3 s"
std::string format_bytes(double bytes);
void write_text_file(const std::string& path, const std::string& text);
std::string read_text_file(const std::string& path);
// A JSON file (a run's config.json): a UsageError naming `what` when it is not
// valid JSON or nests deeper than a config can (the model JSON's depth limit,
// models::kMaxJsonNesting, plus the config's own level), before it is parsed.
json read_json_file(const std::string& path, const std::string& what);
// The name of a parameter or buffer holding NaN or infinity, or "".
std::string first_non_finite(const td::nn::Module& model);
bool is_directory(const std::string& path);
bool is_file(const std::string& path);
void make_directories(const std::string& path);
// Host facts for benchmark JSON: hostname, CPU model, CPU threads, GPU name(s).
json host_info();
// Peak resident set size of this process in bytes (getrusage).
double peak_rss_bytes();

// ---- Subcommands ---------------------------------------------------------------------

struct TrainArgs {
  std::string model = "auto";
  DataArgs data;
  std::string device = "auto";
  std::optional<int64_t> epochs, batch_size, val_split;
  std::optional<std::string> optimizer, schedule;
  std::optional<double> lr, weight_decay, momentum, label_smoothing;
  std::optional<uint64_t> seed;
  std::string out;
  std::string resume;
  bool no_augment = false;
  bool overwrite = false;  // --overwrite: a non-empty --out is allowed
  int workers = 2;
  std::optional<double> clip_grad_norm;
  std::optional<int64_t> patience, limit_batches;
  std::string config;         // --config FILE: settings from a config.json
  bool print_config = false;  // print the resolved config.json and exit
  int threads = 0;            // --threads (0: OpenMP's default)
  // Data parallelism: --nproc local ranks, or this process as one rank of
  // --world-size meeting at --rendezvous (several machines).
  int nproc = 1;
  std::optional<int> rank, world_size;
  std::string rendezvous;
  bool no_sync_batchnorm = false;
  // The options the user gave, by name ("--lr"), in declaration order.
  std::vector<std::string> given;
};
int run_train(const TrainArgs& args);

// A data-parallel run's view of itself (tools/cli/dist.cpp).
struct DistSetup {
  bool launch = false;  // this process starts --nproc ranks and waits
  int world = 1, rank = 0, local_rank = 0;
  int local_world = 1;  // ranks on this machine (LOCAL_WORLD_SIZE)
  td::dist::InitOptions init;
};
DistSetup dist_setup(const TrainArgs& args);
// Starts args.nproc ranks of this command (RANK, WORLD_SIZE, a fresh file
// rendezvous, the cores split) writing into `out`; returns the first
// non-zero exit status of a rank, or 0.
int launch_local(const TrainArgs& args, const std::string& out);
// Starts `n` ranks of the command `argv` (argv[0] is replaced by this
// executable); with split_cores, OMP_NUM_THREADS = cores / n each. Rank 0's
// stdout goes to `rank0_stdout` when not empty.
int launch_ranks(std::vector<std::string> argv, int n, bool split_cores,
                 const std::string& rank0_stdout);

struct EvalArgs {
  std::string checkpoint;
  std::string model;  // "": from config.json next to the checkpoint
  DataArgs data;
  std::string device = "auto";
  int64_t batch_size = 256;
  std::optional<bool> tta;  // --tta / --no-tta: the run's setting when neither
  bool json_output = false;
  int threads = 0;
};
int run_eval(const EvalArgs& args);

struct PredictArgs {
  std::vector<std::string> inputs;  // images (PNG/JPEG) and folders of them
  std::string from;                 // a run directory or a checkpoint
  std::string device = "auto";
  std::string format = "csv";  // csv | json
  int64_t batch_size = 256;
  int threads = 0;
};
int run_predict(const PredictArgs& args);

struct BenchTrainArgs {
  std::string model = "lenet";
  int64_t batch_size = 128;
  int64_t steps = 20;
  int64_t warmup = 3;
  std::string devices = "auto";  // auto (both where CUDA runs), cpu, cuda
  bool json_output = false;
  int threads = 0;
  int nproc = 1;  // > 1: N data-parallel ranks against one process with all cores
};
int run_bench_train(const BenchTrainArgs& args);

struct BenchOpsArgs {
  std::string devices = "auto";
  double scale = 1.0;  // problem sizes times this (0 < scale <= 4)
  int64_t reps = 10;
  bool json_output = false;
  int threads = 0;
};
int run_bench_ops(const BenchOpsArgs& args);

struct DataCmdArgs {
  std::string source;  // import: a tarball / directory / image tree or archive
  std::string cache_dir;
  bool download = true;
  int threads = 0;
};
int run_data(const DataCmdArgs& args);

int run_info(bool json_output);

}  // namespace cli
