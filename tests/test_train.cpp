// The trainer (include/tandem/train.h) end to end on a small synthetic
// CIFAR-shaped data set: learning, evaluation and the confusion matrix, the
// non-finite-loss stop that keeps the last good checkpoint, and bit-exact
// resumption after an interruption.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <random>

#include "test_util.h"

namespace {

using namespace tandem;

// Ten classes, each a random base image; a sample is its class's base plus
// uniform noise, so a linear model can learn it but not trivially.
data::ImageDataset synthetic_cifar(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::mt19937_64 base_rng(12345);  // the same classes for every split
  const int64_t pixels = 3 * 32 * 32;
  std::vector<std::vector<int>> base(10, std::vector<int>(static_cast<size_t>(pixels)));
  for (auto& b : base) {
    for (int& v : b) v = static_cast<int>(base_rng() % 160);
  }
  std::vector<uint8_t> images(static_cast<size_t>(n * pixels));
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = static_cast<int64_t>(rng() % 10);
    labels[static_cast<size_t>(i)] = c;
    for (int64_t p = 0; p < pixels; ++p) {
      images[static_cast<size_t>(i * pixels + p)] =
          static_cast<uint8_t>(base[static_cast<size_t>(c)][static_cast<size_t>(p)] + rng() % 96);
    }
  }
  data::ImageDataset ds;
  ds.images = from_vector(images, {n, 3, 32, 32});
  ds.labels = from_vector(labels, {n});
  ds.classes = data::cifar10_classes();
  return ds;
}

data::LoaderOptions loader_options(uint64_t seed, bool shuffle) {
  data::LoaderOptions o;
  o.batch_size = 32;
  o.shuffle = shuffle;
  o.seed = seed;
  o.normalize = data::cifar10_normalize();
  if (shuffle) o.augment.horizontal_flip = true;
  o.workers = 2;
  return o;
}

nn::Sequential small_net() {
  return nn::Sequential(nn::Flatten(), nn::Linear(3 * 32 * 32, 32), nn::ReLU(), nn::Dropout(0.2),
                        nn::Linear(32, 10));
}

std::string temp_dir(const std::string& tag) {
  char tmpl[] = "/tmp/tandem_train_XXXXXX";
  const char* d = ::mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return std::string(d) + "/" + tag;
}

std::vector<std::vector<float>> snapshot(const nn::Module& m) {
  std::vector<std::vector<float>> out;
  for (const Tensor& p : m.parameters()) out.push_back(to_vector<float>(p.cpu()));
  return out;
}

TEST(Trainer, LossFallsAndAccuracyBeatsChance) {
  manual_seed(1);
  data::DataLoader train(synthetic_cifar(640, 1), loader_options(7, true));
  data::DataLoader val(synthetic_cifar(200, 2), loader_options(0, false));
  nn::Sequential net = small_net();
  optim::SGD sgd(net->parameters(), optim::SGDOptions(0.01).momentum(0.9));
  train::TrainerOptions opt;
  opt.epochs = 3;
  int64_t steps_seen = 0, epochs_seen = 0;
  opt.on_step = [&](const train::StepInfo& s) {
    EXPECT_EQ(s.steps, 20);
    EXPECT_TRUE(std::isfinite(s.loss));
    ++steps_seen;
  };
  opt.on_epoch = [&](const train::EpochStats&) { ++epochs_seen; };
  train::Trainer trainer(net.ptr(), sgd, nullptr, opt);
  const train::History& h = trainer.fit(train, &val);
  EXPECT_EQ(steps_seen, 60);
  EXPECT_EQ(epochs_seen, 3);
  ASSERT_EQ(h.epochs.size(), 3u);
  ASSERT_EQ(h.step_loss.size(), 60u);
  EXPECT_LT(h.epochs[2].train_loss, h.epochs[0].train_loss);
  EXPECT_GT(h.epochs[2].val_accuracy, 0.5) << "chance is 0.1";
  EXPECT_GE(h.best_epoch, 0);
  EXPECT_DOUBLE_EQ(
      h.best_val_accuracy,
      std::max({h.epochs[0].val_accuracy, h.epochs[1].val_accuracy, h.epochs[2].val_accuracy}));
  EXPECT_TRUE(net->is_training()) << "evaluation restores the training flag";

  // The history survives its JSON form exactly.
  const train::History back = train::History::from_json(h.to_json());
  EXPECT_EQ(back.step_loss, h.step_loss);
  EXPECT_EQ(back.epochs[1].val_accuracy, h.epochs[1].val_accuracy);
  EXPECT_EQ(back.best_epoch, h.best_epoch);
}

