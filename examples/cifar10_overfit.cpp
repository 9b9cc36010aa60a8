// Example 6: the classic sanity check before a long training run: a
// multi-layer fully-connected net must be able to overfit a tiny training set.
// 50 CIFAR-10 training images, a 3072-100-100-10 ReLU net, SGD with momentum,
// batch 25, 20 epochs (40 steps): the accuracy on those 50 images, measured in
// eval mode after every epoch, must be 100% at the end. The accuracy on held-out
// images stays low (the net memorised, it did not learn CIFAR-10): printed as
// the contrast. A net or loop with a bug (wrong gradients, a detached layer,
// lr far off) fails here in seconds instead of after hours.
//
// Exits 1 when it is not 100% after the last epoch. --quick does the same on
// 50 synthetic CIFAR-shaped images (and a small held-out synthetic set).
//   cifar10_overfit [--data PATH] [--epochs N] [--lr X] [--device cpu|cuda|auto] [--quick]
#include <cstdio>
#include <string>

#include "cifar_util.h"

using namespace tandem;

int main(int argc, char** argv) try {
  const example::Flags flags(
      argc, argv,
      "usage: cifar10_overfit [--data PATH] [--epochs N] [--lr X] [--device cpu|cuda|auto]\n"
      "                       [--quick]\n"
      "  --data PATH  CIFAR-10 (default: $TANDEM_CIFAR10, then the cache)\n"
      "  --epochs N   epochs over the 50 images (default 20)\n"
      "  --lr X       SGD learning rate, momentum 0.9 (default 0.01)\n"
      "  --quick      synthetic data (the ctest smoke test)\n",
      {"data", "epochs", "lr"}, {"quick"});
  const bool quick = flags.has("quick");
  const int epochs = flags.get_int("epochs", 20);
  const double lr = flags.get_double("lr", 0.01);
  const Device dev = flags.device();
  constexpr int64_t kImages = 50;
  manual_seed(0);

  const example::CifarSplits data = example::cifar_splits(flags, quick, 1000, kImages, 200);
  const data::ImageDataset small = example::first_n(data.train, kImages);
  std::printf("%lld training images of %s\n", static_cast<long long>(small.size()),
              data.description.c_str());
  const data::Normalize norm = data::cifar10_normalize();
  data::DataLoader train_loader(small, example::loader_options(25, true, norm, dev, 1));
  // The same 50 images, in order, for the accuracy the claim is about.
  data::DataLoader train_eval(small, example::loader_options(kImages, false, norm, dev));
  data::DataLoader heldout(data.val, example::loader_options(1000, false, norm, dev));

  models::MlpOptions mlp;
  mlp.hidden = {100, 100};
  nn::Sequential net = models::mlp(mlp);
  net->to(dev);
  optim::SGD sgd(net->parameters(), optim::SGDOptions(lr).momentum(0.9));
  train::TrainerOptions opts;
  opts.epochs = epochs;
  opts.on_epoch = [](const train::EpochStats& s) {
    std::printf("  epoch %3lld  train loss %.4f  accuracy on the %lld images %5.1f%%\n",
                static_cast<long long>(s.epoch + 1), s.train_loss, static_cast<long long>(kImages),
                100 * s.val_accuracy);
  };
  std::printf("MLP 3072-100-100-10 (ReLU), SGD lr %g momentum 0.9, batch 25, %d epochs, %s\n", lr,
              epochs, dev.str().c_str());
  train::Trainer trainer(net.ptr(), sgd, nullptr, opts);
  const train::History& h = trainer.fit(train_loader, &train_eval);

  int64_t first_full = -1;
  for (const auto& e : h.epochs) {
    if (e.val_accuracy >= 1.0) {
      first_full = e.epoch + 1;
      break;
    }
  }
  const train::EvalResult other = train::evaluate(*net, heldout, 10);
  std::printf("held-out accuracy %.1f%% on %lld images (chance 10%%)%s\n", 100 * other.accuracy,
              static_cast<long long>(other.samples),
              quick ? " (the synthetic classes generalise)" : ": memorised, not learned");
  const double final_acc = h.epochs.back().val_accuracy;
  if (!(final_acc >= 1.0)) {
    std::printf("FAILED: after %d epochs the net gets %.1f%% of the %lld images right, not 100%%\n",
                epochs, 100 * final_acc, static_cast<long long>(kImages));
    return 1;
  }
  std::printf("ok: 100%% training accuracy from epoch %lld of %d\n",
              static_cast<long long>(first_full), epochs);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 2;
}
