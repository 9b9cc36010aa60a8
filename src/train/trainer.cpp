// The training loop (include/tandem/train.h): epochs, evaluation, history,
// checkpoints and exact resumption. Everything here is written with public
// ops, so it runs unchanged on the CPU and on CUDA.
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tandem/autograd.h"
#include "tandem/generator.h"
#include "tandem/loss.h"
#include "tandem/nn/clip.h"
#include "tandem/ops.h"
#include "tandem/serialize.h"
#include "tandem/train.h"

namespace tandem {
namespace train {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Metadata keys of last.safetensors.
constexpr const char* kEpochKey = "tandem.train.epochs_done";
constexpr const char* kHistoryKey = "tandem.train.history";
constexpr const char* kSeedKey = "tandem.train.generator_seed";
constexpr const char* kOffsetKey = "tandem.train.generator_offset";
constexpr const char* kLoaderSeedKey = "tandem.train.loader_seed";
constexpr const char* kBatchSizeKey = "tandem.train.batch_size";

// JSON has no NaN: non-finite numbers are written as null and read back as NaN.
nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }
double num(const nlohmann::json& j) {
  return j.is_number() ? j.get<double>() : std::numeric_limits<double>::quiet_NaN();
}

uint64_t parse_u64(const Metadata& md, const char* key, const std::string& path) {
  auto it = md.find(key);
  TANDEM_CHECK(it != md.end(), "resume: ", path, " is not a training checkpoint (no '", key,
               "'; it must be a last.safetensors written by Trainer::fit)");
  try {
    size_t used = 0;
    const unsigned long long v = std::stoull(it->second, &used);
    TANDEM_CHECK(used == it->second.size(), "trailing characters");
    return static_cast<uint64_t>(v);
  } catch (const std::exception&) {
    TANDEM_CHECK(false, "resume: ", path, ": '", key, "' is not a number: '", it->second, "'");
  }
  return 0;
}

// The images mirrored left-right (dim 3 of [B, C, H, W]).
Tensor flip_horizontal(const Tensor& x) {
  const int64_t w = x.size(3);
  Tensor idx =
      arange(static_cast<double>(w - 1), -1.0, -1.0, TensorOptions(kInt64).device(x.device()));
  return index_select(x, 3, idx);
}

void make_dir(const std::string& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  TANDEM_CHECK(!ec && std::filesystem::is_directory(dir),
               "train: cannot create the checkpoint directory ", dir, " (",
               ec ? ec.message() : std::string("a file is in the way"), ")");
}

double first_lr(const optim::Optimizer& opt) {
  const auto& groups = opt.param_groups();
  if (groups.empty()) return std::numeric_limits<double>::quiet_NaN();
  return groups[0].has_options() ? groups[0].options().get_lr() : opt.defaults().get_lr();
}

}  // namespace

// ---- History ---------------------------------------------------------------------

std::string History::to_json() const {
  nlohmann::json j;
  j["step_loss"] = nlohmann::json::array();
  for (double v : step_loss) j["step_loss"].push_back(num(v));
  j["epochs"] = nlohmann::json::array();
  for (const EpochStats& e : epochs) {
    j["epochs"].push_back({{"epoch", e.epoch},
                           {"train_loss", num(e.train_loss)},
                           {"train_accuracy", num(e.train_accuracy)},
                           {"val_loss", num(e.val_loss)},
                           {"val_accuracy", num(e.val_accuracy)},
                           {"lr", num(e.lr)},
                           {"seconds", num(e.seconds)},
                           {"images_per_second", num(e.images_per_second)}});
  }
  j["best_epoch"] = best_epoch;
  j["best_val_accuracy"] = num(best_val_accuracy);
  // max_digits10 doubles: a resumed history continues bit-exactly.
  return j.dump();
}

History History::from_json(const std::string& text) {
  History h;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    for (const auto& v : j.at("step_loss")) h.step_loss.push_back(num(v));
    for (const auto& e : j.at("epochs")) {
      EpochStats s;
      s.epoch = e.at("epoch").get<int64_t>();
      s.train_loss = num(e.at("train_loss"));
      s.train_accuracy = num(e.at("train_accuracy"));
      s.val_loss = num(e.at("val_loss"));
      s.val_accuracy = num(e.at("val_accuracy"));
      s.lr = num(e.at("lr"));
      s.seconds = num(e.at("seconds"));
      s.images_per_second = num(e.at("images_per_second"));
      h.epochs.push_back(s);
    }
    h.best_epoch = j.at("best_epoch").get<int64_t>();
    h.best_val_accuracy = num(j.at("best_val_accuracy"));
  } catch (const nlohmann::json::exception& e) {
    TANDEM_CHECK(
        false, "train: a training history that is not valid JSON of the expected form: ", e.what());
  }
  return h;
}

