// Checkpoints (include/tandem/serialize.h): safetensors round trips of every
// dtype (CPU and CUDA), a file written by an independent standard-library
// Python writer (tests/safetensors_ref.py) read back and ours read by its
// reader, the corpus of hand-made bad files (tests/data/safetensors/bad, one
// violation each, each with its message), truncations of a good file, save
// errors, atomic writes (a writer SIGKILLed mid-write and a write that fails
// with an I/O error leave the old file loadable), module save/load with every
// mismatch named, and bit-exact training resume through save_checkpoint with
// each built-in optimizer and a scheduler.
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "serialize/safetensors_format.h"
#include "test_util.h"

namespace {

using namespace tandem;  // NOLINT
using tt::expect_error;

// ---- Helpers -----------------------------------------------------------------

// A fresh directory per test, removed afterwards.
class SerializeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = ::testing::TempDir() + "tandem_serialize_XXXXXX";
    ASSERT_NE(::mkdtemp(&templ[0]), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    ::chmod(dir_.c_str(), 0700);
    const std::string cmd = "rm -rf '" + dir_ + "'";
    EXPECT_EQ(std::system(cmd.c_str()), 0);
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    if (DIR* d = ::opendir(dir_.c_str())) {
      while (const dirent* e = ::readdir(d)) {
        const std::string n = e->d_name;
        if (n != "." && n != "..") out.push_back(n);
      }
      ::closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string dir_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}
void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Random tensors of every dtype, odd shapes, a scalar and an empty tensor.
TensorList random_tensors(Device device) {
  TensorList out = {{"f32", tt::random_tensor({7, 3}, kFloat32, -5, 5)},
                    {"f64", tt::random_tensor({33}, kFloat64, -1e6, 1e6)},
                    {"i32", tt::random_tensor({5, 1, 3}, kInt32, -2e9, 2e9)},
                    {"i64", tt::random_tensor({9}, kInt64, -4e18, 4e18)},
                    {"u8", tt::random_tensor({13}, kUInt8, 0, 255)},
                    {"block.0.scalar", tt::random_tensor({}, kFloat64)},
                    {"empty", tt::random_tensor({0, 5}, kFloat32)}};
  for (auto& kv : out) kv.second = kv.second.to(device);
  return out;
}

void expect_same_tensors(const TensorList& saved, const SafetensorsFile& loaded, Device device) {
  ASSERT_EQ(loaded.tensors.size(), saved.size());
  for (const auto& kv : saved) {
    SCOPED_TRACE(kv.first);
    const auto it = loaded.tensors.find(kv.first);
    ASSERT_NE(it, loaded.tensors.end());
    EXPECT_EQ(it->second.device(), device);
    EXPECT_EQ(it->second.sizes(), kv.second.sizes());
    tt::expect_equal(it->second, kv.second);
  }
}

// ---- Round trips ---------------------------------------------------------------

TEST_F(SerializeTest, RoundTripsEveryDtypeOnTheCpu) {
  const TensorList saved = random_tensors(Device(kCPU));
  const Metadata meta = {{"epoch", "7"}, {"note", "caf\xc3\xa9 \"quoted\" \\ {json}"}};
  save_safetensors(path("a.safetensors"), saved, meta);
  const SafetensorsFile loaded = load_safetensors(path("a.safetensors"));
  expect_same_tensors(saved, loaded, Device(kCPU));
  EXPECT_EQ(loaded.metadata, meta);
  // Ordered by name.
  std::vector<std::string> names;
  for (const auto& kv : loaded.tensors) names.push_back(kv.first);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  // Only the file itself remains (no temporary file).
  EXPECT_EQ(files(), std::vector<std::string>{"a.safetensors"});
}

TEST_F(SerializeTest, WritesAlignedDataAndAPaddedHeader) {
  save_safetensors(path("a.safetensors"), random_tensors(Device(kCPU)));
  const std::string bytes = read_bytes(path("a.safetensors"));
  const auto h = safetensors::parse(reinterpret_cast<const unsigned char*>(bytes.data()),
                                    bytes.size(), "test");
  EXPECT_EQ(h.data_start % 8, 0u);
  for (const auto& e : h.entries) EXPECT_EQ(e.begin % element_size(e.dtype), 0u) << e.name;
  EXPECT_EQ(bytes[8], '{');
}

TEST_F(SerializeTest, OverwritesAnExistingFile) {
  const TensorList first = {{"a", tt::random_tensor({3}, kFloat32)}};
  const TensorList second = {{"b", tt::random_tensor({4, 2}, kInt64, -9, 9)}};
  save_safetensors(path("x.safetensors"), first);
  save_safetensors(path("x.safetensors"), second, {{"k", "v"}});
  const SafetensorsFile loaded = load_safetensors(path("x.safetensors"));
  expect_same_tensors(second, loaded, Device(kCPU));
  EXPECT_EQ(files(), std::vector<std::string>{"x.safetensors"});
}

TEST_F(SerializeTest, RoundTripsEveryDtypeOnCuda) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const TensorList saved = random_tensors(Device(kCUDA, 0));
  save_safetensors(path("a.safetensors"), saved, {{"device", "cuda"}});
  expect_same_tensors(saved, load_safetensors(path("a.safetensors"), Device(kCUDA, 0)),
                      Device(kCUDA, 0));
  // The bytes are the same as those of the tensors saved from the host.
  TensorList host;
  for (const auto& kv : saved) host.emplace_back(kv.first, kv.second.cpu());
  save_safetensors(path("b.safetensors"), host, {{"device", "cuda"}});
  EXPECT_EQ(read_bytes(path("a.safetensors")), read_bytes(path("b.safetensors")));
  expect_same_tensors(host, load_safetensors(path("a.safetensors")), Device(kCPU));
}

// ---- Interoperability: the standard-library Python reader and writer -------------

// The tests/ folder and the Python interpreter: compiled in, overridable at run
// time (the GPU bundle carries tests/data elsewhere, next to another python3).
std::string source_dir() {
  const char* e = std::getenv("TANDEM_TEST_SOURCE_DIR");
  return e != nullptr && *e != '\0' ? std::string(e) : std::string(TANDEM_TEST_SOURCE_DIR);
}
std::string python3() {
  const char* e = std::getenv("TANDEM_TEST_PYTHON3");
  return e != nullptr && *e != '\0' ? std::string(e) : std::string(TANDEM_PYTHON3);
}
std::string data_dir() { return source_dir() + "/data/safetensors"; }

TEST_F(SerializeTest, ReadsAFileWrittenByThePythonReferenceWriter) {
  const SafetensorsFile f = load_safetensors(data_dir() + "/good/python_all_dtypes.safetensors");
  EXPECT_EQ(f.metadata, (Metadata{{"format", "pt"}, {"written_by", "tests/safetensors_ref.py"}}));
  ASSERT_EQ(f.tensors.size(), 8u);
  std::vector<float> f32(6);
  for (int i = 0; i < 6; ++i) f32[i] = static_cast<float>(i * 0.25 - 1.0);
  std::vector<double> f64(5);
  for (int i = 0; i < 5; ++i) f64[i] = (i + 1) / 3.0;
  tt::expect_equal(f.tensors.at("f32"), from_vector(f32, {2, 3}));
  tt::expect_equal(f.tensors.at("f64"), from_vector(f64, {5}));
  EXPECT_EQ(to_vector<int32_t>(f.tensors.at("i32")),
            (std::vector<int32_t>{-7, 0, 2147483647, -2147483647 - 1}));
  EXPECT_EQ(to_vector<int64_t>(f.tensors.at("i64")),
            (std::vector<int64_t>{INT64_MIN, INT64_MAX, 42}));
  EXPECT_EQ(to_vector<uint8_t>(f.tensors.at("u8")), (std::vector<uint8_t>{0, 1, 127, 128, 255}));
  EXPECT_EQ(f.tensors.at("scalar").dim(), 0);
  EXPECT_EQ(f.tensors.at("scalar").item<double>(), M_PI);
  EXPECT_EQ(f.tensors.at("empty").sizes(), (Shape{0, 3}));
  EXPECT_EQ(f.tensors.at("nested.name.weight").sizes(), (Shape{1, 1, 1}));
  EXPECT_EQ(f.tensors.at("nested.name.weight").item<float>(), 2.5f);
}

// Runs the Python reader on `file` and returns its JSON output.
nlohmann::json python_read(const std::string& file) {
  const std::string cmd =
      "'" + python3() + "' '" + source_dir() + "/safetensors_ref.py' read '" + file + "'";
  FILE* p = ::popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << cmd;
  return nlohmann::json::parse(out);
}

TEST_F(SerializeTest, ThePythonReferenceReaderReadsOurFiles) {
  TANDEM_SKIP_IF(NoPython, python3().empty(), "no python3 found at configure time");
  const TensorList saved = random_tensors(Device(kCPU));
  save_safetensors(path("ours.safetensors"), saved, {{"epoch", "3"}});
  const nlohmann::json j = python_read(path("ours.safetensors"));
  EXPECT_EQ(j.at("__metadata__").at("epoch"), "3");
  for (const auto& kv : saved) {
    SCOPED_TRACE(kv.first);
    const nlohmann::json& t = j.at(kv.first);
    EXPECT_EQ(t.at("dtype"), safetensors::dtype_code(kv.second.dtype()));
    EXPECT_EQ(t.at("shape").get<Shape>(), kv.second.sizes());
    const nlohmann::json& v = t.at("values");
    if (is_floating(kv.second.dtype())) {
      EXPECT_EQ(v.get<std::vector<double>>(), tt::to_doubles(kv.second));  // exact
    } else {
      std::vector<int64_t> expected;
      for (double x : tt::to_doubles(kv.second)) expected.push_back(static_cast<int64_t>(x));
      if (kv.second.dtype() == kInt64) expected = to_vector<int64_t>(kv.second);
      EXPECT_EQ(v.get<std::vector<int64_t>>(), expected);
    }
  }
}

// ---- Bad files ---------------------------------------------------------------------

// Every file in tests/data/safetensors/bad and the message it must produce.
const std::vector<std::pair<std::string, std::string>>& bad_corpus() {
  static const std::vector<std::pair<std::string, std::string>> k = {
      {"dtype_not_string", "dtype must be a string"},
      {"duplicate_key", "has the key 'a' twice"},
      {"empty_name", "a tensor has an empty name"},
      {"fractional_dim", "shape must hold non-negative integers, got 2.0"},
      {"gap", "bytes [4, 8) of the data belong to no tensor"},
      {"header_length_zero", "the header length 0 is too small"},
      {"header_past_end", "the header length 1000 runs past the end of the file (56 bytes"},
      {"header_too_large", "the header length 100000001 is larger than the limit of 100000000"},
      {"info_not_object", "tensor 'a': expected an object with dtype, shape and data_offsets"},
      {"invalid_utf8", "the header is not valid JSON"},
      {"metadata_not_object", "__metadata__ must be an object of strings"},
      {"metadata_not_string", "__metadata__ value of 'epoch' must be a string, got 3"},
      {"missing_offsets", "tensor 'a': missing field 'data_offsets'"},
      {"negative_dim", "shape must hold non-negative integers, got -2"},
      {"not_an_object", "the header does not start with '{'"},
      {"not_json", "the header is not valid JSON"},
      {"offsets_not_pair", "data_offsets must be [begin, end], got [0]"},
      {"offsets_reversed", "data_offsets [8, 0] end before they begin"},
      {"overlap", "tensors 'a' [0, 8) and 'b' [4, 12) overlap"},
      {"shape_not_array", "shape must be an array, got 2"},
      {"shape_overflow", "has more bytes than fit in 64 bits"},
      {"size_mismatch",
       "tensor 'a' (F32, shape [2, 3]) needs 24 bytes but its data_offsets [0, 8] "
       "hold 8"},
      {"too_deep", "nests deeper than 3 levels"},
      {"too_short", "the file is 3 bytes, too short"},
      {"trailing_bytes", "the last 8 bytes of the data belong to no tensor"},
      {"truncated_data", "data_offsets [0, 16] run past the end of the data (8 bytes"},
      {"unknown_field", "tensor 'a': unknown field 'extra_field'"},
      {"unsupported_dtype", "dtype 'BF16' is not supported (supported: F32, F64, I32, I64, U8)"},
  };
  return k;
}

TEST_F(SerializeTest, RejectsEveryBadFileOfTheCorpusWithItsMessage) {
  for (const auto& kv : bad_corpus()) {
    SCOPED_TRACE(kv.first);
    const std::string file = data_dir() + "/bad/" + kv.first + ".safetensors";
    expect_error([&] { load_safetensors(file); },
                 {"load_safetensors: '", file.c_str(), kv.second.c_str()});
    // The in-memory parser (the fuzz target's) says the same.
    const std::string bytes = read_bytes(file);
    expect_error(
        [&] {
          safetensors::parse(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                             "mem");
        },
        kv.second.c_str());
  }
}

TEST_F(SerializeTest, TheBadCorpusTableListsEveryFileInTheDirectory) {
  std::vector<std::string> listed, present;
  for (const auto& kv : bad_corpus()) listed.push_back(kv.first + ".safetensors");
  DIR* d = ::opendir((data_dir() + "/bad").c_str());
  ASSERT_NE(d, nullptr);
  while (const dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") present.push_back(n);
  }
  ::closedir(d);
  std::sort(listed.begin(), listed.end());
  std::sort(present.begin(), present.end());
  EXPECT_EQ(listed, present);
}

TEST_F(SerializeTest, RejectsEveryTruncationOfAGoodFile) {
  save_safetensors(path("good.safetensors"), random_tensors(Device(kCPU)), {{"a", "b"}});
  const std::string bytes = read_bytes(path("good.safetensors"));
  for (size_t n = 0; n < bytes.size(); n += 1 + n / 64) {
    write_bytes(path("cut.safetensors"), bytes.substr(0, n));
    EXPECT_THROW(load_safetensors(path("cut.safetensors")), Error) << n << " bytes";
  }
  write_bytes(path("cut.safetensors"), bytes);
  EXPECT_NO_THROW(load_safetensors(path("cut.safetensors")));
}

TEST_F(SerializeTest, ReportsFilesThatCannotBeRead) {
  expect_error([&] { load_safetensors(path("missing.safetensors")); },
               {"load_safetensors: cannot open '", "missing.safetensors", "No such file"});
  expect_error([&] { load_safetensors(dir_); }, "is not a regular file");
}

TEST_F(SerializeTest, SaveRejectsBadNamesAndTensors) {
  const Tensor t = tt::random_tensor({3}, kFloat32);
  const std::string p = path("x.safetensors");
  expect_error(
      [&] {
        save_safetensors(p, {{"", t}});
      },
      "save_safetensors: a tensor has an empty name");
  expect_error([&] { save_safetensors(p, {{"a", t}, {"a", t}}); }, "the name 'a' appears twice");
  expect_error([&] { save_safetensors(p, {{"__metadata__", t}}); }, "'__metadata__' is reserved");
  expect_error([&] { save_safetensors(p, {{"a", Tensor()}}); }, "tensor 'a' is undefined");
  expect_error([&] { save_safetensors(p, {{"bad\xff", t}}); }, "is not valid UTF-8");
  expect_error([&] { save_safetensors(p, {{"a", t}}, {{"k", "bad\xfe"}}); }, "is not valid UTF-8");
  expect_error(
      [&] {
        save_safetensors(path("no/such/dir/x.safetensors"), {{"a", t}});
      },
      {"save_safetensors: cannot create the temporary file", "No such file"});
  EXPECT_TRUE(files().empty());
}

// ---- Atomic writes ------------------------------------------------------------------

bool has_temporary_file(const std::vector<std::string>& names) {
  for (const auto& n : names)
    if (n.find(".tmp.") != std::string::npos) return true;
  return false;
}

TEST_F(SerializeTest, AWriterKilledMidWriteLeavesTheOldFileLoadable) {
  const std::string p = path("ckpt.safetensors");
  const TensorList old = {{"w", tt::random_tensor({17, 5}, kFloat64)}};
  save_safetensors(p, old, {{"version", "old"}});
  // 64 MiB: big enough that the child is still writing (or syncing) its
  // temporary file when the parent sees it appear.
  const TensorList big = {{"w", full({8 << 20}, 1.5, kFloat64)}};
  bool killed_mid_write = false;
  for (int attempt = 0; attempt < 5 && !killed_mid_write; ++attempt) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      try {
        save_safetensors(p, big, {{"version", "new"}});
      } catch (...) {
        ::_exit(3);
      }
      ::_exit(0);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      if (has_temporary_file(files())) {
        ::kill(child, SIGKILL);
        break;
      }
      int status = 0;
      if (::waitpid(child, &status, WNOHANG) == child) break;  // finished too soon: retry
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    // Whatever moment the kill hit, the file is a whole checkpoint: the old
    // one, or (killed after its rename) the new one; then try again.
    const SafetensorsFile f = load_safetensors(p);
    killed_mid_write =
        WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && f.metadata.at("version") == "old";
    if (!killed_mid_write) save_safetensors(p, old, {{"version", "old"}});  // start over
  }
  ASSERT_TRUE(killed_mid_write) << "the child never got killed while writing";
  const SafetensorsFile f = load_safetensors(p);
  EXPECT_EQ(f.metadata.at("version"), "old");
  expect_same_tensors(old, f, Device(kCPU));
  // The killed writer's temporary file is left behind (nothing can remove it),
  // beside the intact checkpoint.
  EXPECT_TRUE(has_temporary_file(files()));
}

