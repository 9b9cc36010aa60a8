// `tandem train` and `tandem eval`: settings resolved from the options and the
// model's recipe (or from a run's config.json on --resume), the Trainer with a
// progress bar or one log line per epoch, and the run directory: config.json,
// metrics.csv/.jsonl, last/best.safetensors, loss/accuracy/confusion SVGs and
// results.json.
#include <omp.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <limits>
#include <memory>
#include <sstream>

#include "cli.h"
#include "commands.h"
#include "step_times.h"

namespace cli {
namespace {

namespace models = td::models;
namespace optim = td::optim;
namespace train = td::train;
using Clock = std::chrono::steady_clock;

// Everything a run depends on; written to config.json and read back by --resume.
struct Settings {
  std::string model;  // preset name or JSON file path, as given
  bool preset = false;
  std::string model_json;
  int64_t epochs = 0, batch_size = 0, val_split = 0;
  std::string optimizer, schedule;
  double lr = 0, momentum = 0, weight_decay = 0, bn_bias_lr_scale = 1;
  bool nesterov = false;
  double warmup_fraction = 0, start_factor = 1, end_factor = 1;
  double label_smoothing = 0;
  bool augment_flip = false, tta_flip = false;
  int64_t augment_translate = 0;
  // airbench's recipe elements (models::Recipe); a config.json without them
  // (written before they existed) reads as the run it was: all off.
  bool alternating_flip = false, translate_reflect = false, tta_translate = false;
  bool drop_last = false, dirac_init = false, lookahead = false;
  optim::LookaheadOptions lookahead_options;
  int64_t whitening_bias_epochs = 0;
  std::vector<double> mean, std;
  uint64_t seed = 0;
  DataArgs data;
  std::string recipe_notes;
  double clip_grad_norm = 0;  // 0: none
  int64_t patience = 0;       // 0: no early stopping
  int64_t limit_batches = 0;  // 0: every batch
};

json to_json(const Settings& s) {
  return {{"model", s.model},
          {"preset", s.preset},
          {"epochs", s.epochs},
          {"batch_size", s.batch_size},
          {"val_split", s.val_split},
          {"optimizer", s.optimizer},
          {"lr", s.lr},
          {"momentum", s.momentum},
          {"nesterov", s.nesterov},
          {"weight_decay", s.weight_decay},
          {"batchnorm_bias_lr_scale", s.bn_bias_lr_scale},
          {"schedule", s.schedule},
          {"warmup_fraction", s.warmup_fraction},
          {"start_factor", s.start_factor},
          {"end_factor", s.end_factor},
          {"label_smoothing", s.label_smoothing},
          {"augment_flip", s.augment_flip},
          {"augment_translate", s.augment_translate},
          {"tta_flip", s.tta_flip},
          {"alternating_flip", s.alternating_flip},
          {"translate_padding", s.translate_reflect ? "reflect" : "zeros"},
          {"tta_translate", s.tta_translate},
          {"drop_last", s.drop_last},
          {"dirac_init", s.dirac_init},
          {"whitening_bias_epochs", s.whitening_bias_epochs},
          {"lookahead", s.lookahead ? json{{"start_epoch", s.lookahead_options.start_epoch},
                                           {"every", s.lookahead_options.every},
                                           {"decay_base", s.lookahead_options.decay_base},
                                           {"decay_pow", s.lookahead_options.decay_pow}}
                                    : json()},
          {"mean", s.mean},
          {"std", s.std},
          {"seed", s.seed},
          {"data", {{"path", s.data.data}, {"synthetic", s.data.synthetic}}},
          {"recipe_notes", s.recipe_notes},
          {"clip_grad_norm", s.clip_grad_norm},
          {"patience", s.patience},
          {"limit_batches", s.limit_batches}};
}

Settings settings_from_config(const json& config, const std::string& where) {
  Settings s;
  try {
    const json& j = config.at("settings");
    s.model = j.at("model").get<std::string>();
    s.preset = j.at("preset").get<bool>();
    s.model_json = config.at("model").dump(2);
    s.epochs = j.at("epochs").get<int64_t>();
    s.batch_size = j.at("batch_size").get<int64_t>();
    s.val_split = j.at("val_split").get<int64_t>();
    s.optimizer = j.at("optimizer").get<std::string>();
    s.lr = j.at("lr").get<double>();
    s.momentum = j.at("momentum").get<double>();
    s.nesterov = j.at("nesterov").get<bool>();
    s.weight_decay = j.at("weight_decay").get<double>();
    s.bn_bias_lr_scale = j.at("batchnorm_bias_lr_scale").get<double>();
    s.schedule = j.at("schedule").get<std::string>();
    s.warmup_fraction = j.at("warmup_fraction").get<double>();
    s.start_factor = j.at("start_factor").get<double>();
    s.end_factor = j.at("end_factor").get<double>();
    s.label_smoothing = j.at("label_smoothing").get<double>();
    s.augment_flip = j.at("augment_flip").get<bool>();
    s.augment_translate = j.at("augment_translate").get<int64_t>();
    s.tta_flip = j.at("tta_flip").get<bool>();
    s.alternating_flip = j.value("alternating_flip", false);
    const std::string padding = j.value("translate_padding", std::string("zeros"));
    if (padding != "zeros" && padding != "reflect") {
      throw UsageError(where +
                       ": settings.translate_padding must be \"zeros\" or \"reflect\", got \"" +
                       padding + "\"");
    }
    s.translate_reflect = padding == "reflect";
    s.tta_translate = j.value("tta_translate", false);
    s.drop_last = j.value("drop_last", false);
    s.dirac_init = j.value("dirac_init", false);
    s.whitening_bias_epochs = j.value("whitening_bias_epochs", int64_t{0});
    const json la = j.value("lookahead", json());
    s.lookahead = !la.is_null();
    if (s.lookahead) {
      s.lookahead_options.start_epoch = la.at("start_epoch").get<int64_t>();
      s.lookahead_options.every = la.at("every").get<int64_t>();
      s.lookahead_options.decay_base = la.at("decay_base").get<double>();
      s.lookahead_options.decay_pow = la.at("decay_pow").get<double>();
    }
    s.mean = j.at("mean").get<std::vector<double>>();
    s.std = j.at("std").get<std::vector<double>>();
    s.seed = j.at("seed").get<uint64_t>();
    s.data.data = j.at("data").at("path").get<std::string>();
    s.data.synthetic = j.at("data").at("synthetic").get<int64_t>();
    s.data.seed = s.seed;
    s.recipe_notes = j.value("recipe_notes", "");
    s.clip_grad_norm = j.value("clip_grad_norm", 0.0);
    s.patience = j.value("patience", int64_t{0});
    s.limit_batches = j.value("limit_batches", int64_t{0});
    // What the options' own checks refuse may not come in through a file
    // (--config, --resume): a seed of -1 wrapped to 2^64-1, a huge synthetic set.
    if (!j.at("seed").is_number_unsigned() ||
        s.seed > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw UsageError(where + ": settings.seed must be a whole number from 0 to " +
                       std::to_string(std::numeric_limits<int64_t>::max()) + ", got " +
                       j.at("seed").dump());
    }
    if (s.data.synthetic < 0 || s.data.synthetic > kMaxSynthetic) {
      throw UsageError(where + ": settings.data.synthetic must be a whole number from 0 to " +
                       std::to_string(kMaxSynthetic) + ", got " + std::to_string(s.data.synthetic));
    }
    if (s.val_split < -1) {
      throw UsageError(where + ": settings.val_split must be >= 0 (-1: a tenth), got " +
                       std::to_string(s.val_split));
    }
  } catch (const json::exception& e) {
    throw UsageError(where + " is not a tandem run configuration: " + e.what());
  }
  return s;
}

train::TestTimeAugment test_time_augment(const Settings& s) {
  return train::test_time_augment(s.tta_flip, s.tta_flip && s.tta_translate);
}

std::string tta_words(const Settings& s) {
  if (!s.tta_flip) return "";
  return s.tta_translate ? ", flip + translate TTA" : ", flip TTA";
}

void check_range(bool ok, const std::string& what) {
  if (!ok) throw UsageError(what);
}

std::string num_text(double v) {
  std::ostringstream ss;
  ss << v;
  return ss.str();
}

bool was_given(const TrainArgs& args, const std::string& option) {
  return std::find(args.given.begin(), args.given.end(), option) != args.given.end();
}

// --config FILE: the settings of a config.json (a run directory's, or
// --print-config's output), with the options given on the command line over them.
Settings config_settings(const TrainArgs& args) {
  if (!is_file(args.config)) throw UsageError("--config " + args.config + ": no such file");
  const json config = read_json_file(args.config, "--config " + args.config);
  Settings s = settings_from_config(config, "--config " + args.config);
  if (was_given(args, "--model")) {
    ModelSpec spec;
    make_model(args.model, &spec);
    s.model = args.model;
    s.preset = spec.preset;
    s.model_json = spec.json_text;
  }
  if (args.epochs) s.epochs = *args.epochs;
  if (args.batch_size) s.batch_size = *args.batch_size;
  if (args.val_split) s.val_split = *args.val_split;
  if (args.optimizer) s.optimizer = *args.optimizer;
  if (args.schedule) s.schedule = *args.schedule;
  if (args.lr) s.lr = *args.lr;
  if (args.weight_decay) s.weight_decay = *args.weight_decay;
  if (args.momentum) s.momentum = *args.momentum;
  if (args.label_smoothing) s.label_smoothing = *args.label_smoothing;
  if (args.seed) s.seed = *args.seed;
  if (args.no_augment) {
    s.augment_flip = false;
    s.alternating_flip = false;
    s.augment_translate = 0;
  }
  if (args.data.synthetic > 0 || !args.data.data.empty()) s.data = args.data;
  s.data.seed = s.seed;
  return s;
}

// --clip-grad-norm, --patience and --limit-batches (also on --resume).
void apply_run_options(const TrainArgs& args, Settings* s) {
  if (args.clip_grad_norm) s->clip_grad_norm = *args.clip_grad_norm;
  if (args.patience) s->patience = *args.patience;
  if (args.limit_batches) s->limit_batches = *args.limit_batches;
  check_range(std::isfinite(s->clip_grad_norm) && s->clip_grad_norm >= 0,
              "--clip-grad-norm must be > 0 (0: no clipping), got " + num_text(s->clip_grad_norm));
  check_range(s->patience >= 0,
              "--patience must be >= 1 (0: no early stopping), got " + std::to_string(s->patience));
  check_range(s->limit_batches >= 0, "--limit-batches must be >= 1 (0: every batch), got " +
                                         std::to_string(s->limit_batches));
}

// The class names of a data set (CIFAR-10's when it names none).
std::vector<std::string> class_names(const td::data::ImageDataset& d) {
  return d.classes.empty() ? td::data::cifar10_classes() : d.classes;
}

int64_t num_classes(const td::data::ImageDataset& d) {
  return static_cast<int64_t>(class_names(d).size());
}

// The first n samples of `d` (all of them when it has no more).
td::data::ImageDataset first_samples(const td::data::ImageDataset& d, int64_t n) {
  if (d.size() <= n) return d;
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = i;
  return d.subset(idx);
}

// config.json: every setting and the model, loadable by --config.
json run_config(const Settings& s, const td::Device& device) {
  return {{"tandem_version", td::build_info().version},
          {"device", device.is_cuda() ? "cuda" : "cpu"},
          {"settings", to_json(s)},
          {"model", json::parse(s.model_json)},
          {"data", describe_data(s.data)}};
}

// --model auto: resnet-fast on a GPU; lenet on a CPU, saying why.
std::string resolve_model_name(const std::string& requested, const td::Device& device,
                               std::ostream& log) {
  if (requested != "auto") return requested;
  if (device.is_cuda()) {
    log << "model: resnet-fast (--model auto on a GPU)\n";
    return "resnet-fast";
  }
  log << "model: lenet (--model auto on the CPU: resnet-fast needs about 180 times lenet's "
         "compute per image, 0.24 vs 0.0013 GFLOP forward, which is slow on a CPU; to run it "
         "here anyway: tandem train --model resnet-fast --device cpu; the estimate below "
         "says how long lenet takes)\n";
  return "lenet";
}

// The options of `args` over the recipe of the model.
Settings resolve_settings(const TrainArgs& args, const td::Device& device) {
  Settings s;
  if (!args.config.empty()) {
    s = config_settings(args);
  } else {
    ModelSpec spec;
    s.model = resolve_model_name(args.model, device, args.print_config ? std::cerr : std::cout);
    make_model(s.model, &spec);
    s.preset = spec.preset;
    s.model_json = spec.json_text;
    const models::Recipe r = recipe_for(spec);
    s.recipe_notes = r.notes;
    s.epochs = args.epochs.value_or(r.epochs);
    s.batch_size = args.batch_size.value_or(r.batch_size);
    s.optimizer = args.optimizer.value_or(r.optimizer);
    const bool recipe_optimizer = s.optimizer == r.optimizer;
    // Another optimizer than the recipe's starts from that optimizer's defaults.
    // The recipe's lr follows the batch size when it says so (airbench's lr per example).
    // (A batch size below 1 is refused below, with its option's name.)
    const double default_lr = !recipe_optimizer   ? (s.optimizer == "sgd" ? 0.01 : 1e-3)
                              : s.batch_size >= 1 ? models::lr_for_batch(r, s.batch_size)
                                                  : r.lr;
    s.lr = args.lr.value_or(default_lr);
    s.momentum =
        args.momentum.value_or(recipe_optimizer ? r.momentum : (s.optimizer == "sgd" ? 0.9 : 0.0));
    s.nesterov = recipe_optimizer && r.nesterov && !args.momentum;
    s.weight_decay = args.weight_decay.value_or(
        recipe_optimizer ? r.weight_decay : (s.optimizer == "adamw" ? 1e-2 : 0.0));
    s.bn_bias_lr_scale = recipe_optimizer ? r.batchnorm_bias_lr_scale : 1.0;
    const std::string recipe_schedule = r.schedule == models::Schedule::WarmupLinear
                                            ? "warmup-linear"
                                        : r.schedule == models::Schedule::Cosine ? "cosine"
                                                                                 : "constant";
    s.schedule = args.schedule.value_or(recipe_schedule);
    if (s.schedule == recipe_schedule && r.schedule == models::Schedule::WarmupLinear) {
      s.warmup_fraction = r.warmup_fraction;
      s.start_factor = r.start_factor;
      s.end_factor = r.end_factor;
    } else if (s.schedule == "warmup-linear") {
      s.warmup_fraction = 0.1;
      s.start_factor = 0.1;
      s.end_factor = 0.0;
    }
    s.label_smoothing = args.label_smoothing.value_or(r.label_smoothing);
    s.augment_flip = r.augment_flip && !args.no_augment;
    s.alternating_flip = s.augment_flip && r.augment_alternating_flip;
    s.augment_translate = args.no_augment ? 0 : r.augment_translate;
    s.translate_reflect = r.translate_reflect;
    s.tta_flip = r.tta_flip;
    s.tta_translate = r.tta_translate;
    s.drop_last = r.drop_last;
    s.dirac_init = r.dirac_init;
    s.whitening_bias_epochs = r.whitening_bias_epochs;
    s.lookahead = r.lookahead;
    s.lookahead_options = r.lookahead_options;
    s.mean = r.mean;
    s.std = r.std;
    s.seed = args.seed.value_or(0);
    s.data = args.data;
    s.data.seed = s.seed;
    s.val_split = args.val_split.value_or(r.val_split);  // -1: a tenth of the training set
  }
  apply_run_options(args, &s);

  check_range(s.epochs >= 1, "--epochs must be at least 1, got " + std::to_string(s.epochs));
  check_range(s.batch_size >= 1,
              "--batch-size must be at least 1, got " + std::to_string(s.batch_size));
  check_range(s.optimizer == "sgd" || s.optimizer == "adam" || s.optimizer == "adamw",
              "--optimizer must be sgd, adam or adamw, got '" + s.optimizer + "'");
  check_range(std::isfinite(s.lr) && s.lr > 0,
              "--lr must be a positive number, got " + num_text(s.lr));
  check_range(std::isfinite(s.weight_decay) && s.weight_decay >= 0,
              "--weight-decay must be >= 0, got " + num_text(s.weight_decay));
  check_range(s.momentum >= 0 && s.momentum < 1,
              "--momentum must be in [0, 1), got " + num_text(s.momentum));
  check_range(s.optimizer == "sgd" || !args.momentum, "--momentum applies to --optimizer sgd only");
  check_range(s.schedule == "constant" || s.schedule == "warmup-linear" || s.schedule == "cosine",
              "--schedule must be constant, warmup-linear or cosine, got '" + s.schedule + "'");
  check_range(s.label_smoothing >= 0 && s.label_smoothing < 1,
              "--label-smoothing must be in [0, 1), got " + num_text(s.label_smoothing));
  check_range(!args.val_split || *args.val_split >= 0,
              "--val-split must be >= 0, got " + std::to_string(s.val_split));
  return s;
}

// Options that --resume takes from the saved run and that may not be given again.
void check_resume_conflicts(const TrainArgs& args, const Settings& saved, const std::string& dir) {
  if (!args.model.empty() && args.model != "auto" && was_given(args, "--model")) {
    ModelSpec spec;
    make_model(args.model, &spec);
    // Canonical JSON of both: the same layers with the same fields.
    if (models::to_json(*models::from_json(spec.json_text)) !=
        models::to_json(*models::from_json(saved.model_json))) {
      throw UsageError("--resume " + dir + " continues a run of model '" + saved.model +
                       "'; --model " + args.model +
                       " is another architecture (leave --model out when resuming)");
    }
  }
  static const std::vector<std::string> fixed = {
      "--batch-size",      "--optimizer",  "--lr",    "--weight-decay",
      "--momentum",        "--schedule",   "--seed",  "--val-split",
      "--label-smoothing", "--no-augment", "--config"};
  for (const std::string& opt : args.given) {
    if (std::find(fixed.begin(), fixed.end(), opt) != fixed.end()) {
      throw UsageError(opt +
                       " cannot be combined with --resume: the run continues with the "
                       "settings in " +
                       dir +
                       "/config.json (only --epochs, --device, --data/--synthetic, --out "
                       "(with --overwrite), --clip-grad-norm, --patience, --limit-batches, "
                       "--workers and --threads may be given)");
    }
  }
  // --overwrite deletes the run files of --out, which would be the checkpoint
  // being resumed when --out is the resumed run (or not given).
  std::error_code ec;
  if (args.overwrite && (args.out.empty() || std::filesystem::equivalent(args.out, dir, ec))) {
    throw UsageError("--overwrite cannot be combined with --resume " + dir +
                     " writing into that run: it would delete the checkpoint being resumed "
                     "(a resumed run keeps writing into its directory; give --out NEW_DIR "
                     "--overwrite to continue it elsewhere)");
  }
}

std::unique_ptr<optim::Optimizer> make_optimizer(const Settings& s, td::nn::Module& net) {
  if (s.optimizer == "sgd") {
    return models::make_sgd(net,
                            optim::SGDOptions(s.lr)
                                .momentum(s.momentum)
                                .nesterov(s.nesterov)
                                .weight_decay(s.weight_decay),
                            s.bn_bias_lr_scale);
  }
  // Adam and AdamW: one group (the BatchNorm-bias scale is the SGD recipes').
  models::ParameterSplit split = models::split_parameters(net);
  split.others.insert(split.others.end(), split.batchnorm_biases.begin(),
                      split.batchnorm_biases.end());
  if (s.optimizer == "adam") {
    return std::make_unique<optim::Adam>(split.others,
                                         optim::AdamOptions(s.lr).weight_decay(s.weight_decay));
  }
  return std::make_unique<optim::AdamW>(split.others,
                                        optim::AdamWOptions(s.lr).weight_decay(s.weight_decay));
}

std::unique_ptr<optim::LRScheduler> make_scheduler(const Settings& s, optim::Optimizer& opt,
                                                   int64_t total_steps) {
  if (s.schedule == "cosine") return std::make_unique<optim::CosineAnnealingLR>(opt, total_steps);
  if (s.schedule == "warmup-linear") {
    return models::make_warmup_linear(opt, total_steps, s.warmup_fraction, s.start_factor,
                                      s.end_factor);
  }
  return nullptr;
}

td::data::LoaderOptions loader_options(const Settings& s, const td::Device& device, bool training,
                                       int workers) {
  td::data::LoaderOptions o;
  o.batch_size = training ? s.batch_size : std::max<int64_t>(s.batch_size, 256);
  o.shuffle = training;
  o.drop_last = training && s.drop_last;
  o.seed = s.seed;
  o.normalize = {s.mean, s.std};
  if (training) {
    o.augment = {s.augment_translate, s.augment_flip, 0};
    o.augment.padding = s.translate_reflect ? td::data::PadMode::Reflect : td::data::PadMode::Zeros;
    o.augment.alternating_flip = s.augment_flip && s.alternating_flip;
  }
  o.device = device;
  o.mode =
      device.is_cuda() ? td::data::LoaderMode::DeviceResident : td::data::LoaderMode::HostPrefetch;
  o.workers = workers;
  return o;
}

// ---- Checks before anything is written -------------------------------------------------

// A forward pass of two images through a fresh copy of the model, layer by
// layer, on the CPU: shape errors and an output size that is not the number
// of classes are found before the run directory exists. Run before the seed
// is set (building the copy draws from the default generator).
void check_model_runs(const Settings& s, int64_t num_classes) {
  td::nn::Sequential probe = td::models::from_json(s.model_json);
  probe->eval();
  td::NoGradGuard no_grad;
  td::Tensor x = td::zeros({2, 3, 32, 32});
  for (size_t i = 0; i < probe->size(); ++i) {
    const std::shared_ptr<td::nn::Module> layer = (*probe)[i];
    const td::Shape in = x.sizes();
    try {
      x = layer->forward(x);
    } catch (const td::Error& e) {
      throw UsageError("--model " + s.model + ": layer " + std::to_string(i) + " (" +
                       layer->type_name() + ") cannot take its input of shape " +
                       td::shape_str(in) +
                       " (a batch of 2 CIFAR images, 2x3x32x32, "
                       "through the layers before it): " +
                       e.message());
    }
  }
  if (x.dim() != 2 || x.size(1) != num_classes) {
    const std::string outputs = x.dim() == 2 ? std::to_string(x.size(1)) + " outputs"
                                             : "output shape " + td::shape_str(x.sizes());
    throw UsageError("--model " + s.model + ": the model gives " + outputs +
                     " per image, but the data has " + std::to_string(num_classes) +
                     " classes: its last layer must give one score per class (shape [N, " +
                     std::to_string(num_classes) + "])");
  }
}

// What `tandem train` writes into a run directory (--overwrite replaces these).
const std::vector<std::string>& run_files() {
  static const std::vector<std::string> files = {
      "config.json", "metrics.csv",  "metrics.jsonl", "last.safetensors", "best.safetensors",
      "loss.svg",    "accuracy.svg", "confusion.svg", "results.json"};
  return files;
}

std::vector<std::string> directory_entries(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// A new directory runs/<date-time> (with -2, -3 ... when taken).
std::string new_run_dir() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  std::string dir = std::string("runs/") + stamp;
  for (int n = 2; std::filesystem::exists(dir); ++n) {
    dir = std::string("runs/") + stamp + "-" + std::to_string(n);
  }
  return dir;
}

// --out (or --resume's directory written into): a non-empty directory that is
// not the run being resumed is refused unless --overwrite.
void check_out_dir(const std::string& out, const std::string& resumed_dir, bool overwrite) {
  if (out.empty()) return;
  if (std::filesystem::exists(out) && !is_directory(out)) {
    throw UsageError("--out " + out + " is a file, not a directory");
  }
  if (!is_directory(out) || overwrite) return;
  std::error_code ec;
  if (!resumed_dir.empty() && std::filesystem::equivalent(out, resumed_dir, ec)) return;
  const std::vector<std::string> names = directory_entries(out);
  if (names.empty()) return;
  std::string some;
  for (size_t i = 0; i < names.size() && i < 3; ++i) some += (i ? ", " : "") + names[i];
  if (names.size() > 3) some += ", ...";
  throw UsageError("--out " + out + " is not empty (" + std::to_string(names.size()) +
                   " file(s): " + some +
                   "); a new run would overwrite its files. Continue that run with "
                   "'tandem train --resume " +
                   out +
                   "', choose a new --out (or none: a new "
                   "runs/<date-time>), or give --overwrite to replace its run files");
}

// Temporaries that a killed process left behind: "<file>.tmp.<pid>.<n>" of a
// checkpoint whose writer is gone, and "<file>.tmp" of the text files.
void remove_stale_temporaries(const std::string& dir) {
  for (const std::string& name : directory_entries(dir)) {
    bool stale = false;
    const size_t at = name.find(".safetensors.tmp.");
    if (at != std::string::npos) {
      const long pid = std::atol(name.c_str() + at + std::strlen(".safetensors.tmp."));
      stale = pid <= 0 || (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH);
    } else if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) {
      const std::string base = name.substr(0, name.size() - 4);
      stale = std::find(run_files().begin(), run_files().end(), base) != run_files().end();
    }
    if (stale) {
      std::error_code ec;
      std::filesystem::remove(dir + "/" + name, ec);
      std::cout << "removed " << dir << "/" << name << " (a temporary left by a killed run)\n";
    }
  }
}

// How many epochs a last.safetensors holds (Trainer's "tandem.train.epochs_done").
int64_t epochs_in_checkpoint(const std::string& path) {
  const td::SafetensorsFile f = td::load_safetensors(path);
  const auto it = f.metadata.find("tandem.train.epochs_done");
  if (it == f.metadata.end()) return -1;
  return std::atoll(it->second.c_str());
}

// ---- Ctrl-C ------------------------------------------------------------------------------

// SIGINT during training: the current step finishes, the epoch is abandoned
// (last.safetensors keeps the last finished one) and the run says how to go
// on. A second Ctrl-C ends the process at once (SA_RESETHAND).
volatile sig_atomic_t g_interrupted = 0;
extern "C" void on_sigint(int) { g_interrupted = 1; }

struct Interrupted {};

class SigintHandler {
 public:
  SigintHandler() {
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &old_);
  }
  ~SigintHandler() { ::sigaction(SIGINT, &old_, nullptr); }
  SigintHandler(const SigintHandler&) = delete;
  SigintHandler& operator=(const SigintHandler&) = delete;