// ---- evaluation ------------------------------------------------------------------------

std::vector<double> EvalResult::per_class_accuracy() const {
  std::vector<double> out;
  for (size_t c = 0; c < confusion.size(); ++c) {
    int64_t total = 0;
    for (int64_t v : confusion[c]) total += v;
    out.push_back(total == 0 ? std::numeric_limits<double>::quiet_NaN()
                             : static_cast<double>(confusion[c][c]) / static_cast<double>(total));
  }
  return out;
}

TestTimeAugment test_time_augment(bool flip, bool translate) {
  if (translate) return TestTimeAugment::FlipTranslate;
  return flip ? TestTimeAugment::Flip : TestTimeAugment::None;
}

Tensor translate_reflect(const Tensor& images, int64_t dy, int64_t dx) {
  TANDEM_CHECK(images.dim() == 4, "translate_reflect: expected images [N, C, H, W], got ",
               shape_str(images.sizes()));
  const int64_t h = images.size(2), w = images.size(3);
  TANDEM_CHECK(std::abs(dy) < h && std::abs(dx) < w, "translate_reflect: shift (", dy, ", ", dx,
               ") must be below the image size ", h, "x", w);
  // Source row/column of each output one: i - shift, reflected into [0, n).
  auto source = [&](int64_t n, int64_t shift) {
    std::vector<int64_t> idx(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      int64_t j = i - shift;
      j = j < 0 ? -j : (j >= n ? 2 * (n - 1) - j : j);
      idx[static_cast<size_t>(i)] = j;
    }
    return from_vector(idx, {n}).to(images.device());
  };
  Tensor out = dy == 0 ? images : index_select(images, 2, source(h, dy));
  return dx == 0 ? out : index_select(out, 3, source(w, dx));
}

Tensor tta_logits(nn::Module& model, const Tensor& images, TestTimeAugment tta) {
  auto mirror_mean = [&](const Tensor& x) { return (model(x) + model(flip_horizontal(x))) * 0.5; };
  switch (tta) {
    case TestTimeAugment::None:
      return model(images);
    case TestTimeAugment::Flip:
      return mirror_mean(images);
    case TestTimeAugment::FlipTranslate: {
      const Tensor shifted = (mirror_mean(translate_reflect(images, 1, 1)) +
                              mirror_mean(translate_reflect(images, -1, -1))) *
                             0.5;
      return (mirror_mean(images) + shifted) * 0.5;
    }
  }
  TANDEM_FAIL("tta_logits: unknown TestTimeAugment");
}

EvalResult evaluate(nn::Module& model, data::DataLoader& loader, int64_t num_classes, bool tta_flip,
                    int64_t epoch, const std::function<void(int64_t, int64_t)>& on_batch,
                    dist::ProcessGroup* group) {
  return evaluate(model, loader, num_classes, test_time_augment(tta_flip, false), epoch, on_batch,
                  group);
}

