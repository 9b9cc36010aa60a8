// tandem::Error and the precondition macro TANDEM_CHECK.
// TANDEM_CHECK is active in every build type (unlike assert) and builds its
// message from any streamable values: TANDEM_CHECK(a == b, "add: ", a, " vs ", b).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace tandem {

class Error : public std::runtime_error {
 public:
  Error(std::string what, const char* file, int line);
  // The message without the " (at file:line)" suffix.
  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

// Thrown for out-of-memory conditions (device or pinned host); still an Error.
class OutOfMemoryError : public Error {
 public:
  using Error::Error;
};

namespace detail {

template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

[[noreturn]] void throw_error(const std::string& msg, const char* file, int line);

}  // namespace detail
}  // namespace tandem

#define TANDEM_CHECK(cond, ...)                                                                  \
  do {                                                                                           \
    if (!(cond)) {                                                                               \
      ::tandem::detail::throw_error(::tandem::detail::str_cat(__VA_ARGS__), __FILE__, __LINE__); \
    }                                                                                            \
  } while (0)

#define TANDEM_FAIL(...) \
  ::tandem::detail::throw_error(::tandem::detail::str_cat(__VA_ARGS__), __FILE__, __LINE__)