// A write that fails half way (here: the file size limit, EFBIG) throws and
// removes its temporary file; the old checkpoint is untouched.
TEST_F(SerializeTest, AWriteThatFailsLeavesTheOldFileAndNoTemporaryFile) {
  const std::string p = path("ckpt.safetensors");
  const TensorList old = {{"w", tt::random_tensor({9, 7}, kFloat32)}};
  save_safetensors(p, old, {{"version", "old"}});
  const std::string before = read_bytes(p);

  struct rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  struct rlimit small = saved;
  small.rlim_cur = 1 << 20;
  void (*old_handler)(int) = ::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  bool threw = false;
  std::string message;
  try {
    save_safetensors(p, {{"w", zeros({1 << 20}, kFloat32)}}, {{"version", "new"}});
  } catch (const Error& e) {
    threw = true;
    message = e.message();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  ::signal(SIGXFSZ, old_handler);
  ASSERT_TRUE(threw);
  EXPECT_NE(message.find("save_safetensors: writing '"), std::string::npos) << message;
  EXPECT_NE(message.find("File too large"), std::string::npos) << message;
  EXPECT_EQ(read_bytes(p), before);
  EXPECT_EQ(files(), std::vector<std::string>{"ckpt.safetensors"});
  expect_same_tensors(old, load_safetensors(p), Device(kCPU));
}

// The message of the tandem::Error that `fn` throws ("" if none, "setuid: ..."
// if the child could not drop its privileges), run in a child process as the
// unprivileged user nobody: root is not denied by a directory's permissions.
std::string error_as_nobody(const std::function<void()>& fn) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    std::string message;
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) {
      message = std::string("setuid: ") + std::strerror(errno);
    } else {
      try {
        fn();
      } catch (const tandem::Error& e) {
        message = e.what();
      }
    }
    const ssize_t written = ::write(fds[1], message.data(), message.size());
    ::_exit(written == static_cast<ssize_t>(message.size()) ? 0 : 1);
  }
  ::close(fds[1]);
  std::string out;
  char buf[1024];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) out += " (the child process failed)";
  return out;
}

