// Test environment: scratch files, and what a test may skip and where: a user's clone lacks ../shared/data and may
// lack the Python oracles, so tests that need them skip there and say why;
// CI always has both and sets FEWSTEP_REQUIRE_SHARED_DATA=1 and
// FEWSTEP_REQUIRE_ORACLES=1 (.ci/run), under which such a skip is a failure.
// What the build always makes (the test models) or the repository always
// holds (models/emoji) is never skipped: its absence is a failure.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace fewstep::test {

/// True when the environment variable `name` is "1".
inline bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, "1") == 0;
}

/// A file path `name` inside this process's scratch folder under the
/// system's temporary directory (the folder is created).
inline std::filesystem::path scratch(const std::string& name) {
  const std::filesystem::path d =
      std::filesystem::temp_directory_path() / ("fewstep-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return d / name;
}

}  // namespace fewstep::test

/// Skips the test (or fails it under FEWSTEP_REQUIRE_SHARED_DATA=1) when
/// `present` is false; `what` says which file is missing.
#define FEWSTEP_NEED_SHARED_DATA(present, what)                                                  \
  do {                                                                                           \
    if (!(present)) {                                                                            \
      if (::fewstep::test::env_flag("FEWSTEP_REQUIRE_SHARED_DATA"))                              \
        FAIL() << "shared data absent but required (FEWSTEP_REQUIRE_SHARED_DATA=1): " << (what); \
      GTEST_SKIP() << "shared data absent: " << (what);                                          \
    }                                                                                            \
  } while (0)

/// Skips the test (or fails it under FEWSTEP_REQUIRE_ORACLES=1) when an
/// oracle's output is not there; `why` says what is missing.
#define FEWSTEP_NEED_ORACLE(present, why)                                                      \
  do {                                                                                         \
    if (!(present)) {                                                                          \
      if (::fewstep::test::env_flag("FEWSTEP_REQUIRE_ORACLES"))                                \
        FAIL() << "oracle output missing but required (FEWSTEP_REQUIRE_ORACLES=1): " << (why); \
      GTEST_SKIP() << (why);                                                                   \
    }                                                                                          \
  } while (0)