// A model that always predicts `cls`, whatever the input.
struct ConstantImpl : nn::Module {
  explicit ConstantImpl(int64_t c) : cls(c) {}
  Tensor forward(const Tensor& x) override {
    std::vector<float> row(10, 0.0f);
    row[static_cast<size_t>(cls)] = 5.0f;
    std::vector<float> all;
    for (int64_t i = 0; i < x.size(0); ++i) all.insert(all.end(), row.begin(), row.end());
    return from_vector(all, {x.size(0), 10});
  }
  int64_t cls;
};

TEST(Evaluate, ConfusionMatrixAndPerClassAccuracy) {
  data::ImageDataset ds = synthetic_cifar(157, 3);
  const std::vector<int64_t> labels = to_vector<int64_t>(ds.labels);
  data::DataLoader loader(ds, loader_options(0, false));
  ConstantImpl model(3);
  const train::EvalResult r = train::evaluate(model, loader, 10);
  EXPECT_EQ(r.samples, 157);
  int64_t threes = 0;
  std::vector<int64_t> per_class(10, 0);
  for (int64_t l : labels) {
    threes += l == 3;
    ++per_class[static_cast<size_t>(l)];
  }
  EXPECT_DOUBLE_EQ(r.accuracy, static_cast<double>(threes) / 157.0);
  for (size_t t = 0; t < 10; ++t) {
    for (size_t p = 0; p < 10; ++p) {
      EXPECT_EQ(r.confusion[t][p], p == 3 ? per_class[t] : 0) << t << "," << p;
    }
  }
  const std::vector<double> acc = r.per_class_accuracy();
  for (size_t c = 0; c < 10; ++c) {
    if (per_class[c] == 0) {
      EXPECT_TRUE(std::isnan(acc[c]));
    } else {
      EXPECT_DOUBLE_EQ(acc[c], c == 3 ? 1.0 : 0.0);
    }
  }
  // Cross-entropy of logits (5 for class 3, 0 elsewhere).
  const double lse = std::log(std::exp(5.0) + 9.0);
  const double want =
      (static_cast<double>(threes) * (lse - 5.0) + static_cast<double>(157 - threes) * lse) / 157.0;
  EXPECT_NEAR(r.loss, want, 1e-5);
  EXPECT_THROW(train::evaluate(model, loader, 0), Error);
}

TEST(Evaluate, FlipTestTimeAugmentationAveragesBothViews) {
  manual_seed(4);
  data::ImageDataset ds = synthetic_cifar(40, 4);
  data::DataLoader loader(ds, loader_options(0, false));
  nn::Sequential net(nn::Flatten(), nn::Linear(3 * 32 * 32, 10));
  const train::EvalResult plain = train::evaluate(*net, loader, 10, false);
  const train::EvalResult tta = train::evaluate(*net, loader, 10, true);
  // The mean of the logits of x and mirror(x), computed here by hand.
  NoGradGuard g;
  data::Batch b = loader.batch(0, 0);
  Tensor idx = arange(31.0, -1.0, -1.0);
  Tensor both = (net(b.images) + net(index_select(b.images, 3, idx))) * 0.5;
  double first_batch_loss = cross_entropy(both, b.labels, Reduction::Sum).item<double>();
  data::Batch b2 = loader.batch(0, 1);
  Tensor both2 = (net(b2.images) + net(index_select(b2.images, 3, idx))) * 0.5;
  first_batch_loss += cross_entropy(both2, b2.labels, Reduction::Sum).item<double>();
  EXPECT_NEAR(tta.loss, first_batch_loss / 40.0, 1e-5);
  EXPECT_NE(tta.loss, plain.loss);
}