// The directory is read-only to its owner: the save cannot create its
// temporary file, says so, and the old file is intact. As root (who ignores
// the permission bits) the directory belongs to nobody and the save runs as
// nobody in a child process, the same situation for an ordinary user.
TEST_F(SerializeTest, AnUnwritableDirectoryLeavesTheOldFile) {
  const std::string p = path("ckpt.safetensors");
  const TensorList old = {{"w", tt::random_tensor({4}, kInt32, -100, 100)}};
  save_safetensors(p, old);
  const TensorList next = {{"w", tt::random_tensor({4}, kInt32, -9, 9)}};
  const bool root = ::geteuid() == 0;
  if (root) {
    ASSERT_EQ(::chown(dir_.c_str(), 65534, 65534), 0) << std::strerror(errno);
  }
  ASSERT_EQ(::chmod(dir_.c_str(), 0500), 0);
  std::string message;
  if (root) {
    message = error_as_nobody([&] { save_safetensors(p, next); });
  } else {
    ASSERT_NE(::access(dir_.c_str(), W_OK), 0) << "the directory is still writable";
    try {
      save_safetensors(p, next);
    } catch (const tandem::Error& e) {
      message = e.what();
    }
  }
  EXPECT_NE(message.find("save_safetensors: cannot create the temporary file"), std::string::npos)
      << message;
  EXPECT_NE(message.find("Permission denied"), std::string::npos) << message;
  EXPECT_EQ(files(), std::vector<std::string>{"ckpt.safetensors"});
  expect_same_tensors(old, load_safetensors(p), Device(kCPU));
}