EvalResult evaluate(nn::Module& model, data::DataLoader& loader, int64_t num_classes,
                    TestTimeAugment tta, int64_t epoch,
                    const std::function<void(int64_t, int64_t)>& on_batch,
                    dist::ProcessGroup* group) {
  TANDEM_CHECK(num_classes > 0, "evaluate: num_classes must be positive, got ", num_classes);
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  EvalResult r;
  r.confusion.assign(static_cast<size_t>(num_classes),
                     std::vector<int64_t>(static_cast<size_t>(num_classes), 0));
  double loss_sum = 0;
  int64_t correct = 0, batches = 0;
  try {
    loader.start_epoch(epoch);
    data::Batch b;
    while (loader.next(&b)) {
      Tensor logits = tta_logits(model, b.images, tta);
      TANDEM_CHECK(logits.dim() == 2 && logits.size(1) == num_classes, "evaluate: the model gives ",
                   shape_str(logits.sizes()), " for a batch of ", b.labels.numel(),
                   "; expected [N, ", num_classes, "]");
      loss_sum += cross_entropy(logits, b.labels, Reduction::Sum).item<double>();
      const std::vector<int64_t> pred = to_vector<int64_t>(argmax(logits, 1).cpu());
      const std::vector<int64_t> truth = to_vector<int64_t>(b.labels.cpu());
      for (size_t i = 0; i < pred.size(); ++i) {
        TANDEM_CHECK(truth[i] >= 0 && truth[i] < num_classes, "evaluate: label ", truth[i],
                     " outside [0, ", num_classes, ")");
        ++r.confusion[static_cast<size_t>(truth[i])][static_cast<size_t>(pred[i])];
        correct += pred[i] == truth[i] ? 1 : 0;
      }
      r.samples += static_cast<int64_t>(pred.size());
      if (on_batch) on_batch(++batches, loader.num_batches());
    }
  } catch (...) {
    model.train(was_training);
    throw;
  }
  model.train(was_training);
  if (group != nullptr && group->size() > 1) {
    Tensor sums = from_vector(std::vector<double>{loss_sum, static_cast<double>(correct),
                                                  static_cast<double>(r.samples)});
    group->all_reduce(sums);
    loss_sum = sums[0].item<double>();
    correct = static_cast<int64_t>(sums[1].item<double>());
    r.samples = static_cast<int64_t>(sums[2].item<double>());
    std::vector<int64_t> flat;
    for (const auto& row : r.confusion) flat.insert(flat.end(), row.begin(), row.end());
    Tensor conf = from_vector(flat);
    group->all_reduce(conf);
    const std::vector<int64_t> all = to_vector<int64_t>(conf);
    for (size_t i = 0; i < all.size(); ++i)
      r.confusion[i / static_cast<size_t>(num_classes)][i % static_cast<size_t>(num_classes)] =
          all[i];
  }
  r.loss = r.samples > 0 ? loss_sum / static_cast<double>(r.samples)
                         : std::numeric_limits<double>::quiet_NaN();
  r.accuracy = r.samples > 0 ? static_cast<double>(correct) / static_cast<double>(r.samples)
                             : std::numeric_limits<double>::quiet_NaN();
  return r;
}

// ---- Trainer ---------------------------------------------------------------------------

Trainer::Trainer(std::shared_ptr<nn::Module> model, optim::Optimizer& optimizer,
                 optim::LRScheduler* scheduler, TrainerOptions options)
    : model_(std::move(model)),
      optimizer_(optimizer),
      scheduler_(scheduler),
      options_(std::move(options)) {
  TANDEM_CHECK(model_ != nullptr, "Trainer: no model");
  TANDEM_CHECK(options_.epochs >= 0, "Trainer: epochs must be >= 0, got ", options_.epochs);
  TANDEM_CHECK(options_.num_classes > 0, "Trainer: num_classes must be positive, got ",
               options_.num_classes);
  TANDEM_CHECK(options_.label_smoothing >= 0 && options_.label_smoothing <= 1,
               "Trainer: label_smoothing must be in [0, 1], got ", options_.label_smoothing);
  TANDEM_CHECK(options_.patience >= 0, "Trainer: patience must be >= 0, got ", options_.patience);
  TANDEM_CHECK(options_.read_every >= 0, "Trainer: read_every must be >= 0, got ",
               options_.read_every);
  TANDEM_CHECK(options_.clip_grad_norm >= 0, "Trainer: clip_grad_norm must be >= 0, got ",
               options_.clip_grad_norm);
}

std::string Trainer::last_checkpoint_path() const {
  return options_.checkpoint_dir.empty() ? "" : options_.checkpoint_dir + "/last.safetensors";
}
std::string Trainer::best_checkpoint_path() const {
  return options_.checkpoint_dir.empty() ? "" : options_.checkpoint_dir + "/best.safetensors";
}

namespace {

// After an epoch whose losses were finite, the last step may still have sent
// weights to NaN or infinity (a huge learning rate): such a model is never
// saved. One sum per parameter per epoch.
void check_finite_parameters(const nn::Module& model, int64_t epoch, const std::string& last) {
  NoGradGuard no_grad;
  for (const auto& [name, p] : model.named_parameters()) {
    if (std::isfinite(sum(p.detach()).item<double>())) continue;
    std::ostringstream msg;
    msg << "train: the weights became non-finite (NaN or infinity in '" << name << "') in epoch "
        << epoch + 1 << "; training stopped";
    if (!last.empty()) msg << "; the last good checkpoint is " << last;
    msg << ". Try a smaller learning rate or gradient clipping.";
    throw NonFiniteLoss(msg.str(), __FILE__, __LINE__);
  }
}

}  // namespace

