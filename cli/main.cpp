// fewstep command-line entry point: one subcommand per file in cli/.
#include <c10/util/Exception.h>
#include <torch/headeronly/version.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "cli/common.h"
#include "cli/commands.h"
#include "cli/interrupt.h"
#include "dist/env.h"
#include "unet/torchscript.h"

int main(int argc, char** argv) {
  CLI::App app{"fewstep: few-step diffusion sampling (text prompt -> PNG)", "fewstep"};
  app.set_version_flag("--version",
                       std::string("fewstep ") + FEWSTEP_VERSION + " (LibTorch " + std::to_string(TORCH_VERSION_MAJOR) +
                           "." + std::to_string(TORCH_VERSION_MINOR) + "." + std::to_string(TORCH_VERSION_PATCH) + ")");
  app.require_subcommand(1);
  // A flag given twice takes its last value, as in most CLIs; errors are one line.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("fewstep: error: ") + e.what() + " (see --help)\n";
  });
  fewstep::cli::register_all_commands(app);
  fewstep::cli::install_interrupt_handlers();
  fewstep::dist::set_command_line(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "fewstep: error: " << fewstep::dist::rank_label() << fewstep::first_line(e) << "\n";
    // After a distributed failure, process-group threads may still wait on
    // a stopped peer: leave without running static destructors under them.
    if (!fewstep::dist::rank_label().empty()) {
      std::fflush(nullptr);
      std::_Exit(1);
    }
    return 1;
  }
  return 0;
}