// ---- Modules ----------------------------------------------------------------------

struct NetImpl : nn::Module {
  NetImpl(int64_t in, int64_t hidden)
      : Module("Net"),
        fc1(register_module("fc1", nn::Linear(in, hidden))),
        bn(register_module("bn", nn::BatchNorm1d(hidden))),
        fc2(register_module("fc2", nn::Linear(hidden, 3))) {}
  Tensor forward(const Tensor& x) override { return fc2(relu(bn(fc1(x)))); }
  nn::Linear fc1;
  nn::BatchNorm1d bn;
  nn::Linear fc2;
};
TANDEM_MODULE(Net);

std::vector<std::vector<double>> values_of(const nn::Module& m) {
  std::vector<std::vector<double>> out;
  for (const auto& kv : m.state_dict()) out.push_back(tt::to_doubles(kv.second));
  return out;
}

TEST_F(SerializeTest, SavesAndLoadsAModuleWithItsBuffers) {
  manual_seed(3);
  Net a(5, 7);
  a->train();
  a(randn({11, 5}));  // running statistics and num_batches_tracked move off their defaults
  tandem::save(a, path("net.safetensors"), {{"epoch", "2"}});
  Net b(5, 7);
  ASSERT_NE(values_of(*a), values_of(*b));
  const Metadata meta = tandem::load(b, path("net.safetensors"));
  EXPECT_EQ(meta.at("epoch"), "2");
  EXPECT_EQ(values_of(*a), values_of(*b));
  EXPECT_EQ(b->bn->num_batches_tracked.item<int64_t>(), 1);
  EXPECT_TRUE(b->fc1->weight.requires_grad());  // parameters stay parameters
  // The file is plain safetensors with the module's names.
  const SafetensorsFile f = load_safetensors(path("net.safetensors"));
  std::vector<std::string> names;
  for (const auto& kv : f.tensors) names.push_back(kv.first);
  EXPECT_EQ(names, (std::vector<std::string>{"bn.bias", "bn.num_batches_tracked", "bn.running_mean",
                                             "bn.running_var", "bn.weight", "fc1.bias",
                                             "fc1.weight", "fc2.bias", "fc2.weight"}));
}

