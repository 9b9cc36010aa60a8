// Example 7: update rules compared, as in the course: SGD, SGD with momentum,
// RMSprop and Adam train the same five-layer fully-connected net
// (3072-100-100-100-100-10, ReLU) from the same initial weights on the same
// batches, with the course's learning rates (SGD and SGD+momentum both at
// 0.01, so that momentum is the only difference; RMSprop 1e-4; Adam 1e-3).
// Each one's history is printed (training loss and accuracy, validation loss
// and accuracy per epoch) and optionally drawn (--plot PREFIX writes
// PREFIX_loss.svg with the training loss per step and PREFIX_accuracy.svg
// with the validation accuracy per epoch).
//
// By default it trains on a 10,000-image subset of the CIFAR-10 training set
// for 5 epochs (batch 100), validating on 1,000 held-out images. Exits 1 when
// an optimizer's training loss does not fall, its validation accuracy is not
// above 15% (chance: 10%; plain SGD at lr 0.01 is slow, about 21% after 5
// epochs on 10,000 images), or SGD with momentum does not end with a lower
// training loss than plain SGD at the same lr. --quick: synthetic data.
//   cifar10_optimizers [--data PATH] [--train-size N] [--epochs N] [--plot PREFIX]
//                      [--device cpu|cuda|auto] [--quick]
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cifar_util.h"

using namespace tandem;

namespace {

struct Rule {
  std::string name;
  std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)> make;
};

std::vector<Rule> rules() {
  return {
      {"sgd (lr 1e-2)",
       [](std::vector<Tensor> p) {
         return std::make_unique<optim::SGD>(std::move(p), optim::SGDOptions(1e-2));
       }},
      {"sgd+momentum (lr 1e-2, 0.9)",
       [](std::vector<Tensor> p) {
         return std::make_unique<optim::SGD>(std::move(p), optim::SGDOptions(1e-2).momentum(0.9));
       }},
      {"rmsprop (lr 1e-4)",
       [](std::vector<Tensor> p) {
         return std::make_unique<optim::RMSprop>(std::move(p), optim::RMSpropOptions(1e-4));
       }},
      {"adam (lr 1e-3)",
       [](std::vector<Tensor> p) {
         return std::make_unique<optim::Adam>(std::move(p), optim::AdamOptions(1e-3));
       }},
  };
}

}  // namespace