 private:
  struct sigaction old_ {};
};

constexpr int kExitInterrupted = 130;  // 128 + SIGINT, as shells report it

// ---- Progress -------------------------------------------------------------------------

// A progress bar per epoch on a terminal, one line per epoch otherwise, and
// an estimate of the whole run's time after the first timed steps (said again
// at the first epoch's end when the steps have since become much faster or
// slower). Step times: StepTimes, the median of the last 50 steps after two
// warm-up steps, so that one slow step does not throw the ETA off.
class Progress {
 public:
  Progress(int64_t epochs, int64_t val_images, bool tty)
      : epochs_(epochs), val_images_(val_images), tty_(tty) {}
  void set_first_epoch(int64_t epoch) { first_epoch_ = epoch; }

  // Steps timed (after the warm-up) before the run's time is estimated.
  static constexpr int64_t kEstimateSteps = 20;

  void on_step(const train::StepInfo& info) {
    const auto now = Clock::now();
    if (info.step == 0) {
      // A step's time is the time since the step before it in the epoch: the
      // epoch's first has none (validation and the loader's start came before).
      epoch_start_ = now;
    } else {
      times_.add(std::chrono::duration<double>(now - last_step_).count());
    }
    last_step_ = now;
    if (info.epoch == first_epoch_) {
      // Once enough steps are timed (or the first epoch's steps are done),
      // and again at its end when the estimate has moved by more than a quarter.
      const bool last = info.step + 1 == info.steps;
      const bool enough = times_.counted() >= kEstimateSteps || (last && info.step > 0);
      if (enough && !std::isfinite(estimated_per_step_)) {
        print_estimate(info, "");
      } else if (last && info.step > 0 && std::isfinite(estimated_per_step_) &&
                 std::abs(times_.median() - estimated_per_step_) > 0.25 * estimated_per_step_) {
        print_estimate(info, " (updated)");
      }
    }
    epoch_ = info.epoch;
    if (!tty_) return;
    const double elapsed = std::chrono::duration<double>(now - epoch_start_).count();
    ProgressFields f;
    f.epoch = info.epoch + 1;
    f.epochs = epochs_;
    f.done = info.step + 1;
    f.total = info.steps;
    f.loss = info.running_loss;
    f.accuracy = info.running_accuracy;
    f.elapsed = elapsed;
    f.eta = times_.eta(info.steps - info.step - 1);  // NaN before the first timed step
    f.images_per_second = info.images_per_second;
    draw(f);
    val_start_ = Clock::now();
  }

