// What the CIFAR-10 examples share: the data (the real CIFAR-10 through
// data::load_cifar10, or with --quick a small synthetic CIFAR-shaped set made
// in memory), the loaders, and one printed line per epoch.
//
// The synthetic set has ten classes, each a fixed random "base image" (the
// same for every split) made of 8x8-pixel blocks of random colour, so that
// convolutions and pooling see it as well as a fully-connected layer does; a
// sample is its class's base plus per-pixel uniform noise of comparable size.
// It is learnable (a linear model separates it) but not trivially on the first
// step, and lets ctest run every CIFAR example in seconds, with no data set on
// the machine.
#pragma once

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "example_util.h"

namespace example {

inline tandem::data::ImageDataset synthetic_cifar(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::mt19937_64 base_rng(20240613);  // the same class images in every split
  const int64_t pixels = tandem::data::kCifarImageBytes;
  std::vector<std::vector<int>> base(10, std::vector<int>(static_cast<size_t>(pixels)));
  for (auto& b : base) {
    int block[3][4][4];
    for (auto& plane : block)
      for (auto& row : plane)
        for (int& v : row) v = static_cast<int>(base_rng() % 160);
    for (size_t p = 0; p < b.size(); ++p)  // p = (c * 32 + y) * 32 + x
      b[p] = block[p / 1024][(p / 32) % 32 / 8][p % 32 / 8];
  }
  std::vector<uint8_t> images(static_cast<size_t>(n * pixels));
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const auto c = static_cast<size_t>(rng() % 10);
    labels[static_cast<size_t>(i)] = static_cast<int64_t>(c);
    uint8_t* img = images.data() + i * pixels;
    for (int64_t p = 0; p < pixels; ++p)
      img[p] = static_cast<uint8_t>(base[c][static_cast<size_t>(p)] + static_cast<int>(rng() % 96));
  }
  tandem::data::ImageDataset ds;
  ds.images = tandem::from_vector(images, {n, 3, 32, 32});
  ds.labels = tandem::from_vector(labels, {n});
  ds.classes = tandem::data::cifar10_classes();
  return ds;
}

struct CifarSplits {
  tandem::data::ImageDataset train, val, test;
  std::string description;  // for the first printed line
};

// With `quick`: synthetic train/val/test sets of the given sizes. Otherwise
// CIFAR-10 from --data PATH (else $TANDEM_CIFAR10, else the cache; see
// data::prepare_cifar10), its 50,000 training images split into
// train/validation with a fixed seed (`val_size` of them validate; 0: no
// validation set), the official 10,000 for the test.
inline CifarSplits cifar_splits(const Flags& flags, bool quick, int64_t val_size,
                                int64_t quick_train = 500, int64_t quick_eval = 200) {
  CifarSplits s;
  if (quick) {
    s.train = synthetic_cifar(quick_train, 1);
    s.val = synthetic_cifar(quick_eval, 2);
    s.test = synthetic_cifar(quick_eval, 3);
    s.description = "synthetic CIFAR-shaped data (--quick): " + std::to_string(quick_train) +
                    " train, " + std::to_string(quick_eval) + " validation, " +
                    std::to_string(quick_eval) + " test";
    return s;
  }
  tandem::data::Cifar10Options opts;
  opts.source = flags.get("data", "");
  tandem::data::Cifar10 c = tandem::data::load_cifar10(opts);
  s.test = std::move(c.test);
  if (val_size > 0) {
    const double fraction =
        static_cast<double>(val_size) / static_cast<double>(c.train.size()) + 1e-9;
    auto split = tandem::data::train_validation_split(c.train, fraction, 0);
    s.train = std::move(split.first);
    s.val = std::move(split.second);
  } else {
    s.train = std::move(c.train);
  }
  s.description = "CIFAR-10: " + std::to_string(s.train.size()) + " train, " +
                  std::to_string(s.val.size()) + " validation, " + std::to_string(s.test.size()) +
                  " test";
  return s;
}

// The first `n` samples of `ds` (all when n >= its size).
inline tandem::data::ImageDataset first_n(const tandem::data::ImageDataset& ds, int64_t n) {
  if (n >= ds.size()) return ds;
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = i;
  return ds.subset(idx);
}

// Training order shuffled (seeded) or fixed; inputs normalised per channel.
inline tandem::data::LoaderOptions loader_options(int64_t batch_size, bool shuffle,
                                                  tandem::data::Normalize normalize,
                                                  tandem::Device device, uint64_t seed = 0) {
  tandem::data::LoaderOptions o;
  o.batch_size = batch_size;
  o.shuffle = shuffle;
  o.seed = seed;
  o.normalize = std::move(normalize);
  o.device = device;
  return o;
}

inline void print_epoch(const tandem::train::EpochStats& s) {
  std::printf("  epoch %3" PRId64 "  lr %.3g  train loss %.4f acc %5.1f%%", s.epoch + 1, s.lr,
              s.train_loss, 100 * s.train_accuracy);
  if (std::isfinite(s.val_accuracy))
    std::printf("  val loss %.4f acc %5.1f%%", s.val_loss, 100 * s.val_accuracy);
  std::printf("  %.1f s (%.0f img/s)\n", s.seconds, s.images_per_second);
  std::fflush(stdout);
}

// Mean seconds per epoch of a history.
inline double seconds_per_epoch(const tandem::train::History& h) {
  double total = 0;
  for (const auto& e : h.epochs) total += e.seconds;
  return h.epochs.empty() ? 0.0 : total / static_cast<double>(h.epochs.size());
}

inline void print_per_class(const tandem::train::EvalResult& r,
                            const std::vector<std::string>& classes) {
  const std::vector<double> acc = r.per_class_accuracy();
  for (size_t c = 0; c < acc.size(); ++c)
    std::printf("    %-11s %5.1f%%\n", c < classes.size() ? classes[c].c_str() : "?", 100 * acc[c]);
}

}  // namespace example
