// The safetensors file format without tensors or files: building a header
// and parsing + validating one from bytes. Kept free of Tensor and I/O so that
// the libFuzzer target (tests/fuzz/fuzz_safetensors.cpp) compiles it alone.
//
// Layout: 8-byte little-endian header length N, N bytes of JSON (an object:
// tensor name -> {"dtype", "shape", "data_offsets": [begin, end]}, plus an
// optional "__metadata__" string -> string map; padded with spaces), then the
// data; offsets are relative to the start of the data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tandem/dtype.h"

namespace tandem {
namespace safetensors {

// Largest header accepted (the reference Rust implementation's limit).
constexpr uint64_t kMaxHeaderBytes = 100000000;

struct Entry {
  std::string name;
  DType dtype = kFloat32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data, [begin, end)
  uint64_t end = 0;
};

struct Header {
  std::vector<Entry> entries;  // sorted by name
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + N: where the data begins in the file
};

// Throws unless the JSON text nests at most `max_depth` arrays/objects; run
// before nlohmann parses, whose stacks grow with the nesting of a hostile text.
void check_nesting(const char* text, size_t n, int max_depth, const std::string& what);

// "F32", "F64", "I32", "I64", "U8".
const char* dtype_code(DType t);

// The header length stored in the first 8 bytes of a file of `file_size`
// bytes; throws unless it is plausible (<= kMaxHeaderBytes, inside the file).
// `what` names the file in messages.
uint64_t header_length(const unsigned char* prefix8, uint64_t file_size, const std::string& what);

// Parses and validates the JSON header (`json`, `n` bytes) of a file whose
// data section is `data_size` bytes. Throws tandem::Error naming `what` and
// the violation: invalid JSON or UTF-8, duplicate keys, unknown fields,
// unsupported dtypes, bad shapes, offsets that disagree with dtype x shape,
// overlap, gaps, or data not covered. data_start is left 0.
Header parse_header(const char* json, size_t n, uint64_t data_size, const std::string& what);

// header_length + parse_header over a whole file held in memory.
Header parse(const unsigned char* data, size_t size, const std::string& what);

// The JSON header for `entries` (offsets already assigned) and `metadata`,
// padded with spaces so that the data starts at a multiple of 8 bytes.
std::string build_header(const std::vector<Entry>& entries,
                         const std::map<std::string, std::string>& metadata);

}  // namespace safetensors
}  // namespace tandem
