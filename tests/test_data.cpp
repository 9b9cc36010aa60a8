// tandem::data: the CIFAR-10 binary reader (good files and every kind of bad
// one), the image-folder import (JPEGs and PNGs generated here with libjpeg /
// libpng), download through a file:// URL, MD5, and the DataLoader (batching,
// seeded order, normalisation, crop / flip / cutout on known images,
// background prefetch, the split), plus the GPU paths against the CPU loader.
#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>

#include "data/data_cuda.h"
#include "test_util.h"

namespace fs = std::filesystem;
namespace td = tandem::data;
using tandem::Tensor;

namespace {

// A fresh directory per test, removed at the end.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            ("tandem-test-data-" + std::to_string(::getpid()) + "-" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  fs::path operator/(const std::string& s) const { return path_ / s; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_bytes(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// n random CIFAR records; labels and pixels returned too.
std::string random_records(int64_t n, std::vector<uint8_t>* labels, std::vector<uint8_t>* pixels) {
  const auto lab = tt::int_values(n, 0, 9);
  const auto pix = tt::int_values(n * td::kCifarImageBytes, 0, 255);
  std::string bytes;
  for (int64_t i = 0; i < n; ++i) {
    bytes += static_cast<char>(lab[i]);
    labels->push_back(static_cast<uint8_t>(lab[i]));
    for (int64_t p = 0; p < td::kCifarImageBytes; ++p) {
      const auto v = static_cast<uint8_t>(pix[i * td::kCifarImageBytes + p]);
      bytes += static_cast<char>(v);
      pixels->push_back(v);
    }
  }
  return bytes;
}

std::string meta_text() {
  std::string s;
  for (const auto& c : td::cifar10_classes()) s += c + "\n";
  return s + "\n";
}

// A complete small binary directory (`per_file` records in each .bin).
void write_binary_dir(const fs::path& dir, int64_t per_file) {
  std::vector<uint8_t> l, p;
  for (const auto& f : td::cifar10_train_files())
    write_bytes(dir / f, random_records(per_file, &l, &p));
  write_bytes(dir / td::cifar10_test_file(), random_records(per_file, &l, &p));
  write_bytes(dir / td::cifar10_meta_file(), meta_text());
}

// Interleaved RGB pixels of a random h x w image.
std::vector<uint8_t> random_rgb(int h, int w) {
  const auto v = tt::int_values(static_cast<int64_t>(h) * w * 3, 0, 255);
  return std::vector<uint8_t>(v.begin(), v.end());
}

void write_jpeg(const fs::path& path, const std::vector<uint8_t>& rgb, int h, int w) {
  fs::create_directories(path.parent_path());
  jpeg_compress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&cinfo);
  unsigned char* mem = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &mem, &size);
  cinfo.image_width = static_cast<JDIMENSION>(w);
  cinfo.image_height = static_cast<JDIMENSION>(h);
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 100, TRUE);
  for (int c = 0; c < 3; ++c) {  // 4:4:4, so the decoded image is close to the original
    cinfo.comp_info[c].h_samp_factor = 1;
    cinfo.comp_info[c].v_samp_factor = 1;
  }
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(rgb.data()) + cinfo.next_scanline * w * 3;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  write_bytes(path, std::string(reinterpret_cast<char*>(mem), size));
  std::free(mem);
}

void write_png(const fs::path& path, const std::vector<uint8_t>& rgb, int h, int w) {
  fs::create_directories(path.parent_path());
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(w);
  image.height = static_cast<png_uint_32>(h);
  image.format = PNG_FORMAT_RGB;
  ASSERT_TRUE(png_image_write_to_file(&image, path.c_str(), 0, rgb.data(), 0, nullptr));
}

// The [3, h, w] planes of interleaved RGB.
std::vector<double> planes(const std::vector<uint8_t>& rgb, int h, int w) {
  std::vector<double> out(rgb.size());
  const size_t plane = static_cast<size_t>(h) * w;
  for (size_t p = 0; p < plane; ++p)
    for (size_t c = 0; c < 3; ++c) out[c * plane + p] = rgb[3 * p + c];
  return out;
}

// A JPEG tree: root/{train,test}/<class>/NNN.jpg; returns the RGB images by
// split in (class, file) order.
struct Tree {
  std::vector<std::vector<uint8_t>> train, test;
  std::vector<int64_t> train_labels, test_labels;
};
Tree write_jpeg_tree(const fs::path& root, int train_per_class, int test_per_class,
                     int nclasses = 10) {
  Tree t;
  for (int c = 0; c < nclasses; ++c) {
    const std::string cls = c < 10 ? td::cifar10_classes()[c] : "extra" + std::to_string(c);
    for (int i = 0; i < train_per_class; ++i) {
      t.train.push_back(random_rgb(32, 32));
      t.train_labels.push_back(c);
      write_jpeg(root / "train" / cls / (std::to_string(1000 + i) + ".jpg"), t.train.back(), 32,
                 32);
    }
    for (int i = 0; i < test_per_class; ++i) {
      t.test.push_back(random_rgb(32, 32));
      t.test_labels.push_back(c);
      write_jpeg(root / "test" / cls / (std::to_string(1000 + i) + ".jpg"), t.test.back(), 32, 32);
    }
  }
  return t;
}

