// Example 5: the course's two-layer fully-connected net on CIFAR-10:
//   3072 -> 200 -> ReLU -> 10, softmax cross-entropy (mean over the batch),
//   plain SGD at lr 0.1, lr multiplied by 0.96 after every epoch (ExponentialLR),
//   batch 512, 15 epochs, inputs scaled to [0, 1] and normalised per channel.
// The course's settings say lr 0.4; with our mean-reduced loss and inputs
// normalised to unit variance per channel, lr 0.4 and 0.3 diverge within the
// first epoch (the loss reaches inf; the trainer stops with NonFiniteLoss) and
// 0.2 trains but noisily, so the default is 0.1 (--lr 0.4 shows the
// divergence). See examples/README.md for the measurements.
// Training keeps 1,000 of the 50,000 training images for validation (as the
// course does). It exits 1 when the best validation accuracy is below 50%
// (fully-connected nets plateau around 50-55% on CIFAR-10).
//
// With --quick it trains on a small synthetic CIFAR-shaped set for 3 epochs
// and checks that the loss falls and the validation accuracy beats chance
// (10%) by far (> 50%).
//   cifar10_two_layer [--data PATH] [--epochs N] [--lr X] [--batch N] [--device cpu|cuda|auto]
//                     [--quick]
#include <cstdio>
#include <string>

#include "cifar_util.h"

using namespace tandem;

int main(int argc, char** argv) try {
  const example::Flags flags(
      argc, argv,
      "usage: cifar10_two_layer [--data PATH] [--epochs N] [--lr X] [--batch N] [--hidden N]\n"
      "                         [--device cpu|cuda|auto] [--quick]\n"
      "  --data PATH  CIFAR-10: official tarball, binary dir, or image tree / archive\n"
      "               (default: $TANDEM_CIFAR10, then the cache ~/.cache/tandem/cifar10)\n"
      "  --epochs N   epochs (default 15; 3 with --quick)\n"
      "  --lr X       SGD learning rate (default 0.1), times 0.96 after every epoch\n"
      "  --batch N    batch size (default 512; 64 with --quick)\n"
      "  --hidden N   hidden units (default 200)\n"
      "  --quick      synthetic data, a few seconds (the ctest smoke test)\n",
      {"data", "epochs", "lr", "batch", "hidden"}, {"quick"});
  const bool quick = flags.has("quick");
  const int epochs = flags.get_int("epochs", quick ? 3 : 15);
  const double lr = flags.get_double("lr", 0.1);
  const int batch = flags.get_int("batch", quick ? 64 : 512);
  const int hidden = flags.get_int("hidden", 200);
  const Device dev = flags.device();
  manual_seed(0);

  const example::CifarSplits data = example::cifar_splits(flags, quick, 1000);
  std::printf("%s\n", data.description.c_str());
  const data::Normalize norm = data::cifar10_normalize();
  data::DataLoader train_loader(data.train, example::loader_options(batch, true, norm, dev, 1));
  data::DataLoader val_loader(data.val, example::loader_options(1000, false, norm, dev));
  data::DataLoader test_loader(data.test, example::loader_options(1000, false, norm, dev));

  models::MlpOptions mlp;
  mlp.hidden = {hidden};
  nn::Sequential net = models::mlp(mlp);
  net->to(dev);
  optim::SGD sgd(net->parameters(), optim::SGDOptions(lr));
  optim::ExponentialLR decay(sgd, 0.96);
  train::TrainerOptions opts;
  opts.epochs = epochs;
  opts.on_epoch = example::print_epoch;
  std::printf("MLP 3072-%d-10 (ReLU), SGD lr %g, lr *= 0.96 per epoch, batch %d, %d epochs, %s\n",
              hidden, lr, batch, epochs, dev.str().c_str());
  train::Trainer trainer(net.ptr(), sgd, &decay, opts);
  const train::History& h = trainer.fit(train_loader, &val_loader);

  const train::EvalResult test = train::evaluate(*net, test_loader, 10);
  const double first_loss = h.epochs.front().train_loss, last_loss = h.epochs.back().train_loss;
  std::printf("best validation accuracy %.1f%% (epoch %lld); test accuracy %.1f%% (last epoch)\n",
              100 * h.best_val_accuracy, static_cast<long long>(h.best_epoch + 1),
              100 * test.accuracy);
  std::printf("%.1f s per epoch on average\n", example::seconds_per_epoch(h));

  const double target = 0.5;  // chance is 10%
  int failures = 0;
  if (!(h.best_val_accuracy >= target)) {
    std::printf("FAILED: best validation accuracy %.1f%% is below %.0f%%\n",
                100 * h.best_val_accuracy, 100 * target);
    ++failures;
  }
  if (!(last_loss < first_loss)) {
    std::printf("FAILED: the training loss did not fall (%.4f -> %.4f)\n", first_loss, last_loss);
    ++failures;
  }
  if (failures == 0)
    std::printf("ok: validation accuracy at least %.0f%%, training loss %.4f -> %.4f\n",
                100 * target, first_loss, last_loss);
  return failures == 0 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 2;
}
