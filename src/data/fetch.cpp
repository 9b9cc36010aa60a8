// Getting CIFAR-10 into the binary layout: the cache check, importing a local
// copy (official tarball, binary directory, image-folder tree or archive),
// downloading with curl/wget, MD5, and running tar/curl as subprocesses.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/data_internal.h"
#include "data/image.h"
#include "tandem/data.h"

extern char** environ;

namespace tandem {
namespace data {

namespace fs = std::filesystem;

namespace {

// ---- MD5 (RFC 1321) ------------------------------------------------------------------

class Md5 {
 public:
  void update(const unsigned char* p, size_t n) {
    total_ += n;
    while (n > 0) {
      const size_t take = std::min(n, 64 - used_);
      std::memcpy(buf_ + used_, p, take);
      used_ += take;
      p += take;
      n -= take;
      if (used_ == 64) {
        block(buf_);
        used_ = 0;
      }
    }
  }
  std::string hex() {
    const uint64_t bits = total_ * 8;
    const unsigned char pad = 0x80;
    update(&pad, 1);
    const unsigned char zero = 0;
    while (used_ != 56) update(&zero, 1);
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(bits >> (8 * i));
    update(len, 8);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (uint32_t v : h_)
      for (int i = 0; i < 4; ++i) {
        const unsigned b = (v >> (8 * i)) & 0xFFu;
        out += digits[b >> 4];
        out += digits[b & 15];
      }
    return out;
  }

 private:
  static uint32_t rotl(uint32_t x, int c) { return (x << c) | (x >> (32 - c)); }
  void block(const unsigned char* p) {
    static const uint32_t k[64] = {
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
        0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
        0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
        0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
        0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
        0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
        0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
        0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
        0xeb86d391};
    static const int r[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                              5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                              4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                              6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};
    uint32_t m[16];
    for (int i = 0; i < 16; ++i)
      m[i] = static_cast<uint32_t>(p[4 * i]) | static_cast<uint32_t>(p[4 * i + 1]) << 8 |
             static_cast<uint32_t>(p[4 * i + 2]) << 16 | static_cast<uint32_t>(p[4 * i + 3]) << 24;
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3];
    for (int i = 0; i < 64; ++i) {
      uint32_t f;
      int g;
      if (i < 16) {
        f = (b & c) | (~b & d);
        g = i;
      } else if (i < 32) {
        f = (d & b) | (~d & c);
        g = (5 * i + 1) % 16;
      } else if (i < 48) {
        f = b ^ c ^ d;
        g = (3 * i + 5) % 16;
      } else {
        f = c ^ (b | ~d);
        g = (7 * i) % 16;
      }
      const uint32_t t = d;
      d = c;
      c = b;
      b = b + rotl(a + f + k[i] + m[g], r[i]);
      a = t;
    }
    h_[0] += a;
    h_[1] += b;
    h_[2] += c;
    h_[3] += d;
  }

