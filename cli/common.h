// Shared pieces of the CLI commands: runtime flags, sampler-option parsing,
// the progress bar and error formatting. Commands stay thin: options bound
// to one struct, choices read from the registries, work done by the library.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "pipeline/pipeline.h"

namespace fewstep::cli {

/// --device, --dtype, --threads, --attention: bound to a RuntimeOptions.
void add_runtime_flags(CLI::App& cmd, RuntimeOptions& rt);

/// Parses repeated `--sampler-option key=value` into a map. Throws
/// std::invalid_argument naming the flag when an item has no '='.
SamplerOptions parse_sampler_options(const std::vector<std::string>& items);

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, bool enabled);
  void update(int64_t done);
  void finish();

 private:
  std::string label_;
  int64_t total_;
  bool enabled_;
  double start_s_;
};

/// Runs `body`, which may create the output folder `dir`. When `body` throws
/// and `dir` did not exist before, removes `dir` if it is still empty (never
/// a folder with anything in it), then rethrows: a failed command leaves no
/// empty output folder behind.
template <typename Body>
void cleaning_new_folder_on_error(const std::filesystem::path& dir, Body&& body) {
  std::error_code ec;
  const bool existed = dir.empty() || std::filesystem::exists(dir, ec);
  try {
    body();
  } catch (...) {
    if (!existed) std::filesystem::remove(dir, ec);  // fails harmlessly unless empty
    throw;
  }
}

/// True when stderr is a terminal.
bool stderr_is_tty();

/// A random 32-bit seed (A1111 and ComfyUI use the same range).
uint64_t random_seed();

}  // namespace fewstep::cli