namespace {

// The per-step figures (loss, correct count) of the steps since the last
// read, kept on the loss's device: each step writes one row of `rows`
// ([read_every, 2] float64) without waiting for the device, and read() copies
// the rows to the host at once, one synchronisation per read_every steps.
// float32 -> float64 and counts up to 2^53 are exact, so the figures are the
// ones a per-step item() gave.
class StepFigures {
 public:
  explicit StepFigures(int64_t capacity) : capacity_(capacity) {}

  // Records a step's loss (0-d) and correct count (0-d) over `n` samples.
  void record(const Tensor& loss, const Tensor& correct, int64_t n) {
    if (!rows_.defined() || rows_.device() != loss.device()) {
      rows_ = zeros({capacity_, 2}, TensorOptions(kFloat64).device(loss.device()));
    }
    Tensor row = rows_.select(0, static_cast<int64_t>(sizes_.size()));
    row.select(0, 0).copy_(loss);
    row.select(0, 1).copy_(correct);
    sizes_.push_back(n);
  }
  bool full() const { return static_cast<int64_t>(sizes_.size()) == capacity_; }
  bool empty() const { return sizes_.empty(); }

  // The pending steps' (loss, correct, n), read back in one copy.
  struct Step {
    double loss;
    int64_t correct;
    int64_t n;
  };
  std::vector<Step> read() {
    std::vector<Step> out;
    if (sizes_.empty()) return out;
    const int64_t k = static_cast<int64_t>(sizes_.size());
    const std::vector<double> v = to_vector<double>(rows_.narrow(0, 0, k).cpu());
    for (int64_t i = 0; i < k; ++i) {
      out.push_back({v[static_cast<size_t>(2 * i)],
                     static_cast<int64_t>(v[static_cast<size_t>(2 * i + 1)]),
                     sizes_[static_cast<size_t>(i)]});
    }
    sizes_.clear();
    return out;
  }

 private:
  int64_t capacity_;
  Tensor rows_;
  std::vector<int64_t> sizes_;
};

// Steps between reads of the figures: on the CPU a read costs nothing, so
// every step (a NaN loss stops training at once); on CUDA every 50 steps.
int64_t read_interval(const TrainerOptions& o, const Device& device) {
  if (o.read_every > 0) return o.read_every;
  return device.is_cuda() ? 50 : 1;
}

}  // namespace

EpochStats Trainer::train_epoch(data::DataLoader& train) {
  EpochStats s;
  s.epoch = epoch_;
  s.lr = first_lr(optimizer_);
  model_->train();
  const auto t0 = Clock::now();
  double loss_sum = 0, last_loss = std::numeric_limits<double>::quiet_NaN();
  int64_t correct = 0, seen = 0, step = 0, steps_read = 0;
  const int64_t steps = train.num_batches();
  double last_finite = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> step_losses;
  std::unique_ptr<StepFigures> figures;
  // Adds the figures of the steps since the last read; a non-finite loss
  // throws, naming its step.
  auto read_figures = [&] {
    for (const StepFigures::Step& f : figures->read()) {
      const double l = f.loss;
      if (!std::isfinite(l)) throw_non_finite(l, steps_read, steps, last_finite);
      last_finite = last_loss = l;
      loss_sum += l * static_cast<double>(f.n);
      correct += f.correct;
      seen += f.n;
      step_losses.push_back(l);
      ++steps_read;
    }
  };
  if (options_.on_epoch_start) options_.on_epoch_start(epoch_);
  train.start_epoch(epoch_);
  data::Batch b;
  while (train.next(&b)) {
    optimizer_.zero_grad();
    Tensor logits = (*model_)(b.images);
    Tensor loss = cross_entropy(logits, b.labels, Reduction::Mean, options_.label_smoothing);
    loss.backward();
    if (ddp_) ddp_->finish_gradient_sync();
    if (options_.clip_grad_norm > 0) {
      nn::utils::clip_grad_norm_tensor_(model_->parameters(), options_.clip_grad_norm);
    }
    optimizer_.step();
    if (scheduler_ != nullptr && options_.scheduler_step == SchedulerStep::PerBatch) {
      scheduler_->step();
    }
    if (options_.lookahead != nullptr) {
      options_.lookahead->after_step(epoch_ * steps + step + 1, epoch_, options_.epochs * steps);
    }
    {
      NoGradGuard no_grad;
      if (!figures) figures = std::make_unique<StepFigures>(read_interval(options_, loss.device()));
      figures->record(loss.detach(), sum(eq(argmax(logits.detach(), 1), b.labels)),
                      b.labels.numel());
    }
    if (figures->full() || step + 1 >= steps) read_figures();
    if (options_.on_step) {
      StepInfo info;
      info.epoch = epoch_;
      info.step = step;
      info.steps = steps;
      info.steps_read = steps_read;
      info.loss = last_loss;
      info.running_loss = seen > 0 ? loss_sum / static_cast<double>(seen) : last_loss;
      info.running_accuracy = seen > 0 ? static_cast<double>(correct) / static_cast<double>(seen)
                                       : std::numeric_limits<double>::quiet_NaN();
      info.images_per_second = static_cast<double>(seen) / std::max(seconds_since(t0), 1e-9);
      options_.on_step(info);
    }
    ++step;
  }
  if (figures) read_figures();
  if (options_.lookahead != nullptr) options_.lookahead->end_epoch();
  if (ddp_) {  // the epoch's figures over all ranks
    Tensor sums = from_vector(
        std::vector<double>{loss_sum, static_cast<double>(correct), static_cast<double>(seen)});
    options_.group->all_reduce(sums);
    loss_sum = sums[0].item<double>();
    correct = static_cast<int64_t>(sums[1].item<double>());
    seen = static_cast<int64_t>(sums[2].item<double>());
  }
  TANDEM_CHECK(seen > 0, "train: the training loader gave no batch in epoch ", epoch_ + 1,
               " (an empty data set, or drop_last with fewer samples than a batch)");
  const double train_seconds = seconds_since(t0);
  history_.step_loss.insert(history_.step_loss.end(), step_losses.begin(), step_losses.end());
  s.train_loss = loss_sum / static_cast<double>(seen);
  s.train_accuracy = static_cast<double>(correct) / static_cast<double>(seen);
  s.images_per_second = static_cast<double>(seen) / std::max(train_seconds, 1e-9);
  s.seconds = train_seconds;
  return s;
}

