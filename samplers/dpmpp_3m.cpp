// DPM-Solver++(3M): the multistep third order of DPM-Solver++ (Lu et al. 2022)
#include "samplers/dpm_multistep.h"
#include "samplers/sampler_list.h"

namespace fewstep {

SamplerInfo dpmpp_3m_sampler() {
  SamplerInfo info;
  info.name = "dpmpp_3m";
  info.aliases = {};
  info.order = 3;
  info.stochastic = false;
  info.family = "dpm";
  info.options = detail::dpm_multistep_options(3, false);
  info.help = "DPM-Solver++(3M): the multistep third order of DPM-Solver++ (Lu et al. 2022)";
  info.run = [](SamplerContext& ctx, at::Tensor x) { return detail::run_dpm_multistep(ctx, x, 3); };
  return info;
}

}  // namespace fewstep