// Sets or clears an environment variable for the lifetime of the guard.
class EnvGuard {
 public:
  EnvGuard(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value == nullptr) {
      ::unsetenv(name);
    } else {
      ::setenv(name, value, 1);
    }
  }
  ~EnvGuard() {
    if (had_) {
      ::setenv(name_, old_.c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

}  // namespace

// ---- Binary reader -------------------------------------------------------------

TEST(DataCifarReader, ReadsRecordsOfAFile) {
  TempDir dir;
  std::vector<uint8_t> labels, pixels;
  write_bytes(dir / "b.bin", random_records(7, &labels, &pixels));
  const td::ImageDataset ds = td::read_cifar10_file((dir / "b.bin").string());
  ASSERT_EQ(ds.images.sizes(), tandem::Shape({7, 3, 32, 32}));
  EXPECT_EQ(tandem::to_vector<uint8_t>(ds.images), pixels);
  const auto got = tandem::to_vector<int64_t>(ds.labels);
  EXPECT_EQ(std::vector<int64_t>(labels.begin(), labels.end()), got);
  EXPECT_EQ(ds.classes, td::cifar10_classes());
}

TEST(DataCifarReader, ReadsADirectoryAndWritesBack) {
  TempDir dir;
  write_binary_dir(dir / "bin", 3);
  const td::Cifar10 c = td::read_cifar10((dir / "bin").string());
  EXPECT_EQ(c.train.size(), 15);
  EXPECT_EQ(c.test.size(), 3);
  EXPECT_EQ(c.train.classes, td::cifar10_classes());
  // The second file's records follow the first's.
  const td::ImageDataset b2 = td::read_cifar10_file((dir / "bin" / "data_batch_2.bin").string());
  tt::expect_equal(c.train.images.slice(0, 3, 6), b2.images);
  td::write_cifar10_file(c.test, (dir / "copy.bin").string());
  std::ifstream a(dir / "bin" / "test_batch.bin", std::ios::binary),
      b(dir / "copy.bin", std::ios::binary);
  const std::string sa((std::istreambuf_iterator<char>(a)), {}),
      sb((std::istreambuf_iterator<char>(b)), {});
  EXPECT_EQ(sa, sb);
}

TEST(DataCifarReader, BadFilesAreNamedWithTheProblem) {
  TempDir dir;
  std::vector<uint8_t> l, p;
  const std::string good = random_records(2, &l, &p);
  const std::string path = (dir / "x.bin").string();
  tt::expect_error([&] { td::read_cifar10_file(path); }, {path.c_str(), "file not found"});
  write_bytes(path, "");
  tt::expect_error([&] { td::read_cifar10_file(path); }, {path.c_str(), "file is empty"});
  write_bytes(path, good.substr(0, good.size() - 1));
  tt::expect_error([&] { td::read_cifar10_file(path); },
                   {path.c_str(), "size 6145 bytes is not a multiple of the record size 3073"});
  for (int bad : {10, 255}) {
    std::string b = good;
    b[td::kCifarRecordBytes] = static_cast<char>(bad);  // record 1's label
    write_bytes(path, b);
    const std::string what = "record 1 (byte offset 3073) has label " + std::to_string(bad);
    tt::expect_error([&] { td::read_cifar10_file(path); },
                     {path.c_str(), what.c_str(), "outside 0-9"});
  }
  tt::expect_error([&] { td::read_cifar10_file(dir.path().string()); }, "is a directory");
}

TEST(DataCifarReader, MissingFilesAndBadMetaInADirectory) {
  TempDir dir;
  const std::string d = (dir / "bin").string();
  tt::expect_error([&] { td::read_cifar10(d); }, {d.c_str(), "directory not found"});
  write_binary_dir(dir / "bin", 2);
  fs::remove(dir / "bin" / "data_batch_3.bin");
  fs::remove(dir / "bin" / "batches.meta.txt");
  tt::expect_error([&] { td::read_cifar10(d); },
                   {d.c_str(), "missing data_batch_3.bin, batches.meta.txt"});
  write_bytes(dir / "bin" / "batches.meta.txt", "airplane\nautomobile\n");
  std::vector<uint8_t> l, p;
  write_bytes(dir / "bin" / "data_batch_3.bin", random_records(2, &l, &p));
  tt::expect_error([&] { td::read_cifar10(d); },
                   {"batches.meta.txt", "expected 10 class names, found 2"});
  write_bytes(dir / "bin" / "batches.meta.txt", meta_text());
  write_bytes(dir / "bin" / "test_batch.bin", "abc");
  tt::expect_error([&] { td::read_cifar10(d); }, {"test_batch.bin", "size 3 bytes"});
}

TEST(DataCifarReader, WriteChecksShapeAndLabels) {
  TempDir dir;
  td::ImageDataset ds;
  ds.images = tandem::zeros({2, 3, 16, 16}, tandem::kUInt8);
  ds.labels = tandem::zeros({2}, tandem::kInt64);
  const std::string path = (dir / "o.bin").string();
  tt::expect_error([&] { td::write_cifar10_file(ds, path); },
                   "images must be uint8 [N, 3, 32, 32]");
  ds.images = tandem::zeros({2, 3, 32, 32}, tandem::kUInt8);
  ds.labels = tandem::from_vector(std::vector<int64_t>{3, 12});
  tt::expect_error([&] { td::write_cifar10_file(ds, path); }, "sample 1 has label 12, outside 0-9");
}

TEST(DataMd5, KnownVectors) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases{
      {"", "d41d8cd98f00b204e9800998ecf8427e"},
      {"abc", "900150983cd24fb0d6963f7d28e17f72"},
      {"The quick brown fox jumps over the lazy dog", "9e107d9d372bb6826bd81d3542a419d6"},
      {std::string(1000, 'a'), "cabe45dcc9ae5b66ba86600cca6b8ba8"}};
  for (const auto& [text, md5] : cases) {
    write_bytes(dir / "f", text);
    EXPECT_EQ(td::md5_file((dir / "f").string()), md5) << "length " << text.size();
  }
  tt::expect_error([&] { td::md5_file((dir / "nope").string()); }, "cannot open");
}

// ---- Images and import -------------------------------------------------------------

TEST(DataImages, DecodesJpegAndPng) {
  TempDir dir;
  const int h = 7, w = 13;
  const auto rgb = random_rgb(h, w);
  write_png(dir / "a.png", rgb, h, w);
  tt::expect_equal(td::decode_image((dir / "a.png").string()).to(tandem::kFloat64),
                   tandem::from_vector(planes(rgb, h, w), {3, h, w}));
  write_jpeg(dir / "a.jpg", rgb, h, w);
  // Quality 100, 4:4:4: the round trip is within a few levels per pixel.
  tt::expect_close(td::decode_image((dir / "a.jpg").string()).to(tandem::kFloat64),
                   tandem::from_vector(planes(rgb, h, w), {3, h, w}), tt::Tol{0.0, 6.0});
  write_bytes(dir / "bad.jpg", "\xFF\xD8\xFF garbage");
  tt::expect_error([&] { td::decode_image((dir / "bad.jpg").string()); },
                   {"bad.jpg", "corrupt JPEG"});
  write_bytes(dir / "bad.png", "\x89PNG\r\n\x1a\n garbage");
  tt::expect_error([&] { td::decode_image((dir / "bad.png").string()); }, {"bad.png", "PNG"});
  write_bytes(dir / "x.jpg", "GIF89a");
  tt::expect_error([&] { td::decode_image((dir / "x.jpg").string()); },
                   {"x.jpg", "neither a JPEG nor a PNG"});
}

TEST(DataImages, ImageFolderReadsClassesInNameOrder) {
  TempDir dir;
  const int h = 5, w = 9;
  std::vector<std::vector<uint8_t>> imgs;
  // Classes "b" and "a": labels follow the sorted names; a stray text file is ignored.
  for (const char* cls : {"a", "b"})
    for (int i = 0; i < 3; ++i) {
      imgs.push_back(random_rgb(h, w));
      write_png(dir / "root" / cls / (std::to_string(i) + ".png"), imgs.back(), h, w);
    }
  write_bytes(dir / "root" / "a" / "notes.txt", "not an image");
  td::ImageFolderOptions opt;
  opt.threads = 3;
  const td::ImageDataset ds = td::read_image_folder((dir / "root").string(), opt);
  EXPECT_EQ(ds.classes, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(tandem::to_vector<int64_t>(ds.labels), (std::vector<int64_t>{0, 0, 0, 1, 1, 1}));
  ASSERT_EQ(ds.images.sizes(), tandem::Shape({6, 3, h, w}));
  for (int i = 0; i < 6; ++i)
    tt::expect_equal(ds.images[i].to(tandem::kFloat64),
                     tandem::from_vector(planes(imgs[i], h, w), {3, h, w}));

  write_png(dir / "root" / "b" / "odd.png", random_rgb(h + 1, w), h + 1, w);
  tt::expect_error([&] { td::read_image_folder((dir / "root").string(), opt); },
                   {"odd.png", "image is 6x9", "images are 5x9"});
  fs::create_directories(dir / "root" / "c");
  tt::expect_error([&] { td::read_image_folder((dir / "root").string(), opt); },
                   {"c", "class folder has no .jpg/.jpeg/.png images"});
  tt::expect_error([&] { td::read_image_folder((dir / "none").string()); }, "directory not found");
}

TEST(DataImport, JpegTreeBecomesBinaryBatchesAndIsCached) {
  TempDir dir;
  const Tree tree = write_jpeg_tree(dir / "jpeg", 3, 2);
  td::Cifar10Options opt;
  opt.cache_dir = (dir / "cache").string();
  opt.source = (dir / "jpeg").string();
  opt.download = false;
  opt.threads = 2;
  const std::string bin = td::prepare_cifar10(opt);
  EXPECT_EQ(bin, (dir / "cache" / "cifar-10-batches-bin").string());
  const td::Cifar10 c = td::read_cifar10(bin);
  ASSERT_EQ(c.train.size(), 30);
  ASSERT_EQ(c.test.size(), 20);
  EXPECT_EQ(c.train.classes, td::cifar10_classes());
  // Training samples interleave the classes: 0..9, 0..9, 0..9 (image k of each class in turn).
  const auto labels = tandem::to_vector<int64_t>(c.train.labels);
  for (int64_t i = 0; i < 30; ++i) {
    ASSERT_EQ(labels[i], i % 10) << "sample " << i;
    const auto& rgb = tree.train[static_cast<size_t>((i % 10) * 3 + i / 10)];
    tt::expect_close(c.train.images[i].to(tandem::kFloat64),
                     tandem::from_vector(planes(rgb, 32, 32), {3, 32, 32}), tt::Tol{0.0, 6.0});
  }
  EXPECT_EQ(tandem::to_vector<int64_t>(c.test.labels), tree.test_labels);
  // Five train files of 6 records.
  EXPECT_EQ(fs::file_size(fs::path(bin) / "data_batch_5.bin"), 6u * td::kCifarRecordBytes);
  // A second call uses the cache: it works with the source gone.
  fs::remove_all(dir / "jpeg");
  EXPECT_EQ(td::prepare_cifar10(opt), bin);
  EXPECT_EQ(td::load_cifar10(opt).train.size(), 30);
}

TEST(DataImport, ArchivesAndBinaryDirectories) {
  TempDir dir;
  write_jpeg_tree(dir / "src" / "cifar10-jpeg", 1, 1);
  const std::string archive = (dir / "cifar10-jpeg.tar.gz").string();
  ASSERT_EQ(
      std::system(
          ("tar -czf " + archive + " -C " + (dir / "src").string() + " cifar10-jpeg").c_str()),
      0);
  td::Cifar10Options opt;
  opt.download = false;
  opt.cache_dir = (dir / "cache1").string();
  opt.source = archive;
  EXPECT_EQ(td::load_cifar10(opt).train.size(), 10);
  EXPECT_FALSE(fs::exists(dir / "cache1" / "unpack.tmp"));

  // The official layout as a directory (one level down) and as an official-named tarball.
  write_binary_dir(dir / "off" / "cifar-10-batches-bin", 4);
  opt.cache_dir = (dir / "cache2").string();
  opt.source = (dir / "off").string();
  EXPECT_EQ(td::load_cifar10(opt).train.size(), 20);
  const std::string tarball = (dir / "cifar-10-binary.tar.gz").string();
  ASSERT_EQ(std::system(
                ("tar -czf " + tarball + " -C " + (dir / "off").string() + " cifar-10-batches-bin")
                    .c_str()),
            0);
  opt.cache_dir = (dir / "cache3").string();
  opt.source = tarball;
  opt.md5 = td::md5_file(tarball);
  EXPECT_EQ(td::load_cifar10(opt).test.size(), 4);
  opt.cache_dir = (dir / "cache4").string();
  opt.md5 = "00000000000000000000000000000000";
  tt::expect_error([&] { td::prepare_cifar10(opt); },
                   {"cifar-10-binary.tar.gz", "md5", "differs from the official"});
}

TEST(DataImport, BadSourcesSayWhatIsWrong) {
  TempDir dir;
  td::Cifar10Options opt;
  opt.download = false;
  opt.cache_dir = (dir / "cache").string();
  opt.source = (dir / "nothing").string();
  tt::expect_error([&] { td::prepare_cifar10(opt); }, {"nothing", "not found"});
  write_jpeg_tree(dir / "nine", 1, 1, 9);
  opt.source = (dir / "nine").string();
  tt::expect_error([&] { td::prepare_cifar10(opt); }, {"expected 10 class folders", "found 9"});
  fs::create_directories(dir / "empty" / "x");
  opt.source = (dir / "empty").string();
  tt::expect_error([&] { td::prepare_cifar10(opt); }, "holds neither the CIFAR-10 binary files");
  write_bytes(dir / "file.zip", "PK");
  opt.source = (dir / "file.zip").string();
  tt::expect_error([&] { td::prepare_cifar10(opt); }, "not a directory or a .tar");
  write_bytes(dir / "broken.tar.gz", "not gzip");
  opt.source = (dir / "broken.tar.gz").string();
  tt::expect_error([&] { td::prepare_cifar10(opt); },
                   {"unpacking", "broken.tar.gz", "with tar failed"});
  // 16x16 images are not CIFAR-10.
  write_jpeg_tree(dir / "big", 1, 1);
  write_jpeg(dir / "big" / "train" / "cat" / "0.jpg", random_rgb(16, 16), 16, 16);
  opt.source = (dir / "big").string();
  tt::expect_error([&] { td::prepare_cifar10(opt); }, {"0.jpg", "image is 16x16", "32x32"});
}

TEST(DataImport, NoSourceAndNoDownloadSaysWhatToDo) {
  TempDir dir;
  EnvGuard env("TANDEM_CIFAR10", nullptr);
  td::Cifar10Options opt;
  opt.download = false;
  opt.cache_dir = (dir / "cache").string();
  tt::expect_error([&] { td::prepare_cifar10(opt); },
                   {"CIFAR-10 is not in the cache", "downloading is off",
                    "TANDEM_CIFAR10=", "cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530",
                    "../shared/data/cifar10-jpeg.tar.xz", "data_batch_1.bin"});
  // A download that fails (nothing at this URL) says why, then what to do.
  opt.download = true;
  opt.url = "file://" + (dir / "missing.tar.gz").string();
  tt::expect_error([&] { td::prepare_cifar10(opt); }, {"missing.tar.gz failed", "TANDEM_CIFAR10="});
}

TEST(DataImport, EnvironmentVariableAndFileUrlDownload) {
  TempDir dir;
  write_binary_dir(dir / "off" / "cifar-10-batches-bin", 2);
  const std::string tarball = (dir / "cifar-10-binary.tar.gz").string();
  ASSERT_EQ(std::system(
                ("tar -czf " + tarball + " -C " + (dir / "off").string() + " cifar-10-batches-bin")
                    .c_str()),
            0);
  {
    EnvGuard env("TANDEM_CIFAR10", (dir / "off").string().c_str());
    td::Cifar10Options opt;
    opt.download = false;
    opt.cache_dir = (dir / "cache-env").string();
    EXPECT_EQ(td::load_cifar10(opt).train.size(), 10);
  }
  EnvGuard env("TANDEM_CIFAR10", nullptr);
  td::Cifar10Options opt;
  opt.cache_dir = (dir / "cache-dl").string();
  opt.url = "file://" + tarball;  // curl and wget-less machines alike: curl reads file:// URLs
  opt.md5 = "0123456789abcdef0123456789abcdef";
  tt::expect_error([&] { td::prepare_cifar10(opt); }, {"its md5 is", "not 0123456789abcdef"});
  opt.md5 = td::md5_file(tarball);
  EXPECT_EQ(td::load_cifar10(opt).test.size(), 2);
  EXPECT_FALSE(fs::exists(dir / "cache-dl" / "cifar-10-binary.tar.gz"));
}

// ---- DataLoader --------------------------------------------------------------------

namespace {

// n images of c x h x w with random pixels; label i % 10 (identity via labels
// is not needed: tests compare pixels).
td::ImageDataset random_dataset(int64_t n, int64_t c = 3, int64_t h = 32, int64_t w = 32) {
  td::ImageDataset ds;
  ds.images = tt::random_tensor({n, c, h, w}, tandem::kUInt8, 0, 255);
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) labels[static_cast<size_t>(i)] = i;  // label = index
  ds.labels = tandem::from_vector(labels);
  return ds;
}

// float64 reference of the plain (not augmented) normalised sample.
std::vector<double> normalised(const std::vector<uint8_t>& img, const td::Normalize& nz, int64_t c,
                               int64_t hw) {
  std::vector<double> out(img.size());
  for (size_t p = 0; p < img.size(); ++p) {
    const size_t ch = p / static_cast<size_t>(hw);
    const double x = img[p] / 255.0;
    out[p] = nz.mean.empty() ? x : (x - nz.mean[ch]) / nz.std[ch];
    (void)c;
  }
  return out;
}

std::vector<uint8_t> sample_pixels(const td::ImageDataset& ds, int64_t i) {
  return tandem::to_vector<uint8_t>(ds.images[i]);
}

}  // namespace

TEST(DataLoader, BatchesCoverEveryoneOnceAndDropLast) {
  const td::ImageDataset ds = random_dataset(37, 3, 5, 7);
  td::LoaderOptions opt;
  opt.batch_size = 8;
  opt.seed = 11;
  td::DataLoader loader(ds, opt);
  EXPECT_EQ(loader.num_batches(), 5);
  std::vector<int64_t> seen;
  for (int64_t b = 0; b < 5; ++b) {
    const td::Batch batch = loader.batch(3, b);
    EXPECT_EQ(batch.images.sizes(), tandem::Shape({b < 4 ? 8 : 5, 3, 5, 7}));
    EXPECT_EQ(batch.images.dtype(), tandem::kFloat32);
    for (int64_t l : tandem::to_vector<int64_t>(batch.labels)) seen.push_back(l);
  }
  EXPECT_EQ(seen, loader.permutation(3));
  std::sort(seen.begin(), seen.end());
  for (int64_t i = 0; i < 37; ++i) EXPECT_EQ(seen[static_cast<size_t>(i)], i);
  opt.drop_last = true;
  td::DataLoader dropping(ds, opt);
  EXPECT_EQ(dropping.num_batches(), 4);
  tt::expect_error([&] { dropping.batch(0, 4); },
                   "batch index 4 out of range; an epoch has 4 batches");
}

TEST(DataLoader, OrderIsSeededPerEpoch) {
  const td::ImageDataset ds = random_dataset(101, 1, 2, 2);
  td::LoaderOptions opt;
  opt.seed = 5;
  td::DataLoader a(ds, opt), b(ds, opt);
  EXPECT_EQ(a.permutation(0), b.permutation(0));
  EXPECT_NE(a.permutation(0), a.permutation(1));
  opt.seed = 6;
  td::DataLoader c(ds, opt);
  EXPECT_NE(a.permutation(0), c.permutation(0));
  std::vector<int64_t> identity(101);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_NE(a.permutation(0), identity);
  opt.shuffle = false;
  td::DataLoader d(ds, opt);
  EXPECT_EQ(d.permutation(7), identity);
}

TEST(DataLoader, NormalisesPerChannel) {
  const td::ImageDataset ds = random_dataset(9, 3, 4, 6);
  td::LoaderOptions opt;
  opt.batch_size = 9;
  opt.shuffle = false;
  opt.normalize = {{0.1, 0.5, 0.9}, {0.2, 0.3, 1.7}};
  td::DataLoader loader(ds, opt);
  const td::Batch b = loader.batch(0, 0);
  for (int64_t i = 0; i < 9; ++i) {
    tt::expect_close(b.images[i],
                     tt::Ref{{3, 4, 6}, normalised(sample_pixels(ds, i), opt.normalize, 3, 24)},
                     tt::default_tol(tandem::kFloat32));
  }
  opt.normalize = {};
  td::DataLoader plain(ds, opt);
  tt::expect_close(plain.batch(0, 0).images[4],
                   tt::Ref{{3, 4, 6}, normalised(sample_pixels(ds, 4), {}, 3, 24)},
                   tt::default_tol(tandem::kFloat32));
}

TEST(DataLoader, FlipMirrorsSomeSamples) {
  const int64_t n = 64, h = 3, w = 5;
  const td::ImageDataset ds = random_dataset(n, 2, h, w);
  td::LoaderOptions opt;
  opt.batch_size = n;
  opt.augment.horizontal_flip = true;
  td::DataLoader loader(ds, opt);
  const td::Batch b = loader.batch(2, 0);
  const auto labels = tandem::to_vector<int64_t>(b.labels);
  int flipped = 0;
  for (int64_t k = 0; k < n; ++k) {
    const auto src = sample_pixels(ds, labels[k]);
    const auto out = tt::to_doubles(b.images[k]);
    bool same = true, mirrored = true;
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          const double v = out[(c * h + y) * w + x] * 255.0;
          same = same && std::fabs(v - src[(c * h + y) * w + x]) < 1e-3;
          mirrored = mirrored && std::fabs(v - src[(c * h + y) * w + (w - 1 - x)]) < 1e-3;
        }
    EXPECT_TRUE(same || mirrored) << "sample " << k << " is neither the image nor its mirror";
    flipped += mirrored && !same;
  }
  EXPECT_GT(flipped, 10);
  EXPECT_LT(flipped, 54);
}

