// Small helpers shared by the examples: flag parsing and the device choice.
#pragma once

#include <tandem/tandem.h>

#include <cstdlib>
#include <iostream>
#include <string>

namespace example {

// Value of `--name value`, or `fallback`.
inline std::string flag(int argc, char** argv, const std::string& name,
                        const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == "--" + name) return argv[i + 1];
  return fallback;
}
inline bool has_flag(int argc, char** argv, const std::string& name) {
  for (int i = 1; i < argc; ++i)
    if (argv[i] == "--" + name) return true;
  return false;
}
// --device cpu|cuda (default cpu); a clear error when CUDA is not usable.
inline tandem::Device device_flag(int argc, char** argv) {
  const std::string d = flag(argc, argv, "device", "cpu");
  if (d == "cuda") {
    if (!tandem::cuda::is_available()) {
      std::cerr << "error: --device cuda, but no CUDA device is available\n";
      std::exit(2);
    }
    return tandem::Device(tandem::kCUDA);
  }
  return tandem::Device(tandem::kCPU);
}

}  // namespace example
