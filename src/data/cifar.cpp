// Image data sets in memory and the CIFAR-10 binary layout: reading every file
// with full checks, writing records, subsets and the train/validation split.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>
#include <sstream>
#include <system_error>

#include "data/augment.h"
#include "data/data_internal.h"
#include "tandem/data.h"

namespace tandem {
namespace data {

namespace fs = std::filesystem;

const std::vector<std::string>& cifar10_classes() {
  static const std::vector<std::string> names{"airplane", "automobile", "bird",  "cat",  "deer",
                                              "dog",      "frog",       "horse", "ship", "truck"};
  return names;
}
const std::vector<std::string>& cifar10_train_files() {
  static const std::vector<std::string> files{"data_batch_1.bin", "data_batch_2.bin",
                                              "data_batch_3.bin", "data_batch_4.bin",
                                              "data_batch_5.bin"};
  return files;
}
const std::string& cifar10_test_file() {
  static const std::string f = "test_batch.bin";
  return f;
}
const std::string& cifar10_meta_file() {
  static const std::string f = "batches.meta.txt";
  return f;
}

namespace detail {

std::string read_whole_file(const std::string& path, const char* what) {
  std::error_code ec;
  TANDEM_CHECK(fs::exists(path, ec), what, ": ", path, ": file not found");
  TANDEM_CHECK(!fs::is_directory(path, ec), what, ": ", path, ": is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  TANDEM_CHECK(in.good(), what, ": ", path, ": cannot open: ", std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  std::string bytes(static_cast<size_t>(std::max<std::streamoff>(size, 0)), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  TANDEM_CHECK(!in.bad() && in.gcount() == static_cast<std::streamsize>(bytes.size()), what, ": ",
               path, ": read error");
  return bytes;
}

void write_file_atomic(const std::string& path, const void* data, size_t nbytes, const char* what) {
  const std::string tmp = path + ".partial";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    TANDEM_CHECK(out.good(), what, ": ", tmp, ": cannot create: ", std::strerror(errno));
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(nbytes));
    out.flush();
    TANDEM_CHECK(out.good(), what, ": ", tmp, ": write failed (disk full?)");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  TANDEM_CHECK(!ec, what, ": cannot rename ", tmp, " to ", path, ": ", ec.message());
}

std::vector<int64_t> shuffled_order(uint64_t seed, int64_t n, int64_t epoch) {
  std::vector<std::pair<uint64_t, int64_t>> keyed(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) keyed[static_cast<size_t>(i)] = {shuffle_key(seed, i, epoch), i};
  std::sort(keyed.begin(), keyed.end());
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    order[static_cast<size_t>(i)] = keyed[static_cast<size_t>(i)].second;
  return order;
}

}  // namespace detail

ImageDataset ImageDataset::subset(const std::vector<int64_t>& indices) const {
  TANDEM_CHECK(images.defined() && labels.defined(), "ImageDataset::subset: empty data set");
  const int64_t n = size();
  Shape shape = images.sizes();
  shape[0] = static_cast<int64_t>(indices.size());
  const int64_t per = images.numel() / std::max<int64_t>(n, 1);
  ImageDataset out;
  out.images = empty(shape, kUInt8);
  out.labels = empty({static_cast<int64_t>(indices.size())}, kInt64);
  out.classes = classes;
  const uint8_t* src = images.data_ptr<uint8_t>();
  const int64_t* lab = labels.data_ptr<int64_t>();
  uint8_t* dst = out.images.data_ptr<uint8_t>();
  int64_t* dlab = out.labels.data_ptr<int64_t>();
  for (size_t k = 0; k < indices.size(); ++k) {
    const int64_t i = indices[k];
    TANDEM_CHECK(i >= 0 && i < n, "ImageDataset::subset: index ", i, " out of range for ", n,
                 " samples");
    std::memcpy(dst + static_cast<int64_t>(k) * per, src + i * per, static_cast<size_t>(per));
    dlab[k] = lab[i];
  }
  return out;
}

std::pair<ImageDataset, ImageDataset> train_validation_split(const ImageDataset& ds,
                                                             double validation_fraction,
                                                             uint64_t seed) {
  TANDEM_CHECK(validation_fraction >= 0.0 && validation_fraction < 1.0,
               "train_validation_split: validation_fraction must be in [0, 1), got ",
               validation_fraction);
  const int64_t n = ds.size();
  const auto order = detail::shuffled_order(seed, n, /*epoch=*/-1);
  const auto n_val = static_cast<int64_t>(validation_fraction * static_cast<double>(n));
  std::vector<int64_t> val(order.begin(), order.begin() + n_val);
  std::vector<int64_t> train(order.begin() + n_val, order.end());
  std::sort(val.begin(), val.end());  // keep the data set's own order within each part
  std::sort(train.begin(), train.end());
  return {ds.subset(train), ds.subset(val)};
}

ImageDataset read_cifar10_file(const std::string& path) {
  const std::string bytes = detail::read_whole_file(path, "read_cifar10");
  const auto size = static_cast<int64_t>(bytes.size());
  TANDEM_CHECK(size > 0, "read_cifar10: ", path, ": file is empty");
  TANDEM_CHECK(size % kCifarRecordBytes == 0, "read_cifar10: ", path, ": size ", size,
               " bytes is not a multiple of the record size 3073 (1 label byte + 3072 pixel "
               "bytes); the file is truncated or not a CIFAR-10 binary batch");
  const int64_t n = size / kCifarRecordBytes;
  ImageDataset ds;
  ds.images = empty({n, 3, 32, 32}, kUInt8);
  ds.labels = empty({n}, kInt64);
  ds.classes = cifar10_classes();
  uint8_t* img = ds.images.data_ptr<uint8_t>();
  int64_t* lab = ds.labels.data_ptr<int64_t>();
  const auto* rec = reinterpret_cast<const uint8_t*>(bytes.data());
  for (int64_t i = 0; i < n; ++i, rec += kCifarRecordBytes) {
    TANDEM_CHECK(rec[0] <= 9, "read_cifar10: ", path, ": record ", i, " (byte offset ",
                 i * kCifarRecordBytes, ") has label ", static_cast<int>(rec[0]), ", outside 0-9");
    lab[i] = rec[0];
    std::memcpy(img + i * kCifarImageBytes, rec + 1, kCifarImageBytes);
  }
  return ds;
}

namespace {

std::vector<std::string> read_meta(const std::string& path) {
  std::istringstream in(detail::read_whole_file(path, "read_cifar10"));
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  TANDEM_CHECK(names.size() == 10, "read_cifar10: ", path, ": expected 10 class names, found ",
               names.size());
  return names;
}

ImageDataset concat(const std::vector<ImageDataset>& parts, std::vector<std::string> classes) {
  int64_t n = 0;
  for (const auto& p : parts) n += p.size();
  ImageDataset out;
  out.images = empty({n, 3, 32, 32}, kUInt8);
  out.labels = empty({n}, kInt64);
  out.classes = std::move(classes);
  int64_t at = 0;
  for (const auto& p : parts) {
    std::memcpy(out.images.data_ptr<uint8_t>() + at * kCifarImageBytes,
                p.images.data_ptr<uint8_t>(), p.images.nbytes());
    std::memcpy(out.labels.data_ptr<int64_t>() + at, p.labels.data_ptr<int64_t>(),
                p.labels.nbytes());
    at += p.size();
  }
  return out;
}

}  // namespace

Cifar10 read_cifar10(const std::string& dir) {
  std::error_code ec;
  TANDEM_CHECK(fs::is_directory(dir, ec), "read_cifar10: ", dir, ": directory not found");
  std::vector<std::string> missing;
  for (const auto& f : cifar10_train_files())
    if (!fs::exists(fs::path(dir) / f, ec)) missing.push_back(f);
  for (const auto* f : {&cifar10_test_file(), &cifar10_meta_file()})
    if (!fs::exists(fs::path(dir) / *f, ec)) missing.push_back(*f);
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
    TANDEM_FAIL("read_cifar10: ", dir, ": missing ", list,
                " (expected data_batch_1.bin .. data_batch_5.bin, test_batch.bin and "
                "batches.meta.txt)");
  }
  auto classes = read_meta((fs::path(dir) / cifar10_meta_file()).string());
  std::vector<ImageDataset> train;
  for (const auto& f : cifar10_train_files())
    train.push_back(read_cifar10_file((fs::path(dir) / f).string()));
  Cifar10 out;
  out.train = concat(train, classes);
  out.test = read_cifar10_file((fs::path(dir) / cifar10_test_file()).string());
  out.test.classes = classes;
  return out;
}