  // The validation pass after an epoch's training steps.
  void on_val_step(int64_t done, int64_t total) {
    if (!tty_) return;
    const double elapsed = std::chrono::duration<double>(Clock::now() - val_start_).count();
    ProgressFields f;
    f.epoch = epoch_ + 1;
    f.epochs = epochs_;
    f.validating = true;
    f.done = done;
    f.total = total;
    f.elapsed = elapsed;
    f.eta = elapsed / static_cast<double>(done) * static_cast<double>(total - done);
    draw(f);
  }

  // At most 20 redraws a second (and always the last of a pass), so that a
  // fast model's steps do not wait on the terminal.
  void draw(const ProgressFields& f) {
    const auto now = Clock::now();
    if (f.done != f.total && bar_shown_ &&
        std::chrono::duration<double>(now - last_draw_).count() < 0.05) {
      return;
    }
    last_draw_ = now;
    std::cout << "\r\033[K" << progress_line(f, terminal_columns()) << std::flush;
    bar_shown_ = true;
  }

  void on_epoch(const train::EpochStats& e) {
    clear_bar();
    char line[512];
    // Fixed decimals: "1.0000" beside "0.4642", never "1".
    auto acc = [](double v) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.4f", v);
      return std::isfinite(v) ? std::string(buf) : std::string("n/a");
    };
    std::snprintf(line, sizeof line,
                  "(Epoch %lld / %lld) train acc: %s; val acc: %s; train loss: %.4f; val loss: %s; "
                  "lr: %.4g; %.0f img/s; %s\n",
                  static_cast<long long>(e.epoch + 1), static_cast<long long>(epochs_),
                  acc(e.train_accuracy).c_str(), acc(e.val_accuracy).c_str(), e.train_loss,
                  acc(e.val_loss).c_str(), e.lr, e.images_per_second,
                  format_duration(e.seconds).c_str());
    std::cout << line << std::flush;
  }

  void clear_bar() {
    if (bar_shown_) std::cout << "\r\033[K" << std::flush;
    bar_shown_ = false;
  }

 private:
  void print_estimate(const train::StepInfo& info, const char* what) {
    estimated_per_step_ = times_.median();
    clear_bar();
    const double per_epoch =
        estimated_per_step_ * static_cast<double>(info.steps) +
        static_cast<double>(val_images_) / std::max(info.images_per_second * 3, 1.0);
    const int64_t timed = times_.sampled();
    std::cout << "estimate" << what << ": " << format_duration(per_epoch) << " per epoch, "
              << format_duration(per_epoch * static_cast<double>(epochs_ - first_epoch_)) << " for "
              << epochs_ - first_epoch_ << " epoch(s) (the median of " << timed
              << " timed step(s))\n"
              << std::flush;
  }

  int64_t epochs_, first_epoch_ = 0, val_images_, epoch_ = 0;
  bool tty_;
  bool bar_shown_ = false;
  Clock::time_point epoch_start_, last_step_, val_start_, last_draw_;
  StepTimes times_{50, 2};
  double estimated_per_step_ = std::numeric_limits<double>::quiet_NaN();
};