TEST_F(SerializeTest, LoadsIntoAModuleOnCuda) {
  TANDEM_SKIP_WITHOUT_CUDA();
  Net a(4, 6);
  tandem::save(a, path("net.safetensors"));
  Net b(4, 6);
  b->to(Device(kCUDA, 0));
  tandem::load(b, path("net.safetensors"));
  EXPECT_TRUE(b->fc1->weight.is_cuda());
  EXPECT_EQ(values_of(*a), values_of(*b));
}

TEST_F(SerializeTest, LoadingIntoAModuleNamesEveryMismatchAndChangesNothing) {
  Net a(5, 7);
  tandem::save(a, path("net.safetensors"));
  {
    Net wider(5, 8);  // shapes differ
    const auto before = values_of(*wider);
    expect_error([&] { tandem::load(wider, path("net.safetensors")); },
                 {"load: '", "net.safetensors' does not match the module Net",
                  "'fc1.weight': expected float32 [8, 5], found float32 [7, 5]",
                  "'bn.running_var': expected float32 [8], found float32 [7]"});
    EXPECT_EQ(values_of(*wider), before);
  }
  {
    Net wide(5, 7);
    wide->to(kFloat64);  // dtypes differ
    const auto before = values_of(*wide);
    expect_error([&] { tandem::load(wide, path("net.safetensors")); },
                 "'fc2.bias': expected float64 [3], found float32 [3]");
    EXPECT_EQ(values_of(*wide), before);
  }
  {
    nn::Sequential seq(nn::Linear(5, 7));  // missing and unexpected keys
    expect_error([&] { tandem::load(seq, path("net.safetensors")); },
                 {"missing '0.weight' (float32 [7, 5])", "missing '0.bias' (float32 [7])",
                  "unexpected 'fc1.weight' (float32 [7, 5])",
                  "unexpected 'bn.num_batches_tracked' (int64 [])"});
  }
  expect_error(
      [&] {
        tandem::save(a, path("x.safetensors"), {{"optim.state", "{}"}});
      },
      "save: the metadata key 'optim.state' is reserved");
}