TEST(DataLoader, CropIsAShiftWithBlackPadding) {
  const int64_t n = 40, h = 6, w = 7, pad = 2;
  const td::ImageDataset ds = random_dataset(n, 3, h, w);
  td::LoaderOptions opt;
  opt.batch_size = n;
  opt.augment.crop_padding = pad;
  opt.normalize = {{0.5, 0.5, 0.5}, {0.25, 0.25, 0.25}};
  td::DataLoader loader(ds, opt);
  const td::Batch b = loader.batch(0, 0);
  const auto labels = tandem::to_vector<int64_t>(b.labels);
  std::set<std::pair<int64_t, int64_t>> offsets;
  for (int64_t k = 0; k < n; ++k) {
    const auto src = sample_pixels(ds, labels[k]);
    const auto out = tt::to_doubles(b.images[k]);
    int matches = 0;
    for (int64_t dy = -pad; dy <= pad; ++dy)
      for (int64_t dx = -pad; dx <= pad; ++dx) {
        bool ok = true;
        for (int64_t c = 0; c < 3 && ok; ++c)
          for (int64_t y = 0; y < h && ok; ++y)
            for (int64_t x = 0; x < w && ok; ++x) {
              const int64_t sy = y + dy, sx = x + dx;
              const double px =
                  (sy >= 0 && sy < h && sx >= 0 && sx < w) ? src[(c * h + sy) * w + sx] : 0.0;
              ok = std::fabs(out[(c * h + y) * w + x] - (px / 255.0 - 0.5) / 0.25) < 1e-4;
            }
        if (ok) {
          ++matches;
          offsets.insert({dy, dx});
        }
      }
    EXPECT_GE(matches, 1) << "sample " << k << " is no shifted copy of its image";
  }
  EXPECT_GT(offsets.size(), 8u);  // the offsets vary
}

