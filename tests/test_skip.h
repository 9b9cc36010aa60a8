// The one way a test skips: TANDEM_SKIP_IF(WHEN, condition, message), allowed
// only where tests/expected_skips.h lists the test for WHEN (see there), and
// TANDEM_SKIP_WITHOUT_CUDA() for the CUDA tests. Included by test_util.h and by
// the emulated device's own tests (tests/emu/), which do not use test_util.h.
#pragma once

#include <gtest/gtest.h>
#include <tandem/tandem.h>

#include <cstdlib>
#include <string>
#include <vector>

// A test skips only through TANDEM_SKIP_IF(WHEN, condition, message), and only
// where tests/expected_skips.h lists its name (a glob) with that WHEN and a
// reason; any other skip is a failure that names the missing entry. A skip for
// NoCuda is a failure under TANDEM_REQUIRE_CUDA=1 (tools/test.sh --gpu and the
// GPU check), so a GPU run cannot pass by skipping. The GPU check's report
// allows exactly the CudaPresent entries (tools/gpu/steps.py reads the list), and
// ctest expected_skips holds the list and the TANDEM_SKIP_IF sites together.
namespace tt {

enum class SkipWhen {
  NoCuda,       // no usable CUDA device (or a CPU-only build)
  CudaPresent,  // the test checks the behaviour without a device
  Emulated,     // the emulated CUDA device cannot run it (memory of this machine)
  SmallDevice,  // the device has too little free memory for it
  Asan,         // AddressSanitizer changes what is being checked
  NoPython,     // no python3 was found at configure time
};

struct ExpectedSkip {
  const char* test;  // "Suite.Name", '*' matches any run of characters
  SkipWhen when;
  const char* reason;
};

inline const std::vector<ExpectedSkip>& expected_skips() {
  static const std::vector<ExpectedSkip> list = {
#define TANDEM_EXPECTED_SKIP(test, when, reason) {test, SkipWhen::when, reason},
#include "expected_skips.h"
#undef TANDEM_EXPECTED_SKIP
  };
  return list;
}

inline bool glob_match(const char* pattern, const char* s) {
  if (*pattern == '\0') return *s == '\0';
  if (*pattern == '*')
    return glob_match(pattern + 1, s) || (*s != '\0' && glob_match(pattern, s + 1));
  return *s == *pattern && glob_match(pattern + 1, s + 1);
}

inline std::string cuda_unavailable_reason() {
  if (!tandem::cuda::is_built()) return "tandem was built without CUDA support";
  return "tandem was built with CUDA but no device is visible";
}

inline bool cuda_required() {
  const char* env = std::getenv("TANDEM_REQUIRE_CUDA");
  return env != nullptr && std::string(env) == "1";
}

// Empty when the running test may skip for `when`; otherwise why not.
inline std::string unexpected_skip(SkipWhen when, const char* when_name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string name =
      info ? std::string(info->test_suite_name()) + "." + info->name() : std::string("?");
  if (when == SkipWhen::NoCuda && cuda_required())
    return "TANDEM_REQUIRE_CUDA=1 but no CUDA device";
  for (const ExpectedSkip& e : expected_skips()) {
    if (e.when == when && glob_match(e.test, name.c_str())) return "";
  }
  return "a skip that tests/expected_skips.h does not list (" + name + ", " + when_name + ")";
}

}  // namespace tt

// Skips the running test with `message` (streamable) when `condition` holds,
// if tests/expected_skips.h lists it for WHEN (a SkipWhen name); fails otherwise.
#define TANDEM_SKIP_IF(WHEN, condition, message)                                          \
  do {                                                                                    \
    if (condition) {                                                                      \
      const std::string tandem_why_ = ::tt::unexpected_skip(::tt::SkipWhen::WHEN, #WHEN); \
      if (!tandem_why_.empty()) FAIL() << tandem_why_ << ": " << message;                 \
      GTEST_SKIP() << "[" #WHEN "] " << message;                                          \
    }                                                                                     \
  } while (0)

// Skips the current test, printing why, when no CUDA device can be used.
#define TANDEM_SKIP_WITHOUT_CUDA()                        \
  TANDEM_SKIP_IF(NoCuda, !::tandem::cuda::is_available(), \
                 "no CUDA device: " << ::tt::cuda_unavailable_reason())