// ---- Run directory ----------------------------------------------------------------------

json nullable(double v) { return std::isfinite(v) ? json(v) : json(); }

json epoch_json(const train::EpochStats& e) {
  return {{"epoch", e.epoch + 1},
          {"train_loss", nullable(e.train_loss)},
          {"train_accuracy", nullable(e.train_accuracy)},
          {"val_loss", nullable(e.val_loss)},
          {"val_accuracy", nullable(e.val_accuracy)},
          {"lr", nullable(e.lr)},
          {"seconds", nullable(e.seconds)},
          {"images_per_second", nullable(e.images_per_second)}};
}

// metrics.csv, metrics.jsonl and the curves, rewritten from the whole history
// after every epoch (so a resumed run's files hold every epoch).
void write_metrics(const std::string& dir, const train::History& h) {
  std::ostringstream csv, jsonl;
  csv << "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds,images_per_second\n";
  auto field = [](double v) { return std::isfinite(v) ? num_text(v) : std::string(); };
  td::plot::Series tl{"train", {}, {}}, vl{"validation", {}, {}}, ta{"train", {}, {}},
      va{"validation", {}, {}};
  for (const train::EpochStats& e : h.epochs) {
    csv << e.epoch + 1 << ',' << field(e.train_loss) << ',' << field(e.train_accuracy) << ','
        << field(e.val_loss) << ',' << field(e.val_accuracy) << ',' << field(e.lr) << ','
        << field(e.seconds) << ',' << field(e.images_per_second) << '\n';
    jsonl << epoch_json(e).dump() << '\n';
    const double x = static_cast<double>(e.epoch + 1);
    tl.xs.push_back(x);
    tl.ys.push_back(e.train_loss);
    vl.xs.push_back(x);
    vl.ys.push_back(e.val_loss);
    ta.xs.push_back(x);
    ta.ys.push_back(e.train_accuracy);
    va.xs.push_back(x);
    va.ys.push_back(e.val_accuracy);
  }
  write_text_file(dir + "/metrics.csv", csv.str());
  write_text_file(dir + "/metrics.jsonl", jsonl.str());
  td::plot::line_chart(dir + "/loss.svg", "Loss", "epoch", "cross-entropy", {tl, vl});
  td::plot::line_chart(dir + "/accuracy.svg", "Accuracy", "epoch", "accuracy", {ta, va});
}