TEST(DataLoader, CutoutZeroesOneClippedSquare) {
  const int64_t n = 30, h = 9, w = 8, side = 4;
  const td::ImageDataset ds = random_dataset(n, 3, h, w);
  td::LoaderOptions opt;
  opt.batch_size = n;
  opt.augment.cutout = side;
  opt.normalize = {{0.3, 0.3, 0.3}, {0.2, 0.2, 0.2}};  // no pixel normalises to exactly 0
  td::DataLoader loader(ds, opt);
  const td::Batch b = loader.batch(1, 0);
  const auto labels = tandem::to_vector<int64_t>(b.labels);
  bool some_clipped = false;
  for (int64_t k = 0; k < n; ++k) {
    const auto src = sample_pixels(ds, labels[k]);
    const auto out = tt::to_doubles(b.images[k]);
    int64_t y0 = h, y1 = -1, x0 = w, x1 = -1, zeros = 0;
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        for (int64_t c = 0; c < 3; ++c) {
          const double v = out[(c * h + y) * w + x];
          if (v == 0.0) {
            ++zeros;
            y0 = std::min(y0, y), y1 = std::max(y1, y), x0 = std::min(x0, x), x1 = std::max(x1, x);
          } else {
            EXPECT_NEAR(v, (src[(c * h + y) * w + x] / 255.0 - 0.3) / 0.2, 1e-4);
          }
        }
      }
    ASSERT_GT(zeros, 0) << "sample " << k;
    const int64_t rows = y1 - y0 + 1, cols = x1 - x0 + 1;
    EXPECT_EQ(zeros, 3 * rows * cols) << "sample " << k << ": the zeros are not a full box";
    EXPECT_LE(rows, side);
    EXPECT_LE(cols, side);
    EXPECT_TRUE((rows == side || y0 == 0 || y1 == h - 1) &&
                (cols == side || x0 == 0 || x1 == w - 1));
    some_clipped = some_clipped || rows < side || cols < side;
  }
  EXPECT_TRUE(some_clipped);
}

