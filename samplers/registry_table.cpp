// The registry as a Markdown table (samplers/README.md's); see registry.h.
#include "samplers/registry.h"

#include <sstream>

namespace fewstep {
namespace {

// "`key` (default)", with the choices for a choice option.
std::string describe_option(const SamplerOptionInfo& o) {
  std::string s = "`" + o.name + "`";
  std::string def = o.default_value;
  if (o.kind == OptionKind::choice) {
    std::string choices;
    for (const auto& c : o.choices) choices += (choices.empty() ? "" : "\\|") + c;
    return s + " " + choices + (def.empty() ? "" : " (" + def + ")");
  }
  if (def.empty()) return s;
  return s + " (" + def + ")";
}

bool is_shared_schedule_default(const SamplerOptionInfo& o) {
  for (const SamplerOptionInfo& s : schedule_options())
    if (s.name == o.name) return s.default_value == o.default_value;
  return false;
}

}  // namespace

std::string sampler_table_markdown() {
  std::ostringstream s;
  s << "| name | aliases | order | NFE (N steps) | stochastic | Picard | options (besides the schedule options) |\n"
    << "| --- | --- | ---: | --- | --- | --- | --- |\n";
  for (const SamplerInfo& info : sampler_registry()) {
    std::string aliases, options, eta_default;
    for (const auto& a : info.aliases) aliases += (aliases.empty() ? "" : ", ") + a;
    for (const SamplerOptionInfo& o : info.options) {
      if (o.name == "eta") eta_default = o.default_value;
      if (is_shared_schedule_default(o)) continue;
      options += (options.empty() ? "" : ", ") + describe_option(o);
    }
    std::string stochastic = info.stochastic ? "yes" : "no";
    if (!eta_default.empty()) stochastic = info.stochastic ? "yes (eta " + eta_default + ")" : "with eta > 0";
    s << "| `" << info.name << "` | " << aliases << " | " << info.order << " | " << info.nfe << " | " << stochastic
      << " | " << (info.step_rule ? "yes" : "") << " | " << options << " |\n";
  }
  return s.str();
}

}  // namespace fewstep