void print_test_result(const train::EvalResult& r, const std::vector<std::string>& classes) {
  char line[256];
  std::snprintf(line, sizeof line, "test accuracy: %.2f%% (%lld images, loss %.4f)\n",
                r.accuracy * 100, static_cast<long long>(r.samples), r.loss);
  std::cout << line << "per-class accuracy:\n";
  const std::vector<double> per_class = r.per_class_accuracy();
  for (size_t c = 0; c < per_class.size(); ++c) {
    const std::string name = c < classes.size() ? classes[c] : std::to_string(c);
    if (std::isfinite(per_class[c])) {
      std::snprintf(line, sizeof line, "  %-12s %5.1f%%\n", name.c_str(), per_class[c] * 100);
    } else {
      std::snprintf(line, sizeof line, "  %-12s   n/a\n", name.c_str());
    }
    std::cout << line;
  }
}

json result_json(const train::EvalResult& r, const std::vector<std::string>& classes) {
  json per_class = json::object();
  const std::vector<double> acc = r.per_class_accuracy();
  for (size_t c = 0; c < acc.size(); ++c) {
    per_class[c < classes.size() ? classes[c] : std::to_string(c)] = nullable(acc[c]);
  }
  return {{"test_accuracy", nullable(r.accuracy)},
          {"test_loss", nullable(r.loss)},
          {"test_images", r.samples},
          {"per_class_accuracy", per_class},
          {"confusion", r.confusion}};
}

// The test set on best.safetensors too (Keras' restore_best_weights, Lightning's
// ckpt_path="best"): results.json's "best_checkpoint". When the best epoch is
// the last, the last model's result is the best's.
json test_best_checkpoint(const train::Trainer& trainer, const Settings& s,
                          const td::Device& device, const td::data::ImageDataset& test_set,
                          const std::vector<std::string>& classes, int workers,
                          const train::EvalResult& last) {
  const train::History& h = trainer.history();
  const std::string path = trainer.best_checkpoint_path();
  if (h.best_epoch < 0 || path.empty() || !is_file(path)) return json();
  train::EvalResult r = last;
  if (h.best_epoch + 1 != trainer.epochs_done()) {
    td::nn::Sequential best = td::models::from_json(s.model_json);
    td::load(*best, path);
    best->to(device);
    td::data::DataLoader loader(test_set, loader_options(s, device, false, workers));
    r = train::evaluate(*best, loader, static_cast<int64_t>(classes.size()), test_time_augment(s));
  }
  char line[160];
  std::snprintf(line, sizeof line,
                "test accuracy of best.safetensors (epoch %lld, val acc %.4f): %.2f%%%s\n",
                static_cast<long long>(h.best_epoch + 1), h.best_val_accuracy, r.accuracy * 100,
                h.best_epoch + 1 == trainer.epochs_done() ? " (the last epoch's model)" : "");
  std::cout << line;
  json j = result_json(r, classes);
  j["path"] = path;
  j["epoch"] = h.best_epoch + 1;
  j["val_accuracy"] = nullable(h.best_val_accuracy);
  return j;
}

// Where --resume points: a run directory or a checkpoint file inside one.
void resume_paths(const std::string& resume, std::string* dir, std::string* checkpoint) {
  if (is_directory(resume)) {
    *dir = resume;
    *checkpoint = resume + "/last.safetensors";
  } else if (is_file(resume)) {
    const size_t slash = resume.rfind('/');
    *dir = slash == std::string::npos ? "." : resume.substr(0, slash);
    *checkpoint = resume;
  } else {
    throw UsageError("--resume " + resume + ": no such run directory or checkpoint");
  }
  if (!is_file(*dir + "/config.json")) {
    throw UsageError("--resume " + resume + ": " + *dir +
                     "/config.json is missing (not a run directory written by tandem train)");
  }
  if (!is_file(*checkpoint)) {
    throw UsageError("--resume " + resume + ": " + *checkpoint +
                     " is missing (the run finished no epoch)");
  }
}

}  // namespace

// A null stream buffer: ranks other than 0 say nothing on stdout.
struct NullBuffer : std::streambuf {
  int overflow(int c) override { return c; }
};