TEST(DataLoader, PrefetchThreadsYieldTheSameBatches) {
  const td::ImageDataset ds = random_dataset(53, 3, 8, 8);
  td::LoaderOptions opt;
  opt.batch_size = 6;
  opt.seed = 99;
  opt.workers = 3;
  opt.prefetch = 2;
  opt.augment = {2, true, 3};
  opt.normalize = td::cifar10_normalize();
  td::DataLoader loader(ds, opt);
  for (int64_t epoch : {0, 1, 0}) {
    loader.start_epoch(epoch);
    td::Batch b;
    int64_t i = 0;
    while (loader.next(&b)) {
      const td::Batch ref = loader.batch(epoch, i++);
      tt::expect_equal(b.images, ref.images);
      tt::expect_equal(b.labels, ref.labels);
    }
    EXPECT_EQ(i, loader.num_batches());
    EXPECT_FALSE(loader.next(&b));
  }
  // Stopping mid-epoch and starting another is fine.
  loader.start_epoch(4);
  td::Batch b;
  ASSERT_TRUE(loader.next(&b));
  loader.start_epoch(5);
  ASSERT_TRUE(loader.next(&b));
  tt::expect_equal(b.images, loader.batch(5, 0).images);
  // The same seed gives the same augmented batches in a new loader.
  td::DataLoader again(ds, opt);
  tt::expect_equal(again.batch(1, 3).images, loader.batch(1, 3).images);
}