void Trainer::throw_non_finite(double loss, int64_t step, int64_t steps, double last_finite) const {
  std::ostringstream msg;
  msg << "train: the loss became " << loss << " at epoch " << epoch_ + 1 << ", step " << step + 1
      << " of " << steps << " (last finite loss: ";
  if (std::isfinite(last_finite)) {
    msg << last_finite;
  } else if (!history_.step_loss.empty()) {
    msg << history_.step_loss.back() << ", in the previous epoch";
  } else {
    msg << "none";
  }
  msg << "); training stopped";
  if (!options_.checkpoint_dir.empty()) {
    msg << "; the last good checkpoint is " << last_checkpoint_path()
        << (epoch_ > 0 ? "" : " (none was written yet)");
  }
  msg << ". Try a smaller learning rate or gradient clipping.";
  throw NonFiniteLoss(msg.str(), __FILE__, __LINE__);
}

const History& Trainer::fit(data::DataLoader& train, data::DataLoader* val) {
  const int64_t seed = static_cast<int64_t>(train.options().seed);
  if (resumed_seed_ >= 0) {
    TANDEM_CHECK(resumed_seed_ == seed && resumed_batch_size_ == train.options().batch_size,
                 "Trainer::fit: the resumed checkpoint was trained with loader seed ",
                 resumed_seed_, " and batch size ", resumed_batch_size_, "; this loader has seed ",
                 seed, " and batch size ", train.options().batch_size,
                 " (the run would not continue exactly)");
  }
  if (writes_checkpoints()) make_dir(options_.checkpoint_dir);
  if (options_.group && options_.group->size() > 1 && !ddp_) {
    ddp_ = std::make_unique<dist::DataParallel>(model_, options_.group, options_.data_parallel);
  }
  if (options_.lookahead != nullptr && epoch_ > 0) {
    options_.lookahead->resume(epoch_ * train.num_batches(), train.num_batches());
  }
  while (epoch_ < options_.epochs) {
    const auto t0 = Clock::now();
    const History before = history_;
    EpochStats s;
    try {
      s = train_epoch(train);
      check_finite_parameters(*model_, epoch_, last_checkpoint_path());
      s.val_loss = s.val_accuracy = std::numeric_limits<double>::quiet_NaN();
      if (val != nullptr) {
        const EvalResult v = evaluate(*model_, *val, options_.num_classes,
                                      test_time_augment(options_.tta_flip, options_.tta_translate),
                                      0, options_.on_val_step, options_.group.get());
        s.val_loss = v.loss;
        s.val_accuracy = v.accuracy;
        if (!std::isfinite(v.loss)) {
          std::ostringstream msg;
          msg << "train: the validation loss became non-finite (" << v.loss << ") in epoch "
              << epoch_ + 1 << ": the weights overflow; training stopped";
          if (!options_.checkpoint_dir.empty()) {
            msg << "; the last good checkpoint is " << last_checkpoint_path();
          }
          msg << ". Try a smaller learning rate or gradient clipping.";
          throw NonFiniteLoss(msg.str(), __FILE__, __LINE__);
        }
      }
    } catch (...) {
      history_ = before;  // the failed epoch leaves no trace
      throw;
    }
    s.seconds = seconds_since(t0);
    if (scheduler_ != nullptr && options_.scheduler_step == SchedulerStep::PerEpoch) {
      scheduler_->step();
    }
    history_.epochs.push_back(s);
    ++epoch_;
    const bool improved = std::isfinite(s.val_accuracy) && std::isfinite(s.val_loss) &&
                          s.val_accuracy > history_.best_val_accuracy;
    if (improved) {
      history_.best_val_accuracy = s.val_accuracy;
      history_.best_epoch = s.epoch;
    }
    if (!options_.checkpoint_dir.empty() && writes_checkpoints()) {
      if (improved) {
        save(*model_, best_checkpoint_path(),
             {{"tandem.train.epoch", std::to_string(s.epoch)},
              {"tandem.train.val_accuracy", std::to_string(s.val_accuracy)}});
      }
      save_last(train);
    }
    if (options_.on_epoch) options_.on_epoch(s);
    if (options_.patience > 0 && history_.best_epoch >= 0 &&
        s.epoch - history_.best_epoch >= options_.patience) {
      stopped_early_ = true;
      break;
    }
  }
  return history_;
}

