// The sampler registry; see registry.h.
#include "samplers/registry.h"

#include "samplers/options.h"
#include "samplers/sampler_list.h"

namespace fewstep {
namespace {

std::string valid_keys(const SamplerInfo& info) {
  std::string s;
  for (const auto& o : info.options) {
    if (!s.empty()) s += ", ";
    s += o.name;
  }
  return s.empty() ? "(none)" : s;
}

}  // namespace

const std::vector<SamplerInfo>& sampler_registry() {
  static const std::vector<SamplerInfo> registry = {
      ddim_sampler(),       ddpm_sampler(),     euler_sampler(),    euler_ancestral_sampler(),
      heun_sampler(),       dpmpp_2m_sampler(), dpmpp_3m_sampler(), dpmpp_2m_sde_sampler(),
      dpm_solver_sampler(), unipc_sampler(),    lcm_sampler(),
  };
  return registry;
}

const SamplerInfo& find_sampler(const std::string& name) {
  for (const auto& info : sampler_registry()) {
    if (info.name == name) return info;
    for (const auto& alias : info.aliases)
      if (alias == name) return info;
  }
  std::string valid;
  for (const auto& info : sampler_registry()) {
    if (!valid.empty()) valid += ", ";
    valid += info.name;
  }
  throw SamplerError("unknown sampler '" + name + "' (valid: " + valid + ")");
}

SamplerOptions resolve_sampler_options(const SamplerInfo& info, const SamplerOptions& given) {
  SamplerOptions resolved;
  for (const auto& o : info.options) resolved[o.name] = o.default_value;
  for (const auto& [key, value] : given) {
    const SamplerOptionInfo* row = nullptr;
    for (const auto& o : info.options)
      if (o.name == key) row = &o;
    if (!row)
      throw SamplerError("unknown sampler option '" + key + "' for sampler '" + info.name +
                         "' (valid: " + valid_keys(info) + ")");
    resolved[key] = check_option_value(*row, value);
  }
  return resolved;
}

}  // namespace fewstep
