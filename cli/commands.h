// Registration functions of the CLI subcommands (one per cli/cmd_*.cpp file).
#pragma once

#include <CLI/CLI.hpp>

namespace fewstep::cli {
void register_generate_command(CLI::App& app);
void register_info_command(CLI::App& app);
void register_samplers_command(CLI::App& app);
void register_tokenize_command(CLI::App& app);
void register_sweep_command(CLI::App& app);
void register_profile_command(CLI::App& app);

/// Adds every subcommand, in the order `--help` lists them.
inline void register_all_commands(CLI::App& app) {
  register_generate_command(app);
  register_info_command(app);
  register_samplers_command(app);
  register_tokenize_command(app);
  register_sweep_command(app);
  register_profile_command(app);
}
}  // namespace fewstep::cli
