// tandem::train: the training loop of an image classifier (the course
// "solver"): epochs over a DataLoader, cross-entropy with optional label
// smoothing, an optimizer and a learning-rate schedule, evaluation on a
// validation loader every epoch, a history (loss per step, loss and accuracy
// per epoch), the best-by-validation checkpoint, and exact resumption.
//
//   train::Trainer trainer(net.ptr(), sgd, &schedule, options);
//   trainer.fit(train_loader, &val_loader);          // throws NonFiniteLoss on NaN/inf
//   train::EvalResult test = train::evaluate(*net, test_loader, 10);
//   std::cout << test.accuracy << " " << test.per_class_accuracy()[3];
//
// Checkpoints (options.checkpoint_dir): last.safetensors after every epoch
// (model, optimizer, scheduler, history, epoch, the default generator's state
// and the loader's seed and batch size) and best.safetensors (model only)
// whenever the validation accuracy improves. Both are written atomically, and
// an epoch that fails (a non-finite loss, an exception) writes neither, so the
// last good checkpoint survives. Trainer::resume(path) restores everything;
// the data order and augmentation are functions of (seed, epoch, sample), so
// on the CPU an interrupted-then-resumed run ends with the same weights, bit
// for bit, as an uninterrupted one.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tandem/data.h"
#include "tandem/dist.h"
#include "tandem/error.h"
#include "tandem/nn/module.h"
#include "tandem/optim.h"
#include "tandem/optim/lookahead.h"
#include "tandem/optim/lr_scheduler.h"
#include "tandem/tensor.h"

namespace tandem {
namespace train {

// One epoch's figures. val_* are NaN when there is no validation loader.
struct EpochStats {
  int64_t epoch = 0;          // 0-based
  double train_loss = 0;      // mean over the epoch's samples (with label smoothing)
  double train_accuracy = 0;  // of the training forward passes (augmented, train mode)
  double val_loss = 0;
  double val_accuracy = 0;
  double lr = 0;                 // the first group's lr during the epoch
  double seconds = 0;            // training and validation
  double images_per_second = 0;  // training only
};

struct History {
  std::vector<double> step_loss;  // every training step, in order
  std::vector<EpochStats> epochs;
  int64_t best_epoch = -1;  // by validation accuracy; -1: none yet
  double best_val_accuracy = -1;

