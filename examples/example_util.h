// Small helpers shared by the examples: command-line flags and the device
// choice. Plain argv parsing, no dependency: `--name value` and `--switch`.
// An unknown flag, a missing value or a malformed number prints the usage and
// exits with status 2, so a typo in a test command cannot pass silently.
#pragma once

#include <tandem/tandem.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <utility>

namespace example {

class Flags {
 public:
  // `usage`: one line per flag, printed for --help and on errors. `valued`
  // and `switches` list the accepted names (without the leading "--").
  Flags(int argc, char** argv, std::string usage, std::set<std::string> valued,
        std::set<std::string> switches)
      : argc_(argc), argv_(argv), usage_(std::move(usage)) {
    valued.insert("device");
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        std::printf("%s", usage_.c_str());
        std::exit(0);
      }
      if (a.rfind("--", 0) == 0 && valued.count(a.substr(2)) && i + 1 < argc) {
        ++i;  // skip the value
      } else if (a.rfind("--", 0) != 0 || !switches.count(a.substr(2))) {
        fail("unknown flag or missing value: " + a);
      }
    }
  }

  bool has(const std::string& name) const {
    for (int i = 1; i < argc_; ++i)
      if (argv_[i] == "--" + name) return true;
    return false;
  }
  std::string get(const std::string& name, const std::string& fallback) const {
    for (int i = 1; i + 1 < argc_; ++i)
      if (argv_[i] == "--" + name) return argv_[i + 1];
    return fallback;
  }
  int get_int(const std::string& name, int fallback) const {
    const std::string v = get(name, std::to_string(fallback));
    char* end = nullptr;
    const long n = std::strtol(v.c_str(), &end, 10);
    if (end == v.c_str() || *end != '\0' || n <= 0 || n > 100000000)
      fail("--" + name + " wants a positive integer, got '" + v + "'");
    return static_cast<int>(n);
  }
  double get_double(const std::string& name, double fallback) const {
    const std::string v = get(name, "");
    if (v.empty()) return fallback;
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (end == v.c_str() || *end != '\0' || !(x > 0) || !std::isfinite(x))
      fail("--" + name + " wants a positive number, got '" + v + "'");
    return x;
  }
  // --device cpu|cuda|auto (default cpu); auto is cuda when a CUDA device is
  // usable, else cpu. An explicit cuda without one is a clear error.
  tandem::Device device() const {
    const std::string d = get("device", "cpu");
    if (d == "cpu") return tandem::Device(tandem::kCPU);
    if (d == "auto")
      return tandem::cuda::is_available() ? tandem::Device(tandem::kCUDA)
                                          : tandem::Device(tandem::kCPU);
    if (d != "cuda") fail("--device wants cpu, cuda or auto, got '" + d + "'");
    if (!tandem::cuda::is_available()) {
      std::fprintf(stderr,
                   "error: --device cuda, but no CUDA device is available (this build %s the "
                   "CUDA backend)\n",
                   tandem::cuda::is_built() ? "has" : "lacks");
      std::exit(2);
    }
    return tandem::Device(tandem::kCUDA);
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    std::fprintf(stderr, "error: %s\n%s", why.c_str(), usage_.c_str());
    std::exit(2);
  }

  int argc_;
  char** argv_;
  std::string usage_;
};

// How often to print a progress line so that about `lines` lines appear.
inline int every(int epochs, int lines) { return epochs / lines > 0 ? epochs / lines : 1; }

}  // namespace example