  uint32_t h_[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
  unsigned char buf_[64] = {};
  size_t used_ = 0;
  uint64_t total_ = 0;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_archive(const std::string& path) {
  for (const char* ext : {".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar", ".tar.bz2"})
    if (ends_with(path, ext)) return true;
  return false;
}

bool has_binary_layout(const fs::path& dir) {
  std::error_code ec;
  return fs::exists(dir / cifar10_train_files()[0], ec);
}
bool has_image_tree(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir / "train", ec) && fs::is_directory(dir / "test", ec);
}

// `dir` itself or one of its sub-folders (up to two levels down) that holds the
// binary layout or an image tree; empty when none does.
fs::path find_data_root(const fs::path& dir, int depth = 2) {
  if (has_binary_layout(dir) || has_image_tree(dir)) return dir;
  if (depth == 0) return {};
  std::vector<fs::path> subs;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory()) subs.push_back(e.path());
  std::sort(subs.begin(), subs.end());
  for (const auto& s : subs) {
    fs::path found = find_data_root(s, depth - 1);
    if (!found.empty()) return found;
  }
  return {};
}

// A complete copy: every file present, the .bin sizes whole records.
bool cache_complete(const fs::path& bin_dir) {
  std::error_code ec;
  std::vector<std::string> files = cifar10_train_files();
  files.push_back(cifar10_test_file());
  for (const auto& f : files) {
    const auto size = fs::file_size(bin_dir / f, ec);
    if (ec || size == 0 || size % kCifarRecordBytes != 0) return false;
  }
  return fs::exists(bin_dir / cifar10_meta_file(), ec);
}

// The image tree root/train/<class>/*, root/test/<class>/* written as binary
// batches into bin_dir: training samples interleaved class by class (sample k
// of every class, then sample k + 1, ...) and split over five files.
void import_image_tree(const fs::path& root, const fs::path& bin_dir, int threads) {
  const char* what = "prepare_cifar10";
  const auto train_classes = detail::list_class_folders((root / "train").string(), what);
  const auto test_classes = detail::list_class_folders((root / "test").string(), what);
  TANDEM_CHECK(train_classes.size() == 10, what, ": ", (root / "train").string(), ": expected 10 ",
               "class folders (airplane .. truck, sorting in label order), found ",
               train_classes.size());
  TANDEM_CHECK(test_classes == train_classes, what, ": ", (root / "test").string(),
               ": its class folders differ from those of ", (root / "train").string());
  ImageFolderOptions opt;
  opt.threads = threads;
  opt.height = 32;
  opt.width = 32;
  const ImageDataset train = read_image_folder((root / "train").string(), opt);
  const ImageDataset test = read_image_folder((root / "test").string(), opt);

  std::vector<std::pair<int64_t, int64_t>> rank_label(static_cast<size_t>(train.size()));
  std::vector<int64_t> seen(10, 0);
  const int64_t* lab = train.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < train.size(); ++i)
    rank_label[static_cast<size_t>(i)] = {seen[lab[i]]++, i};
  std::sort(rank_label.begin(), rank_label.end(), [&](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : lab[a.second] < lab[b.second];
  });
  std::vector<int64_t> order;
  for (const auto& rl : rank_label) order.push_back(rl.second);