TEST(Trainer, NonFiniteLossStopsAndKeepsTheLastGoodCheckpoint) {
  manual_seed(5);
  const std::string dir = temp_dir("run");
  data::DataLoader train(synthetic_cifar(160, 5), loader_options(3, true));
  nn::Sequential net = small_net();
  optim::SGD sgd(net->parameters(), optim::SGDOptions(0.01).momentum(0.9));
  train::TrainerOptions opt;
  opt.epochs = 1;
  opt.checkpoint_dir = dir;
  train::Trainer first(net.ptr(), sgd, nullptr, opt);
  first.fit(train);
  const auto good = snapshot(*net);
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/last.safetensors").c_str(), &st), 0);

  // Epoch 2 with an absurd learning rate blows the loss up.
  opt.epochs = 2;
  train::Trainer second(net.ptr(), sgd, nullptr, opt);
  second.resume(dir + "/last.safetensors");
  sgd.param_groups()[0].options().set_lr(1e30);
  try {
    second.fit(train);
    FAIL() << "no NonFiniteLoss";
  } catch (const train::NonFiniteLoss& e) {
    const std::string m = e.message();
    EXPECT_NE(m.find("at epoch 2, step"), std::string::npos) << m;
    EXPECT_NE(m.find("last finite loss: "), std::string::npos) << m;
    EXPECT_NE(m.find("last.safetensors"), std::string::npos) << m;
    EXPECT_EQ(m.find("none"), std::string::npos) << m;
  }
  EXPECT_EQ(second.epochs_done(), 1);
  EXPECT_EQ(second.history().epochs.size(), 1u) << "the failed epoch leaves no trace";
  // The checkpoint still holds epoch 1's weights.
  nn::Sequential fresh = small_net();
  load(*fresh, dir + "/last.safetensors");
  EXPECT_EQ(snapshot(*fresh), good);
}

// With read_every > 1 the loss is read only every few steps: a NaN is
// still caught (at the read after it, naming its own step) and the epoch
// writes no checkpoint.
TEST(Trainer, NonFiniteLossIsCaughtAtTheNextRead) {
  manual_seed(5);
  const std::string dir = temp_dir("run");
  data::DataLoader train(synthetic_cifar(160, 5), loader_options(3, true));
  nn::Sequential net = small_net();
  optim::SGD sgd(net->parameters(), optim::SGDOptions(0.01).momentum(0.9));
  train::TrainerOptions opt;
  opt.epochs = 1;
  opt.read_every = 4;
  opt.checkpoint_dir = dir;
  train::Trainer first(net.ptr(), sgd, nullptr, opt);
  first.fit(train);
  const auto good = snapshot(*net);
  opt.epochs = 2;
  int64_t last_step = -1;
  opt.on_step = [&](const train::StepInfo& s) { last_step = s.step; };
  train::Trainer second(net.ptr(), sgd, nullptr, opt);
  second.resume(dir + "/last.safetensors");
  sgd.param_groups()[0].options().set_lr(1e30);
  try {
    second.fit(train);
    FAIL() << "no NonFiniteLoss";
  } catch (const train::NonFiniteLoss& e) {
    const std::string m = e.message();
    EXPECT_NE(m.find("at epoch 2, step"), std::string::npos) << m;
    EXPECT_NE(m.find("last.safetensors"), std::string::npos) << m;
  }
  EXPECT_EQ(last_step, 2) << "the first read (at step 4) found the NaN";
  EXPECT_EQ(second.history().epochs.size(), 1u);
  nn::Sequential fresh = small_net();
  load(*fresh, dir + "/last.safetensors");
  EXPECT_EQ(snapshot(*fresh), good);
}

