// Helpers shared by the src/data/*.cpp files (not part of the API).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tandem {
namespace data {
namespace detail {

// The whole file; throws "<what>: <path>: file not found" and the like.
std::string read_whole_file(const std::string& path, const char* what);
// Writes path.partial and renames it to path, so a reader never sees half a file.
void write_file_atomic(const std::string& path, const void* data, size_t nbytes, const char* what);
// The samples 0..n-1 sorted by their Philox shuffle key (src/data/augment.h).
std::vector<int64_t> shuffled_order(uint64_t seed, int64_t n, int64_t epoch);

// Runs argv[0] (found on PATH) with arguments, no shell; returns its exit
// status and fills *output with its stdout+stderr (last few KiB).
int run_command(const std::vector<std::string>& argv, std::string* output);
// True when `program` is an executable on PATH.
bool on_path(const std::string& program);

}  // namespace detail
}  // namespace data
}  // namespace tandem