TEST(DataLoader, TrainValidationSplit) {
  const td::ImageDataset ds = random_dataset(103, 1, 2, 2);
  const auto [train, val] = td::train_validation_split(ds, 0.2, 7);
  EXPECT_EQ(val.size(), 20);
  EXPECT_EQ(train.size(), 83);
  std::vector<int64_t> all = tandem::to_vector<int64_t>(train.labels);
  const auto v = tandem::to_vector<int64_t>(val.labels);
  all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  for (int64_t i = 0; i < 103; ++i) EXPECT_EQ(all[static_cast<size_t>(i)], i);
  tt::expect_equal(val.images[3], ds.images[v[3]]);
  const auto [train2, val2] = td::train_validation_split(ds, 0.2, 7);
  tt::expect_equal(val2.labels, val.labels);
  const auto [train3, val3] = td::train_validation_split(ds, 0.2, 8);
  EXPECT_NE(tandem::to_vector<int64_t>(val3.labels), v);
  tt::expect_error([&] { td::train_validation_split(ds, 1.0, 0); },
                   "validation_fraction must be in [0, 1), got 1");
  tt::expect_error([&] { ds.subset({0, 103}); }, "index 103 out of range for 103 samples");
}

TEST(DataLoader, BadOptionsAreErrors) {
  const td::ImageDataset ds = random_dataset(10, 3, 4, 4);
  auto make = [&](td::LoaderOptions o) { td::DataLoader l(ds, o); };
  td::LoaderOptions o;
  o.batch_size = 0;
  tt::expect_error([&] { make(o); }, "batch_size must be positive, got 0");
  o = {};
  o.normalize = {{0.5}, {0.5}};
  tt::expect_error([&] { make(o); }, "one value per channel (3), got 1 and 1");
  o.normalize = {{0.5, 0.5, 0.5}, {0.5, 0.0, 0.5}};
  tt::expect_error([&] { make(o); }, "std values must be positive, got 0");
  o = {};
  o.augment.crop_padding = 5;
  tt::expect_error([&] { make(o); }, "crop_padding must be in [0, 4] for 4x4 images, got 5");
  o = {};
  o.augment.cutout = -1;
  tt::expect_error([&] { make(o); }, "cutout must be in [0, 4], got -1");
  o = {};
  o.workers = 0;
  tt::expect_error([&] { make(o); }, "workers and prefetch must be at least 1");
  o = {};
  o.mode = td::LoaderMode::DeviceResident;
  tt::expect_error([&] { make(o); }, "DeviceResident needs a CUDA device, got device cpu");
  td::ImageDataset bad = ds;
  bad.images = tandem::zeros({10, 3, 4, 4});
  tt::expect_error([&] { td::DataLoader l(bad, {}); },
                   "images must be a uint8 [N, C, H, W] CPU tensor, got float32 [10, 3, 4, 4]");
  bad = ds;
  bad.labels = tandem::zeros({9}, tandem::kInt64);
  tt::expect_error([&] { td::DataLoader l(bad, {}); },
                   "labels must be an int64 [N] CPU tensor with N = 10");
  tt::expect_error([&] { td::DataLoader l(td::ImageDataset{}, {}); }, "the data set is empty");
  td::DataLoader l(ds, {});
  td::Batch b;
  tt::expect_error([&] { l.next(&b); }, "call start_epoch(epoch) first");
  if (!tandem::cuda::is_available()) {
    o = {};
    o.device = tandem::Device(tandem::kCUDA, 0);
    tt::expect_error([&] { make(o); }, "requested but CUDA is not available");
  }
}