  fs::create_directories(bin_dir);
  const auto nfiles = static_cast<int64_t>(cifar10_train_files().size());
  const int64_t per_file = (train.size() + nfiles - 1) / nfiles;
  for (int64_t f = 0; f < nfiles; ++f) {
    const int64_t begin = std::min(train.size(), f * per_file);
    const int64_t end = std::min(train.size(), begin + per_file);
    std::vector<int64_t> part(order.begin() + begin, order.begin() + end);
    TANDEM_CHECK(!part.empty(), what, ": ", (root / "train").string(), ": only ", train.size(),
                 " training images; need at least 5 (one per batch file)");
    write_cifar10_file(train.subset(part),
                       (bin_dir / cifar10_train_files()[static_cast<size_t>(f)]).string());
  }
  write_cifar10_file(test, (bin_dir / cifar10_test_file()).string());
  std::string meta;
  for (const auto& c : train_classes) meta += c + "\n";
  detail::write_file_atomic((bin_dir / cifar10_meta_file()).string(), meta.data(), meta.size(),
                            what);
}

// Copies a binary-layout directory into bin_dir after reading it (all checks).
void import_binary_dir(const fs::path& src, const fs::path& bin_dir) {
  (void)read_cifar10(src.string());
  if (fs::equivalent(src, bin_dir)) return;
  fs::create_directories(bin_dir);
  std::vector<std::string> files = cifar10_train_files();
  files.push_back(cifar10_test_file());
  files.push_back(cifar10_meta_file());  // last: its presence marks a complete copy
  for (const auto& f : files) {
    const fs::path tmp = bin_dir / (f + ".partial");
    fs::copy_file(src / f, tmp, fs::copy_options::overwrite_existing);
    fs::rename(tmp, bin_dir / f);
  }
}

void unpack(const fs::path& archive, const fs::path& into) {
  fs::remove_all(into);
  fs::create_directories(into);
  std::string out;
  const int rc = detail::run_command({"tar", "-xf", archive.string(), "-C", into.string()}, &out);
  TANDEM_CHECK(rc == 0, "prepare_cifar10: unpacking ", archive.string(), " with tar failed (exit ",
               rc, "): ", out,
               ends_with(archive.string(), "xz") ? " (a .tar.xz needs xz-utils installed)" : "");
}

void import_unpacked(const fs::path& tmp, const fs::path& bin_dir, const std::string& source,
                     int threads) {
  const fs::path root = find_data_root(tmp);
  TANDEM_CHECK(!root.empty(), "prepare_cifar10: ", source, " holds neither the CIFAR-10 binary ",
               "files (data_batch_1.bin ..) nor an image tree (train/<class>/, test/<class>/)");
  if (has_binary_layout(root)) {
    import_binary_dir(root, bin_dir);
  } else {
    import_image_tree(root, bin_dir, threads);
  }
}

void import_local(const std::string& source, const fs::path& cache, const fs::path& bin_dir,
                  const Cifar10Options& opt) {
  std::error_code ec;
  TANDEM_CHECK(fs::exists(source, ec), "prepare_cifar10: ", source,
               ": not found (from Cifar10Options::source or TANDEM_CIFAR10)");
  if (fs::is_directory(source, ec)) {
    import_unpacked(source, bin_dir, source, opt.threads);
    return;
  }
  TANDEM_CHECK(is_archive(source), "prepare_cifar10: ", source,
               ": not a directory or a .tar/.tar.gz/.tgz/.tar.xz archive");
  if (fs::path(source).filename() == "cifar-10-binary.tar.gz" && !opt.md5.empty()) {
    const std::string got = md5_file(source);
    TANDEM_CHECK(got == opt.md5, "prepare_cifar10: ", source, ": md5 ", got, " differs from the ",
                 "official ", opt.md5, "; the file is damaged or not the official release");
  }
  const fs::path tmp = cache / "unpack.tmp";
  unpack(source, tmp);
  import_unpacked(tmp, bin_dir, source, opt.threads);
  fs::remove_all(tmp);
}

// Downloads and imports the official tarball; returns "" on success or why not.
std::string try_download(const Cifar10Options& opt, const fs::path& cache,
                         const fs::path& bin_dir) {
  std::vector<std::string> argv;
  const fs::path partial = cache / "cifar-10-binary.tar.gz.partial";
  if (detail::on_path("curl")) {
    argv = {"curl", "-fsSL", "--retry",        "2",    "--connect-timeout",
            "20",   "-o",    partial.string(), opt.url};
  } else if (detail::on_path("wget")) {
    argv = {"wget", "-q", "--tries=2", "--timeout=20", "-O", partial.string(), opt.url};
  } else {
    return "neither curl nor wget is installed";
  }
  std::string out;
  const int rc = detail::run_command(argv, &out);
  if (rc != 0) {
    fs::remove(partial);
    return argv[0] + " " + opt.url + " failed (exit " + std::to_string(rc) + "): " + out;
  }
  const std::string got = md5_file(partial.string());
  if (!opt.md5.empty() && got != opt.md5) {
    fs::remove(partial);
    return "downloaded " + opt.url + " but its md5 is " + got + ", not " + opt.md5;
  }
  const fs::path tarball = cache / "cifar-10-binary.tar.gz";
  fs::rename(partial, tarball);
  const fs::path tmp = cache / "unpack.tmp";
  unpack(tarball, tmp);
  import_unpacked(tmp, bin_dir, opt.url, opt.threads);
  fs::remove_all(tmp);
  fs::remove(tarball);
  return "";
}

}  // namespace