  std::string to_json() const;
  static History from_json(const std::string& text);
};

// What evaluate() measures.
struct EvalResult {
  double loss = 0;      // mean cross-entropy (no label smoothing)
  double accuracy = 0;  // fraction correct
  int64_t samples = 0;
  // confusion[true][predicted] counts.
  std::vector<std::vector<int64_t>> confusion;
  std::vector<double> per_class_accuracy() const;  // NaN for a class with no samples
};

// Test-time augmentation: the logits averaged over views of each image.
enum class TestTimeAugment : int8_t {
  None,
  Flip,  // (f(x) + f(mirror x)) / 2
  // airbench94's tta_level 2: Flip's logits of x (weight 1/2) and of x
  // translated by one pixel up-left and down-right (weight 1/4 each; reflect
  // padding), i.e. 6 views weighted 1/4, 1/4, 1/8, 1/8, 1/8, 1/8.
  FlipTranslate,
};
TestTimeAugment test_time_augment(bool flip, bool translate);  // translate implies flip
// The logits of `model` for `images` ([N, C, H, W], H and W >= 2) under
// `tta`, in the model's current mode (evaluate() runs it in eval mode
// without gradients).
Tensor tta_logits(nn::Module& model, const Tensor& images, TestTimeAugment tta);
// The images translated by (dy, dx) pixels, |dy| and |dx| below the size,
// with reflect padding: out[y][x] = in[reflect(y - dy)][reflect(x - dx)].
Tensor translate_reflect(const Tensor& images, int64_t dy, int64_t dx);

// Evaluates `model` (in eval mode, without gradients; its training flag is
// restored afterwards) over one pass of `loader` (epoch `epoch` of its order),
// with test-time augmentation `tta` (tta_flip: TestTimeAugment::Flip).
// `on_batch(done, total)`, when set, is called after each batch (for progress).
// With `group` (a data-parallel run; each rank's loader an unpadded shard),
// the sums (loss, correct, samples, confusion) are all-reduced over the ranks,
// so every rank returns the figures of the whole set.
EvalResult evaluate(nn::Module& model, data::DataLoader& loader, int64_t num_classes,
                    TestTimeAugment tta, int64_t epoch = 0,
                    const std::function<void(int64_t, int64_t)>& on_batch = {},
                    dist::ProcessGroup* group = nullptr);
EvalResult evaluate(nn::Module& model, data::DataLoader& loader, int64_t num_classes,
                    bool tta_flip = false, int64_t epoch = 0,
                    const std::function<void(int64_t, int64_t)>& on_batch = {},
                    dist::ProcessGroup* group = nullptr);

// Thrown when a training loss is NaN or infinite: the message names the
// epoch, the step and the last finite loss.
class NonFiniteLoss : public Error {
 public:
  using Error::Error;
};

enum class SchedulerStep : int8_t {
  PerEpoch,  // scheduler->step() after each epoch (StepLR, ExponentialLR ...)
  PerBatch,  // after each optimizer step (warm-up + decay, OneCycleLR)
};

// Progress of one training step (for progress bars). The figures are those
// of the steps read back so far (TrainerOptions::read_every): they may lag
// `step` by up to read_every - 1 steps; NaN before the epoch's first read.
struct StepInfo {
  int64_t epoch = 0;
  int64_t step = 0;              // within the epoch, 0-based
  int64_t steps = 0;             // per epoch
  int64_t steps_read = 0;        // the epoch's steps whose figures are below
  double loss = 0;               // the last read step's batch loss
  double running_loss = 0;       // mean over the read steps' samples
  double running_accuracy = 0;   // of the read steps
  double images_per_second = 0;  // of the read steps, over the epoch's time so far
};

struct TrainerOptions {
  int64_t epochs = 10;
  int64_t num_classes = 10;
  double label_smoothing = 0.0;
  SchedulerStep scheduler_step = SchedulerStep::PerEpoch;
  double clip_grad_norm = 0.0;  // > 0: clip the gradients' global norm
  // Steps between reads of the step figures (loss, correct count) from the
  // device: the steps in between never wait for it. A non-finite loss is
  // caught at the read after it (its step named; the epoch fails and writes
  // no checkpoint). 0: every step on the CPU (a read is free there), every 50
  // steps on CUDA. Each epoch's last step is always read.
  int64_t read_every = 0;
  bool tta_flip = false;       // evaluation with the mirrored image too
  bool tta_translate = false;  // with tta_flip: and the 1-pixel translations (FlipTranslate)
  // Lookahead (optim/lookahead.h) driven by its schedule: after_step after
  // every optimizer step, end_epoch after every epoch, resume on a resumed
  // run. Not owned; null: none.
  optim::Lookahead* lookahead = nullptr;
  // Called at the start of every epoch (0-based), before its first step: a
  // recipe's per-epoch changes (freezing the whitening bias).
  std::function<void(int64_t)> on_epoch_start;
  std::string checkpoint_dir;  // "": no checkpoints
  // > 0: early stopping; fit() ends once this many epochs in a row have not
  // improved the best validation accuracy (stopped_early() says so).
  int64_t patience = 0;
  std::function<void(const StepInfo&)> on_step;
  // Progress of the validation pass after each epoch: (batches done, total).
  std::function<void(int64_t, int64_t)> on_val_step;
  std::function<void(const EpochStats&)> on_epoch;
  // Data-parallel training (null or size 1: one process). fit() wraps the
  // model in dist::DataParallel (parameters and buffers broadcast from rank 0,
  // gradients averaged over the ranks before each optimizer step); each
  // rank's train loader must be its shard (LoaderOptions::num_replicas/rank),
  // the validation loader an unpadded shard. The epoch figures and the
  // validation results are reduced over the ranks; only rank 0 writes
  // checkpoints. resume() on every rank reads the same checkpoint.
  std::shared_ptr<dist::ProcessGroup> group;
  dist::DataParallelOptions data_parallel;
};

class Trainer {
 public:
  // `scheduler` may be null. The model's parameters must be the optimizer's.
  Trainer(std::shared_ptr<nn::Module> model, optim::Optimizer& optimizer,
          optim::LRScheduler* scheduler, TrainerOptions options);
  ~Trainer();

  // Trains from the current epoch (0, or the one after a resumed checkpoint)
  // up to options.epochs, validating on `val` (may be null) after each epoch.
  const History& fit(data::DataLoader& train, data::DataLoader* val = nullptr);

  // Restores model, optimizer, scheduler, history, epoch and the default
  // generator from a last.safetensors written by fit(). Checked before
  // anything changes; the next fit() must use a loader with the same seed and
  // batch size (it throws otherwise).
  void resume(const std::string& checkpoint_path);

  int64_t epochs_done() const { return epoch_; }
  bool stopped_early() const { return stopped_early_; }
  const History& history() const { return history_; }
  const TrainerOptions& options() const { return options_; }
  std::string last_checkpoint_path() const;
  std::string best_checkpoint_path() const;
  // Writes last.safetensors now (fit() does after every epoch): before the
  // first epoch, it gives an interrupted first epoch a point to resume from.
  // Creates checkpoint_dir as fit() does; throws when it is empty.
  void save_last(const data::DataLoader& train) const;

 private:
  EpochStats train_epoch(data::DataLoader& train);
  [[noreturn]] void throw_non_finite(double loss, int64_t step, int64_t steps,
                                     double last_finite) const;

  std::shared_ptr<nn::Module> model_;
  optim::Optimizer& optimizer_;
  optim::LRScheduler* scheduler_;
  TrainerOptions options_;
  History history_;
  int64_t epoch_ = 0;
  bool stopped_early_ = false;
  bool writes_checkpoints() const;
  std::unique_ptr<dist::DataParallel> ddp_;
  int64_t resumed_seed_ = -1;  // the loader seed and batch size a resume expects
  int64_t resumed_batch_size_ = -1;
};

}  // namespace train
}  // namespace tandem