// Reading the figures every 7 steps (lagging progress) gives the history
// that reading every step gives, bit for bit; the progress figures trail by
// less than the interval and catch up at each read and at the epoch's end.
TEST(Trainer, ReadingEveryFewStepsGivesTheSameHistory) {
  auto train_with = [](int64_t read_every, std::vector<train::StepInfo>* infos) {
    manual_seed(3);
    data::DataLoader train(synthetic_cifar(300, 8), loader_options(4, true));
    nn::Sequential net = small_net();
    optim::SGD sgd(net->parameters(), optim::SGDOptions(0.02).momentum(0.9));
    train::TrainerOptions opt;
    opt.epochs = 2;
    opt.read_every = read_every;
    opt.clip_grad_norm = 0.5;
    opt.on_step = [infos](const train::StepInfo& s) { infos->push_back(s); };
    train::Trainer t(net.ptr(), sgd, nullptr, opt);
    return std::make_pair(t.fit(train), snapshot(*net));
  };
  std::vector<train::StepInfo> every, lagging;
  const auto a = train_with(1, &every);
  const auto b = train_with(7, &lagging);
  EXPECT_EQ(a.first.step_loss, b.first.step_loss);
  EXPECT_EQ(a.second, b.second);
  ASSERT_EQ(a.first.epochs.size(), 2u);
  for (size_t e = 0; e < 2; ++e) {
    EXPECT_EQ(a.first.epochs[e].train_loss, b.first.epochs[e].train_loss);
    EXPECT_EQ(a.first.epochs[e].train_accuracy, b.first.epochs[e].train_accuracy);
  }
  ASSERT_EQ(every.size(), lagging.size());
  for (size_t i = 0; i < every.size(); ++i) {
    const train::StepInfo& s = lagging[i];
    EXPECT_EQ(every[i].steps_read, every[i].step + 1);
    const bool read = (s.step + 1) % 7 == 0 || s.step + 1 == s.steps;
    EXPECT_EQ(s.steps_read, read ? s.step + 1 : s.step + 1 - (s.step + 1) % 7) << i;
    if (read) {
      EXPECT_EQ(s.running_loss, every[i].running_loss) << i;
      EXPECT_EQ(s.running_accuracy, every[i].running_accuracy) << i;
    }
  }
}

// A steady-state training step on CUDA never blocks the host on the device:
// the loss, the correct count and the clip norm stay on the device between
// reads (cuda::host_sync_count counts every wait of tandem's CUDA code).
TEST(TrainerCuda, SteadyStateStepsNeverWaitOnTheHost) {
  TANDEM_SKIP_WITHOUT_CUDA();
  manual_seed(2);
  data::LoaderOptions lo = loader_options(5, true);
  lo.device = Device(kCUDA);
  lo.mode = data::LoaderMode::DeviceResident;
  data::DataLoader train(synthetic_cifar(32 * 12, 9), lo);
  nn::Sequential net = small_net();
  net->to(Device(kCUDA));
  optim::SGD sgd(net->parameters(), optim::SGDOptions(0.01).momentum(0.9));
  constexpr int64_t kWarmup = 3;
  train::TrainerOptions opt;
  opt.epochs = 1;
  opt.clip_grad_norm = 1.0;
  opt.read_every = 100;  // one read, at the epoch's last step
  uint64_t at_warm = 0, at_last = 0;
  opt.on_step = [&](const train::StepInfo& s) {
    if (s.step + 1 == kWarmup) at_warm = cuda::host_sync_count();
    if (s.step + 2 == s.steps) at_last = cuda::host_sync_count();
  };
  train::Trainer t(net.ptr(), sgd, nullptr, opt);
  const train::History& h = t.fit(train);
  EXPECT_EQ(at_last, at_warm) << "steps " << kWarmup + 1 << " to 11 of 12 waited on the device "
                              << at_last - at_warm << " times";
  ASSERT_EQ(h.step_loss.size(), 12u);
  for (double l : h.step_loss) EXPECT_TRUE(std::isfinite(l));
  EXPECT_GT(cuda::host_sync_count(), at_last) << "the last step reads the figures";
}