int run_train(const TrainArgs& args) {
  const DistSetup dsetup = dist_setup(args);
  if (dsetup.launch) {
    std::string launch_out = args.out;
    if (launch_out.empty() && args.resume.empty() && !args.print_config) launch_out = new_run_dir();
    // A refused --out is said once, here, before any rank starts.
    if (args.resume.empty() && !args.print_config) check_out_dir(launch_out, "", args.overwrite);
    return launch_local(args, launch_out);
  }
  static NullBuffer null_buffer;
  std::streambuf* const saved_cout = std::cout.rdbuf();
  struct RestoreCout {
    std::streambuf* b;
    ~RestoreCout() { std::cout.rdbuf(b); }
  } restore_cout{saved_cout};
  if (dsetup.rank > 0) std::cout.rdbuf(&null_buffer);
  std::string why;
  td::Device device = resolve_device(args.device, &why);
  // One GPU per local rank; with more local ranks than GPUs they share them
  // round-robin (NCCL refuses two ranks on one GPU, so those runs use Gloo).
  bool gpus_shared = false;
  if (device.is_cuda() && dsetup.world > 1) {
    const int gpus = std::max(1, td::cuda::device_count());
    gpus_shared = dsetup.local_world > gpus;
    device = td::Device(td::kCUDA, dsetup.local_rank % gpus);
    if (gpus_shared) {
      why += "; " + std::to_string(dsetup.local_world) + " ranks share " + std::to_string(gpus) +
             " GPU" + (gpus == 1 ? "" : "s");
    }
  }
  if (device.is_cpu()) {
    const int threads = omp_get_max_threads();
    why += "; " + std::to_string(threads) + " CPU thread" + (threads == 1 ? "" : "s") +
           (args.threads > 0 ? " (--threads)" : "");
  }
  // --print-config prints the JSON alone on stdout; what the run says goes to stderr.
  std::ostream& log = args.print_config ? std::cerr : std::cout;
  log << "device: " << why << "\n";

  Settings s;
  std::string checkpoint, out = args.out;
  json saved_config;
  std::string dir;
  if (!args.resume.empty()) {
    resume_paths(args.resume, &dir, &checkpoint);
    saved_config = read_json_file(dir + "/config.json", dir + "/config.json");
    s = settings_from_config(saved_config, dir + "/config.json");
    check_resume_conflicts(args, s, dir);
    if (args.epochs) s.epochs = *args.epochs;
    check_range(s.epochs >= 1, "--epochs must be at least 1, got " + std::to_string(s.epochs));
    const int64_t done = epochs_in_checkpoint(checkpoint);
    check_range(done <= s.epochs, "--epochs " + std::to_string(s.epochs) + " is below the " +
                                      std::to_string(done) + " epochs " + checkpoint +
                                      " has done; give --epochs " + std::to_string(done + 1) +
                                      " or more to train on (the total, counting those done)");
    if (args.data.synthetic > 0 || !args.data.data.empty()) {
      s.data = args.data;
      s.data.seed = s.seed;
    }
    apply_run_options(args, &s);
    log << "resuming " << checkpoint << " (model " << s.model << ")\n";
  } else {
    s = resolve_settings(args, device);
  }
  // Every source is CIFAR-10 (read_cifar10 checks its class names): the model
  // is checked against its classes before the data is read, and again below
  // should the data name others.
  const int64_t checked_classes = static_cast<int64_t>(td::data::cifar10_classes().size());
  check_model_runs(s, checked_classes);
  if (args.print_config) {
    // Settings only: nothing is read or written, so --out is not checked.
    std::cout << run_config(s, device).dump(2) << "\n";
    return kExitOk;
  }
  // dir: the resumed run's directory ("" for a new run), written into when no --out.
  // (Ranks other than 0 write nothing; rank 0 checks --out before they meet.)
  if (dsetup.rank == 0) check_out_dir(out, dir, args.overwrite);
  if (out.empty()) out = dir.empty() ? new_run_dir() : dir;

  std::shared_ptr<td::dist::ProcessGroup> group;
  td::dist::Backend backend = td::dist::Backend::Gloo;
  if (dsetup.world > 1) {
    if (device.is_cuda() && gpus_shared) {
      std::cout << "dist: ranks share a GPU, which NCCL refuses: GPU gradients go through Gloo "
                << "with pinned host buffers\n";
    } else if (device.is_cuda()) {
      for (const auto& b : td::dist::backends()) {
        if (b.name != "nccl") continue;
        if (b.available) {
          backend = td::dist::Backend::Nccl;
        } else {
          std::cout << "dist: NCCL unavailable (" << b.detail << "): GPU gradients go through "
                    << "Gloo with pinned host buffers\n";
        }
      }
    }
    group = td::dist::ProcessGroup::create(dsetup.init, backend);
  }
  // Rank 0 prepares the data (an archive is unpacked into a shared cache once)
  // while the others wait, then they read what it prepared.
  td::data::Cifar10 cifar;
  if (dsetup.rank == 0) cifar = load_data(s.data);
  if (group) group->barrier();
  if (dsetup.rank != 0) cifar = load_data(s.data);
  const int64_t classes_count = num_classes(cifar.train);
  if (classes_count != checked_classes) check_model_runs(s, classes_count);
  const int64_t n_train = cifar.train.size();
  if (s.val_split < 0) s.val_split = n_train / 10;
  check_range(s.val_split < n_train, "--val-split " + std::to_string(s.val_split) +
                                         " leaves no training images (the training set has " +
                                         std::to_string(n_train) + ")");
  td::data::ImageDataset train_set = cifar.train, val_set;
  if (s.val_split > 0) {
    auto split = td::data::train_validation_split(
        cifar.train, static_cast<double>(s.val_split) / static_cast<double>(n_train), s.seed);
    train_set = std::move(split.first);
    val_set = std::move(split.second);
  }
  if (s.limit_batches > 0) {
    // A smoke test: the first N batches of each set.
    const int64_t eval_batch = std::max<int64_t>(s.batch_size, 256);
    train_set = first_samples(train_set, s.limit_batches * s.batch_size);
    val_set = first_samples(val_set, s.limit_batches * eval_batch);
    cifar.test = first_samples(cifar.test, s.limit_batches * eval_batch);
    std::cout << "--limit-batches " << s.limit_batches << ": " << train_set.size() << " training / "
              << val_set.size() << " validation / " << cifar.test.size() << " test images\n";
  }

  if (group) {
    if (s.batch_size % dsetup.world != 0)
      throw UsageError("--batch-size " + std::to_string(s.batch_size) +
                       " (the global batch) must be a multiple of the " +
                       std::to_string(dsetup.world) + " ranks");
    std::cout << "dist: rank " << dsetup.rank << " of " << dsetup.world << ", backend "
              << td::dist::backend_name(backend) << ", global batch " << s.batch_size << " ("
              << s.batch_size / dsetup.world << " per rank)\n";
  }
  const int64_t world = dsetup.world;
  const int64_t global_batch = s.batch_size;
  td::manual_seed(s.seed);
  td::nn::Sequential net = td::models::from_json(s.model_json);
  if (args.resume.empty()) {
    if (s.dirac_init && td::models::init_dirac(*net) > 0) {
      std::cout << "dirac: the convolutions start as partial identities\n";
    }
    td::models::WhiteningOptions w;
    w.mean = s.mean;
    w.std = s.std;
    if (td::models::init_whitening(*net, train_set.images, w) > 0) {
      std::cout << "whitening: initialised from " << train_set.size() << " training images\n";
    }
  }
  net->to(device);
  std::unique_ptr<optim::Optimizer> opt = make_optimizer(s, *net);
  std::unique_ptr<optim::Lookahead> lookahead;
  if (s.lookahead) {
    lookahead =
        std::make_unique<optim::Lookahead>(optim::lookahead_tensors(*net), s.lookahead_options);
  }

  // Each rank's shard: the global batch split, evaluation sets unpadded.
  const auto shard = [&](td::data::LoaderOptions o, bool training) {
    if (world > 1) {
      o.num_replicas = world;
      o.rank = dsetup.rank;
      o.pad_shards = training;
      if (training) o.batch_size = global_batch / world;
    }
    return o;
  };
  if (group && !args.no_sync_batchnorm) {
    // A second communicator only for a net with batch norm.
    bool has_bn = false;
    net->apply([&](td::nn::Module& m) { has_bn = has_bn || m.as<td::nn::BatchNormImplBase>(); });
    if (has_bn) {
      const int64_t n_bn = td::dist::convert_sync_batchnorm(*net, group->new_group("syncbn"));
      std::cout << "dist: SyncBatchNorm in " << n_bn << " layer(s)\n";
    }
  }
  td::data::DataLoader train_loader(train_set,
                                    shard(loader_options(s, device, true, args.workers), true));
  std::unique_ptr<td::data::DataLoader> val_loader;
  if (val_set.size() > 0) {
    val_loader = std::make_unique<td::data::DataLoader>(
        val_set, shard(loader_options(s, device, false, args.workers), false));
  }
  std::unique_ptr<optim::LRScheduler> sched =
      make_scheduler(s, *opt, s.epochs * train_loader.num_batches());

  const bool writer = dsetup.rank == 0;  // only rank 0 writes the run directory
  if (writer) {
    if (args.overwrite && is_directory(out)) {
      for (const std::string& f : run_files()) {
        std::error_code ec;
        std::filesystem::remove(out + "/" + f, ec);
      }
    }
    make_directories(out);
    remove_stale_temporaries(out);
    write_text_file(out + "/config.json", run_config(s, device).dump(2) + "\n");
  }

  std::cout << "model: " << s.model << " (" << count_parameters(*net) << " parameters), "
            << s.optimizer << " lr " << s.lr << ", batch " << s.batch_size << ", " << s.epochs
            << " epochs, schedule " << s.schedule << "; " << train_set.size() << " training / "
            << val_set.size() << " validation / " << cifar.test.size()
            << " test images; run directory " << out << "\n";

  Progress progress(s.epochs, val_set.size(), stdout_is_terminal());
  train::TrainerOptions topt;
  topt.epochs = s.epochs;
  topt.num_classes = classes_count;
  topt.label_smoothing = s.label_smoothing;
  topt.scheduler_step = train::SchedulerStep::PerBatch;
  topt.tta_flip = s.tta_flip;
  topt.tta_translate = s.tta_translate;
  topt.lookahead = lookahead.get();
  if (s.whitening_bias_epochs > 0) {
    // airbench: the whitening bias trains in the first epochs only (the
    // optimizer skips it once it gets no gradient).
    topt.on_epoch_start = [&net, &s](int64_t epoch) {
      td::models::set_whitening_bias_trainable(*net, epoch < s.whitening_bias_epochs);
    };
  }
  topt.checkpoint_dir = out;
  topt.on_step = [&progress, writer](const train::StepInfo& i) {
    if (writer) progress.on_step(i);
    if (g_interrupted != 0) throw Interrupted{};
  };
  topt.on_val_step = [&progress, writer](int64_t done, int64_t total) {
    if (writer) progress.on_val_step(done, total);
  };
  topt.clip_grad_norm = s.clip_grad_norm;
  topt.patience = s.patience;
  // The metrics files and curves are rewritten after every epoch, so an
  // interrupted run still has them.
  const train::Trainer* running = nullptr;
  topt.on_epoch = [&progress, &out, &running, writer](const train::EpochStats& e) {
    if (!writer) return;
    progress.on_epoch(e);
    if (running != nullptr) write_metrics(out, running->history());
  };
  topt.group = group;
  train::Trainer trainer(net.ptr(), *opt, sched.get(), topt);
  running = &trainer;
  if (!checkpoint.empty()) {
    if (dir != out && writer) remove_stale_temporaries(dir);
    trainer.resume(checkpoint);
    std::cout << "resumed after epoch " << trainer.epochs_done() << " of " << s.epochs << "\n";
  }
  // A checkpoint before the first epoch: Ctrl-C in it leaves a run to resume.
  if (checkpoint.empty()) trainer.save_last(train_loader);
  progress.set_first_epoch(trainer.epochs_done());
  const auto t0 = Clock::now();
  try {
    SigintHandler sigint;
    trainer.fit(train_loader, val_loader.get());
    if (g_interrupted != 0) throw Interrupted{};  // during the last validation
    if (trainer.stopped_early()) {
      std::cout << "early stopping: validation accuracy has not improved for " << s.patience
                << " epoch(s) since epoch " << trainer.history().best_epoch + 1 << " ("
                << trainer.epochs_done() << " of " << s.epochs << " epochs run)\n";
    }
  } catch (const train::NonFiniteLoss& e) {
    progress.clear_bar();
    if (writer) write_metrics(out, trainer.history());
    std::cerr << "tandem train: " << e.message() << "\n";
    return kExitRuntime;
  } catch (const Interrupted&) {
    progress.clear_bar();
    if (writer) write_metrics(out, trainer.history());
    const int64_t done = trainer.epochs_done();
    std::cout << "\ninterrupted (Ctrl-C)"
              << (done < s.epochs ? "; epoch " + std::to_string(done + 1) + " was abandoned" : "")
              << "; " << trainer.last_checkpoint_path() << " holds the run after " << done << " of "
              << s.epochs << " epoch(s). To continue: tandem train --resume " << out << "\n"
              << std::flush;
    return kExitInterrupted;
  }
  if (writer) write_metrics(out, trainer.history());
  const double train_seconds = std::chrono::duration<double>(Clock::now() - t0).count();

  td::data::DataLoader test_loader(cifar.test,
                                   shard(loader_options(s, device, false, args.workers), false));
  const train::EvalResult test =
      train::evaluate(*net, test_loader, classes_count, test_time_augment(s), 0, {}, group.get());
  if (!writer) return kExitOk;
  const std::vector<std::string> classes = class_names(cifar.test);
  td::plot::confusion_matrix(out + "/confusion.svg", test.confusion, classes,
                             "Confusion matrix (test set, " + s.model + ")");
  print_test_result(test, classes);
  const bool diverged = !std::isfinite(test.loss);
  json results = result_json(test, classes);
  results["model"] = s.model;
  results["device"] = device.is_cuda() ? "cuda" : "cpu";
  results["epochs"] = trainer.epochs_done();
  results["best_epoch"] = trainer.history().best_epoch + 1;
  results["best_val_accuracy"] = nullable(trainer.history().best_val_accuracy);
  results["train_seconds"] = train_seconds;
  results["world_size"] = world;
  results["evaluated"] = "the model after the last epoch" + tta_words(s);
  results["evaluated_checkpoint"] = "last";
  results["stopped_early"] = trainer.stopped_early();
  results["best_checkpoint"] =
      test_best_checkpoint(trainer, s, device, cifar.test, classes, args.workers, test);
  write_text_file(out + "/results.json", results.dump(2) + "\n");
  std::cout << "wrote " << out << "/{config.json, metrics.csv, metrics.jsonl, last.safetensors"
            << (trainer.history().best_epoch >= 0 ? ", best.safetensors" : "")
            << ", loss.svg, accuracy.svg, confusion.svg, results.json}\n";
  if (diverged) {
    std::cerr << "tandem train: error: the test loss is non-finite (" << test.loss
              << "): the trained model's outputs overflow (try a smaller learning rate)\n";
    return kExitRuntime;
  }
  return kExitOk;
}

