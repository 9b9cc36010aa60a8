// tandem::Error construction: the message plus " (at file:line)".
#include "tandem/error.h"

#include <cstring>

namespace tandem {

namespace {
const char* basename_of(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash ? slash + 1 : path;
}
}  // namespace

Error::Error(std::string what, const char* file, int line)
    : std::runtime_error(what + " (at " + basename_of(file) + ":" + std::to_string(line) + ")"),
      message_(std::move(what)) {}

namespace detail {
void throw_error(const std::string& msg, const char* file, int line) {
  throw Error(msg, file, line);
}
}  // namespace detail
}  // namespace tandem