// Runs `epochs` epochs from a fresh model, optionally interrupted (an
// exception from on_step) at `stop_epoch`/`stop_step` and resumed with new
// objects from the last checkpoint; returns the final weights and history.
std::pair<std::vector<std::vector<float>>, train::History> run(const std::string& dir,
                                                               bool interrupt) {
  data::DataLoader train(synthetic_cifar(200, 6), loader_options(11, true));
  data::DataLoader val(synthetic_cifar(64, 7), loader_options(0, false));
  auto make = [&](uint64_t init_seed, auto&& body) {
    manual_seed(init_seed);
    nn::Sequential net = small_net();
    optim::SGD sgd(net->parameters(), optim::SGDOptions(0.05).momentum(0.9).nesterov(true));
    optim::StepLR sched(sgd, 1, 0.7);
    train::TrainerOptions opt;
    opt.epochs = 3;
    opt.checkpoint_dir = dir;
    opt.label_smoothing = 0.1;
    return body(net, sgd, sched, opt);
  };
  if (!interrupt) {
    return make(21, [&](nn::Sequential& net, optim::SGD& sgd, optim::StepLR& sched,
                        train::TrainerOptions& opt) {
      train::Trainer t(net.ptr(), sgd, &sched, opt);
      t.fit(train, &val);
      return std::make_pair(snapshot(*net), t.history());
    });
  }
  make(21,
       [&](nn::Sequential& net, optim::SGD& sgd, optim::StepLR& sched, train::TrainerOptions& opt) {
         opt.on_step = [](const train::StepInfo& s) {
           if (s.epoch == 1 && s.step == 3) throw std::runtime_error("power cut");
         };
         train::Trainer t(net.ptr(), sgd, &sched, opt);
         EXPECT_THROW(t.fit(train, &val), std::runtime_error);
         return 0;
       });
  // New objects, another initialisation and generator state: all restored.
  return make(999, [&](nn::Sequential& net, optim::SGD& sgd, optim::StepLR& sched,
                       train::TrainerOptions& opt) {
    train::Trainer t(net.ptr(), sgd, &sched, opt);
    t.resume(dir + "/last.safetensors");
    EXPECT_EQ(t.epochs_done(), 1);
    t.fit(train, &val);
    return std::make_pair(snapshot(*net), t.history());
  });
}

TEST(Trainer, ResumeAfterAnInterruptionIsBitExact) {
  const auto straight = run(temp_dir("a"), false);
  const auto resumed = run(temp_dir("b"), true);
  ASSERT_EQ(straight.first.size(), resumed.first.size());
  for (size_t i = 0; i < straight.first.size(); ++i) {
    EXPECT_EQ(straight.first[i], resumed.first[i]) << "parameter " << i;
  }
  EXPECT_EQ(straight.second.step_loss, resumed.second.step_loss);
  ASSERT_EQ(resumed.second.epochs.size(), 3u);
  for (size_t e = 0; e < 3; ++e) {
    EXPECT_EQ(straight.second.epochs[e].val_accuracy, resumed.second.epochs[e].val_accuracy);
    EXPECT_EQ(straight.second.epochs[e].lr, resumed.second.epochs[e].lr);
  }
}

