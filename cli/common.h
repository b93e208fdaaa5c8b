// Shared pieces of the CLI commands: runtime flags, sampler-option parsing,
// the progress bar and error formatting. Commands stay thin: options bound
// to one struct, choices read from the registries, work done by the library.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dist/env.h"
#include "io/files.h"
#include "pipeline/pipeline.h"

namespace fewstep::dist {
class Group;
}

namespace fewstep::cli {

/// The flags that `generate`, `sweep` and `profile` share, declared once by
/// add_shared_flags. Unset values take the model's defaults.
struct SharedFlags {
  std::string model;            ///< --model: package folder or analytic:<spec>; "" = the embedded model
  std::string prompt;           ///< --prompt
  std::string negative_prompt;  ///< --negative-prompt
  std::string sampler;          ///< --sampler (sweep: --samplers, a comma list); "" = the model's
  std::string steps;            ///< --steps (sweep: a comma list); "" = the model's
  std::optional<double> cfg_scale;
  std::optional<int64_t> width, height;      ///< pixels
  std::string timestep_spacing;              ///< "" = the model's
  std::vector<std::string> sampler_options;  ///< repeated key=value
  RuntimeOptions rt;                         ///< --device, --dtype, --threads, --attention, --fusion
  dist::DistFlags dist;                      ///< --dist, --dist-timeout
};

/// Whether a command runs one setting (generate, profile) or sweeps lists
/// of samplers and step counts (sweep).
enum class Axis { one, list };

/// --device, --dtype, --threads, --attention, --fusion: bound to a RuntimeOptions.
void add_runtime_flags(CLI::App& cmd, RuntimeOptions& rt);

/// Declares the shared flags on `cmd`, bound to `f` (the runtime flags included).
void add_shared_flags(CLI::App& cmd, SharedFlags& f, Axis axis);

/// --dist and --dist-timeout resolved against the launcher's environment
/// (RANK, WORLD_SIZE, ...; dist/env.h) and --device. Throws
/// std::invalid_argument naming the flag, dist::DistError naming the variable.
dist::DistSettings dist_settings(const SharedFlags& f);

/// Joins the other ranks (a one-process group when --dist is off or
/// WORLD_SIZE is 1), runs body(group) and ends the group in order. When
/// body throws anything but a dist::DistError (which every rank sees for
/// itself), the failure is first reported to the other ranks, so that they
/// stop and name this rank. Rethrows.
void run_in_group(const SharedFlags& f, const std::function<void(dist::Group&)>& body);

/// --steps as one count: nullopt when not given. Throws
/// std::invalid_argument naming --steps when it is not an integer.
std::optional<int64_t> single_steps(const SharedFlags& f);

/// --timestep-spacing as given, nullopt when empty.
std::optional<std::string> spacing_of(const SharedFlags& f);

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, bool enabled);
  void update(int64_t done);
  void set_total(int64_t total) { total_ = total; }
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
/// empty output folder behind. The same holds when the command is
/// interrupted (the folder is registered with io/files.h's cleanup).
template <typename Body>
void cleaning_new_folder_on_error(const std::filesystem::path& dir, Body&& body) {
  std::error_code ec;
  const bool existed = dir.empty() || std::filesystem::exists(dir, ec);
  if (!existed) register_created_folder(dir);
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