int run_eval(const EvalArgs& args) {
  if (!is_file(args.checkpoint))
    throw UsageError("--checkpoint " + args.checkpoint + ": no such file");
  const size_t slash = args.checkpoint.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : args.checkpoint.substr(0, slash);
  Settings s;
  const bool have_config = is_file(dir + "/config.json");
  if (have_config) {
    const json config = read_json_file(dir + "/config.json", dir + "/config.json");
    s = settings_from_config(config, dir + "/config.json");
  }
  if (!args.model.empty()) {
    ModelSpec spec;
    make_model(args.model, &spec);
    const models::Recipe r = recipe_for(spec);
    s.model = args.model;
    s.model_json = spec.json_text;
    if (!have_config) {
      s.mean = r.mean;
      s.std = r.std;
      s.tta_flip = r.tta_flip;
      s.tta_translate = r.tta_translate;
    }
  } else if (!have_config) {
    throw UsageError("--checkpoint " + args.checkpoint +
                     ": no config.json next to it, so the model is "
                     "unknown; give --model (a preset or a JSON model file)");
  }
  if (args.tta) {
    s.tta_flip = *args.tta;
    if (!*args.tta) s.tta_translate = false;
  }
  if (args.data.synthetic > 0 || !args.data.data.empty() || !have_config) {
    s.data = args.data;
    s.data.seed = s.seed;  // a synthetic set as the run made it
  }
  check_range(args.batch_size >= 1,
              "--batch-size must be at least 1, got " + std::to_string(args.batch_size));
  s.batch_size = args.batch_size;

  std::string why;
  const td::Device device = resolve_device(args.device, &why);
  if (!args.json_output) std::cout << "device: " << why << "\n";
  td::nn::Sequential net = td::models::from_json(s.model_json);
  try {
    td::load(*net, args.checkpoint);
  } catch (const td::Error& e) {
    if (!args.model.empty()) {
      throw UsageError("--model " + args.model + " does not match " + args.checkpoint + ": " +
                       e.message());
    }
    throw;
  }
  if (const std::string bad = first_non_finite(*net); !bad.empty()) {
    std::cerr << "tandem eval: warning: " << args.checkpoint
              << " holds non-finite weights (NaN or infinity in '" << bad << "')\n";
    throw std::runtime_error(args.checkpoint + " holds non-finite weights (NaN or infinity in '" +
                             bad + "'): the model it saved diverged; evaluate another checkpoint");
  }
  net->to(device);
  td::data::Cifar10 cifar = load_data(s.data);
  td::data::DataLoader loader(cifar.test, loader_options(s, device, false, 2));
  const std::vector<std::string> classes = class_names(cifar.test);
  const train::EvalResult r =
      train::evaluate(*net, loader, static_cast<int64_t>(classes.size()), test_time_augment(s));
  if (args.json_output) {
    json j = result_json(r, classes);
    j["checkpoint"] = args.checkpoint;
    j["tta_flip"] = s.tta_flip;
    j["tta_translate"] = s.tta_flip && s.tta_translate;
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << "checkpoint: " << args.checkpoint << " (model " << s.model << tta_words(s)
              << ")\n";
    print_test_result(r, classes);
  }
  return kExitOk;
}

}  // namespace cli

