// The sampler registry; see registry.h.
#include "samplers/registry.h"

#include "samplers/sampler_list.h"

namespace fewstep {
const std::vector<SamplerInfo>& sampler_registry() {
  static const std::vector<SamplerInfo> registry = {
      ddim_sampler(),       ddpm_sampler(),
      euler_sampler(),      euler_ancestral_sampler(),
      heun_sampler(),       dpmpp_2m_sampler(),
      dpmpp_3m_sampler(),   dpmpp_2m_sde_sampler(),
      dpm_solver_sampler(), unipc_sampler(),
      lcm_sampler(),        pndm_sampler(),
      plms_sampler(),       ipndm_sampler(),
      ipndm_v_sampler(),    deis_sampler(),
      lms_sampler(),        dpmpp_2s_ancestral_sampler(),
      tcd_sampler(),        dpm_adaptive_sampler(),
  };
  return registry;
}

std::optional<std::string> diffusers_twin(const SamplerInfo& info) {
  const std::string suffix = "Scheduler";
  for (const auto& alias : info.aliases)
    if (alias.size() > suffix.size() && alias.compare(alias.size() - suffix.size(), suffix.size(), suffix) == 0)
      return alias;
  return std::nullopt;
}

std::optional<std::string> diffusers_peer(const SamplerInfo& info) {
  if (auto twin = diffusers_twin(info)) return twin;
  // Samplers that are another configuration of a twin's class, so answer to
  // no class name of their own: plms is PNDMScheduler(skip_prk_steps=True),
  // dpmpp_3m and dpmpp_2m_sde are DPMSolverMultistepScheduler with
  // solver_order=3 and algorithm_type="sde-dpmsolver++".
  static const std::pair<const char*, const char*> variants[] = {
      {"plms", "PNDMScheduler"},
      {"dpmpp_3m", "DPMSolverMultistepScheduler"},
      {"dpmpp_2m_sde", "DPMSolverMultistepScheduler"},
  };
  for (const auto& [name, cls] : variants)
    if (info.name == name) return std::string(cls);
  return std::nullopt;
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

ResolvedOptions resolve_sampler_options(const SamplerInfo& info, const SamplerOptions& given) {
  return resolve_options(info.options, given, info.name);
}

namespace {
// fewstep's own option names, never diffusers scheduler_config keys.
bool fewstep_only_option(const std::string& key) {
  return key == "eta" || key == "sigma_spacing" || key == "timesteps" || key == "sigmas";
}
}  // namespace

bool is_scheduler_option_key(const std::string& key) {
  if (fewstep_only_option(key)) return false;
  for (const SamplerInfo& info : sampler_registry())
    for (const SamplerOptionInfo& o : info.options)
      if (o.name == key) return true;
  return false;
}

ResolvedOptions resolve_sampler_options(const SamplerInfo& info, const SamplerOptions& given,
                                        const SchedulerConfig& cfg) {
  SamplerOptions merged;
  for (const SamplerOptionInfo& o : info.options) {
    const auto it = cfg.other_keys.find(o.name);
    if (it == cfg.other_keys.end() || fewstep_only_option(o.name)) continue;
    try {
      check_option_value(o, it->second);
      merged[o.name] = it->second;
    } catch (const SamplerError&) {
      // A value meant for another scheduler class (UniPC's bh2 for solver_type
      // on DPM-Solver): this sampler keeps its own default.
    }
  }
  for (const auto& [key, value] : given) merged[key] = value;
  return resolve_options(info.options, merged, info.name);
}

}  // namespace fewstep