// ---- Training checkpoints --------------------------------------------------------

struct OptCase {
  std::string name;
  std::function<std::unique_ptr<optim::Optimizer>(std::vector<optim::OptimizerParamGroup>)> make;
};

std::vector<OptCase> optimizer_cases() {
  using namespace optim;  // NOLINT
  return {
      {"SGD",
       [](auto g) {
         return std::make_unique<SGD>(
             g, SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(1e-3));
       }},
      {"Adam", [](auto g) { return std::make_unique<Adam>(g, AdamOptions(1e-2).amsgrad(true)); }},
      {"AdamW",
       [](auto g) {
         return std::make_unique<AdamW>(g, AdamWOptions(3e-3).betas({0.8, 0.95}).eps(1e-7));
       }},
      {"RMSprop",
       [](auto g) {
         return std::make_unique<RMSprop>(g, RMSpropOptions(5e-3).centered(true).momentum(0.5));
       }},
      {"Adagrad",
       [](auto g) {
         return std::make_unique<Adagrad>(
             g, AdagradOptions(0.1).lr_decay(0.01).initial_accumulator_value(0.1));
       }},
  };
}

struct TrainRun {
  Net net{nullptr};
  std::unique_ptr<optim::Optimizer> opt;
  std::unique_ptr<optim::LRScheduler> sched;
};

// A net, its optimizer (weights and biases in two groups, the biases with
// their own lr) and a cosine schedule, all from seed 21.
TrainRun make_run(const OptCase& k) {
  manual_seed(21);
  TrainRun r;
  r.net = Net(4, 9);
  std::vector<Tensor> weights, biases;
  for (const auto& kv : r.net->named_parameters())
    (kv.first.find("bias") != std::string::npos ? biases : weights).push_back(kv.second);
  std::vector<optim::OptimizerParamGroup> groups;
  groups.emplace_back(weights);
  groups.emplace_back(biases);
  r.opt = k.make(groups);
  r.opt->param_groups()[1].options().set_lr(r.opt->param_groups()[1].options().get_lr() * 0.5);
  r.sched = std::make_unique<optim::CosineAnnealingLR>(*r.opt, 20, 1e-4);
  return r;
}

void train(TrainRun& r, const Tensor& x, const Tensor& y, int steps) {
  for (int s = 0; s < steps; ++s) {
    r.opt->zero_grad();
    cross_entropy(r.net(x), y).backward();
    r.opt->step();
    r.sched->step();
  }
}