int main(int argc, char** argv) try {
  const example::Flags flags(
      argc, argv,
      "usage: cifar10_optimizers [--data PATH] [--train-size N] [--epochs N] [--batch N]\n"
      "                          [--plot PREFIX] [--device cpu|cuda|auto] [--quick]\n"
      "  --data PATH     CIFAR-10 (default: $TANDEM_CIFAR10, then the cache)\n"
      "  --train-size N  training images used (default 10000; at most 49000)\n"
      "  --epochs N      epochs per optimizer (default 5; 3 with --quick)\n"
      "  --batch N       batch size (default 100; 25 with --quick)\n"
      "  --plot PREFIX   write PREFIX_loss.svg and PREFIX_accuracy.svg\n"
      "  --quick         synthetic data (the ctest smoke test)\n",
      {"data", "train-size", "epochs", "batch", "plot"}, {"quick"});
  const bool quick = flags.has("quick");
  const int epochs = flags.get_int("epochs", quick ? 3 : 5);
  const int batch = flags.get_int("batch", quick ? 25 : 100);
  const int train_size = flags.get_int("train-size", 10000);
  const std::string plot_prefix = flags.get("plot", "");
  const Device dev = flags.device();

  const example::CifarSplits data = example::cifar_splits(flags, quick, 1000);
  const data::ImageDataset train = example::first_n(data.train, train_size);
  std::printf("%lld training images of %s\n", static_cast<long long>(train.size()),
              data.description.c_str());
  const data::Normalize norm = data::cifar10_normalize();
  data::DataLoader train_loader(train, example::loader_options(batch, true, norm, dev, 1));
  data::DataLoader val_loader(data.val, example::loader_options(1000, false, norm, dev));
  std::printf("MLP 3072-100-100-100-100-10 (ReLU), batch %d, %d epochs, %s\n", batch, epochs,
              dev.str().c_str());

  models::MlpOptions mlp;
  mlp.hidden = {100, 100, 100, 100};
  std::vector<train::History> histories;
  std::vector<plot::Series> loss_series, acc_series;
  for (const Rule& rule : rules()) {
    manual_seed(0);  // the same initial weights for every rule
    nn::Sequential net = models::mlp(mlp);
    net->to(dev);
    std::unique_ptr<optim::Optimizer> opt = rule.make(net->parameters());
    train::TrainerOptions opts;
    opts.epochs = epochs;
    opts.on_epoch = example::print_epoch;
    std::printf("%s\n", rule.name.c_str());
    train::Trainer trainer(net.ptr(), *opt, nullptr, opts);
    histories.push_back(trainer.fit(train_loader, &val_loader));
    const train::History& h = histories.back();
    plot::Series loss{rule.name, {}, {}}, acc{rule.name, {}, {}};
    const double steps = static_cast<double>(train_loader.num_batches());
    for (size_t i = 0; i < h.step_loss.size(); ++i) {
      loss.xs.push_back(static_cast<double>(i + 1) / steps);  // in epochs
      loss.ys.push_back(h.step_loss[i]);
    }
    for (const auto& e : h.epochs) {
      acc.xs.push_back(static_cast<double>(e.epoch + 1));
      acc.ys.push_back(e.val_accuracy);
    }
    loss_series.push_back(loss);
    acc_series.push_back(acc);
  }

  std::printf("\n%-28s %11s %11s %9s %9s %8s\n", "optimizer", "first loss", "last loss",
              "train acc", "val acc", "s/epoch");
  int failures = 0;
  const auto rs = rules();
  for (size_t i = 0; i < rs.size(); ++i) {
    const train::History& h = histories[i];
    const train::EpochStats &first = h.epochs.front(), &last = h.epochs.back();
    std::printf("%-28s %11.4f %11.4f %8.1f%% %8.1f%% %8.1f\n", rs[i].name.c_str(), first.train_loss,
                last.train_loss, 100 * last.train_accuracy, 100 * last.val_accuracy,
                example::seconds_per_epoch(h));
    if (!(last.train_loss < first.train_loss)) {
      std::printf("FAILED: %s: the training loss did not fall\n", rs[i].name.c_str());
      ++failures;
    }
    if (!(last.val_accuracy > 0.15)) {
      std::printf("FAILED: %s: validation accuracy %.1f%% is not above 15%%\n", rs[i].name.c_str(),
                  100 * last.val_accuracy);
      ++failures;
    }
  }
  const double sgd_loss = histories[0].epochs.back().train_loss;
  const double momentum_loss = histories[1].epochs.back().train_loss;
  if (!(momentum_loss < sgd_loss)) {
    std::printf("FAILED: SGD+momentum ends at loss %.4f, not below plain SGD's %.4f\n",
                momentum_loss, sgd_loss);
    ++failures;
  }
  if (!plot_prefix.empty()) {
    plot::line_chart(plot_prefix + "_loss.svg", "Training loss", "epoch", "loss", loss_series);
    plot::line_chart(plot_prefix + "_accuracy.svg", "Validation accuracy", "epoch", "accuracy",
                     acc_series);
    std::printf("wrote %s_loss.svg and %s_accuracy.svg\n", plot_prefix.c_str(),
                plot_prefix.c_str());
  }
  if (failures == 0)
    std::printf(
        "ok: every loss fell, every validation accuracy above 15%%, momentum beat plain "
        "SGD\n");
  return failures == 0 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 2;
}
