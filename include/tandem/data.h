// tandem::data: image data sets in memory, CIFAR-10 (reading, downloading,
// importing), image folders, and the DataLoader.
//
// A data set is held as uint8 images [N, C, H, W] plus int64 labels [N] on the
// CPU. A DataLoader turns it into batches: float32 images [B, C, H, W]
// (augmented, then normalised per channel) and int64 labels [B], on the CPU or
// a CUDA device. Everything random (shuffling, crops, flips, cutout) is a pure
// function of (seed, epoch, sample), so a run is reproducible and the CPU and
// GPU-resident paths produce bit-identical batches.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tandem/device.h"
#include "tandem/tensor.h"

namespace tandem {
namespace data {

// ---- Data sets -------------------------------------------------------------

struct ImageDataset {
  Tensor images;                     // uint8 [N, C, H, W], CPU
  Tensor labels;                     // int64 [N], CPU
  std::vector<std::string> classes;  // label -> name

  int64_t size() const { return labels.defined() ? labels.numel() : 0; }
  // The samples at `indices` (copies), same classes.
  ImageDataset subset(const std::vector<int64_t>& indices) const;
};

// A seeded random train/validation split: `validation_fraction` of the samples
// (rounded down) go to .second, the rest to .first.
std::pair<ImageDataset, ImageDataset> train_validation_split(const ImageDataset& ds,
                                                             double validation_fraction,
                                                             uint64_t seed);

// ---- CIFAR-10, official binary layout --------------------------------------
//
// A directory (cifar-10-batches-bin) with data_batch_1.bin .. data_batch_5.bin,
// test_batch.bin and batches.meta.txt; each .bin is records of 1 label byte
// (0-9) + 3,072 pixel bytes (R, G, B planes of 32x32, row-major).

constexpr int64_t kCifarImageBytes = 3 * 32 * 32;
constexpr int64_t kCifarRecordBytes = 1 + kCifarImageBytes;
const std::vector<std::string>& cifar10_classes();  // airplane .. truck
const std::vector<std::string>& cifar10_train_files();
const std::string& cifar10_test_file();
const std::string& cifar10_meta_file();

// One .bin file; throws naming the file when it is missing, unreadable, empty,
// not a multiple of 3,073 bytes, or holds a label outside 0-9.
ImageDataset read_cifar10_file(const std::string& path);

struct Cifar10 {
  ImageDataset train;  // 50,000 for the official files
  ImageDataset test;   // 10,000
};
// The whole directory (every file checked; the class names come from
// batches.meta.txt, which must list 10 names).
Cifar10 read_cifar10(const std::string& dir);
// Writes `ds` (3x32x32, labels 0-9) as CIFAR-10 records to `path`.
void write_cifar10_file(const ImageDataset& ds, const std::string& path);

// ---- Image folders -----------------------------------------------------------
//
// root/<class>/<image>.jpg|.jpeg|.png; classes are the sub-folders sorted by
// name (label = position), images sorted by name within a class. Images are
// decoded to RGB (grey and palette images are converted; alpha is dropped) with
// libjpeg-turbo / libpng on `threads` threads; all must have the same size
// (there is no resizing), else the error names the file and both sizes.

struct ImageFolderOptions {
  int threads = 0;  // 0: std::thread::hardware_concurrency()
  // Expected image size; 0 means "whatever the first image has".
  int64_t height = 0;
  int64_t width = 0;
};
ImageDataset read_image_folder(const std::string& root, const ImageFolderOptions& options = {});

// Decodes one JPEG or PNG (chosen by its signature) into uint8 [3, H, W].
Tensor decode_image(const std::string& path);

// ---- Getting CIFAR-10 ------------------------------------------------------------
//
// prepare_cifar10() returns a directory in the binary layout, ready for
// read_cifar10(). In order:
//  1. `cache_dir` already holds a complete, valid copy: returned at once.
//  2. A local copy, from `source` or else the environment variable
//     TANDEM_CIFAR10: the official cifar-10-binary.tar.gz (md5 checked), a
//     directory already in the binary layout, or an image-folder tree
//     (train/<class>/*, test/<class>/*, ten classes whose folders sort in
//     label order) as a directory or a .tar/.tar.gz/.tar.xz archive. Images are
//     decoded in parallel and written to the cache as binary batches.
//  3. A download of the official tarball with `curl` (or `wget` when curl is
//     absent), run as a subprocess; the md5 is checked before unpacking.
// Archives are unpacked with `tar` (a .tar.xz needs xz-utils). When none of
// this works the error says exactly what to do.

struct Cifar10Options {
  std::string cache_dir;  // "": $TANDEM_DATA_DIR/cifar10, else ~/.cache/tandem/cifar10
  std::string source;     // "": $TANDEM_CIFAR10
  bool download = true;
  std::string url = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
  std::string md5 = "c32a1d4ab5d03f1284b67883e8d87530";
  int threads = 0;  // image decoding threads (0: all cores)
};
std::string prepare_cifar10(const Cifar10Options& options = {});
// prepare_cifar10 + read_cifar10.
Cifar10 load_cifar10(const Cifar10Options& options = {});
// The default cache directory (see Cifar10Options::cache_dir).
std::string default_cifar10_cache_dir();

// MD5 of a file as 32 lowercase hex digits (for the download check).
std::string md5_file(const std::string& path);

// ---- DataLoader ------------------------------------------------------------------------

// Per-channel normalisation: x = (pixel / 255 - mean[c]) / std[c]. Empty
// vectors mean no normalisation (x = pixel / 255).
struct Normalize {
  std::vector<double> mean;
  std::vector<double> std;
};
// CIFAR-10's usual training statistics.
Normalize cifar10_normalize();

// How a random crop pads the image: with zeros (black, pixel value 0 before
// normalisation) or by reflection about the border pixels (numpy's and
// PyTorch's 'reflect': row -1 is row 1), which needs padding < the size.
enum class PadMode : int8_t { Zeros, Reflect };

// Training augmentation, applied per sample in this order: random crop of the
// original size from the image padded by `crop_padding` pixels on every side
// (`padding`), random horizontal flip with probability 1/2, then cutout: a
// `cutout` x `cutout` square (clipped at the borders) around a random centre
// set to 0 after normalisation. 0 / false turns each off.
// With alternating_flip (and horizontal_flip), the flips alternate as in
// airbench: epoch 0 flips a random half of the images, and every later epoch
// flips exactly the images the epoch before did not (image i is flipped in
// epoch e when its epoch-0 draw XOR (e odd) says so).
struct Augment {
  int64_t crop_padding = 0;
  bool horizontal_flip = false;
  int64_t cutout = 0;
  PadMode padding = PadMode::Zeros;
  bool alternating_flip = false;
};

enum class LoaderMode {
  // Batches are built on the CPU by background threads into (pinned) host
  // buffers and, for a CUDA device, copied on the loader's own stream one
  // batch ahead of use.
  HostPrefetch,
  // The uint8 data set is copied to the device once; shuffling (Thrust),
  // crops, flips, cutout and normalisation run as CUDA kernels per batch.
  DeviceResident,
};

struct LoaderOptions {
  int64_t batch_size = 128;
  bool shuffle = true;
  bool drop_last = false;
  uint64_t seed = 0;
  Normalize normalize;
  Augment augment;
  Device device = Device(kCPU);
  LoaderMode mode = LoaderMode::HostPrefetch;
  int workers = 2;   // HostPrefetch: background threads building batches
  int prefetch = 4;  // HostPrefetch: batches built ahead of use
  // Data-parallel sharding (PyTorch's DistributedSampler): with num_replicas
  // > 1 the loader yields rank `rank`'s share of each epoch's permutation,
  // dist::shard_indices(permutation, rank, num_replicas, pad_shards). Padded
  // (training): every rank has the same number of samples, the first few
  // repeated; unpadded (evaluation): every sample exactly once over the ranks.
  int64_t num_replicas = 1;
  int64_t rank = 0;
  bool pad_shards = true;
};

struct Batch {
  Tensor images;  // float32 [B, C, H, W] on options.device
  Tensor labels;  // int64 [B]
};

class DataLoader {
 public:
  DataLoader(ImageDataset dataset, LoaderOptions options);
  ~DataLoader();
  DataLoader(DataLoader&&) noexcept;
  DataLoader& operator=(DataLoader&&) noexcept;

  int64_t size() const;         // samples in the data set
  int64_t epoch_size() const;   // samples this loader yields per epoch (its shard)
  int64_t num_batches() const;  // per epoch
  const LoaderOptions& options() const;

  // The order of the data set's samples in `epoch` (identity without shuffle);
  // with num_replicas > 1, this rank's shard of it.
  std::vector<int64_t> permutation(int64_t epoch) const;
  // Batch `index` of `epoch`, built synchronously (no threads): what the
  // iteration below yields, for tests and random access.
  Batch batch(int64_t epoch, int64_t index) const;

  // Iterating one epoch: start_epoch(e) then next() until it returns false.
  // HostPrefetch builds batches on background threads; the batch returned is
  // ready for use on the current CUDA stream (which waits for its copy).
  void start_epoch(int64_t epoch);
  bool next(Batch* out);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace data
}  // namespace tandem