TEST_F(SerializeTest, TrainingResumesBitExactlyFromACheckpoint) {
  const Tensor x = tt::random_tensor({17, 4}, kFloat32, -2, 2);
  const Tensor y = tt::random_tensor({17}, kInt64, 0, 2);
  for (const OptCase& k : optimizer_cases()) {
    SCOPED_TRACE(k.name);
    TrainRun whole = make_run(k);
    train(whole, x, y, 12);

    TrainRun first = make_run(k);
    train(first, x, y, 5);
    save_checkpoint(path("ckpt.safetensors"), *first.net, first.opt.get(), first.sched.get(),
                    {{"step", "5"}});
    TrainRun resumed = make_run(k);  // fresh: different options, no state, step 0
    const Metadata meta = load_checkpoint(path("ckpt.safetensors"), *resumed.net, resumed.opt.get(),
                                          resumed.sched.get());
    EXPECT_EQ(meta, (Metadata{{"step", "5"}}));
    EXPECT_EQ(resumed.sched->last_epoch(), 5);
    EXPECT_EQ(resumed.sched->get_last_lr(), first.sched->get_last_lr());
    train(resumed, x, y, 7);
    EXPECT_EQ(values_of(*resumed.net), values_of(*whole.net));
    const auto a = resumed.opt->state_dict(), b = whole.opt->state_dict();
    for (size_t g = 0; g < 2; ++g) {
      for (size_t i = 0; i < b.param_state[g].size(); ++i) {
        EXPECT_EQ(a.param_state[g][i].step, b.param_state[g][i].step);
        ASSERT_EQ(a.param_state[g][i].buffers.size(), b.param_state[g][i].buffers.size());
        for (const auto& kv : b.param_state[g][i].buffers)
          tt::expect_equal(a.param_state[g][i].buffers.at(kv.first), kv.second);
      }
    }
    // The model alone loads from the checkpoint (the optimizer's tensors are skipped).
    Net alone(4, 9);
    tandem::load(alone, path("ckpt.safetensors"));
    EXPECT_EQ(values_of(*alone), values_of(*first.net));
  }
}

TEST_F(SerializeTest, TheCheckpointLayoutIsDocumented) {
  TrainRun r = make_run(optimizer_cases()[1]);  // Adam
  const Tensor x = tt::random_tensor({6, 4}, kFloat32);
  train(r, x, tt::random_tensor({6}, kInt64, 0, 2), 2);
  save_checkpoint(path("c.safetensors"), *r.net, r.opt.get(), r.sched.get());
  const SafetensorsFile f = load_safetensors(path("c.safetensors"));
  EXPECT_EQ(f.tensors.count("optim.0.0.exp_avg"), 1u);
  EXPECT_EQ(f.tensors.count("optim.1.2.max_exp_avg_sq"), 1u);
  const auto j = nlohmann::json::parse(f.metadata.at("optim.state"));
  EXPECT_EQ(j.at("optimizer"), "Adam");
  EXPECT_EQ(j.at("groups").at(0).at("options").at("type"), "Adam");
  EXPECT_EQ(j.at("groups").at(1).at("params").at(0).at("step"), 2);
  const auto s = nlohmann::json::parse(f.metadata.at("lr_scheduler"));
  EXPECT_EQ(s.at("last_epoch"), 2);
}

TEST_F(SerializeTest, CheckpointErrorsChangeNothing) {
  const OptCase adam = optimizer_cases()[1], sgd = optimizer_cases()[0];
  const Tensor x = tt::random_tensor({6, 4}, kFloat32);
  const Tensor y = tt::random_tensor({6}, kInt64, 0, 2);
  TrainRun saved = make_run(adam);
  train(saved, x, y, 3);
  const std::string p = path("c.safetensors");
  save_checkpoint(p, *saved.net, saved.opt.get(), saved.sched.get());

  TrainRun target = make_run(sgd);
  train(target, x, y, 1);
  const auto net_before = values_of(*target.net);
  const double lr_before = target.opt->param_groups()[0].options().get_lr();
  const auto check_unchanged = [&] {
    EXPECT_EQ(values_of(*target.net), net_before);
    EXPECT_EQ(target.opt->param_groups()[0].options().get_lr(), lr_before);
    EXPECT_EQ(target.opt->state_dict().param_state[0][0].step, 1);
    EXPECT_EQ(target.sched->last_epoch(), 1);
  };
  // Adam's state into SGD.
  expect_error([&] { load_checkpoint(p, *target.net, target.opt.get(), target.sched.get()); },
               "SGD::load_state_dict: the state was saved from Adam, not from SGD");
  check_unchanged();
  // A scheduler that cannot take the state (one group instead of two): the
  // optimizer's own state is put back.
  TrainRun adam_target = make_run(adam);
  train(adam_target, x, y, 1);
  const auto adam_state = adam_target.opt->state_dict();
  {
    Metadata meta;
    flatten_scheduler_state({3, {0.1}}, meta);
    TensorList tensors = adam_target.net->named_parameters();
    for (auto& kv : adam_target.net->named_buffers()) tensors.push_back(kv);
    flatten_optimizer_state(saved.opt->state_dict(), tensors, meta);
    save_safetensors(path("one_lr.safetensors"), tensors, meta);
  }
  expect_error(
      [&] {
        load_checkpoint(path("one_lr.safetensors"), *adam_target.net, adam_target.opt.get(),
                        adam_target.sched.get());
      },
      "LRScheduler::load_state_dict: the state has 1 base lrs, the scheduler has 2");
  EXPECT_EQ(adam_target.opt->state_dict().param_state[0][0].step, 1);
  tt::expect_equal(adam_target.opt->state_dict().param_state[0][0].buffers.at("exp_avg"),
                   adam_state.param_state[0][0].buffers.at("exp_avg"));
  // No training state in a plain module file.
  tandem::save(saved.net, path("plain.safetensors"));
  expect_error(
      [&] { load_checkpoint(path("plain.safetensors"), *target.net, target.opt.get()); },
      "unflatten_optimizer_state: the file has no optimizer state (no metadata 'optim.state')");
  expect_error(
      [&] { load_checkpoint(path("plain.safetensors"), *target.net, nullptr, target.sched.get()); },
      "unflatten_scheduler_state: the file has no scheduler state (no metadata 'lr_scheduler')");
  check_unchanged();
}