// ---- GPU paths against the CPU loader ------------------------------------------------

TEST(DataLoaderCuda, DeviceResidentMatchesTheCpuLoader) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const td::ImageDataset ds = random_dataset(301, 3, 32, 32);
  td::LoaderOptions opt;
  opt.batch_size = 64;
  opt.seed = 1234;
  opt.augment = {4, true, 8};
  opt.normalize = td::cifar10_normalize();
  td::DataLoader cpu(ds, opt);
  opt.device = tandem::Device(tandem::kCUDA, 0);
  opt.mode = td::LoaderMode::DeviceResident;
  td::DataLoader gpu(ds, opt);
  for (int64_t epoch : {0, 3}) {
    gpu.start_epoch(epoch);
    td::Batch b;
    int64_t i = 0;
    while (gpu.next(&b)) {
      ASSERT_TRUE(b.images.is_cuda());
      const td::Batch ref = cpu.batch(epoch, i++);
      tt::expect_equal(b.labels.cpu(), ref.labels);
      tt::expect_equal(b.images.cpu(), ref.images);  // same draws and table: bit-identical
    }
    EXPECT_EQ(i, cpu.num_batches());
  }
}

// upload_async reads its pinned buffers on the copy stream: each is recorded
// there (one pending event per block), so the pinned pool does not hand a
// block out again before the copy has read it.
TEST(DataLoaderCuda, UploadAsyncRecordsItsPinnedBuffersOnTheCopyStream) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const tandem::Device gpu(tandem::kCUDA, 0);
  Tensor images =
      tandem::full({64, 3, 32, 32}, 7.0, tandem::TensorOptions(tandem::kUInt8).pinned_memory(true));
  Tensor labels =
      tandem::full({64}, 3.0, tandem::TensorOptions(tandem::kInt64).pinned_memory(true));
  const tandem::cuda::Stream copy_stream = tandem::cuda::new_stream();
  const uint64_t before = tandem::cuda::memory_stats().pinned_pending_events;
  const td::detail::DeviceCopy c = td::detail::upload_async(images, labels, gpu, copy_stream);
  EXPECT_EQ(tandem::cuda::memory_stats().pinned_pending_events, before + 2);
  td::detail::wait_on_current_stream(c);
  tt::expect_equal(c.images.cpu(), images);
  tt::expect_equal(c.labels.cpu(), labels);
}