namespace detail {

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  std::stringstream ss(path);
  for (std::string dir; std::getline(ss, dir, ':');) {
    if (!dir.empty() && ::access((fs::path(dir) / program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

int run_command(const std::vector<std::string>& argv, std::string* output) {
  char log_name[] = "/tmp/tandem-cmd-XXXXXX";
  const int fd = ::mkstemp(log_name);
  TANDEM_CHECK(fd >= 0, "run_command: cannot create a temporary file: ", std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fd, 1);
  posix_spawn_file_actions_adddup2(&actions, fd, 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int err = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fd);
  int status = 0;
  if (err == 0) {
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  std::string log;
  {
    std::ifstream in(log_name, std::ios::binary);
    std::ostringstream os;
    os << in.rdbuf();
    log = os.str();
  }
  ::unlink(log_name);
  if (log.size() > 2000) log = "..." + log.substr(log.size() - 2000);
  while (!log.empty() && (log.back() == '\n' || log.back() == ' ')) log.pop_back();
  if (output != nullptr) *output = log;
  if (err != 0) {
    if (output != nullptr) *output = "cannot run " + argv[0] + ": " + std::strerror(err);
    return 127;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

}  // namespace detail

std::string md5_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TANDEM_CHECK(in.good(), "md5_file: ", path, ": cannot open: ", std::strerror(errno));
  Md5 md5;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    md5.update(reinterpret_cast<const unsigned char*>(buf.data()),
               static_cast<size_t>(in.gcount()));
  }
  TANDEM_CHECK(!in.bad(), "md5_file: ", path, ": read error");
  return md5.hex();
}

std::string default_cifar10_cache_dir() {
  if (const char* d = std::getenv("TANDEM_DATA_DIR"); d != nullptr && *d != '\0')
    return (fs::path(d) / "cifar10").string();
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0')
    return (fs::path(home) / ".cache" / "tandem" / "cifar10").string();
  return (fs::temp_directory_path() / "tandem" / "cifar10").string();
}

std::string prepare_cifar10(const Cifar10Options& options) {
  const fs::path cache =
      options.cache_dir.empty() ? default_cifar10_cache_dir() : options.cache_dir;
  const fs::path bin_dir = cache / "cifar-10-batches-bin";
  if (cache_complete(bin_dir)) return bin_dir.string();
  std::error_code ec;
  fs::create_directories(cache, ec);
  TANDEM_CHECK(!ec, "prepare_cifar10: cannot create the cache directory ", cache.string(), ": ",
               ec.message(), " (choose another with Cifar10Options::cache_dir or TANDEM_DATA_DIR)");

  std::string source = options.source;
  if (source.empty()) {
    if (const char* env = std::getenv("TANDEM_CIFAR10"); env != nullptr) source = env;
  }
  if (!source.empty()) {
    import_local(source, cache, bin_dir, options);
    TANDEM_CHECK(cache_complete(bin_dir), "prepare_cifar10: importing ", source,
                 " left an incomplete copy in ", bin_dir.string());
    return bin_dir.string();
  }
  std::string why = "downloading is off (Cifar10Options::download = false)";
  if (options.download) {
    why = try_download(options, cache, bin_dir);
    if (why.empty() && cache_complete(bin_dir)) return bin_dir.string();
  }
  TANDEM_FAIL(
      "prepare_cifar10: CIFAR-10 is not in the cache ", bin_dir.string(),
      ", no local copy was given (Cifar10Options::source and TANDEM_CIFAR10 are empty) ",
      "and it could not be downloaded: ", why,
      ".\nTo proceed, do one of:\n"
      "  1. on a machine with internet, download ",
      options.url, " (md5 ", options.md5,
      "), copy it here and set TANDEM_CIFAR10=/path/to/cifar-10-binary.tar.gz;\n"
      "  2. set TANDEM_CIFAR10 to an image-folder copy (train/<class>/*.jpg|png and "
      "test/<class>/..., ten class folders in label order) or an archive of one; in a "
      "tandem checkout: TANDEM_CIFAR10=../shared/data/cifar10-jpeg.tar.xz;\n"
      "  3. set TANDEM_CIFAR10 to a directory holding data_batch_1.bin .. data_batch_5.bin, "
      "test_batch.bin and batches.meta.txt.\n"
      "(Cifar10Options::source does the same as TANDEM_CIFAR10; the imported copy is cached "
      "in ",
      cache.string(), ", set by Cifar10Options::cache_dir or TANDEM_DATA_DIR.)");
}

Cifar10 load_cifar10(const Cifar10Options& options) {
  return read_cifar10(prepare_cifar10(options));
}

}  // namespace data
}  // namespace tandem