Trainer::~Trainer() = default;

bool Trainer::writes_checkpoints() const { return !options_.group || options_.group->rank() == 0; }

void Trainer::save_last(const data::DataLoader& train) const {
  TANDEM_CHECK(!options_.checkpoint_dir.empty(),
               "Trainer::save_last: TrainerOptions::checkpoint_dir is empty (nowhere to save)");
  if (!writes_checkpoints()) return;
  make_dir(options_.checkpoint_dir);  // as fit() does: save_last may come first
  const Generator& g = default_generator();
  Metadata md{{kEpochKey, std::to_string(epoch_)},
              {kHistoryKey, history_.to_json()},
              {kSeedKey, std::to_string(g.seed())},
              {kOffsetKey, std::to_string(g.offset())},
              {kLoaderSeedKey, std::to_string(train.options().seed)},
              {kBatchSizeKey, std::to_string(train.options().batch_size)}};
  save_checkpoint(last_checkpoint_path(), *model_, &optimizer_, scheduler_, md);
}

void Trainer::resume(const std::string& checkpoint_path) {
  // Read and check the trainer's own entries before load_checkpoint changes
  // the model, optimizer and scheduler (it checks its part first too).
  const SafetensorsFile file = load_safetensors(checkpoint_path);
  const Metadata& md = file.metadata;
  const uint64_t epochs = parse_u64(md, kEpochKey, checkpoint_path);
  const uint64_t seed = parse_u64(md, kSeedKey, checkpoint_path);
  const uint64_t offset = parse_u64(md, kOffsetKey, checkpoint_path);
  const uint64_t loader_seed = parse_u64(md, kLoaderSeedKey, checkpoint_path);
  const uint64_t batch_size = parse_u64(md, kBatchSizeKey, checkpoint_path);
  auto it = md.find(kHistoryKey);
  TANDEM_CHECK(it != md.end(), "resume: ", checkpoint_path, " has no training history");
  History h = History::from_json(it->second);
  TANDEM_CHECK(static_cast<uint64_t>(h.epochs.size()) == epochs, "resume: ", checkpoint_path,
               " says ", epochs, " epochs were done but its history has ", h.epochs.size());
  load_checkpoint(checkpoint_path, *model_, &optimizer_, scheduler_);
  Generator& g = default_generator();
  g.manual_seed(seed);
  g.set_offset(offset);
  history_ = std::move(h);
  epoch_ = static_cast<int64_t>(epochs);
  resumed_seed_ = static_cast<int64_t>(loader_seed);
  resumed_batch_size_ = static_cast<int64_t>(batch_size);
}

}  // namespace train
}  // namespace tandem