TEST(Trainer, ResumeErrors) {
  manual_seed(8);
  const std::string dir = temp_dir("err");
  data::DataLoader train(synthetic_cifar(64, 8), loader_options(3, true));
  nn::Sequential net = small_net();
  optim::SGD sgd(net->parameters(), optim::SGDOptions(0.01));
  train::TrainerOptions opt;
  opt.epochs = 1;
  opt.checkpoint_dir = dir;
  train::Trainer t(net.ptr(), sgd, nullptr, opt);
  t.fit(train);

  // A plain model file is not a training checkpoint.
  save(*net, dir + "/model.safetensors");
  train::Trainer u(net.ptr(), sgd, nullptr, opt);
  tt::expect_error([&] { u.resume(dir + "/model.safetensors"); }, "is not a training checkpoint");
  tt::expect_error(
      [&] { u.resume(dir + "/missing.safetensors"); },
      {"load_safetensors: cannot open", "missing.safetensors", "No such file or directory"});

  // Resuming with another data order would not continue the run.
  opt.epochs = 2;
  train::Trainer v(net.ptr(), sgd, nullptr, opt);
  v.resume(dir + "/last.safetensors");
  data::DataLoader other(synthetic_cifar(64, 8), loader_options(4, true));
  tt::expect_error([&] { v.fit(other); }, "loader seed 3 and batch size 32");

  // Bad options.
  train::TrainerOptions bad;
  bad.label_smoothing = 1.5;
  tt::expect_error([&] { train::Trainer w(net.ptr(), sgd, nullptr, bad); },
                   "Trainer: label_smoothing must be in [0, 1], got 1.5");
  train::TrainerOptions none;
  tt::expect_error([&] { train::Trainer w(nullptr, sgd, nullptr, none); }, "no model");
}

TEST(Trainer, ErrorsNameTheProblem) {
  manual_seed(9);
  nn::Sequential net = small_net();
  optim::SGD sgd(net->parameters(), optim::SGDOptions(0.01));
  train::TrainerOptions o;
  o.epochs = -1;
  tt::expect_error([&] { train::Trainer t(net.ptr(), sgd, nullptr, o); },
                   "epochs must be >= 0, got -1");
  o = train::TrainerOptions();
  o.clip_grad_norm = -0.5;
  tt::expect_error([&] { train::Trainer t(net.ptr(), sgd, nullptr, o); },
                   "clip_grad_norm must be >= 0");
  o = train::TrainerOptions();
  o.num_classes = 0;
  tt::expect_error([&] { train::Trainer t(net.ptr(), sgd, nullptr, o); },
                   "num_classes must be positive");

  // A loader that yields no batch: 20 samples, batch 32, drop_last.
  data::LoaderOptions lo = loader_options(1, true);
  lo.drop_last = true;
  data::DataLoader empty(synthetic_cifar(20, 9), lo);
  train::Trainer t(net.ptr(), sgd, nullptr, train::TrainerOptions());
  tt::expect_error([&] { t.fit(empty); }, "the training loader gave no batch in epoch 1");

  // A checkpoint directory that cannot be made (a file is in the way).
  const std::string file = temp_dir("f");
  std::FILE* f = std::fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  train::TrainerOptions bad_dir;
  bad_dir.checkpoint_dir = file + "/run";
  train::Trainer u(net.ptr(), sgd, nullptr, bad_dir);
  data::DataLoader train(synthetic_cifar(40, 9), loader_options(1, true));
  tt::expect_error([&] { u.fit(train); }, "cannot create the checkpoint directory");

  // A model whose output is not [N, num_classes].
  nn::Sequential wrong(nn::Flatten(), nn::Linear(3 * 32 * 32, 7));
  data::DataLoader val(synthetic_cifar(40, 10), loader_options(0, false));
  tt::expect_error([&] { train::evaluate(*wrong, val, 10); }, "expected [N, 10]");
  EXPECT_TRUE(wrong->is_training()) << "the training flag survives the error";

  tt::expect_error([] { train::History::from_json("{\"epochs\": 3}"); },
                   "not valid JSON of the expected form");
}

