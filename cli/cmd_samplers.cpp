// `fewstep samplers`: the sampler registry as a table.
#include <iomanip>
#include <iostream>

#include "cli/common.h"
#include "samplers/registry.h"

namespace fewstep::cli {

void register_samplers_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("samplers", "List the samplers, their aliases and options");
  cmd->callback([] {
    for (const SamplerInfo& s : sampler_registry()) {
      std::cout << std::left << std::setw(16) << s.name << " order " << s.order
                << (s.stochastic ? ", stochastic" : ", deterministic") << "  " << s.help << "\n";
      if (!s.aliases.empty()) {
        std::cout << std::setw(18) << ""
                  << "aliases:";
        for (const auto& a : s.aliases) std::cout << " " << a;
        std::cout << "\n";
      }
      for (const auto& opt : s.options)
        std::cout << std::setw(18) << "" << opt.name << "=" << opt.default_value << "  " << opt.help << "\n";
    }
  });
}

}  // namespace fewstep::cli