// Thrust's sort takes its temporary storage from the caching allocator (it
// once called cudaMalloc/cudaFree every epoch): more requests than the keys
// and the index, and none of them a new cudaMalloc once the cache is warm.
TEST(DataLoaderCuda, ShuffleSortTakesItsScratchFromTheCachingAllocator) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const tandem::Device gpu(tandem::kCUDA, 0);
  const int64_t n = 100003;
  // Warms the cache; only the host copy stays, so every block goes back.
  const Tensor first = td::detail::device_shuffled_order(7, n, 0, gpu).cpu();
  tandem::cuda::synchronize();
  const auto before = tandem::cuda::memory_stats();
  const Tensor again = td::detail::device_shuffled_order(7, n, 0, gpu);
  tandem::cuda::synchronize();
  const auto after = tandem::cuda::memory_stats();
  EXPECT_GT(after.num_alloc_requests - before.num_alloc_requests, 2u);
  EXPECT_EQ(after.num_device_allocs, before.num_device_allocs);
  tt::expect_equal(again.cpu(), first);
}

TEST(DataLoaderCuda, HostPrefetchCopiesMatchTheCpuLoader) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const td::ImageDataset ds = random_dataset(157, 3, 32, 32);
  td::LoaderOptions opt;
  opt.batch_size = 32;
  opt.augment = {4, true, 0};
  opt.normalize = td::cifar10_normalize();
  td::DataLoader cpu(ds, opt);
  opt.device = tandem::Device(tandem::kCUDA, 0);
  td::DataLoader gpu(ds, opt);
  gpu.start_epoch(2);
  td::Batch b;
  int64_t i = 0;
  std::vector<td::Batch> kept;  // batches stay valid while later ones arrive
  while (gpu.next(&b)) {
    ASSERT_TRUE(b.images.is_cuda());
    kept.push_back(b);
    (void)(b.images * 2.0);  // work on the current stream between batches
    ++i;
  }
  ASSERT_EQ(i, cpu.num_batches());
  for (int64_t k = 0; k < i; ++k) {
    tt::expect_equal(kept[k].images.cpu(), cpu.batch(2, k).images);
    tt::expect_equal(kept[k].labels.cpu(), cpu.batch(2, k).labels);
  }
}