TEST(Trainer, EpochFiguresAreTheMeansOverTheEpochsSamples) {
  // With lr 0 the model does not change during the epoch and has no dropout
  // or batch norm, so the epoch's training figures (train_epoch, over
  // batches of 32, 32 and 6) must be evaluate()'s over the same unshuffled,
  // unaugmented data: the loss a mean over samples, not over batches.
  manual_seed(11);
  data::DataLoader loader(synthetic_cifar(70, 11), loader_options(0, false));
  nn::Sequential net(nn::Flatten(), nn::Linear(3 * 32 * 32, 10));
  const auto before = snapshot(*net);
  optim::SGD sgd(net->parameters(), optim::SGDOptions(0.0));
  train::TrainerOptions opt;
  opt.epochs = 1;
  std::vector<int64_t> steps_read;
  opt.on_step = [&](const train::StepInfo& s) { steps_read.push_back(s.steps_read); };
  train::Trainer trainer(net.ptr(), sgd, nullptr, opt);
  const train::History& h = trainer.fit(loader);
  EXPECT_EQ(snapshot(*net), before) << "lr 0 leaves the weights as they were";
  EXPECT_EQ(steps_read, (std::vector<int64_t>{1, 2, 3})) << "every step read on the CPU";
  ASSERT_EQ(h.epochs.size(), 1u);
  ASSERT_EQ(h.step_loss.size(), 3u);
  const train::EvalResult ev = train::evaluate(*net, loader, 10);
  ASSERT_EQ(ev.samples, 70);
  const train::EpochStats& e = h.epochs[0];
  EXPECT_NEAR(e.train_loss, ev.loss, 1e-5 * ev.loss);
  EXPECT_DOUBLE_EQ(e.train_accuracy, ev.accuracy);
  const double weighted = (32 * h.step_loss[0] + 32 * h.step_loss[1] + 6 * h.step_loss[2]) / 70;
  EXPECT_NEAR(e.train_loss, weighted, 1e-12 * weighted);
  EXPECT_TRUE(std::isnan(e.val_loss) && std::isnan(e.val_accuracy)) << "no validation loader";
  EXPECT_EQ(e.epoch, 0);
  EXPECT_EQ(e.lr, 0.0);
  EXPECT_GT(e.images_per_second, 0.0);
}

TEST(Trainer, SaveLastBeforeTheFirstEpochResumesToTheSameRun) {
  // save_last() before fit() gives an interrupted first epoch a point to
  // resume from: a new trainer resumed from it (other initial weights, other
  // generator state) holds the saved weights and trains to the same
  // weights and losses, bit for bit.
  data::DataLoader train(synthetic_cifar(96, 12), loader_options(5, true));
  const std::string dir = temp_dir("first");  // not made yet: save_last makes it
  const std::string start = dir + "/start.safetensors";
  manual_seed(12);
  nn::Sequential a = small_net();
  optim::SGD sgd_a(a->parameters(), optim::SGDOptions(0.05).momentum(0.9));
  train::TrainerOptions opt;
  opt.epochs = 1;
  opt.checkpoint_dir = dir;
  train::Trainer ta(a.ptr(), sgd_a, nullptr, opt);
  ta.save_last(train);
  ASSERT_EQ(std::rename(ta.last_checkpoint_path().c_str(), start.c_str()), 0)
      << "save_last wrote " << ta.last_checkpoint_path();
  const auto initial = snapshot(*a);
  ta.fit(train);
  const auto trained = snapshot(*a);
  ASSERT_NE(trained, initial);

  manual_seed(999);
  nn::Sequential b = small_net();
  ASSERT_NE(snapshot(*b), initial);
  optim::SGD sgd_b(b->parameters(), optim::SGDOptions(0.05).momentum(0.9));
  opt.checkpoint_dir = temp_dir("second");
  train::Trainer tb(b.ptr(), sgd_b, nullptr, opt);
  tb.resume(start);
  EXPECT_EQ(tb.epochs_done(), 0);
  EXPECT_TRUE(tb.history().step_loss.empty());
  EXPECT_EQ(snapshot(*b), initial);
  tb.fit(train);
  EXPECT_EQ(snapshot(*b), trained);
  EXPECT_EQ(tb.history().step_loss, ta.history().step_loss);

  // Without a checkpoint directory there is nowhere to save.
  train::Trainer none(b.ptr(), sgd_b, nullptr, train::TrainerOptions());
  tt::expect_error([&] { none.save_last(train); },
                   "Trainer::save_last: TrainerOptions::checkpoint_dir is empty (nowhere to save)");
}

}  // namespace