void write_cifar10_file(const ImageDataset& ds, const std::string& path) {
  TANDEM_CHECK(ds.images.defined() && ds.images.dtype() == kUInt8 &&
                   ds.images.sizes() == Shape({ds.size(), 3, 32, 32}),
               "write_cifar10: ", path, ": images must be uint8 [N, 3, 32, 32], got ",
               ds.images.defined() ? shape_str(ds.images.sizes()) : std::string("undefined"));
  const int64_t n = ds.size();
  std::string bytes(static_cast<size_t>(n * kCifarRecordBytes), '\0');
  const uint8_t* img = ds.images.data_ptr<uint8_t>();
  const int64_t* lab = ds.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    TANDEM_CHECK(lab[i] >= 0 && lab[i] <= 9, "write_cifar10: ", path, ": sample ", i, " has label ",
                 lab[i], ", outside 0-9");
    bytes[static_cast<size_t>(i * kCifarRecordBytes)] = static_cast<char>(lab[i]);
    std::memcpy(&bytes[static_cast<size_t>(i * kCifarRecordBytes + 1)], img + i * kCifarImageBytes,
                kCifarImageBytes);
  }
  detail::write_file_atomic(path, bytes.data(), bytes.size(), "write_cifar10");
}

}  // namespace data
}  // namespace tandem
