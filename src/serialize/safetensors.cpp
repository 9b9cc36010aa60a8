// save_safetensors / load_safetensors: tensors <-> files. Writes go through
// AtomicFile (temporary file in the same directory, fsync, rename, fsync of
// the directory); reads validate the header (safetensors_format.cpp) before
// any tensor is allocated, so a hostile file cannot make us allocate more
// than its own size.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <set>

#include "serialize/safetensors_format.h"
#include "tandem/autograd.h"
#include "tandem/serialize.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; tandem copies it byte for byte");

namespace tandem {

static_assert(kSafetensorsMaxHeaderBytes == safetensors::kMaxHeaderBytes,
              "the public and the internal header limits differ");

namespace {

std::string errno_text() { return std::strerror(errno); }

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// A file that appears at `path` only when commit() succeeds; until then it is
// "<path>.tmp.<pid>.<n>", removed again if the writer throws.
class AtomicFile {
 public:
  AtomicFile(std::string path, const char* who) : path_(std::move(path)), who_(who) {
    static std::atomic<uint64_t> counter{0};
    for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
      tmp_ = path_ + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
      fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ < 0 && errno != EEXIST) break;
    }
    TANDEM_CHECK(fd_ >= 0, who_, ": cannot create the temporary file '", tmp_, "' for '", path_,
                 "': ", errno_text());
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }

  void write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, std::min<size_t>(n, size_t{1} << 30));
      if (w < 0 && errno == EINTR) continue;
      TANDEM_CHECK(w > 0, who_, ": writing '", tmp_, "' (for '", path_,
                   "') failed: ", w < 0 ? errno_text() : std::string("no progress"));
      p += w;
      n -= static_cast<size_t>(w);
    }
  }

  // Data on disk, then the name: a crash leaves either the old or the new file.
  void commit() {
    TANDEM_CHECK(::fsync(fd_) == 0, who_, ": fsync of '", tmp_, "' failed: ", errno_text());
    const int fd = fd_;
    fd_ = -1;
    TANDEM_CHECK(::close(fd) == 0, who_, ": closing '", tmp_, "' failed: ", errno_text());
    TANDEM_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, who_, ": renaming '", tmp_, "' to '",
                 path_, "' failed: ", errno_text());
    committed_ = true;
    // Make the rename durable. Best effort: some file systems cannot fsync a
    // directory, and the new file is already in place.
    const int dir = ::open(directory_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
      (void)::fsync(dir);
      ::close(dir);
    }
  }

 private:
  std::string path_, tmp_;
  const char* who_;
  int fd_ = -1;
  bool committed_ = false;
};

class InputFile {
 public:
  explicit InputFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    TANDEM_CHECK(fd_ >= 0, "load_safetensors: cannot open '", path, "': ", errno_text());
    struct stat st;
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd_);
      TANDEM_FAIL("load_safetensors: '", path, "' is not a regular file");
    }
    size_ = static_cast<uint64_t>(st.st_size);
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  ~InputFile() { ::close(fd_); }
  uint64_t size() const { return size_; }

  void read(void* out, uint64_t n, uint64_t offset) {
    char* p = static_cast<char*>(out);
    while (n > 0) {
      const ssize_t r =
          ::pread(fd_, p, std::min<uint64_t>(n, uint64_t{1} << 30), static_cast<off_t>(offset));
      if (r < 0 && errno == EINTR) continue;
      TANDEM_CHECK(r >= 0, "load_safetensors: reading '", path_, "' failed: ", errno_text());
      TANDEM_CHECK(r > 0, "load_safetensors: '", path_,
                   "' ended early (did it shrink while read?)");
      p += r;
      n -= static_cast<uint64_t>(r);
      offset += static_cast<uint64_t>(r);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

}  // namespace

void save_safetensors(const std::string& path, const TensorList& tensors,
                      const Metadata& metadata) {
  std::set<std::string> names;
  for (const auto& kv : tensors) {
    TANDEM_CHECK(!kv.first.empty(), "save_safetensors: a tensor has an empty name");
    TANDEM_CHECK(kv.first != "__metadata__",
                 "save_safetensors: '__metadata__' is reserved and cannot name a tensor");
    TANDEM_CHECK(names.insert(kv.first).second, "save_safetensors: the name '", kv.first,
                 "' appears twice");
    TANDEM_CHECK(kv.second.defined(), "save_safetensors: tensor '", kv.first, "' is undefined");
  }
  // Data ordered by element size (largest first), then name, as the reference
  // writer does: with the header padded to 8 bytes every tensor is aligned.
  std::vector<const std::pair<std::string, Tensor>*> order;
  for (const auto& kv : tensors) order.push_back(&kv);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    const size_t ea = a->second.element_size(), eb = b->second.element_size();
    return ea != eb ? ea > eb : a->first < b->first;
  });
  std::vector<safetensors::Entry> entries;
  uint64_t offset = 0;
  for (const auto* kv : order) {
    safetensors::Entry e;
    e.name = kv->first;
    e.dtype = kv->second.dtype();
    e.shape = kv->second.sizes();
    e.begin = offset;
    offset += kv->second.nbytes();
    e.end = offset;
    entries.push_back(std::move(e));
  }
  const std::string header = safetensors::build_header(entries, metadata);

  AtomicFile file(path, "save_safetensors");
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(header.size() >> (8 * i));
  file.write(len, 8);
  file.write(header.data(), header.size());
  NoGradGuard no_grad;
  for (const auto* kv : order) {
    if (kv->second.numel() == 0) continue;
    const Tensor host = kv->second.detach().cpu();  // one tensor on the host at a time
    file.write(host.raw_data(), host.nbytes());
  }
  file.commit();
}

SafetensorsFile load_safetensors(const std::string& path, Device device) {
  const std::string what = "load_safetensors: '" + path + "'";
  InputFile file(path);
  unsigned char prefix[8] = {0};
  file.read(prefix, std::min<uint64_t>(8, file.size()), 0);
  const uint64_t n = safetensors::header_length(prefix, file.size(), what);
  std::string text(n, '\0');
  file.read(&text[0], n, 8);
  const safetensors::Header header =
      safetensors::parse_header(text.data(), n, file.size() - 8 - n, what);

  SafetensorsFile out;
  out.metadata = header.metadata;
  for (const auto& e : header.entries) {
    Tensor t = empty(e.shape, TensorOptions(e.dtype));
    if (e.end > e.begin) file.read(t.raw_data(), e.end - e.begin, 8 + n + e.begin);
    out.tensors.emplace(e.name, device.is_cpu() ? t : t.to(device));
  }
  return out;
}

}  // namespace tandem
