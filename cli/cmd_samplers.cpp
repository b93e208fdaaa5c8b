// `fewstep samplers`: the sampler registry as a table, as Markdown
// (samplers/README.md's table) or as JSON (what the diffusers peer oracle reads).
#include <iomanip>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "samplers/registry.h"

namespace fewstep::cli {
namespace {

struct SamplersCliOptions {
  bool markdown = false, json = false;
};

void print_text() {
  for (const SamplerInfo& s : sampler_registry()) {
    std::cout << std::left << std::setw(19) << s.name << " order " << s.order
              << (s.stochastic ? ", stochastic" : ", deterministic") << ", NFE " << s.nfe << "  " << s.help << "\n";
    if (!s.aliases.empty()) {
      std::cout << std::setw(21) << ""
                << "aliases:";
      for (const auto& a : s.aliases) std::cout << " " << a;
      std::cout << "\n";
    }
    for (const auto& opt : s.options)
      std::cout << std::setw(21) << "" << opt.name << "=" << opt.default_value << "  " << opt.help << "\n";
  }
}

// One object per sampler: name, aliases, diffusers_twin and diffusers_peer
// (the class the peer tests run it against; null if none), order,
// stochastic, family, adaptive, nfe, picard, options {name: default}.
void print_json() {
  nlohmann::json out = nlohmann::json::array();
  for (const SamplerInfo& s : sampler_registry()) {
    nlohmann::json options = nlohmann::json::object();
    for (const auto& o : s.options) options[o.name] = o.default_value;
    const auto twin = diffusers_twin(s);
    const auto peer = diffusers_peer(s);
    out.push_back({{"name", s.name},
                   {"aliases", s.aliases},
                   {"diffusers_twin", twin ? nlohmann::json(*twin) : nlohmann::json()},
                   {"diffusers_peer", peer ? nlohmann::json(*peer) : nlohmann::json()},
                   {"order", s.order},
                   {"stochastic", s.stochastic},
                   {"family", s.family},
                   {"adaptive", s.adaptive},
                   {"nfe", s.nfe},
                   {"picard", static_cast<bool>(s.step_rule)},
                   {"options", options}});
  }
  std::cout << out.dump(1) << "\n";
}

}  // namespace

void register_samplers_command(CLI::App& app) {
  auto o = std::make_shared<SamplersCliOptions>();
  CLI::App* cmd = app.add_subcommand("samplers", "List the samplers, their aliases and options");
  auto* md = cmd->add_flag("--markdown", o->markdown, "print samplers/README.md's table");
  cmd->add_flag("--json", o->json, "print the registry as JSON")->excludes(md);
  cmd->callback([o] {
    if (o->markdown)
      std::cout << sampler_table_markdown();
    else if (o->json)
      print_json();
    else
      print_text();
  });
}

}  // namespace fewstep::cli