// Hand-edited training state: each malformed piece is named.
TEST_F(SerializeTest, RejectsMalformedTrainingState) {
  TrainRun r = make_run(optimizer_cases()[1]);
  train(r, tt::random_tensor({6, 4}, kFloat32), tt::random_tensor({6}, kInt64, 0, 2), 1);
  TensorList good_tensors;
  Metadata good_meta;
  flatten_optimizer_state(r.opt->state_dict(), good_tensors, good_meta);
  const auto attempt = [&](const TensorList& tensors, const Metadata& meta, const char* message) {
    SafetensorsFile f;
    for (const auto& kv : tensors) f.tensors[kv.first] = kv.second;
    f.metadata = meta;
    expect_error([&] { unflatten_optimizer_state(f); }, message);
  };
  {
    TensorList t = good_tensors;
    t.emplace_back("optim.7.0.exp_avg", zeros({2}));
    attempt(t, good_meta, "the tensor 'optim.7.0.exp_avg' belongs to no parameter's state");
  }
  {
    TensorList t(good_tensors.begin() + 1, good_tensors.end());
    attempt(t, good_meta,
            (std::string("the tensor '") + good_tensors[0].first + "' is missing").c_str());
  }
  attempt(good_tensors, {{"optim.state", "{not json"}}, "metadata 'optim.state': not valid JSON");
  attempt(good_tensors, {{"optim.state", "[[[[[[[[1]]]]]]]]"}}, "nests deeper than 6 levels");
  {
    auto j = nlohmann::json::parse(good_meta.at("optim.state"));
    j["groups"][0]["options"]["eps"] = "small";
    attempt(good_tensors, {{"optim.state", j.dump()}},
            "group 0: 'eps' must be a number, got \"small\"");
    j = nlohmann::json::parse(good_meta.at("optim.state"));
    j["groups"][1]["options"]["type"] = "Lion";
    attempt(good_tensors, {{"optim.state", j.dump()}}, "group 1: unknown options type 'Lion'");
    j = nlohmann::json::parse(good_meta.at("optim.state"));
    j["groups"][0]["params"][1].erase("step");
    attempt(good_tensors, {{"optim.state", j.dump()}}, "group 0 parameter 1: missing 'step'");
    j = nlohmann::json::parse(good_meta.at("optim.state"));
    j["version"] = 2;
    attempt(good_tensors, {{"optim.state", j.dump()}}, "unknown version 2");
  }
  expect_error(
      [] {
        unflatten_scheduler_state({{"lr_scheduler", "{\"last_epoch\": 1.5, \"base_lrs\": []}"}});
      },
      "'last_epoch' must be an integer, got 1.5");
  expect_error(
      [] {
        unflatten_scheduler_state({{"lr_scheduler", "{\"last_epoch\": 1}"}});
      },
      "missing 'base_lrs'");
  // Saving: reserved metadata, a clashing module name, options that JSON cannot hold.
  expect_error(
      [&] {
        save_checkpoint(path("c.safetensors"), *r.net, r.opt.get(), nullptr,
                        {{"lr_scheduler", "x"}});
      },
      "save_checkpoint: the metadata key 'lr_scheduler' is reserved");
  nn::Sequential clash;
  clash->push_back("optim", nn::Linear(2, 2));
  optim::SGD sgd(clash->parameters(), optim::SGDOptions(0.1));
  expect_error([&] { save_checkpoint(path("c.safetensors"), *clash, &sgd); },
               "save_checkpoint: the module's 'optim.weight' clashes with the names of the "
               "optimizer's state");
  sgd.param_groups()[0].options().set_lr(INFINITY);
  TensorList t;
  Metadata m;
  expect_error([&] { flatten_optimizer_state(sgd.state_dict(), t, m); },
               "option lr is not finite (inf)");
  EXPECT_TRUE(files().empty());
}

}  // namespace
