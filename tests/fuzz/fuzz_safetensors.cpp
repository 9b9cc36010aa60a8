// libFuzzer target: the safetensors header parser and validator
// (src/serialize/safetensors_format.cpp) on arbitrary bytes. Built and run by
// tools/fuzz.sh (ctest fuzz_safetensors when clang supports -fsanitize=fuzzer),
// with AddressSanitizer and UndefinedBehaviorSanitizer. Any input must either
// parse or throw tandem::Error; what parses must satisfy the reader's promises
// (tensors tile the data inside the file), and the writer's header for it must
// parse back to the same entries.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "serialize/safetensors_format.h"

namespace ts = tandem::safetensors;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ts::Header h;
  try {
    h = ts::parse(data, size, "fuzz");
  } catch (const tandem::Error&) {
    return 0;
  }
  const uint64_t data_size = size - h.data_start;
  uint64_t covered = 0;
  for (const ts::Entry& e : h.entries) {
    if (e.begin > e.end || e.end > data_size) std::abort();
    covered += e.end - e.begin;
  }
  if (covered != data_size) std::abort();
  const std::string header = ts::build_header(h.entries, h.metadata);
  const ts::Header again = ts::parse_header(header.data(), header.size(), data_size, "rebuilt");
  if (again.entries.size() != h.entries.size() || again.metadata != h.metadata) std::abort();
  for (size_t i = 0; i < h.entries.size(); ++i) {
    const ts::Entry &a = h.entries[i], &b = again.entries[i];
    if (a.name != b.name || a.dtype != b.dtype || a.shape != b.shape || a.begin != b.begin ||
        a.end != b.end)
      std::abort();
  }
  return 0;
}