namespace cli {
namespace {

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

}  // namespace

void add_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* cmd =
      app.add_subcommand("train", "train a model on CIFAR-10 (or a synthetic set) into RUN_DIR");
  cmd->footer(kTrainExamples);
  cmd->add_option("--model", a->model,
                  "auto, a preset (mlp, lenet, resnet-fast) or a JSON model file")
      ->capture_default_str();
  add_data_options(cmd, &a->data);
  add_device_option(cmd, &a->device, "auto (the GPU when usable), cpu or cuda");
  cmd->add_option("--epochs", a->epochs, "epochs (total, also on --resume)");
  cmd->add_option("--batch-size", a->batch_size, "training batch size");
  cmd->add_option("--optimizer", a->optimizer, "sgd, adam or adamw");
  cmd->add_option("--lr", a->lr, "learning rate (peak lr of a schedule)");
  cmd->add_option("--weight-decay", a->weight_decay, "L2 weight decay (decoupled for adamw)");
  cmd->add_option("--momentum", a->momentum, "SGD momentum");
  cmd->add_option("--schedule", a->schedule,
                  "constant, warmup-linear (per step) or cosine (per step)");
  cmd->add_option("--label-smoothing", a->label_smoothing, "in [0, 1)");
  cmd->add_option("--seed", a->seed, "seed of the initialisation, data order, split, augmentation")
      ->check(whole_number(0, std::numeric_limits<int64_t>::max()));
  cmd->add_option("--val-split", a->val_split,
                  "training images held out for validation (default: a tenth, "
                  "5,000 of CIFAR-10's 50,000; 0: none)");
  cmd->add_flag("--no-augment", a->no_augment, "turn the recipe's augmentation off");
  cmd->add_option("--out", a->out,
                  "RUN_DIR: where config, metrics, checkpoints and plots go (default: "
                  "a new runs/<date-time>; an existing non-empty directory is "
                  "refused unless --overwrite)");
  cmd->add_flag("--overwrite", a->overwrite,
                "replace the run files (config, metrics, checkpoints, plots) in "
                "a non-empty --out directory; other files are kept");
  cmd->add_option("--resume", a->resume,
                  "RUN_DIR or a checkpoint: continue that run with its saved settings");
  cmd->add_option("--clip-grad-norm", a->clip_grad_norm,
                  "clip the gradients' global L2 norm to X every step (0: off)");
  cmd->add_option("--patience", a->patience,
                  "early stopping: stop after N epochs without a better "
                  "validation accuracy (0: off)");
  cmd->add_option("--limit-batches", a->limit_batches,
                  "smoke test: only the first N batches of the training, validation and "
                  "test sets");
  cmd->add_option("--config", a->config,
                  "settings from a config.json (a run directory's, or "
                  "--print-config's); options given override them");
  cmd->add_flag("--print-config", a->print_config,
                "print the resolved settings as config.json (loadable by --config) and exit");
  cmd->add_option("--workers", a->workers, "data loader threads (CPU batches)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  add_threads_option(cmd, &a->threads);
  cmd->add_option("--nproc", a->nproc,
                  "data-parallel: start N ranks on this machine (one per GPU; on a CPU the "
                  "cores are split); --batch-size is the global batch")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--rank", a->rank, "this process's rank (several machines; with --world-size)");
  cmd->add_option("--world-size", a->world_size, "ranks in all (several machines)");
  cmd->add_option("--rendezvous", a->rendezvous,
                  "where the ranks meet: tcp://HOST:PORT (rank 0 serves it) or file:///PATH "
                  "(a fresh directory every rank sees)");
  cmd->add_flag("--no-sync-batchnorm", a->no_sync_batchnorm,
                "data-parallel: batch norm statistics per rank instead of over all ranks");
  run_when_parsed(cmd, [a, cmd] {
    for (const CLI::Option* o : cmd->get_options()) {
      if (o->count() > 0) a->given.push_back(o->get_name());
    }
    // --resume takes the model from the run unless --model is given.
    if (!a->resume.empty() && cmd->get_option("--model")->count() == 0) a->model.clear();
    return run_train(*a);
  });
}

void add_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "evaluate a checkpoint on the test set");
  cmd->footer(R"(Examples:
  tandem eval --checkpoint runs/first/best.safetensors        # model and data from runs/first/config.json
  tandem eval --checkpoint net.safetensors --model lenet --data ~/cifar-10-batches-bin --json)");
  cmd->add_option("--checkpoint", a->checkpoint, "a .safetensors file (a run's best/last)")
      ->required();
  cmd->add_option("--model", a->model,
                  "preset or JSON model file (default: the run's config.json)");
  add_data_options(cmd, &a->data);
  add_device_option(cmd, &a->device, "auto, cpu or cuda");
  cmd->add_option("--batch-size", a->batch_size, "evaluation batch size")->capture_default_str();
  CLI::Option* tta = cmd->add_flag_callback(
      "--tta", [a] { a->tta = true; },
      "test-time augmentation: the mirrored image, and the 1-pixel translations where the "
      "run's recipe has them (resnet-fast)");
  cmd->add_flag_callback(
         "--no-tta", [a] { a->tta = false; }, "no test-time augmentation")
      ->excludes(tta);
  cmd->add_flag("--json", a->json_output, "print the result as JSON");
  add_threads_option(cmd, &a->threads);
  run_when_parsed(cmd, [a] { return run_eval(*a); });
}

}  // namespace cli
