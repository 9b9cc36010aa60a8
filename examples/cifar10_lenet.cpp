// Example 8: the classic LeNet tutorial CNN on CIFAR-10 (models::make("lenet"):
// conv 3->6 k5, ReLU, max-pool 2, conv 6->16 k5, ReLU, max-pool 2, then
// 400->120->84->10) trained with its recipe (models::recipe("lenet"): SGD with
// momentum 0.9, lr 0.01, batch 32, 10 epochs, inputs scaled to [-1, 1]). It
// trains on all 50,000 training images, reports the test accuracy after every
// epoch (the test set is the validation loader, as in the tutorial), then the
// test accuracy per class from train::evaluate's confusion matrix, and writes
// the confusion matrix as SVG with --confusion FILE.
//
// Exits 1 when the final test accuracy is below 60% (--target to change it).
// --lr-decay X multiplies the lr by X after every epoch (ExponentialLR; default
// 1, the recipe's constant lr). --quick: synthetic data, 3 epochs, lr 0.05,
// target 50%.
//   cifar10_lenet [--data PATH] [--epochs N] [--lr X] [--batch N] [--lr-decay X]
//                 [--target X] [--confusion FILE] [--device cpu|cuda|auto] [--quick]
#include <cstdio>
#include <string>

#include "cifar_util.h"

using namespace tandem;

int main(int argc, char** argv) try {
  const models::Recipe recipe = models::recipe("lenet");
  const example::Flags flags(
      argc, argv,
      "usage: cifar10_lenet [--data PATH] [--epochs N] [--lr X] [--batch N] [--lr-decay X]\n"
      "                     [--target X] [--confusion FILE] [--device cpu|cuda|auto] [--quick]\n"
      "  --data PATH       CIFAR-10 (default: $TANDEM_CIFAR10, then the cache)\n"
      "  --epochs N        epochs (default: the recipe's 10; 3 with --quick)\n"
      "  --lr X            SGD learning rate, momentum 0.9 (default: the recipe's 0.01; 0.05\n"
      "                    with --quick)\n"
      "  --batch N         batch size (default: the recipe's 32)\n"
      "  --lr-decay X      lr factor after every epoch (default 1: constant)\n"
      "  --target X        the test accuracy required, in [0, 1] (default 0.6; 0.5 with --quick)\n"
      "  --confusion FILE  write the test confusion matrix as SVG\n"
      "  --quick           synthetic data (the ctest smoke test)\n",
      {"data", "epochs", "lr", "batch", "lr-decay", "target", "confusion"}, {"quick"});
  const bool quick = flags.has("quick");
  const int epochs = flags.get_int("epochs", quick ? 3 : static_cast<int>(recipe.epochs));
  // --quick has only 48 steps (500 images, 3 epochs): at the recipe's lr the
  // net is still leaving its initial plateau, so it takes a larger one.
  const double lr = flags.get_double("lr", quick ? 0.05 : recipe.lr);
  const int batch = flags.get_int("batch", static_cast<int>(recipe.batch_size));
  const double lr_decay = flags.get_double("lr-decay", 1.0);
  const double target = flags.get_double("target", quick ? 0.5 : 0.6);
  const std::string confusion_path = flags.get("confusion", "");
  const Device dev = flags.device();
  manual_seed(0);

  const example::CifarSplits data = example::cifar_splits(flags, quick, 0);
  std::printf("%s\n", data.description.c_str());
  const data::Normalize norm{recipe.mean, recipe.std};
  data::DataLoader train_loader(data.train, example::loader_options(batch, true, norm, dev, 1));
  data::DataLoader test_loader(data.test, example::loader_options(1000, false, norm, dev));

  nn::Sequential net = models::make("lenet");
  net->to(dev);
  optim::SGD sgd(net->parameters(), optim::SGDOptions(lr)
                                        .momentum(recipe.momentum)
                                        .nesterov(recipe.nesterov)
                                        .weight_decay(recipe.weight_decay));
  optim::ExponentialLR decay(sgd, lr_decay);
  train::TrainerOptions opts;
  opts.epochs = epochs;
  opts.on_epoch = example::print_epoch;
  std::printf("LeNet, SGD lr %g momentum %g, lr *= %g per epoch, batch %d, %d epochs, %s\n", lr,
              recipe.momentum, lr_decay, batch, epochs, dev.str().c_str());
  std::printf("(\"val\" below is the 10,000-image test set)\n");
  train::Trainer trainer(net.ptr(), sgd, &decay, opts);
  const train::History& h = trainer.fit(train_loader, &test_loader);

  const train::EvalResult test = train::evaluate(*net, test_loader, 10);
  std::printf(
      "test accuracy %.1f%% (%lld images; best %.1f%% after epoch %lld), loss %.4f, "
      "%.1f s per epoch\n",
      100 * test.accuracy, static_cast<long long>(test.samples), 100 * h.best_val_accuracy,
      static_cast<long long>(h.best_epoch + 1), test.loss, example::seconds_per_epoch(h));
  std::printf("  accuracy per class:\n");
  example::print_per_class(test, data.test.classes);
  if (!confusion_path.empty()) {
    plot::confusion_matrix(confusion_path, test.confusion, data.test.classes,
                           "LeNet on CIFAR-10: test confusion matrix");
    std::printf("wrote %s\n", confusion_path.c_str());
  }
  if (!(test.accuracy >= target)) {
    std::printf("FAILED: test accuracy %.1f%% is below the target %.1f%%\n", 100 * test.accuracy,
                100 * target);
    return 1;
  }
  std::printf("ok: test accuracy %.1f%% >= %.1f%%\n", 100 * test.accuracy, 100 * target);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 2;
}
